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

__all__ = ["Runner", "check_model_info", "class_argmax"]


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
        self._runs_by_shape: dict[tuple[int, ...], int] = {}
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
        self._runs_by_shape[batch.shape] = self._runs_by_shape.get(batch.shape, 0) + 1
        if not self._output_checked:  # once: a graph's output shape does not change between calls
            self._check_output(batch, output)
            self._output_checked = True
        return output

    def runs_at(self, shape: tuple[int, ...]) -> int:
        """How many `infer` calls this runner has made on batches of `shape` (lazy set-up and autotuning
        happen per shape, so a runner that has run a shape before is warm for it)."""
        return self._runs_by_shape.get(tuple(shape), 0)

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
        return class_argmax(output)

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


_ARGMAX_CHUNK_BYTES = 1 << 19  # one class plane's rows per step: the running maximum stays in the core's cache


def class_argmax(logits: np.ndarray) -> np.ndarray:
    """N x C x H x W logits -> N x H x W int32 class ids: `np.argmax(logits, axis=1)`, the same ids (first of
    equal maxima, NaN as np.argmax takes it), 1.6-1.8x faster at video sizes.

    np.argmax over the class axis walks C values spaced H x W apart for every pixel; this keeps a running
    maximum over a few rows at a time and compares it with each class plane in turn, contiguous reads only.
    It runs on the inference thread of every frame (4 ms of ~50 at 256x512 here, 20 ms at 512x1024).
    """
    if logits.ndim != 4 or logits.shape[1] < 2 or logits.dtype.kind != "f":
        return np.argmax(logits, axis=1).astype(np.int32)
    batch, classes, height, width = logits.shape
    rows = max(1, _ARGMAX_CHUNK_BYTES // (width * logits.itemsize))
    labels = np.zeros((batch, height, width), dtype=np.int32)
    best = np.empty((rows, width), dtype=logits.dtype)
    greater = np.empty((rows, width), dtype=bool)
    for image, image_labels in zip(logits, labels):
        for top in range(0, height, rows):
            bottom = min(height, top + rows)
            running, mask, out = best[: bottom - top], greater[: bottom - top], image_labels[top:bottom]
            np.copyto(running, image[0, top:bottom])
            for index in range(1, classes):
                plane = image[index, top:bottom]
                np.greater(plane, running, out=mask)  # strictly: the first of equal maxima wins, as in np.argmax
                np.maximum(running, plane, out=running)
                np.putmask(out, mask, index)
            if np.isnan(running).any():  # np.argmax answers the first NaN; a running maximum cannot
                out[...] = np.argmax(image[:, top:bottom], axis=0)
    return labels


def check_model_info(info: ModelInfo, source: str) -> None:
    """Reject metadata that cannot describe a segmentation model: the one schema, ModelInfo.validate."""
    if not isinstance(info, ModelInfo):
        raise InputError(f"{source}: expected ModelInfo metadata, got {type(info).__name__}")
    info.validate(source)
