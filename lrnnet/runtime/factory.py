"""Which backend runs a model file, and opening it: the one place that knows every backend.

Kept apart from `runner.py` so the Runner base class imports no backend and every backend imports
only the base (no import circle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lrnnet._io import check_input
from lrnnet.errors import InputError
from lrnnet.log import logger
from lrnnet.runtime.runner import Runner

__all__ = ["BACKENDS", "MODEL_SUFFIXES", "backend_for_path", "open_runner", "resolve_backend"]

BACKENDS = ("tensorrt", "onnxruntime", "torch")
# File type -> backend, the rule of backend="auto".
MODEL_SUFFIXES = {".engine": "tensorrt", ".plan": "tensorrt", ".onnx": "onnxruntime", ".pth": "torch", ".pt": "torch"}


def backend_for_path(path: str | Path) -> str:
    """The backend that `auto` picks for a file, by its type."""
    suffix = Path(path).suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise InputError(f"{path}: unknown model type '{suffix or '(no suffix)'}'; expected "
                         f"{', '.join(sorted(MODEL_SUFFIXES))}")
    return MODEL_SUFFIXES[suffix]


def resolve_backend(path: str | Path, backend: str = "auto") -> str:
    """The backend that runs `path`: its file type's for "auto", else `backend` if it can run that file type."""
    if backend not in ("auto", *BACKENDS):
        raise InputError(f"unknown backend '{backend}'; choose one of auto, {', '.join(BACKENDS)}")
    chosen = backend_for_path(path) if backend == "auto" else backend
    if backend != "auto" and MODEL_SUFFIXES.get(Path(path).suffix.lower(), chosen) != chosen:
        raise InputError(f"backend '{backend}' cannot run {path} (a {Path(path).suffix} file is for "
                         f"'{MODEL_SUFFIXES[Path(path).suffix.lower()]}')")
    return chosen


def open_runner(path: str | Path, backend: str = "auto", device: str | None = None, **options: Any) -> Runner:
    """Load a model file with the backend that runs it: .engine -> TensorRT, .onnx -> ONNX Runtime, .pth -> PyTorch.

    `device`: None picks the best available ("cuda" when there is a GPU, else "cpu"); "cpu", "cuda",
    "cuda:N"; for onnxruntime also "tensorrt" (the TensorRT execution provider).
    `options` go to the backend (see each runner's constructor), e.g. `size=(512, 1024)`, `fp16=False`,
    `cuda_graph=True`, `compile=True` for torch; `threads=2` for onnxruntime.
    Bad files fail with one InputError: missing, not a model, no lrnnet metadata, wrong classes/size.
    """
    if backend not in ("auto", *BACKENDS):
        raise InputError(f"unknown backend '{backend}'; choose one of auto, {', '.join(BACKENDS)}")
    path = check_input(path, "model file")
    chosen = resolve_backend(path, backend)
    if chosen == "tensorrt":
        from lrnnet.runtime.tensorrt_runner import TensorRTRunner

        runner: Runner = TensorRTRunner(path, device=device, **options)
    elif chosen == "onnxruntime":
        from lrnnet.runtime.onnxruntime_runner import OnnxRuntimeRunner

        runner = OnnxRuntimeRunner(path, device=device, **options)
    else:
        from lrnnet.runtime.torch_runner import TorchRunner

        runner = TorchRunner(checkpoint=path, device=device, **options)
    if backend == "auto":
        logger.info("Runner: %s", runner)
    return runner
