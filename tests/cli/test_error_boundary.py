"""The CLI boundary (lrnnet.cli._common.run_command): exit statuses, one line on stderr, the debug traceback.

Through ``run_command`` with a real parser and bodies that fail in each way, and through a real
command (``lrnnet-export``) in a subprocess whose model has a genuinely undeployable graph.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from lrnnet.cli._common import EXIT_BAD_INPUT, EXIT_INTERNAL, make_parser, run_command
from lrnnet.errors import InputError

PROG = "lrnnet-gate"
HINT = "(set LRNNET_DEBUG=1 for the traceback and report it)"


def _run(body, argv=("--no-progress",)) -> int:
    parser = make_parser(PROG, "a test command")
    parser.add_argument("--count", type=int, default=1)
    return run_command(PROG, body, parser, list(argv))


def _raise(exc: BaseException):
    def body(args):
        raise exc
    return body


def _stderr_lines(capsys) -> list[str]:
    """stderr without the log's informational lines (e.g. the thread counts said once per process)."""
    lines = capsys.readouterr().err.strip().splitlines()
    if "Traceback (most recent call last):" not in lines:
        assert all(line.startswith((f"{PROG}: ", "threads: ")) for line in lines), lines
        lines = [line for line in lines if line.startswith(f"{PROG}: ")]
    return lines


def test_exit_codes_are_the_documented_ones():
    assert (EXIT_INTERNAL, EXIT_BAD_INPUT) == (1, 2)


def test_internal_error_is_exit_1_and_one_line(capsys, monkeypatch):
    monkeypatch.delenv("LRNNET_DEBUG", raising=False)
    assert _run(_raise(RuntimeError("the graph\n   lost   a node"))) == 1
    assert _stderr_lines(capsys) == [f"{PROG}: error: internal error: RuntimeError: the graph lost a node {HINT}"]


def test_internal_error_without_a_message_names_its_type(capsys, monkeypatch):
    monkeypatch.delenv("LRNNET_DEBUG", raising=False)
    assert _run(_raise(KeyError())) == 1
    assert _stderr_lines(capsys) == [f"{PROG}: error: internal error: KeyError: KeyError {HINT}"]


def test_internal_error_shows_the_traceback_under_lrnnet_debug(capsys, monkeypatch):
    monkeypatch.setenv("LRNNET_DEBUG", "1")
    assert _run(_raise(ZeroDivisionError("division by zero in the bug"))) == 1
    err = _stderr_lines(capsys)
    assert err[0] == "Traceback (most recent call last):"
    assert "ZeroDivisionError: division by zero in the bug" in err
    assert any("in body" in line for line in err)  # the frame that raised
    assert err[-1].startswith(f"{PROG}: error: internal error: ZeroDivisionError")


def test_bad_input_is_exit_2_and_one_line_and_no_traceback_even_when_debugging(capsys, monkeypatch):
    monkeypatch.delenv("LRNNET_DEBUG", raising=False)
    assert _run(_raise(InputError("the checkpoint  is\nnot a checkpoint"))) == 2
    assert _stderr_lines(capsys) == [f"{PROG}: error: the checkpoint is not a checkpoint"]
    assert _run(_raise(FileNotFoundError(2, "No such file or directory", "/no/such.pth"))) == 2
    (line,) = _stderr_lines(capsys)
    assert line.startswith(f"{PROG}: error: ") and "/no/such.pth" in line and "internal" not in line


def test_the_parser_itself_exits_2_on_a_usage_error(capsys):
    parser = make_parser(PROG, "a test command")
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["--no-such-option"])
    assert caught.value.code == 2
    assert capsys.readouterr().err == (f"{PROG}: error: unrecognized arguments: --no-such-option "
                                       f"(see {PROG} --help)\n")


def test_usage_error_is_exit_2_and_one_line(capsys):
    assert _run(lambda args: 0, ["--count", "many"]) == 2
    (line,) = _stderr_lines(capsys)
    assert line.startswith(f"{PROG}: error: argument --count") and line.endswith(f"(see {PROG} --help)")


def test_success_returns_the_bodys_status():
    assert _run(lambda args: None) == 0
    assert _run(lambda args: 0) == 0
    assert _run(lambda args: args.count + 2, ["--count", "1"]) == 3
    assert _run(lambda args: 0, ["--help"]) == 0


def test_interrupt_is_130(capsys):
    assert _run(_raise(KeyboardInterrupt())) == 130
    (line,) = _stderr_lines(capsys)
    assert line.startswith(f"{PROG}: error: interrupted")


# A real command and a genuine internal failure: a model whose graph contains an ONNX Mod node
# (a context module a contributor might add), exported by lrnnet-export's own main().
_EXPORT_A_MOD_GRAPH = textwrap.dedent("""
    import sys, torch
    from lrnnet.models import LRNNet, save_checkpoint
    from lrnnet.models.lrnnet import CONTEXT_MODULES
    from lrnnet.cli.export import main

    class ModContext(torch.nn.Module):
        def forward(self, x):
            return torch.fmod(x, 1.0e4)

    CONTEXT_MODULES["mod-test"] = lambda channels, **_: ModContext()
    torch.manual_seed(0)
    save_checkpoint(sys.argv[1], LRNNet(context="mod-test").eval(), epoch=0, metrics={})
    raise SystemExit(main([sys.argv[1], "-o", sys.argv[2], "--height", "64", "--width", "128", "--no-verify"]))
""")


@pytest.mark.slow
@pytest.mark.parametrize("debug", [False, True])
def test_a_real_command_fails_with_exit_1_on_an_internal_error(tmp_path, debug):
    env = {key: value for key, value in os.environ.items() if key != "LRNNET_DEBUG"}
    env.update({"LRNNET_NO_PROGRESS": "1", **({"LRNNET_DEBUG": "1"} if debug else {})})
    done = subprocess.run([sys.executable, "-c", _EXPORT_A_MOD_GRAPH, str(tmp_path / "m.pth"),
                           str(tmp_path / "m.onnx")], check=False, capture_output=True, text=True,
                          env=env, timeout=300)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert err[-1].startswith("lrnnet-export: error: internal error: GraphCheckError: ") and "Mod x1" in err[-1]
    assert ("Traceback (most recent call last):" in err) is debug
    if debug:  # the traceback reaches the check that raised
        assert any("check_ops" in line for line in err)
    else:
        assert [line for line in err if "error" in line.lower()] == [err[-1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth"]  # nothing written


# -- the rest of the boundary: the machine's limits, signals, all-or-nothing, and the shared parsers -----


def test_machine_limits_are_exit_2_and_other_os_errors_exit_1(capsys):
    import errno

    assert _run(_raise(OSError(errno.ENOSPC, "No space left on device", "/out/x.mp4"))) == 2
    assert _stderr_lines(capsys) == [f"{PROG}: error: the disk is full; free some space or write elsewhere (/out/x.mp4)"]
    assert _run(_raise(PermissionError(errno.EACCES, "Permission denied", "/out"))) == 2
    assert _run(_raise(NotADirectoryError(errno.ENOTDIR, "Not a directory", "/a/b"))) == 2
    assert _run(_raise(IsADirectoryError(errno.EISDIR, "Is a directory", "/a"))) == 2
    capsys.readouterr()
    assert _run(_raise(OSError(errno.EIO, "Input/output error"))) == 1  # not the user's to fix
    (line,) = _stderr_lines(capsys)
    assert line.startswith(f"{PROG}: error: internal error: OSError: [Errno 5] Input/output error")
    assert _run(_raise(MemoryError())) == 2
    (line,) = _stderr_lines(capsys)
    assert line == f"{PROG}: error: out of memory: use a smaller input size or batch, or a machine with more memory"


@pytest.mark.parametrize("signame, status", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_termination_signals_unwind_like_ctrl_c(capsys, signame, status, tmp_path):
    import signal

    from lrnnet._io import write_json_atomic

    signum = getattr(signal, signame)
    before = signal.getsignal(signum)

    def body(args):
        write_json_atomic(tmp_path / "out.json", {"partial": True})
        os.kill(os.getpid(), signum)
        raise AssertionError("the signal did not interrupt the body")

    assert _run(body) == status
    assert _stderr_lines(capsys) == [f"{PROG}: error: terminated by {signame}; no output was written"]
    assert list(tmp_path.iterdir()) == []  # the output committed before the signal was rolled back
    assert signal.getsignal(signum) == before  # the previous handler is back


def test_all_or_nothing_rolls_back_and_a_resumable_command_keeps_its_outputs(tmp_path, capsys):
    from lrnnet._io import write_json_atomic

    def body(args):
        write_json_atomic(tmp_path / "step1.json", {"done": 1})
        raise KeyboardInterrupt

    parser = make_parser(PROG, "x")
    assert run_command(PROG, body, parser, ["--no-progress"]) == 130
    assert _stderr_lines(capsys) == [f"{PROG}: error: interrupted; no output was written"]
    assert list(tmp_path.iterdir()) == []
    assert run_command(PROG, body, make_parser(PROG, "x"), ["--no-progress"], all_or_nothing=False) == 130
    assert _stderr_lines(capsys) == [f"{PROG}: error: interrupted"]
    assert [p.name for p in tmp_path.iterdir()] == ["step1.json"]


def test_shared_number_parsers():
    import argparse

    from lrnnet.cli import _common

    assert _common.parse_size("512x1024") == (512, 1024) and _common.parse_size("8X16") == (8, 16)
    assert _common.parse_size("8192x8192") == (8192, 8192) and _common.parse_size("1x1") == (1, 1)
    for text, words in (("512", "HEIGHTxWIDTH"), ("axb", "HEIGHTxWIDTH"), ("0x8", "positive"), ("8x-8", "positive"),
                        ("8x0", "positive"),
                        ("8193X8", r"size 8193X8 is too large \(at most 8192 a side, 8192x8192 pixels in all\)"), ("1x2x3", "HEIGHTxWIDTH")):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            _common.parse_size(text)
    _common.check_size((8192, 8192))
    with pytest.raises(argparse.ArgumentTypeError, match="size 8x9000 is too large"):
        _common.check_size((8, 9000))
    assert _common.positive_int("3") == 3
    for bad in ("0", "-1", "x", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected a positive integer, got '{bad}'"):
            _common.positive_int(bad)
    assert _common.image_side("8192") == 8192
    with pytest.raises(argparse.ArgumentTypeError, match="8193 is too large for an image side"):
        _common.image_side("8193")
    assert _common.non_negative_int("0") == 0
    for bad in ("-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected an integer >= 0, got '{bad}'"):
            _common.non_negative_int(bad)
    assert _common.positive_float("0.5") == 0.5
    for bad, words in (("0", "positive finite"), ("-2", "positive finite"), ("nan", "positive finite"),
                       ("inf", "positive finite"), ("x", "expected a positive number")):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            _common.positive_float(bad)
    assert _common.finite_float("-2.5") == -2.5
    for bad, words in (("nan", "finite"), ("-inf", "finite"), ("x", "expected a number, got 'x'")):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            _common.finite_float(bad)


def test_help_says_each_default_once(capsys):
    from lrnnet.cli._common import parse_size

    parser = make_parser(PROG, "a test command")
    parser.add_argument("--size", type=parse_size, default=(512, 1024), help="input size")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.75, 1.5], help="scales")
    parser.add_argument("--name", default="lrnnet", help="a name")
    parser.add_argument("--ratio", default="50%", help="a ratio")
    parser.add_argument("--said", default=3, help="three (default 3)")
    parser.add_argument("--none", default=None, help="nothing")
    parser.add_argument("--flag", action="store_true", help="a flag")
    assert run_command(PROG, lambda args: 0, parser, ["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "input size (default: 512x1024)" in text and "scales (default: 0.75 1.5)" in text
    assert "a name (default: lrnnet)" in text and "a ratio (default: 50%)" in text
    assert "three (default 3) --none" in text and "nothing --flag" in text and "a flag (default" not in text
    assert "more log output (default" not in text
    assert "--no-progress no progress bars -v, --verbose more log output" in text


def test_verbose_turns_debug_lines_on(capsys):
    from lrnnet.cli._common import Parser
    from lrnnet.log import logger

    def body(args):
        logger.debug("a debug line")
        logger.info("an info line")

    assert _run(body, ["--no-progress", "-v"]) == 0
    err = capsys.readouterr().err
    assert "a debug line" in err and "an info line" in err
    assert _run(body, ["--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "a debug line" not in err and "an info line" in err
    assert run_command(PROG, body, Parser(prog=PROG), []) == 0  # a parser without -v: not verbose
    assert "a debug line" not in capsys.readouterr().err


def test_no_progress_turns_bars_off_and_never_on(monkeypatch):
    from lrnnet import log

    monkeypatch.setattr(log, "_progress_enabled", True)
    assert _run(lambda args: 0, []) == 0
    assert log._progress_enabled is True  # without the flag, nothing changes
    assert _run(lambda args: 0, ["--no-progress"]) == 0
    assert log._progress_enabled is False
    assert _run(lambda args: 0, []) == 0
    assert log._progress_enabled is False  # an outer command's --no-progress stays in force
    from lrnnet.cli._common import Parser

    monkeypatch.setattr(log, "_progress_enabled", True)
    assert run_command(PROG, lambda args: 0, Parser(prog=PROG), []) == 0  # a parser without the option
    assert log._progress_enabled is True


@pytest.mark.parametrize("text", ["std::bad_alloc", "Failed to allocate memory for requested buffer",
                                  "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Out Of Memory",
                                  "Unable to allocate 3.2 GiB for an array", "CUDA error: can't allocate memory"])
def test_a_library_out_of_memory_is_exit_2(capsys, text):
    assert _run(_raise(RuntimeError(text))) == 2
    message = f"{PROG}: error: out of memory: use a smaller input size or batch, or a machine with more memory"
    assert _stderr_lines(capsys) == [message]


def test_help_defaults_edge_cases(capsys):
    import functools

    parser = make_parser(PROG, "the description")
    parser.add_argument("--switch", default=False, help="a switch")
    parser.add_argument("--fp16", dest="precision", action="store_const", const="fp16", default="fp32", help="half")
    parser.add_argument("--pair", type=functools.partial(int), nargs="+", default=[1, 2], help="a pair")
    parser.add_argument("--one", nargs=1, default=["z"], help="one value")
    parser.add_argument("where", nargs="?", default="here", help="a place")
    assert run_command(PROG, lambda args: 0, parser, ["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "the description" in text
    assert "a switch --fp16" in text and "half --pair" in text  # no default for a bool or a constant flag
    assert "a pair (default: 1 2)" in text and "one value (default: z)" in text
    assert "a place" in text and "(default: here)" not in text  # a positional: no default shown
