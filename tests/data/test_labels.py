import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels as official_labels

from lrnnet.data import labels


def test_nineteen_training_classes_in_official_order():
    official = sorted((lab for lab in official_labels if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId)
    assert labels.NUM_CLASSES == 19
    assert labels.CLASS_NAMES[0] == "road" and labels.CLASS_NAMES[-1] == "bicycle"
    assert list(labels.CLASS_NAMES) == [lab.name for lab in official]
    assert labels.PALETTE_RGB.tolist() == [list(lab.color) for lab in official]


def test_label_id_to_train_id_matches_every_official_label():
    for lab in official_labels:
        if 0 <= lab.id < 256:
            expected = lab.trainId if 0 <= lab.trainId < 255 else 255
            assert labels.LABEL_ID_TO_TRAIN_ID[lab.id] == expected, lab.name


def test_ids_outside_the_official_table_are_refused_not_ignored():
    # -1 (license plate) cannot be stored in a uint8 PNG; 0..33 are every other id of the table
    assert labels.unknown_label_ids(np.arange(34, dtype=np.uint8)) == []
    assert labels.unknown_label_ids(np.array([[7, 40], [99, 7]], np.uint8)) == [40, 99]
    with pytest.raises(ValueError, match=r"unknown Cityscapes label ids \[40\]"):
        labels.label_ids_to_train_ids(np.array([7, 40], np.uint8))
    assert labels.invalid_train_ids(np.array([0, 18, 255], np.uint8)) == []
    assert labels.invalid_train_ids(np.array([0, 19, 50, 254], np.uint8)) == [19, 50, 254]


def test_train_ids_round_trip_through_label_ids():
    train_ids = np.arange(19, dtype=np.uint8).reshape(1, 19)
    label_ids = labels.train_ids_to_label_ids(train_ids)
    assert label_ids[0, 0] == 7 and label_ids[0, 13] == 26  # road, car: the official ids
    assert np.array_equal(labels.label_ids_to_train_ids(label_ids), train_ids)
    assert labels.train_ids_to_label_ids(np.array([255], np.uint8))[0] == 0
