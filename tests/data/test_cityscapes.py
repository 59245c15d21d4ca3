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


def _copy_of(synthetic_root, tmp_path):
    root = tmp_path / "cs"
    shutil.copytree(synthetic_root, root)
    return root


def _first_val_label(root):
    return min((root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))


def test_unknown_label_ids_are_refused_naming_file_and_ids(synthetic_root, tmp_path):
    import cv2

    root = _copy_of(synthetic_root, tmp_path)
    label = _first_val_label(root)
    ids = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    ids[: ids.shape[0] // 2] = 40
    ids[0, 0] = 99
    cv2.imwrite(str(label), ids)
    with pytest.raises(InputError, match=rf"{label.name} holds unknown ids 40, 99; .*labelIds 0..33"):
        CityscapesDataset(root, "val")[0]


def test_train_ids_outside_the_classes_are_refused_where_read(synthetic_root, tmp_path):
    import cv2

    root = _copy_of(synthetic_root, tmp_path)
    label = _first_val_label(root)
    train_ids = LABEL_ID_TO_TRAIN_ID[cv2.imread(str(label), cv2.IMREAD_UNCHANGED)]
    train_ids[0, :3] = 50
    train_path = label.with_name(label.name.replace("_labelIds.png", "_labelTrainIds.png"))
    cv2.imwrite(str(train_path), train_ids)
    label.unlink()
    with pytest.raises(InputError, match=rf"{train_path.name} holds unknown ids 50; trainIds are 0..18 and 255"):
        CityscapesDataset(root, "val")[0]


def test_sixteen_bit_labels_are_refused_not_wrapped(synthetic_root, tmp_path):
    import cv2

    root = _copy_of(synthetic_root, tmp_path)
    label = _first_val_label(root)
    ids = cv2.imread(str(label), cv2.IMREAD_UNCHANGED).astype(np.uint16) + 256  # 7 + 256 would wrap to 7
    cv2.imwrite(str(label), ids)
    with pytest.raises(InputError, match=rf"{label.name} is 16- or 32-bit; expected an 8-bit single-channel"):
        CityscapesDataset(root, "val")[0]


def test_palette_labels_are_read_as_their_indices_and_colour_labels_refused(synthetic_root, tmp_path):
    import cv2
    from PIL import Image

    root = _copy_of(synthetic_root, tmp_path)
    label = _first_val_label(root)
    ids = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    expected = CityscapesDataset(root, "val")[0][1]
    palette_image = Image.fromarray(ids, mode="L").convert("P")  # identity palette: index = grey = id
    palette_image.putpalette(np.random.default_rng(0).integers(0, 256, 768, dtype=np.uint8).tolist())
    palette_image.save(label)
    assert Image.open(label).mode == "P"
    assert np.array_equal(CityscapesDataset(root, "val")[0][1], expected)
    cv2.imwrite(str(label), np.dstack([ids, ids, ids]))
    with pytest.raises(InputError, match=rf"{label.name} is mode RGB; expected an 8-bit single-channel"):
        CityscapesDataset(root, "val")[0]


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


def test_ground_truth_without_its_image_is_refused_with_counts(synthetic_root, tmp_path):
    root = _copy_of(synthetic_root, tmp_path)
    shutil.rmtree(root / "leftImg8bit" / "val" / "synth1")
    with pytest.raises(InputError, match=r"2 of 4 ground-truth files in .*gtFine/val have no image, e.g. "
                                         r".*synth1_.*_gtFine_labelIds.png: expected .*leftImg8bit/val/synth1/"):
        CityscapesDataset(root, "val")
    assert len(CityscapesDataset(root, "val", require_labels=False)) == 2  # calibration needs no labels


def test_images_without_their_ground_truth_are_counted(synthetic_root, tmp_path):
    root = _copy_of(synthetic_root, tmp_path)
    _first_val_label(root).unlink()
    with pytest.raises(InputError, match=r"no ground truth for 1 of 4 val images, e.g. .*synth0_"):
        CityscapesDataset(root, "val")


def test_images_outside_a_city_folder_are_refused_not_skipped(synthetic_root, tmp_path):
    root = _copy_of(synthetic_root, tmp_path)
    image = min((root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png"))
    image.rename(image.parent.parent / image.name)
    for require_labels in (True, False):
        with pytest.raises(InputError, match=rf"1 images lie directly in .*leftImg8bit/val, outside a city "
                                             rf"folder, e.g. .*{image.name}"):
            CityscapesDataset(root, "val", require_labels=require_labels)


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
