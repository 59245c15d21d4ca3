"""The options of a training run: one dataclass, validated once, with the paper's recipe as defaults.

Where the defaults come from (README.md, "Training", says the same):

* From the LRNNet paper (arXiv 2006.02706): trained from scratch (no ImageNet pre-training) on
  Cityscapes' fine annotations only, at 512x1024 input (the resolution of its 71 FPS figure).
* From its peers, where the retrievable text of the paper is silent (ERFNet, LEDNet, whose
  encoder LRNNet builds on, and the common real-time segmentation recipe): Adam, initial learning
  rate 5e-4, weight decay 1e-4, poly schedule with power 0.9 per iteration, batch 8, random scale
  0.5-2.0, random crop at the training size, horizontal flip, cross-entropy with ignore index 255,
  no class weighting and no OHEM.
* Our choices: everything about --synthetic (scene counts, 128x256 size, epochs), and the
  checkpoint/log layout.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lrnnet.errors import InputError
from lrnnet.limits import MAX_PIXELS, MAX_SIDE, PIXELS_IN_ALL
from lrnnet.models import LRNNet
from lrnnet.runtime.latency import PAPER_INPUT_SIZE

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_SYNTHETIC_EPOCHS",
    "OPTIMIZERS",
    "SYNTHETIC_SIZE",
    "TrainConfig",
    "check_training_sizes",
    "scaled_size",
]

OPTIMIZERS = ("adam", "sgd")
DEFAULT_EPOCHS = 200  # real data; ERFNet trains 150 epochs, LEDNet/LRNNet-style recipes a few hundred
SYNTHETIC_SIZE = (128, 256)  # small enough for a few minutes on 2 CPU cores
DEFAULT_SYNTHETIC_EPOCHS = 30
DEFAULT_SYNTHETIC_TRAIN = 48
DEFAULT_SYNTHETIC_VAL = 12
MAX_SEED = 2**32 - 1  # numpy's and torch's seeds alike; the common range of seeds
# L2 weight decay is a small fraction of the weights (1e-4 here, 1e-2 at most in the peers): from 1
# on it outweighs the loss's gradient and the model learns nothing, whatever the data.
MAX_WEIGHT_DECAY = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Build it, then call `.resolved()` once at the edge.

    `size` is the resolution the network works at: every image is first resized to it (as inference
    does), validation runs at it, and the export of the checkpoint should use it. `crop` is the
    training crop taken after random scaling (default: `size`). Give `epochs` or `iters`, not both;
    an epoch is one pass over the training split in full batches.
    """

    data: Path | None = None
    synthetic: bool = False
    out: Path = Path("runs/lrnnet")
    size: tuple[int, int] | None = None  # None: 512x1024 (paper) for real data, 128x256 for --synthetic
    crop: tuple[int, int] | None = None  # None: = size
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    epochs: int | None = None
    iters: int | None = None
    batch: int = 8
    optimizer: str = "adam"
    lr: float = 5e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only
    poly_power: float = 0.9
    resume: Path | None = None
    device: str | None = None  # None: cuda when available, else cpu
    amp: bool = False
    seed: int = 0
    workers: int = 0
    threads: int | None = None  # torch intra-op threads for the run (None: torch's default)
    val_every: int = 1  # epochs between validations (the last epoch is always validated)
    val_batch: int = 1
    model_options: dict[str, Any] = field(default_factory=dict)  # LRNNet keyword options (svd, ...)
    num_classes: int = 19
    synthetic_train: int = DEFAULT_SYNTHETIC_TRAIN
    synthetic_val: int = DEFAULT_SYNTHETIC_VAL
    synthetic_seed: int = 0  # of the scenes, independent of the training seed
    deterministic: bool = True

    # -- derived values ------------------------------------------------------------------------------

    @property
    def train_size(self) -> tuple[int, int]:
        if self.size is None:
            return SYNTHETIC_SIZE if self.synthetic else PAPER_INPUT_SIZE
        return self.size

    @property
    def train_crop(self) -> tuple[int, int]:
        return self.crop if self.crop is not None else self.train_size

    @property
    def synthetic_root(self) -> Path | None:
        """Where --synthetic writes its scenes: --data if given, else OUT/synthetic."""
        if not self.synthetic:
            return None
        return self.data if self.data is not None else self.out / "synthetic"

    @property
    def data_root(self) -> Path:
        root = self.synthetic_root if self.synthetic else self.data
        assert root is not None  # resolved() guarantees it
        return root

    def resolved(self) -> TrainConfig:
        """Check every option once; returns the config with the device and epochs filled in."""
        if self.data is None and not self.synthetic:
            raise InputError("no training data: give --data ROOT (a Cityscapes tree) or --synthetic")
        if self.data is not None and not self.synthetic and not Path(self.data).is_dir():
            raise InputError(f"--data {self.data} is not a directory (expected a Cityscapes tree with "
                             "leftImg8bit/ and gtFine/)")
        size, crop = self.train_size, self.train_crop
        check_training_sizes(size, crop, self.scale_range)
        if self.epochs is not None and self.iters is not None:
            raise InputError("give --epochs or --iters, not both")
        for name in ("epochs", "iters", "batch", "val_every", "val_batch", "synthetic_train", "synthetic_val"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InputError(f"--threads must be a positive integer, got {self.threads!r}")
        if self.workers < 0:
            raise InputError(f"--workers must be >= 0, got {self.workers}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.weight_decay < MAX_WEIGHT_DECAY:
            raise InputError(f"--weight-decay must be >= 0 and below {MAX_WEIGHT_DECAY:g} (1e-4 is the recipe's), "
                             f"got {self.weight_decay}")
        if self.poly_power < 0:
            raise InputError(f"the poly power must be >= 0, got {self.poly_power}")
        for name in ("seed", "synthetic_seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= MAX_SEED:
                raise InputError(f"--{name.replace('_', '-')} must be an integer from 0 to {MAX_SEED}, got {value!r}")
        device = self._resolve_device()
        if self.amp and device == "cpu":
            raise InputError("--amp (FP16 mixed precision) needs --device cuda; train FP32 on the CPU")
        if self.resume is not None and not Path(self.resume).is_file():
            raise InputError(f"--resume {self.resume}: no such checkpoint file")
        epochs = self.epochs
        if epochs is None and self.iters is None:
            epochs = DEFAULT_SYNTHETIC_EPOCHS if self.synthetic else DEFAULT_EPOCHS
        return replace(self, device=device, epochs=epochs, size=size, crop=crop,
                       data=None if self.data is None else Path(self.data), out=Path(self.out),
                       resume=None if self.resume is None else Path(self.resume))

    def _resolve_device(self) -> str:
        import torch

        device = self.device
        if device is None:
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device != "cpu" and not device.startswith("cuda"):
            raise InputError(f"--device must be cpu or cuda[:N], got {device!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"--device {device} asked for, but this PyTorch sees no CUDA GPU "
                             "(CPU build of torch or no driver); use --device cpu")
        return device

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings, tuples as lists): stored in checkpoints and the run's config.json."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out


def check_training_sizes(size: tuple[int, int], crop: tuple[int, int], scale_range: tuple[float, float]) -> None:
    """The training size, crop and random scales the model and the machine can train with; InputError if not.

    Size and crop: multiples of the model's stride, the crop within the size. Scales: the smallest
    scaled image must keep at least a stride of real pixels a side (below it a crop is all padding,
    which the loss ignores: nothing to learn), the largest stays within the one image bound of every
    command (MAX_SIDE a side, MAX_PIXELS in all), which the resize would otherwise exceed.
    """
    stride = LRNNet.input_stride
    for name, (height, width) in (("size", size), ("crop", crop)):
        if height <= 0 or width <= 0 or height % stride or width % stride:
            up = f"{-(-height // stride) * stride}x{-(-width // stride) * stride}"
            raise InputError(f"--{name} {height}x{width}: height and width must be positive multiples of "
                             f"the model's stride {stride} (e.g. {up})")
    if crop[0] > size[0] or crop[1] > size[1]:
        raise InputError(f"--crop {crop[0]}x{crop[1]} is larger than the training size {size[0]}x{size[1]} "
                         "(--size); crops are taken from images resized to --size")
    low, high = scale_range
    if not (0 < low <= high) or not math.isfinite(high):
        raise InputError(f"scale range must satisfy 0 < low <= high, got {scale_range}")
    smallest = scaled_size(size, low)
    if min(smallest) < stride:
        raise InputError(f"--scale-range {low:g} {high:g}: at scale {low:g} the {size[0]}x{size[1]} images shrink to "
                         f"{smallest[0]}x{smallest[1]}, less than the model's stride {stride} a side; raise the low scale")
    largest = scaled_size(size, high)
    if max(largest) > MAX_SIDE or largest[0] * largest[1] > MAX_PIXELS:
        raise InputError(f"--scale-range {low:g} {high:g}: at scale {high:g} the {size[0]}x{size[1]} images grow to "
                         f"{largest[0]}x{largest[1]}, over the bound of {MAX_SIDE} a side and "
                         f"{PIXELS_IN_ALL}; lower the high scale or --size")


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(height, width) of a training image resized to `size` times `scale`, as augmentation resizes it."""
    return max(round(size[0] * scale), 1), max(round(size[1] * scale), 1)


# What must match between a checkpoint's run and a resumed one for the continuation to be exact.
RUN_DEFINING = ("size", "crop", "scale_range", "flip", "batch", "optimizer", "lr", "weight_decay", "momentum",
                "poly_power", "seed", "epochs", "iters", "num_classes", "model_options", "amp", "threads")
