"""Helpers of the runtime tests (importable by tests and benchmarks): frames, ONNX metadata surgery."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrnnet.export.metadata import ModelInfo
from lrnnet.runtime.runner import Runner

TINY_SIZE = (128, 256)  # the size of the tiny_onnx export (tests/fixtures_export.py)


def street_frames(size: tuple[int, int], n: int, seed: int = 11) -> list[np.ndarray]:
    """Synthetic street scenes (BGR uint8) at `size`: the kind of frame the model was calibrated on."""
    from lrnnet.data.synthetic import SceneLayout, render_scene

    rng = np.random.default_rng(seed)
    return [render_scene(SceneLayout.random(rng), size)[0] for _ in range(n)]


def rewrite_metadata(source: Path, target: Path, **changes) -> Path:
    """Copy an lrnnet ONNX with some ModelInfo fields changed (changes=None removes all lrnnet metadata)."""
    import onnx

    from lrnnet.export.metadata import KEY_PREFIX, ModelInfo

    model = onnx.load(str(source))
    if changes.pop("strip", False):
        kept = [p for p in model.metadata_props if not p.key.startswith(KEY_PREFIX)]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
    else:
        info = ModelInfo.from_onnx_model(model)
        for key, value in changes.items():
            setattr(info, key, value)
        info.write_to(model)
    onnx.save(model, str(target))
    return target


def checkpoint_validated_at(checkpoint: Path, target: Path, size: tuple[int, int]) -> Path:
    """A copy of `checkpoint` recording, as lrnnet-train does, that it was trained and validated at `size`."""
    from lrnnet.models import load_checkpoint, save_checkpoint
    from lrnnet.models.checkpoint import SIZES_KEY

    save_checkpoint(target, load_checkpoint(checkpoint), **{SIZES_KEY: {"train_size": list(size), "val_size": list(size)}})
    return target


def write_truncated_video(path: Path, size: tuple[int, int] = (64, 128), frames: int = 30,
                          decodable: int = 1) -> Path:
    """An H.264 MP4 (index first, as `movflags=faststart` writes it) whose container lists `frames` frames, cut
    after its first `decodable` packets: a download or copy that stopped short. FFmpeg returns those frames and
    then ends without an error."""
    import av

    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=17, options={"x264-params": "bframes=0"})
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        for frame in street_frames(size, frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        ends = sorted(p.pos + p.size for p in container.demux(video=0) if p.pos is not None and p.size)
    path.write_bytes(path.read_bytes()[: ends[decodable - 1]])
    return path


def write_trimmed_video(path: Path, size: tuple[int, int] = (64, 128), frames: int = 30, hidden: int = 5) -> Path:
    """An H.264 MP4 whose first `hidden` frames lie before its edit list's start (as a clip trimmed without
    re-encoding has): the container lists `frames`, FFmpeg shows `frames - hidden`, and nothing is damaged."""
    import av

    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=17, options={"x264-params": "bframes=0"})
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        for index, frame in enumerate(street_frames(size, frames)):
            video_frame = av.VideoFrame.from_ndarray(frame, format="bgr24")
            video_frame.pts = index - hidden  # negative: before the edit list's start
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
    return path


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from `path`."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


class ConvRunner(Runner):
    """A Runner (the real base class) whose graph is a fixed random 1x1 conv: microseconds per frame, many
    classes over a street scene. For tests about the pipeline, not the network. `fail_at`: the infer
    call that raises (to test failures midway)."""

    backend = "numpy"

    def __init__(self, size: tuple[int, int] = (64, 128), seed: int = 0, fail_at: int | None = None) -> None:
        super().__init__(ModelInfo(input_height=size[0], input_width=size[1], stride=8), device="CPU",
                         name="conv1x1")
        rng = np.random.default_rng(seed)
        self.weight = rng.normal(size=(19, 3)).astype(np.float32)
        self.bias = rng.normal(size=(19, 1, 1)).astype(np.float32)
        self.fail_at = fail_at
        self.calls = 0

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError(f"inference failed at call {self.calls}")
        return np.einsum("kc,nchw->nkhw", self.weight, batch) + self.bias
