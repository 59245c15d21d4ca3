"""The bounds every command's arguments share (lrnnet.limits through lrnnet.cli._common's types).

--threads at most the CPUs this process may use; counts that size a loop or an allocation bounded;
the pixel bound worded one way in every message, help text and document.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

from lrnnet._threads import usable_cpus
from lrnnet.cli import _common
from lrnnet.limits import MAX_BENCH_ITERATIONS, PIXELS_IN_ALL, pixels_problem

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("bench", "build_engine", "demo", "eval", "export", "infer", "train")


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("command, argv", [
    ("bench", ["--model", "m.onnx"]),
    ("eval", ["--model", "m.onnx", "--data", "."]),
    ("train", ["--synthetic"]),
])
def test_threads_above_the_usable_cpus_are_one_line_and_exit_2(command, argv, capsys, tmp_path):
    main = importlib.import_module(f"lrnnet.cli.{command}").main
    for threads in (usable_cpus() + 1, 100000):
        assert main([*argv, "--threads", str(threads), "--no-progress"]) == 2
        line = _one_error_line(capsys)
        assert f"argument --threads: {threads} threads is more than the " in line and "this process may use" in line
    assert list(tmp_path.iterdir()) == []


def test_thread_count_accepts_the_usable_cpus():
    assert _common.thread_count(str(usable_cpus())) == usable_cpus()
    assert _common.thread_count("1") == 1
    for bad in ("0", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a positive integer"):
            _common.thread_count(bad)


@pytest.mark.parametrize("command, argv", [
    ("bench", ["--model", "m.onnx", "--iters", "1000000000000000000000"]),
    ("bench", ["--model", "m.onnx", "--iters", "100000000000"]),
    ("bench", ["--model", "m.onnx", "--warmup", "100000000000"]),
    ("train", ["--synthetic", "--iters", "100000000000"]),
    ("train", ["--synthetic", "--epochs", "100000000000"]),
    ("train", ["--synthetic", "--synthetic-images", "100000000000"]),
    ("eval", ["--model", "m.onnx", "--data", ".", "--limit", "100000000000"]),
    ("infer", ["v.mp4", "--max-frames", "100000000000000"]),
    ("infer", ["v.mp4", "--warmup", "100000000000"]),
    ("demo", ["--train-iters", "100000000000"]),
    ("demo", ["--train-images", "100000000000"]),
    ("demo", ["--video-frames", "100000000000000"]),
    ("export", ["m.pth", "--verify-scenes", "100000000000"]),
    ("build_engine", ["--int8", "--calib-images", "100000000000"]),
])
def test_counts_that_size_a_loop_or_an_allocation_are_bounded(command, argv, capsys):
    main = importlib.import_module(f"lrnnet.cli.{command}").main
    assert main([*argv, "--no-progress"]) == 2
    line = _one_error_line(capsys)
    assert "is too many (at most" in line and "internal" not in line and "memory" not in line, line


def test_count_type_edges():
    assert _common.count(10)("10") == 10 and _common.count(10)("1") == 1
    assert _common.count(10, minimum=0)("0") == 0
    with pytest.raises(argparse.ArgumentTypeError, match=r"^11 is too many \(at most 10\)$"):
        _common.count(10)("11")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a positive integer, got '0'"):
        _common.count(10)("0")
    with pytest.raises(argparse.ArgumentTypeError, match="expected an integer >= 0, got '-1'"):
        _common.count(10, minimum=0)("-1")
    assert _common.count(MAX_BENCH_ITERATIONS)(str(MAX_BENCH_ITERATIONS)) == MAX_BENCH_ITERATIONS


def test_the_pixel_bound_is_worded_one_way_everywhere(capsys):
    assert PIXELS_IN_ALL == "8192x8192 pixels in all"
    assert PIXELS_IN_ALL in pixels_problem(2, 8192, 8192)
    with pytest.raises(argparse.ArgumentTypeError, match=PIXELS_IN_ALL):
        _common.check_size((8193, 8))
    for command in COMMANDS:
        text = " ".join(importlib.import_module(f"lrnnet.cli.{command}").build_parser().format_help().split())
        assert "Mpixel" not in text, command
        if command in ("export", "build_engine"):
            assert PIXELS_IN_ALL in text, command
    documents = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "lrnnet").rglob("*.md"),
                 *(ROOT / "lrnnet").rglob("*.py")]
    assert len(documents) > 10
    for path in documents:
        text = path.read_text(encoding="utf-8")
        if path.name != "limits.py":  # which names the old wordings once, to say why there is one
            assert "Mpixel" not in text and "megapixel" not in text.lower(), path
