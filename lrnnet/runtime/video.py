"""The video pipeline: decode -> preprocess -> infer -> postprocess -> encode, with a latency report.

Three threads joined by bounded queues, so the model is never waiting on I/O when it could be busy
and memory stays flat on long videos:

    decode thread:  read a frame, preprocess it (THE preprocess function, via the runner)
    main thread:    infer, argmax (reduces C x H x W logits to an H x W map before it is queued)
    encode thread:  upsample the labels to the frame (nearest), colour them, encode

One main thread takes frames in order from FIFO queues, so the order is kept and every decoded
frame gives exactly one output frame. A frame that cannot be decoded is skipped with a warning and
counted. The output is written to a temporary file (or folder) beside the target and renamed only
when every frame is written; on any failure nothing is left behind.

The report (`run_video(...)` returns it; `format_report` prints it) has per-stage latency
mean/p50/p90/p99, the model-only FPS (1000 / mean infer latency) and the end-to-end FPS (frames /
wall time of the whole pipeline), each compared with the target (71 FPS, the LRNNet paper's GTX
1080Ti figure) and saying when the device or setting differs from the paper's.
"""

from __future__ import annotations

import datetime
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import lrnnet
from lrnnet._io import (
    VideoProbe,
    atomic_output,
    check_writable,
    refuse_overwrite,
    verify_folder,
    verify_video,
)
from lrnnet.data.preprocess import colorize, overlay, resize_labels
from lrnnet.errors import InputError
from lrnnet.limits import MAX_FPS, MIN_FPS, fps_problem
from lrnnet.log import logger, progress_bar
from lrnnet.runtime.latency import PAPER_FPS, LatencyRecorder, compare_with_paper
from lrnnet.runtime.runner import Runner
from lrnnet.runtime.sources import FrameSource, open_source
from lrnnet.runtime.writers import VIDEO_SUFFIXES, PngFolderWriter, even_size, open_video_writer

__all__ = ["CAPTURE_TO_OUTPUT", "FRAME_IN_TO_OUT", "OUTPUT_KINDS", "STAGES", "PipelineOptions", "default_output", "format_report", "resolve_output",
           "run_video"]

OUTPUT_KINDS = ("overlay", "mask", "labels")
STAGES = ("decode", "preprocess", "infer", "postprocess", "encode")
# Per frame, from the start of its decode to the end of its encode, queueing included: the latency a
# viewer sees (the stages overlap, so it is not their sum, and end-to-end FPS is not 1000 / it).
FRAME_IN_TO_OUT = "frame_in_to_out"
# Live sources with timestamps (PyAV): from the frame's capture (the stream's clock, anchored at its
# fastest delivery: see sources.Frame.captured_at) to the end of its encode; includes the network and
# decoder buffering that frame in->out cannot see. Reported only when the source gives it.
CAPTURE_TO_OUTPUT = "capture_to_output"
_SHOWN_CORRUPT = 20  # corrupt frames named in the report; the count is always complete
_POLL_S = 0.1  # how often a blocked thread checks whether the pipeline was stopped
_STOP_GRACE_S = 10.0  # how long a stopped stage may take to unwind (a native decode or encode call in hand)


@dataclass
class PipelineOptions:
    """What `run_video` does; validated once here."""

    output_kind: str = "overlay"  # overlay | mask | labels (trainId PNGs)
    alpha: float = 0.5  # overlay opacity of the colours
    max_frames: int | None = None  # stop after this many decoded frames
    # Untimed inferences before the first frame (lazy init, CUDA graph capture, autotuning), less those the
    # runner already ran at that input shape (the next video of a batch worker).
    warmup: int = 2
    queue_size: int = 2  # frames waiting between two stages: enough to decouple them, few to keep latency low
    fps: float | None = None  # output frame rate; default the source's
    target_fps: float = PAPER_FPS

    def __post_init__(self) -> None:
        if self.output_kind not in OUTPUT_KINDS:
            raise InputError(f"output must be one of {', '.join(OUTPUT_KINDS)}, got '{self.output_kind}'")
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"max_frames must be positive, got {self.max_frames}")
        if self.warmup < 0 or self.queue_size < 1:
            raise InputError("warmup must be >= 0 and queue_size >= 1")
        # not (x > 0) also refuses nan; inf would hang the encoder (a zero frame duration)
        fps_refused = fps_problem(self.fps) if self.fps is not None else None
        if fps_refused is not None:
            raise InputError(f"output {fps_refused}")
        if not (self.target_fps > 0 and math.isfinite(self.target_fps)):
            raise InputError(f"target FPS must be a positive finite number, got {self.target_fps}")


def default_output(source: FrameSource, output_kind: str) -> Path:
    """`<video>_seg.mp4` beside the source; a `<video>_labels/` folder of trainId PNGs for labels."""
    stem = source.default_output_stem()
    if output_kind == "labels":
        return stem.with_name(stem.name[: -len("_seg")] + "_labels")
    return stem.with_name(stem.name + ".mp4")


# -- the pipeline --------------------------------------------------------------------------------------


class _Stop(Exception):
    """Another stage failed: unwind this one quietly (the failure itself is re-raised by the main thread)."""


_END = object()


class _Stage(threading.Thread):
    """A worker thread whose exception is kept for the main thread, and which stops the others."""

    def __init__(self, name: str, body: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=f"lrnnet-{name}", daemon=True)
        self._body, self._stop_event = body, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._body()
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            self.error = exc
            self._stop_event.set()


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=_POLL_S)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue


class _Pipeline:
    def __init__(self, runner: Runner, source: FrameSource, options: PipelineOptions,
                 sink_factory: Callable[[], Any]) -> None:
        self.runner, self.source, self.options = runner, source, options
        self._sink_factory = sink_factory
        self.writer_info: dict[str, Any] = {}  # codec and encoder, from the writer (lrnnet.runtime.writers)
        self.stop = threading.Event()  # a stage failed: everyone unwinds
        self.end_of_input = threading.Event()  # Ctrl-C on a live source: stop reading, finish the rest
        self.latency = {stage: LatencyRecorder() for stage in (*STAGES, FRAME_IN_TO_OUT, CAPTURE_TO_OUTPUT)}
        self.decoded = 0
        self.written = 0
        self.corrupt: list[str] = []
        self.corrupt_count = 0
        self.exhausted = False  # the source ended by itself (not max_frames, not Ctrl-C)
        self._inbox: queue.Queue = queue.Queue(options.queue_size)
        self._outbox: queue.Queue = queue.Queue(options.queue_size)
        self._palette = np.asarray(runner.info.palette, dtype=np.uint8)
        total = source.expected_frames
        if options.max_frames is not None:
            total = min(total, options.max_frames) if total is not None else options.max_frames
        self._bar = progress_bar("Segmenting", total=total, unit="frame")

    def run(self) -> float:
        """Process every frame; returns the wall time in seconds (first read to last frame written)."""
        self._warm_up()
        decoder = _Stage("decode", self._decode, self.stop)
        encoder = _Stage("encode", self._encode, self.stop)
        start = time.perf_counter()
        decoder.start()
        encoder.start()
        try:
            self._infer_loop()
            _put(self._outbox, _END, self.stop)
        except _Stop:
            pass
        except BaseException:
            self.stop.set()
            raise
        finally:
            try:
                self._join(encoder)  # it ends on _END, or on the stop flag when this thread failed
            finally:
                self.stop.set()  # the decoder has finished (its _END was consumed) or must stop now
                self._join(decoder)
                self._bar.close()
        wall = time.perf_counter() - start
        for stage in (decoder, encoder):
            if stage.error is not None:
                raise stage.error
        return wall

    def _join(self, stage: _Stage) -> None:
        """Wait for `stage` in short, interruptible steps; once stopped, give it _STOP_GRACE_S to unwind.

        A signal (Ctrl-C, SIGTERM) raised in this wait stops every stage and still waits the grace
        period, so no thread writes to an output that is being removed.
        """
        deadline = None
        while stage.is_alive():
            try:
                stage.join(_POLL_S)
            except BaseException:
                self.stop.set()
                self._join(stage)
                raise
            if self.stop.is_set():
                deadline = deadline or time.monotonic() + _STOP_GRACE_S
                if time.monotonic() > deadline:
                    logger.warning("the %s thread did not stop within %.0f s; leaving it", stage.name, _STOP_GRACE_S)
                    return

    def _warm_up(self) -> None:
        if not self.options.warmup:
            return
        height, width = self.runner.info.input_size
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        batch = self._batch([frame])
        # A runner that has run this shape before (the next source of a batch worker) is warm already.
        for _ in range(self.options.warmup - self.runner.runs_at(batch.shape)):
            self.runner.infer(batch)

    def _batch(self, frames: list[np.ndarray]) -> np.ndarray:
        batch = self.runner.prepare(frames)
        fixed = self.runner.fixed_batch
        if fixed is not None and fixed > len(frames):  # a fixed-batch graph: pad with copies of the frame
            batch = np.concatenate([batch, np.repeat(batch[-1:], fixed - len(frames), axis=0)])
        return batch

    # decode thread
    def _decode(self) -> None:
        max_frames = self.options.max_frames
        for frame in self.source:
            if self.end_of_input.is_set() or (max_frames is not None and self.decoded >= max_frames):
                break
            if frame.image is None:
                self.corrupt_count += 1
                if len(self.corrupt) < _SHOWN_CORRUPT:
                    self.corrupt.append(frame.name)
                logger.warning("frame %d (%s) %s: skipped", frame.index, frame.name, frame.error)
                continue
            started = time.perf_counter() - frame.decode_ms / 1000.0
            t0 = time.perf_counter()
            batch = self._batch([frame.image])
            preprocess_ms = (time.perf_counter() - t0) * 1000.0
            self.decoded += 1
            self.latency["decode"].add(frame.decode_ms)
            self.latency["preprocess"].add(preprocess_ms)
            _put(self._inbox, (frame, batch, started), self.stop)
        else:
            self.exhausted = True
        _put(self._inbox, _END, self.stop)

    # main thread
    def _infer_loop(self) -> None:
        while True:
            try:
                item = _get(self._inbox, self.stop)
                if item is _END:
                    return
                frame, batch, started = item
                output = self.runner.infer(batch)
                infer_ms = self.runner.last_infer_ms
                t0 = time.perf_counter()
                labels = self.runner.to_labels(output)[0]
                argmax_ms = (time.perf_counter() - t0) * 1000.0
                self.latency["infer"].add(infer_ms)
                _put(self._outbox, (frame, labels, argmax_ms, started), self.stop)
            except KeyboardInterrupt:
                if not self.source.live:
                    raise
                logger.info("Interrupted: finishing the frames already read")
                self.end_of_input.set()

    # encode thread
    def _encode(self) -> None:
        sink = self._sink_factory()
        self.writer_info = sink.describe()
        try:
            while True:
                item = _get(self._outbox, self.stop)
                if item is _END:
                    return
                frame, labels, argmax_ms, started = item
                t0 = time.perf_counter()
                image = self._render(frame.image, labels)
                postprocess_ms = argmax_ms + (time.perf_counter() - t0) * 1000.0
                t1 = time.perf_counter()
                sink.write(image, frame.name)
                done = time.perf_counter()
                self.latency["postprocess"].add(postprocess_ms)
                self.latency["encode"].add((done - t1) * 1000.0)
                self.latency[FRAME_IN_TO_OUT].add((done - started) * 1000.0)
                if frame.captured_at is not None:
                    self.latency[CAPTURE_TO_OUTPUT].add((done - frame.captured_at) * 1000.0)
                self.written += 1
                self._bar.update(1)
        finally:
            sink.close()

    def _render(self, frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
        kind = self.options.output_kind
        if kind == "overlay":
            return overlay(frame, labels, self.options.alpha, self._palette)
        full = resize_labels(labels.astype(np.uint8), frame.shape[:2])
        return colorize(full, self._palette) if kind == "mask" else full


def run_video(runner: Runner, source: FrameSource | str | Path, output: str | Path | None = None,
              options: PipelineOptions | None = None) -> dict[str, Any]:
    """Segment every frame of `source` with `runner`, write `output`, and return the report.

    `source`: an opened FrameSource, or what `open_source` takes. `output`: default
    `default_output(source, kind)`. Bad input raises InputError before any output exists; a failure
    midway leaves no output behind.
    """
    options = options or PipelineOptions()
    opened = source if isinstance(source, FrameSource) else open_source(source)
    try:
        target = resolve_output(opened, output, options.output_kind)
        fps = options.fps or _source_rate(opened)
        # The runner was named when it was opened (open_runner's "Runner:" line)
        logger.info("Segmenting %s (%dx%d) -> %s", opened.description, *opened.size, target)
        pipeline: _Pipeline | None = None

        def written() -> int:  # read when the output is checked, after the run
            return pipeline.written if pipeline is not None else 0

        if options.output_kind == "labels":
            # Checked before the rename: one decodable PNG per frame written (imwrite reports no ENOSPC).
            with atomic_output(target, directory=True, verify=lambda tmp: verify_folder(tmp, written)) as tmp_folder:
                pipeline = _Pipeline(runner, opened, options, lambda: PngFolderWriter(tmp_folder))
                wall = pipeline.run()
                _check_frames(pipeline, opened)
        else:
            # Checked before the rename: the video reopens with every frame (VideoWriter reports no ENOSPC).
            # and at the size the writer says it encodes (an odd side padded to even, never cropped).
            encoded = even_size(opened.size)
            read_back: list[VideoProbe | None] = []  # what the check read of the file, kept for the report

            def verify(tmp: Path) -> None:
                read_back.append(verify_video(tmp, written, encoded))

            with atomic_output(target, verify=verify) as tmp:
                pipeline = _Pipeline(runner, opened, options, lambda: open_video_writer(tmp, target, fps, opened.size))
                wall = pipeline.run()
                _check_frames(pipeline, opened)
            probe = read_back[-1]
            fps = (probe.fps if probe is not None else None) or fps  # the report states the rate the file has
    finally:
        if opened is not source:
            opened.close()
    return _report(runner, opened, target, options, pipeline, wall, fps)


def _source_rate(source: FrameSource) -> float:
    """The source's frame rate as the output's, brought within what the encoders write (lrnnet.limits), with a
    warning when it is not (a container that states 90000 fps): the report then states the rate written."""
    rate = min(max(source.fps, MIN_FPS), MAX_FPS)
    if rate != source.fps:
        logger.warning("%s states %g fps, outside %g to %g: the output is written at %g fps (give --fps to choose)",
                       source.description, source.fps, MIN_FPS, MAX_FPS, rate)
    return rate


def resolve_output(source: FrameSource, output: str | Path | None, kind: str) -> Path:
    """The output `run_video` will write for `source` (default `default_output`), refused if it cannot be.

    Callers that load a model call it first, so a bad output name costs no model load.
    """
    target = Path(output) if output is not None else default_output(source, kind)
    source_path = getattr(source, "path", None) or getattr(source, "folder", None)
    folder = kind == "labels"  # a folder of PNGs, replaced as a whole when committed
    refuse_overwrite(inputs=[source_path], outputs=[] if folder else [target], folders=[target] if folder else [])
    check_writable(target, directory=folder)
    if kind != "labels" and target.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"output {target}: unknown video type '{target.suffix or '(none)'}'; use "
                         f"{', '.join(VIDEO_SUFFIXES)}, or --output labels for a folder of trainId PNGs")
    return target


def _check_frames(pipeline: _Pipeline, source: FrameSource) -> None:
    if pipeline.written == 0:
        raise InputError(f"{source.description}: no frame could be decoded "
                         f"({pipeline.corrupt_count} corrupt frames skipped)")
    # Frames the container lists that FFmpeg never returned (a truncated file) are not an error here: the output
    # keeps what decoded, and the report says it (`damage`), for the caller to exit 2 on (lrnnet-infer does).
    if pipeline.end_of_input.is_set():  # Ctrl-C on a live source may drop the frame in hand
        return
    if pipeline.written != pipeline.decoded:  # a bug, not bad input: the pipeline lost a frame
        raise RuntimeError(f"pipeline wrote {pipeline.written} frames for {pipeline.decoded} decoded")


def _report(runner: Runner, source: FrameSource, target: Path, options: PipelineOptions, pipeline: _Pipeline,
            wall_s: float, fps: float) -> dict[str, Any]:
    latency = {stage: recorder.summary() for stage, recorder in pipeline.latency.items()
               if stage != CAPTURE_TO_OUTPUT or recorder.count}
    model_fps = latency["infer"]["fps"]
    e2e_fps = pipeline.written / wall_s if wall_s > 0 else None
    missing = _missing(pipeline, source)

    def compare(fps: float | None) -> dict[str, Any]:
        return compare_with_paper(fps, device=runner.device, input_size=runner.info.input_size,
                                  precision=runner.precision, target_fps=options.target_fps)

    return {
        "lrnnet_version": lrnnet.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source.description,
        "source_type": source.kind,
        "output": str(target),
        "output_kind": options.output_kind,
        "output_codec": pipeline.writer_info.get("codec"),
        "output_encoder": pipeline.writer_info.get("encoder"),
        **({"output_padded_to": pipeline.writer_info["padded_to"]} if "padded_to" in pipeline.writer_info else {}),
        "frames": pipeline.written,
        "frames_decoded": pipeline.decoded,
        "corrupt_frames_skipped": pipeline.corrupt_count,
        "corrupt_frames": pipeline.corrupt,
        "frames_expected": source.expected_frames,  # what the container or folder lists (None for a camera)
        "frames_missing": missing,
        "damage": damage_note(source.expected_frames, missing),
        "resolution": {"height": source.size[0], "width": source.size[1]},
        "output_fps": fps,
        **{key: value for key, value in runner.describe().items()},
        "batch": runner.fixed_batch or 1,
        "warmup_iterations": options.warmup,
        "wall_s": wall_s,
        "latency_ms": latency,
        "model_fps": model_fps,
        "end_to_end_fps": e2e_fps,
        "target": {
            "model_only": compare(model_fps),
            "end_to_end": compare(e2e_fps),
        },
    }


def damage_note(listed: int | None, missing: int) -> str | None:
    """What a source that ended before the frames its container lists says, else None: the one wording of a
    damaged source (a truncated file), for the single path's report and a batch's line, entry and marker."""
    if not missing or listed is None:
        return None
    return f"{missing} of {listed} listed frames could not be decoded (damaged file?)"


def _missing(pipeline: _Pipeline, source: FrameSource) -> int:
    """Frames the container lists but FFmpeg never returned nor reported (0 unless the source ran to its end);
    the frames it lists as not to be shown (source.hidden_frames) are not lost."""
    if not pipeline.exhausted or source.expected_frames is None:
        return 0
    return max(0, source.expected_frames - pipeline.decoded - pipeline.corrupt_count - source.hidden_frames)


def _encoder_note(report: dict[str, Any]) -> str:
    """', h264 (libx264 via PyAV)' for a video, plus the padding when the frame had an odd side."""
    encoder = report.get("output_encoder")
    if not encoder or report.get("output_codec") == "png":
        return ""
    padded = report.get("output_padded_to")
    return f", {encoder}" + (f", padded to {padded['height']}x{padded['width']} for 4:2:0" if padded else "")


def _ms(value: float | None) -> str:
    return f"{value:8.2f}" if value is not None else f"{'-':>8}"


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table (what lrnnet-infer prints)."""
    res = report["resolution"]
    h, w = report["input_size"]
    lines = [
        (f"Source     {report['source']} ({report['source_type']}, {res['height']}x{res['width']}) -> "
         f"{report['output']} ({report['output_kind']}{_encoder_note(report)})"),
        f"Model      {report['model']}: {report['backend']}, {report['precision'].upper()}, input {h}x{w}",
        f"Device     {report['device']}",
        (f"Frames     {report['frames']} written, {report['corrupt_frames_skipped']} corrupt skipped"
         + (f", {report['frames_missing']} lost in decoding" if report["frames_missing"] else "")
         + f", {report['wall_s']:.2f} s"),
        *([f"Damaged    {report['damage']}"] if report.get("damage") else []),
        "",
        f"{'stage':<13}{'mean ms':>8}{'p50':>9}{'p90':>9}{'p99':>9}",
    ]
    for stage in (*STAGES, FRAME_IN_TO_OUT, CAPTURE_TO_OUTPUT):
        if stage not in report["latency_ms"]:  # capture->output: live sources with timestamps only
            continue
        s = report["latency_ms"][stage]
        label = {FRAME_IN_TO_OUT: "frame in->out", CAPTURE_TO_OUTPUT: "capture->out"}.get(stage, stage)
        lines.append(f"{label:<13}{_ms(s['mean_ms'])} {_ms(s['p50_ms'])} {_ms(s['p90_ms'])} {_ms(s['p99_ms'])}")
    lines.append("")
    model_fps, e2e_fps = report["model_fps"], report["end_to_end_fps"]
    lines.append(f"Model-only FPS  {model_fps:8.1f}" if model_fps else "Model-only FPS         -")
    lines.append(f"End-to-end FPS  {e2e_fps:8.1f}" if e2e_fps else "End-to-end FPS         -")
    target = report["target"]["model_only"]
    lines.append(f"Target          {target['target_fps']:8.1f}  ({target['paper_setting']})")
    lines.append(f"Model-only: {target['note']}")
    lines.append(f"End-to-end: {report['target']['end_to_end']['note']}")
    return "\n".join(lines)
