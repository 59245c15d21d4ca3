"""How much accuracy each engine lost: reports of several models on the same split, against the first."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lrnnet.errors import InputError
from lrnnet.eval.evaluate import EvalReport

__all__ = ["comparison", "drop_table"]


def _drop(reference: float, value: float) -> float | None:
    return None if math.isnan(reference) or math.isnan(value) else reference - value


def _check_comparable(reports: Sequence[EvalReport]) -> None:
    if len(reports) < 2:
        raise InputError("a comparison needs at least two models")
    first = reports[0]
    for report in reports[1:]:
        if report.images != first.images or report.class_names != first.class_names:
            raise InputError(f"{report.model} was evaluated on {report.images} images of {len(report.class_names)} "
                             f"classes, {first.model} on {first.images} of {len(first.class_names)}: not comparable")


def comparison(reports: Sequence[EvalReport]) -> dict[str, Any]:
    """JSON-ready: every report, and each one's drop against the first (fractions; positive = worse)."""
    _check_comparable(reports)
    reference = reports[0]
    drops = []
    for report in reports:
        per_class = {}
        for name, ref_iou, iou in zip(report.class_names, reference.iou, report.iou):
            per_class[name] = _drop(float(ref_iou), float(iou))
        worst = max(((name, d) for name, d in per_class.items() if d is not None), key=lambda item: item[1],
                    default=(None, None))
        drops.append({"model": report.model, "backend": report.backend, "precision": report.precision,
                      "miou_drop": _drop(reference.miou, report.miou),
                      "pixel_accuracy_drop": _drop(reference.pixel_accuracy, report.pixel_accuracy),
                      "worst_class": worst[0], "worst_class_drop": worst[1], "per_class_iou_drop": per_class})
    return {"reference": reference.model, "reports": [r.to_dict() for r in reports], "drops": drops}


def _pp(value: float | None, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    value = 100 * value + 0.0  # no "-0.00"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def drop_table(reports: Sequence[EvalReport]) -> str:
    """The accuracy-drop table: mIoU, its change against the first model in points, and the worst class."""
    summary = comparison(reports)
    width = max(12, *(len(r.model) for r in reports))
    header = (f"{'model':<{width}}  {'backend':<11} {'prec':<5} {'mIoU %':>7} {'vs ref':>7} {'pix acc %':>9}  "
              "worst class (IoU change)")
    lines = [header]
    for index, (report, drop) in enumerate(zip(reports, summary["drops"])):
        change = "ref" if index == 0 else _pp(None if drop["miou_drop"] is None else -drop["miou_drop"], True)
        lost = drop["worst_class_drop"]
        worst = "" if index == 0 or lost is None or lost <= 0 else \
            f"{drop['worst_class']} ({_pp(-drop['worst_class_drop'], True)})"
        lines.append(f"{report.model:<{width}}  {report.backend:<11} {report.precision:<5} {_pp(report.miou):>7} "
                     f"{change:>7} {_pp(report.pixel_accuracy):>9}  {worst}")
    return "\n".join(lines)
