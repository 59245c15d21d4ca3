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

# labelId -> trainId, IGNORE_INDEX for every non-training label. Only the ids the official table
# defines are valid (0..33 in a uint8 PNG; license plate's -1 never appears in one): the reader refuses
# any other (unknown_label_ids) before this lookup, as cityscapesscripts stops at "Unknown label with id".
LABEL_ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
_IS_LABEL_ID = np.zeros(256, dtype=bool)
for _lab in _CITYSCAPES_LABELS:
    if 0 <= _lab.id < 256:
        _IS_LABEL_ID[_lab.id] = True
        if 0 <= _lab.trainId < IGNORE_INDEX:
            LABEL_ID_TO_TRAIN_ID[_lab.id] = _lab.trainId

_IS_TRAIN_ID = np.zeros(256, dtype=bool)
_IS_TRAIN_ID[:NUM_CLASSES] = True
_IS_TRAIN_ID[IGNORE_INDEX] = True

LABEL_ID = {lab.name: lab.id for lab in _CITYSCAPES_LABELS if lab.id >= 0}
TRAIN_ID = {lab.name: lab.trainId for lab in _TRAIN_LABELS}


def unknown_label_ids(label_ids: np.ndarray) -> list[int]:
    """The values of a uint8 labelIds image that the official table does not define, sorted ([] if none)."""
    return _values_outside(label_ids, _IS_LABEL_ID)


def invalid_train_ids(train_ids: np.ndarray) -> list[int]:
    """The values of a uint8 trainIds image that are neither a class (0..18) nor IGNORE_INDEX, sorted."""
    return _values_outside(train_ids, _IS_TRAIN_ID)


def _values_outside(image: np.ndarray, allowed: np.ndarray) -> list[int]:
    if allowed[image].all():  # one table lookup per pixel; the listing below only for a bad image
        return []
    present = np.bincount(image.ravel(), minlength=256) > 0
    return [int(value) for value in np.flatnonzero(present & ~allowed)]


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """trainIds of a uint8 labelIds image; an id the table does not define is a ValueError, never ignore."""
    unknown = unknown_label_ids(label_ids)
    if unknown:
        raise ValueError(f"unknown Cityscapes label ids {unknown} (the table defines 0..33)")
    return LABEL_ID_TO_TRAIN_ID[label_ids]


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """For the official submission format; ignored pixels become labelId 0 ('unlabeled')."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[:NUM_CLASSES] = TRAIN_ID_TO_LABEL_ID
    return lut[train_ids]
