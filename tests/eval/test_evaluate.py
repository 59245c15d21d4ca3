"""evaluate() against the official Cityscapes evaluation and against hand-derived scores."""

from __future__ import annotations

import copy
import fnmatch
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from eval_helpers import PixelClassifierRunner

from lrnnet.data import CityscapesDataset
from lrnnet.data.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, TRAIN_ID_TO_LABEL_ID
from lrnnet.errors import InputError
from lrnnet.eval import PREDICTION_SUFFIX, evaluate


def official_evaluation(cityscapes_root: Path, predictions: Path) -> dict:
    """cityscapesscripts' evalPixelLevelSemanticLabeling through its args API, on gtFine/val.

    The ground truth is found and paired exactly as the official script does (its glob, its
    getPrediction pattern "{city}_{seq}_{frame}*.png"). Instance-level scores are off: they need
    *_instanceIds.png, which the synthetic tree does not have, and do not enter the class IoU.
    """
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = copy.copy(official.args)
    args.groundTruthSearch = str(cityscapes_root / "gtFine" / "val" / "*" / "*_gtFine_labelIds.png")
    args.predictionPath, args.predictionWalk = str(predictions), None
    args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, True
    ground_truth = sorted(str(p) for p in cityscapes_root.glob("gtFine/val/*/*_gtFine_labelIds.png"))
    assert ground_truth
    predicted = [official.getPrediction(args, gt) for gt in ground_truth]
    return official.evaluateImgLists(predicted, ground_truth, args)


def test_miou_equals_the_official_evaluation(val_with_ignore, tmp_path):
    # The runner works at 64x128 and the ground truth is 128x256: predictions are upsampled before
    # scoring and saving, and the ground truth has ignored pixels (ego vehicle, unlabeled).
    dataset = CityscapesDataset(val_with_ignore, "val")
    out = tmp_path / "predictions"
    with PixelClassifierRunner(size=(64, 128)) as runner:
        report = evaluate(runner, dataset, save_predictions=out)
    official = official_evaluation(val_with_ignore, out)

    assert report.images == len(dataset) == 4
    # The official script averages the classes whose IoU is not NaN among the 19 evaluated ones
    # (tp + fp + fn > 0, false positives counted on non-ignored ground truth only): ConfusionMatrix's
    # convention. Some classes must be absent for this to test anything.
    evaluated = [name for name in CLASS_NAMES if not math.isnan(official["classScores"][name])]
    assert 0 < len(evaluated) < NUM_CLASSES
    assert report.to_dict()["classes_evaluated"] == len(evaluated)
    assert report.miou == pytest.approx(official["averageScoreClasses"], abs=1e-6)
    for name in CLASS_NAMES:
        ours, theirs = report.per_class_iou[name], official["classScores"][name]
        assert (ours is None) == math.isnan(theirs), name
        if ours is not None:
            assert ours == pytest.approx(theirs, abs=1e-9), name
    # Ignored pixels were excluded: the matrix counts exactly the non-ignored ground-truth pixels.
    valid = sum(int(np.count_nonzero(labels != IGNORE_INDEX)) for _, labels, _ in dataset)
    assert report.confusion.matrix.sum() == valid < 4 * 128 * 256


def test_saved_predictions_are_labelids_at_ground_truth_size(val_with_ignore, tmp_path):
    dataset = CityscapesDataset(val_with_ignore, "val")
    out = tmp_path / "predictions"
    with PixelClassifierRunner(size=(64, 128)) as runner:
        evaluate(runner, dataset, save_predictions=out)
        direct = runner.predict([dataset[0][0]])[0]
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(s.stem + PREDICTION_SUFFIX for s in dataset.samples)  # and no temp files left
    for sample in dataset.samples:
        city, seq, frame = sample.stem.split("_")
        assert fnmatch.filter(files, f"{city}_{seq}_{frame}*.png") == [sample.stem + PREDICTION_SUFFIX]
    saved = cv2.imread(str(out / files[0]), cv2.IMREAD_UNCHANGED)
    assert saved.shape == (128, 256) and saved.dtype == np.uint8
    # labelIds of the runner's own prediction, each model pixel repeated 2x2 (nearest, exact 2x).
    expected = TRAIN_ID_TO_LABEL_ID[direct].repeat(2, axis=0).repeat(2, axis=1)
    assert np.array_equal(saved, expected)


@pytest.mark.parametrize("constant", [0, 13])
def test_constant_prediction_matches_hand_derived_scores(val_with_ignore, constant):
    # Predicting class k everywhere: IoU_k = |gt == k| / |valid|, every other class in the ground
    # truth has IoU 0, classes in neither are left out. Counted straight from the label files.
    dataset = CityscapesDataset(val_with_ignore, "val")
    gt = np.concatenate([labels.ravel() for _, labels, _ in dataset])
    valid = gt[gt != IGNORE_INDEX]
    present = set(np.unique(valid).tolist()) | {constant}
    expected_iou_k = np.count_nonzero(valid == constant) / valid.size
    runner = PixelClassifierRunner(size=(32, 64))
    runner.weight[:] = 0
    runner.bias[:] = 0
    runner.bias[constant] = 1
    report = evaluate(runner, dataset, batch_size=3)
    assert report.iou[constant] == pytest.approx(expected_iou_k)
    assert report.miou == pytest.approx(expected_iou_k / len(present))
    assert report.pixel_accuracy == pytest.approx(expected_iou_k)
    assert {i for i in range(NUM_CLASSES) if not math.isnan(report.iou[i])} == present


def test_report_json(synthetic_root, pixel_runner):
    report = evaluate(pixel_runner, CityscapesDataset(synthetic_root, "val"), limit=2, model_name="m.onnx")
    data = json.loads(report.to_json())
    assert data["model"] == "m.onnx" and data["backend"] == "numpy" and data["images"] == 2
    assert data["input_size"] == [64, 128] and data["split"] == "val"
    assert 0.0 <= data["miou"] <= 1.0 and data["miou"] == pytest.approx(report.miou)
    assert set(data["per_class_iou"]) == set(CLASS_NAMES)
    assert np.array(data["confusion_matrix"]).sum() == data["pixels"] == 2 * 128 * 256
    assert "mIoU" in report.table()


def test_split_without_labels_is_one_clear_error(synthetic_root, pixel_runner):
    dataset = CityscapesDataset(synthetic_root, "val")
    unlabelled = [(image, None, sample) for image, _, sample in dataset]
    with pytest.raises(InputError, match="no ground truth"):
        evaluate(pixel_runner, unlabelled)
    with pytest.raises(InputError, match="no images"):
        evaluate(pixel_runner, [])


def test_a_split_without_labelled_pixels_is_refused_not_scored_nan(synthetic_root, pixel_runner):
    dataset = CityscapesDataset(synthetic_root, "val")
    all_ignored = [(image, np.full_like(labels, IGNORE_INDEX), sample) for image, labels, sample in dataset]
    with pytest.raises(InputError, match="no labelled pixels in the split"):
        evaluate(pixel_runner, all_ignored)
