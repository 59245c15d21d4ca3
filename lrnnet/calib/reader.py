"""Calibration images from what a user has: a Cityscapes root, any folder of images, or a video file.

    calibration = open_calibration_set(path, count)   # which images; nothing decoded yet
    reader = CalibrationReader(calibration, info, input_name, batch=1)
    reader.get_next()     # ONNX Runtime's CalibrationDataReader: {input_name: array} or None
    reader.batches()      # the same arrays as a generator (TensorRT's calibrator, modelopt)
    reader.to_array()     # all of them in one array, for APIs that insist (memory grows with count)

``open_calibration_set`` picks the kind from the path:

* a **Cityscapes root** (it has ``leftImg8bit/``): training images, round-robin across cities;
* any other **folder**: every image under it (recursive, common extensions, sorted by relative
  path), ``count`` of them evenly spread over that order;
* a **video file**: ``count`` frames evenly spread over the video, read by decoding forward and
  skipping (exact frame indices on every codec, where seeking lands on keyframes), never buffered.

Only the file list or the frame indices are held; each image is read, resized and preprocessed
(``lrnnet.data.preprocess``, or uint8 frames when the graph preprocesses in-graph) when a batch is
asked for, so memory does not grow with the number of images. The set's ``digest()`` names the
images by their content (SHA-256 of each chosen file, or of the video file) for the calibration
cache and the engine sidecar.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lrnnet._io import file_sha256
from lrnnet.data.cityscapes import CityscapesDataset, read_image, spread_across_cities
from lrnnet.data.preprocess import preprocess, resize_frame
from lrnnet.errors import InputError
from lrnnet.export.metadata import LAYOUT_NHWC_UINT8_BGR, ModelInfo
from lrnnet.log import logger, progress_bar

__all__ = [
    "CALIB_SPLIT",
    "DEFAULT_CALIB_IMAGES",
    "IMAGE_EXTENSIONS",
    "CalibrationReader",
    "CalibrationSet",
    "feeds_uint8_frames",
    "open_calibration_set",
]

DEFAULT_CALIB_IMAGES = 500
CALIB_SPLIT = "train"  # calibrate on training images; validation stays unseen for the accuracy check
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")
KINDS = ("cityscapes", "images", "video")


def _evenly_spread(total: int, count: int) -> list[int]:
    """``count`` indices in range(total), evenly spread, each the middle of its share (all when count >= total)."""
    if count >= total:
        return list(range(total))
    return [(2 * i + 1) * total // (2 * count) for i in range(count)]


@dataclass(frozen=True)
class CalibrationSet:
    """Which images calibrate: image files (Cityscapes or a folder) or frame indices of a video."""

    kind: str  # one of KINDS
    path: Path  # what --calib-data named
    images: tuple[Path, ...] = ()  # kind "cityscapes" / "images"
    frame_indices: tuple[int, ...] = ()  # kind "video"
    available: int = 0  # images (or frames) there were to choose from

    def __len__(self) -> int:
        return len(self.frame_indices) if self.kind == "video" else len(self.images)

    def describe(self) -> str:
        what, how = {"cityscapes": (f"Cityscapes {CALIB_SPLIT} images", "round-robin across cities"),
                     "images": ("images", "evenly spread"), "video": ("frames of the video", "evenly spread")}[self.kind]
        return f"{len(self)} {what} from {self.path} (of {self.available}, {how})"

    def frames(self) -> Iterator[np.ndarray]:
        """The chosen images as BGR uint8 frames, one at a time."""
        if self.kind != "video":
            for path in self.images:
                yield read_image(path)
            return
        yield from _video_frames(self.path, self.frame_indices)

    def digest(self) -> str:
        """SHA-256 naming the chosen images by content: each chosen file's bytes, or the video's bytes and indices.

        Content, not names and sizes: other images under the same names (same-size BMPs, a re-encoded
        video of the same length) are other images, and a cache made from the first must not be reused.
        """
        digest = hashlib.sha256(f"{self.kind}\n".encode())
        if self.kind == "video":
            digest.update(f"{file_sha256(self.path)}\n".encode())  # streamed: a video can be gigabytes
            digest.update(",".join(map(str, self.frame_indices)).encode())
            return digest.hexdigest()
        for path in self.images:
            name = path.relative_to(self.path).as_posix() if path.is_relative_to(self.path) else path.as_posix()
            digest.update(f"{name}\t{file_sha256(path)}\n".encode())
        return digest.hexdigest()


def open_calibration_set(path: str | Path, count: int = DEFAULT_CALIB_IMAGES) -> CalibrationSet:
    """The calibration images ``path`` names (a Cityscapes root, a folder of images, a video); InputError if none."""
    if count < 1:
        raise InputError(f"--calib-images must be at least 1, got {count}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"calibration data {path} does not exist; pass a Cityscapes root, a folder of images "
                         "or a video file with --calib-data")
    if path.is_dir() and (path / "leftImg8bit").is_dir():
        chosen = _cityscapes_images(path, count)
    elif path.is_dir():
        chosen = _folder_images(path, count)
    elif path.is_file():
        chosen = _video_set(path, count)
    else:
        raise InputError(f"calibration data {path} is neither a folder nor a file")
    if len(chosen) < count:
        logger.info("calibration: %s has %d images, fewer than the %d asked for; using all of them",
                    path, len(chosen), count)
    return chosen


def _cityscapes_images(root: Path, count: int) -> CalibrationSet:
    samples = CityscapesDataset(root, CALIB_SPLIT, require_labels=False).samples  # InputError when empty
    chosen = spread_across_cities(samples, count)
    return CalibrationSet("cityscapes", root, images=tuple(s.image_path for s in chosen), available=len(samples))


def _folder_images(folder: Path, count: int) -> CalibrationSet:
    # Hidden files and folders (.thumbnails, .git) are not the user's images.
    images = sorted((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                     and not any(part.startswith(".") for part in p.relative_to(folder).parts)),
                    key=lambda p: p.relative_to(folder).as_posix())
    if not images:
        raise InputError(f"calibration folder {folder} has no images ({' '.join(IMAGE_EXTENSIONS)}, searched "
                         "recursively) and is not a Cityscapes tree (no leftImg8bit/); pass a folder of images, "
                         "a Cityscapes root or a video file")
    chosen = tuple(images[i] for i in _evenly_spread(len(images), count))
    return CalibrationSet("images", folder, images=chosen, available=len(images))


def _open_capture(path: Path) -> cv2.VideoCapture:
    from lrnnet.runtime.sources import quiet_video_logs

    quiet_video_logs()
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            raise InputError(_no_frames(path))
        raise InputError(f"calibration data {path} is neither a folder (of images, or a Cityscapes root) nor a "
                         "video OpenCV can read")
    return capture


def _no_frames(path: Path) -> str:
    # OpenCV cannot even open an mp4 with zero frames (its header has no track to read), so an
    # unopenable file with a video's extension gets this message too.
    return (f"calibration video {path} has no frame that can be decoded (zero frames, a truncated file, or a codec "
            "this OpenCV build cannot read)")


def _video_set(path: Path, count: int) -> CalibrationSet:
    capture = _open_capture(path)
    try:
        ok = capture.grab()
        if not ok:
            raise InputError(_no_frames(path))
        claimed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        capture.set(cv2.CAP_PROP_POS_FRAMES, claimed - 1)
        last_decodes = claimed > 0 and capture.grab()
    finally:
        capture.release()
    total = claimed if last_decodes else _count_decodable_frames(path)
    if claimed > 0 and total < claimed:
        logger.info("calibration: %s holds %d decodable frames, fewer than the %d its header claims (a truncated "
                    "file?); choosing among those", path, total, claimed)
    return CalibrationSet("video", path, frame_indices=tuple(_evenly_spread(total, count)), available=total)


def _count_decodable_frames(path: Path) -> int:
    """Frames decodable from the start: for a container that does not say, or says more than it holds."""
    capture = _open_capture(path)
    try:
        total = 0
        while capture.grab():
            total += 1
    finally:
        capture.release()
    return total


def _video_frames(path: Path, indices: tuple[int, ...]) -> Iterator[np.ndarray]:
    """Frames at ``indices`` (ascending), decoding forward and converting only the chosen ones."""
    capture = _open_capture(path)
    try:
        position, served = 0, 0
        for index in indices:
            while position < index:
                if not capture.grab():
                    break
                position += 1
            ok, frame = capture.read() if position == index else (False, None)
            if not ok or frame is None:
                break  # the container promised more frames than it holds: the video ends here
            position += 1
            served += 1
            yield frame if frame.ndim == 3 and frame.shape[2] == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if served < len(indices):
            logger.info("calibration: %s ended after frame %d; %d of %d chosen frames used",
                        path, position, served, len(indices))
        if served == 0:
            raise InputError(f"calibration video {path}: no chosen frame could be decoded")
    finally:
        capture.release()


def feeds_uint8_frames(info: ModelInfo) -> bool:
    """The graph takes uint8 NHWC BGR frames (it preprocesses in-graph), not preprocessed float32 NCHW."""
    return info.preprocess_in_graph or info.input_layout == LAYOUT_NHWC_UINT8_BGR


class CalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over a ``CalibrationSet``, in the graph's input format.

    Feeds float32 Nx3xHxW from ``preprocess`` (or uint8 NxHxWx3 BGR when the graph preprocesses
    in-graph, as ModelInfo says), ``batch`` images per call. Also implements ``__len__`` and
    ``set_range`` (in batches), which ONNX Runtime's quantizer uses to calibrate in chunks. When the
    last batch has been served it logs the time per image (reading, preprocessing and whatever the
    consumer did between calls, i.e. the calibration's own inference).
    """

    def __init__(self, calibration: CalibrationSet, info: ModelInfo, input_name: str, batch: int = 1):
        if not len(calibration):
            raise InputError("no calibration images")
        if len(calibration) < batch:  # not one whole batch: a calibrator would see no data at all
            raise InputError(f"the graph takes batches of {batch} images, so calibrating it needs at least {batch} "
                             f"calibration images; {calibration.path} gives {len(calibration)} (--calib-images "
                             f"{batch} or more, or export with --batch 1 or --dynamic)")
        self.calibration = calibration
        self.info = info
        self.input_name = input_name
        self.batch = batch
        self._read: set[int] = set()  # positions of the set's images decoded so far (images_read)
        if len(calibration) % batch:
            logger.info("calibration: the last %d images do not fill a batch of %d and are skipped",
                        len(calibration) % batch, batch)
        self._start, self._end = 0, len(self)
        self._next = 0
        self._frames: Iterator[np.ndarray] | None = None
        self._position = 0  # index (in images) of the next frame self._frames yields
        self._bar: Any = None  # a tqdm bar, made at the first batch
        self._started: float | None = None
        self._read_seconds = 0.0
        self._reported = False

    @property
    def images(self) -> int:
        """Images calibration uses: whole batches only (a last partial batch is skipped)."""
        return len(self) * self.batch

    @property
    def images_read(self) -> int:
        """Distinct images this reader has decoded (a trial batch read again is not another image); 0 when unused."""
        return len(self._read)

    @property
    def samples(self) -> CalibrationSet:
        """The set being read (its ``len`` is the number of images); kept for callers of the first API."""
        return self.calibration

    def __len__(self) -> int:
        """Number of batches."""
        return len(self.calibration) // self.batch

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end = start_index, min(end_index, len(self))
        self._next = self._start

    def rewind(self) -> None:
        self.set_range(0, len(self))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            if self._next >= len(self):
                self._report()
            return None
        if self._bar is None:
            self._bar = progress_bar("Calibrating", total=self.images, unit="img")
            self._started = time.perf_counter()
        start = time.perf_counter()
        batch = np.concatenate([self._load(self._next * self.batch + k) for k in range(self.batch)], axis=0)
        self._read_seconds += time.perf_counter() - start
        self._next += 1
        self._bar.update(self.batch)
        return {self.input_name: batch}

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Every batch from the first, as a generator (for consumers that iterate rather than call get_next)."""
        self.rewind()
        while (feed := self.get_next()) is not None:
            yield feed

    def to_array(self) -> np.ndarray:
        """All batches in one array (N x ...): for APIs that take arrays only. Memory grows with N."""
        first = self.batches()
        out: np.ndarray | None = None
        for index, feed in enumerate(first):
            array = feed[self.input_name]
            if out is None:
                out = np.empty((self.images, *array.shape[1:]), dtype=array.dtype)
            out[index * self.batch:(index + 1) * self.batch] = array
        assert out is not None  # the constructor refuses an empty set
        return out

    def _load(self, position: int) -> np.ndarray:
        # One forward pass over the set's frames; a jump back (set_range to an earlier chunk, rewind) reopens it.
        if self._frames is None or position < self._position:
            self._frames, self._position = self.calibration.frames(), 0
        frame: np.ndarray | None = None
        while self._position <= position:
            frame = next(self._frames, None)
            if frame is None:
                raise InputError(f"calibration data {self.calibration.path} ran out of images at {self._position}")
            self._position += 1
        assert frame is not None
        self._read.add(position)
        if feeds_uint8_frames(self.info):
            return np.ascontiguousarray(resize_frame(frame, self.info.input_size)[None])
        return preprocess(frame, self.info.input_size)

    def _report(self) -> None:
        if self._reported or self._started is None:
            return
        self._reported = True
        if self._bar is not None:
            self._bar.close()
        seconds = time.perf_counter() - self._started
        images = self.images
        height, width = self.info.input_size
        logger.info("calibration: %d images in %.1f s (%.0f ms/image at %dx%d; %.0f ms of it reading and "
                    "preprocessing)", images, seconds, 1000.0 * seconds / images, height, width,
                    1000.0 * self._read_seconds / images)
