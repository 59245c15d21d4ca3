"""Fixtures of the training stage: a checkpoint trained briefly on synthetic scenes (owned by the training engineer).

`trained_checkpoint` is a real lrnnet-train checkpoint of the full LRNNet, trained on CPU on synthetic
street scenes (128x256 images, 64x128 random crops) until it segments unseen synthetic scenes clearly
better than chance; the accuracy tests of FP16/INT8 exports use it, because precision losses only
show on a model that has learned something. `trained_run` gives the details (tree, size, mIoU).

The training is the one expensive fixture of the suite (well under a minute on 2 idle cores), so its
result is kept in pytest's cache directory, keyed by a hash of the code that determines the weights
(lrnnet/models, lrnnet/train, lrnnet/data) and the recipe below; LRNNET_TRAIN_FIXTURE_CACHE=0 turns
the cache off.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["TrainedRun", "trained_checkpoint", "trained_run"]

# The recipe: scenes seeded 1, so the conftest `synthetic_root` (seed 0) holds scenes it never saw.
TRAINED_SIZE = (128, 256)
_RECIPE = {
    "size": TRAINED_SIZE, "crop": (64, 128), "scale_range": (0.75, 1.5), "iters": 100, "batch": 8, "lr": 5e-3,
    "synthetic_train": 32, "synthetic_val": 8, "synthetic_seed": 1, "seed": 0,
    # One thread: on 2 cores shared with other processes, two spinning OpenMP threads are ~10x slower.
    "threads": 1,
}
_CODE_DIRS = ("models", "train", "data")


@dataclass(frozen=True)
class TrainedRun:
    checkpoint: Path  # the final checkpoint (last.pth == best.pth: validated once, at the end)
    root: Path  # the synthetic Cityscapes tree it was trained on (train split) and validated on (val split)
    size: tuple[int, int]  # (height, width) it was trained and validated at; export it at this size
    miou: float  # validation mIoU (fraction) measured by lrnnet.eval at `size` on root's val split


def _code_key() -> str:
    import torch

    import lrnnet

    package = Path(lrnnet.__file__).parent
    digest = hashlib.sha256(json.dumps(_RECIPE, sort_keys=True).encode() + torch.__version__.encode())
    for folder in _CODE_DIRS:
        for path in sorted((package / folder).rglob("*.py")):
            digest.update(path.relative_to(package).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _train(out: Path) -> TrainedRun:
    from lrnnet.train import TrainConfig, train

    config = TrainConfig(synthetic=True, out=out, val_every=10**6, **_RECIPE)  # validate at the end only
    result = train(config)
    run = TrainedRun(checkpoint=result.last, root=result.data_root, size=TRAINED_SIZE, miou=result.final_miou)
    (out / "fixture.json").write_text(json.dumps({"miou": run.miou}))
    return run


@pytest.fixture(scope="session")
def trained_run(request, tmp_path_factory) -> TrainedRun:
    """A trained LRNNet (see the module docstring); ~100 iterations on CPU, cached across sessions."""
    use_cache = os.environ.get("LRNNET_TRAIN_FIXTURE_CACHE", "1") not in ("0", "")
    if not use_cache or getattr(request.config, "cache", None) is None:  # also under -p no:cacheprovider
        return _train(tmp_path_factory.mktemp("trained") / "run")
    cached = Path(request.config.cache.mkdir("lrnnet-trained")) / _code_key()
    marker = cached / "fixture.json"
    if marker.is_file() and (cached / "last.pth").is_file():
        miou = json.loads(marker.read_text())["miou"]
        return TrainedRun(checkpoint=cached / "last.pth", root=cached / "synthetic", size=TRAINED_SIZE, miou=miou)
    staging = tmp_path_factory.mktemp("trained") / "run"
    _train(staging)
    # Publish whole or not at all; if a concurrent session published first, use its copy.
    partial = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
    shutil.copytree(staging, partial)
    try:
        os.replace(partial, cached)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    for stale in cached.parent.iterdir():  # runs of older code: ~10 MB each, never valid again
        if stale.name != cached.name and not stale.name.endswith(".tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    miou = json.loads(marker.read_text())["miou"]
    return TrainedRun(checkpoint=cached / "last.pth", root=cached / "synthetic", size=TRAINED_SIZE, miou=miou)


@pytest.fixture(scope="session")
def trained_checkpoint(trained_run: TrainedRun) -> Path:
    """Path of a trained LRNNet checkpoint (lrnnet-train format; `trained_run` has its size and mIoU)."""
    return trained_run.checkpoint
