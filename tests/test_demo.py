"""The README's first command, end to end at a tiny size: every artifact is made and reads back."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    """Through a pipe, as `make demo > demo.log 2>&1` runs it: progress on (no --no-progress), yet no bar."""
    work = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "LRNNET_NO_PROGRESS"}
    result = subprocess.run([str(Path(sys.executable).parent / "lrnnet-demo"), "--workdir", str(work), "--quick"],
                            check=False, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(line.startswith("== Demo finished in") for line in result.stdout.splitlines())
    assert "\r" not in result.stdout + result.stderr, "a progress bar wrote carriage returns into a pipe"
    assert "1 threads" not in result.stdout + result.stderr
    assert result.stderr.count("threads: torch ") == 1  # the thread plan, said once

    accuracy = json.loads((work / "accuracy.json").read_text())
    assert [r["precision"] for r in accuracy["reports"]] == ["fp32", "fp32", "fp16", "int8"]
    assert [r["backend"] for r in accuracy["reports"]] == ["torch", "onnxruntime", "onnxruntime", "onnxruntime"]

    latency = json.loads((work / "latency.json").read_text())
    assert latency["frames"] == 6 and latency["precision"] == "int8"
    capture = cv2.VideoCapture(str(work / "street_seg.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert latency["output_codec"] == "h264"  # what a browser plays

    preview = cv2.imread(str(work / "preview.png"))
    frame = cv2.imread(str(next((work / "cityscapes" / "leftImg8bit" / "val").glob("*/*.png"))))
    assert preview.shape == (frame.shape[0], 3 * frame.shape[1], 3)
    for name in ("lrnnet.onnx", "lrnnet_fp16.onnx", "lrnnet_int8.onnx", "speed.json", "speed_512x1024.json",
                 "run/best.pth"):
        assert (work / name).is_file(), name

    # Again in the same workdir (a second `make demo`): the scenes and the finished training are kept.
    scene = next((work / "cityscapes" / "leftImg8bit" / "train").rglob("*.png"))
    made, trained = scene.stat().st_mtime_ns, (work / "run" / "last.pth").stat().st_mtime_ns
    again = subprocess.run([str(Path(sys.executable).parent / "lrnnet-demo"), "--workdir", str(work), "--quick"],
                           check=False, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "holds this training, finished; skipped" in again.stdout
    assert scene.stat().st_mtime_ns == made and (work / "run" / "last.pth").stat().st_mtime_ns == trained
    assert json.loads((work / "accuracy.json").read_text())["reports"][0]["precision"] == "fp32"


def test_demo_rejects_bad_size(tmp_path):
    result = subprocess.run([str(Path(sys.executable).parent / "lrnnet-demo"), "--workdir", str(tmp_path / "d"),
                             "--size", "100x250"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "multiples of 16" in result.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("argv,message", [
    # 8x8 is a multiple of the stride, but the training crop (half of it) is not
    (["--size", "8x8"], "--size must be multiples of 16 (the demo trains on half-size crops"),
    (["--size", "8192x8192"], "too large for the demo's training at scales 0.75-1.5"),
    (["--cityscapes", "{empty}"], "is not a Cityscapes tree"),
])
def test_demo_refuses_what_a_step_would_refuse_before_writing_anything(argv, message, tmp_path, capsys):
    from lrnnet.cli.demo import main

    (tmp_path / "empty").mkdir()
    argv = [a.replace("{empty}", str(tmp_path / "empty")) for a in argv]
    assert main(["--workdir", str(tmp_path / "d"), "--quick", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lrnnet-demo: error:") and message in err[0], err
    assert not (tmp_path / "d").exists()


def test_a_workdir_of_the_users_own_files_is_refused_and_left_as_it_was(tmp_path, capsys):
    """The demo writes common names (street.mp4, accuracy.json) into its workdir: a folder it did not make was
    written into, its files replaced, exit 0."""
    from lrnnet.cli.demo import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "street.mp4").write_text("my notes")
    assert main(["--workdir", str(mine), "--quick", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"lrnnet-demo: error: --workdir folder {mine} exists and holds files lrnnet did not write; give a "
                   "new or empty folder, or remove it")], err
    assert [p.name for p in mine.iterdir()] == ["street.mp4"] and (mine / "street.mp4").read_text() == "my notes"


def test_a_failed_step_is_the_one_line_of_its_command(tmp_path, capsys, monkeypatch):
    from lrnnet.cli import demo, train

    def failing_train(argv):
        print("lrnnet-train: error: what went wrong", file=sys.stderr)
        return 2

    monkeypatch.setattr(train, "main", failing_train)
    assert demo.main(["--workdir", str(tmp_path / "d"), "--quick", "--no-progress"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if ": error:" in line]
    assert lines == ["lrnnet-train: error: what went wrong"]


def test_quick_presets_give_way_to_explicit_options():
    from lrnnet.cli.demo import QUICK, build_parser, options_from_args
    from lrnnet.demo import DemoOptions

    def options(*argv):
        return options_from_args(build_parser().parse_args(list(argv)))

    explicit = options("--quick", "--size", "128x256", "--train-iters", "1", "--train-images", "4",
                       "--video-frames", "3")
    assert (explicit.size, explicit.train_iters, explicit.train_images, explicit.video_frames) == ((128, 256), 1, 4, 3)
    assert explicit.scene_size == (128, 256) and explicit.batch == QUICK["batch"]  # the rest of --quick stays
    quick = options("--quick")
    assert (quick.size, quick.train_iters, quick.scene_size) == ((64, 128), 4, (64, 128))
    assert options() == DemoOptions()
    assert options("--size", "64x128").scene_size == DemoOptions().scene_size


def test_a_rerun_resumes_or_skips_the_training_and_refuses_another_one(tmp_path):
    from lrnnet.cli import train as train_cli
    from lrnnet.demo import _training_argv
    from lrnnet.errors import InputError
    from lrnnet.train import train
    from lrnnet.train.data import prepare_synthetic

    root = prepare_synthetic(tmp_path / "tree", (32, 64), {"train": 4, "val": 1}, seed=0)
    run = tmp_path / "run"

    def argv_for(iters):
        return ["--data", str(root), "--size", "32x64", "--batch", "2", "--iters", str(iters), "--out", str(run),
                "--device", "cpu", "--threads", "1"]

    argv = argv_for(3)
    assert _training_argv(run, argv) == argv  # nothing there yet
    train(train_cli.config_from_args(train_cli.build_parser().parse_args(argv)), on_step=lambda step, loss: step == 1)
    assert _training_argv(run, argv) == [*argv, "--resume", str(run / "last.pth")]
    assert train_cli.main([*argv, "--resume", str(run / "last.pth"), "--no-progress"]) == 0
    assert _training_argv(run, argv) is None  # finished with these settings
    with pytest.raises(InputError, match=r"holds a training run with other settings \(iters 3 -> 4\)"):
        _training_argv(run, argv_for(4))


@pytest.mark.slow
def test_demo_on_a_given_cityscapes_tree_uses_its_demo_video(tmp_path):
    from lrnnet.cli.demo import main
    from lrnnet.data import write_synthetic_cityscapes, write_synthetic_demo_video

    root = write_synthetic_cityscapes(tmp_path / "cityscapes", size=(64, 128), counts={"train": 6, "val": 2})
    write_synthetic_demo_video(root, "seq_00", size=(64, 128), frames=9)
    work = tmp_path / "demo"
    assert main(["--cityscapes", str(root), "--workdir", str(work), "--quick", "--no-progress"]) == 0
    latency = json.loads((work / "latency.json").read_text())
    assert latency["source_type"] == "images" and latency["frames"] == 6  # --quick caps the video at 6 frames
    assert not (work / "cityscapes").exists() and not (work / "street.mp4").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_only_on_a_terminal(monkeypatch):
    from lrnnet import log

    monkeypatch.setattr(log, "_progress_enabled", True)
    for stream, bar_expected in ((_Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert list(log.progress(range(3), desc="Working", total=3)) == [0, 1, 2]
        bar = log.progress_bar("Working", total=2)
        bar.update(2)
        bar.close()
        assert ("\r" in stream.getvalue()) == bar_expected, stream.getvalue()
    monkeypatch.setattr(log, "_progress_enabled", False)  # --no-progress / LRNNET_NO_PROGRESS=1 win on a terminal
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(log.progress(range(3), desc="Working")) == [0, 1, 2]
    assert terminal.getvalue() == ""


@pytest.mark.parametrize("command", ["demo", "train", "export", "build_engine", "eval", "infer", "bench"])
def test_help_says_each_default_once(command, capsys):
    """--help of every command: no '(default: None)', no flag's '(default: False)', no default said twice."""
    import importlib
    import re

    module = importlib.import_module(f"lrnnet.cli.{command}")
    assert module.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text and "(default: True)" not in text
    options = re.split(r" (?=-{1,2}[a-z])", text)  # roughly one chunk per option
    twice = [chunk for chunk in options if chunk.count("default") > 1 and "(default: " in chunk]
    assert not twice, twice
