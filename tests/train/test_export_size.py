"""A checkpoint remembers the sizes it was trained and validated at, and lrnnet-export follows them."""

from __future__ import annotations

import pytest

from lrnnet.cli import export, train
from lrnnet.export.metadata import read_model_info
from lrnnet.models.checkpoint import checkpoint_sizes


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A real lrnnet-train run at 48x96 (crops 32x64): two steps, enough to record the sizes."""
    out = tmp_path_factory.mktemp("sizes") / "run"
    status = train.main(["--synthetic", "--synthetic-images", "4", "--size", "48x96", "--crop", "32x64",
                         "--batch", "2", "--iters", "2", "--out", str(out), "--device", "cpu", "--threads", "1",
                         "--no-progress"])
    assert status == 0
    return out / "best.pth"


def test_the_checkpoint_records_its_sizes(small_run):
    assert checkpoint_sizes(small_run) == {"train_size": (48, 96), "train_crop": (32, 64), "val_size": (48, 96)}


def test_export_defaults_to_the_validation_size_without_a_warning(small_run, tmp_path, capsys):
    out = tmp_path / "default.onnx"
    assert export.main([str(small_run), "-o", str(out), "--no-verify", "--no-simplify"]) == 0
    assert read_model_info(out).input_size == (48, 96)
    assert "trained at" not in capsys.readouterr().err


def test_export_at_another_size_warns_in_one_line(small_run, tmp_path, capsys):
    out = tmp_path / "other.onnx"
    assert export.main([str(small_run), "-o", str(out), "--height", "64", "--width", "128", "--no-verify",
                        "--no-simplify"]) == 0
    assert read_model_info(out).input_size == (64, 128)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "trained at" in line]
    assert len(warnings) == 1
    assert "exporting at 64x128" in warnings[0] and "trained at 48x96" in warnings[0]
    assert "--height 48 --width 96" in warnings[0]


def test_a_checkpoint_without_sizes_exports_at_512x1024(tmp_path):
    from lrnnet.export.onnx import default_export_size
    from lrnnet.models import build_model, save_checkpoint

    path = tmp_path / "bare.pth"
    save_checkpoint(path, build_model({"num_classes": 19}))
    assert checkpoint_sizes(path) == {} and default_export_size(path) == (512, 1024)


def test_after_a_resume_at_another_size_the_summary_gives_each_checkpoints_own_size(small_run, tmp_path, capsys):
    from lrnnet.export.onnx import default_export_size

    capsys.readouterr()
    status = train.main(["--synthetic", "--synthetic-images", "4", "--size", "64x128", "--crop", "32x64",
                         "--batch", "2", "--iters", "3", "--resume", str(small_run.parent / "last.pth"),
                         "--out", str(tmp_path / "resumed"), "--device", "cpu", "--threads", "1", "--no-progress"])
    assert status == 0
    out = capsys.readouterr().out
    next_line = next(line for line in out.splitlines() if line.startswith("next: lrnnet-export "))
    checkpoint = next_line.split()[2]
    height, width = default_export_size(checkpoint)
    assert f"lrnnet.onnx at {height}x{width}," in next_line, out
    assert f"({height}x{width}), last" in out and "(64x128)" in out, out
