"""The one Runner interface over every backend (docs/ARCHITECTURE.md; the shape of Polygraphy's runners).

The base class owns everything that is the same for all backends: state checks, input checks
against the model's metadata, timing of each call (`last_infer_ms`), the context manager, and
`predict` (preprocess -> infer -> argmax). A backend implements only `_infer_impl` and
`_close_impl`, so the video pipeline, evaluation and the latency report are written once.

    with open_runner("lrnnet.onnx") as runner:      # lrnnet.runtime.factory picks the backend
        labels = runner.predict([frame_bgr])          # 1 x H x W int32 trainIds at runner.info.input_size
        logits = runner.infer(runner.prepare([frame_bgr]))
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from lrnnet.data.preprocess import preprocess_batch, resize_frame
from lrnnet.errors import InputError
from lrnnet.export.metadata import ModelInfo

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+

__all__ = ["Runner", "check_model_info"]


class Runner(abc.ABC):
    """A loaded model: `infer(batch)` on the raw graph I/O, `predict(frames)` from BGR frames to trainIds.

    Attributes every backend sets: `info` (the ModelInfo metadata), `backend`, `device` (human-readable,
    e.g. "NVIDIA H100 (CUDA)" or "CPU (2 threads)"), `precision` ("fp32", "fp16", "int8").
    `last_infer_ms` is the wall time of the last `infer` call, host array in to host array out, so it
    includes the copies to and from a GPU (what a caller actually waits for).
    """

    backend: str = ""

    def __init__(self, info: ModelInfo, device: str, precision: str | None = None, name: str = "model") -> None:
        check_model_info(info, name)
        self.info = info
        self.device = device
        self.precision = precision or info.precision
        self.name = name
        self.last_infer_ms = float("nan")
        self._closed = False
        self._output_checked = False
        # A backend whose graph has a fixed batch size sets this; predict() then feeds chunks of it.
        self.fixed_batch: int | None = None

    # -- the public interface, written once -------------------------------------------------------

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.info.preprocess_in_graph else np.dtype(np.float32)

    @property
    def outputs_labels(self) -> bool:
        """True when the graph ends in argmax (infer returns N x H x W labels, not logits)."""
        return self.info.argmax_in_graph

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the graph on one batch of its own input layout; logits N x C x H x W float32, or labels."""
        self._check_open()
        batch = self.check_batch(batch)
        start = time.perf_counter()
        output = self._infer_impl(batch)
        self.last_infer_ms = (time.perf_counter() - start) * 1000.0
        if not self._output_checked:  # once: a graph's output shape does not change between calls
            self._check_output(batch, output)
            self._output_checked = True
        return output

    def prepare(self, frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 frames (any size) -> the graph's input batch at the model's input size.

        THE preprocess function when the graph takes normalised floats; resized uint8 BGR NHWC frames
        when preprocessing is in the graph.
        """
        if not len(frames_bgr):
            raise InputError("predict/prepare needs at least one frame")
        size = self.info.input_size
        if self.info.preprocess_in_graph:
            return np.ascontiguousarray(np.stack([resize_frame(f, size) for f in frames_bgr]))
        return preprocess_batch(list(frames_bgr), size)

    def to_labels(self, output: np.ndarray) -> np.ndarray:
        """Graph output -> N x H x W int32 trainIds (argmax over classes unless the graph did it)."""
        if self.outputs_labels:
            labels = output[:, 0] if output.ndim == 4 else output
            return labels.astype(np.int32, copy=False)
        return np.argmax(output, axis=1).astype(np.int32)

    def predict(self, frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 frames -> N x H x W int32 trainIds at `info.input_size` (resize them yourself to show)."""
        frames = list(frames_bgr)
        if not frames:
            raise InputError("predict needs at least one frame")
        step = self.fixed_batch or len(frames)
        results = []
        for start in range(0, len(frames), step):
            chunk = frames[start:start + step]
            batch = self.prepare(chunk)
            if len(chunk) < step:  # a fixed-batch graph: pad the last chunk, drop the padding after
                batch = np.concatenate([batch, np.repeat(batch[-1:], step - len(chunk), axis=0)])
            results.append(self.to_labels(self.infer(batch))[: len(chunk)])
        return results[0] if len(results) == 1 else np.concatenate(results)

    def close(self) -> None:
        if not getattr(self, "_closed", True):  # a constructor that failed early never opened anything
            self._closed = True
            self._close_impl()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:  # release device memory even when a caller forgot close()
        with contextlib.suppress(Exception):  # at interpreter shutdown modules may already be gone
            self.close()

    def __repr__(self) -> str:
        h, w = self.info.input_size
        return (f"{type(self).__name__}({self.name}, backend={self.backend}, device={self.device}, "
                f"precision={self.precision}, input={h}x{w})")

    def describe(self) -> dict[str, Any]:
        """What a report says about the runner."""
        return {"model": self.name, "backend": self.backend, "device": self.device, "precision": self.precision,
                "input_size": list(self.info.input_size), "num_classes": self.info.num_classes,
                "preprocess_in_graph": self.info.preprocess_in_graph, "argmax_in_graph": self.info.argmax_in_graph}

    # -- checks ------------------------------------------------------------------------------------

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """The batch as the graph takes it (contiguous, right dtype), or InputError saying what is wrong."""
        if not isinstance(batch, np.ndarray):
            raise InputError(f"{self.name}: infer takes a numpy array, got {type(batch).__name__}")
        if batch.dtype != self.input_dtype:
            raise InputError(f"{self.name}: input must be {self.input_dtype} ({self.info.input_layout}), "
                             f"got {batch.dtype}")
        nhwc = self.info.preprocess_in_graph
        if batch.ndim != 4 or batch.shape[3 if nhwc else 1] != 3:
            want = "N x H x W x 3" if nhwc else "N x 3 x H x W"
            raise InputError(f"{self.name}: input must be {want} ({self.info.input_layout}), got {batch.shape}")
        n = batch.shape[0]
        h, w = batch.shape[1:3] if nhwc else batch.shape[2:4]
        if self.info.dynamic:
            s = self.info.stride
            if h % s or w % s or h == 0 or w == 0:
                raise InputError(f"{self.name}: input height and width must be positive multiples of {s}, got {h}x{w}")
        elif (h, w) != self.info.input_size:
            raise InputError(f"{self.name}: input must be {self.info.input_height}x{self.info.input_width} "
                             f"(the exported size), got {h}x{w}")
        if self.fixed_batch is not None and n != self.fixed_batch:
            raise InputError(f"{self.name}: the graph takes batches of {self.fixed_batch}, got {n}")
        if n < 1:
            raise InputError(f"{self.name}: empty batch")
        return np.ascontiguousarray(batch)

    def _check_output(self, batch: np.ndarray, output: np.ndarray) -> None:
        """The output must be per-class logits (or a label map) per image, or this is another model.

        The spatial size is not checked: LRNNet returns its input's size, but a graph that leaves the
        final upsampling to the caller is still a segmentation model.
        """
        n, shape = batch.shape[0], tuple(output.shape)
        if self.outputs_labels:
            ok = len(shape) == 3 and shape[0] == n or len(shape) == 4 and shape[:2] == (n, 1)
            want = f"labels {n} x H x W"
        else:
            ok = len(shape) == 4 and shape[:2] == (n, self.info.num_classes)
            want = f"logits {n} x {self.info.num_classes} x H x W"
        if not ok:
            raise InputError(f"{self.name} is not a segmentation model for this input: it returned shape "
                             f"{shape}, expected {want} (metadata: {self.info.num_classes} classes)")

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} for {self.name} is closed")

    # -- what a backend implements -----------------------------------------------------------------

    @abc.abstractmethod
    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        """Run one checked, contiguous batch; return a host numpy array (float32 logits or int32 labels)."""

    def _close_impl(self) -> None:
        """Release sessions, engines, device memory. Called once."""


def check_model_info(info: ModelInfo, source: str) -> None:
    """Reject metadata that cannot describe a segmentation model: the one schema, ModelInfo.validate."""
    if not isinstance(info, ModelInfo):
        raise InputError(f"{source}: expected ModelInfo metadata, got {type(info).__name__}")
    info.validate(source)
