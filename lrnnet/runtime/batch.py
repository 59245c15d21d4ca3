"""Many sources as one Ray Data job: one actor per worker holding one runner, failures isolated, resumable.

    report = run_batch(["a.mp4", "b.mp4", "seq_folder/"], "lrnnet.onnx", "out/", BatchOptions(workers=2))

The sources become a Ray Dataset of one row per source (the longest first), one block per row;
`map_batches` with an actor class (`ActorPoolStrategy(size=workers)`, `batch_size=1`, two rows in flight
per actor, so that the next source waits on the actor, not in the driver) hands each row to one of
`workers` actors, once all of them have started when the cluster has their CPUs free. An actor opens its
runner once, then segments whole sources with the single-video path (`lrnnet.runtime.video.run_video`:
decode, infer and encode threads, streaming, the output written beside its target, verified and
committed by rename), so memory stays flat in video length and count and each output is what
`lrnnet-infer SOURCE` writes (the tests compare them frame by frame). Ray Data schedules rows on free
actors and runs unchanged on a local Ray (started here for the run) or a cluster by address.

Outputs: `<output_dir>/<stem>_seg.mp4` (or `<stem>_labels/`), plus a done-marker `<output>.json`
written after the output's commit: the source's size and mtime, the model's SHA-256, the settings
that change the output, the output's own size (and mtime, or file count for a folder) and the
per-source report. "Complete" is that marker matching all of these; so a rerun skips finished sources
without touching them, and redoes one whose source, model or settings changed (a stale output of
another model is replaced, not kept) or whose output was removed or altered. A run killed between
the output's rename and the marker leaves an output without a marker: redone on the next run.

Cores: each actor asks Ray for `threads` CPUs (`num_cpus`) and runs its runner, OpenCV and torch on that
many threads, so that actors x threads fit the cores (the pipeline's decode and encode threads beside it
are light: a 1-thread actor was measured using 0.9-1.06 cores of CPU time per second). With `pin_cpus`
(`--pin-cpus`) each actor also pins itself (`claim_cpus`, Linux) to that many CPUs no other worker on its
node holds; off by default, as it measured no faster on 2 shared cores. Each source's entry in the report
says the CPUs its actor ran on (`cpus`) and the CPU time all its threads used (`cpu_s`).

Failures are isolated: a source that fails (InputError: unreadable, zero frames, corrupt; or any
other exception) comes back as a failed row with its one-line reason. An actor that dies (a segfault,
the OOM killer) loses the rows it held (Ray Data's `max_errored_blocks`: the job goes on, and Ray
restarts the actor); those are tried once more after the others, one per actor at a time, so the
source that was waiting behind the culprit finishes and only a source that kills its worker twice is
reported failed ("attempts" in its entry).

The model: an ONNX model's metadata and weights digest are checked once, by the driver (a corrupt
model is bad input before anything is written); each actor checks that its file has the SHA-256 the
driver checked and opens it with that metadata, without importing `onnx` (0.5 s of every actor's start).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import hashlib
import json
import math
import os
import platform
import re
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lrnnet
from lrnnet._io import (
    check_input,
    check_writable,
    clean_stale_temps_in,
    file_sha256,
    refuse_foreign_folder,
    refuse_overwrite,
)
from lrnnet._lazy import lazy_import
from lrnnet._threads import count_text, usable_cpus
from lrnnet.engine.sidecar import model_files
from lrnnet.errors import InputError, Terminated, add_note
from lrnnet.export.metadata import ModelInfo, read_model_info
from lrnnet.limits import MAX_LOCAL_WORKERS_PER_CPU, MAX_WORKERS
from lrnnet.log import logger, progress_bar
from lrnnet.runtime.sources import FrameSource, is_camera_spec
from lrnnet.runtime.video import FRAME_IN_TO_OUT, PipelineOptions

__all__ = ["LIST_SUFFIXES", "BatchOptions", "SourceJob", "format_batch_summary", "is_complete", "plan_jobs",
           "read_sources", "run_batch"]

LIST_SUFFIXES = (".txt", ".list", ".lst")  # a source with one of these suffixes is a file listing sources
MARKER_SCHEMA = "lrnnet.batch.done/1"
_CONNECT_TIMEOUT_S = 3.0  # TCP connect to a cluster's GCS before ray.init: an unreachable address fails fast
_PROBE_TIMEOUT_S = 8.0  # asking that address for Ray's GCS
_INIT_TIMEOUT_S = 30.0  # then joining the cluster
_TEMPS_WAIT_S = 5.0  # after the job, for stopped workers to end before their temporaries are removed
_ACTORS_START_TIMEOUT_S = 120  # every worker's start (Ray Data's wait_for_min_actors_s), when the CPUs are there
_RELEASE_WAIT_S = 3.0  # for the CPUs of actors Ray is still stopping (a busy cluster costs this once per job)
_POLL_S = 0.25  # how often the driver reads the frame counter
_FLUSH_S = 0.25  # how often an actor sends its frame count


@dataclass
class BatchOptions:
    """How the job runs; validated once here. `pipeline` is the per-source PipelineOptions."""

    workers: int = 2
    ray_address: str | None = None  # None: a local Ray for this run (or the one this process already joined)
    threads: int | None = None  # per worker; default: the cores divided among the workers
    backend: str = "auto"
    device: str | None = None
    runner_options: dict[str, Any] = field(default_factory=dict)
    pipeline: PipelineOptions = field(default_factory=PipelineOptions)
    # Each worker on its own `threads` CPUs (claim_cpus). Off by default: measured on 2 shared cores, a
    # 1-thread worker uses about 1 core unpinned too, and a pinned one cannot move off a core that other
    # work has taken.
    pin_cpus: bool = False

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise InputError(f"workers must be at least 1, got {self.workers}")
        if self.workers > MAX_WORKERS:
            raise InputError(f"{self.workers} workers is too many (at most {MAX_WORKERS})")
        if self.ray_address is None:
            cpus = usable_cpus()
            if self.workers * (self.threads or 1) > MAX_LOCAL_WORKERS_PER_CPU * cpus:
                raise InputError(f"{self.workers} workers x {count_text(self.threads or 1)} on a local Ray is more than "
                                 f"{MAX_LOCAL_WORKERS_PER_CPU} per usable CPU ({count_text(cpus, 'CPU')} here): each "
                                 "worker is a process holding a model; use fewer, or a cluster (--ray-address)")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads per worker must be at least 1, got {self.threads}")
        if self.ray_address is not None:
            # Always, not only when Ray is joined: a rerun with every source complete never connects, and a
            # typo would otherwise pass unseen.
            check_ray_address_form(self.ray_address)


@dataclass
class SourceJob:
    index: int
    source: str
    output: Path
    expected_frames: int | None = None  # from the container or folder listing, for the progress bar

    @property
    def marker(self) -> Path:
        return done_marker(self.output)


# -- planning (driver) ---------------------------------------------------------------------------------


def read_sources(specs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The sources named by `specs`: each a video file or image folder, or a list file (LIST_SUFFIXES)
    with one source per line, `#` comments (at a line's start or after a space) and blank lines ignored,
    relative paths taken from the list's folder; a list may not name another list."""
    sources: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.suffix.lower() in LIST_SUFFIXES and not path.is_dir():
            if not path.is_file():
                raise InputError(f"source list {path} does not exist")
            try:
                # utf-8-sig: a list saved by Notepad and the like starts with a byte-order mark, not part of a name
                lines = path.read_text(encoding="utf-8-sig").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"cannot read source list {path}: {exc}") from None
            for line in lines:
                entry = _list_entry(line)
                if not entry:
                    continue
                if "://" in entry:  # a URL is not a path (plan_jobs refuses streams with their own reason)
                    sources.append(entry)
                    continue
                listed = Path(entry).expanduser()
                listed = Path(os.path.normpath(listed if listed.is_absolute() else path.parent / listed))
                if listed.suffix.lower() in LIST_SUFFIXES and not listed.is_dir():
                    raise InputError(f"source list {path} lists {listed}, a list itself: give every list on the "
                                     "command line")
                sources.append(str(listed))
        else:
            sources.append(str(spec))
    if not sources:
        raise InputError("no sources to segment (the list files given are empty)")
    return sources


def _list_entry(line: str) -> str:
    """A list file's line less its comment: `#` opens one at the start of a line or after a space, so that
    a name such as `clip#1.mp4` is kept whole."""
    text = line.strip()
    if text.startswith("#"):
        return ""
    cut = re.search(r"\s#", text)
    return (text[:cut.start()] if cut else text).strip()


def output_name(source: str, output_kind: str) -> str:
    """What the single-video path names the output of `source` (`<stem>_seg.mp4`, `<stem>_labels`)."""
    path = Path(source)
    stem = path.resolve().name if path.is_dir() else path.stem
    return f"{stem}_labels" if output_kind == "labels" else f"{stem}_seg.mp4"


def done_marker(output: Path) -> Path:
    return output.with_name(output.name + ".json")


def plan_jobs(sources: Sequence[str], output_dir: Path, output_kind: str) -> list[SourceJob]:
    """One job per source with its output in `output_dir`; refuses live sources and name collisions.

    Two sources with the same stem (a/street.mp4, b/street.mp4) are refused rather than renamed: a name
    that depended on which other sources are in the run would break resuming.
    """
    jobs: list[SourceJob] = []
    by_output: dict[str, str] = {}
    for index, source in enumerate(sources):
        if "://" in source or (is_camera_spec(source) and not Path(source).exists()):
            raise InputError(f"{source} is a camera or stream: it has no end, so it cannot be one source of "
                             "a batch; run it alone with lrnnet-infer")
        name = output_name(source, output_kind)
        if name in by_output:
            if Path(by_output[name]).resolve() == Path(source).resolve():
                raise InputError(f"{source} is given twice (as {by_output[name]} and {source}): list each source once")
            raise InputError(f"{by_output[name]} and {source} would both write {output_dir / name}: rename "
                             "one, or run them with different --output-dir")
        by_output[name] = source
        jobs.append(SourceJob(index, source, output_dir / name, _expected_frames(source)))
    target = output_dir.resolve()
    for source in sources:
        folder = Path(source).resolve()
        if Path(source).is_dir() and (target == folder or folder in target.parents):
            raise InputError(f"--output-dir {output_dir} is inside the image folder {source}, a source: its outputs "
                             "would become part of it; use a folder outside it")
    inputs = {Path(source).resolve() for source in sources}
    for job in jobs:  # e.g. out/a.mp4 and out/a_seg.mp4 both given, with --output-dir out
        if job.output.resolve() in inputs or job.marker.resolve() in inputs:
            raise InputError(f"the output of {job.source} would overwrite the source {job.output}: use another "
                             "--output-dir")
    return jobs


def _expected_frames(source: str) -> int | None:
    """The frame count the container (or folder) lists, without decoding; None when unknown."""
    import cv2

    from lrnnet.runtime.sources import IMAGE_SUFFIXES

    path = Path(source)
    if path.is_dir():
        try:
            return sum(1 for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) or None
        except OSError:
            return None
    if not path.is_file():
        return None
    capture = cv2.VideoCapture(str(path))
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if capture.isOpened() else 0
    finally:
        capture.release()
    return count or None


def check_output_dir(output_dir: Path) -> None:
    """The folder may be created, but its parent must exist (a typo should not build a tree)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output-dir {output_dir} exists and is not a folder")
    parent = output_dir.absolute().parent
    if not output_dir.exists() and not parent.is_dir():
        raise InputError(f"--output-dir {output_dir}: folder {parent} does not exist; create it first")




def output_settings(options: BatchOptions, backend: str) -> dict[str, Any]:
    """What changes the outputs, as a done-marker records it: the pipeline's output settings (not warm-up, queue
    sizes or the FPS target) and how the model runs (backend, device, runner options such as a checkpoint's
    input size; not thread counts)."""
    pipeline = options.pipeline
    runner = {key: value for key, value in sorted(options.runner_options.items()) if key not in _NOT_IN_OUTPUT}
    settings = {"output_kind": pipeline.output_kind,
                "alpha": pipeline.alpha if pipeline.output_kind == "overlay" else None,
                "max_frames": pipeline.max_frames, "fps": pipeline.fps,
                "backend": backend, "device": options.device, "runner": runner}
    return json.loads(json.dumps(settings, default=str))  # as a marker reads back: tuples become lists


_NOT_IN_OUTPUT = {"threads", "info"}  # runner options that change speed, or restate the model file


def _source_stamp(source: str) -> dict[str, Any]:
    path = Path(source)
    if path.is_dir():  # an image folder: its listing (names, sizes, mtimes) in one digest
        digest = hashlib.sha256()
        for item in sorted(path.iterdir()):
            if item.is_file():
                stat = item.stat()
                digest.update(f"{item.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return {"path": str(path.resolve()), "listing_sha256": digest.hexdigest()}
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _output_stamp(output: Path) -> dict[str, Any]:
    if output.is_dir():
        files = [p for p in output.iterdir() if p.is_file()]
        return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    stat = output.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def is_complete(job: SourceJob, model_sha256: str, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The done-marker of `job` if it proves the output complete for this source, model and settings."""
    try:
        marker = json.loads(job.marker.read_text(encoding="utf-8"))
        complete = (marker.get("schema") == MARKER_SCHEMA and marker.get("model_sha256") == model_sha256
                    and marker.get("settings") == settings and marker.get("source") == _source_stamp(job.source)
                    and marker.get("output") == _output_stamp(job.output))
    except (OSError, ValueError, AttributeError):  # no marker, unreadable, not JSON, source or output gone
        return None
    return marker if complete else None


# -- the worker (a Ray actor) -----------------------------------------------------------------------------


class _CountingSource(FrameSource):
    """A source that tells `on_frames(n)` how many frames it has handed out (the progress of an actor)."""

    def __init__(self, inner: FrameSource, on_frames: Callable[[int], None]) -> None:
        super().__init__(inner.description, inner.size, inner.fps, inner.expected_frames)
        self.inner, self._on_frames = inner, on_frames
        self.kind, self.live = inner.kind, inner.live
        for name in ("path", "folder"):  # run_video refuses an output that is the source itself
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))

    def __iter__(self) -> Iterator[Any]:
        for frame in self.inner:
            yield frame
            self._on_frames(1)

    @property
    def hidden_frames(self) -> int:  # counted by the inner source as it reads
        return self.inner.hidden_frames

    def close(self) -> None:
        self.inner.close()

    def default_output_stem(self) -> Path:
        return self.inner.default_output_stem()


class _FrameCounter:
    """Frames handed to the pipeline per source index (a Ray actor the workers report to, the driver polls)."""

    def __init__(self) -> None:
        self.frames: dict[int, int] = {}

    def add(self, index: int, frames: int) -> None:
        self.frames[index] = self.frames.get(index, 0) + frames

    def get(self) -> dict[int, int]:
        return self.frames

    def forget(self, indices: list[int]) -> None:
        """Sources tried again count from zero."""
        for index in indices:
            self.frames.pop(index, None)


def claim_cpus(count: int) -> tuple[list[int] | None, list[socket.socket]]:
    """Claim `count` CPUs of this process's affinity that no other lrnnet worker on this machine holds, and
    pin every thread of this process to them: (the CPUs, the locks to keep), or (None, []) left unpinned.

    Ray schedules an actor's `num_cpus` as a number, not as cores: unpinned, a "1 CPU" worker's threads
    (decode, infer, encode, FFmpeg's and ONNX Runtime's) spread over every core of the node, so one worker
    takes much of two cores and a second one finds them busy. A CPU is claimed by binding an abstract Unix
    socket named after it; the kernel frees the name when the process ends however it ends, so a restarted
    actor finds its predecessor's CPUs free. Unpinned where this is not Linux, where the worker may use only
    `count` CPUs anyway, or where fewer than `count` are free (another job holds them, or Ray was told of
    more CPUs than the node has): such a worker shares the node's CPUs as before.
    """
    if not hasattr(os, "sched_setaffinity") or not hasattr(socket, "AF_UNIX"):
        return None, []
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) <= count:
        return None, []
    held: list[tuple[int, socket.socket]] = []
    for cpu in allowed:
        lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lock.bind(f"\0lrnnet-cpu-{cpu}")
        except OSError:  # held by a live worker (of this job or another)
            lock.close()
            continue
        held.append((cpu, lock))
        if len(held) == count:
            break
    if len(held) < count:
        for _, lock in held:
            lock.close()
        return None, []
    cpus = [cpu for cpu, _ in held]
    _pin_threads(cpus)
    return cpus, [lock for _, lock in held]


def _pin_threads(cpus: list[int]) -> None:
    """Every thread of this process on `cpus` (sched_setaffinity(0) alone pins only the calling thread, and
    Ray may run a call on another thread than the constructor's); threads started later inherit it."""
    for task in Path("/proc/self/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except (OSError, ValueError):  # a thread that just ended
            continue


class _SegmentWorker:
    """One runner, loaded once; each call segments the source rows of one batch (of one row)."""

    def __init__(self, model: str, model_sha256: str, backend: str, device: str | None,
                 runner_options: dict[str, Any], threads: int, pipeline: PipelineOptions, settings: dict[str, Any],
                 counter: Any, pin_cpus: bool = False) -> None:
        import cv2

        from lrnnet.runtime import open_runner
        from lrnnet.runtime.sources import quiet_video_logs

        # Before any compute thread exists: FFmpeg's decoder threads and the thread plan follow the affinity.
        self._cpus, self._cpu_locks = claim_cpus(threads) if pin_cpus else (None, [])
        quiet_video_logs()
        cv2.setNumThreads(threads)  # OpenCV's resizes and colour conversions stay within this actor's share
        self._model_sha256, self._pipeline, self._counter = model_sha256, pipeline, counter
        self._settings = settings
        self._where = f"{socket.gethostname()}:{os.getpid()}"
        self._load_error: str | None = None
        try:
            if file_sha256(model) != model_sha256:  # the driver checked (and the markers record) other bytes
                raise InputError(f"model {model} on this worker is not the file the job checked (its SHA-256 differs: "
                                 "changed since the job started, or another copy at that path on this node)")
            if backend == "torch":
                import torch

                torch.set_num_threads(threads)
            self._runner = open_runner(model, backend=backend, device=device, **runner_options)
        except Exception as exc:  # noqa: BLE001 - every source of this actor fails with it, the job goes on
            self._load_error = _one_line(exc, "model")

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        results = []
        for index, source, path, output in zip(batch["index"], batch["source"], batch["path"], batch["output"]):
            results.append(json.dumps(self._segment(int(index), str(source), str(path), Path(str(output)))))
        return {"result": results}

    def _segment(self, index: int, source: str, path: str, output: Path) -> dict[str, Any]:
        from lrnnet._io import remove_output, write_json_atomic
        from lrnnet.runtime.sources import open_source
        from lrnnet.runtime.video import run_video

        result: dict[str, Any] = {"index": index, "source": source, "output": str(output), "worker": self._where}
        if self._load_error is not None:
            return {**result, "status": "failed", "error": self._load_error}
        counter = _Reporter(self._counter, index)
        opened = None
        result["started_at"] = time.time()  # wall clock: spans of sources on different machines are compared
        if self._cpus is not None:
            _pin_threads(self._cpus)  # threads Ray started since the constructor
        result["cpus"] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        cpu_start = time.process_time()  # every thread of this actor: decode, infer, encode, codec and ORT threads
        try:
            stamp = _source_stamp(path) if Path(path).exists() else None
            opened = open_source(path)
            report = run_video(self._runner, _CountingSource(opened, counter.add), output, self._pipeline)
            summary = _source_summary(report)
            try:
                write_json_atomic(done_marker(output), {
                    "schema": MARKER_SCHEMA, "lrnnet_version": lrnnet.__version__, "source": stamp,
                    "model_sha256": self._model_sha256, "settings": self._settings, "output": _output_stamp(output),
                    **summary, "report": report})
            except BaseException:  # an output without its marker would be redone anyway: a failed source leaves none
                remove_output(output)
                raise
            # A damaged source (a truncated file) keeps its output and marker, and says so: status "damaged".
            return {**result, "status": "damaged" if summary["damage"] else "done", "error": summary["damage"],
                    **summary, "finished_at": time.time(), "cpu_s": time.process_time() - cpu_start}
        except Exception as exc:  # noqa: BLE001 - a failed source is a result, not the end of the job
            return {**result, "status": "failed", "error": _one_line(exc, source), "finished_at": time.time()}
        finally:
            counter.flush()
            if opened is not None:
                opened.close()


class _Reporter:
    """Batches an actor's frame counts into one counter call per _FLUSH_S (not one per frame)."""

    def __init__(self, counter: Any, index: int) -> None:
        self._counter, self._index = counter, index
        self._pending, self._last = 0, time.monotonic()

    def add(self, frames: int) -> None:
        if self._counter is None:
            return
        self._pending += frames
        if time.monotonic() - self._last >= _FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self._counter is not None and self._pending:
            self._counter.add.remote(self._index, self._pending)
            self._pending, self._last = 0, time.monotonic()


def _one_line(exc: BaseException, what: str) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, InputError):
        return message
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename or what}"
    return f"internal error: {type(exc).__name__}: {message}"


def _source_summary(report: dict[str, Any]) -> dict[str, Any]:
    in_to_out = report["latency_ms"][FRAME_IN_TO_OUT]
    return {"frames": report["frames"], "fps": report["end_to_end_fps"], "model_fps": report["model_fps"],
            "wall_s": report["wall_s"], "device": report["device"],
            "latency_ms": {key: in_to_out.get(f"{key}_ms") for key in ("mean", "p50", "p90", "p99")},
            "corrupt_frames_skipped": report["corrupt_frames_skipped"], "damage": report["damage"]}


# -- Ray (driver) ------------------------------------------------------------------------------------------


def _import_ray() -> Any:
    ray = lazy_import("ray", "batch inference")
    lazy_import("ray.data", "batch inference")
    return ray


_ADDRESS = re.compile(r"(?:ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)"
                      r":(?P<port>[0-9]{1,5})/?")


def check_ray_address_form(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray address (HOST:PORT, ray://HOST:PORT), None for "auto"; InputError for anything else."""
    if address == "auto":
        return None  # a cluster started on this machine (ray start --head): ray.init finds it or fails at once
    match = _ADDRESS.fullmatch(address)  # as typed: " host:1" would reach ray.init with its space
    if match is None or not 0 < int(match["port"]) < 65536:
        raise InputError(f"--ray-address {address!r}: expected HOST:PORT (the head's GCS, e.g. 10.0.0.5:6379), "
                         "ray://HOST:PORT or auto")
    return match["host"].strip("[]"), int(match["port"])


def check_ray_address(address: str, timeout_s: float = _CONNECT_TIMEOUT_S) -> None:
    """A TCP connect to the cluster's address, so that a wrong one fails in seconds, not after ray.init's retries."""
    host_port = check_ray_address_form(address)
    if host_port is None:
        return
    host, port = host_port
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise InputError(f"cannot reach the Ray cluster at {address} ({reason} after at most {timeout_s:.0f} s): "
                         "is `ray start --head` running there and the port open?") from None


class _RaySession:
    """Joins the Ray of this process, a cluster by address, or starts a local one; leaves what it started."""

    def __init__(self, address: str | None, local_cpus: int) -> None:
        ray = _import_ray()
        self.ray = ray
        self.started = False
        if ray.is_initialized():  # a library caller (or a test) that joined a Ray already: use that one
            if address is not None:
                raise InputError(f"this process has joined a Ray already ({_current_address(ray)}): run without "
                                 f"ray_address={address!r}, or ray.shutdown() first")
            self.address = _current_address(ray)
            _quiet_ray_data()
            return
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # No Ray started behind our back: a call after shutdown (a Ray Data iterator's late clean-up) fails
        # instead of starting a new local Ray that nobody stops.
        os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
        import logging

        kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        with _own_signal_handlers():
            if address is not None:
                check_ray_address(address)
                _probe_gcs(address)
                _bounded(lambda: ray.init(address=address, **kwargs), _INIT_TIMEOUT_S,
                         f"cannot join the Ray cluster at {address}")
                self.address = address
            else:
                # address="local": a new Ray of our own, never one another user left running on this machine
                # (ray.init() alone joins the last cluster started here). In the main thread, not _bounded: Ray
                # ties the life of the processes it starts to the thread that started them (PR_SET_PDEATHSIG).
                with _stop_signals_recorded(ray) as received:
                    try:
                        ray.init(address="local", num_cpus=local_cpus, **kwargs)
                    except Exception as exc:  # noqa: BLE001 - a machine limit (no /tmp space, ports), one line
                        if not received:
                            raise InputError(f"cannot start a local Ray: {' '.join(str(exc).split())[:300]}") from None
                    except BaseException:  # the stop itself
                        ray.shutdown()  # what ray.init had started
                        raise
                if received:  # stopped while Ray started, the stop lost in an os.fork callback or failing ray.init
                    ray.shutdown()
                    raise KeyboardInterrupt if received[0] == signal.SIGINT else Terminated(received[0])
                self.address = f"local ({_current_address(ray)}, started for this run)"
        self.started = True
        _quiet_ray_data()

    def cpus(self) -> tuple[int, int]:
        """(CPUs in the cluster, the most CPUs of one node)."""
        total = int(self.ray.cluster_resources().get("CPU", 1))
        per_node = [int(node.get("Resources", {}).get("CPU", 0)) for node in self.ray.nodes() if node.get("Alive")]
        return max(1, total), max(1, max(per_node, default=total))

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


@contextlib.contextmanager
def _own_signal_handlers() -> Iterator[None]:
    """The SIGTERM/SIGHUP/SIGINT handlers of this process as they were before ray.init, which sets its own for
    SIGTERM (`sys.exit(15)` after a stack dump): a stopped job must unwind like one interrupted, so that the
    actors are shut down with Ray and no temporary output is left behind."""
    names = ("SIGTERM", "SIGHUP", "SIGINT")
    main = threading.current_thread() is threading.main_thread()
    saved = {signum: signal.getsignal(signum) for name in names if (signum := getattr(signal, name, None))} \
        if main else {}
    try:
        yield
    except SystemExit as exc:
        # ray.init's own SIGTERM handler is `sys.exit(signum)`: the stop it was, unwound as one
        if exc.code in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) and isinstance(exc.code, int):
            raise Terminated(exc.code) from None
        raise
    finally:
        for signum, handler in saved.items():
            if handler is not None:  # None: set outside Python; nothing of ours to put back
                signal.signal(signum, handler)


@contextlib.contextmanager
def _stop_signals_recorded(ray: Any) -> Iterator[list[int]]:
    """While ray.init starts a local Ray, SIGTERM/SIGHUP/SIGINT raise as always (a wait inside ray.init ends) and
    are also recorded (the list yielded): one that lands in an os.fork callback is lost there (Python only prints
    it; that print is silenced), and the job would go on, so the caller acts on the record once ray.init returns. Ray's own SIGTERM handler
    (`sys.exit`, from wherever the driver is) is not installed, nor its C++ stack-dump handler in this process
    (a SIGTERM during the core worker's start printed a dump and aborted); the workers keep theirs."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    utils, constants, services = ray._private.utils, ray._private.ray_constants, ray._private.services
    patched: dict[tuple[Any, str], Any] = {(utils, "set_sigterm_handler"): lambda handler: None,
                                           (constants, "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"): True}
    if isinstance(getattr(services, "ConsolePopen", None), type):
        # Ray's processes in a session of their own: a SIGTERM to the command's process group (a supervisor, a
        # `kill -- -PGID`) killed the GCS and raylet too, and the driver's core worker then ended the process (exit
        # 1, a Ray log line, no account of what was kept). Only the driver gets it now, and stops Ray itself; they
        # still die with it (Ray's fate sharing), and Ray already keeps Ctrl-C off them.
        class _OwnSession(services.ConsolePopen):  # type: ignore[misc, name-defined]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs.setdefault("start_new_session", True)
                super().__init__(*args, **kwargs)

        patched[(services, "ConsolePopen")] = _OwnSession
    originals = {key: getattr(*key) for key in patched if hasattr(*key)}  # Ray moved them: left as they are

    def stop(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1 and _in_core_worker_start(frame):
            # Raised there, it leaves the driver's core worker half made (its C++ constructor calls back into
            # Python), and the process crashed at exit (SIGSEGV after our line): recorded, and acted on as soon as
            # ray.init returns, a second one at once.
            return
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)

    def unraisable(info: Any) -> None:  # the stop raised where Python can only print it: recorded, so quiet
        if not (received and isinstance(info.exc_value, (KeyboardInterrupt, Terminated))):
            hook(info)

    signums = [signum for name in ("SIGTERM", "SIGHUP", "SIGINT") if (signum := getattr(signal, name, None))]
    handlers = {signum: signal.signal(signum, stop) for signum in signums}
    for (owner, name) in originals:
        setattr(owner, name, patched[(owner, name)])
    hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield received
    finally:
        sys.unraisablehook = hook
        for (owner, name), value in originals.items():
            setattr(owner, name, value)
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)


def _in_core_worker_start(frame: Any) -> bool:
    """Whether `frame` runs inside ray.init's `connect`, which builds this process's core worker."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "connect" and code.co_filename.replace(os.sep, "/").endswith("ray/_private/worker.py"):
            return True
        frame = frame.f_back
    return False


def _current_address(ray: Any) -> str:
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001 - only for the report
        return "unknown"


def _bounded(fn: Callable[[], Any], timeout_s: float, what: str) -> None:
    """Run `fn` in a thread and give up after `timeout_s` (ray.init has no timeout of its own).

    Only for joining a cluster: ray.init then starts no process whose life is tied to this thread.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    thread = threading.Thread(target=target, name="lrnnet-ray-init", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise InputError(f"{what}: no answer within {timeout_s:.0f} s")
    if errors:
        exc = errors[0]
        if isinstance(exc, InputError):
            raise exc
        raise InputError(f"{what}: {' '.join(str(exc).split())[:300]}") from None


def _probe_gcs(address: str) -> None:
    """Ask the address for Ray's GCS before ray.init, which retries a wrong one for 20 s and more (a port
    that answers but is not Ray, such as an HTTP proxy). Ray's GcsClient is internal: skipped if it moved."""
    if address == "auto" or address.startswith("ray://"):
        return
    import importlib

    try:
        GcsClient = importlib.import_module("ray._raylet").GcsClient
    except (ImportError, AttributeError):
        return

    def probe() -> None:
        try:
            GcsClient(address=address)
        except TypeError:  # another Ray's signature: leave it to ray.init
            pass
        except Exception as exc:
            # Ray's GCS answering, but refusing us: a cluster with token authentication (`ray start`'s
            # default) and no token sent.
            if "auth" not in str(exc).lower():
                raise
            needs_token.append(True)

    needs_token: list[bool] = []
    _bounded(probe, _PROBE_TIMEOUT_S, f"{address} is not a Ray cluster's GCS (`ray start --head` prints the address)")
    if needs_token:
        # Ray reads RAY_AUTH_MODE once per process, and a client in token mode cannot run actors on a cluster
        # without authentication: the user says which it is.
        sent = "was refused" if os.environ.get("RAY_AUTH_MODE") == "token" else "was not sent (RAY_AUTH_MODE is not token)"
        raise InputError(f"the Ray cluster at {address} uses token authentication and the token {sent}: set "
                         "RAY_AUTH_MODE=token, with the head's ~/.ray/auth_token copied here or RAY_AUTH_TOKEN set")


def _quiet_ray_data() -> None:
    """Ray Data's own bars and INFO lines stay off the terminal (our one bar says it; its logs stay in files)."""
    import logging

    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.max_errored_blocks = -1  # a row whose actor died is lost, not the job: reported as failed
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    logging.getLogger("ray").setLevel(logging.ERROR)


def plan_threads(workers: int, cluster_cpus: int, node_cpus: int, threads: int | None) -> int:
    """Threads per actor so that workers x threads fit the cores (and one actor fits a node)."""
    if threads is not None:
        return threads
    return max(1, min(node_cpus, cluster_cpus // workers))


def _needs_gpu(backend: str, device: str | None) -> bool:
    return backend == "tensorrt" or (device is not None and (device.startswith("cuda") or device == "tensorrt"))


# -- the job ---------------------------------------------------------------------------------------------


def run_batch(sources: Sequence[str | os.PathLike[str]], model: str | Path, output_dir: str | Path,
              options: BatchOptions | None = None, also_writes: Sequence[Path] = ()) -> dict[str, Any]:
    """Segment every source on Ray; returns the batch report (one entry per source, and the aggregate).

    `also_writes`: files the caller writes after the job (the report), refused before anything runs if one is
    a source, a list file, the model, or an output or done-marker of the job.

    Bad input (no sources, a missing output-dir parent, colliding names, a missing model, an unreachable
    Ray address) raises InputError before anything is written. A source that fails does not: it is in
    the report with status "failed" and its reason; the caller decides the exit status.
    """
    options = options or BatchOptions()
    model, output_dir = Path(model), Path(output_dir)
    from lrnnet.runtime.factory import resolve_backend

    jobs = plan_jobs(read_sources(sources), output_dir, options.pipeline.output_kind)
    check_output_dir(output_dir)
    _refuse_overwriting_inputs(sources, model, jobs, options.pipeline.output_kind, also_writes)
    for path in also_writes:
        check_writable(path)
    check_input(model, "model file")  # what open_runner says of a missing or wrong-kind model
    backend = resolve_backend(model, options.backend)  # an unknown model type or backend fails here, not per source
    model_sha256 = file_sha256(model)
    # An ONNX model's metadata is read and its weights digest checked here, once, so that a corrupt model is bad
    # input before anything is written; the actors then load the very bytes checked (same SHA-256) without
    # importing `onnx`, whose ml_dtypes alone takes 0.5 s of each actor's start.
    model_info = read_model_info(model) if backend == "onnxruntime" else None
    if backend == "torch":
        _check_checkpoint(model, options.runner_options)
    settings = output_settings(options, backend)

    skipped: dict[int, dict[str, Any]] = {}
    for job in jobs:
        marker = is_complete(job, model_sha256, settings)
        if marker is not None:
            # A damaged source's marker says so: skipped like any complete output, and reported again as damaged.
            damage = marker.get("damage")
            skipped[job.index] = {"index": job.index, "source": job.source, "output": str(job.output),
                                  "status": "damaged" if damage else "skipped", "error": damage, "skipped": True,
                                  **{key: marker.get(key) for key in ("frames", "fps", "model_fps", "latency_ms",
                                                                      "device", "wall_s")}}
    todo = [job for job in jobs if job.index not in skipped]
    if skipped:
        logger.info("Skipped %d already complete (a done-marker matches source, model and settings)", len(skipped))
    for job in todo:
        _refuse_foreign_output(job)
        if options.pipeline.output_kind == "labels":  # a labels folder is replaced as a whole: only our own
            refuse_foreign_folder(job.output)
    if todo:  # a folder no output can be written to is bad input now, not a failure of every source on Ray
        kind_is_folder = options.pipeline.output_kind == "labels"
        check_writable(todo[0].output if output_dir.is_dir() else output_dir,
                       directory=kind_is_folder or not output_dir.is_dir(), what="output")
    if todo and options.workers > len(todo):  # an actor with no source would only start and stop
        logger.info("%d workers asked for %d sources to segment: %d workers", options.workers, len(todo), len(todo))
        options = dataclasses.replace(options, workers=len(todo))

    results: dict[int, dict[str, Any]] = dict(skipped)
    session = None
    created_dir = False
    threads = options.threads or 1
    startup_s = wall_s = 0.0
    unwinding: BaseException | None = None
    try:
        if todo:
            start = time.perf_counter()
            cpus = usable_cpus()
            if options.ray_address is None and options.workers * (options.threads or 1) > cpus:
                logger.warning("%d workers x %s on %d usable CPUs: they will take turns (oversubscribed)",
                               options.workers, count_text(options.threads or 1), cpus)
            local_cpus = max(cpus, options.workers * (options.threads or 1))
            # Joining a cluster starts no process here, so its C++ client's lines can be filtered from the start;
            # a local Ray's processes would inherit the filter's pipe as their stderr.
            with _known_ray_lines_dropped() if options.ray_address is not None else contextlib.nullcontext():
                session = _RaySession(options.ray_address, local_cpus)
            cluster_cpus, node_cpus = session.cpus()
            threads = plan_threads(options.workers, cluster_cpus, node_cpus, options.threads)
            startup_s = time.perf_counter() - start
            logger.info("Ray %s: %d workers x %s on %d CPUs", session.address, options.workers, count_text(threads),
                        cluster_cpus if options.ray_address is not None else cpus)
            # Made once Ray runs, not before: a run that ends while Ray starts (stopped, or Ray's own exit when
            # its processes die) leaves no empty folder behind.
            created_dir = make_output_dir(output_dir)
            start = time.perf_counter()
            results.update(_execute(session.ray, todo, model, backend, model_sha256, model_info, options, threads))
            wall_s = time.perf_counter() - start
        address = session.address if session is not None else None
    except BaseException as exc:
        # The frames the failure passed through hold Ray Data's iterators: released here, while Ray runs, so that
        # their clean-up does not run after ray.shutdown.
        traceback.clear_frames(exc.__traceback__)
        gc.collect()
        unwinding = exc
        raise
    finally:
        if session is not None:
            session.close()
            # Stopped midway (Ctrl-C, SIGTERM, an error) or a worker killed: its temporaries go. Committed outputs
            # stay (a rerun skips them).
            _clean_worker_temps(output_dir, todo, _TEMPS_WAIT_S)
        if unwinding is not None:
            _note_kept(unwinding, jobs, todo, len(skipped), model_sha256, settings)
        if created_dir and not any(output_dir.iterdir()):  # made by this run, and nothing committed in it
            output_dir.rmdir()
    return _batch_report(jobs, results, options, threads, address, startup_s, wall_s, model)


def _refuse_overwriting_inputs(specs: Sequence[str | os.PathLike[str]], model: Path, jobs: list[SourceJob],
                               output_kind: str, also_writes: Sequence[Path]) -> None:
    """No output of the job (an output, its done-marker, a file the caller writes after it) is or holds an
    input: the model, a source, or a list file naming sources (lrnnet._io.refuse_overwrite)."""
    inputs = [*model_files(model), *(Path(spec) for spec in specs if "://" not in str(spec)), *(Path(job.source) for job in jobs)]
    outputs = [*(job.marker for job in jobs), *also_writes]
    folders = [job.output for job in jobs] if output_kind == "labels" else []
    if not folders:
        outputs += [job.output for job in jobs]
    refuse_overwrite(inputs, outputs, folders=folders)


def _note_kept(exc: BaseException, jobs: list[SourceJob], todo: list[SourceJob], skipped: int, model_sha256: str,
               settings: dict[str, Any]) -> None:
    """Say on the exception what the job kept, counted once its workers have ended (a worker still writing when
    the stop came may commit after it): run_command reports a stop with it, whatever the stop made unwind (Ctrl-C
    itself, or the Ray error it caused)."""
    kept = sum(is_complete(job, model_sha256, settings) is not None for job in todo) + skipped
    add_note(exc, f"{kept} of {len(jobs)} outputs are complete and kept; a rerun skips them and does the rest"
             if kept else "no output was written")


def _check_checkpoint(model: Path, runner_options: dict[str, Any]) -> None:
    """Open a .pth once here, on the CPU, as every actor will (the runner factory's checks: a corrupt checkpoint,
    a size that is not a multiple of the model's stride), so that a bad one is bad input before Ray starts."""
    from lrnnet.runtime.factory import open_runner

    with open_runner(model, backend="torch", device="cpu", **runner_options):
        pass


def _refuse_foreign_output(job: SourceJob) -> None:
    """An output whose done-marker names another source (a/street.mp4 done, now b/street.mp4) is another
    source's result: refused, like two such sources in one run, rather than silently replaced."""
    try:
        recorded = json.loads(job.marker.read_text(encoding="utf-8"))["source"]["path"]
    except (OSError, ValueError, KeyError, TypeError):  # no marker, or not one of ours: nothing to protect
        return
    if isinstance(recorded, str) and recorded != str(Path(job.source).resolve()):
        raise InputError(f"{job.output} is the output of {recorded} (its done-marker says so), not of {job.source}: "
                         "use another --output-dir, or delete it to redo it")


def make_output_dir(output_dir: Path) -> bool:
    """Create the output folder if it is missing (check_output_dir passed); True when this run made it."""
    if output_dir.is_dir():
        return False
    try:
        output_dir.mkdir()
    except OSError as exc:
        raise InputError(f"cannot create --output-dir {output_dir}: {exc.strerror or exc}") from None
    return True


def _clean_worker_temps(output_dir: Path, jobs: list[SourceJob], wait_s: float) -> None:
    """Remove the temporaries of these sources' outputs and markers whose writer has ended, waiting up to `wait_s`
    for workers that Ray is still stopping (a writer that is still alive after that keeps its own)."""
    deadline = time.monotonic() + wait_s
    names = [name for job in jobs for name in (job.output.name, job.marker.name)]
    while clean_stale_temps_in(output_dir, names) and time.monotonic() < deadline:
        time.sleep(0.1)


def _execute(ray: Any, jobs: list[SourceJob], model: Path, backend: str, model_sha256: str,
             model_info: ModelInfo | None, options: BatchOptions, threads: int) -> dict[int, dict[str, Any]]:
    import ray.data

    runner_options = dict(options.runner_options)
    if backend == "onnxruntime":
        runner_options.setdefault("threads", threads)
        if model_info is not None:
            runner_options.setdefault("info", model_info)
    listed = {job.index: _listed_frames(job, options.pipeline) for job in jobs}
    bar = progress_bar("Segmenting", total=sum(frames or 0 for frames in listed.values()), unit="frame")
    counter = ray.remote(num_cpus=0)(_FrameCounter).remote() if not bar.disable else None
    results: dict[int, dict[str, Any]] = {}
    by_index = {job.index: job for job in jobs}
    lost = jobs
    refresher = _BarRefresher(bar, counter, results, listed)
    try:
        with _known_ray_lines_dropped():  # after the bar, which asks whether stderr is a terminal
            # First try: two sources in flight per actor, so that the next one already waits on the actor when the
            # last one ends (handed over by Ray Data's scheduler it came 0.17 s later, an idle worker per source).
            # An actor that dies takes the source waiting on it too, so the sources lost are tried once more, one
            # per actor at a time: then only the source that kills its worker fails.
            for attempt, in_flight in ((1, 2), (2, 1)):
                if attempt > 1:
                    logger.warning("%d of %d sources were lost with a worker process that died (out of memory? a crash "
                                   "in a native library? see the Ray logs); trying them once more, one per worker",
                                   len(lost), len(jobs))
                    if counter is not None:
                        ray.get(counter.forget.remote([job.index for job in lost]))
                with warnings.catch_warnings():  # max_task_retries has no named parameter yet; Ray warns it may go
                    warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
                    dataset = _dataset(ray, _rows(lost, listed), model, model_sha256, options, backend, runner_options,
                                       threads, counter, in_flight)
                for result in _results(dataset):
                    result["output"] = str(by_index[result["index"]].output)  # as the driver names it
                    result["attempts"] = attempt
                    results[result["index"]] = result
                    if bar.disable:  # a log line in a file or pipe too: what finished, with its reason
                        logger.info("%s", _finished_line(result))
                    else:
                        bar.write(_finished_line(result), file=sys.stderr)
                lost = [job for job in jobs if job.index not in results]
                if not lost:
                    break
    finally:
        refresher.stop()
        bar.close()
    for job in lost:  # rows lost with their actor twice (killed, segfault): Ray Data dropped them, we do not
        results[job.index] = {"index": job.index, "source": job.source, "output": str(job.output),
                              "status": "failed", "attempts": 2, "error": "the worker process died while segmenting "
                              "it, on both tries (out of memory? a crash in a native library?); see the Ray logs"}
    return results


# The Ray log lines dropped from the driver's stderr, each one that lrnnet says better or that asks nothing of a user:
# - Ray's C++ core worker says it whenever Ray Data creates its map actors (ray issue #53727). Ray Data itself passes
#   object-store refs to every map actor's constructor (its DataContext, the map transformer, the location tracker)
#   and asks for max_restarts=-1; the restarts are what lets a source that kills its worker fail alone
#   (max_restarts=0 was tried: the sources waiting on that actor were then lost too), so the cause stays. It is
#   logged at ERROR level, so Ray's log level cannot drop it alone.
# - The raylet's "A worker died ..." (forwarded with terminal colours, even into a file): the driver's own line
#   says which sources were lost with it, that they are tried once more, and where the Ray logs are.
# - The GCS client's "Failed to get cluster ID ... Unauthenticated" while joining a cluster that wants a token:
#   the one error line says what to set.
# C++ lines go to fd 2, so they are filtered there; nothing else is touched.
_KNOWN_RAY_LINE = re.compile(
    rb"core_worker\.cc:\d+: Actor with class name: .* has constructor arguments in the object store and "
    rb"max_restarts > 0\..*issues/53727"
    rb"|\(raylet\)(?:\x1b\[0m)? A worker died or was killed while executing a task by an unexpected system error"
    rb"|gcs_client\.cc:\d+: Failed to get cluster ID from GCS server: Unauthenticated")


@contextlib.contextmanager
def _known_ray_lines_dropped() -> Iterator[None]:
    """While the job runs, this process's stderr (fd 2) passes through a pipe that drops _KNOWN_RAY_LINE; every
    other byte goes on unchanged and in order (a partial line at once unless it may be a Ray log line)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError, AttributeError):  # no fd 2 (a closed or replaced stderr): nothing to filter
        yield
        return
    os.dup2(write_end, 2)
    os.close(write_end)
    thread = threading.Thread(target=_forward_stderr, args=(read_end, saved), name="lrnnet-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closed: the thread reads to its end
        thread.join(timeout=5)
        os.close(saved)


def _forward_stderr(read_end: int, target: int) -> None:
    pending = b""
    try:
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not _KNOWN_RAY_LINE.search(line))
            if pending and not pending.startswith(b"["):  # Ray's lines start "[date time level pid tid]"
                out, pending = out + pending, b""
            _write_all(target, out)
        _write_all(target, pending)
    except OSError:  # stderr gone: nothing left to say it on
        pass
    finally:
        os.close(read_end)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _rows(jobs: list[SourceJob], listed: dict[int, int | None]) -> list[dict[str, Any]]:
    """One row per source, the longest first (unknown lengths first of all), so that the job does not end on one
    worker finishing a long source while the others idle."""
    longest_first = sorted(jobs, key=lambda job: -(listed[job.index] or math.inf))
    # Absolute paths: a worker's working directory is not the driver's (and on a cluster not even its machine).
    return [{"index": job.index, "source": job.source, "path": str(Path(job.source).absolute()),
             "output": str(job.output.absolute())} for job in longest_first]


def _results(dataset: Any) -> Iterator[dict[str, Any]]:
    """Each source's result as its worker finishes it. In the calling (main) thread, so that Ctrl-C or SIGTERM
    unwinds Ray Data's iterator, and with it the job, before Ray is shut down: a thread still iterating then
    would start a new Ray of its own (Ray Data's auto-init)."""
    try:
        for row in dataset.iter_rows():
            yield json.loads(row["result"])
    except Exception as exc:
        if type(exc).__module__.startswith("ray"):  # the job, not a source (actors that cannot start)
            raise InputError(f"the Ray job failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                             " (see the Ray logs)") from exc
        raise


class _BarRefresher:
    """Moves the progress bar every _POLL_S from the actors' frame counter (a thread: the main one waits on rows)."""

    def __init__(self, bar: Any, counter: Any, results: dict[int, dict[str, Any]],
                 listed: dict[int, int | None]) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if counter is None:
            return

        def refresh() -> None:
            import ray

            while not self._stop.wait(_POLL_S):
                try:
                    counts = ray.get(counter.get.remote(), timeout=_POLL_S * 4)
                except (ray.exceptions.RayError, TimeoutError):  # the bar misses a beat, not the job
                    continue
                bar.n, bar.total = _bar_position(counts, results, listed)
                bar.refresh()

        self._thread = threading.Thread(target=refresh, name="lrnnet-batch-bar", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Before Ray is shut down: a call on it afterwards would start a new one."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _dataset(ray: Any, rows: list[dict[str, Any]], model: Path, model_sha256: str, options: BatchOptions,
             backend: str, runner_options: dict[str, Any], threads: int, counter: Any, in_flight: int) -> Any:
    gpus = 1 if _needs_gpu(backend, options.device) else 0
    actors = min(options.workers, len(rows))
    # When the cluster has the CPUs (and GPUs) free for every worker, sources are handed out once all have
    # started: else the first one up takes two, the longest, while the others still start. A cluster that must
    # grow first (autoscaling) or is busy with other jobs starts on the workers it can hold.
    fits = _free_for(ray, actors * threads, actors * gpus)
    ray.data.DataContext.get_current().wait_for_min_actors_s = _ACTORS_START_TIMEOUT_S if fits else -1
    # One block per row, so that rows go to whichever actor is free (a block is the unit handed out).
    return ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        _SegmentWorker, batch_size=1, batch_format="numpy",
        # `in_flight` sources per actor, not Ray Data's default of several: a source queued behind others on a
        # busy actor would wait while an idle actor has nothing.
        compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=in_flight),
        fn_constructor_kwargs={"model": str(model.absolute()), "model_sha256": model_sha256, "backend": backend,
                               "device": options.device, "runner_options": runner_options, "threads": threads,
                               "pipeline": options.pipeline, "settings": output_settings(options, backend),
                               "counter": counter, "pin_cpus": options.pin_cpus},
        num_cpus=threads, num_gpus=gpus or None,
        # Ray does not retry a source that crashes its actor (_execute tries the lost ones once more, alone);
        # it still restarts the actor.
        max_task_retries=0)


def _free_for(ray: Any, cpus: int, gpus: int) -> bool:
    """Whether the cluster has `cpus` and `gpus` free, waiting up to _RELEASE_WAIT_S for the actors of a job that
    just ended (this process's earlier one, or the first try's) to give theirs back: Ray frees them after it
    returns."""
    deadline = time.monotonic() + _RELEASE_WAIT_S
    while True:
        free = ray.available_resources()
        if cpus <= free.get("CPU", 0) and gpus <= free.get("GPU", 0):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _listed_frames(job: SourceJob, pipeline: PipelineOptions) -> int | None:
    if job.expected_frames is None or pipeline.max_frames is None:
        return job.expected_frames
    return min(job.expected_frames, pipeline.max_frames)


def _bar_position(counts: dict[int, int], finished: dict[int, dict[str, Any]],
                  listed: dict[int, int | None]) -> tuple[int, int]:
    """(frames so far, frames in all) for the bar: a source as listed by its container once it is finished
    (a failed one moves the bar to its end), as counted while it runs; unlisted ones grow the total."""
    position = total = 0
    for index, frames in listed.items():
        seen = counts.get(index, 0)
        if index in finished:
            position += frames if frames is not None else seen
        else:
            position += seen
        total += frames if frames is not None else seen
    return position, total


def _finished_line(result: dict[str, Any]) -> str:
    if result["status"] == "failed":
        return f"failed  {result['source']}: {result['error']}"
    fps = f", {result['fps']:.1f} FPS" if result.get("fps") else ""
    if result["status"] == "damaged":
        return f"damaged {result['source']}: {result['error']}; {result['frames']} frames{fps} -> {result['output']}"
    return f"done    {result['source']}: {result['frames']} frames{fps} -> {result['output']}"


def _batch_report(jobs: list[SourceJob], results: dict[int, dict[str, Any]], options: BatchOptions, threads: int,
                  address: str | None, startup_s: float, wall_s: float, model: Path) -> dict[str, Any]:
    entries = [results[job.index] for job in jobs]
    for entry in entries:
        entry.pop("index", None)
    # Segmented in this run: done, or damaged (the output keeps the frames that decoded); not reused from a marker.
    done = [e for e in entries if e["status"] in ("done", "damaged") and not e.get("skipped")]
    frames = sum(e.get("frames") or 0 for e in done)
    devices = sorted({e["device"] for e in done if e.get("device")})
    # From the first source started to the last one finished: the job's wall time less Ray's and the actors'
    # start-up (loading lrnnet and the model in each new process), which a long job amortises.
    span = (max(e["finished_at"] for e in done) - min(e["started_at"] for e in done)) if done else 0.0
    return {
        "lrnnet_version": lrnnet.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": str(model),
        "output_kind": options.pipeline.output_kind,
        "ray_address": address,  # None when every source was already complete (no Ray was needed)
        "workers": options.workers,
        "threads_per_worker": threads,
        "host": platform.node(),
        "device": ", ".join(devices) if devices else None,
        "sources_total": len(entries),
        "done": sum(e["status"] == "done" for e in entries),
        "damaged": sum(e["status"] == "damaged" for e in entries),  # outputs kept; on a rerun from their markers
        "failed": sum(e["status"] == "failed" for e in entries),
        "skipped": sum(e["status"] == "skipped" for e in entries),
        "total_frames": frames,  # segmented in this run (skipped sources not counted)
        "ray_startup_s": startup_s,
        "wall_s": wall_s,  # the job, Ray startup excluded
        "frames_per_s": frames / wall_s if frames and wall_s > 0 else None,
        "processing_s": span,
        "frames_per_s_processing": frames / span if frames and span > 0 else None,
        "sources": entries,
    }


def format_batch_summary(report: dict[str, Any]) -> str:
    """A few lines: counts, aggregate speed, and each failed source with its reason."""
    damaged = f"{report['damaged']} damaged, " if report["damaged"] else ""
    lines = [(f"Sources    {report['sources_total']}: {report['done']} done, {damaged}{report['failed']} failed, "
              f"{report['skipped']} skipped already complete")]
    if report["total_frames"]:
        lines.append(f"Frames     {report['total_frames']} in {report['wall_s']:.2f} s: "
                     f"{report['frames_per_s']:.1f} frames/s with {report['workers']} workers x "
                     f"{count_text(report['threads_per_worker'])} ({report['device']})")
    if report["ray_address"]:
        lines.append(f"Ray        {report['ray_address']}")
    lines += [f"{e['status'].capitalize():<11}{e['source']}: {e['error']}" for e in report["sources"]
              if e["status"] in ("failed", "damaged")]
    return "\n".join(lines)
