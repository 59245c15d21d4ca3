"""lrnnet-eval end to end: a .pth and its ONNX export on the synthetic val split, and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lrnnet.cli.eval import main
from lrnnet.data import CityscapesDataset
from lrnnet.eval import evaluate, open_at_size


def test_pth_and_onnx_of_the_same_weights_score_the_same(tiny_checkpoint, tiny_onnx, synthetic_root):
    dataset = CityscapesDataset(synthetic_root, "val")
    with open_at_size(tiny_onnx) as onnx_runner:
        onnx_report = evaluate(onnx_runner, dataset)
    with open_at_size(tiny_checkpoint, onnx_report.input_size, device="cpu") as torch_runner:
        torch_report = evaluate(torch_runner, dataset)
    assert (onnx_report.backend, torch_report.backend) == ("onnxruntime", "torch")
    assert torch_report.input_size == onnx_report.input_size == (128, 256)
    torch_cm, onnx_cm = torch_report.confusion.matrix, onnx_report.confusion.matrix
    # Not a trivial prediction: several classes are predicted (columns with pixels).
    assert np.count_nonzero(torch_cm.sum(0)) >= 3
    # The same weights: at most a few argmax ties flip between float32 backends.
    assert np.abs(torch_cm - onnx_cm).sum() <= 0.002 * torch_cm.sum()
    assert onnx_report.miou == pytest.approx(torch_report.miou, abs=2e-3)


def test_compare_prints_the_drop_table_and_writes_json(tiny_checkpoint, tiny_onnx, synthetic_root, tmp_path,
                                                       capsys):
    out = tmp_path / "compare.json"
    preds = tmp_path / "preds"
    rc = main(["--compare", str(tiny_checkpoint), str(tiny_onnx), "--data", str(synthetic_root), "--device", "cpu",
               "--json", str(out), "--save-predictions", str(preds), "--limit", "2"])
    assert rc == 0
    stdout = capsys.readouterr().out
    table = stdout[stdout.index("vs ref"):].splitlines()
    assert table[1].startswith(str(tiny_checkpoint)) and " ref " in table[1]
    assert table[2].startswith(str(tiny_onnx)) and "onnxruntime" in table[2]
    data = json.loads(out.read_text())
    assert data["reference"] == str(tiny_checkpoint)
    torch_report, onnx_report = data["reports"]
    # Without --size the .pth runs at the static export's size, so the two are comparable.
    assert torch_report["input_size"] == onnx_report["input_size"] == [128, 256]
    assert [r["backend"] for r in data["reports"]] == ["torch", "onnxruntime"]
    assert data["drops"][0]["miou_drop"] == 0.0
    assert data["drops"][1]["miou_drop"] == pytest.approx(torch_report["miou"] - onnx_report["miou"])
    assert abs(data["drops"][1]["miou_drop"]) < 2e-3
    assert 0.0 <= onnx_report["miou"] <= 1.0 and onnx_report["images"] == 2
    assert sorted(p.name for p in preds.iterdir()) == [".lrnnet-output", "0_tiny", "1_lrnnet"]  # committed as one folder
    assert len(list((preds / "1_lrnnet").glob("*_pred_labelIds.png"))) == 2


def test_single_model_prints_the_class_table(tiny_onnx, synthetic_root, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["--model", str(tiny_onnx), "--data", str(synthetic_root), "--json", str(out), "--limit", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "sidewalk" in stdout and "mIoU" in stdout
    data = json.loads(out.read_text())
    assert data["backend"] == "onnxruntime" and data["precision"] == "fp32" and data["images"] == 1
    assert set(data) >= {"miou", "per_class_iou", "pixel_accuracy", "confusion_matrix", "device", "model"}


def _bad(argv, capsys) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("lrnnet-eval: error: "), err
    return err[0]


def test_bad_inputs_are_one_line_and_exit_2(tiny_checkpoint, tiny_onnx, synthetic_root, tmp_path, capsys):
    data = str(synthetic_root)
    assert "does not exist" in _bad(["--model", str(tmp_path / "missing.onnx"), "--data", data], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images" in _bad(["--model", str(tiny_onnx), "--data", str(empty)], capsys)
    assert "does not exist" in _bad(["--model", str(tiny_onnx), "--data", str(tmp_path / "nowhere")], capsys)
    assert "HEIGHTxWIDTH" in _bad(["--model", str(tiny_onnx), "--data", data, "--size", "big"], capsys)
    assert "multiples" in _bad(["--model", str(tiny_checkpoint), "--data", data, "--size", "100x100"], capsys)
    assert "--dynamic" in _bad(["--model", str(tiny_onnx), "--data", data, "--size", "64x128"], capsys)
    assert "at least two" in _bad(["--compare", str(tiny_onnx), "--data", data], capsys)
    not_a_model = tmp_path / "model.onnx"
    not_a_model.write_text("not onnx")
    _bad(["--model", str(not_a_model), "--data", data], capsys)
    assert not (tmp_path / "report.json").exists()


def test_a_split_without_labelled_pixels_is_exit_2_for_model_and_compare(tiny_checkpoint, tiny_onnx, synthetic_root,
                                                                       tmp_path, capsys):
    import shutil

    import cv2

    root = tmp_path / "cs"
    shutil.copytree(synthetic_root / "leftImg8bit" / "val", root / "leftImg8bit" / "val")
    for label in synthetic_root.glob("gtFine/val/*/*_gtFine_labelIds.png"):
        unlabelled = root / label.relative_to(synthetic_root)
        unlabelled.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(unlabelled), np.zeros_like(cv2.imread(str(label), cv2.IMREAD_UNCHANGED)))  # 0: unlabeled
    data = str(root)
    for models in (["--model", str(tiny_onnx)], ["--compare", str(tiny_checkpoint), str(tiny_onnx)]):
        rc = main([*models, "--data", data, "--device", "cpu", "--limit", "1"])
        last_line = capsys.readouterr().err.strip().splitlines()[-1]  # after the runner's own info lines
        assert rc == 2 and last_line.startswith("lrnnet-eval: error: no labelled pixels in the split"), last_line


def test_a_pth_runs_at_the_size_it_was_validated_at_unless_size_says_otherwise(tiny_checkpoint, synthetic_root,
                                                                              tmp_path, capsys):
    from lrnnet.eval import common_size
    from lrnnet.models import load_checkpoint, save_checkpoint

    validated = tmp_path / "validated.pth"
    save_checkpoint(validated, load_checkpoint(tiny_checkpoint), sizes={"val_size": [64, 128]})
    report = tmp_path / "report.json"
    for extra, size, why in (([], [64, 128], "the size validated.pth was validated at"),
                             (["--size", "128x256"], [128, 256], "--size")):
        assert main(["--model", str(validated), "--data", str(synthetic_root), "--device", "cpu", "--limit", "1",
                     "--json", str(report), *extra]) == 0
        assert f"input {size[0]}x{size[1]} ({why})" in capsys.readouterr().out
        assert json.loads(report.read_text())["input_size"] == size
        report.unlink()
    # lrnnet-export's default for a checkpoint recording no size, through the same helper
    assert common_size([tiny_checkpoint]) == ((512, 1024), "tiny.pth records no validation size")


def test_fp16_is_refused_where_it_cannot_apply_naming_the_option(tiny_checkpoint, tiny_onnx, synthetic_root,
                                                                 capsys):
    data = str(synthetic_root)
    assert "--fp16 is for the torch backend (a .pth); an onnxruntime model's precision lives in its graph" in \
        _bad(["--model", str(tiny_onnx), "--data", data, "--fp16"], capsys)
    rc = main(["--model", str(tiny_checkpoint), "--data", data, "--fp16", "--device", "cpu"])
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "on the CPU run FP32: drop --fp16" in last_line, last_line


def test_a_file_for_data_and_a_folder_for_model_are_named_as_such(tiny_onnx, synthetic_root, tmp_path, capsys):
    assert _bad(["--model", str(tiny_onnx), "--data", str(tiny_onnx)], capsys).endswith(
        f"Cityscapes root {tiny_onnx} is a file, not a folder")
    assert _bad(["--model", str(tmp_path), "--data", str(synthetic_root)], capsys).endswith(
        f"model file {tmp_path} is a directory, not a file")


def test_save_predictions_replaces_only_its_own_folder_and_never_an_input(tiny_onnx, synthetic_root, tmp_path,
                                                                          capsys):
    """The predictions folder is one output, replaced as a whole: a rerun replaces lrnnet's own, while a folder of
    someone else's files, or one holding an input (the model), is refused before anything runs."""
    import shutil

    preds = tmp_path / "preds"
    argv = ["--model", str(tiny_onnx), "--data", str(synthetic_root), "--limit", "1", "--save-predictions"]
    for _ in range(2):
        assert main([*argv, str(preds)]) == 0
    assert len(list(preds.glob("*_pred_labelIds.png"))) == 1
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main([*argv, str(theirs)]) == 2
    assert "holds files lrnnet did not write" in capsys.readouterr().err
    model = shutil.copy(tiny_onnx, preds / "m.onnx")
    assert main(["--model", str(model), *argv[2:], str(preds)]) == 2
    assert "holds the input" in capsys.readouterr().err
    assert (theirs / "notes.txt").read_text() == "mine" and (preds / "m.onnx").is_file()


def test_compare_refuses_a_model_of_other_classes_before_evaluating_any(tiny_checkpoint, synthetic_root, tmp_path,
                                                                         capsys):
    import torch

    from lrnnet.models import LRNNet, save_checkpoint

    torch.manual_seed(0)
    five = tmp_path / "five.pth"
    save_checkpoint(five, LRNNet(num_classes=5).eval(), epoch=0, metrics={})
    preds = tmp_path / "preds"
    rc = main(["--compare", str(tiny_checkpoint), str(five), "--data", str(synthetic_root), "--device", "cpu",
               "--size", "64x128", "--save-predictions", str(preds), "--json", str(tmp_path / "out.json"),
               "--no-progress"])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert rc == 2 and len(errors) == 1, captured.err
    assert errors[0].startswith("lrnnet-eval: error: ") and "predicts 5 classes" in errors[0]
    assert captured.out == ""  # the reference was not evaluated first (its result line would be here)
    assert "Evaluating" not in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["five.pth"]
