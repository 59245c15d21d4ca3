"""The calibration reader: a deterministic subset across cities, streamed through THE preprocess function."""

from __future__ import annotations

import numpy as np
import pytest

from lrnnet.calib.reader import CityscapesCalibrationReader, calibration_digest, select_calibration_samples
from lrnnet.data.cityscapes import read_image
from lrnnet.data.preprocess import preprocess, resize_frame
from lrnnet.errors import InputError
from lrnnet.export.metadata import LAYOUT_NHWC_UINT8_BGR, ModelInfo

INFO = ModelInfo(input_height=64, input_width=128, stride=8)


def test_subset_is_deterministic_and_alternates_cities(synthetic_root):
    chosen = select_calibration_samples(synthetic_root, 4)
    assert chosen == select_calibration_samples(synthetic_root, 4)
    assert chosen[0].city != chosen[1].city
    assert all("/train/" in s.image_path.as_posix() for s in chosen)
    assert calibration_digest(chosen, synthetic_root) == calibration_digest(chosen, synthetic_root)
    assert calibration_digest(chosen, synthetic_root) != calibration_digest(chosen[:3], synthetic_root)


def test_reader_streams_preprocessed_images_one_at_a_time(synthetic_root):
    samples = select_calibration_samples(synthetic_root, 3)
    reader = CityscapesCalibrationReader(samples, INFO, "input")
    assert len(reader) == 3 and reader.images_read == 0  # nothing read up front
    first = reader.get_next()
    assert reader.images_read == 1
    np.testing.assert_array_equal(first["input"], preprocess(read_image(samples[0].image_path), (64, 128)))
    assert reader.get_next() is not None and reader.get_next() is not None and reader.get_next() is None
    reader.set_range(1, 2)  # ONNX Runtime's chunked calibration
    np.testing.assert_array_equal(reader.get_next()["input"], preprocess(read_image(samples[1].image_path), (64, 128)))
    assert reader.get_next() is None


def test_reader_feeds_uint8_when_the_graph_preprocesses(synthetic_root):
    info = ModelInfo(input_height=64, input_width=128, stride=8, input_layout=LAYOUT_NHWC_UINT8_BGR,
                     preprocess_in_graph=True)
    samples = select_calibration_samples(synthetic_root, 1)
    batch = CityscapesCalibrationReader(samples, info, "input").get_next()["input"]
    assert batch.dtype == np.uint8 and batch.shape == (1, 64, 128, 3)
    np.testing.assert_array_equal(batch[0], resize_frame(read_image(samples[0].image_path), (64, 128)))


def test_reader_batches(synthetic_root):
    reader = CityscapesCalibrationReader(select_calibration_samples(synthetic_root, 5), INFO, "input", batch=2)
    assert len(reader) == 2  # the fifth image does not fill a batch
    assert reader.get_next()["input"].shape == (2, 3, 64, 128)


def test_empty_or_missing_calibration_folder(tmp_path):
    with pytest.raises(InputError, match="no images for split 'train'"):
        select_calibration_samples(tmp_path, 10)
    with pytest.raises(InputError, match="does not exist"):
        select_calibration_samples(tmp_path / "absent", 10)
