"""Fixtures of the evaluation tests: a real Runner whose predictions need no trained network."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2
import pytest

from lrnnet.data.labels import LABEL_ID

# The helpers live beside this file.
sys.path.insert(0, str(Path(__file__).parent))
from eval_helpers import PixelClassifierRunner


@pytest.fixture
def pixel_runner() -> PixelClassifierRunner:
    return PixelClassifierRunner()


@pytest.fixture(scope="module")
def val_with_ignore(synthetic_root, tmp_path_factory) -> Path:
    """The synthetic tree with ignored ground truth painted in: 'unlabeled' and 'ego vehicle' bands.

    The synthetic scenes label every pixel with a training class; real Cityscapes has ignored pixels
    (ego vehicle, unlabeled, rectification border), which the metrics must skip.
    """
    root = tmp_path_factory.mktemp("cs_ignore") / "cityscapes"
    shutil.copytree(synthetic_root, root)
    for path in sorted((root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png")):
        label_ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        height = label_ids.shape[0]
        label_ids[-height // 8:, :] = LABEL_ID["ego vehicle"]
        label_ids[: height // 16, : label_ids.shape[1] // 3] = LABEL_ID["unlabeled"]
        cv2.imwrite(str(path), label_ids)
    return root


