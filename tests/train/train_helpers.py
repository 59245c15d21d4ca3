"""Oracles of the training tests."""

from __future__ import annotations

import numpy as np

from lrnnet.data.cityscapes import CityscapesDataset
from lrnnet.data.labels import IGNORE_INDEX, NUM_CLASSES
from lrnnet.eval import ConfusionMatrix


def majority_class_miou(root, split: str = "val") -> float:
    """The chance oracle: mIoU of predicting the split's most frequent class everywhere (official conventions)."""
    labels = [gt for _, gt, _ in CityscapesDataset(root, split)]
    counts = np.bincount(np.concatenate([gt[gt != IGNORE_INDEX] for gt in labels]), minlength=NUM_CLASSES)
    confusion = ConfusionMatrix(NUM_CLASSES)
    for gt in labels:
        confusion.update(np.full_like(gt, counts.argmax()), gt)
    return confusion.miou()
