"""The INT8 graph against its FP32 source on a few frames: an INT8 build that computes nonsense is refused.

Validating a calibration cache's schema (lrnnet.calib.cache) cannot tell sensible ranges from
nonsense that is finite (every range [-60000, 60000], or [0, 0]): both quantize, and the engine
then answers garbage. So every INT8 graph is run beside the FP32 graph it came from (ONNX Runtime,
CPU) on a few frames: the first calibration images when this build read them, else the synthetic
scenes the export verifier uses (lrnnet.export.verify.verification_frames). Two gates, each an
InputError (one line, exit 2, nothing written):

* argmax agreement with FP32 of at least ``MIN_INT8_ARGMAX_AGREEMENT``;
* no zero-width range on a quantized tensor that varies over those frames (it would be rounded
  to one value: what [0, 0] everywhere does, which keeps the majority class and so passes the
  first gate on a trained net).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from lrnnet.calib.graph import SourceModel
from lrnnet.calib.reader import CalibrationSet, feeds_uint8_frames
from lrnnet.errors import InputError

# Measured on the synthetic scenes (2026-12-04, lrnnet-demo --quick's trained 64x128 model and the
# tests' untrained tiny 128x256 one; 4 calibration images): correct builds agree 96.5-99.7%
# (trained; entropy lowest) and 50.7-54.7% (untrained: its top-2 logits nearly tie); caches of
# nonsense ranges: every range [-60000, 60000] 5.1% / 4.7%, [0, 0] 69.3% / 7.6%. 25% sits twice
# below the lowest correct build and about five times above the nonsense ones; the zero-width gate
# catches [0, 0] on the trained net.
MIN_INT8_ARGMAX_AGREEMENT = 0.25
CHECK_IMAGES = 4  # calibration images compared (the first ones), when this build read them


def check_int8_against_fp32(source: SourceModel, fp32: Path, int8: onnx.ModelProto,
                            calibration: CalibrationSet | None, ranges: dict[str, Any] | None = None,
                            float_nodes: Iterable[str] = ()) -> float:
    """The argmax agreement of `int8` with `fp32` (the source, possibly ONNX Runtime-pre-processed); InputError below the floor.

    `calibration`: the set whose images this build read (None: synthetic scenes). `ranges`: the
    calibration ranges the graph was quantized with (ONNX Runtime's ``data`` dict), for the zero-width
    gate; tensors made by `float_nodes` are not quantized and are skipped there.
    """
    import onnxruntime as ort

    frames = _frames(source, calibration)
    info = source.info
    reference = onnx.load(str(fp32))
    zero_width = _zero_width_tensors(reference, ranges or {}, set(float_nodes))
    reference.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in zero_width)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
                for model in (reference, int8)]
    from lrnnet.export.verify import graph_feeds

    agree = total = 0
    varying: set[str] = set()
    seen: dict[str, tuple[float, float]] = {}
    for feed in graph_feeds(frames, info.input_size, info.batch, feeds_uint8_frames(info)):
        expected, *observed = sessions[0].run([reference.graph.output[0].name, *zero_width], {source.input_name: feed})
        got = sessions[1].run(None, {source.input_name: feed})[0]
        labels_expected = expected if info.argmax_in_graph else expected.argmax(axis=1)
        labels_got = got if info.argmax_in_graph else got.argmax(axis=1)
        agree += int((labels_expected == labels_got).sum())
        total += labels_expected.size
        for name, values in zip(zero_width, observed, strict=True):
            low, high = seen.get(name, (np.inf, -np.inf))
            seen[name] = (min(low, float(values.min())), max(high, float(values.max())))
            if seen[name][0] != seen[name][1]:
                varying.add(name)
    if varying:
        name = min(varying)
        raise InputError(f"the calibration ranges are degenerate: {len(varying)} quantized tensors have a zero-width "
                         f"range though they vary (e.g. '{name}': {_span(seen[name])} on {_what(calibration)}); "
                         "recalibrate (delete the --calib-cache, or pass --calib-data)")
    agreement = agree / max(total, 1)
    if agreement < MIN_INT8_ARGMAX_AGREEMENT:
        raise InputError(f"the INT8 graph agrees with FP32 on {100 * agreement:.1f}% of pixels ({_what(calibration)}), "
                         f"below the {100 * MIN_INT8_ARGMAX_AGREEMENT:.0f}% any sound calibration gives: its ranges "
                         "are nonsense; recalibrate (delete the --calib-cache, or pass --calib-data)")
    return agreement


def _frames(source: SourceModel, calibration: CalibrationSet | None) -> list[np.ndarray]:
    if calibration is not None:
        return list(itertools.islice(calibration.frames(), max(CHECK_IMAGES, source.info.batch)))
    from lrnnet.export.verify import verification_frames

    return verification_frames(source.info.input_size)


def _what(calibration: CalibrationSet | None) -> str:
    return f"calibration images of {calibration.path}" if calibration is not None else "synthetic street scenes"


def _span(low_high: tuple[float, float]) -> str:
    return f"{low_high[0]:.3g} to {low_high[1]:.3g}"


def _zero_width_tensors(model: onnx.ModelProto, data: dict[str, Any], float_nodes: set[str]) -> list[str]:
    """Tensors of `model` whose range is one value, made by a node that is quantized (or the graph input)."""
    from lrnnet.calib.cache import range_of

    made_by = {output: node.name for node in model.graph.node for output in node.output}
    inputs = {value.name for value in model.graph.input}
    names = []
    for name, entry in data.items():
        if (name in inputs or (name in made_by and made_by[name] not in float_nodes)) and \
                isinstance(entry, dict) and len(set(range_of(entry))) == 1:
            names.append(name)
    return sorted(names)
