"""Training data: augmentation, THE normalisation, deterministic order, the synthetic tree."""

import json

import numpy as np
import pytest

from lrnnet.data.cityscapes import CityscapesDataset
from lrnnet.data.labels import IGNORE_INDEX
from lrnnet.data.preprocess import preprocess, resize_frame, resize_labels
from lrnnet.errors import InputError
from lrnnet.train.data import (
    SYNTHETIC_MARKER,
    EpochBatches,
    TrainingSet,
    augment,
    epoch_order,
    prepare_synthetic,
)


@pytest.fixture(scope="module")
def split(synthetic_root):
    return CityscapesDataset(synthetic_root, "train")


def test_at_scale_one_a_training_input_is_exactly_the_inference_input(split):
    # No flip, scale 1, crop = size: the tensor must equal what inference feeds the model.
    size = (64, 128)
    sample = TrainingSet(split, size, size, scale_range=(1.0, 1.0), flip=False, seed=0)[(0, 3)]
    image, labels, _ = split[3]
    np.testing.assert_array_equal(sample[0].numpy(), preprocess(image, size)[0])
    np.testing.assert_array_equal(sample[1].numpy(), resize_labels(labels, size))
    assert sample[0].dtype.is_floating_point and str(sample[1].dtype) == "torch.int64"


def test_small_scales_pad_with_ignore(split):
    image, labels, _ = split[0]
    size = (64, 128)
    crop_image, crop_labels = augment(image, labels, size, size, (0.5, 0.5), False, np.random.default_rng(0))
    assert crop_image.shape == (64, 128, 3) and crop_labels.shape == (64, 128)
    assert np.all(crop_labels[32:] == IGNORE_INDEX) and np.all(crop_labels[:, 64:] == IGNORE_INDEX)
    np.testing.assert_array_equal(crop_labels[:32, :64], resize_labels(labels, (32, 64)))
    np.testing.assert_array_equal(crop_image[:32, :64], resize_frame(image, (32, 64)))


def test_crops_keep_only_source_labels(split):
    image, labels, _ = split[1]
    allowed = set(np.unique(labels)) | {IGNORE_INDEX}
    for seed in range(5):
        crop_image, crop_labels = augment(image, labels, (128, 256), (64, 96), (0.5, 2.0), True,
                                          np.random.default_rng(seed))
        assert crop_image.shape == (64, 96, 3) and crop_labels.shape == (64, 96)
        assert set(np.unique(crop_labels)) <= allowed


def test_flip_mirrors_image_and_labels_together(split):
    image, labels, _ = split[2]
    outcomes = set()
    for seed in range(8):
        plain = augment(image, labels, (64, 128), (64, 128), (1.0, 1.0), False, np.random.default_rng(seed))
        maybe = augment(image, labels, (64, 128), (64, 128), (1.0, 1.0), True, np.random.default_rng(seed))
        if np.array_equal(maybe[1], plain[1]) and np.array_equal(maybe[0], plain[0]):
            outcomes.add("kept")
        else:
            np.testing.assert_array_equal(maybe[0], plain[0][:, ::-1])
            np.testing.assert_array_equal(maybe[1], plain[1][:, ::-1])
            outcomes.add("flipped")
    assert outcomes == {"kept", "flipped"}


def test_augmentation_depends_only_on_seed_epoch_and_index(split):
    make = lambda seed: TrainingSet(split, (64, 128), (32, 64), seed=seed)
    a, b = make(0)[(1, 2)], make(0)[(1, 2)]
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b))
    assert not np.array_equal(a[0].numpy(), make(0)[(2, 2)][0].numpy())  # another epoch, another draw
    assert not np.array_equal(a[0].numpy(), make(1)[(1, 2)][0].numpy())  # another seed


def test_epoch_batches_are_full_distinct_and_resumable():
    batches = list(EpochBatches(10, 3, seed=0, epoch=4))
    assert len(batches) == 3 == len(EpochBatches(10, 3, 0, 4))
    keys = [key for batch in batches for key in batch]
    assert all(len(batch) == 3 for batch in batches) and len(set(keys)) == 9
    assert {epoch for epoch, _ in keys} == {4}
    assert [index for _, index in keys] == list(epoch_order(10, 0, 4)[:9])
    assert list(EpochBatches(10, 3, seed=0, epoch=4, start=1)) == batches[1:]
    assert not np.array_equal(epoch_order(10, 0, 4), epoch_order(10, 0, 5))


def test_prepare_synthetic_reuses_its_own_tree_and_refuses_others(tmp_path):
    root = prepare_synthetic(tmp_path / "s", (32, 64), {"train": 2, "val": 1}, seed=0)
    assert len(CityscapesDataset(root, "train")) == 2 and len(CityscapesDataset(root, "val")) == 1
    marker = json.loads((root / SYNTHETIC_MARKER).read_text())
    assert marker["size"] == [32, 64]
    before = (root / SYNTHETIC_MARKER).stat().st_mtime_ns
    assert prepare_synthetic(root, (32, 64), {"train": 2, "val": 1}, seed=0) == root
    assert (root / SYNTHETIC_MARKER).stat().st_mtime_ns == before  # reused, not rewritten
    with pytest.raises(InputError, match="other settings"):
        prepare_synthetic(root, (64, 128), {"train": 2, "val": 1}, seed=0)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("not yours")
    with pytest.raises(InputError, match="not empty"):
        prepare_synthetic(tmp_path / "data", (32, 64), {"train": 2, "val": 1}, seed=0)


def test_labels_of_another_size_than_their_image_are_refused(tmp_path):
    """As lrnnet-eval refuses them: stretched to the image they would teach the wrong pixels."""
    import cv2

    root = prepare_synthetic(tmp_path / "tree", (32, 64), {"train": 2, "val": 1}, seed=0)
    label = next((root / "gtFine" / "train").rglob("*_labelIds.png"))
    cv2.imwrite(str(label), cv2.resize(cv2.imread(str(label), cv2.IMREAD_UNCHANGED), (16, 8),
                                       interpolation=cv2.INTER_NEAREST))
    dataset = CityscapesDataset(root, "train")
    index = next(i for i, sample in enumerate(dataset.samples) if sample.label_path == label)
    with pytest.raises(InputError, match="is 16x8 but its image .* is 64x32; the ground truth must match its image"):
        TrainingSet(dataset, (32, 64), (32, 64))[(0, index)]
