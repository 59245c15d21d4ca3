"""One Runner interface over TensorRT, ONNX Runtime and PyTorch; the video pipeline; latency statistics.

The backends are imported on first use (`from lrnnet.runtime import TorchRunner` imports torch then),
so `import lrnnet.runtime` stays light and works without TensorRT or CUDA.
"""

from __future__ import annotations

import importlib
from typing import Any

from lrnnet.runtime.factory import BACKENDS, backend_for_path, open_runner
from lrnnet.runtime.latency import (
    PAPER_DEVICE,
    PAPER_FPS,
    PAPER_INPUT_SIZE,
    PAPER_PRECISION,
    summarize_latency,
)
from lrnnet.runtime.runner import Runner

__all__ = [
    "BACKENDS",
    "PAPER_DEVICE",
    "PAPER_FPS",
    "PAPER_INPUT_SIZE",
    "PAPER_PRECISION",
    "OnnxRuntimeRunner",
    "Runner",
    "TensorRTRunner",
    "TorchRunner",
    "backend_for_path",
    "open_runner",
    "summarize_latency",
]

_LAZY = {
    "OnnxRuntimeRunner": "lrnnet.runtime.onnxruntime_runner",
    "TorchRunner": "lrnnet.runtime.torch_runner",
    "TensorRTRunner": "lrnnet.runtime.tensorrt_runner",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lrnnet.runtime' has no attribute {name!r}")
