"""The video pipeline as a library: outputs read back against an independent oracle, order, corrupt frames,
failures leaving nothing behind, bounded memory, and the report's figures."""

from __future__ import annotations

import logging
import threading
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_helpers import ConvRunner, read_video, street_frames

from lrnnet._io import OUTPUT_MARKER
from lrnnet.data.preprocess import colorize, overlay, resize_labels
from lrnnet.data.synthetic import write_synthetic_demo_video
from lrnnet.errors import InputError
from lrnnet.runtime.sources import ImageFolderSource, PyAVSource, VideoFileSource, open_source
from lrnnet.runtime.video import (
    FRAME_IN_TO_OUT,
    STAGES,
    PipelineOptions,
    default_output,
    format_report,
    run_video,
)


def expected_labels(runner, frame: np.ndarray) -> np.ndarray:
    """The oracle: the runner's own predict on the decoded frame, upsampled (nearest) to the frame."""
    return resize_labels(runner.predict([frame])[0].astype(np.uint8), frame.shape[:2])


def write_video(path: Path, frames: list[np.ndarray], fps: float = 17.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_overlay_video_reads_back_as_class_colours_over_every_frame(synthetic_video, tmp_path):
    runner = ConvRunner()
    out = tmp_path / "out.mp4"
    report = run_video(runner, synthetic_video, out, PipelineOptions(alpha=0.5))
    inputs, outputs = read_video(synthetic_video), read_video(out)
    assert len(outputs) == len(inputs) == 12 == report["frames"]
    palette = np.asarray(runner.info.palette, np.uint8)
    for frame, got in zip(inputs, outputs):
        assert got.shape == frame.shape == (128, 256, 3)
        want = overlay(frame, expected_labels(runner, frame), 0.5, palette)
        error_vs_expected = np.abs(got.astype(int) - want).mean()
        change_from_input = np.abs(got.astype(int) - frame).mean()
        assert error_vs_expected < 5.0  # mp4v compression only (about 3 here)
        assert change_from_input > 4 * error_vs_expected  # visibly coloured, not a copy of the input
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside the output


def test_labels_are_lossless_in_order_and_one_per_frame(synthetic_video, tmp_path):
    runner = ConvRunner()
    out = tmp_path / "labels"
    report = run_video(runner, synthetic_video, out, PipelineOptions(output_kind="labels"))
    inputs = read_video(synthetic_video)
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [f"frame_{i:06d}_trainIds.png" for i in range(len(inputs))]
    for frame, file in zip(inputs, files):
        got = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(got, expected_labels(runner, frame))
    assert report["output_kind"] == "labels" and report["frames"] == len(inputs)
    assert len({cv2.imread(str(f), cv2.IMREAD_UNCHANGED).tobytes() for f in files}) > 1  # frames differ


def test_mask_video_is_the_palette(synthetic_video, tmp_path):
    runner = ConvRunner()
    out = tmp_path / "mask.mp4"
    run_video(runner, synthetic_video, out, PipelineOptions(output_kind="mask", max_frames=4))
    outputs = read_video(out)
    assert len(outputs) == 4
    palette = np.asarray(runner.info.palette, np.uint8)
    for frame, got in zip(read_video(synthetic_video)[:4], outputs):
        want = colorize(expected_labels(runner, frame), palette)
        assert np.abs(got.astype(int) - want).mean() < 6.0


def test_image_folder_with_a_corrupt_frame_is_skipped_and_counted(tmp_path, caplog):
    folder = write_synthetic_demo_video(tmp_path / "cityscapes", size=(128, 256), frames=6)
    images = sorted(folder.glob("*.png"))
    images[3].write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    runner = ConvRunner()
    caplog.set_level(logging.WARNING, logger="lrnnet")
    logging.getLogger("lrnnet").addHandler(caplog.handler)
    try:
        report = run_video(runner, folder, tmp_path / "out", PipelineOptions(output_kind="labels"))
    finally:
        logging.getLogger("lrnnet").removeHandler(caplog.handler)
    assert report["frames"] == 5 and report["frames_decoded"] == 5
    assert report["corrupt_frames_skipped"] == 1 and report["corrupt_frames"] == [images[3].stem]
    written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert written == sorted(f"{p.stem}_trainIds.png" for i, p in enumerate(images) if i != 3)
    assert any(images[3].stem in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)


def test_failure_midway_leaves_no_output_and_no_threads(synthetic_video, tmp_path):
    runner = ConvRunner(fail_at=2 + 5)  # 2 warm-up calls, then the 5th frame fails
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(RuntimeError, match="inference failed"):
        run_video(runner, synthetic_video, tmp_path / "out.mp4")
    assert list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("lrnnet-") and t.name not in before]
    with pytest.raises(RuntimeError):
        run_video(ConvRunner(fail_at=4), synthetic_video, tmp_path / "labels", PipelineOptions(output_kind="labels"))
    assert list(tmp_path.iterdir()) == []


def test_memory_stays_flat_on_a_long_video(tmp_path):
    """Peak traced memory for 160 frames is about that for 40: frames are not accumulated anywhere."""
    scenes = street_frames((128, 256), 4)
    short = write_video(tmp_path / "short.mp4", scenes * 10)
    long = write_video(tmp_path / "long.mp4", scenes * 40)
    peaks = []
    for video in (short, long):
        runner = ConvRunner()
        tracemalloc.start()
        report = run_video(runner, video, tmp_path / f"{video.stem}_out.mp4", PipelineOptions(warmup=0))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert report["frames"] == len(read_video(video))
    frame_bytes = 128 * 256 * 3
    assert peaks[1] < peaks[0] + 20 * frame_bytes  # 120 more frames, far less than 120 frames' worth


def test_report_figures_follow_from_the_measurements(synthetic_video, tmp_path):
    runner = ConvRunner()
    report = run_video(runner, synthetic_video, tmp_path / "o.mp4", PipelineOptions(max_frames=7, target_fps=30))
    assert report["frames"] == 7 and report["resolution"] == {"height": 128, "width": 256}
    assert report["backend"] == "numpy" and report["precision"] == "fp32" and report["device"] == "CPU"
    for stage in (*STAGES, FRAME_IN_TO_OUT):
        summary = report["latency_ms"][stage]
        assert summary["count"] == 7
        assert 0 <= summary["p50_ms"] <= summary["p90_ms"] <= summary["p99_ms"]
    assert report["model_fps"] == pytest.approx(1000.0 / report["latency_ms"]["infer"]["mean_ms"])
    assert report["end_to_end_fps"] == pytest.approx(7 / report["wall_s"])
    model_only = report["target"]["model_only"]
    assert model_only["target_fps"] == 30 and model_only["measured_fps"] == report["model_fps"]
    assert model_only["same_setting"] is False and "CPU" in model_only["note"]
    # Each thread's own work fits in the pipeline's wall time: inference (main thread) and encoding (encode
    # thread) run entirely inside it. (Decode is not checked: the first frame is decoded when the source opens.)
    for stage in ("infer", "encode"):
        assert report["latency_ms"][stage]["mean_ms"] * 7 / 1000 <= report["wall_s"]


def test_default_outputs_sit_beside_the_source(synthetic_video, tmp_path):
    source = open_source(synthetic_video)
    try:
        assert source.kind == "video" and isinstance(source, PyAVSource)  # PyAV decodes files where installed
        assert default_output(source, "overlay") == synthetic_video.with_name("street_seg.mp4")
        assert default_output(source, "labels") == synthetic_video.with_name("street_labels")
    finally:
        source.close()
    folder = write_synthetic_demo_video(tmp_path, size=(64, 128), frames=2)
    images = open_source(folder)
    assert isinstance(images, ImageFolderSource) and images.expected_frames == 2
    assert default_output(images, "overlay") == folder.resolve().with_name(f"{folder.name}_seg.mp4")


@pytest.mark.parametrize("make", ["missing", "text", "empty_folder", "unreadable_folder"])
def test_bad_sources_fail_before_any_output(tmp_path, make):
    if make == "missing":
        spec = tmp_path / "nope.mp4"
    elif make == "text":
        spec = tmp_path / "notes.mp4"
        spec.write_text("not a video")
    elif make == "empty_folder":
        spec = tmp_path / "frames"
        spec.mkdir()
    else:
        spec = tmp_path / "frames"
        spec.mkdir()
        (spec / "a.png").write_bytes(b"garbage")
    before = set(tmp_path.rglob("*"))
    with pytest.raises(InputError):
        run_video(ConvRunner(), spec, tmp_path / "out.mp4")
    assert set(tmp_path.rglob("*")) == before


def test_output_checks(synthetic_video, tmp_path):
    with pytest.raises(InputError, match="refusing to overwrite an input"):
        run_video(ConvRunner(), synthetic_video, synthetic_video)
    with pytest.raises(InputError, match="unknown video type"):
        run_video(ConvRunner(), synthetic_video, tmp_path / "out.gif")
    with pytest.raises(InputError, match="alpha"):
        PipelineOptions(alpha=1.5)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_is_replaced_whole(synthetic_video, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    run_video(ConvRunner(), synthetic_video, out, PipelineOptions(max_frames=3))
    assert len(read_video(out)) == 3
    labels = tmp_path / "labels"
    run_video(ConvRunner(), synthetic_video, labels, PipelineOptions(output_kind="labels", max_frames=3))
    (labels / "stale.png").write_bytes(b"old")
    # A labels folder lrnnet wrote (it holds OUTPUT_MARKER) is replaced as a whole by the next run.
    run_video(ConvRunner(), synthetic_video, labels, PipelineOptions(output_kind="labels", max_frames=2))
    assert sorted(p.name for p in labels.iterdir()) == [OUTPUT_MARKER, "frame_000000_trainIds.png",
                                                        "frame_000001_trainIds.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels", "out.mp4"]


def test_a_folder_lrnnet_did_not_write_is_never_replaced_by_labels(synthetic_video, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "stale.png").write_bytes(b"old")
    with pytest.raises(InputError, match="holds files lrnnet did not write"):
        run_video(ConvRunner(), synthetic_video, theirs, PipelineOptions(output_kind="labels", max_frames=2))
    assert sorted(p.name for p in theirs.iterdir()) == ["stale.png"] and (theirs / "stale.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs"]


def test_damaged_bytes_in_the_middle_of_a_video_are_skipped_and_accounted_for(synthetic_video, tmp_path):
    """Zeroed bytes in the middle of an mp4: the pipeline keeps going and the report accounts for every frame
    the container lists (decoded, corrupt, or lost in decoding), and what it wrote is what it says."""
    damaged = tmp_path / "damaged.mp4"
    data = bytearray(synthetic_video.read_bytes())
    data[len(data) // 3: len(data) // 2] = bytes(len(data) // 2 - len(data) // 3)
    damaged.write_bytes(bytes(data))
    report = run_video(ConvRunner(), damaged, tmp_path / "out.mp4")
    lost = report["corrupt_frames_skipped"] + report["frames_missing"]
    assert report["frames"] + lost == report["frames_expected"] == 12
    assert 0 < lost < 12  # some frames were damaged, and the frames after them were still read
    assert len(read_video(tmp_path / "out.mp4")) == report["frames"]


# -- writers: what a person's player sees (lrnnet.runtime.writers) ----------------------------------


def _read_back_pyav(path: Path) -> tuple[str, str, int, tuple[int, int]]:
    """(codec, pixel format, decoded frames, (height, width)) through PyAV."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame for frame in container.decode(stream)]
        return stream.codec_context.name, stream.codec_context.pix_fmt, len(frames), (frames[0].height,
                                                                                       frames[0].width)


def _read_back_opencv(path: Path) -> tuple[str, int, tuple[int, int]]:
    """(fourcc, decoded frames, (height, width)) through OpenCV's own FFmpeg."""
    capture = cv2.VideoCapture(str(path))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace")
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return fourcc, len(frames), frames[0].shape[:2]


def _write_frames(writer, frames) -> None:
    for index, frame in enumerate(frames):
        writer.write(frame, f"frame_{index:06d}")
    writer.close()


@pytest.mark.parametrize("size", [(64, 128), (63, 125)], ids=["even", "odd"])
def test_h264_writer_reads_back_with_pyav_and_opencv(tmp_path, size):
    from lrnnet.runtime.writers import open_video_writer

    frames = street_frames(size, 7)
    out = tmp_path / "out.mp4"
    writer = open_video_writer(out, out, 17.0, size)
    _write_frames(writer, frames)
    encoded = (size[0] + size[0] % 2, size[1] + size[1] % 2)
    assert _read_back_pyav(out) == ("h264", "yuv420p", 7, encoded)
    fourcc, count, shape = _read_back_opencv(out)
    assert (fourcc.lower() in ("h264", "avc1"), count, shape) == (True, 7, encoded)
    info = writer.describe()
    assert info["codec"] == "h264" and "libx264" in info["encoder"]
    assert ("padded_to" in info) == (encoded != size)
    # The picture survives: the first frame (minus the padding) is close to what went in.
    import av

    with av.open(str(out)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="bgr24")[: size[0], : size[1]]
    assert np.abs(first.astype(int) - frames[0].astype(int)).mean() < 6


def test_opencv_fallback_writes_mp4v_and_says_so(tmp_path):
    from lrnnet.runtime.writers import open_video_writer

    out = tmp_path / "out.mp4"
    writer = open_video_writer(out, out, 17.0, (64, 128), prefer_h264=False)
    _write_frames(writer, street_frames((64, 128), 5))
    assert _read_back_pyav(out)[0] == "mpeg4" and _read_back_opencv(out)[1:] == (5, (64, 128))
    assert writer.describe() == {"codec": "mpeg4", "encoder": "mp4v (OpenCV)"}


def test_h264_writer_refuses_a_frame_of_another_size(tmp_path):
    from lrnnet.runtime.writers import open_video_writer

    out = tmp_path / "out.mp4"
    writer = open_video_writer(out, out, 17.0, (64, 128))
    with pytest.raises(ValueError, match="128x64"):
        writer.write(np.zeros((32, 32, 3), np.uint8), "frame_000000")
    writer.close()
    writer.close()  # closing twice is harmless


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_h264_writer_raises_a_full_disk_as_enospc():
    """The encoder's write errors surface from write() or close() as OSError ENOSPC (exit 2 at the CLI),
    so the pipeline never commits a half-written video."""
    import errno

    from lrnnet.runtime.writers import open_video_writer

    writer = open_video_writer(Path("/dev/full"), Path("out.mp4"), 17.0, (64, 128))
    rng = np.random.default_rng(0)
    with pytest.raises(OSError) as failure:
        for index in range(30):
            writer.write(rng.integers(0, 255, (64, 128, 3), dtype=np.uint8), f"frame_{index:06d}")
        writer.close()
    assert failure.value.errno == errno.ENOSPC


def test_pipeline_reports_the_encoder(synthetic_video, tmp_path):
    from lrnnet.runtime.video import format_report

    report = run_video(ConvRunner(), synthetic_video, tmp_path / "out.mp4")
    assert report["output_codec"] == "h264" and "libx264" in report["output_encoder"]
    assert "h264 (libx264 via PyAV)" in format_report(report).splitlines()[0]
    assert _read_back_pyav(tmp_path / "out.mp4")[0] == "h264"



# -- sources: PyAV decoding, timestamps, stream timeouts (lrnnet.runtime.sources) --------------------


def test_pyav_and_opencv_sources_decode_the_same_frames(synthetic_video):
    pyav, opencv = open_source(synthetic_video), VideoFileSource(synthetic_video)
    try:
        assert isinstance(pyav, PyAVSource)
        assert (pyav.size, pyav.expected_frames) == (opencv.size, opencv.expected_frames) == ((128, 256), 12)
        assert abs(pyav.fps - opencv.fps) < 1e-6
        ours, theirs = [f.image for f in pyav], [f.image for f in opencv]
    finally:
        pyav.close()
        opencv.close()
    assert len(ours) == len(theirs) == 12
    # Both are FFmpeg's decoder; only the YUV -> BGR conversion may differ by a level or so.
    assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(ours, theirs)) < 2.0


class _SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte (a stalled camera)."""

    def __init__(self) -> None:
        import socket

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self.accepted: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            self.accepted.append(connection)  # held open, never answered

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self.accepted:
            connection.close()
        self._socket.close()


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_a_stream_that_never_answers_fails_within_the_timeout_with_exit_2(scheme, tiny_onnx, tmp_path):
    import subprocess
    import sys
    import time

    server = _SilentServer()
    try:
        url = f"{scheme}://127.0.0.1:{server.port}/live"
        command = [str(Path(sys.executable).parent / "lrnnet-infer"), url, "--model", str(tiny_onnx),
                   "-o", str(tmp_path / "out.mp4"), "--timeout", "2"]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        elapsed = time.perf_counter() - start
    finally:
        server.close()
    assert server.accepted, "the client never connected: the test did not exercise a stall"
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrnnet-infer: error: stream ") and "within 2 s" in lines[0]
    assert elapsed < 30  # interpreter start and imports included; without the timeout it would hang
    assert not (tmp_path / "out.mp4").exists()


def test_a_live_stream_reports_capture_to_output_latency(tmp_path):
    """A real MPEG-TS H.264 stream over HTTP (a local server): frames carry capture times, the report a row."""
    import functools
    import http.server

    import av

    from lrnnet.runtime.video import CAPTURE_TO_OUTPUT, format_report

    stream_file = tmp_path / "www" / "live.ts"
    stream_file.parent.mkdir()
    with av.open(str(stream_file), mode="w", format="mpegts") as container:
        video = container.add_stream("libx264", rate=17)
        video.width, video.height, video.pix_fmt = 128, 64, "yuv420p"
        for frame in street_frames((64, 128), 8):
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(stream_file.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        source = open_source(f"http://127.0.0.1:{server.server_address[1]}/live.ts", timeout_s=10)
        assert source.live and source.size == (64, 128)
        report = run_video(ConvRunner(), source, tmp_path / "out.mp4")
        source.close()
    finally:
        server.shutdown()
        thread.join()
    assert report["frames"] == 8
    capture = report["latency_ms"][CAPTURE_TO_OUTPUT]
    assert capture["count"] == 8 and capture["mean_ms"] > 0
    assert "capture->out" in format_report(report)


def test_a_file_reports_no_capture_latency(synthetic_video, tmp_path):
    from lrnnet.runtime.video import CAPTURE_TO_OUTPUT

    report = run_video(ConvRunner(), synthetic_video, tmp_path / "out.mp4")
    assert CAPTURE_TO_OUTPUT not in report["latency_ms"]  # a file has no capture time


def test_a_runner_is_warmed_up_once_per_input_shape(synthetic_video, tmp_path):
    """The warm-up inferences run before a runner's first frames of a shape, not again before each video it
    segments (a batch worker segments many with one runner)."""
    runner = ConvRunner()
    batch_shape = runner.prepare(street_frames((32, 64), 1)).shape
    run_video(runner, synthetic_video, tmp_path / "a.mp4", PipelineOptions(max_frames=3, warmup=2))
    assert runner.runs_at(batch_shape) == 2 + 3
    run_video(runner, synthetic_video, tmp_path / "b.mp4", PipelineOptions(max_frames=3, warmup=2))
    assert runner.runs_at(batch_shape) == 2 + 3 + 3
    assert runner.runs_at((2, *batch_shape[1:])) == 0
    fresh = ConvRunner()
    fresh.infer(np.zeros(batch_shape, np.float32))
    run_video(fresh, synthetic_video, tmp_path / "c.mp4", PipelineOptions(max_frames=3, warmup=2))
    assert fresh.runs_at(batch_shape) == 1 + 1 + 3  # one run before: the rest of the warm-up


def _odd_video(path: Path, size=(63, 127), frames=3) -> Path:
    """A lossless (FFV1) video of an odd size, so that nothing but the writer under test changes the size."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=17)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "bgr0"
        for index, image in enumerate(street_frames(size, frames)):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize(("suffix", "h264"), [(".avi", False), (".mp4", True), (".mp4", False)],
                         ids=["avi-mjpg", "mp4-h264", "mp4-mp4v"])
def test_every_video_writer_pads_an_odd_size_and_says_so(suffix, h264, tmp_path, monkeypatch):
    """63x127 was written 62x126 by OpenCV's MJPG (AVI) and mp4v: every writer now pads to even like H.264 does, the
    report says the size written, and the file read back has it."""
    from lrnnet.runtime import writers

    if not h264:  # the fallback writer where PyAV's libx264 is missing
        monkeypatch.setattr(writers, "h264_available", lambda: False)
    source = _odd_video(tmp_path / "odd.mkv")
    out = tmp_path / f"out{suffix}"
    report = run_video(ConvRunner(), source, out, PipelineOptions(output_kind="mask", warmup=0))
    assert report["resolution"] == {"height": 63, "width": 127}
    assert report["output_padded_to"]["height"] == 64 and report["output_padded_to"]["width"] == 128
    frames = read_video(out)
    assert len(frames) == 3 and all(frame.shape == (64, 128, 3) for frame in frames)
    assert "padded to 64x128" in format_report(report)


@pytest.mark.parametrize("fps", [0.01, 0.5, 29.97, 12.3456789, 1000.0])
@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_the_report_states_the_frame_rate_the_file_has(fps, suffix, synthetic_video, tmp_path):
    import av

    out = tmp_path / f"out{suffix}"
    report = run_video(ConvRunner(), synthetic_video, out, PipelineOptions(fps=fps, max_frames=2, warmup=0))
    with av.open(str(out)) as container:
        written = float(container.streams.video[0].average_rate)
    assert report["output_fps"] == pytest.approx(written, rel=1e-9) and written == pytest.approx(fps, rel=1e-3)


@pytest.mark.parametrize("fps", [0.0001, 1e9, float("nan")])
def test_an_output_rate_the_encoders_cannot_write_is_refused(fps):
    with pytest.raises(InputError, match="out of range"):
        PipelineOptions(fps=fps)


def test_an_image_folder_with_two_images_of_one_stem_is_refused(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for name in ("a.png", "a.jpg", "b.png"):
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), 90, np.uint8))
    with pytest.raises(InputError) as info:
        ImageFolderSource(folder)
    assert str(info.value) == f"image folder {folder} holds a.jpg and a.png: two frames named a; keep one of them"


@pytest.mark.parametrize("spec", ["99999999999999999999", "100", "1" * 5000])
def test_a_camera_index_out_of_range_is_bad_input(spec):
    with pytest.raises(InputError, match=r"camera index \d+(\.\.\.)? is out of range \(0 to 99\)"):
        open_source(spec)


def test_a_unicode_digit_is_not_a_camera(tmp_path):
    with pytest.raises(InputError, match="source ² does not exist"):
        open_source("²")


@pytest.mark.parametrize("timeout", [2148.0, 1e9, 0.0, float("nan")])
def test_a_stream_timeout_ffmpeg_cannot_take_is_refused(timeout):
    with pytest.raises(InputError, match="timeout .* is out of range"):
        open_source("rtsp://127.0.0.1:9/x", timeout_s=timeout)
