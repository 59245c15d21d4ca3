"""Fixtures of the runtime tests: an export variant with preprocessing and argmax in the graph."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The helpers live beside this file.
sys.path.insert(0, str(Path(__file__).parent))
from runtime_helpers import TINY_SIZE


@pytest.fixture(scope="session")
def in_graph_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    """tiny_checkpoint exported with preprocessing and argmax in the graph and dynamic shapes.

    One export covers three runner paths: uint8 NHWC BGR input, int32 labels output, no fixed batch.
    Not simplified or verified (the export stage tests that), to keep it a few seconds.
    """
    from lrnnet.export import ExportOptions, export_checkpoint

    path = tmp_path_factory.mktemp("in_graph_onnx") / "lrnnet_in_graph.onnx"
    export_checkpoint(tiny_checkpoint, path, ExportOptions(height=TINY_SIZE[0], width=TINY_SIZE[1], dynamic=True,
                                                           preprocess_in_graph=True, argmax=True, simplify=False,
                                                           verify=False))
    return path
