"""Calibration caches: the activation ranges of one calibration, reusable without the images.

A cache is one JSON file:

    {"format": "lrnnet-calibration-cache/2",
     "key": {"source_sha256": ..., "method": ..., "images": ..., "percentile": ...},
     "digest": SHA-256 of the calibration images' content, "images_used": n, "root": where they came from,
     "ort_tensors_data": ONNX Runtime's calibration result (onnxruntime.quantization.save_tensors_data format)}

It matches a build when the key does: same source ONNX bytes and same calibration settings, and,
when the build was given calibration data, the same images (the set's digest: the bytes of each
chosen file, or of the video and its frame indices; hashed, nothing is decoded to compare). A
cache of an older format is validated, then remade like one that does not match. Without
calibration data a matching key is enough: a cache exists so that the images are not needed.
A reused cache is validated first (schema and types, finite ranges within FP16's range, tensor
names against the graph being quantized): a broken one is an input error, never an engine. One
that does not match says, in one line, what differs and that it is recalibrated and overwritten.
Beside it, ``<stem>.trt-calib.txt`` is the same ranges as a TensorRT calibration table (one
``tensor: scale`` line each, scale = amax / 127 as a big-endian float32 in hex), for TensorRT tools
such as ``trtexec --int8 --calib=FILE`` on the FP32 ONNX.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrnnet._io import atomic_output, write_json_atomic
from lrnnet.errors import InputError
from lrnnet.log import logger

CACHE_FORMAT = "lrnnet-calibration-cache/2"
# Earlier formats still read (validated as strictly), never reused: /1's image digest covered file
# names and sizes only, so it cannot tell other images under the same names; such a cache is remade.
_OUTDATED_FORMATS = {"lrnnet-calibration-cache/1": "an older lrnnet (its image digest named files, not their content)"}
# TensorRT's names for its calibration algorithms, the header of a calibration table.
_TRT_ALGORITHM = {"entropy": "EntropyCalibration2", "minmax": "MinMaxCalibration", "percentile": "LegacyCalibration"}
_INT8_MAX = 127.0


@dataclass(frozen=True)
class CalibrationKey:
    """What must be equal for a cache to be reused."""

    source_sha256: str
    method: str
    images: int  # the number asked for (--calib-images)
    percentile: float | None = None


@dataclass(frozen=True)
class CalibrationCache:
    key: CalibrationKey
    digest: str
    images_used: int
    root: str
    ort_tensors_data: dict[str, Any]
    format: str = CACHE_FORMAT  # an _OUTDATED_FORMATS one is read only to say it is remade

    def amax(self) -> dict[str, float]:
        """Tensor name -> largest absolute value of its calibrated range."""
        result = {}
        for name, entry in self.ort_tensors_data.get("data", {}).items():
            lowest, highest = _scalar(entry.get("lowest", 0.0)), _scalar(entry.get("highest", 0.0))
            result[name] = max(abs(lowest), abs(highest))
        return result


def _scalar(value: Any) -> float:
    # save_tensors_data writes numpy values as {"CLS": "numpy.array", "data": ..., "dtype": ...}.
    if isinstance(value, dict):
        value = value.get("data", 0.0)
    while isinstance(value, list):
        value = value[0] if value else 0.0
    return float(value)


def trt_table_path(cache_path: str | Path) -> Path:
    cache_path = Path(cache_path)
    return cache_path.with_name(cache_path.stem + ".trt-calib.txt")


# Largest |range| a cache may hold: FP16's largest finite value. An activation beyond it cannot run
# in the half precision TensorRT falls back to around int8 layers, and no normalised-input CNN gets
# near it; a cache claiming it (±1e30) is corrupt or hand-edited, and would build a garbage engine.
PLAUSIBLE_AMAX = 65504.0
_KEY_TYPES: dict[str, tuple[type, ...]] = {"source_sha256": (str,), "method": (str,), "images": (int,),
                                           "percentile": (int, float, type(None))}


def read_cache(path: str | Path, key: CalibrationKey, *, digest: str | None = None,
               recalibrate: bool = True) -> CalibrationCache | None:
    """The cache at ``path`` when it exists, is valid and matches; None when it must be remade.

    A cache that is not valid (not JSON, wrong types, non-finite or implausible ranges) is an
    InputError, whatever the key says. One that is valid but was made for another model, other
    settings or (with ``digest``, the current calibration set's) other images is reported in one
    line saying what differs and what happens: None when ``recalibrate`` (the caller calibrates and
    overwrites it), otherwise an InputError (there are no images to recalibrate with).
    """
    path = Path(path)
    if not path.exists():
        return None
    cache = _parse(path)
    differences = _differences(cache, key, digest)
    if differences:
        line = f"calibration cache {path} was made for {', '.join(differences)}"
        if not recalibrate:
            raise InputError(f"{line}: cannot recalibrate without calibration images; pass --calib-data (the cache "
                             "will be overwritten), or the cache made for this model and these settings")
        logger.info("%s: recalibrating and overwriting it", line)
        return None
    return cache


def _parse(path: Path) -> CalibrationCache:
    """The cache file, validated (schema, types, finite and plausible ranges); InputError naming what is wrong."""
    def invalid(reason: str) -> InputError:
        return InputError(f"{path} is not an lrnnet calibration cache ({reason}); delete it or pass another "
                          "--calib-cache")

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise invalid("not text") from exc
    except ValueError as exc:  # JSONDecodeError, including an empty file
        raise invalid(f"not JSON ({exc})") from exc
    except RecursionError as exc:  # '[' * 200000: nested deeper than any cache
        raise invalid("JSON nested too deeply") from exc
    if not isinstance(raw, dict):
        raise invalid(f"a JSON {type(raw).__name__}, not an object")
    if raw.get("format") != CACHE_FORMAT and raw.get("format") not in _OUTDATED_FORMATS:
        raise invalid(f"format {raw.get('format')!r}, expected {CACHE_FORMAT!r}")
    raw.setdefault("root", "")  # where the images were is a note, not part of the cache's meaning
    fields: tuple[tuple[str, tuple[type, ...]], ...] = (
        ("key", (dict,)), ("digest", (str,)), ("images_used", (int,)), ("root", (str,)), ("ort_tensors_data", (dict,)))
    for name, types in fields:
        if not isinstance(raw.get(name), types) or isinstance(raw.get(name), bool):
            raise invalid(f"'{name}' is {_kind(raw.get(name))}, expected {' or '.join(t.__name__ for t in types)}")
    if raw["images_used"] < 1:
        raise invalid(f"'images_used' is {raw['images_used']}")
    key_fields = raw["key"]
    if set(key_fields) != set(_KEY_TYPES):
        raise invalid(f"'key' has fields {sorted(key_fields)}, expected {sorted(_KEY_TYPES)}")
    for name, types in _KEY_TYPES.items():
        value = key_fields[name]
        if not isinstance(value, types) or isinstance(value, bool) or \
                (isinstance(value, float) and not math.isfinite(value)):
            raise invalid(f"key '{name}' is {_kind(value)}")
    _check_ranges(raw["ort_tensors_data"], invalid)
    return CalibrationCache(key=CalibrationKey(**key_fields), digest=raw["digest"], images_used=raw["images_used"],
                            root=raw["root"], ort_tensors_data=raw["ort_tensors_data"], format=raw["format"])


def _kind(value: Any) -> str:
    return "missing" if value is None else f"a {type(value).__name__} ({str(value)[:40]!r})"


# How ONNX Runtime's TensorsData names its calibration methods (read back by its loader, which has a KeyError
# for any other) and the dtypes of the arrays it writes.
_CALIBRATION_METHODS = {"CalibrationMethod.MinMax", "CalibrationMethod.Entropy", "CalibrationMethod.Percentile",
                        "CalibrationMethod.Distribution"}
_ARRAY_DTYPES = {"float16", "float32", "float64"}


def _check_ranges(tensors_data: dict[str, Any], invalid: Any) -> None:
    method = tensors_data.get("calibration_method")
    named = method.get("value") if isinstance(method, dict) else method
    if method is not None and named not in _CALIBRATION_METHODS:
        raise invalid(f"unknown calibration method {str(named)[:60]!r}")
    data = tensors_data.get("data")
    if not isinstance(data, dict) or not data:
        raise invalid("no tensor ranges ('ort_tensors_data.data' is empty or missing)")
    for name, entry in data.items():
        if not isinstance(entry, dict) or "lowest" not in entry or "highest" not in entry:
            raise invalid(f"tensor '{name}' has no lowest/highest range")
        try:
            lowest, highest = _number(entry["lowest"]), _number(entry["highest"])
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an integer past any float
            raise invalid(f"tensor '{name}' has a range that is not a number ({exc})") from exc
        if not (math.isfinite(lowest) and math.isfinite(highest)):
            raise invalid(f"tensor '{name}' has a non-finite range [{lowest}, {highest}]")
        if lowest > highest:
            raise invalid(f"tensor '{name}' has lowest {lowest:g} above highest {highest:g}")
        if max(abs(lowest), abs(highest)) > PLAUSIBLE_AMAX:
            raise invalid(f"tensor '{name}' has range [{lowest:g}, {highest:g}], beyond any activation "
                          f"(|x| > {PLAUSIBLE_AMAX:g}, FP16's largest)")


def range_of(entry: dict[str, Any]) -> tuple[float, float]:
    """(lowest, highest) of one validated tensor entry."""
    return _number(entry["lowest"]), _number(entry["highest"])


def _number(value: Any) -> float:
    """A range end as save_tensors_data writes it: a number, or {"CLS": "numpy.array", "data": number or [number]}.

    An empty array (a tensor the calibration never saw filled) reads as 0, as ``CalibrationCache.amax`` reads it.
    """
    if isinstance(value, dict):
        if value.get("dtype", "float32") not in _ARRAY_DTYPES:
            raise TypeError(f"an array of dtype {value.get('dtype')!r}")
        value = value.get("data")
    while isinstance(value, list):
        if len(value) > 1:
            raise ValueError(f"{len(value)} values")
        value = value[0] if value else 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(_kind(value))
    return float(value)


def _differences(cache: CalibrationCache, key: CalibrationKey, digest: str | None) -> list[str]:
    """What differs between the cache and this build, each as 'cache's value (now: this build's)'."""
    old, new = cache.key, key
    differences = [_OUTDATED_FORMATS[cache.format]] if cache.format in _OUTDATED_FORMATS else []
    if old.source_sha256 != new.source_sha256:
        differences.append(f"model sha256 {old.source_sha256[:12]}.. (this model: {new.source_sha256[:12]}..)")
    if old.method != new.method:
        differences.append(f"method {old.method} (now {new.method})")
    if old.images != new.images:
        differences.append(f"{old.images} images (now {new.images})")
    if old.percentile != new.percentile:
        differences.append(f"percentile {old.percentile} (now {new.percentile})")
    if digest is not None and cache.digest != digest and old.images == new.images:  # another count: other images
        differences.append(f"other calibration images (digest {cache.digest[:12]}.., now {digest[:12]}..)")
    return differences


def check_cache_against_graph(cache: CalibrationCache, model: Any, path: str | Path | None) -> None:
    """The cache must name only tensors of the graph it will quantize, and every tensor a calibration of it measures.

    ``model`` is the graph handed to the quantizer (after ONNX Runtime's pre-processing, which
    renames a few tensors of the source export), so a cache of another graph that kept the key is caught.
    """
    graph = model.graph
    tensors = {i.name for i in graph.input} | {o for node in graph.node for o in node.output}
    names = set(cache.ort_tensors_data["data"])
    unknown = sorted(names - tensors)
    if unknown:
        raise InputError(f"{path} is not an lrnnet calibration cache for this graph (it has ranges for "
                         f"{len(unknown)} tensors the graph does not have, e.g. '{unknown[0]}'); delete it or pass "
                         "another --calib-cache")
    initializers = {init.name for init in graph.initializer}
    floats = (1, 10, 16)  # FLOAT, FLOAT16, BFLOAT16: what a calibrator calibrates (a uint8 frame input is not)
    missing = [i.name for i in graph.input if i.name not in initializers and i.name not in names
               and i.type.tensor_type.elem_type in floats]
    if missing:
        raise InputError(f"{path} is not an lrnnet calibration cache for this graph (no range for the graph input "
                         f"'{missing[0]}'); delete it or pass another --calib-cache")
    lacking = sorted(calibrated_tensors(model) - names)
    if lacking:
        raise InputError(f"{path} is not an lrnnet calibration cache for this graph (no range for {len(lacking)} of "
                         f"the tensors a calibration of it measures: {_some(lacking)}); delete it or pass another "
                         "--calib-cache")


def calibrated_tensors(model: Any) -> set[str]:
    """The tensors a calibration pass of `model` gives ranges for, by ONNX Runtime's own rule.

    ONNX Runtime's calibrator (CalibraterBase.select_tensors_to_calibrate, given quantize_static's
    default op types: every op its QLinear and QDQ registries know) measures each float input and
    output of those ops that is not an initializer and whose type the graph records. A cache must
    hold them all: the quantizer stops at the first it lacks.
    """
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    graph = model.graph
    op_types = set(QLinearOpsRegistry) | set(QDQRegistry)
    typed = {value.name: value for value in (*graph.value_info, *graph.output, *graph.input)}
    initializers = {init.name for init in graph.initializer}
    floats = (1, 10)  # FLOAT, FLOAT16: what ONNX Runtime's calibrator measures
    return {name for node in graph.node if node.op_type in op_types for name in (*node.input, *node.output)
            if name in typed and name not in initializers and typed[name].type.HasField("tensor_type")
            and typed[name].type.tensor_type.elem_type in floats}


def _some(names: list[str], shown: int = 3) -> str:
    listed = ", ".join(f"'{name}'" for name in names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")


def write_cache(path: str | Path, cache: CalibrationCache) -> None:
    """Write the cache and its TensorRT calibration table, each atomically."""
    write_json_atomic(path, {"format": CACHE_FORMAT, "key": dataclasses.asdict(cache.key), "digest": cache.digest,
                             "images_used": cache.images_used, "root": cache.root,
                             "ort_tensors_data": cache.ort_tensors_data})
    with atomic_output(trt_table_path(path)) as tmp:
        tmp.write_text(trt_calibration_table(cache))
    logger.info("calibration cache written: %s (+ %s)", path, trt_table_path(path).name)


def refresh_trt_table(path: str | Path, cache: CalibrationCache) -> None:
    """Rewrite the TensorRT table beside a reused cache unless it already holds the cache's ranges (missing, damaged, edited)."""
    table = trt_table_path(path)
    expected = trt_calibration_table(cache)
    try:
        if table.read_text(encoding="utf-8") == expected:
            return
    except (OSError, UnicodeDecodeError):
        pass  # missing or unreadable: written below
    with atomic_output(table) as tmp:
        tmp.write_text(expected)
    logger.info("calibration: %s did not hold the ranges of %s; rewritten from it", table, path)


def trt_calibration_table(cache: CalibrationCache, trt_version: str | None = None) -> str:
    """The ranges in TensorRT's calibration-table text format."""
    header_version = _trt_version_number(trt_version) if trt_version else "0"
    lines = [f"TRT-{header_version}-{_TRT_ALGORITHM[cache.key.method]}"]
    for name, amax in sorted(cache.amax().items()):
        scale = amax / _INT8_MAX if amax > 0 else 1.0 / _INT8_MAX
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def _trt_version_number(version: str) -> str:
    """'10.3.0' -> '100300' (NV_TENSORRT_VERSION as TensorRT writes it in table headers)."""
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    major, minor, patch = parts
    return str(major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch)
