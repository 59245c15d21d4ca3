"""Helpers of the evaluation tests (importable by tests and benchmarks): a Runner needing no trained network."""

from __future__ import annotations

import numpy as np

from lrnnet.data.labels import NUM_CLASSES
from lrnnet.export.metadata import ModelInfo
from lrnnet.runtime.runner import Runner


class PixelClassifierRunner(Runner):
    """A Runner (the real base class: prepare, predict, checks) whose graph is a fixed random 1x1 conv.

    Its predictions vary over the image and cover many classes, so the confusion matrix is not
    trivial, and it runs in microseconds without a network, ONNX Runtime or the export stage.
    """

    backend = "numpy"

    def __init__(self, size: tuple[int, int] = (64, 128), seed: int = 0) -> None:
        super().__init__(ModelInfo(input_height=size[0], input_width=size[1], stride=8), device="CPU",
                         name="pixel-classifier")
        rng = np.random.default_rng(seed)
        self.weight = rng.normal(size=(NUM_CLASSES, 3)).astype(np.float32)
        self.bias = rng.normal(size=(NUM_CLASSES, 1, 1)).astype(np.float32)

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return np.einsum("kc,nchw->nkhw", self.weight, batch) + self.bias
