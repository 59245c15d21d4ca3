"""A reader for the real Cityscapes folder layout.

    ROOT/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    ROOT/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png   (or *_gtFine_labelTrainIds.png)
    ROOT/leftImg8bit/demoVideo/{sequence}/*_leftImg8bit.png                (image sequences, no labels)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lrnnet._io import check_input
from lrnnet.data.labels import invalid_train_ids, label_ids_to_train_ids, unknown_label_ids
from lrnnet.errors import InputError

SPLITS = ("train", "val", "test")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_ID_SUFFIX = "_gtFine_labelIds.png"
TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds.png"
DEMO_VIDEO = "demoVideo"


@dataclass(frozen=True)
class Sample:
    image_path: Path
    label_path: Path | None  # None where the split has no fine labels
    city: str
    stem: str  # "{city}_{seq}_{frame}", the name the official evaluation pairs on

    @property
    def label_is_train_ids(self) -> bool:
        return self.label_path is not None and self.label_path.name.endswith(TRAIN_ID_SUFFIX)


def read_image(path: Path) -> np.ndarray:
    """BGR uint8; a clear error for an unreadable file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read image {path} (missing, not an image, or corrupt)")
    return image


def read_train_ids(sample: Sample) -> np.ndarray:
    """The sample's ground truth as trainIds (255 = ignore), HxW uint8; a value outside its table is an InputError."""
    if sample.label_path is None:
        raise InputError(f"{sample.image_path} has no ground truth")
    raw = read_label_png(sample.label_path)
    if sample.label_is_train_ids:
        bad, allowed = invalid_train_ids(raw), "trainIds are 0..18 and 255 (ignore)"
    else:
        bad, allowed = unknown_label_ids(raw), "the Cityscapes table defines labelIds 0..33"
    if bad:
        shown = ", ".join(map(str, bad[:_SHOWN_VALUES])) + (", ..." if len(bad) > _SHOWN_VALUES else "")
        raise InputError(f"label image {sample.label_path} holds unknown ids {shown}; {allowed}")
    return raw if sample.label_is_train_ids else label_ids_to_train_ids(raw)


_SHOWN_VALUES = 5  # how many bad label values a message names


def read_label_png(path: Path) -> np.ndarray:
    """An 8-bit single-channel label PNG as HxW uint8, read as cityscapesscripts reads it (PIL).

    A palette ("P") image gives its palette indices, which are the ids (cv2 would expand it to
    colours); 16-bit and colour images are refused rather than wrapped or guessed.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mode = image.mode
            values = np.array(image) if mode in ("L", "P") else None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputError(f"cannot read label image {path} (missing, not an image, or corrupt)") from exc
    if values is None:
        kind = "16- or 32-bit" if mode.startswith("I") else f"mode {mode}"
        raise InputError(f"label image {path} is {kind}; expected an 8-bit single-channel PNG (ids 0..255)")
    return values


def _refuse_stray_images(image_dir: Path) -> None:
    """Images directly in leftImg8bit/{split}/ have no city, so no ground-truth folder: refuse, never skip."""
    stray = sorted(image_dir.glob(f"*{IMAGE_SUFFIX}"))
    if stray:
        raise InputError(f"{len(stray)} images lie directly in {image_dir}, outside a city folder, e.g. {stray[0]}; "
                         f"move them into {image_dir}/<city>/ (the Cityscapes layout)")


def _label_files(label_dir: Path) -> dict[tuple[str, str], Path]:
    """(city, stem) -> its ground-truth file; the labelIds PNG where both it and the labelTrainIds PNG exist."""
    found: dict[tuple[str, str], Path] = {}
    for suffix in (TRAIN_ID_SUFFIX, LABEL_ID_SUFFIX):  # labelIds last, so it wins
        for path in label_dir.glob(f"*/*{suffix}"):
            found[(path.parent.name, path.name[: -len(suffix)])] = path
    return dict(sorted(found.items()))


def _expected_layout(root: Path, split: str) -> str:
    return f"{root}/leftImg8bit/{split}/<city>/*{IMAGE_SUFFIX}"


class CityscapesDataset:
    """The image/label pairs of one split, sorted by city then name (deterministic).

    Checked as the official evaluation pairs them: every image sits in a city folder, and (with
    `require_labels`) every image has its ground truth and every ground-truth file its image.
    """

    def __init__(self, root: str | Path, split: str = "val", require_labels: bool = True):
        if split not in SPLITS:
            raise InputError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
        self.root = check_input(root, "Cityscapes root", folder=True)
        self.split = split
        image_dir = self.root / "leftImg8bit" / split
        _refuse_stray_images(image_dir)
        images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
        if not images:
            raise InputError(f"{self.root} is not a Cityscapes tree: no images for split '{split}'; "
                             f"expected {_expected_layout(self.root, split)}")
        labels = _label_files(self.root / "gtFine" / split)
        self.samples = [self._pair(path, labels) for path in images]
        if require_labels:
            self._check_pairing(labels)

    def _pair(self, image_path: Path, labels: dict[tuple[str, str], Path]) -> Sample:
        city = image_path.parent.name
        stem = image_path.name[: -len(IMAGE_SUFFIX)]
        return Sample(image_path, labels.get((city, stem)), city, stem)

    def _check_pairing(self, labels: dict[tuple[str, str], Path]) -> None:
        """Refuse images without ground truth and ground truth without images (the official script's
        "Found no prediction for ground truth"): either would score a split other than the one on disk."""
        unlabelled = [s for s in self.samples if s.label_path is None]
        if unlabelled:
            first = unlabelled[0]
            expected = self.root / "gtFine" / self.split / first.city / f"{first.stem}{LABEL_ID_SUFFIX}"
            raise InputError(f"no ground truth for {len(unlabelled)} of {len(self.samples)} {self.split} images, "
                             f"e.g. {first.image_path}: expected {expected} (or *{TRAIN_ID_SUFFIX})")
        imaged = {(s.city, s.stem) for s in self.samples}
        orphans = [key for key in labels if key not in imaged]
        if orphans:
            city, stem = orphans[0]
            raise InputError(f"{len(orphans)} of {len(labels)} ground-truth files in {self.root / 'gtFine' / self.split} "
                             f"have no image, e.g. {labels[orphans[0]]}: expected "
                             f"{self.root / 'leftImg8bit' / self.split / city / (stem + IMAGE_SUFFIX)} "
                             f"({len(self.samples)} images)")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | None, Sample]:
        sample = self.samples[index]
        labels = read_train_ids(sample) if sample.label_path is not None else None
        return read_image(sample.image_path), labels, sample

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, Sample]]:
        for index in range(len(self)):
            yield self[index]

    @property
    def cities(self) -> list[str]:
        return sorted({s.city for s in self.samples})


def spread_across_cities(samples: list[Sample], count: int) -> list[Sample]:
    """A deterministic subset of `count` samples taken round-robin over cities (for calibration)."""
    by_city: dict[str, list[Sample]] = {}
    for sample in samples:
        by_city.setdefault(sample.city, []).append(sample)
    round_robin = itertools.chain.from_iterable(itertools.zip_longest(*(by_city[c] for c in sorted(by_city))))
    return [s for s in round_robin if s is not None][:count]


def demo_video_sequences(root: str | Path) -> dict[str, list[Path]]:
    """Cityscapes demoVideo sequences: name -> sorted frame paths."""
    video_root = Path(root) / "leftImg8bit" / DEMO_VIDEO
    sequences = {d.name: sorted(d.glob(f"*{IMAGE_SUFFIX}")) for d in sorted(video_root.glob("*")) if d.is_dir()}
    sequences = {name: frames for name, frames in sequences.items() if frames}
    if not sequences:
        raise InputError(f"no demoVideo sequences under {root}: expected {video_root}/<sequence>/*{IMAGE_SUFFIX}")
    return sequences
