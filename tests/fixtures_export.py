"""Fixtures of the export stage: a tiny checkpoint and its ONNX export (owned by the export engineer).

* ``tiny_checkpoint``: a training-format checkpoint (``{"model", "model_config", ...}``) of a
  seeded, randomly initialised LRNNet (19 classes, default config) whose BatchNorm statistics were
  set on synthetic street scenes, so activations have a trained net's scale (an untouched random
  net in eval mode drifts block after block and its argmax is nearly constant).
* ``tiny_onnx``: its verified FP32 export at 128x256, batch 1, static shape, logits output
  (what ``lrnnet-export tiny.pth --height 128 --width 256`` writes).
* ``in_graph_onnx``: the same checkpoint with ``--dynamic --preprocess-in-graph --argmax``
  (unsimplified, unverified).

All are session-scoped and read-only for the tests that use them: copy before modifying.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TINY_SIZE = (128, 256)  # (height, width) of the tiny export; a multiple of LRNNet's stride 8


def _calibrated_tiny_model():
    import numpy as np
    import torch

    from lrnnet.data.preprocess import preprocess_batch
    from lrnnet.data.synthetic import SceneLayout, render_scene
    from lrnnet.models import LRNNet

    sys.path.insert(0, str(Path(__file__).parent / "models"))
    from model_helpers import calibrate_batchnorm

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    frames = [render_scene(SceneLayout.random(rng), TINY_SIZE)[0] for _ in range(2)]
    return calibrate_batchnorm(LRNNet(num_classes=19), [torch.from_numpy(preprocess_batch(frames, TINY_SIZE))])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A training-format checkpoint of a seeded random LRNNet with calibrated BatchNorm."""
    from lrnnet.models import save_checkpoint

    path = tmp_path_factory.mktemp("tiny_checkpoint") / "tiny.pth"
    save_checkpoint(path, _calibrated_tiny_model(), epoch=0, metrics={})
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    """The verified FP32 ONNX export of ``tiny_checkpoint`` at 128x256 (static, batch 1, logits)."""
    from lrnnet.export import ExportOptions, export_checkpoint

    path = tmp_path_factory.mktemp("tiny_onnx") / "lrnnet.onnx"
    # One street scene, a gradient and a checkerboard verify it (the CLI's default is three scenes).
    export_checkpoint(tiny_checkpoint, path, ExportOptions(height=TINY_SIZE[0], width=TINY_SIZE[1], verify_scenes=1))
    return path


@pytest.fixture(scope="session")
def in_graph_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    """tiny_checkpoint exported with preprocessing and argmax in the graph and dynamic shapes (README's example).

    One export covers three runner paths: uint8 NHWC BGR input, int32 labels output, no fixed batch.
    Not simplified or verified (the export stage tests that), to keep it a few seconds.
    """
    from lrnnet.export import ExportOptions, export_checkpoint

    path = tmp_path_factory.mktemp("in_graph_onnx") / "lrnnet_in_graph.onnx"
    export_checkpoint(tiny_checkpoint, path, ExportOptions(height=TINY_SIZE[0], width=TINY_SIZE[1], dynamic=True,
                                                           preprocess_in_graph=True, argmax=True, simplify=False,
                                                           verify=False))
    return path
