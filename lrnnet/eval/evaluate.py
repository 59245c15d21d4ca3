"""Evaluate any Runner (TensorRT, ONNX Runtime, PyTorch; any precision) on a labelled split.

Every backend is measured the same way, so accuracy drops between them are the engines' own:

* frames go through ``runner.predict`` (THE preprocessing function, or the graph's own when it is
  in the graph), giving trainIds at the model's input size;
* the prediction is resized to the ground truth's resolution with nearest-neighbour on labels.
  Why labels and not bilinear logits: an engine built with ``--argmax`` returns labels only, and
  that is the configuration deployed on video; upsampling labels is the one method every runner
  supports, so FP32 PyTorch and an INT8 argmax engine are compared like for like. (LRNNet already
  upsamples its logits bilinearly to the input size inside the graph; only the model-input to
  ground-truth step, 2x for 512x1024 on Cityscapes, is nearest.)
* one global confusion matrix over the split (official Cityscapes conventions, see metrics.py).

``save_predictions=DIR`` writes ``{city}_{seq}_{frame}_pred_labelIds.png`` in labelIds, the
official submission format, so cityscapesscripts' evalPixelLevelSemanticLabeling can score them.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lrnnet._io import atomic_output, write_image
from lrnnet.data.cityscapes import Sample
from lrnnet.data.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, train_ids_to_label_ids
from lrnnet.data.preprocess import resize_labels
from lrnnet.errors import InputError
from lrnnet.eval.metrics import ConfusionMatrix
from lrnnet.log import logger, progress

__all__ = ["PREDICTION_SUFFIX", "EvalReport", "check_classes", "check_labels_match", "evaluate", "prediction_path", "save_prediction"]

PREDICTION_SUFFIX = "_pred_labelIds.png"  # the official script matches "{city}_{seq}_{frame}*.png"


class _Predictor(Protocol):  # the part of the Runner contract evaluation uses
    backend: str
    device: str
    precision: str
    info: Any

    def predict(self, frames_bgr: list[np.ndarray]) -> np.ndarray: ...


@dataclass
class EvalReport:
    """The accuracy of one model on one split, with what was measured and how."""

    confusion: ConfusionMatrix
    images: int
    model: str  # a path or a description
    backend: str
    precision: str
    device: str
    input_size: tuple[int, int]  # (height, width) the model ran at
    split: str = ""
    seconds: float = 0.0
    class_names: tuple[str, ...] = CLASS_NAMES
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def miou(self) -> float:
        """Mean IoU as a fraction 0..1, over the classes present in prediction or ground truth."""
        return self.confusion.miou()

    @property
    def iou(self) -> np.ndarray:
        return self.confusion.iou()

    @property
    def pixel_accuracy(self) -> float:
        return self.confusion.pixel_accuracy()

    @property
    def per_class_iou(self) -> dict[str, float | None]:
        return {name: (None if np.isnan(v) else float(v)) for name, v in zip(self.class_names, self.iou)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None); ``miou`` and ``pixel_accuracy`` are fractions 0..1."""
        miou, accuracy = self.miou, self.pixel_accuracy
        return {
            "model": self.model,
            "backend": self.backend,
            "precision": self.precision,
            "device": self.device,
            "input_size": list(self.input_size),
            "split": self.split,
            "images": self.images,
            "pixels": int(self.confusion.matrix.sum()),
            "miou": None if np.isnan(miou) else miou,
            "pixel_accuracy": None if np.isnan(accuracy) else accuracy,
            "per_class_iou": self.per_class_iou,
            "classes_evaluated": int(np.count_nonzero(~np.isnan(self.iou))),
            "seconds": self.seconds,
            "confusion_matrix": self.confusion.matrix.tolist(),  # rows: ground truth, columns: prediction
            **({"extra": self.extra} if self.extra else {}),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        """Per-class IoU, mIoU and pixel accuracy as a text table (percent)."""
        width = max(len("pixel accuracy"), *(len(name) for name in self.class_names))
        lines = [f"{'class':<{width}}  IoU %"]
        for name, value in self.per_class_iou.items():
            lines.append(f"{name:<{width}}  {'  n/a' if value is None else f'{100 * value:5.1f}'}")
        lines.append("-" * (width + 7))
        lines.append(f"{'mIoU':<{width}}  {_percent(self.miou)}")
        lines.append(f"{'pixel accuracy':<{width}}  {_percent(self.pixel_accuracy)}")
        return "\n".join(lines)


def _percent(value: float) -> str:
    return "  n/a" if np.isnan(value) else f"{100 * value:5.1f}"


def prediction_path(directory: str | Path, sample: Sample) -> Path:
    return Path(directory) / f"{sample.stem}{PREDICTION_SUFFIX}"


def save_prediction(directory: str | Path, sample: Sample, train_ids: np.ndarray) -> Path:
    """Write one prediction as a labelIds PNG in the submission format, atomically."""
    path = prediction_path(directory, sample)
    label_ids = train_ids_to_label_ids(train_ids.astype(np.uint8, copy=False))
    with atomic_output(path) as tmp:
        write_image(tmp, label_ids)
    return path


def _batches(dataset: Iterable[tuple[np.ndarray, np.ndarray | None, Sample]], size: int
             ) -> Iterator[list[tuple[np.ndarray, np.ndarray | None, Sample]]]:
    batch: list[tuple[np.ndarray, np.ndarray | None, Sample]] = []
    for item in dataset:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def check_labels_match(image: np.ndarray, labels: np.ndarray, sample: Sample) -> None:
    """InputError unless the ground truth has its image's size: one resized to fit would be the wrong pixels."""
    if labels.shape[:2] != image.shape[:2]:
        raise InputError(f"label image {sample.label_path or sample.image_path} is "
                         f"{labels.shape[1]}x{labels.shape[0]} but its image {sample.image_path.name} is "
                         f"{image.shape[1]}x{image.shape[0]}; the ground truth must match its image")


def check_classes(runner: Any, dataset: Any) -> None:
    """InputError unless `runner` predicts the classes `dataset` is labelled with: a score over mismatched
    classes is silently wrong. A command comparing several models checks each before evaluating any."""
    num_classes = int(getattr(runner.info, "num_classes", NUM_CLASSES))
    data_classes = int(getattr(dataset, "num_classes", NUM_CLASSES))
    if num_classes != data_classes:
        raise InputError(f"{getattr(runner, 'name', None) or 'the model'} predicts {num_classes} classes but the "
                         f"dataset is labelled with {data_classes} (Cityscapes trainIds); evaluate a model trained "
                         "on these classes")


def evaluate(runner: _Predictor, dataset: Any, *, batch_size: int = 1, limit: int | None = None,
             save_predictions: str | Path | None = None, model_name: str | None = None,
             desc: str = "Evaluating") -> EvalReport:
    """Stream `dataset` through `runner.predict` and score it at the ground truth's resolution.

    `dataset` yields ``(image_bgr, train_ids, Sample)`` and has a length (a CityscapesDataset);
    `limit` evaluates only the first N images (a quick look, not a comparable score).
    """
    if batch_size < 1:
        raise InputError(f"batch size must be positive, got {batch_size}")
    total = len(dataset)
    if limit is not None:
        if limit < 1:
            raise InputError(f"limit must be positive, got {limit}")
        total = min(total, limit)
    if total == 0:
        raise InputError("the dataset has no images to evaluate")
    info = runner.info
    num_classes = int(getattr(info, "num_classes", NUM_CLASSES))
    class_names = tuple(getattr(info, "class_names", CLASS_NAMES))
    check_classes(runner, dataset)
    confusion = ConfusionMatrix(num_classes)
    items = itertools.islice(iter(dataset), total)  # stop reading files at the limit
    start = time.perf_counter()
    images = 0
    bar = progress(_batches(items, batch_size), desc=desc, total=-(-total // batch_size), unit="batch")
    for batch in bar:
        for image, labels, sample in batch:
            if labels is None:
                raise InputError(f"{sample.image_path} has no ground truth; evaluation needs a labelled split "
                                 "(train or val)")
            check_labels_match(image, labels, sample)  # resizing predictions to it would score the wrong pixels
        predictions = runner.predict([image for image, _, _ in batch])
        for prediction, (_, labels, sample) in zip(predictions, batch):
            assert labels is not None  # checked above; narrows the type
            # Nearest on labels, the same for every backend (module docstring says why).
            full = resize_labels(prediction.astype(np.uint8), labels.shape[:2])
            confusion.update(full, labels)
            if save_predictions is not None:
                save_prediction(save_predictions, sample, full)
            images += 1
    seconds = time.perf_counter() - start
    if not confusion.matrix.any():  # every ground-truth pixel is ignore: an mIoU of nothing, not a score
        raise InputError(f"no labelled pixels in the split: every ground-truth pixel of the {images} images "
                         f"evaluated is ignore ({IGNORE_INDEX} as a trainId, e.g. labelId 0 'unlabeled')")
    report = EvalReport(
        confusion=confusion, images=images, model=model_name or f"{runner.backend} {runner.precision}",
        backend=runner.backend, precision=runner.precision, device=runner.device,
        input_size=tuple(info.input_size), split=str(getattr(dataset, "split", "")), seconds=seconds,
        class_names=class_names)
    logger.debug("%s: mIoU %.4f over %d images in %.1f s", report.model, report.miou, images, seconds)
    return report
