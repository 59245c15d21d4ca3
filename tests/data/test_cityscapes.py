import shutil

import numpy as np
import pytest

from lrnnet.data import (
    CityscapesDataset,
    demo_video_sequences,
    spread_across_cities,
    write_synthetic_demo_video,
)
from lrnnet.data.labels import LABEL_ID_TO_TRAIN_ID
from lrnnet.errors import InputError


def test_reader_pairs_generated_tree(synthetic_root):
    train = CityscapesDataset(synthetic_root, "train")
    val = CityscapesDataset(synthetic_root, "val")
    assert (len(train), len(val)) == (8, 4)
    assert train.cities == ["synth0", "synth1"]
    for sample in train.samples:
        assert sample.label_path.name == f"{sample.stem}_gtFine_labelIds.png"
        assert sample.image_path.parent.name == sample.city and sample.stem.startswith(sample.city + "_")
    image, train_ids, sample = val[0]
    assert image.shape == (128, 256, 3) and image.dtype == np.uint8
    assert train_ids.shape == (128, 256) and train_ids.dtype == np.uint8
    assert set(np.unique(train_ids)) <= set(range(19))
    assert {0, 10} <= set(np.unique(train_ids))  # road and sky in every scene


def test_label_train_ids_png_is_accepted(synthetic_root, tmp_path):
    import cv2

    root = tmp_path / "cs"
    shutil.copytree(synthetic_root, root)
    for label in (root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"):
        train_ids = LABEL_ID_TO_TRAIN_ID[cv2.imread(str(label), cv2.IMREAD_UNCHANGED)]
        cv2.imwrite(str(label).replace("_labelIds.png", "_labelTrainIds.png"), train_ids)
        label.unlink()
    original = CityscapesDataset(synthetic_root, "val")
    converted = CityscapesDataset(root, "val")
    assert converted.samples[0].label_is_train_ids
    assert np.array_equal(original[0][1], converted[0][1])


def test_missing_labels_and_bad_roots(synthetic_root, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        CityscapesDataset(tmp_path / "nope")
    with pytest.raises(InputError, match=r"not a Cityscapes tree.*leftImg8bit/val/<city>"):
        CityscapesDataset(tmp_path)
    with pytest.raises(InputError, match="unknown split"):
        CityscapesDataset(synthetic_root, "training")
    root = tmp_path / "cs"
    shutil.copytree(synthetic_root, root)
    shutil.rmtree(root / "gtFine" / "val")
    with pytest.raises(InputError, match="no ground truth"):
        CityscapesDataset(root, "val")
    assert len(CityscapesDataset(root, "val", require_labels=False)) == 4


def test_spread_across_cities_is_round_robin_and_deterministic(synthetic_root):
    samples = CityscapesDataset(synthetic_root, "train").samples
    chosen = spread_across_cities(samples, 5)
    assert [s.city for s in chosen] == ["synth0", "synth1", "synth0", "synth1", "synth0"]
    assert chosen == spread_across_cities(samples, 5)
    assert len(spread_across_cities(samples, 100)) == 8


def test_demo_video_sequences(tmp_path):
    with pytest.raises(InputError, match="demoVideo"):
        demo_video_sequences(tmp_path)
    write_synthetic_demo_video(tmp_path, "seq_00", size=(32, 64), frames=3)
    sequences = demo_video_sequences(tmp_path)
    assert list(sequences) == ["seq_00"] and len(sequences["seq_00"]) == 3
