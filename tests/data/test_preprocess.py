import cv2
import numpy as np
import pytest

from lrnnet.data import colorize, overlay, preprocess, preprocess_batch, resize_labels
from lrnnet.data.labels import PALETTE_RGB
from lrnnet.data.preprocess import MEAN_RGB, STD_RGB


def test_shape_dtype_and_resize():
    frame = np.random.default_rng(0).integers(0, 256, size=(100, 200, 3), dtype=np.uint8)
    out = preprocess(frame, (64, 128))
    assert out.shape == (1, 3, 64, 128) and out.dtype == np.float32 and out.flags.c_contiguous


def test_bgr_to_rgb_and_imagenet_normalisation():
    frame = np.zeros((8, 16, 3), dtype=np.uint8)
    frame[..., 0] = 255  # pure blue in BGR
    out = preprocess(frame, (8, 16))
    expected_rgb = [(0 - MEAN_RGB[0]) / STD_RGB[0], (0 - MEAN_RGB[1]) / STD_RGB[1], (1 - MEAN_RGB[2]) / STD_RGB[2]]
    np.testing.assert_allclose(out[0, :, 0, 0], expected_rgb, rtol=1e-5)


@pytest.mark.parametrize(("shape", "size"), [((128, 256, 3), (256, 512)), ((96, 200, 3), (40, 72)), ((9, 9, 3), (9, 9))])
def test_every_pixel_is_the_float64_formula(shape, size):
    """Oracle: ((rgb / 255) - mean) / std in float64, per pixel and channel, of the resized frame (random pixels:
    a channel or pixel out of place shows)."""
    frame = np.random.default_rng(3).integers(0, 256, size=shape, dtype=np.uint8)
    resized = frame if shape[:2] == size else cv2.resize(
        frame, size[::-1], interpolation=cv2.INTER_AREA if shape[0] > size[0] else cv2.INTER_LINEAR)
    rgb = resized[:, :, ::-1].astype(np.float64) / 255.0
    expected = ((rgb - np.array(MEAN_RGB)) / np.array(STD_RGB)).transpose(2, 0, 1)[None]
    out = preprocess(frame, size)
    assert out.shape == expected.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(preprocess_batch([frame, frame], size), np.concatenate([out, out]))


def test_batch_stacks_frames():
    frames = [np.full((10, 20, 3), v, np.uint8) for v in (0, 128)]
    out = preprocess_batch(frames, (8, 16))
    assert out.shape == (2, 3, 8, 16)
    assert not np.allclose(out[0], out[1])


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                                 np.zeros((8, 8, 4), np.uint8)])
def test_rejects_non_bgr_uint8(bad):
    with pytest.raises(ValueError, match="BGR uint8"):
        preprocess(bad, (8, 8))


def test_colorize_uses_palette_in_bgr_and_blacks_out_ignore():
    ids = np.array([[0, 13, 255]], dtype=np.uint8)
    color = colorize(ids)
    assert color[0, 0].tolist() == PALETTE_RGB[0][::-1].tolist()
    assert color[0, 1].tolist() == PALETTE_RGB[13][::-1].tolist()
    assert color[0, 2].tolist() == [0, 0, 0]


def test_overlay_resizes_labels_nearest_and_blends():
    frame = np.full((20, 40, 3), 100, np.uint8)
    ids = np.zeros((10, 20), np.uint8)
    ids[:, 10:] = 13
    out = overlay(frame, ids, alpha=0.5)
    assert out.shape == frame.shape
    car_bgr = PALETTE_RGB[13][::-1].astype(float)
    np.testing.assert_allclose(out[0, 39], 0.5 * 100 + 0.5 * car_bgr, atol=1)
    assert set(np.unique(resize_labels(ids, (20, 40)))) == {0, 13}
