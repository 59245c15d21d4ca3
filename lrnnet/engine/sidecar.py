"""The engine sidecar: ``<engine>.json`` beside every built engine, saying what it is and where it runs.

A TensorRT engine only loads on the TensorRT version and GPU it was built for, and neither the
file name nor the engine itself says so in words; the sidecar does, and a runner checks it before
deserialising (``check_sidecar_compatible``), so a mismatch is one plain line naming both sides.
ONNX Runtime engines (the graph-optimised precision ONNX) get the same sidecar, so one finder
(``find_newest_engine``) serves ``lrnnet-infer`` for both.

API for the runners (small on purpose):
    sidecar_path(engine) -> Path
    write_sidecar(engine, sidecar)            # atomic
    read_sidecar(engine) -> EngineSidecar     # InputError when missing or unreadable
    check_sidecar_compatible(sidecar, trt_version, gpu_name, capability)   # InputError on mismatch
    find_newest_engine(directory, backends=None) -> Path | None   # InputError when the newest is damaged
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lrnnet
from lrnnet._io import file_sha256, write_json_atomic
from lrnnet.errors import InputError
from lrnnet.export.metadata import ModelInfo

SIDECAR_FORMAT = "lrnnet-engine/1"
ENGINE_PREFIX = "lrnnet_"  # default engine names: lrnnet_<precision>.engine / lrnnet_<precision>.onnx
ENGINE_SUFFIXES = (".engine", ".onnx")
BACKENDS = ("tensorrt", "onnxruntime")


@dataclass
class EngineSidecar:
    """What an engine is, what built it and what it needs to run. JSON: these fields, plus ``format``."""

    backend: str  # "tensorrt" | "onnxruntime"
    precision: str  # "fp32" | "fp16" | "int8"
    source_onnx: str  # the FP32 export it was built from
    source_sha256: str
    input_profile: dict[str, dict[str, list[int]]]  # input name -> {"min", "opt", "max"} shapes
    model_info: dict[str, Any]  # the source's ModelInfo (as a dict) with this precision
    calibration: dict[str, Any] | None = None  # INT8: method, images, digest (lrnnet.calib.int8.CalibrationRecord)
    tensorrt_version: str | None = None  # TensorRT engines only
    gpu_name: str | None = None
    compute_capability: str | None = None  # "8.9"
    onnxruntime_version: str | None = None  # ONNX Runtime engines only
    optimization: str | None = None  # e.g. ONNX Runtime graph optimisation level, TensorRT builder level
    target: str = ""  # the precision recipe's target runtime (lrnnet.calib.recipes): "onnxruntime" | "tensorrt"
    purpose: str = ""  # what the file is for, in words (as the graph's lrnnet.engine_purpose)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    lrnnet_version: str = lrnnet.__version__
    engine_sha256: str | None = None  # of the engine file itself, set by write_sidecar, checked by read_sidecar

    @property
    def info(self) -> ModelInfo:
        return ModelInfo.from_dict(dict(self.model_info), "engine sidecar")  # the one schema (export.metadata)

    def to_dict(self) -> dict[str, Any]:
        return {"format": SIDECAR_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "sidecar") -> EngineSidecar:
        if data.get("format") != SIDECAR_FORMAT:
            raise InputError(f"{source} is not an lrnnet engine sidecar (format {data.get('format')!r}, "
                             f"expected {SIDECAR_FORMAT!r}); rebuild the engine with lrnnet-build-engine")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:  # a required field missing
            raise InputError(f"{source} is incomplete ({exc}); rebuild the engine with lrnnet-build-engine") from exc


def sidecar_path(engine: str | Path) -> Path:
    """``lrnnet_fp16.engine`` -> ``lrnnet_fp16.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def model_files(model: str | Path | None) -> list[Path]:
    """The files a model is read from: itself and, when it has one, its sidecar (what a command that reads the
    model must never overwrite, e.g. with `--json lrnnet_fp16.onnx.json`)."""
    if model is None:
        return []
    return [Path(model), *([sidecar_path(model)] if sidecar_path(model).is_file() else [])]


def write_sidecar(engine: str | Path, sidecar: EngineSidecar) -> Path:
    path = sidecar_path(engine)
    sidecar = dataclasses.replace(sidecar, engine_sha256=file_sha256(Path(engine)))
    write_json_atomic(path, sidecar.to_dict())
    return path


def read_sidecar(engine: str | Path) -> EngineSidecar:
    path = sidecar_path(engine)
    if not path.is_file():
        raise InputError(f"{engine} has no sidecar {path.name}; it was not built by lrnnet-build-engine "
                         "(rebuild it, or run the ONNX it came from)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read engine sidecar {path} ({type(exc).__name__}); rebuild the engine") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} is not an lrnnet engine sidecar; rebuild the engine")
    sidecar = EngineSidecar.from_dict(data, str(path))
    # Integrity (lrnnet._io, README Errors): bytes flipped inside the engine are refused here.
    if sidecar.engine_sha256 is not None and Path(engine).is_file() and \
            file_sha256(Path(engine)) != sidecar.engine_sha256:
        raise InputError(f"{engine} is corrupt: it does not match the SHA-256 its sidecar {path.name} recorded "
                         "when it was built (damaged on disk or in transfer); rebuild it with lrnnet-build-engine")
    return sidecar


def check_sidecar_compatible(sidecar: EngineSidecar, trt_version: str | None, gpu_name: str | None,
                             capability: str | None) -> None:
    """Raise InputError, naming both sides, when a TensorRT engine cannot run on this TensorRT and GPU.

    TensorRT engines are tied to the exact TensorRT version and to the GPU's compute capability
    (engines are not built hardware-compatible); the GPU name differing with the same capability is
    allowed (same architecture). ONNX Runtime engines need neither, and always pass.
    """
    if sidecar.backend != "tensorrt":
        return
    built = f"built with TensorRT {sidecar.tensorrt_version} for {sidecar.gpu_name} (compute {sidecar.compute_capability})"
    rebuild = "rebuild it here with lrnnet-build-engine"
    if trt_version is None:
        raise InputError(f"this engine was {built}, but TensorRT is not installed here; "
                         "install it with: pip install 'lrnnet[tensorrt]', or use an ONNX engine")
    if gpu_name is None:
        raise InputError(f"this engine was {built}, but this machine has no CUDA GPU; use an ONNX engine "
                         "(lrnnet-build-engine --backend onnxruntime)")
    if trt_version != sidecar.tensorrt_version:
        raise InputError(f"this engine was {built}, but this machine has TensorRT {trt_version}; {rebuild}")
    if capability != sidecar.compute_capability:
        raise InputError(f"this engine was {built}, but this GPU is {gpu_name} (compute {capability}); {rebuild}")


def find_newest_engine(directory: str | Path = ".", backends: Collection[str] | None = None) -> Path | None:
    """The most recently built ``lrnnet_*.engine`` / ``lrnnet_*.onnx`` in `directory` that has a sidecar.

    `backends` limits the choice (e.g. ``{"onnxruntime"}`` on a machine without TensorRT); TensorRT-ready
    graphs (``lrnnet_<precision>.trt.onnx``, the input of a TensorRT build) are skipped. Newest by the
    engine file's modification time. A newest one that is damaged (an unreadable sidecar, an engine that
    does not match its recorded SHA-256, such as a truncated copy) is InputError naming it: an older
    engine silently in its place would run another precision or model than the one just built.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    candidates: list[tuple[int, str, Path, InputError | None]] = []
    for path in directory.iterdir():
        if not (path.name.startswith(ENGINE_PREFIX) and path.suffix in ENGINE_SUFFIXES and path.is_file()):
            continue
        if not sidecar_path(path).is_file():
            continue
        try:
            sidecar = read_sidecar(path)
        except InputError as exc:
            if path.suffix == ".engine" and backends is not None and "tensorrt" not in backends:
                continue  # could not run here even if whole
            candidates.append((path.stat().st_mtime_ns, path.name, path, exc))
            continue
        if backends is not None and sidecar.backend not in backends:
            continue
        if path.suffix == ".onnx" and sidecar.target == "tensorrt":
            continue  # a TensorRT-ready graph is what a TensorRT engine is built from, not an engine to run
        candidates.append((path.stat().st_mtime_ns, path.name, path, None))
    if not candidates:
        return None
    _, _, newest, damage = max(candidates, key=lambda candidate: candidate[:2])
    if damage is not None:
        raise InputError(f"the newest built engine here, {newest}, is damaged: {damage} (or pass --model to run "
                         "another model)")
    return newest
