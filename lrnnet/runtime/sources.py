"""Frame sources for the video pipeline: a video file, an image folder, a camera index or a stream URL.

A source is opened (and its first frame decoded) before any output is created, so a missing file,
a non-video, a zero-frame video or an unreadable codec fails at once with one InputError. While
iterating, a frame that cannot be decoded comes back as a `Frame` with `image=None` and a reason:
the pipeline warns, skips and counts it.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lrnnet.errors import InputError
from lrnnet.log import logger

__all__ = ["IMAGE_SUFFIXES", "CameraSource", "Frame", "FrameSource", "ImageFolderSource", "VideoFileSource",
           "open_source", "quiet_video_logs"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
CITYSCAPES_VIDEO_FPS = 17.0  # demoVideo's frame rate: the output rate of an image folder
# A failed read before the container's frame count is reached is a corrupt frame if a later read
# succeeds; after this many failures in a row it is the end of the stream.
_MAX_FAILED_READS = 5


@dataclass
class Frame:
    index: int  # position in the source, counting corrupt frames too
    name: str  # file stem for image folders, frame_<index> otherwise
    image: np.ndarray | None  # BGR uint8 HxWx3; None when it could not be decoded
    decode_ms: float
    error: str = ""


class FrameSource(abc.ABC):
    """An opened source: `size` (height, width) of its frames, `fps`, `expected_frames` (None if unknown)."""

    kind = ""
    live = False  # a camera or stream: no end of its own, Ctrl-C ends it

    def __init__(self, description: str, size: tuple[int, int], fps: float, expected_frames: int | None) -> None:
        self.description = description
        self.size = size
        self.fps = fps
        self.expected_frames = expected_frames

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """Yield frames in order, the first one included."""

    def close(self) -> None:
        """Release the capture."""

    def default_output_stem(self) -> Path:
        """`<source>_seg` beside a file source; in the current directory for a camera or stream."""
        return Path(f"{self.kind}_seg")


def quiet_video_logs() -> None:
    """Keep OpenCV's and FFmpeg's own messages ("moov atom not found", "Could not find decoder") off stderr.

    For commands, which say what went wrong in one line and count corrupt frames themselves; call it
    before the first capture (FFmpeg reads its level once). A library caller keeps its own logging.
    OPENCV_FFMPEG_LOGLEVEL / OPENCV_LOG_LEVEL set by the user win (e.g. to debug a codec).
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)


class _CaptureSource(FrameSource):
    """A cv2.VideoCapture with its first frame already read (to fail early on an undecodable source)."""

    def __init__(self, capture: cv2.VideoCapture, description: str) -> None:
        self._capture = capture
        start = time.perf_counter()
        ok, first = capture.read()
        self._first_ms = (time.perf_counter() - start) * 1000.0
        if not ok or first is None or first.size == 0:
            capture.release()
            raise InputError(f"{description}: no frame could be decoded (zero frames, not a video, "
                             "or a codec this OpenCV build cannot read)")
        self._first: np.ndarray | None = _as_bgr(first)
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        super().__init__(description, first.shape[:2], fps if fps and fps > 0 and np.isfinite(fps) else
                         CITYSCAPES_VIDEO_FPS, count if count > 0 and not self.live else None)

    def __iter__(self) -> Iterator[Frame]:
        if self._first is not None:
            yield Frame(0, "frame_000000", self._first, self._first_ms)
            self._first = None
        index, failures = 1, 0
        while True:
            start = time.perf_counter()
            ok, image = self._capture.read()
            decode_ms = (time.perf_counter() - start) * 1000.0
            if ok and image is not None:
                if failures:  # reads failed, then one succeeded: those were corrupt frames, not the end
                    for skipped in range(index - failures, index):
                        yield Frame(skipped, f"frame_{skipped:06d}", None, 0.0, "could not be decoded")
                    failures = 0
                yield Frame(index, f"frame_{index:06d}", _as_bgr(image), decode_ms)
            else:
                failures += 1
                past_end = self.expected_frames is not None and index >= self.expected_frames
                if self.live or past_end or failures >= _MAX_FAILED_READS:
                    return
            index += 1

    def close(self) -> None:
        self._capture.release()


class VideoFileSource(_CaptureSource):
    kind = "video"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"video {self.path} does not exist")
        if not self.path.is_file():
            raise InputError(f"{self.path} is not a file")
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise InputError(f"{self.path} is not a video OpenCV can open (not a video, or an unreadable codec)")
        super().__init__(capture, str(self.path))

    def default_output_stem(self) -> Path:
        return self.path.with_name(f"{self.path.stem}_seg")


class CameraSource(_CaptureSource):
    """A camera index ("0") or a stream URL (rtsp://, http://...)."""

    kind = "camera"
    live = True

    def __init__(self, spec: str | int) -> None:
        self.spec = spec
        capture = cv2.VideoCapture(int(spec) if str(spec).isdigit() else str(spec))
        if not capture.isOpened():
            what = f"camera {spec}" if str(spec).isdigit() else f"stream {spec}"
            raise InputError(f"cannot open {what} (no such device, or the stream is unreachable)")
        super().__init__(capture, f"camera {spec}" if str(spec).isdigit() else str(spec))

    def default_output_stem(self) -> Path:
        return Path(f"camera{self.spec}_seg" if str(self.spec).isdigit() else "stream_seg")


class ImageFolderSource(FrameSource):
    """Sorted images of a folder (e.g. a Cityscapes demoVideo sequence), played at 17 fps.

    Frames of another size than the first readable one are resized to it (a video has one size),
    with a warning.
    """

    kind = "images"

    def __init__(self, folder: str | Path, fps: float = CITYSCAPES_VIDEO_FPS) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"{self.folder} is not a folder")
        self.paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.paths:
            raise InputError(f"{self.folder} holds no images ({', '.join(IMAGE_SUFFIXES)}): zero frames")
        size = None
        for path in self.paths:  # the first readable image sets the size; if none is readable, fail now
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                size = image.shape[:2]
                break
        if size is None:
            raise InputError(f"none of the {len(self.paths)} images in {self.folder} can be decoded")
        super().__init__(str(self.folder), size, fps, len(self.paths))
        self._warned_resize = False

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            start = time.perf_counter()
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None and image.shape[:2] != self.size:
                if not self._warned_resize:
                    logger.warning("%s is %dx%d, not %dx%d like the first frame: resizing such frames",
                                   path.name, image.shape[0], image.shape[1], *self.size)
                    self._warned_resize = True
                image = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
            decode_ms = (time.perf_counter() - start) * 1000.0
            yield Frame(index, path.stem, image, decode_ms, "" if image is not None else "could not be decoded")

    def default_output_stem(self) -> Path:
        folder = self.folder.resolve()
        return folder.with_name(f"{folder.name}_seg")


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Grey or BGRA captures -> BGR, so every later stage sees HxWx3 uint8."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def open_source(spec: str | Path) -> FrameSource:
    """A video file, an image folder, a camera index ("0") or a stream URL, opened and checked."""
    text = str(spec)
    if "://" in text:
        return CameraSource(text)
    path = Path(text)
    if text.isdigit() and not path.exists():
        return CameraSource(int(text))
    if path.is_dir():
        return ImageFolderSource(path)
    if not path.exists():
        raise InputError(f"source {text} does not exist (a video file, an image folder, a camera index or a URL)")
    return VideoFileSource(path)
