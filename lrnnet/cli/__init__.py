"""One thin module per console script: argument parsing and printing only."""
