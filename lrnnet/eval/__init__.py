"""Segmentation accuracy of any runner over a dataset."""

from lrnnet.eval.metrics import ConfusionMatrix

__all__ = ["ConfusionMatrix"]
