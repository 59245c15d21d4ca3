"""The CLI error boundary and number parsers pinned to their exact words and statuses (mutation tests).

Real exceptions through `run_command`, real signals, and for the full-disk paths a real 512 KiB tmpfs
(mounted in milliseconds; skipped where mount is refused, i.e. not root).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import threading

import pytest
from disk_helpers import tmpfs

from lrnnet.cli import _common
from lrnnet.cli._common import Parser, make_parser, run_command
from lrnnet.errors import InputError

PROG = "lrnnet-test"
HINT = "(set LRNNET_DEBUG=1 for the traceback and report it)"
FULL = "free some space or write elsewhere"


def _run(body, argv=("--no-progress",), all_or_nothing=True) -> int:
    return run_command(PROG, body, make_parser(PROG, "a test command"), list(argv), all_or_nothing=all_or_nothing)


def _raise(exc: BaseException):
    def body(args):
        raise exc
    return body


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"{PROG}: ")]


@pytest.fixture
def full_disk(tmp_path):
    """A real 512 KiB tmpfs: less than 1 MiB free, which lrnnet reads as a full disk."""
    with tmpfs(tmp_path / "disk", "512k") as disk:
        yield disk


# -- parsers ---------------------------------------------------------------------------------------------


def test_bounds_are_8192_a_side_and_64_mpixel():
    assert (_common.MAX_SIDE, _common.MAX_PIXELS) == (8192, 8192 * 8192)
    assert (_common.EXIT_BAD_INPUT, _common.EXIT_INTERNAL, _common.EXIT_INTERRUPTED) == (2, 1, 130)


@pytest.mark.parametrize("text, message", [
    ("512", "size must be HEIGHTxWIDTH such as 512x1024, got '512'"),
    ("AxB", "size must be HEIGHTxWIDTH such as 512x1024, got 'AxB'"),
    ("0x8", "size must be positive, got '0x8'"),
    ("8x0", "size must be positive, got '8x0'"),
    ("-1x8", "size must be positive, got '-1x8'"),
    ("8x8193", "size 8x8193 is too large (at most 8192 a side, 8192x8192 pixels in all)"),
    ("8193x8", "size 8193x8 is too large (at most 8192 a side, 8192x8192 pixels in all)"),
])
def test_parse_size_messages_in_full(text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        _common.parse_size(text)
    assert str(info.value) == message


def test_parse_size_returns_height_then_width():
    assert _common.parse_size("1x8192") == (1, 8192)
    assert _common.parse_size("8192X1") == (8192, 1)
    assert _common.parse_size("16x24") == (16, 24)


def test_check_size_names_the_size_as_given_or_as_numbers():
    with pytest.raises(argparse.ArgumentTypeError) as info:
        _common.check_size((9000, 8))
    assert str(info.value) == "size 9000x8 is too large (at most 8192 a side, 8192x8192 pixels in all)"
    with pytest.raises(argparse.ArgumentTypeError) as info:
        _common.check_size((8, 8193), "the --size")
    assert str(info.value) == "size the --size is too large (at most 8192 a side, 8192x8192 pixels in all)"
    _common.check_size((8192, 1))
    _common.check_size((1, 8192))


@pytest.mark.parametrize("parse, text, message", [
    (_common.positive_int, "0", "expected a positive integer, got '0'"),
    (_common.positive_int, "-3", "expected a positive integer, got '-3'"),
    (_common.positive_int, "two", "expected a positive integer, got 'two'"),
    (_common.image_side, "0", "expected a positive integer, got '0'"),
    (_common.image_side, "8193", "8193 is too large for an image side (at most 8192)"),
    (_common.non_negative_int, "-1", "expected an integer >= 0, got '-1'"),
    (_common.non_negative_int, "1.0", "expected an integer >= 0, got '1.0'"),
    (_common.positive_float, "0", "expected a positive finite number, got '0'"),
    (_common.positive_float, "-0.5", "expected a positive finite number, got '-0.5'"),
    (_common.positive_float, "inf", "expected a positive finite number, got 'inf'"),
    (_common.positive_float, "nan", "expected a positive finite number, got 'nan'"),
    (_common.positive_float, "half", "expected a positive number, got 'half'"),
    (_common.finite_float, "inf", "expected a finite number, got 'inf'"),
    (_common.finite_float, "nan", "expected a finite number, got 'nan'"),
    (_common.finite_float, "one", "expected a number, got 'one'"),
])
def test_number_parser_messages_in_full(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    assert str(info.value) == message
    assert info.value.__cause__ is None and info.value.__suppress_context__ in (True, False)


def test_number_parsers_accept_their_edges():
    assert _common.positive_int("1") == 1
    assert _common.image_side("1") == 1 and _common.image_side("8192") == 8192
    assert _common.non_negative_int("0") == 0 and _common.non_negative_int("7") == 7
    assert _common.positive_float("1e-9") == 1e-9
    assert _common.finite_float("0") == 0.0 and _common.finite_float("1e300") == 1e300


def test_a_bad_value_through_the_parser_is_one_line_and_exit_2(capsys):
    parser = make_parser(PROG, "x")
    parser.add_argument("--size", type=_common.parse_size, default=(8, 8))
    assert run_command(PROG, lambda args: 0, parser, ["--size", "9x0"]) == 2
    assert capsys.readouterr().err == (f"{PROG}: error: argument --size: size must be positive, got '9x0' "
                                       f"(see {PROG} --help)\n")


def test_parser_error_is_the_message_and_the_help_hint(capsys):
    with pytest.raises(SystemExit) as info:
        Parser(prog="tool").error("no such option --x")
    assert info.value.code == 2
    assert capsys.readouterr().err == "tool: error: no such option --x (see tool --help)\n"


# -- the boundary ----------------------------------------------------------------------------------------


def test_the_bodys_status_and_none_as_0():
    assert _run(lambda args: None) == 0
    assert _run(lambda args: 3) == 3
    assert run_command(PROG, lambda args: 0, make_parser(PROG, "x"), ["--help"]) == 0


def test_a_non_integer_exit_request_is_exit_2(capsys):
    class Odd(Parser):
        def parse_args(self, *a, **k):
            raise SystemExit("a message instead of a status")

    assert run_command(PROG, lambda args: 0, Odd(prog=PROG), []) == 2


def test_every_user_os_error_is_exit_2_with_its_advice(capsys):
    cases = [
        (errno.ENOSPC, "the disk is full; free some space or write elsewhere (/o/x)"),
        (errno.EDQUOT, "the disk quota is exceeded; free some space or write elsewhere (/o/x)"),
        (errno.EROFS, "the file system is read-only; write elsewhere (/o/x)"),
        (errno.EACCES, "permission denied; write elsewhere or change the folder's permissions (/o/x)"),
        (errno.EPERM, "operation not permitted; write elsewhere or change the folder's permissions (/o/x)"),
        (errno.EFBIG, "the file is too large for this file system; write elsewhere (/o/x)"),
        (errno.ENOENT, "No such file (/o/x)"),
        (errno.EISDIR, "Is a directory (/o/x)"),
        (errno.ENOTDIR, "Not a directory (/o/x)"),
        (errno.ENAMETOOLONG, "File name too long (/o/x)"),
        (errno.EEXIST, "File exists (/o/x)"),
    ]
    strerror = {errno.ENOENT: "No such file", errno.EISDIR: "Is a directory", errno.ENOTDIR: "Not a directory",
                errno.ENAMETOOLONG: "File name too long", errno.EEXIST: "File exists"}
    for code, message in cases:
        exc = OSError(code, strerror.get(code, "x"), "/o/x")
        assert _run(_raise(exc)) == 2, code
        assert _errors(capsys) == [f"{PROG}: error: {message}"], code


def test_os_error_subclasses_without_an_errno_are_the_users(capsys):
    for exc in (FileNotFoundError("model.onnx not found"), IsADirectoryError("a folder"),
                NotADirectoryError("not a folder"), PermissionError("no")):
        assert _run(_raise(exc)) == 2
        assert _errors(capsys) == [f"{PROG}: error: {exc}"]
    assert _run(_raise(OSError("a plain one"))) == 1
    assert _errors(capsys) == [f"{PROG}: error: internal error: OSError: a plain one {HINT}"]


def test_an_unnamed_enospc_with_room_on_the_disk_is_described(capsys, tmp_path):
    def body(args):
        _common_check = __import__("lrnnet._io", fromlist=["check_writable"]).check_writable
        _common_check(tmp_path / "out.json")
        raise OSError(errno.ENOSPC, "No space left on device")

    assert _run(body) == 2
    assert _errors(capsys) == [f"{PROG}: error: the disk is full; {FULL}"]


def test_an_input_error_says_its_own_words(capsys, tmp_path):
    from lrnnet._io import check_writable

    def wrapped(args):
        check_writable(tmp_path / "out.json")
        try:
            raise RuntimeError("INVALID_PROTOBUF")
        except RuntimeError as exc:
            raise InputError("the model does not load:\n  INVALID_PROTOBUF") from exc

    assert _run(wrapped) == 2
    assert _errors(capsys) == [f"{PROG}: error: the model does not load: INVALID_PROTOBUF"]


def test_internal_errors_messages_in_full(capsys, monkeypatch):
    monkeypatch.delenv("LRNNET_DEBUG", raising=False)
    assert _run(_raise(ValueError("  spaced\tout  "))) == 1
    assert _errors(capsys) == [f"{PROG}: error: internal error: ValueError: spaced out {HINT}"]
    assert _run(_raise(RuntimeError("OUT OF MEMORY on device 0"))) == 2
    assert _errors(capsys) == [f"{PROG}: error: out of memory: use a smaller input size or batch, or a machine with more memory"]
    assert _run(_raise(RuntimeError("memory was fine"))) == 1
    # OpenCV's words (cv2.error) for a resize it cannot allocate
    assert _run(_raise(RuntimeError("OpenCV(4.10.0) alloc.cpp:73: error: (-4:Insufficient memory) "
                                    "Failed to allocate 24576000000 bytes in function 'OutOfMemoryError'"))) == 2
    assert _run(_raise(OSError(errno.EIO, "Input/output error"))) == 1
    capsys.readouterr()


def test_debug_prints_the_traceback_only_when_set(capsys, monkeypatch):
    monkeypatch.setenv("LRNNET_DEBUG", "1")
    assert _run(_raise(OSError(errno.EACCES, "Permission denied", "/o"))) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err and "PermissionError" in err
    monkeypatch.setenv("LRNNET_DEBUG", "")
    assert _run(_raise(OSError(errno.EACCES, "Permission denied", "/o"))) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_termination_of_a_resumable_command_and_the_status_per_signal(capsys, tmp_path):
    def body(args):
        os.kill(os.getpid(), signal.SIGHUP)
        raise AssertionError("not interrupted")

    assert _run(body, all_or_nothing=False) == 129
    assert _errors(capsys) == [f"{PROG}: error: terminated by SIGHUP"]
    exc = _common.Terminated(signal.SIGTERM)
    assert (str(exc), exc.signum) == ("SIGTERM", signal.SIGTERM)
    assert not isinstance(exc, Exception)  # not caught by a library's `except Exception`


def test_a_terminated_body_inside_library_except_exception_still_unwinds(capsys, tmp_path):
    from lrnnet._io import write_json_atomic

    def body(args):
        write_json_atomic(tmp_path / "a.json", {})
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except Exception:  # noqa: BLE001 - what a library might do
            return 0
        return 0

    assert _run(body) == 143
    assert _errors(capsys) == [f"{PROG}: error: terminated by SIGTERM; no output was written"]
    assert list(tmp_path.iterdir()) == []


def test_a_failure_caused_by_a_stop_signal_is_the_stop_with_what_was_kept(capsys, tmp_path):
    """A signal that lands inside a C call surfaces as another exception (CPython's SystemError "returned a
    result with an exception set", a library's own error): still the stop's one line and status, not an internal
    error; a note the command added on the way out (a batch's kept outputs) replaces "no output was written"."""
    from lrnnet.errors import add_note

    def body(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except _common.Terminated:
            error = SystemError("<built-in method> returned a result with an exception set")
            add_note(error, "3 of 4 outputs are complete and kept; a rerun skips them")
            raise error from None
        return 0

    assert _run(body) == 143
    kept = "3 of 4 outputs are complete and kept; a rerun skips them"
    assert _errors(capsys) == [f"{PROG}: error: terminated by SIGTERM; {kept}"]

    def later(args):  # a failure after a clean run of its own is not a stop
        raise RuntimeError("boom")

    assert _run(later) == 1


def test_handlers_are_installed_during_the_body_and_restored(capsys):
    seen = {}

    def body(args):
        seen["term"] = signal.getsignal(signal.SIGTERM)
        seen["hup"] = signal.getsignal(signal.SIGHUP)

    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP))
    assert _run(body) == 0
    assert callable(seen["term"]) and seen["term"] not in (signal.SIG_DFL, signal.SIG_IGN)
    assert seen["hup"] is seen["term"] or callable(seen["hup"])
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before


def test_a_command_run_in_a_thread_leaves_the_signal_handlers_alone(capsys):
    seen = {}

    def body(args):
        seen["term"] = signal.getsignal(signal.SIGTERM)
        return 4

    before = signal.getsignal(signal.SIGTERM)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("status", _run(body)))
    thread.start()
    thread.join(30)
    assert result["status"] == 4
    assert seen["term"] == before


def test_interrupt_messages(capsys):
    assert _run(_raise(KeyboardInterrupt())) == 130
    assert _errors(capsys) == [f"{PROG}: error: interrupted; no output was written"]


def test_fail_joins_a_multi_line_message(capsys, monkeypatch):
    monkeypatch.delenv("LRNNET_DEBUG", raising=False)
    assert _run(_raise(InputError("first line\n   second\tline  "))) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"{PROG}: error: first line second line"


# -- a real full disk ------------------------------------------------------------------------------------


def test_an_unnamed_enospc_on_a_full_disk_names_the_output(capsys, full_disk):
    from lrnnet._io import check_writable

    out = full_disk / "out.onnx"

    def body(args):
        check_writable(out)
        raise OSError(errno.ENOSPC, "No space left on device")

    assert _run(body) == 2
    (line,) = _errors(capsys)
    assert line.startswith(f"{PROG}: error: cannot write {out}: the disk is full (")
    assert line.endswith(f" KiB free); {FULL}")
    free_kib = int(line.split("(")[1].split(" KiB")[0])
    assert 0 < free_kib < 1024


def test_a_named_enospc_on_a_full_disk_keeps_its_own_name(capsys, full_disk):
    from lrnnet._io import check_writable

    def body(args):
        check_writable(full_disk / "out.onnx")
        raise OSError(errno.ENOSPC, "No space left on device", "/elsewhere/x.bin")

    assert _run(body) == 2
    assert _errors(capsys) == [f"{PROG}: error: the disk is full; {FULL} (/elsewhere/x.bin)"]


def test_a_library_error_on_a_full_disk_is_the_disk(capsys, full_disk):
    from lrnnet._io import check_writable

    out = full_disk / "model.onnx"

    def body(args):
        check_writable(out)
        raise RuntimeError("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF")

    assert _run(body) == 2
    (line,) = _errors(capsys)
    assert line.startswith(f"{PROG}: error: cannot write {out}: the disk is full (") and line.endswith(FULL)

    def eio(args):
        check_writable(out)
        raise OSError(errno.EIO, "Input/output error")

    assert _run(eio) == 2
    (line,) = _errors(capsys)
    assert line.startswith(f"{PROG}: error: cannot write {out}: the disk is full (")


def test_an_input_error_wrapping_a_library_error_on_a_full_disk_is_the_disk(capsys, full_disk):
    from lrnnet._io import check_writable

    out = full_disk / "model.onnx"

    def wrapped(args):
        check_writable(out)
        try:
            raise RuntimeError("INVALID_PROTOBUF")
        except RuntimeError as exc:
            raise InputError("the model does not load") from exc

    assert _run(wrapped) == 2
    (line,) = _errors(capsys)
    assert line.startswith(f"{PROG}: error: cannot write {out}: the disk is full (")

    for cause in (OSError(errno.ENOSPC, "x"), InputError("inner")):
        def own_words(args, cause=cause):
            check_writable(out)
            raise InputError("its own words") from cause

        assert _run(own_words) == 2
        assert _errors(capsys) == [f"{PROG}: error: its own words"]

    def plain(args):
        check_writable(out)
        raise InputError("no cause")

    assert _run(plain) == 2
    assert _errors(capsys) == [f"{PROG}: error: no cause"]


def test_the_full_disk_of_an_earlier_output_is_named_and_a_roomy_one_is_not(capsys, full_disk, tmp_path):
    from lrnnet._io import check_writable

    roomy = tmp_path / "roomy.json"
    out = full_disk / "out.onnx"

    def body(args):
        check_writable(roomy)
        check_writable(out)
        raise RuntimeError("INVALID_PROTOBUF")

    assert _run(body) == 2
    (line,) = _errors(capsys)
    assert f"cannot write {out}: the disk is full" in line


def test_help_never_shows_a_suppressed_default_and_joins_sizes_with_x(capsys):
    parser = make_parser(PROG, "the description")
    parser.add_argument("--size", type=_common.parse_size, default=[64, 128], help="input size")
    parser.add_argument("--pair", default=(3, 4), help="a pair")
    parser.add_argument("--hidden", default=argparse.SUPPRESS, help="maybe")
    parser.add_argument("--zero", type=int, default=0, help="a count")
    assert run_command(PROG, lambda args: 0, parser, ["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "show this help message and exit -" in text or text.count("show this help message and exit") == 1
    assert "(default: ==SUPPRESS==)" not in text and "SUPPRESS" not in text
    assert "input size (default: 64x128)" in text and "a pair (default: 3 4)" in text
    assert "a count (default: 0)" in text and "maybe --zero" in text
    assert text.startswith(f"usage: {PROG} [-h] [--no-progress] [-v]")


@pytest.mark.parametrize("size", ["1m", "1536k"])
def test_one_mebibyte_free_or_more_is_not_a_full_disk(capsys, tmp_path, size):
    from lrnnet._io import check_writable, free_bytes

    with tmpfs(tmp_path / "disk", size) as disk:
        assert free_bytes(disk) >= 1 << 20

        def body(args):
            check_writable(disk / "model.onnx")
            raise RuntimeError("INVALID_PROTOBUF")

        assert _run(body) == 1
        assert _errors(capsys) == [f"{PROG}: error: internal error: RuntimeError: INVALID_PROTOBUF {HINT}"]


def test_the_full_disk_message_says_the_free_kib(capsys, full_disk):
    from lrnnet._io import check_writable, free_bytes

    out = full_disk / "model.onnx"

    def body(args):
        check_writable(out)
        raise RuntimeError("INVALID_PROTOBUF")

    assert _run(body) == 2
    expected = f"{PROG}: error: cannot write {out}: the disk is full ({free_bytes(out) // 1024} KiB free); {FULL}"
    assert _errors(capsys) == [expected]
