"""lrnnet-train: bad input is one line and exit status 2; a tiny real run prints where everything went."""

from __future__ import annotations

import pytest
import torch

from lrnnet.cli.train import main


def _run(argv, capsys):
    status = main(["--no-progress", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _one_error_line(err: str, message: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrnnet-train: error:") and message in lines[0], err


@pytest.mark.parametrize("argv,message", [
    ([], "no training data: give --data ROOT"),
    (["--data", "{tmp}/missing"], "is not a directory"),
    (["--data", "{tmp}"], "is not a Cityscapes tree"),  # a folder with the wrong layout
    (["--synthetic", "--size", "64x128", "--crop", "128x256"], "larger than the training size 64x128"),
    (["--synthetic", "--crop", "100x200"], "multiples of the model's stride 8"),
    (["--synthetic", "--resume", "{tmp}/none.pth"], "no such checkpoint"),
    (["--synthetic", "--amp", "--device", "cpu"], "--amp"),
    (["--synthetic", "--seed", "-1"], "--seed must be an integer from 0 to 4294967295"),
    (["--synthetic", "--scale-range", "1000", "1000"], "over the bound of 8192 a side"),
    (["--synthetic", "--synthetic-images", "4", "--batch", "8"], "--synthetic-images 4 is fewer than --batch 8"),
])
def test_bad_input_is_one_line_and_status_2(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    status, _, err = _run([*argv, "--out", str(tmp_path / "out")], capsys)
    assert status == 2
    _one_error_line(err, message)
    assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.mark.parametrize("argv,message", [
    (["--synthetic", "--crop", "64"], "size must be HEIGHTxWIDTH"),
    (["--synthetic", "--epochs", "2", "--iters", "3"], "not allowed with argument"),
    (["--synthetic", "--batch", "0"], "expected a positive integer"),
])
def test_usage_errors_are_one_line_and_status_2(argv, message, capsys):
    assert main(argv) == 2
    _one_error_line(capsys.readouterr().err, message)


def test_resuming_a_foreign_checkpoint_is_one_line(tmp_path, capsys):
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3)}, foreign)
    status, _, err = _run(["--synthetic", "--synthetic-images", "2", "--size", "32x64", "--batch", "2",
                           "--out", str(tmp_path / "out"), "--resume", str(foreign)], capsys)
    assert status == 2
    _one_error_line(err, "not an LRNNet state dict")


def test_a_tiny_synthetic_run_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--synthetic", "--synthetic-images", "4", "--size", "32x64", "--batch", "2", "--iters", "2",
            "--out", str(out), "--device", "cpu", "--threads", "1"]
    status, stdout, err = _run(argv, capsys)
    assert status == 0, err
    assert "trained 2 of 2 steps" in stdout and f"lrnnet-export {out / 'best.pth'}" in stdout
    assert "lrnnet.onnx at 32x64" in stdout
    for name in ("best.pth", "last.pth", "log.csv", "steps.csv", "curves.png", "summary.json", "config.json"):
        assert (out / name).is_file(), name
    assert len(list((out / "synthetic" / "leftImg8bit" / "train").rglob("*.png"))) == 4
    # Running again into the same folder must not overwrite the run.
    status, _, err = _run(argv, capsys)
    assert status == 2
    _one_error_line(err, "already holds a training run")


def test_a_diverged_run_is_one_line_status_2_and_leaves_nothing(tmp_path, capsys):
    from lrnnet.train.data import prepare_synthetic

    root = prepare_synthetic(tmp_path / "tree", (32, 64), {"train": 2, "val": 1}, seed=0)
    status, _, err = _run(["--data", str(root), "--size", "32x64", "--batch", "2", "--iters", "2", "--lr", "1e30",
                           "--val-every", "10", "--out", str(tmp_path / "out"), "--device", "cpu", "--threads", "1"],
                          capsys)  # no validation, so no checkpoint before it diverges
    assert status == 2
    errors = [line for line in err.splitlines() if line.startswith("lrnnet-train: error:")]  # after the run's log
    assert errors == err.strip().splitlines()[-1:] and "the run diverged; lower --lr" in errors[0], err
    assert not (tmp_path / "out").exists()
