"""Training samples: Cityscapes image/label pairs, augmented, then normalised by THE preprocess function.

Augmentation (the common recipe of LRNNet's peers, see config.py): resize to the training size
times a random scale, pad with "ignore" where the result is smaller than the crop, random crop,
random horizontal flip. Images are resized with the same function inference uses, so at scale 1
a training image is exactly what `preprocess` gives at inference; labels are resized
nearest-neighbour. Normalisation is `lrnnet.data.preprocess` itself, called at the crop's own
size (no second resize, no second copy of the mean/std).

Every random draw comes from a generator seeded by (seed, epoch, index): the data a step sees
depends on nothing but the step, so a resumed run and any number of DataLoader workers give the
same batches as one uninterrupted run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from lrnnet._io import atomic_output, write_json_atomic
from lrnnet.data.cityscapes import CityscapesDataset
from lrnnet.data.labels import IGNORE_INDEX
from lrnnet.data.preprocess import preprocess, resize_frame, resize_labels
from lrnnet.data.synthetic import write_synthetic_cityscapes
from lrnnet.errors import InputError
from lrnnet.eval.evaluate import check_labels_match
from lrnnet.log import logger, timed_step
from lrnnet.train.config import scaled_size

__all__ = ["EpochBatches", "TrainingSet", "augment", "check_split", "epoch_order", "prepare_synthetic"]

SYNTHETIC_MARKER = "lrnnet-synthetic.json"  # written beside a generated tree, so it is recognised and reused


def augment(image_bgr: np.ndarray, train_ids: np.ndarray, size: tuple[int, int], crop: tuple[int, int],
            scale_range: tuple[float, float], flip: bool, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """One augmented (BGR uint8 crop, trainIds crop), both of shape `crop`."""
    scale = float(rng.uniform(*scale_range)) if scale_range[0] != scale_range[1] else scale_range[0]
    height, width = scaled_size(size, scale)
    image = resize_frame(image_bgr, (height, width))
    labels = resize_labels(train_ids, (height, width))

    pad_h, pad_w = max(crop[0] - height, 0), max(crop[1] - width, 0)
    if pad_h or pad_w:
        # Padded pixels are ignored by the loss; the image padding value is irrelevant but fixed.
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        labels = cv2.copyMakeBorder(labels, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=IGNORE_INDEX)
    top = int(rng.integers(0, image.shape[0] - crop[0] + 1))
    left = int(rng.integers(0, image.shape[1] - crop[1] + 1))
    image = image[top:top + crop[0], left:left + crop[1]]
    labels = labels[top:top + crop[0], left:left + crop[1]]
    if flip and rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


class TrainingSet(torch.utils.data.Dataset):
    """Indexed by (epoch, index): the augmented, normalised sample `index` as seen in `epoch`.

    Returns (float32 3xHxW tensor, int64 HxW tensor of trainIds with 255 = ignore).
    """

    def __init__(self, dataset: CityscapesDataset, size: tuple[int, int], crop: tuple[int, int],
                 scale_range: tuple[float, float] = (0.5, 2.0), flip: bool = True, seed: int = 0):
        self.dataset, self.size, self.crop = dataset, size, crop
        self.scale_range, self.flip, self.seed = scale_range, flip, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        image, labels, sample = self.dataset[index]
        if labels is None:  # CityscapesDataset(require_labels=True) already refuses this
            raise InputError(f"{sample.image_path} has no ground truth")
        check_labels_match(image, labels, sample)  # as lrnnet-eval: stretched labels would teach wrong pixels
        rng = np.random.default_rng([self.seed, epoch, index])
        image, labels = augment(image, labels, self.size, self.crop, self.scale_range, self.flip, rng)
        tensor = torch.from_numpy(preprocess(image, self.crop)[0])  # THE normalisation, no resize at crop size
        return tensor, torch.from_numpy(labels.astype(np.int64))


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the training samples in `epoch`: a permutation depending only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(count)


class EpochBatches(torch.utils.data.Sampler):
    """Full batches of (epoch, index) keys for one epoch, from batch `start` on (for an exact resume)."""

    def __init__(self, count: int, batch: int, seed: int, epoch: int, start: int = 0):
        self.count, self.batch, self.seed, self.epoch, self.start = count, batch, seed, epoch, start

    def __len__(self) -> int:
        return self.count // self.batch - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_order(self.count, self.seed, self.epoch)
        for b in range(self.start, self.count // self.batch):
            yield [(self.epoch, int(i)) for i in order[b * self.batch:(b + 1) * self.batch]]


def prepare_synthetic(root: Path, size: tuple[int, int], counts: dict[str, int], seed: int) -> Path:
    """Generate the synthetic tree at `root`, or reuse it if an identical one is already there.

    Refuses a non-empty folder that is not a tree we generated: --synthetic never writes into
    someone's data.
    """
    root = Path(root)
    wanted = {"size": list(size), "counts": dict(sorted(counts.items())), "seed": seed}
    marker = root / SYNTHETIC_MARKER
    if marker.is_file():
        try:
            found = json.loads(marker.read_text())
        except (OSError, ValueError):
            found = None
        if found == wanted:
            logger.info("Reusing the synthetic scenes in %s", root)
            return root
        if found is not None:
            raise InputError(f"{root} holds synthetic scenes made with other settings ({found}); "
                             f"remove it or choose another --out/--data")
    if root.exists() and any(root.iterdir()):
        raise InputError(f"--synthetic would write into {root}, which is not empty and not a synthetic tree; "
                         "give an empty or new folder")
    # One folder renamed into place when complete: an interrupted run leaves no partial tree (which,
    # without its marker, the next run would have to refuse), only a temporary that is cleaned up.
    with timed_step(f"Writing {counts.get('train', 0)}+{counts.get('val', 0)} synthetic scenes at "
                    f"{size[0]}x{size[1]} to {root}"), atomic_output(root, directory=True) as tmp:
        write_synthetic_cityscapes(tmp, size=size, counts=counts, seed=seed)
        write_json_atomic(tmp / SYNTHETIC_MARKER, wanted)
    return root


def check_split(dataset: CityscapesDataset, batch: int) -> None:
    """Refuse a training split too small for one full batch (one clear line, not a silent 0-step run)."""
    if len(dataset) < batch:
        raise InputError(f"the training split of {dataset.root} has {len(dataset)} images, fewer than "
                         f"--batch {batch}; lower --batch")


def check_synthetic_count(images: int, batch: int) -> None:
    """check_split for synthetic data, before any image is generated."""
    if images < batch:
        raise InputError(f"--synthetic-images {images} is fewer than --batch {batch}; lower --batch or generate more")
