"""Where the video pipeline's frames go: an H.264 video a browser plays, or a folder of trainId PNGs.

MP4/MOV are written as H.264 (yuv420p) through PyAV, whose wheel bundles FFmpeg with libx264:
OpenCV's pip wheel can only write mp4v (MPEG-4 Part 2), which browsers do not play. When PyAV or
its libx264 is missing, OpenCV's mp4v is the fallback, and the writer says so (`encoder`). AVI is
Motion-JPEG through OpenCV. Every video codec here stores colour at half resolution (yuv420p,
yuvj420p), so it needs even sides (OpenCV's writers silently drop an odd row and column): every
video writer pads an odd-sized frame by one row/column (a copy of the edge, no resampling,
`pad_to_even`) and its `describe()` says the size it wrote (`padded_to`).

Every writer has `write(image, name)`, `close()` and `describe()`; `close()` raises when the
encoder failed (a full disk, a broken stream), so the caller's output check never commits half a file.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from lrnnet._io import write_image
from lrnnet.errors import InputError

__all__ = ["OPENCV_CODECS", "VIDEO_SUFFIXES", "FrameWriter", "PngFolderWriter", "even_size", "h264_available",
           "open_video_writer", "pad_to_even"]

H264_SUFFIXES = (".mp4", ".m4v", ".mov")
OPENCV_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}  # fourcc per file type
VIDEO_SUFFIXES = tuple(sorted(OPENCV_CODECS))
_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}  # the temporary name may not end like the target
_H264_OPTIONS = {"preset": "veryfast", "crf": "20"}  # fast enough to keep up with the model on a CPU


class FrameWriter(Protocol):
    def write(self, image: np.ndarray, name: str) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def h264_available() -> bool:
    """PyAV is installed and its FFmpeg has libx264."""
    try:
        import av
    except ImportError:
        return False
    return "libx264" in av.codecs_available


def even_size(size: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) a video writer encodes a frame of `size` at: odd sides grown by one (yuv420)."""
    height, width = size
    return height + height % 2, width + width % 2


def pad_to_even(image: np.ndarray) -> np.ndarray:
    """`image` grown to `even_size` by repeating its last row and column; unchanged when already even."""
    height, width = image.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return image
    return cv2.copyMakeBorder(image, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)


def _check_frame_size(image: np.ndarray, size: tuple[int, int], name: str) -> None:
    if image.shape[:2] != size:
        raise ValueError(f"frame {name} is {image.shape[1]}x{image.shape[0]}, the video is {size[1]}x{size[0]}")


class PyAVH264Writer:
    """H.264 yuv420p in MP4/MOV through PyAV (libx264)."""

    codec = "h264"

    def __init__(self, path: Path, target: Path, fps: float, size: tuple[int, int]) -> None:
        import av

        self.size = size
        self.encoded_size = even_size(size)
        rate = Fraction(fps).limit_denominator(1001)
        try:
            self._container = av.open(str(path), mode="w", format=_CONTAINERS[target.suffix.lower()])
        except av.FFmpegError as exc:
            raise OSError(f"cannot write {target}: {exc}") from exc
        stream = self._container.add_stream("libx264", rate=rate, options=dict(_H264_OPTIONS))
        stream.width, stream.height = self.encoded_size[1], self.encoded_size[0]
        stream.pix_fmt = "yuv420p"
        # The encoder runs beside the model on the same cores: one thread keeps it from competing.
        stream.codec_context.thread_count = 1
        self._stream = stream
        self._frames = 0
        self._closed = False

    @property
    def encoder(self) -> str:
        return "h264 (libx264 via PyAV)"

    @property
    def padded(self) -> bool:
        return self.encoded_size != self.size

    def write(self, image: np.ndarray, name: str) -> None:
        import av

        _check_frame_size(image, self.size, name)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pad_to_even(image)), format="bgr24")
        frame.pts = self._frames
        self._frames += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and finish the file; raises if either fails (the output is then not committed)."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()

    def describe(self) -> dict[str, Any]:
        return _description(self.codec, self.encoder, self.size, self.encoded_size)


class OpenCVVideoWriter:
    """OpenCV's VideoWriter: mp4v for MP4/MOV (the fallback without PyAV's libx264), MJPG for AVI."""

    def __init__(self, path: Path, target: Path, fps: float, size: tuple[int, int], reason: str = "") -> None:
        fourcc = OPENCV_CODECS[target.suffix.lower()]
        self.size = size
        self.encoded_size = even_size(size)  # mp4v and MJPG are 4:2:0 too: OpenCV would drop an odd side
        self.codec = {"mp4v": "mpeg4", "MJPG": "mjpeg"}[fourcc]
        self.encoder = f"{fourcc} (OpenCV{'; ' + reason if reason else ''})"
        height, width = self.encoded_size
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (width, height))
        if not self._writer.isOpened():
            raise InputError(f"OpenCV cannot write a {fourcc} video to {target}")

    def write(self, image: np.ndarray, name: str) -> None:
        _check_frame_size(image, self.size, name)
        self._writer.write(pad_to_even(image))

    def close(self) -> None:
        self._writer.release()  # reports nothing: the caller's reopen-and-count check catches a bad file

    def describe(self) -> dict[str, Any]:
        return _description(self.codec, self.encoder, self.size, self.encoded_size)


class PngFolderWriter:
    """One lossless single-channel PNG of trainIds per frame (a video codec would alter the ids)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def write(self, image: np.ndarray, name: str) -> None:
        path = self._folder / f"{name}_trainIds.png"
        write_image(path, image)  # lrnnet._io: a full disk raises ENOSPC (imwrite only prints libpng errors)

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"codec": "png", "encoder": "trainId PNGs (OpenCV)"}


def open_video_writer(path: Path, target: Path, fps: float, size: tuple[int, int],
                      prefer_h264: bool = True) -> PyAVH264Writer | OpenCVVideoWriter:
    """The writer for `target`'s file type, writing to `path` (its temporary name); size is (height, width)."""
    suffix = target.suffix.lower()
    if suffix not in OPENCV_CODECS:
        raise InputError(f"output {target}: unknown video type '{target.suffix or '(none)'}'; use "
                         f"{', '.join(VIDEO_SUFFIXES)} (or --output labels for a PNG folder)")
    if suffix in H264_SUFFIXES and prefer_h264:
        if h264_available():
            return PyAVH264Writer(path, target, fps, size)
        return OpenCVVideoWriter(path, target, fps, size, reason="PyAV with libx264 is not installed: "
                                                                 "browsers may not play it; pip install av")
    return OpenCVVideoWriter(path, target, fps, size)


def _description(codec: str, encoder: str, size: tuple[int, int], encoded: tuple[int, int]) -> dict[str, Any]:
    info: dict[str, Any] = {"codec": codec, "encoder": encoder}
    if encoded != size:
        info["padded_to"] = {"height": encoded[0], "width": encoded[1],
                             "why": f"{codec} 4:2:0 needs even sides: edge pixels repeated, no resampling"}
    return info
