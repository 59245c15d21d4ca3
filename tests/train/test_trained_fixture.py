"""The `trained_checkpoint` fixture: it segments unseen scenes well above chance, and it exports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lrnnet.data.cityscapes import CityscapesDataset
from lrnnet.eval import evaluate
from lrnnet.models import load_checkpoint

sys.path.insert(0, str(Path(__file__).parent))  # the helpers live beside this file
from train_helpers import majority_class_miou


@pytest.mark.slow
def test_trained_checkpoint_beats_chance_on_scenes_it_never_saw(trained_run, synthetic_root):
    from lrnnet.runtime.torch_runner import TorchRunner

    # conftest's synthetic_root is drawn with another scene seed than the fixture's training tree.
    chance = majority_class_miou(synthetic_root)
    assert trained_run.miou > max(0.25, 4 * majority_class_miou(trained_run.root))
    with TorchRunner(checkpoint=trained_run.checkpoint, size=trained_run.size, device="cpu") as runner:
        report = evaluate(runner, CityscapesDataset(synthetic_root, "val"))
    assert report.miou > max(0.25, 4 * chance), (report.miou, chance)


@pytest.mark.slow
def test_trained_checkpoint_exports_and_keeps_its_accuracy(trained_run, synthetic_root, tmp_path):
    from lrnnet.export import ExportOptions, export_checkpoint
    from lrnnet.runtime import open_runner
    from lrnnet.runtime.torch_runner import TorchRunner

    height, width = trained_run.size
    report = export_checkpoint(trained_run.checkpoint, tmp_path / "trained.onnx",
                               ExportOptions(height=height, width=width, verify_scenes=1))
    assert report.verification is not None and report.info.model_config == load_checkpoint(
        trained_run.checkpoint).config
    dataset = CityscapesDataset(synthetic_root, "val")
    with open_runner(tmp_path / "trained.onnx", backend="onnxruntime") as onnx_runner:
        exported = evaluate(onnx_runner, dataset).miou
    with TorchRunner(checkpoint=trained_run.checkpoint, size=trained_run.size, device="cpu") as torch_runner:
        reference = evaluate(torch_runner, dataset).miou
    assert exported == pytest.approx(reference, abs=0.005)
