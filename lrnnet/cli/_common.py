"""What every console script shares: the one-line error contract, size parsing, common options."""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, TypeVar

from lrnnet.errors import InputError, Terminated
from lrnnet.limits import (
    MAX_PIXELS,
    MAX_SIDE,
    PIXELS_IN_ALL,
    count_problem,
    fps_problem,
    threads_problem,
    timeout_problem,
)
from lrnnet.log import deferred_notes, set_progress, setup_logging

_Value = TypeVar("_Value")

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM gives 143, SIGHUP 129
_USER_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
                   errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EEXIST}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not usage + error) with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Says a default once, as a user types it: none when the help already says it, the option has no
    value (a flag) or no default (None); sizes as 512x1024, lists as `0.75 1.5`."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or isinstance(default, bool) or default is argparse.SUPPRESS
                or not action.option_strings or action.nargs == 0):
            return text
        if isinstance(default, (tuple, list)):
            shown = "x".join(map(str, default)) if action.type is not None and \
                getattr(action.type, "__name__", "") == "parse_size" else " ".join(map(str, default))
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def make_parser(prog: str, description: str) -> Parser:
    parser = Parser(prog=prog, description=description, formatter_class=HelpFormatter)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    return parser


# The stop signal this command received, if any: whatever then unwinds (a SystemError from a C call the
# signal interrupted, a library's own error) is its consequence, reported as the interruption.
_stop_signal: int | None = None


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Terminated in the main thread, as SIGINT raises KeyboardInterrupt; each is
    remembered (_stop_signal)."""
    global _stop_signal
    _stop_signal = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    resends: list[threading.Timer] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        global _stop_signal
        _stop_signal = signum
        if _importing(frame):
            # Raised inside an import, the stop can abort the process (torch's C++ import code calling back
            # into Python: std::terminate on pybind11::error_already_set) or be swallowed by a half-imported
            # C extension that fails later: the signal comes again once the import is over.
            resend = threading.Timer(_RESEND_S, os.kill, (os.getpid(), signum))
            resend.daemon = True
            resends.append(resend)
            resend.start()
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP", "SIGINT"):
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        if signum == signal.SIGINT and signal.getsignal(signum) is not signal.default_int_handler:
            continue  # SIGINT ignored, or handled by whoever runs us (a test harness): theirs
        with contextlib.suppress(ValueError, OSError):
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for resend in resends:  # a stop recorded and unwound already must not reach the handlers restored next
            resend.cancel()
        for signum, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, old)


_RESEND_S = 0.02  # how soon a stop signal that arrived during an import is delivered again


def _importing(frame: FrameType | None) -> bool:
    """Whether `frame` runs inside an import (a module's top level, or importlib's own machinery)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _disk_full_message() -> str | None:
    """If an output of the running command sits on a full disk, say so (ENOSPC hidden inside ONNX/protobuf)."""
    from lrnnet._io import free_bytes, watched_outputs

    for path in watched_outputs():
        free = free_bytes(path)
        if free is not None and free < (1 << 20):
            return (f"cannot write {path}: the disk is full ({free // 1024} KiB free); "
                    "free some space or write elsewhere")
    return None


ParserSource = argparse.ArgumentParser | Callable[[], argparse.ArgumentParser]


def run_command(prog: str, body: Callable[[argparse.Namespace], int | None], parser: ParserSource,
                argv: Sequence[str] | None = None, all_or_nothing: bool = True) -> int:
    """Build the parser, parse, run, and turn every failure into one line on stderr and an exit status.

    Bad input (InputError, a missing file) and the machine's limits (a full or read-only disk, no
    permission, out of memory) exit 2; Ctrl-C 130, SIGTERM 143, SIGHUP 129; anything else is an
    internal failure, exit 1. With `all_or_nothing` (every command but a resumable one such as
    training) the outputs the body committed through `lrnnet._io` are rolled back on any failure.
    LRNNET_DEBUG=1 shows the traceback for bug reports.

    `parser` is a Parser or the function that builds one: a console script passes its factory, so
    that the heavy imports a parser's defaults need (runtimes, OpenCV) run inside the handled region
    and a Ctrl-C during them is one line and 130, like one during the work. A reader that closes
    stdout early (`| head -1`) does not fail the command (_stdout_may_close).
    """
    built = parser if isinstance(parser, argparse.ArgumentParser) else None
    try:
        # From the start: building the parser and setting up import the heavy libraries (runtimes, OpenCV),
        # and a stop there is one line and 130 like any other (one during an import waits for its end).
        with _stdout_may_close(), _signals_unwind():
            if built is None:
                built = parser()  # type: ignore[operator]
            return _parse_and_run(body, built, argv, all_or_nothing)
    except KeyboardInterrupt as exc:
        return _stopped(prog, signal.SIGINT, exc, all_or_nothing)
    except Terminated as exc:
        return _stopped(prog, exc.signum, exc, all_or_nothing)
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: one line, never a traceback
        if _stop_signal is not None:
            return _stopped(prog, _stop_signal, exc, all_or_nothing)
        return _failed(prog, exc, built or Parser(prog=prog))


def _parse_and_run(body: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser,
                   argv: Sequence[str] | None, all_or_nothing: bool) -> int:
    """The command inside run_command's handled region; its failures propagate (through the rollback)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # a usage error (one line already printed) or --help
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_BAD_INPUT
    setup_logging(getattr(args, "verbose", False))
    from lrnnet._threads import apply_process_defaults

    apply_process_defaults()  # thread counts from the CPUs this process may use
    if getattr(args, "no_progress", False):  # only ever turns bars off: LRNNET_NO_PROGRESS=1 or an outer
        set_progress(False)                   # command's --no-progress (lrnnet-demo) stays in force
    from lrnnet._io import command_outputs

    with command_outputs(rollback=all_or_nothing), deferred_notes():
        return body(args) or 0


class _ClosedPipeSafe:
    """sys.stdout, except that a write or flush that finds the reader gone (EPIPE: `| head -1` exited)
    points stdout's file descriptor at /dev/null and carries on: what the command prints is a view of
    its work, and a reader that stopped reading is no failure of the work (its outputs stay)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._closed_reader = False

    def write(self, text: str) -> int:
        if not self._closed_reader:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._discard()
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self._stream.flush()
            return
        self._discard()

    def _discard(self) -> None:
        self._closed_reader = True
        with contextlib.suppress(OSError, ValueError, AttributeError):  # a stream without a descriptor
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                # What is still buffered then goes to /dev/null, also at interpreter exit (no
                # "Exception ignored ... BrokenPipeError" after the command's last line).
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _stdout_may_close() -> Iterator[None]:
    """Run with sys.stdout closed-pipe safe; flush at the end, so a reader gone is noticed here, not at exit."""
    original = sys.stdout
    if original is None or isinstance(original, _ClosedPipeSafe):  # no stdout, or an outer command's guard
        yield
        return
    guarded = _ClosedPipeSafe(original)
    sys.stdout = guarded  # type: ignore[assignment]
    try:
        yield
    finally:
        guarded.flush()
        if sys.stdout is guarded:
            sys.stdout = original


def _failed(prog: str, exc: Exception, parser: argparse.ArgumentParser) -> int:
    """Bad input and the machine's limits: exit 2; anything else: an internal failure, exit 1."""
    from lrnnet._io import describe_os_error

    if isinstance(exc, InputError):
        # An InputError that translated a library's failure (ONNX Runtime's "INVALID_PROTOBUF" when it
        # could not write its file) while an output's disk is full: the disk is what to fix.
        wrapped = exc.__cause__ is not None and not isinstance(exc.__cause__, (InputError, OSError))
        disk_full = _disk_full_message() if wrapped else None
        return _fail(prog, disk_full or str(exc), EXIT_BAD_INPUT)
    if isinstance(exc, OSError):
        if exc.errno in _USER_OS_ERRORS or isinstance(exc, (FileNotFoundError, IsADirectoryError,
                                                             NotADirectoryError, PermissionError)):
            unnamed_full = exc.errno in (errno.ENOSPC, errno.EDQUOT) and not exc.filename
            return _fail(prog, (unnamed_full and _disk_full_message()) or describe_os_error(exc), EXIT_BAD_INPUT)
        return _internal(prog, exc, parser)
    if isinstance(exc, MemoryError):
        return _fail(prog, _out_of_memory_message(parser), EXIT_BAD_INPUT)
    return _internal(prog, exc, parser)


def _stopped(prog: str, signum: int, exc: BaseException, all_or_nothing: bool) -> int:
    """Ctrl-C 130, SIGTERM 143, SIGHUP 129: one line, with what was kept (a note the command added to the
    exception on its way out, such as a batch's committed outputs) or that nothing was written."""
    what = "interrupted" if signum == signal.SIGINT else f"terminated by {signal.Signals(signum).name}"
    notes = getattr(exc, "__notes__", None)
    kept = f"; {notes[-1]}" if notes else _NOTHING_COMMITTED * all_or_nothing
    return _fail(prog, what + kept, 128 + signum)


_NOTHING_COMMITTED = "; no output was written"


# How native allocators (torch CPU/CUDA, ONNX Runtime, C++) say MemoryError: the machine's limit, not a bug.
# OpenCV says "Failed to allocate N bytes".
_OUT_OF_MEMORY = ("can't allocate memory", "failed to allocate", "bad_alloc", "out of memory",
                  "unable to allocate")
_SIZE_FLAGS = ("--size", "--height", "--width", "--batch", "--max-batch")


def _out_of_memory_message(parser: argparse.ArgumentParser) -> str:
    """What to make smaller, by the flags this command has (export: --height, --width or --batch)."""
    flags = [flag for flag in _SIZE_FLAGS if flag in parser._option_string_actions]
    smaller = f"{', '.join(flags[:-1])} or {flags[-1]}" if len(flags) > 1 else \
        (flags[0] if flags else "input size or batch")
    return f"out of memory: use a smaller {smaller}, or a machine with more memory"


def _internal(prog: str, exc: BaseException, parser: argparse.ArgumentParser) -> int:
    disk_full = _disk_full_message()  # ENOSPC surfaces as "INVALID_PROTOBUF" from ONNX Runtime and the like
    if disk_full is not None:
        return _fail(prog, disk_full, EXIT_BAD_INPUT)
    if any(text in str(exc).lower() for text in _OUT_OF_MEMORY):
        return _fail(prog, _out_of_memory_message(parser), EXIT_BAD_INPUT)
    message = " ".join(str(exc).split()) or type(exc).__name__
    return _fail(prog, f"internal error: {type(exc).__name__}: {message} "
                       "(set LRNNET_DEBUG=1 for the traceback and report it)", EXIT_INTERNAL)


def _fail(prog: str, message: str, status: int) -> int:
    if os.environ.get("LRNNET_DEBUG"):
        traceback.print_exc()
    return error_line(prog, message, status)


def error_line(prog: str, message: str, status: int = EXIT_BAD_INPUT) -> int:
    """The one `prog: error: ...` line on stderr; returns `status`. For a command that ends in an error after it
    committed its outputs (they stay: returned, not raised), and for run_command's own failures."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def check_fp16_backend(option: str, backend: str) -> None:
    """`option` (--fp16 and the like) sets the torch backend's autocast; an exported model's precision is
    fixed in its graph, so the option would be silently ignored there: InputError instead."""
    if backend != "torch":
        raise InputError(f"{option} is for the torch backend (a .pth); an {backend} model's precision lives in "
                         "its graph (build lrnnet_fp16.onnx with lrnnet-build-engine --fp16)")


def parse_size(text: str) -> tuple[int, int]:
    """'512x1024' -> (512, 1024) as (height, width); argparse type."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HEIGHTxWIDTH such as 512x1024, got '{text}'") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got '{text}'")
    check_size((height, width), text)
    return height, width


def check_size(size: tuple[int, int], text: str | None = None) -> None:
    """The one bound on an image size (MAX_SIDE a side, MAX_PIXELS in all), before anything is allocated."""
    height, width = size
    shown = text or f"{height}x{width}"
    if height > MAX_SIDE or width > MAX_SIDE or height * width > MAX_PIXELS:
        raise argparse.ArgumentTypeError(f"size {shown} is too large (at most {MAX_SIDE} a side, {PIXELS_IN_ALL})")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def image_side(text: str) -> int:
    """An image height or width (argparse type): positive and at most MAX_SIDE (the one size bound)."""
    value = positive_int(text)
    if value > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"{value} is too large for an image side (at most {MAX_SIDE})")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got '{text}'")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'") from None
    if not (value > 0 and math.isfinite(value)):  # refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got '{text}'")
    return value


def finite_float(text: str) -> float:
    """Any finite number (argparse type): refuses nan and inf, which no setting of lrnnet means."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return value


def _bounded(parse: Callable[[str], _Value], problem: Callable[[_Value], str | None]) -> Callable[[str], _Value]:
    """argparse type: `parse`, then refuse a value `problem` (one of lrnnet.limits' checks) finds fault with."""
    def checked(text: str) -> _Value:
        value = parse(text)
        why = problem(value)
        if why is not None:
            raise argparse.ArgumentTypeError(why)
        return value

    checked.__name__ = parse.__name__  # argparse names the type in "invalid <name> value"
    return checked


def count(maximum: int, minimum: int = 1) -> Callable[[str], int]:
    """argparse type of a count that sizes a loop or an allocation: an integer from `minimum` (1 or 0) to
    `maximum`, one of the bounds of lrnnet.limits (refused before anything runs, not after hours)."""
    return _bounded(positive_int if minimum == 1 else non_negative_int,
                    lambda value: count_problem(value, maximum, minimum))


def thread_count(text: str) -> int:
    """argparse type of every --threads: positive and at most the CPUs this process may use (lrnnet.limits)."""
    return _bounded(positive_int, threads_problem)(text)


def output_fps(text: str) -> float:
    """An output video's frame rate (argparse type), within what the encoders write correctly (lrnnet.limits)."""
    return _bounded(finite_float, fps_problem)(text)


def stream_timeout(text: str) -> float:
    """A stream's open and read timeout in seconds (argparse type), within what FFmpeg takes (lrnnet.limits)."""
    return _bounded(finite_float, timeout_problem)(text)


def json_output(text: str) -> Path:
    """A JSON output file (argparse type of every command's --json/--report): its name must end in .json, so
    that a slip such as `--report clip.mp4` cannot overwrite a video, a list or a model with a report."""
    path = Path(text)
    if path.suffix.lower() != ".json":
        raise argparse.ArgumentTypeError(f"a JSON output must end in .json, got '{text}'")
    return path
