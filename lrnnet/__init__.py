"""lrnnet: take LRNNet from a PyTorch checkpoint to the fastest engine a machine can run, and measure it."""

__version__ = "0.1.0"
