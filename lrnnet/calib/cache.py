"""Calibration caches: the activation ranges of one calibration, reusable without the images.

A cache is one JSON file:

    {"format": "lrnnet-calibration-cache/1",
     "key": {"source_sha256": ..., "method": ..., "images": ..., "percentile": ...},
     "digest": SHA-256 of the calibration file list, "images_used": n, "root": where they came from,
     "ort_tensors_data": ONNX Runtime's calibration result (onnxruntime.quantization.save_tensors_data format)}

It matches a build when the key does: same source ONNX bytes and same calibration settings. Which
images were used is recorded (digest), not compared: checking would mean reading the folder, and a
cache exists so that the folder is not needed (TensorRT's calibration caches behave the same).
Beside it, ``<stem>.trt-calib.txt`` is the same ranges as a TensorRT calibration table (one
``tensor: scale`` line each, scale = amax / 127 as a big-endian float32 in hex), for TensorRT tools
such as ``trtexec --int8 --calib=FILE`` on the FP32 ONNX.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrnnet._io import atomic_output, write_json_atomic
from lrnnet.errors import InputError
from lrnnet.log import logger

CACHE_FORMAT = "lrnnet-calibration-cache/1"
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


def read_cache(path: str | Path, key: CalibrationKey) -> CalibrationCache | None:
    """The cache at `path` when it exists and matches `key`; None (with the reason logged) otherwise."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != CACHE_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}")
        cache = CalibrationCache(key=CalibrationKey(**raw["key"]), digest=raw["digest"],
                                 images_used=int(raw["images_used"]), root=raw.get("root", ""),
                                 ort_tensors_data=raw["ort_tensors_data"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # AttributeError: JSON, not an object
        raise InputError(f"{path} is not an lrnnet calibration cache ({type(exc).__name__}: {exc}); "
                         "delete it or pass another --calib-cache") from exc
    if cache.key != key:
        differing = [f.name for f in dataclasses.fields(key) if getattr(cache.key, f.name) != getattr(key, f.name)]
        logger.info("calibration cache %s was made for another %s; calibrating again", path,
                    " and ".join("model" if name == "source_sha256" else name for name in differing))
        return None
    return cache


def write_cache(path: str | Path, cache: CalibrationCache) -> None:
    """Write the cache and its TensorRT calibration table, each atomically."""
    write_json_atomic(path, {"format": CACHE_FORMAT, "key": dataclasses.asdict(cache.key), "digest": cache.digest,
                             "images_used": cache.images_used, "root": cache.root,
                             "ort_tensors_data": cache.ort_tensors_data})
    with atomic_output(trt_table_path(path)) as tmp:
        tmp.write_text(trt_calibration_table(cache))
    logger.info("calibration cache written: %s (+ %s)", path, trt_table_path(path).name)


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
