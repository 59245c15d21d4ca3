"""Confusion-matrix segmentation metrics, with the official Cityscapes conventions.

One global confusion matrix over the dataset (not a mean of per-image scores); pixels whose ground
truth is 255 are ignored; a class absent from both prediction and ground truth has IoU NaN and is
left out of the mean, as cityscapesscripts' evalPixelLevelSemanticLabeling does.
"""

from __future__ import annotations

import numpy as np

from lrnnet.data.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES


class ConfusionMatrix:
    def __init__(self, num_classes: int = NUM_CLASSES):
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)  # rows: ground truth, cols: prediction

    def update(self, prediction: np.ndarray, ground_truth: np.ndarray) -> None:
        """Add one image (or batch); both are trainId maps of the same shape."""
        if prediction.shape != ground_truth.shape:
            raise ValueError(f"prediction shape {prediction.shape} != ground truth shape {ground_truth.shape}")
        gt = ground_truth.reshape(-1).astype(np.int64)
        pred = prediction.reshape(-1).astype(np.int64)
        valid = gt != IGNORE_INDEX
        gt, pred = gt[valid], pred[valid]
        if gt.size and (gt.max() >= self.num_classes or pred.min() < 0 or pred.max() >= self.num_classes):
            raise ValueError(f"label ids outside 0..{self.num_classes - 1} (and {IGNORE_INDEX} for ignore)")
        self.matrix += np.bincount(gt * self.num_classes + pred, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes)

    def merge(self, other: ConfusionMatrix) -> None:
        self.matrix += other.matrix

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for classes in neither prediction nor ground truth."""
        true_positive = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - true_positive
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, true_positive / union, np.nan)

    def miou(self) -> float:
        iou = self.iou()
        return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def summary(self, class_names: tuple[str, ...] = CLASS_NAMES) -> dict:
        """JSON-ready: miou and pixel accuracy as fractions 0..1, per-class IoU (None where NaN)."""
        per_class = {name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, self.iou())}
        return {"miou": self.miou(), "pixel_accuracy": self.pixel_accuracy(), "per_class_iou": per_class,
                "pixels": int(self.matrix.sum())}
