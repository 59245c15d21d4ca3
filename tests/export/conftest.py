"""The oracle of the export tests: PyTorch (THE preprocess function + the checkpoint's model, power SVD).

Independent of the exporter's own verification: other images (a synthetic street video), the
model loaded afresh from the checkpoint, and no DeployWrapper on the PyTorch side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from lrnnet.data.preprocess import preprocess, resize_frame
from lrnnet.data.synthetic import synthetic_video_frames


@dataclass
class Comparison:
    max_rel: float  # max |onnx - torch| / max |torch| over the batch
    agreement: float  # fraction of pixels with the same argmax class


@dataclass
class Oracle:
    model: torch.nn.Module  # the tiny checkpoint in PyTorch, power-iteration SVD (the exported form)

    @staticmethod
    def frames(size: tuple[int, int], n: int, seed: int = 7) -> list[np.ndarray]:
        """``n`` BGR street frames of ``size``, five frames apart (cars and people move between them)."""
        return [frame for frame, _ in synthetic_video_frames(size, 5 * n, seed=seed)][::5]

    def logits(self, frames: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
        batch = np.concatenate([preprocess(frame, size) for frame in frames])
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch)).numpy()

    @staticmethod
    def run_onnx(path, feed: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: feed})[0]

    @staticmethod
    def onnx_input(frames: list[np.ndarray], size: tuple[int, int], uint8_nhwc: bool = False) -> np.ndarray:
        if uint8_nhwc:
            return np.stack([resize_frame(frame, size) for frame in frames])
        return np.concatenate([preprocess(frame, size) for frame in frames])

    def compare(self, path, size: tuple[int, int], n: int = 1, uint8_nhwc: bool = False) -> Comparison:
        """ONNX Runtime on ``path`` vs PyTorch on ``n`` street frames of ``size``."""
        frames = self.frames(size, n)
        got = self.run_onnx(path, self.onnx_input(frames, size, uint8_nhwc))
        expected = self.logits(frames, size)
        assert got.shape == expected.shape and got.dtype == np.float32
        rel = float(np.abs(got - expected).max() / np.abs(expected).max())
        return Comparison(rel, float((got.argmax(1) == expected.argmax(1)).mean()))


@pytest.fixture(scope="session")
def reference_model(tiny_checkpoint) -> torch.nn.Module:
    """The tiny checkpoint in PyTorch, power-iteration SVD; never modified by a test."""
    from lrnnet.models import load_checkpoint

    return load_checkpoint(tiny_checkpoint, svd="power")


@pytest.fixture(scope="session")
def oracle(reference_model) -> Oracle:
    return Oracle(reference_model)
