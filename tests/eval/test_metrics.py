"""ConfusionMatrix against confusion matrices and IoUs worked out by hand."""

import math

import numpy as np
import pytest

from lrnnet.data.labels import IGNORE_INDEX as IG
from lrnnet.eval import ConfusionMatrix

# Worked example, 3 classes. Ground truth / prediction, one ignored pixel (predicted 2):
#   gt   0 0 1      pred 0 1 1
#        1 2 IG          1 0 2
# valid pixels (gt != IG): (0,0) (0,1) (1,1) (1,1) (2,0)
# matrix rows=gt, cols=pred:  [[1,1,0], [0,2,0], [1,0,0]]
# IoU0 = 1 / (2 + 2 - 1) = 1/3;  IoU1 = 2 / (2 + 3 - 2) = 2/3;  IoU2 = 0 / (1 + 0 - 0) = 0
# mIoU = (1/3 + 2/3 + 0) / 3 = 1/3;  pixel accuracy = 3/5
GT = np.array([[0, 0, 1], [1, 2, IG]], dtype=np.uint8)
PRED = np.array([[0, 1, 1], [1, 0, 2]], dtype=np.int32)


def test_worked_example():
    cm = ConfusionMatrix(3)
    cm.update(PRED, GT)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert cm.iou() == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert cm.miou() == pytest.approx(1 / 3)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5)


def test_class_absent_from_both_is_left_out_of_the_mean():
    # Class 3 is in neither: IoU NaN and the mean stays over the 3 others (the official convention).
    cm = ConfusionMatrix(4)
    cm.update(PRED, GT)
    iou = cm.iou()
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx(1 / 3)
    summary = cm.summary(("a", "b", "c", "d"))
    assert summary["per_class_iou"]["d"] is None and summary["pixels"] == 5


def test_class_predicted_only_on_ignored_pixels_counts_as_absent():
    # Predicting class 3 on the ignored pixel is no false positive: ignored pixels do not exist.
    pred = PRED.copy()
    pred[1, 2] = 3
    cm = ConfusionMatrix(4)
    cm.update(pred, GT)
    assert math.isnan(cm.iou()[3]) and cm.miou() == pytest.approx(1 / 3)


def test_class_only_predicted_has_iou_zero_and_counts():
    # gt all class 0 (4 px); prediction puts class 1 on one pixel: IoU0 = 3/4, IoU1 = 0/1, mIoU = 3/8.
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 0], [0, 1]]), np.zeros((2, 2), dtype=np.uint8))
    assert cm.iou()[:2] == pytest.approx([0.75, 0.0]) and math.isnan(cm.iou()[2])
    assert cm.miou() == pytest.approx(0.375)


def test_global_matrix_is_not_a_mean_of_images():
    # Image A: 1 px class 0 right. Image B: 3 px class 1, all predicted 0.
    # Global: matrix [[1,0],[3,0]]: IoU0 = 1/4, IoU1 = 0 -> mIoU 1/8.
    # (A mean of per-image mIoUs would give (1 + 0) / 2 = 1/2.)
    cm = ConfusionMatrix(2)
    cm.update(np.array([0]), np.array([0], dtype=np.uint8))
    cm.update(np.array([0, 0, 0]), np.array([1, 1, 1], dtype=np.uint8))
    assert cm.miou() == pytest.approx(1 / 8)
    other = ConfusionMatrix(2)
    other.update(np.array([1]), np.array([1], dtype=np.uint8))
    cm.merge(other)
    assert cm.matrix.tolist() == [[1, 0], [3, 1]]


def test_only_ignored_pixels_give_nan_not_zero():
    cm = ConfusionMatrix(3)
    cm.update(np.zeros((2, 2), dtype=np.int32), np.full((2, 2), IG, dtype=np.uint8))
    assert cm.matrix.sum() == 0 and math.isnan(cm.miou()) and math.isnan(cm.pixel_accuracy())


def test_bad_shapes_and_ids_are_rejected():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.array([3]), np.array([0], dtype=np.uint8))
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.array([0]), np.array([7], dtype=np.uint8))
