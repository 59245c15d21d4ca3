"""Fixtures of the training stage: a checkpoint trained briefly on synthetic scenes (owned by the training engineer)."""
