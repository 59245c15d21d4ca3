"""Commit outputs on success only, so that a failure never leaves a half-written or wrong file.

The promise (DESIGN.md, Errors; README, Errors): every output is written beside its target under a
recognisable temporary name, **checked** (reopened, counted, parsed), flushed and fsynced, and only
then renamed onto the target. All outputs of one command commit together, or none does. No output
may be one of the command's inputs, and an output that cannot be written is refused before any
work starts.

How a command uses it:

    check_writable(args.out)                   # preflight, before any work: refuses a folder, a
    check_writable(args.report)                # missing or read-only parent, a full disk ...
    refuse_overwrite(inputs=[args.model], outputs=[args.out, args.report])
    ...
    with atomic_output(args.out, verify=lambda tmp: verify_video(tmp, frames=written)) as tmp:
        write(tmp)                             # anything that writes a file (or a folder: directory=True)
    write_json_atomic(args.report, report)     # JSON is parsed back before it is committed

``lrnnet.cli._common.run_command`` runs every command inside a ``command_outputs()`` scope: each
``atomic_output`` in the scope renames as soon as its block succeeds (so the command can read its
output back), but the previous content of the target is kept under a temporary name until the
command ends; if the command then fails (an error, Ctrl-C, SIGTERM), every output it committed is
rolled back (the old file restored, a new one removed). Outside a scope (library use) each
``atomic_output`` commits on its own. ``OutputSet`` is the explicit form for code that writes
several outputs in one place (``with OutputSet() as out: a = out.add(p1); b = out.add(p2)``).

Temporary names are ``.<name>.lrnnet-tmp-<pid>-<random><suffix>`` (the target's suffix kept, so
writers that choose a format by extension still work). A run killed by SIGKILL leaves them; the next
run that targets the same output removes those whose process is gone (``clean_stale_temps``).

Verifiers (``verify_for`` picks one by suffix): JSON parses; PNG/JPEG decode and are non-empty; a
video reopens (PyAV, else OpenCV) with the expected frame count; ONNX parses; a torch checkpoint's
zip CRCs match. OpenCV's ``VideoWriter.write`` and ``imwrite`` report no ENOSPC: the verify step is
what catches a full disk for them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrnnet.errors import InputError

__all__ = [
    "OUTPUT_MARKER",
    "TEMP_MARK",
    "OutputSet",
    "atomic_output",
    "check_input",
    "check_writable",
    "claim_folder",
    "clean_stale_temps",
    "clean_stale_temps_in",
    "command_outputs",
    "file_sha256",
    "is_temp_name",
    "keep_outputs",
    "preflight",
    "probe_video",
    "refuse_foreign_folder",
    "refuse_overwrite",
    "scratch_folder",
    "verify_for",
    "verify_image",
    "verify_json",
    "verify_video",
    "write_bytes_atomic",
    "write_image",
    "write_json_atomic",
]

TEMP_MARK = ".lrnnet-tmp-"
# Every folder lrnnet commits as a whole (atomic_output(directory=True)) holds this file: an existing
# non-empty folder without it is someone else's, and lrnnet never replaces it.
OUTPUT_MARKER = ".lrnnet-output"
Verifier = Callable[[Path], object]  # raises OutputCheckFailed; what it returns is not used here

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
_LOW_SPACE_BYTES = 1 << 20  # a verify failure with less free than this on the disk is a full disk


# -- names ---------------------------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (engines and ONNX files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def temp_path_for(target: Path) -> Path:
    """A fresh temporary path beside `target`, recognisable as lrnnet's and as this process's."""
    return target.parent / f".{target.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{target.suffix}"


def is_temp_name(name: str) -> bool:
    return TEMP_MARK in name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: a number no pid can be (a forged name)
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of `target` left by runs that were killed (their process is gone)."""
    target = Path(target)
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    prefix = f".{target.name}{TEMP_MARK}"
    for path in target.parent.glob(f"{glob_escape(prefix)}*"):
        if not _writer_gone(path.name, prefix):
            continue
        _remove(path)
        removed.append(path)
    return removed


def clean_stale_temps_in(folder: Path, names: Iterable[str]) -> list[Path]:
    """`clean_stale_temps` for the outputs `names` of one folder, listing it once (a batch of thousands of
    outputs); returns the temporaries it kept, whose writer is still alive."""
    prefixes = {f".{name}{TEMP_MARK}" for name in names}
    kept: list[Path] = []
    if not folder.is_dir():
        return kept
    for path in folder.iterdir():
        head, mark, _ = path.name.partition(TEMP_MARK)
        if not mark or head + mark not in prefixes:
            continue
        if _writer_gone(path.name, head + mark):
            _remove(path)
        else:
            kept.append(path)
    return kept


def _writer_gone(name: str, prefix: str) -> bool:
    """The temporary `name` (after `prefix` comes its writer's pid) was left by a process that has ended."""
    pid_text = name[len(prefix):].split("-", 1)[0]
    return pid_text.isascii() and pid_text.isdigit() and not _pid_alive(int(pid_text))


@contextlib.contextmanager
def scratch_folder(name: str) -> Iterator[Path]:
    """A scratch folder in the system temp folder, removed on exit, that also takes the temporaries of the
    libraries called inside (tempfile's default folder points into it: ONNX Runtime's quantizer writes its
    model-sized augmented model with no option for where). Named as a temporary of ``<tmp>/<name>`` with
    this process's pid, so a run killed with SIGKILL leaves it to the next run's `clean_stale_temps`.
    """
    anchor = Path(tempfile.gettempdir()) / name
    clean_stale_temps(anchor)
    folder = temp_path_for(anchor)
    folder.mkdir(mode=0o700)
    saved = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved
        _remove(folder)


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_output(path: str | os.PathLike[str]) -> None:
    """Take back an output committed outside command_outputs (a batch worker's, whose done-marker failed)."""
    _remove(Path(path))


# -- preflight -------------------------------------------------------------------------------------------


def check_writable(path: str | os.PathLike[str] | None, directory: bool = False, what: str = "output",
                   make_parents: bool = False, writes_into: bool = False) -> None:
    """Refuse, before any work starts, an output that cannot be written: InputError (exit 2).

    A file output must not be a folder (and a folder output not a file); its parent folder must
    exist and take a new file (a read-only or full file system, no permission). Stale temporaries of
    killed runs are removed. The path is remembered by the running command's scope, so an error
    caused by its disk later on (ENOSPC inside ONNX or protobuf code) is reported as such.
    `make_parents`: missing parent folders will be created (a run folder such as runs/lrnnet): the
    nearest existing one must then take new files.
    A folder output (`directory`) is replaced as a whole when it is committed, so an existing non-empty
    folder lrnnet did not write (no OUTPUT_MARKER) is refused; `writes_into`: a folder the command writes
    files into and never replaces (a training run folder), which may hold anything.
    """
    if path is None:
        return
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise InputError(f"{what} {path} is not a file name")
    if path.is_dir() and not directory:
        raise InputError(f"{what} {path} is a directory; give a file name such as {path / '<name>'}")
    if path.exists() and directory and not path.is_dir():
        raise InputError(f"{what} {path} exists and is not a folder")
    if path.exists() and not path.is_dir() and not path.is_file():  # a device, a FIFO, a socket
        raise InputError(f"{what} {path} is not a regular file; give a file name")
    if directory and not writes_into:
        refuse_foreign_folder(path, what)
    parent = path.parent
    if make_parents:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.exists():
        raise InputError(f"{what} {path}: folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise InputError(f"{what} {path}: {parent} is not a folder")
    clean_stale_temps(path)
    probe = temp_path_for(path if parent == path.parent else parent / path.name)
    try:
        with open(probe, "xb") as handle:
            handle.write(b"\0")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise InputError(f"cannot write {what} {path}: {describe_os_error(exc, name_the_file=False)}") from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    scope = _current_scope()
    if scope is not None:
        scope.watched.append(path)


def check_input(path: str | os.PathLike[str], what: str, folder: bool = False) -> Path:
    """`path`, if it is an existing file (a folder with `folder`); else InputError saying what it is instead
    (missing, a directory, a file), so a wrong argument is not reported as a missing one."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if folder and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a folder")
    if not folder and path.is_dir():
        raise InputError(f"{what} {path} is a directory, not a file")
    if not folder and not path.is_file():  # a device, a FIFO, a socket
        raise InputError(f"{what} {path} is not a regular file")
    return path


def refuse_foreign_folder(path: str | os.PathLike[str], what: str = "output") -> None:
    """InputError if `path` is an existing non-empty folder that lrnnet did not write (no OUTPUT_MARKER):
    committing a folder output replaces the old folder as a whole, and that must only ever be our own."""
    path = Path(path)
    if not path.is_dir() or (path / OUTPUT_MARKER).is_file():
        return
    try:
        empty = next(path.iterdir(), None) is None
    except OSError as exc:
        raise InputError(f"cannot read {what} folder {path}: {describe_os_error(exc, name_the_file=False)}") from exc
    if not empty:
        raise InputError(f"{what} folder {path} exists and holds files lrnnet did not write; give a new or empty "
                         "folder, or remove it")


def claim_folder(path: str | os.PathLike[str]) -> None:
    """Make `path`, a folder a command writes many outputs into (the demo's workdir), and mark it as lrnnet's:
    refuse_foreign_folder then lets its reruns write there again, and refuses a folder of the user's."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / OUTPUT_MARKER
    if not marker.is_file():
        marker.write_text("written by lrnnet: its commands write into this folder again\n", encoding="utf-8")


def preflight(inputs: Iterable[str | os.PathLike[str] | None] = (),
              outputs: Iterable[str | os.PathLike[str] | None] = (),
              folders: Iterable[str | os.PathLike[str] | None] = ()) -> None:
    """What every command calls first: no output is an input, and every output can be written.

    `outputs` are files, `folders` are folder outputs (a labels folder, a predictions folder).
    """
    ins, outs, dirs = list(inputs), list(outputs), list(folders)
    refuse_overwrite(ins, outs, folders=dirs)
    for path in outs:
        check_writable(path)
    for path in dirs:
        check_writable(path, directory=True)


def refuse_overwrite(inputs: Iterable[str | os.PathLike[str] | None],
                     outputs: Iterable[str | os.PathLike[str] | None],
                     folders: Iterable[str | os.PathLike[str] | None] = ()) -> None:
    """InputError if an output is one of the inputs (symlinks resolved, hard links too), or two outputs are one.

    `folders` are outputs replaced as a whole when committed (atomic_output(directory=True)): an input
    anywhere inside one (a video in it, an image folder below it) is refused too, as it would be deleted.
    """
    ins = [Path(p) for p in inputs if p is not None]
    dirs = [Path(p) for p in folders if p is not None]
    outs = [Path(p) for p in outputs if p is not None] + dirs
    for i, out in enumerate(outs):
        for source in ins:
            if _same_file(out, source):
                raise InputError(f"output {out} is the input {source}; refusing to overwrite an input "
                                 "(give another output name)")
            if out in dirs and _inside(source, out):
                raise InputError(f"output folder {out} holds the input {source}; writing it would replace the folder "
                                 "and delete the input (give another output folder)")
        for other in outs[i + 1:]:
            if _same_file(out, other):
                raise InputError(f"outputs {out} and {other} are the same file; give different names")


def _inside(path: Path, folder: Path) -> bool:
    """`path` lies somewhere below `folder`, symlinks resolved."""
    return Path(os.path.realpath(folder)) in Path(os.path.realpath(path)).parents


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists() and os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


# -- verifiers -------------------------------------------------------------------------------------------


class OutputCheckFailed(Exception):
    """A written output read back wrong (truncated, undecodable, wrong count)."""


def verify_json(path: Path) -> None:
    try:
        json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise OutputCheckFailed(f"JSON does not parse back ({exc})") from exc


def verify_nonempty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise OutputCheckFailed("the file is empty")


def verify_image(path: Path) -> None:
    import cv2

    verify_nonempty(path)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise OutputCheckFailed(f"image {path.name} does not decode")


def count_video_frames(path: Path) -> int:
    """Frames in a video file, by PyAV (packets, no decoding) where installed, else OpenCV."""
    try:
        import av  # noqa: F401 - only whether PyAV is here
    except ImportError:
        return _count_frames_opencv(path)
    with _reopened_with_pyav(path) as (container, stream):
        return 0 if stream is None else sum(1 for packet in container.demux(stream) if packet.size)


@contextlib.contextmanager
def _reopened_with_pyav(path: Path) -> Iterator[tuple[Any, Any]]:
    """(container, its first video stream or None), a file FFmpeg cannot read being OutputCheckFailed."""
    import av

    try:
        with av.open(str(path)) as container:
            yield container, (container.streams.video[0] if container.streams.video else None)
    except (av.FFmpegError, OSError) as exc:
        raise OutputCheckFailed(f"video does not reopen ({type(exc).__name__}: {exc})") from exc


def _count_frames_opencv(path: Path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise OutputCheckFailed("video does not reopen")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:  # no count in the header: read them
            count = 0
            while capture.grab():
                count += 1
        return count
    finally:
        capture.release()


@dataclass(frozen=True)
class VideoProbe:
    """What a written video file really holds, read back from its first video stream."""

    height: int
    width: int
    fps: float | None  # None when the container states no rate


def probe_video(path: Path) -> VideoProbe:
    """The size and frame rate of `path`'s video stream, by PyAV where installed, else OpenCV."""
    try:
        import av  # noqa: F401 - only whether PyAV is here
    except ImportError:
        return _probe_opencv(path)
    with _reopened_with_pyav(path) as (_, stream):
        if stream is None:
            raise OutputCheckFailed("the file holds no video stream")
        rate = stream.average_rate or stream.guessed_rate
        return VideoProbe(stream.height, stream.width, float(rate) if rate else None)


def _probe_opencv(path: Path) -> VideoProbe:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise OutputCheckFailed("video does not reopen")
        fps = capture.get(cv2.CAP_PROP_FPS)
        return VideoProbe(int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                          float(fps) if fps and fps > 0 else None)
    finally:
        capture.release()


def verify_video(path: Path, frames: int | Callable[[], int] | None = None,
                 size: tuple[int, int] | None = None) -> VideoProbe | None:
    """The video reopens and holds `frames` frames (a number, or a function giving it at commit time), each of
    `size` (height, width) when given: an encoder that silently cropped or scaled the frames is caught here.
    Returns what it read of the file's stream (`probe_video`) when it checked the size, else None."""
    verify_nonempty(path)
    probe = None
    if size is not None:
        probe = probe_video(path)
        if (probe.height, probe.width) != tuple(size):
            raise OutputCheckFailed(f"video reopens at {probe.width}x{probe.height}, {size[1]}x{size[0]} was written")
    count = count_video_frames(path)
    expected = frames() if callable(frames) else frames
    if expected is None:
        if count == 0:
            raise OutputCheckFailed("video has no frames")
    elif count != expected:
        raise OutputCheckFailed(f"video reopens with {count} frames, {expected} were written")
    return probe


def verify_onnx(path: Path) -> None:
    import onnx

    verify_nonempty(path)
    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError and friends
        raise OutputCheckFailed(f"ONNX does not parse back ({type(exc).__name__})") from exc


def verify_zip(path: Path) -> None:
    """A torch.save file (a zip archive): every member's CRC matches."""
    verify_nonempty(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise OutputCheckFailed(f"archive does not reopen ({exc})") from exc
    if bad is not None:
        raise OutputCheckFailed(f"archive member {bad} is corrupt")


def verify_folder(path: Path, files: int | Callable[[], int] | None = None) -> None:
    """Every file in the folder passes its own verifier; optionally exactly `files` of them."""
    entries = [p for p in path.iterdir() if p.is_file() and p.name != OUTPUT_MARKER]
    expected = files() if callable(files) else files
    if expected is not None and len(entries) != expected:
        raise OutputCheckFailed(f"folder holds {len(entries)} files, {expected} were written")
    for entry in entries:
        verify_for(entry)(entry)


def _verify_exists(path: Path) -> None:
    if not path.exists():
        raise OutputCheckFailed("nothing was written")


def verify_for(path: Path) -> Verifier:
    """The default verifier of an output, by its suffix (the real one of a temporary name too)."""
    suffix = path.suffix.lower()
    if path.is_dir():
        return verify_folder
    if suffix == ".json":
        return verify_json
    if suffix in IMAGE_SUFFIXES:
        return verify_image
    if suffix in VIDEO_SUFFIXES:
        return verify_video
    if suffix == ".onnx":
        return verify_onnx
    if suffix in (".pth", ".pt"):
        return verify_zip
    if suffix == ".engine":
        return verify_nonempty
    return _verify_exists


# -- durability ------------------------------------------------------------------------------------------


def _fsync_path(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            if child.is_file():
                _fsync_file(child)
        _fsync_dir(path)
    else:
        _fsync_file(path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder
            os.fsync(fd)
    finally:
        os.close(fd)


def _give_default_mode(path: Path, directory: bool) -> None:
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def free_bytes(path: Path) -> int | None:
    """Free bytes (for an unprivileged user) on the file system holding `path`, or None if unknown."""
    probe = path if path.exists() else path.parent
    try:
        stats = os.statvfs(probe)
    except (OSError, AttributeError):
        return None
    return stats.f_bavail * stats.f_frsize


def describe_os_error(exc: OSError, name_the_file: bool = True) -> str:
    """One line that says what the machine refused and what to do about it; `name_the_file=False` where the
    caller's own words already name it."""
    advice = {
        errno.ENOSPC: "the disk is full; free some space or write elsewhere",
        errno.EDQUOT: "the disk quota is exceeded; free some space or write elsewhere",
        errno.EROFS: "the file system is read-only; write elsewhere",
        errno.EACCES: "permission denied; write elsewhere or change the folder's permissions",
        errno.EPERM: "operation not permitted; write elsewhere or change the folder's permissions",
        errno.EFBIG: "the file is too large for this file system; write elsewhere",
    }
    reason = advice.get(exc.errno or -1, exc.strerror or str(exc))
    where = f" ({target_of(exc.filename)})" if exc.filename and name_the_file else ""
    return f"{reason}{where}"


def target_of(path: str | os.PathLike[str]) -> Path:
    """The output a temporary path (or a file inside a temporary folder) stands for; other paths as they are."""
    path = Path(path)
    for index, part in enumerate(path.parts):
        if TEMP_MARK in part and part.startswith("."):
            return Path(*path.parts[:index], part[1:].split(TEMP_MARK, 1)[0], *path.parts[index + 1:])
    return path


def _check(tmp: Path, target: Path, verify: Verifier | None) -> None:
    """Verify then fsync `tmp`; a failure is InputError when the disk is full, else a bug."""
    check = verify or verify_for(target if not tmp.is_dir() else tmp)
    try:
        check(tmp)
        _fsync_path(tmp)
    except OutputCheckFailed as exc:
        free = free_bytes(tmp)
        if free is not None and free < _LOW_SPACE_BYTES:
            raise InputError(f"cannot write {target}: the disk is full ({free // 1024} KiB free); "
                             "free some space or write elsewhere") from exc
        raise OutputCheckFailed(f"{target} was written but reads back wrong: {exc}") from exc


# -- commit and roll back --------------------------------------------------------------------------------


@dataclass
class _Committed:
    target: Path
    backup: Path | None  # the target's old content, kept until the scope ends


@dataclass
class _Scope:
    rollback: bool = True  # False: each output is final when renamed (a resumable command: training)
    committed: list[_Committed] = field(default_factory=list)
    watched: list[Path] = field(default_factory=list)  # outputs preflighted or being written
    made_folders: list[Path] = field(default_factory=list)  # parents created for outputs: removed on rollback if empty


_SCOPES: list[_Scope] = []
_LAST_FAILED: list[Path] = []  # the outputs of the scope that failed last, for naming its full disk


def _current_scope() -> _Scope | None:
    return _SCOPES[-1] if _SCOPES else None


def watched_outputs() -> list[Path]:
    """The outputs the running command checked or committed (for naming a full disk after the fact)."""
    live = [p for scope in _SCOPES for p in (*scope.watched, *(c.target for c in scope.committed))]
    return live + _LAST_FAILED


@contextlib.contextmanager
def command_outputs(rollback: bool = True) -> Iterator[None]:
    """All outputs committed inside commit together: on an exception every one is rolled back.

    Nested scopes (a command calling another's main) hand their commits to the outer scope. With
    `rollback=False` each output is final once renamed; the scope then only remembers the outputs,
    so that a full disk behind a library's error is still named (run_command).
    """
    if not _SCOPES:
        _LAST_FAILED.clear()  # a new command: the last one's outputs are not this one's
    scope = _Scope(rollback=rollback)
    _SCOPES.append(scope)
    try:
        yield
    except BaseException:
        _SCOPES.pop()
        _LAST_FAILED[:] = [*scope.watched, *(c.target for c in scope.committed)]
        _roll_back(scope.committed)
        for folder in reversed(scope.made_folders):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a folder the command made and filled with nothing kept
        raise
    _SCOPES.pop()
    outer = _current_scope()
    if outer is not None:
        outer.watched.extend(scope.watched)
    if outer is not None and outer.rollback:
        outer.committed.extend(scope.committed)
        outer.made_folders.extend(scope.made_folders)
    else:
        for item in scope.committed:
            if item.backup is not None:
                _remove(item.backup)


def _make_parents(target: Path) -> None:
    """Create the missing parents of `target`, remembered by the scope so that a rollback removes them."""
    missing = []
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    target.parent.mkdir(parents=True, exist_ok=True)
    scope = _current_scope()
    if scope is not None and scope.rollback:
        scope.made_folders.extend(reversed(missing))


def keep_outputs() -> None:
    """Make what the running command committed so far final, even if it then fails.

    For a command that fails *after* writing something useful and saying so (build-engine writes
    the ONNX Runtime engine, then finds no TensorRT): its error message names the kept files.
    """
    for scope in _SCOPES:
        for item in scope.committed:
            if item.backup is not None:
                _remove(item.backup)
        scope.committed.clear()
        scope.made_folders.clear()


def _roll_back(committed: list[_Committed]) -> None:
    for item in reversed(committed):
        with contextlib.suppress(OSError):
            _remove(item.target)
            if item.backup is not None:
                os.replace(item.backup, item.target)


def _rename_into_place(tmp: Path, target: Path, directory: bool) -> _Committed:
    """Rename `tmp` onto `target`; inside a scope keep the old target so the scope can restore it."""
    scope = _current_scope()
    if scope is not None and not scope.rollback:
        scope = None  # final at once
    if directory:
        refuse_foreign_folder(target)  # again: the folder may have been filled while the output was written
    backup = None
    if scope is not None and (target.exists() or target.is_symlink()):
        backup = temp_path_for(target)
        if directory or target.is_dir():
            os.replace(target, backup)
        else:
            try:
                os.link(target, backup)  # the target stays in place until the rename replaces it
            except OSError:
                shutil.copy2(target, backup)
    elif directory and target.is_dir():  # outside a scope a folder is replaced by moving the old one away
        backup = temp_path_for(target)
        os.replace(target, backup)
    try:
        os.replace(tmp, target)
    except BaseException:
        if backup is not None and not target.exists():
            os.replace(backup, target)
        elif backup is not None:
            _remove(backup)  # a link to (or copy of) the target, which was never replaced
        raise
    _fsync_dir(target.parent)
    item = _Committed(target, backup)
    if scope is not None:
        scope.committed.append(item)
    elif backup is not None:
        _remove(backup)
    return item


def _start_output(target: Path, directory: bool) -> Path:
    """Refuse a target that cannot take this output, make its parents, and create its temporary (a folder
    with `directory`) beside it."""
    if target.is_dir() and not directory:
        raise InputError(f"output {target} is a directory; give a file name")
    if directory and target.exists() and not target.is_dir():
        raise InputError(f"output {target} exists and is not a folder")
    if directory:
        refuse_foreign_folder(target)
    _make_parents(target)
    clean_stale_temps(target)
    tmp = temp_path_for(target)
    if directory:
        tmp.mkdir()
    return tmp


def _finish_output(tmp: Path, target: Path, verify: Verifier | None, directory: bool) -> None:
    """Mark a folder as lrnnet's, then give the temporary its mode, verify and fsync it."""
    if not tmp.exists():
        raise OutputCheckFailed(f"nothing was written to {target}")
    if directory:
        (tmp / OUTPUT_MARKER).write_text("written by lrnnet: the next run that writes this folder replaces it "
                                         "as a whole\n", encoding="utf-8")
    _give_default_mode(tmp, directory)
    _check(tmp, target, verify)


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike[str], verify: Verifier | None = None,
                  directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path (or empty folder, `directory=True`) beside `target`.

    When the block succeeds the temporary is verified (`verify`, default `verify_for` by suffix),
    fsynced and renamed onto `target`; when it fails, or the check fails, it is removed and `target`
    is left as it was. Missing parent folders are created (commands refuse them up front with
    `check_writable`).
    """
    target = Path(target)
    scope = _current_scope()
    if scope is not None:
        scope.watched.append(target)
    tmp = _start_output(target, directory)
    try:
        yield tmp
        _finish_output(tmp, target, verify, directory)
        _rename_into_place(tmp, target, directory)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


class OutputSet:
    """Several outputs written in one place that commit together or not at all.

        with OutputSet() as out:
            engine_tmp = out.add(engine_path, verify=...)
            sidecar_tmp = out.add(sidecar_path)
            ...write both...
        # both verified and fsynced, then renamed; a failure of either leaves both targets as they were
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path, Verifier | None, bool]] = []

    def add(self, target: str | os.PathLike[str], verify: Verifier | None = None, directory: bool = False) -> Path:
        target = Path(target)
        tmp = _start_output(target, directory)
        self._pending.append((tmp, target, verify, directory))
        return tmp

    def __enter__(self) -> OutputSet:  # noqa: PYI034 - not subclassed
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            for tmp, *_ in self._pending:
                if tmp.exists() or tmp.is_symlink():
                    _remove(tmp)

    def _commit(self) -> None:
        for tmp, target, verify, directory in self._pending:
            _finish_output(tmp, target, verify, directory)
        with command_outputs():  # the renames themselves: all or none
            for tmp, target, _, directory in self._pending:
                _rename_into_place(tmp, target, directory)


def write_image(path: str | os.PathLike[str], image: Any) -> None:
    """Encode `image` by the path's suffix in memory and write it with Python's own I/O.

    Unlike ``cv2.imwrite`` (which prints "libpng error" on stderr and returns False), a full disk
    is then an OSError (ENOSPC) that run_command turns into one line.
    """
    import cv2

    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise OutputCheckFailed(f"cannot encode an image of shape {getattr(image, 'shape', '?')} as {path.suffix}")
    try:
        with open(path, "wb") as handle:
            handle.write(encoded.tobytes())
    except OSError as exc:  # the file's name in the message (a failed write() has none)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes, verify: Verifier | None = None) -> None:
    with atomic_output(target, verify=verify) as tmp:
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
        except OSError as exc:  # the file's name in the message (a failed write() has none)
            raise OSError(exc.errno, exc.strerror, str(target)) from exc


def write_json_atomic(target: str | os.PathLike[str], obj: Any) -> None:
    write_bytes_atomic(target, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode(), verify=verify_json)
