"""lrnnet-export: checkpoint formats, the summary line, and one clear line + exit 2 + no file on bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from lrnnet.cli.export import main
from lrnnet.export.metadata import read_model_info
from lrnnet.models import LRNNet

CONSOLE_SCRIPT = Path(sys.executable).with_name("lrnnet-export")


def _run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), *args, "--no-progress"], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def _assert_one_line_error(stderr: str, pattern: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lrnnet-export: error: "), stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.slow
def test_console_script_exports_argmax_graph_and_prints_summary(tiny_checkpoint, oracle, tmp_path):
    out = tmp_path / "labels.onnx"
    result = _run_script(str(tiny_checkpoint), "-o", str(out), "--height", "64", "--width", "128", "--argmax",
                         "--verify-scenes", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"wrote {re.escape(str(out))} \(\d+\.\d MB, opset 17, \d+ ops, input 1x64x128 NCHW float32 RGB "
        r"normalised, power iterations \d+\); verified: argmax agreement \d+\.\d{3}% on 3 images \(1x3x64x128\)",
        summary), summary
    assert read_model_info(out).argmax_in_graph
    frames = oracle.frames((64, 128), 1)
    labels = oracle.run_onnx(out, oracle.onnx_input(frames, (64, 128)))
    assert labels.dtype == np.int32 and labels.shape == (1, 64, 128)
    assert (labels == oracle.logits(frames, (64, 128)).argmax(1)).mean() > 0.999


def test_console_script_missing_checkpoint(tmp_path):
    result = _run_script(str(tmp_path / "nothere.pth"), "-o", "out.onnx", cwd=tmp_path)
    assert result.returncode == 2
    _assert_one_line_error(result.stderr, r"checkpoint not found: .*nothere\.pth")
    assert list(tmp_path.iterdir()) == []


def test_plain_state_dict_power_iterations_and_opset(tiny_checkpoint, tiny_onnx, tmp_path, monkeypatch):
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    torch.save(checkpoint["model"], tmp_path / "weights.pth")  # a plain state dict: no config in it
    monkeypatch.chdir(tmp_path)
    assert main(["weights.pth", "--height", "64", "--width", "128", "--power-iterations", "4", "--opset", "13",
                 "--verify-scenes", "0", "--no-progress"]) == 0
    out = tmp_path / "lrnnet.onnx"  # the default output, in the working directory
    info = read_model_info(out)
    assert info.power_iterations == 4 and info.model_config["power_iterations"] == 4
    assert info.num_classes == 19 and info.model_config["svd"] == "power"
    graph, fixture_graph = onnx.load(str(out)), onnx.load(str(tiny_onnx))
    assert graph.opset_import[0].version == 13
    # The power iteration is unrolled: one MatMul per iteration (every region size shares one
    # loop), so the checkpoint's own count (tiny_onnx) and 4 differ by exactly that many MatMuls.
    matmuls = [sum(node.op_type == "MatMul" for node in g.graph.node) for g in (fixture_graph, graph)]
    assert matmuls[0] - matmuls[1] == checkpoint["model_config"]["power_iterations"] - 4


class _OtherNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.BatchNorm2d(16))
        self.classifier = torch.nn.Conv2d(16, 19, 1)


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (argv, pattern of the one error line)."""
    good = tmp_path / "good.pth"
    torch.save(LRNNet().state_dict(), good)
    torch.save(_OtherNet().state_dict(), tmp_path / "other.pth")
    torch.save(LRNNet(svn_channels=32).state_dict(), tmp_path / "narrow.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    torch.save({"epoch": 3, "lr": 0.01}, tmp_path / "dict.pth")
    return {
        "another model": (["other.pth"], (r"does not hold weights of this LRNNet: \d+ missing keys, e.g. .*"
                                          r"\d+ unexpected keys, e.g. \['backbone")),
        "another config": (["narrow.pth"], r"weights have other shapes than the model"),
        "empty file": (["empty.pth"], r"cannot read .*empty\.pth as a PyTorch checkpoint"),
        "text file": (["notes.pth"], r"cannot read notes\.pth as a PyTorch checkpoint"),
        "dict of numbers": (["dict.pth"], r"not a state dict"),
        "directory": ([str(tmp_path)], r"checkpoint is not a file"),
        "height off stride": (["good.pth", "--height", "100"], r"multiples of the network's stride 8, got 100x1024"),
        "width off stride": (["good.pth", "--width", "1020", "--dynamic"], r"stride 8, got 512x1020"),
        "zero height": (["good.pth", "--height", "0"], r"argument --height: expected a positive integer, got '0'"),
        "text width": (["good.pth", "--width", "wide"], r"argument --width: expected a positive integer"),
        "zero batch": (["good.pth", "--batch", "0"], r"argument --batch"),
        "old opset": (["good.pth", "--opset", "11"], r"opset must be between 13 and 20"),
        "zero iterations": (["good.pth", "--power-iterations", "0"], r"argument --power-iterations"),
    }


def test_bad_inputs_give_one_line_exit_2_and_no_output(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, (argv, pattern) in _bad_inputs(tmp_path).items():
        before = sorted(tmp_path.iterdir())
        status = main([*argv, "-o", str(tmp_path / "out.onnx"), "--no-progress"])
        assert status == 2, name
        _assert_one_line_error(capsys.readouterr().err, pattern)
        assert sorted(tmp_path.iterdir()) == before, name  # no output, no temporary file
    assert main(["good.pth", "-o", str(tmp_path), "--no-progress"]) == 2
    _assert_one_line_error(capsys.readouterr().err, r"output .* is a directory; give a file name such as")


def test_help_names_the_stride(capsys):
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "multiples of the network's stride (8 for LRNNet)" in text


# --- the audit's defects: refused up front, one line, exit 2, nothing written ----------------------

def _checkpoint_with(tiny_checkpoint, path: Path, **changes) -> Path:
    """A copy of the tiny checkpoint at `path` with top-level entries replaced (sizes, model_config)."""
    checkpoint = torch.load(tiny_checkpoint, weights_only=False)
    torch.save({**checkpoint, **changes}, path)
    return path


@pytest.mark.parametrize("name", ["out.json", "out.png", "out.pth", "out.engine", "out"])
def test_output_must_be_an_onnx_name(tiny_checkpoint, tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert main([str(tiny_checkpoint), "-o", name, "--no-verify"]) == 2
    _assert_one_line_error(capsys.readouterr().err, rf"an export is an \.onnx file.*-o {name} should end in \.onnx")
    assert list(tmp_path.iterdir()) == []


def test_sizes_and_counts_are_bounded(tiny_checkpoint, tmp_path, capsys):
    from lrnnet.models import load_checkpoint

    huge = _checkpoint_with(tiny_checkpoint, tmp_path / "huge.pth", sizes={"val_size": [100000, 100000]})
    config = dict(load_checkpoint(tiny_checkpoint).config, power_iterations=100000)
    endless = _checkpoint_with(tiny_checkpoint, tmp_path / "endless.pth", model_config=config)
    out = tmp_path / "out.onnx"
    cases = {
        "recorded size": ([str(huge)], r"export size 100000x100000 is too large \(at most 8192 a side\)"),
        "batch": ([str(tiny_checkpoint), "--batch", "100000", "--height", "64", "--width", "128"],
                  r"export size 100000 x 64x128 is 819,200,000 pixels, too large \(at most 8192x8192 pixels in all\)"),
        "flag iterations": ([str(tiny_checkpoint), "--power-iterations", "100000"],
                            r"power iterations must be an integer in 1\.\.100 .* from --power-iterations"),
        "config iterations": ([str(endless), "--height", "64", "--width", "128"],
                              r"power iterations must be an integer in 1\.\.100 .* from the model's config"),
    }
    for name, (argv, pattern) in cases.items():
        assert main([*argv, "-o", str(out), "--no-verify"]) == 2, name
        _assert_one_line_error(capsys.readouterr().err, pattern)
        assert not out.exists()


def test_a_size_the_model_refuses_is_the_only_line(tiny_checkpoint, tmp_path, capsys, fresh_log_handler):
    """The stride check runs before the trained-scale warning, so the error is the one line on stderr."""
    trained = _checkpoint_with(tiny_checkpoint, tmp_path / "trained.pth", sizes={"train_size": [64, 128], "val_size": [64, 128]})
    assert main([str(trained), "--height", "7", "--width", "16", "-o", str(tmp_path / "out.onnx")]) == 2
    _assert_one_line_error(capsys.readouterr().err, r"multiples of the network's stride 8, got 7x16")


def test_out_of_memory_names_the_commands_own_flags(capsys):
    from lrnnet.cli._common import run_command
    from lrnnet.cli.export import PROG, build_parser

    def body(args):
        raise MemoryError

    assert run_command(PROG, body, build_parser(), ["x.pth"]) == 2
    _assert_one_line_error(capsys.readouterr().err,
                           r"out of memory: use a smaller --height, --width or --batch, or a machine with more memory")
