"""The README's first command, end to end at a tiny size: every artifact is made and reads back."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    work = tmp_path / "demo"
    result = subprocess.run([str(Path(sys.executable).parent / "lrnnet-demo"), "--workdir", str(work), "--quick",
                             "--no-progress"], check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Demo finished" in result.stdout

    accuracy = json.loads((work / "accuracy.json").read_text())
    assert [r["precision"] for r in accuracy["reports"]] == ["fp32", "fp32", "fp16", "int8"]
    assert [r["backend"] for r in accuracy["reports"]] == ["torch", "onnxruntime", "onnxruntime", "onnxruntime"]

    latency = json.loads((work / "latency.json").read_text())
    assert latency["frames"] == 6 and latency["precision"] == "int8"
    capture = cv2.VideoCapture(str(work / "street_seg.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6

    preview = cv2.imread(str(work / "preview.png"))
    frame = cv2.imread(str(next((work / "cityscapes" / "leftImg8bit" / "val").glob("*/*.png"))))
    assert preview.shape == (frame.shape[0], 3 * frame.shape[1], 3)
    for name in ("lrnnet.onnx", "lrnnet_fp16.onnx", "lrnnet_int8.onnx", "speed.json", "speed_512x1024.json",
                 "run/best.pth"):
        assert (work / name).is_file(), name


def test_demo_rejects_bad_size(tmp_path):
    result = subprocess.run([str(Path(sys.executable).parent / "lrnnet-demo"), "--workdir", str(tmp_path / "d"),
                             "--size", "100x250"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "multiples of 8" in result.stderr
    assert not (tmp_path / "d").exists()


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
