"""Frame sources for the video pipeline: a video file, an image folder, a camera index or a stream URL.

A source is opened (and its first frame decoded) before any output is created, so a missing file,
a non-video, a zero-frame video or an unreadable codec fails at once with one InputError. While
iterating, a frame that cannot be decoded comes back as a `Frame` with `image=None` and a reason:
the pipeline warns, skips and counts it.

Video files and stream URLs are decoded by PyAV (FFmpeg) where it is installed, which gives each
frame its presentation timestamp; OpenCV's capture is the fallback (and reads camera indices).
A stream (rtsp://, http://, ...) has an open and a read timeout: a server that accepts the
connection and then says nothing fails with one InputError after `timeout_s`, and never hangs.
"""

from __future__ import annotations

import abc
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lrnnet.errors import InputError
from lrnnet.limits import MAX_CAMERA_INDEX, timeout_problem
from lrnnet.log import logger

__all__ = ["IMAGE_SUFFIXES", "STREAM_TIMEOUT_S", "CameraSource", "Frame", "FrameSource", "ImageFolderSource",
           "PyAVSource", "VideoFileSource", "camera_index", "check_timeout", "is_camera_spec", "open_source",
           "quiet_video_logs"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
CITYSCAPES_VIDEO_FPS = 17.0  # demoVideo's frame rate: the output rate of an image folder
# A failed read before the container's frame count is reached is a corrupt frame if a later read
# succeeds; after this many failures in a row it is the end of the stream.
_MAX_FAILED_READS = 5
STREAM_TIMEOUT_S = 10.0  # a stream that sends nothing for this long (opening, or between frames) has failed


@dataclass
class Frame:
    index: int  # position in the source, counting corrupt frames too
    name: str  # file stem for image folders, frame_<index> otherwise
    image: np.ndarray | None  # BGR uint8 HxWx3; None when it could not be decoded
    decode_ms: float
    error: str = ""
    # When the frame was captured, on time.perf_counter()'s clock, for a live source whose stream has
    # timestamps: its presentation time plus the smallest (arrival - presentation time) seen so far,
    # so no frame is captured after it arrived (the stream's clock anchored at its fastest delivery).
    # The pipeline reports capture -> output latency from it; None elsewhere.
    captured_at: float | None = None


class FrameSource(abc.ABC):
    """An opened source: `size` (height, width) of its frames, `fps`, `expected_frames` (None if unknown)."""

    kind = ""
    live = False  # a camera or stream: no end of its own, Ctrl-C ends it
    _hidden = 0  # hidden_frames, counted by a source that reads packets

    def __init__(self, description: str, size: tuple[int, int], fps: float, expected_frames: int | None) -> None:
        self.description = description
        self.size = size
        self.fps = fps
        self.expected_frames = expected_frames

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """Yield frames in order, the first one included."""

    @property
    def hidden_frames(self) -> int:
        """Frames the container lists but marks as not to be shown (the pre-roll before an MP4 edit list's start, as
        a trimmed clip has): read and decoded, then dropped by FFmpeg on purpose, so never lost frames."""
        return self._hidden

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

    def __init__(self, spec: str | int, timeout_s: float = STREAM_TIMEOUT_S) -> None:
        self.spec = spec
        self.index = index = camera_index(str(spec))  # None: a stream URL
        check_timeout(timeout_s)
        if index is not None:
            capture = cv2.VideoCapture(index)
        else:  # OpenCV's FFmpeg backend honours these (4.6+); without them a stalled stream blocks forever
            milliseconds = int(timeout_s * 1000)
            capture = cv2.VideoCapture(str(spec), cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, milliseconds,
                                                                   cv2.CAP_PROP_READ_TIMEOUT_MSEC, milliseconds])
        what = f"camera {index}" if index is not None else f"stream {spec}"
        if not capture.isOpened():
            raise InputError(f"cannot open {what} (no such device, or the stream is unreachable)")
        super().__init__(capture, what if index is not None else str(spec))

    def default_output_stem(self) -> Path:
        return Path(f"camera{self.index}_seg" if self.index is not None else "stream_seg")


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
        _refuse_shared_stems(self.folder, self.paths)
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


def _refuse_shared_stems(folder: Path, paths: list[Path]) -> None:
    """A frame is named by its file's stem (the labels output writes <stem>_trainIds.png): two images with one
    stem (a.png, a.jpg) would be two frames of one name, the second overwriting the first's output."""
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise InputError(f"image folder {folder} holds {seen[path.stem].name} and {path.name}: two frames named "
                             f"{path.stem}; keep one of them")
        seen[path.stem] = path


class PyAVSource(FrameSource):
    """A video file or a stream URL decoded by PyAV, each frame with its timestamp; first frame read at open.

    Raises InputError when the source cannot be opened, holds no video, or (a stream) says nothing
    within `timeout_s`; `_NotForPyAV` when a local file is better left to OpenCV (which then gives
    the error message of record).
    """

    def __init__(self, spec: str | Path, live: bool, timeout_s: float = STREAM_TIMEOUT_S) -> None:
        import av

        self.live = live
        self._av = av
        text = self._spec_text = str(spec)
        self.timeout_s = timeout_s
        options: dict[str, str] = {}
        if live:
            microseconds = str(int(timeout_s * 1_000_000))
            # FFmpeg's own socket timeouts as a second line of defence under PyAV's interrupt timeout:
            # rtsp `timeout` (FFmpeg 5+; `stimeout` before), http/tcp `rw_timeout`; RTSP over TCP so
            # that a firewall dropping UDP does not look like a stall.
            options = {"timeout": microseconds, "rw_timeout": microseconds}
            if text.lower().startswith("rtsp"):
                options.update(rtsp_transport="tcp", stimeout=microseconds)
        start = time.perf_counter()
        try:
            self._container = av.open(text, options=options, timeout=(timeout_s, timeout_s))
        except av.FFmpegError as exc:
            if not live:
                raise _NotForPyAV(str(exc)) from exc
            raise InputError(_stream_failure(text, exc, time.perf_counter() - start, timeout_s, "open")) from exc
        try:
            if not self._container.streams.video:
                raise (InputError(f"stream {text} holds no video") if live else _NotForPyAV("no video stream"))
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._hidden = 0  # counted from the first packet on, before super().__init__
            self._frames = self._decode()
            start = time.perf_counter()
            first = next(self._frames, None)
        except BaseException:
            self._container.close()
            raise
        if first is None or first.image is None:
            self._container.close()
            if not live:
                raise _NotForPyAV("no first frame")
            raise InputError(f"stream {text}: no frame could be decoded")
        first.decode_ms = (time.perf_counter() - start) * 1000.0
        self._first: Frame | None = first
        rate = self._stream.average_rate or self._stream.guessed_rate
        fps = float(rate) if rate else 0.0
        count = int(self._stream.frames or 0)
        super().__init__(text, first.image.shape[:2],
                         fps if fps > 0 and np.isfinite(fps) else CITYSCAPES_VIDEO_FPS,
                         count if count > 0 and not live else None)

    def _decode(self) -> Iterator[Frame]:
        """Frames in order; a packet FFmpeg cannot decode gives one corrupt Frame; a stall raises InputError."""
        av = self._av
        index, clock_offset = 0, float("inf")  # perf_counter() - presentation time, the smallest seen
        time_base = self._stream.time_base
        packets = self._container.demux(self._stream)
        while True:
            start = time.perf_counter()
            try:
                packet = next(packets, None)
            except av.FFmpegError as exc:
                if self.live:
                    raise InputError(_stream_failure(self._spec_text, exc, time.perf_counter() - start,
                                                     self.timeout_s, "read")) from exc
                return  # a file damaged past repair: the end (the count of missing frames shows it)
            if packet is None:
                return
            if packet.is_discard and packet.size:
                self._hidden += 1
            try:
                decoded = packet.decode()
            except av.FFmpegError as exc:
                yield Frame(index, f"frame_{index:06d}", None, (time.perf_counter() - start) * 1000.0,
                            f"could not be decoded ({type(exc).__name__})")
                index += 1
                continue
            for video_frame in decoded:
                image = video_frame.to_ndarray(format="bgr24")
                decode_ms = (time.perf_counter() - start) * 1000.0
                captured_at = None
                if self.live and video_frame.pts is not None and time_base is not None:
                    pts_s = float(video_frame.pts * time_base)
                    clock_offset = min(clock_offset, time.perf_counter() - pts_s)
                    captured_at = pts_s + clock_offset
                yield Frame(index, f"frame_{index:06d}", image, decode_ms, captured_at=captured_at)
                index += 1
                start = time.perf_counter()

    def __iter__(self) -> Iterator[Frame]:
        if self._first is not None:
            yield self._first
            self._first = None
        yield from self._frames

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing twice, or after a failed read
            self._container.close()


class _NotForPyAV(Exception):
    """PyAV could not use this file: OpenCV tries it next and gives the error message of record."""


def _stream_failure(url: str, exc: BaseException, waited_s: float, timeout_s: float, what: str) -> str:
    if waited_s >= timeout_s * 0.9 or "exit" in str(exc).lower():
        return (f"stream {url}: no answer within {timeout_s:g} s while trying to {what} it (the server "
                "accepted the connection but sent nothing, or the network stalled)")
    return f"cannot {what} stream {url}: {' '.join(str(exc).split())}"


def _pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Grey or BGRA captures -> BGR, so every later stage sees HxWx3 uint8."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def is_camera_spec(text: str) -> bool:
    """`text` names a camera: ASCII decimal digits only (str.isdigit also takes '²', which int() refuses)."""
    return text.isascii() and text.isdecimal()


def camera_index(text: str) -> int | None:
    """The camera index `text` names, or None when it names no camera; InputError when the index is out of
    range (lrnnet.limits.MAX_CAMERA_INDEX)."""
    if not is_camera_spec(text):
        return None
    if len(text) > len(str(MAX_CAMERA_INDEX)) or int(text) > MAX_CAMERA_INDEX:  # no int of a thousand digits
        shown = text if len(text) <= 20 else f"{text[:20]}..."
        raise InputError(f"camera index {shown} is out of range (0 to {MAX_CAMERA_INDEX})")
    return int(text)


def _exists(path: Path) -> bool:
    """Path.exists, but False for a name the file system refuses (a 5000-digit "camera index": ENAMETOOLONG)."""
    try:
        return path.exists()
    except OSError:
        return False


def check_timeout(timeout_s: float) -> None:
    """InputError when `timeout_s` is not a stream timeout FFmpeg and OpenCV take (lrnnet.limits)."""
    problem = timeout_problem(timeout_s)
    if problem is not None:
        raise InputError(f"stream {problem}")


def open_source(spec: str | Path, timeout_s: float = STREAM_TIMEOUT_S) -> FrameSource:
    """A video file, an image folder, a camera index ("0") or a stream URL, opened and checked.

    Files and URLs go to PyAV when it is installed (timestamps; stream timeouts), else to OpenCV.
    """
    text = str(spec)
    check_timeout(timeout_s)
    if "://" in text:
        if _pyav_available():
            return _AVStream(text, timeout_s)
        return CameraSource(text, timeout_s)
    path = Path(text)
    if is_camera_spec(text) and not _exists(path):
        return CameraSource(text)
    if path.is_dir():
        return ImageFolderSource(path)
    if not path.exists():
        raise InputError(f"source {text} does not exist (a video file, an image folder, a camera index or a URL)")
    if path.is_file() and _pyav_available():
        try:
            return _AVFile(path)
        except _NotForPyAV:
            pass  # OpenCV tries it, and says what is wrong if it cannot either
    return VideoFileSource(path)


class _AVFile(PyAVSource):
    """A video file through PyAV (the default when PyAV is installed)."""

    kind = "video"

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(path, live=False)

    def default_output_stem(self) -> Path:
        return self.path.with_name(f"{self.path.stem}_seg")


class _AVStream(PyAVSource):
    """A stream URL through PyAV, with open and read timeouts."""

    kind = "camera"

    def __init__(self, url: str, timeout_s: float) -> None:
        self.spec = url
        super().__init__(url, live=True, timeout_s=timeout_s)

    def default_output_stem(self) -> Path:
        return Path("stream_seg")
