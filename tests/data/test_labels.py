import numpy as np
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
    # ids not in the table (e.g. 200) are ignored
    assert labels.LABEL_ID_TO_TRAIN_ID[200] == labels.IGNORE_INDEX


def test_train_ids_round_trip_through_label_ids():
    train_ids = np.arange(19, dtype=np.uint8).reshape(1, 19)
    label_ids = labels.train_ids_to_label_ids(train_ids)
    assert label_ids[0, 0] == 7 and label_ids[0, 13] == 26  # road, car: the official ids
    assert np.array_equal(labels.label_ids_to_train_ids(label_ids), train_ids)
    assert labels.train_ids_to_label_ids(np.array([255], np.uint8))[0] == 0
