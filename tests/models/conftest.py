"""Fixtures of the model tests: an LRNNet whose activations look trained."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lrnnet.models import LRNNet

# The helpers live beside this file, importable by the tests and by benchmarks/bench_svn.py.
sys.path.insert(0, str(Path(__file__).parent))
from model_helpers import calibrate_batchnorm, street_like_batch


@pytest.fixture(scope="module")
def trained_like_model() -> LRNNet:
    """LRNNet (seeded random weights, BatchNorm calibrated on street-like images), eval mode."""
    torch.manual_seed(0)
    model = LRNNet(num_classes=19, svd="exact")
    return calibrate_batchnorm(model, [street_like_batch(2, 256, 512, seed=s) for s in (1, 2)])
