"""The Cityscapes label table, read from cityscapesscripts (the official definition), never retyped."""

from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

IGNORE_INDEX = 255

_TRAIN_LABELS = sorted((lab for lab in _CITYSCAPES_LABELS if 0 <= lab.trainId < IGNORE_INDEX), key=lambda lab: lab.trainId)

NUM_CLASSES = len(_TRAIN_LABELS)
CLASS_NAMES: tuple[str, ...] = tuple(lab.name for lab in _TRAIN_LABELS)
# RGB, as cityscapesscripts gives it; index = trainId.
PALETTE_RGB = np.array([lab.color for lab in _TRAIN_LABELS], dtype=np.uint8)
TRAIN_ID_TO_LABEL_ID = np.array([lab.id for lab in _TRAIN_LABELS], dtype=np.uint8)

# labelId (0..255 as stored in *_gtFine_labelIds.png) -> trainId, IGNORE_INDEX for every non-training label.
LABEL_ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _lab in _CITYSCAPES_LABELS:
    if 0 <= _lab.id < 256 and 0 <= _lab.trainId < IGNORE_INDEX:
        LABEL_ID_TO_TRAIN_ID[_lab.id] = _lab.trainId

LABEL_ID = {lab.name: lab.id for lab in _CITYSCAPES_LABELS if lab.id >= 0}
TRAIN_ID = {lab.name: lab.trainId for lab in _TRAIN_LABELS}


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    return LABEL_ID_TO_TRAIN_ID[label_ids]


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """For the official submission format; ignored pixels become labelId 0 ('unlabeled')."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[:NUM_CLASSES] = TRAIN_ID_TO_LABEL_ID
    return lut[train_ids]
