"""Does the ONNX graph compute what PyTorch computes? ONNX Runtime (CPU) vs PyTorch on structured images.

Test images are structured, not noise, because segmentation logits on noise say little about
real frames: synthetic street scenes (lrnnet.data.synthetic) at the export size, plus a colour
gradient and a checkerboard (sharp edges, flat regions: the cases where upsampling and the
regional SVD differ most). They go through THE preprocessing function (or stay uint8 when
preprocessing is in the graph), exactly as a deployment feeds them.

Figures, all over every image and output element:
* ``max_abs``: the largest |onnx - torch|;
* ``max_rel``: per batch, max |onnx - torch| / max |torch| (error relative to the logits' scale;
  an elementwise ratio is meaningless where a logit crosses zero), the largest over batches;
* ``argmax_agreement``: fraction of pixels where both give the same class.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from lrnnet.data.preprocess import preprocess, resize_frame
from lrnnet.data.synthetic import SceneLayout, render_scene
from lrnnet.errors import InputError
from lrnnet.log import progress

__all__ = ["Tolerance", "VerificationError", "VerificationReport", "graph_feeds", "verification_frames", "verify_onnx"]


class VerificationError(RuntimeError):
    """The exported graph disagrees with PyTorch beyond tolerance: an exporter bug, not bad input."""


@dataclass(frozen=True)
class Tolerance:
    max_rel: float = 1e-4
    min_argmax_agreement: float = 0.999


@dataclass
class VerificationReport:
    shapes: list[tuple[int, ...]] = field(default_factory=list)  # input shapes checked
    images: int = 0
    max_abs: float | None = None  # None when the graph outputs labels (argmax in graph)
    max_rel: float | None = None
    argmax_agreement: float = 1.0
    tolerance: Tolerance = field(default_factory=Tolerance)

    @property
    def passed(self) -> bool:
        rel_ok = self.max_rel is None or self.max_rel <= self.tolerance.max_rel
        return rel_ok and self.argmax_agreement >= self.tolerance.min_argmax_agreement

    def summary(self) -> str:
        parts = []
        if self.max_abs is not None and self.max_rel is not None:
            parts.append(f"max abs diff {self.max_abs:.2e}, max rel diff {self.max_rel:.2e}")
        parts.append(f"argmax agreement {100 * self.argmax_agreement:.3f}%")
        sizes = ", ".join("x".join(str(d) for d in shape) for shape in self.shapes)
        return f"{'; '.join(parts)} on {self.images} images ({sizes})"


def verification_frames(size: tuple[int, int], scenes: int = 3, seed: int = 0) -> list[np.ndarray]:
    """BGR uint8 frames of ``size`` = (height, width): street scenes, a gradient, a checkerboard."""
    height, width = size
    rng = np.random.default_rng(seed)
    frames = [render_scene(SceneLayout.random(rng), size)[0] for _ in range(scenes)]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    gradient = np.stack([255 * xs / max(width - 1, 1), 255 * ys / max(height - 1, 1),
                         255 * (1 - xs / max(width - 1, 1))], axis=-1)
    frames.append(np.round(gradient).astype(np.uint8))
    cell = max(4, min(height, width) // 16)
    checker = (((ys // cell) + (xs // cell)) % 2).astype(np.uint8)[..., None]
    frames.append(np.where(checker > 0, np.array([230, 200, 20], np.uint8), np.array([15, 40, 120], np.uint8)))
    return frames


def graph_feeds(frames: Sequence[np.ndarray], size: tuple[int, int], batch: int,
                uint8_nhwc: bool) -> Iterator[np.ndarray]:
    """``frames`` as the graph's input arrays, ``batch`` at a time (the last batch filled up from the start)."""
    for group in _batches(frames, batch):
        yield _graph_input(group, size, uint8_nhwc)


def _batches(frames: Sequence[np.ndarray], batch: int) -> Iterator[list[np.ndarray]]:
    """Consecutive groups of ``batch`` frames; the last group is filled up from the start."""
    for start in range(0, len(frames), batch):
        group = list(frames[start:start + batch])
        while len(group) < batch:
            group.append(frames[len(group) % len(frames)])
        yield group


def _graph_input(frames: list[np.ndarray], size: tuple[int, int], uint8_nhwc: bool) -> np.ndarray:
    if uint8_nhwc:
        return np.ascontiguousarray(np.stack([resize_frame(f, size) for f in frames]))
    return np.concatenate([preprocess(f, size) for f in frames], axis=0)


def verify_onnx(onnx_model: bytes | str, reference: torch.nn.Module, plan: Sequence[tuple[int, int, int]], *,
                uint8_nhwc: bool, labels_out: bool, scenes: int = 3,
                tolerance: Tolerance | None = None) -> VerificationReport:
    """Run ``onnx_model`` (serialized bytes or a path) with ONNX Runtime CPU and ``reference`` with PyTorch.

    ``plan``: (batch, height, width) input shapes to check (more than one for a dynamic graph).
    ``uint8_nhwc``: the graph takes uint8 NHWC BGR frames; ``labels_out``: it outputs int32 labels.
    Raises VerificationError above ``tolerance``, InputError when PyTorch itself gives NaN/Inf
    (a broken checkpoint, not an export problem).
    """
    import onnxruntime as ort

    tolerance = tolerance or Tolerance()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ONNX Runtime's warnings are about its own fusions, not the graph
    session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    jobs: list[tuple[list[np.ndarray], tuple[int, int]]] = []
    for batch, height, width in plan:
        frames = verification_frames((height, width), scenes=scenes)
        jobs.extend((group, (height, width)) for group in _batches(frames, batch))

    report = VerificationReport(tolerance=tolerance)
    agree = total = 0
    reference = reference.eval()
    for group, size in progress(jobs, desc="Verifying (ONNX Runtime vs PyTorch)", total=len(jobs), unit="batch"):
        feed = _graph_input(group, size, uint8_nhwc)
        with torch.inference_mode():
            expected = reference(torch.from_numpy(feed)).numpy()
        got = session.run(None, {input_name: feed})[0]
        if got.shape != expected.shape:
            raise VerificationError(f"ONNX output shape {got.shape} differs from PyTorch's {expected.shape} "
                                    f"for input {feed.shape}")
        if labels_out:
            pred_expected, pred_got = expected, got
        else:
            if not np.isfinite(expected).all():
                raise InputError("the model outputs NaN/Inf on the verification images: the checkpoint's "
                                 "weights are broken (a diverged training run?); export a healthy checkpoint")
            diff = float(np.abs(got.astype(np.float64) - expected).max()) if np.isfinite(got).all() else float("inf")
            scale = max(float(np.abs(expected).max()), np.finfo(np.float32).tiny)
            report.max_abs = max(report.max_abs or 0.0, diff)
            report.max_rel = max(report.max_rel or 0.0, diff / scale)
            pred_expected, pred_got = expected.argmax(axis=1), got.argmax(axis=1)
        agree += int((pred_expected == pred_got).sum())
        total += pred_expected.size
        report.images += len(group)
        if feed.shape not in report.shapes:
            report.shapes.append(feed.shape)
    report.argmax_agreement = agree / max(total, 1)
    if not report.passed:
        raise VerificationError(
            f"the ONNX graph disagrees with PyTorch: {report.summary()}; tolerance: max rel diff "
            f"{tolerance.max_rel:.0e}, argmax agreement >= {100 * tolerance.min_argmax_agreement:.1f}%"
        )
    return report
