"""Cityscapes calibration images, streamed one batch at a time through the one preprocessing function.

The reader is ONNX Runtime's tiny calibration interface and nothing more: ``get_next()`` returns
``{input_name: array}`` or ``None`` when the images are used up. ONNX Runtime's quantizer calls it
directly; the TensorRT legacy calibrator (lrnnet.engine.tensorrt_builder) pulls the same arrays.
Only the file list is held; each image is read when it is needed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from lrnnet.data.cityscapes import CityscapesDataset, Sample, read_image, spread_across_cities
from lrnnet.data.preprocess import preprocess, resize_frame
from lrnnet.errors import InputError
from lrnnet.export.metadata import LAYOUT_NHWC_UINT8_BGR, ModelInfo
from lrnnet.log import logger, progress_bar

DEFAULT_CALIB_IMAGES = 500
CALIB_SPLIT = "train"  # calibrate on training images; validation stays unseen for the accuracy check


def select_calibration_samples(root: str | Path, count: int = DEFAULT_CALIB_IMAGES) -> list[Sample]:
    """A deterministic subset of `count` training images, round-robin across cities (labels not needed)."""
    if count < 1:
        raise InputError(f"--calib-images must be at least 1, got {count}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"calibration folder {root} does not exist; pass a Cityscapes root with --calib-data")
    samples = CityscapesDataset(root, CALIB_SPLIT, require_labels=False).samples  # InputError when empty
    chosen = spread_across_cities(samples, count)
    if len(chosen) < count:
        logger.info("calibration: %s has %d training images, fewer than the %d asked for; using all of them",
                    root, len(chosen), count)
    return chosen


def calibration_digest(samples: list[Sample], root: str | Path) -> str:
    """SHA-256 of the chosen file list (paths relative to the root, and sizes): which images calibrated."""
    root = Path(root)
    digest = hashlib.sha256()
    for sample in samples:
        path = sample.image_path
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        digest.update(f"{name}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


class CityscapesCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over chosen Cityscapes images, in the graph's input format.

    Feeds float32 1x3xHxW from ``preprocess`` (or uint8 1xHxWx3 BGR when the graph preprocesses
    in-graph, as ModelInfo says), ``batch`` images per call. Also implements ``__len__`` and
    ``set_range`` (in batches), which ONNX Runtime's quantizer uses to calibrate in chunks.
    """

    def __init__(self, samples: list[Sample], info: ModelInfo, input_name: str, batch: int = 1):
        if not samples:
            raise InputError("no calibration images")
        self.samples = samples
        self.info = info
        self.input_name = input_name
        self.batch = batch
        self.images_read = 0  # how many image files this reader has opened (tests prove cache reuse with it)
        if len(samples) % batch:
            logger.info("calibration: the last %d images do not fill a batch of %d and are skipped",
                        len(samples) % batch, batch)
        self._start, self._end = 0, len(self)
        self._next = 0
        self._bar: Any = None  # a tqdm bar, made at the first batch

    def __len__(self) -> int:
        """Number of batches."""
        return len(self.samples) // self.batch

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end = start_index, min(end_index, len(self))
        self._next = self._start

    def rewind(self) -> None:
        self.set_range(0, len(self))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        if self._bar is None:
            self._bar = progress_bar("Calibrating", total=len(self.samples), unit="img")
        first = self._next * self.batch
        batch = np.concatenate([self._load(s) for s in self.samples[first:first + self.batch]], axis=0)
        self._next += 1
        self._bar.update(self.batch)
        if self._next >= len(self):
            self._bar.close()
        return {self.input_name: batch}

    def _load(self, sample: Sample) -> np.ndarray:
        frame = read_image(sample.image_path)
        self.images_read += 1
        if self.info.preprocess_in_graph or self.info.input_layout == LAYOUT_NHWC_UINT8_BGR:
            return np.ascontiguousarray(resize_frame(frame, self.info.input_size)[None])
        return preprocess(frame, self.info.input_size)
