"""Shared fixtures: tiny synthetic Cityscapes trees, videos, checkpoints and exports made by the tests themselves."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("LRNNET_NO_PROGRESS", "1")
# One torch thread: on 2 shared cores, two OpenMP threads spinning beside ONNX Runtime's pool ran
# 7-10x slower than one (measured while building); the suite's figures are not speed figures anyway.
torch.set_num_threads(1)

# Fixtures owned by each stage live in their own module beside this file.
sys.path.insert(0, str(Path(__file__).parent))
from fixtures_export import *
from fixtures_train import *


@pytest.fixture
def fresh_log_handler():
    """setup_logging binds the stderr of the first command; give each test's command its own (capsys)."""
    from lrnnet.log import logger

    saved = logger.handlers[:]
    logger.handlers.clear()
    yield
    logger.handlers[:] = saved


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small Cityscapes-layout tree: 8 train and 4 val scenes at 128x256, two cities."""
    from lrnnet.data.synthetic import write_synthetic_cityscapes

    return write_synthetic_cityscapes(tmp_path_factory.mktemp("cityscapes"), size=(128, 256),
                                      counts={"train": 8, "val": 4}, cities=2, seed=0)


@pytest.fixture(scope="session")
def synthetic_video(tmp_path_factory) -> Path:
    """A 12-frame 128x256 mp4 street video."""
    from lrnnet.data.synthetic import write_synthetic_video

    return write_synthetic_video(tmp_path_factory.mktemp("video") / "street.mp4", size=(128, 256), frames=12)
