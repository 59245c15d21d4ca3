"""The deploy wrapper: in-graph preprocessing is THE preprocess function; argmax gives int32 labels."""

from __future__ import annotations

import numpy as np
import torch

from lrnnet.data.preprocess import preprocess
from lrnnet.export.metadata import LAYOUT_NCHW_FLOAT, LAYOUT_NHWC_UINT8_BGR
from lrnnet.export.wrapper import DeployWrapper


class _Probe(torch.nn.Module):
    """A stand-in for the model: returns its input, so the wrapper's own work is what is compared."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)


def test_in_graph_normalisation_is_bit_identical_to_preprocess():
    frames = _frames(2, 8, 16)
    wrapper = DeployWrapper(_Probe(), preprocess_in_graph=True)
    got = wrapper(torch.from_numpy(frames)).numpy()
    expected = np.concatenate([preprocess(frame, (8, 16)) for frame in frames])
    assert got.dtype == np.float32 and got.shape == (2, 3, 8, 16)
    np.testing.assert_array_equal(got, expected)


def test_every_uint8_value_normalises_like_preprocess():
    # All 256 values in every channel: the channel order and both constants are checked everywhere.
    values = np.arange(256, dtype=np.uint8)
    frame = np.stack([values, values[::-1], np.roll(values, 85)], axis=-1).reshape(16, 16, 3)
    got = DeployWrapper(_Probe(), preprocess_in_graph=True)(torch.from_numpy(frame[None])).numpy()
    np.testing.assert_array_equal(got, preprocess(frame, (16, 16)))


def test_argmax_outputs_int32_labels():
    logits = torch.randn(2, 5, 4, 6, generator=torch.Generator().manual_seed(0))
    labels = DeployWrapper(_Probe(), argmax=True)(logits)
    assert labels.dtype == torch.int32 and labels.shape == (2, 4, 6)
    np.testing.assert_array_equal(labels.numpy(), logits.numpy().argmax(axis=1))


def test_plain_wrapper_is_the_model():
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(DeployWrapper(_Probe())(x), x)


def test_layout_names_follow_the_flag():
    assert DeployWrapper(_Probe()).input_layout == LAYOUT_NCHW_FLOAT
    assert DeployWrapper(_Probe(), preprocess_in_graph=True).input_layout == LAYOUT_NHWC_UINT8_BGR
