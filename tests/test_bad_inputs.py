"""The newcomer's audit (issue 11): every command, given bad input, prints one line, exits 2, writes nothing."""

from __future__ import annotations

import importlib

import pytest

CASES = {
    "export missing checkpoint": ("export", ["{tmp}/missing.pth", "-o", "{tmp}/out.onnx"], "not found"),
    "export text file as checkpoint": ("export", ["{tmp}/junk.pth", "-o", "{tmp}/out.onnx"], "not a torch.save file"),
    "export zero height": ("export", ["{tmp}/junk.pth", "--height", "0", "-o", "{tmp}/out.onnx"], "positive integer"),
    "build missing onnx": ("build_engine", ["--fp16", "--onnx", "{tmp}/missing.onnx", "-o", "{tmp}/out.onnx"],
                           "does not exist"),
    "build truncated onnx": ("build_engine", ["--fp16", "--onnx", "{tmp}/trunc.onnx", "-o", "{tmp}/out.onnx"],
                             "truncated or corrupt"),
    "build int8 without calibration": ("build_engine", ["--int8", "--onnx", "{onnx}", "-o", "{tmp}/out.onnx"],
                                       "--calib-data"),
    "build int8 on an empty folder": ("build_engine", ["--int8", "--onnx", "{onnx}", "--calib-data", "{tmp}/empty",
                                                       "-o", "{tmp}/out.onnx"], "not a Cityscapes tree"),
    "infer missing video": ("infer", ["{tmp}/missing.mp4", "--model", "{onnx}", "-o", "{tmp}/out.mp4"], "does not exist"),
    "infer text file as video": ("infer", ["{tmp}/junk.mp4", "--model", "{onnx}", "-o", "{tmp}/out.mp4"],
                                 "not a video"),
    "infer foreign onnx": ("infer", ["{video}", "--model", "{tmp}/trunc.onnx", "-o", "{tmp}/out.mp4"], "ONNX"),
    "eval empty data folder": ("eval", ["--model", "{onnx}", "--data", "{tmp}/empty", "--json", "{tmp}/out.json"],
                               "not a Cityscapes tree"),
    "bench static onnx at another size": ("bench", ["--model", "{onnx}", "--height", "64", "--width", "64",
                                                    "--json", "{tmp}/out.json"], "--dynamic"),
    "train empty data folder": ("train", ["--data", "{tmp}/empty", "--iters", "1", "--out", "{tmp}/out"],
                                "not a Cityscapes tree"),
    "train crop not a multiple of the stride": ("train", ["--synthetic", "--crop", "7x7", "--iters", "1",
                                                          "--out", "{tmp}/out"], "stride"),
    "demo missing cityscapes": ("demo", ["--cityscapes", "{tmp}/nowhere", "--workdir", "{tmp}/out"], "not a folder"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_exit_2_and_no_output(case, tmp_path, tiny_onnx, synthetic_video, capsys):
    command, argv, expected = CASES[case]
    (tmp_path / "junk.pth").write_text("not a model")
    (tmp_path / "junk.mp4").write_text("not a video")
    (tmp_path / "trunc.onnx").write_bytes(tiny_onnx.read_bytes()[:1000])
    (tmp_path / "empty").mkdir()
    before = set(tmp_path.iterdir())
    values = {"tmp": tmp_path, "onnx": tiny_onnx, "video": synthetic_video}

    status = importlib.import_module(f"lrnnet.cli.{command}").main([a.format(**values) for a in argv])

    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert status == 2, err
    assert len(error_lines) == 1 and expected in error_lines[0], err
    assert "Traceback" not in err
    assert set(tmp_path.iterdir()) == before  # nothing written, not even a temporary file
