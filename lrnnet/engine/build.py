"""lrnnet-build-engine as a library call: FP32 export -> precision ONNX -> engine + sidecar.

    result = build_engine(BuildOptions(onnx=Path("lrnnet.onnx"), precision="int8", calib_data=root))

Precision first (lrnnet.calib: FP16 conversion or INT8 Q/DQ, checked by onnx.checker and ONNX
Runtime), then the backend: TensorRT when it and a GPU are here (``backend="auto"``), otherwise
ONNX Runtime. Nothing is written until the precision graph exists and loads; each file is written
atomically, the sidecar last.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from lrnnet._io import keep_outputs, preflight
from lrnnet.calib.graph import SourceModel, load_source_onnx
from lrnnet.calib.int8 import CalibrationRecord, Int8Options
from lrnnet.engine.device import GpuInfo, current_gpu, tensorrt_version
from lrnnet.engine.onnxruntime_builder import (
    OPTIMIZATION_LEVEL,
    check_runs_on_onnxruntime,
    optimize_for_onnxruntime,
)
from lrnnet.engine.profile import InputProfile, input_profile
from lrnnet.engine.sidecar import ENGINE_PREFIX, EngineSidecar, sidecar_path, write_sidecar
from lrnnet.engine.tensorrt_builder import TensorRTOptions
from lrnnet.errors import InputError, MissingDependencyError
from lrnnet.export.metadata import ModelInfo
from lrnnet.log import logger

PRECISIONS = ("fp32", "fp16", "int8")
BACKEND_CHOICES = ("auto", "tensorrt", "onnxruntime")
DEFAULT_SOURCE = Path("lrnnet.onnx")
TENSORRT_INSTALL = "pip install 'lrnnet[tensorrt]' on a machine with an NVIDIA GPU and driver"


@dataclass(frozen=True)
class BuildOptions:
    """Everything a build needs; validated here, once."""

    onnx: Path = DEFAULT_SOURCE
    precision: str = "fp16"
    backend: str = "auto"
    output: Path | None = None  # the engine; default lrnnet_<precision>.engine|.onnx in the current folder
    calib_data: Path | None = None  # Cityscapes root (INT8)
    int8: Int8Options = field(default_factory=Int8Options)
    calib_cache: Path | None = None
    keep_io_fp32: bool = True
    max_batch: int | None = None  # dynamic exports: largest batch the engine accepts
    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision '{self.precision}'; choose one of {', '.join(PRECISIONS)}")
        if self.backend not in BACKEND_CHOICES:
            raise InputError(f"unknown backend '{self.backend}'; choose one of {', '.join(BACKEND_CHOICES)}")
        if self.precision == "int8" and self.calib_data is None and \
                (self.calib_cache is None or not self.calib_cache.is_file()):
            raise InputError("--int8 needs calibration images: pass --calib-data CITYSCAPES_ROOT "
                             "(the training split is used), or --calib-cache naming an existing cache")
        if self.tensorrt.legacy_calibrator and (self.precision != "int8" or self.backend == "onnxruntime"):
            raise InputError("--legacy-calibrator is for --int8 with the TensorRT backend")
        if self.tensorrt.legacy_calibrator and self.calib_data is None:
            raise InputError("--legacy-calibrator needs --calib-data (TensorRT's calibrator reads the images)")


@dataclass
class BuildResult:
    backend: str
    reason: str  # why this backend
    precision: str
    engine: Path
    sidecar: Path
    precision_onnx: Path  # the precision graph (for ONNX Runtime: the engine itself)
    calibration: CalibrationRecord | None
    seconds: float

    def summary(self) -> str:
        calibrated = ""
        if self.calibration is not None:
            c = self.calibration
            source = f"reused cache {c.cache}" if c.images_read == 0 else f"{c.images_read} images read"
            calibrated = f"; INT8 calibrated on {c.images} images ({c.method}, {source})"
        return (f"wrote {self.engine} ({self.precision} on {self.backend}; {self.reason}{calibrated}) and "
                f"{self.sidecar.name} in {self.seconds:.1f} s")


def choose_backend(requested: str) -> tuple[str, str, GpuInfo | None]:
    """(backend, why, gpu) for `requested` ("auto" decides). TensorRT needs both itself and a GPU."""
    version, gpu = tensorrt_version(), current_gpu()
    if requested == "onnxruntime":
        return "onnxruntime", "asked for", gpu
    if version is not None and gpu is not None:
        why = "asked for" if requested == "tensorrt" else "auto"
        return "tensorrt", f"{why}: TensorRT {version} and {gpu.name} (compute {gpu.capability}) found", gpu
    missing = "TensorRT is not installed" if version is None else f"TensorRT {version} is here but no CUDA GPU"
    if requested == "tensorrt":
        return "tensorrt", missing, gpu
    return "onnxruntime", f"auto: {missing}", gpu


def default_engine_path(precision: str, backend: str, directory: Path = Path(".")) -> Path:
    return directory / f"{ENGINE_PREFIX}{precision}{'.engine' if backend == 'tensorrt' else '.onnx'}"


def _engine_path(options: BuildOptions, backend: str) -> Path:
    path = options.output or default_engine_path(options.precision, backend)
    if backend == "onnxruntime" and path.suffix != ".onnx":
        raise InputError(f"an ONNX Runtime engine is an .onnx file; -o {path} should end in .onnx")
    if backend == "tensorrt" and path.suffix == ".onnx":
        raise InputError(f"a TensorRT engine is not an .onnx file (that name is for its precision graph); "
                         f"use -o {path.with_suffix('.engine')}")
    outputs = [path, sidecar_path(path)] + ([path.with_suffix(".onnx"), sidecar_path(path.with_suffix(".onnx"))]
                                            if backend == "tensorrt" else [])
    preflight(inputs=[options.onnx, options.calib_cache], outputs=outputs)  # before any work (lrnnet._io)
    return path


def make_precision_graph(source: SourceModel, options: BuildOptions) -> tuple[onnx.ModelProto, CalibrationRecord | None]:
    """The FP32/FP16/INT8 graph of `source` (ModelInfo.precision set), loadable by ONNX Runtime."""
    if options.precision == "fp16":
        from lrnnet.calib.fp16 import convert_to_fp16

        model, record = convert_to_fp16(source, keep_io_fp32=options.keep_io_fp32), None
    elif options.precision == "int8":
        from lrnnet.calib.int8 import quantize_int8

        model, record = quantize_int8(source, options.calib_data, options.int8, options.calib_cache)
    else:
        model, record = source.model, None
    check_runs_on_onnxruntime(model, f"the {options.precision} graph of {source.path}")
    return model, record


def build_engine(options: BuildOptions) -> BuildResult:
    """Build and write the engine and its sidecar; see the module docstring."""
    start = time.perf_counter()
    source = load_source_onnx(options.onnx)
    backend, reason, gpu = choose_backend(options.backend)
    logger.info("Backend: %s (%s)", backend, reason)
    engine = _engine_path(options, backend)
    profile = input_profile(source.model, source.info, source.input_name, options.max_batch)

    if options.tensorrt.legacy_calibrator:
        return _build_legacy_int8(source, options, engine, profile, reason, gpu, start)

    model, record = make_precision_graph(source, options)
    info = ModelInfo.from_onnx_model(model)
    sidecar = EngineSidecar(backend="onnxruntime", precision=options.precision, source_onnx=str(options.onnx),
                            source_sha256=source.sha256, input_profile=profile.to_dict(),
                            model_info=dataclasses.asdict(info), calibration=_calibration_summary(record),
                            onnxruntime_version=_onnxruntime_version(),
                            optimization=f"onnxruntime {OPTIMIZATION_LEVEL}")
    # Every build writes the ONNX Runtime engine (lrnnet_<precision>.onnx + sidecar): with the
    # TensorRT backend it sits beside the .engine, runnable where TensorRT is not (and it is what a
    # TensorRT build that cannot happen here leaves behind).
    onnx_engine = engine if backend == "onnxruntime" else engine.with_suffix(".onnx")
    optimize_for_onnxruntime(model, onnx_engine)
    onnx_sidecar = write_sidecar(onnx_engine, sidecar)
    if backend == "onnxruntime":
        return BuildResult(backend, reason, options.precision, engine, onnx_sidecar, engine, record,
                           time.perf_counter() - start)

    if gpu is None or tensorrt_version() is None:
        keep_outputs()  # the error names the ONNX Runtime engine as usable: it stays (lrnnet._io)
        raise MissingDependencyError(
            f"wrote the {options.precision} ONNX Runtime engine {onnx_engine}, but cannot build a TensorRT engine: "
            f"{reason}; install it with: {TENSORRT_INSTALL}; meanwhile run it with: "
            f"lrnnet-infer VIDEO --model {onnx_engine}")
    from lrnnet.engine.tensorrt_builder import build_tensorrt_engine

    # TensorRT parses the precision graph as made (not ONNX Runtime's optimisation of it), from a
    # scratch file beside the engine.
    with tempfile.TemporaryDirectory(prefix=".lrnnet-build-", dir=engine.parent) as scratch:
        graph_file = Path(scratch) / f"{engine.stem}.onnx"
        graph_file.write_bytes(model.SerializeToString())
        version = build_tensorrt_engine(graph_file, engine, profile, options.tensorrt)
    trt_sidecar = dataclasses.replace(sidecar, backend="tensorrt", tensorrt_version=version, gpu_name=gpu.name,
                                      compute_capability=gpu.capability, onnxruntime_version=None,
                                      optimization=_trt_optimization(options.tensorrt),
                                      created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return BuildResult(backend, reason, options.precision, engine, write_sidecar(engine, trt_sidecar), onnx_engine,
                       record, time.perf_counter() - start)


def _onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def _build_legacy_int8(source: SourceModel, options: BuildOptions, engine: Path, profile: InputProfile, reason: str,
                       gpu: GpuInfo | None, start: float) -> BuildResult:
    """TensorRT 10's implicit INT8: the FP32 graph, calibrated by TensorRT's entropy calibrator."""
    from lrnnet.calib.reader import (
        CityscapesCalibrationReader,
        calibration_digest,
        select_calibration_samples,
    )
    from lrnnet.engine.tensorrt_builder import build_tensorrt_engine

    if gpu is None or tensorrt_version() is None:
        raise MissingDependencyError(f"--legacy-calibrator builds with TensorRT: {reason}; install it with: "
                                     f"{TENSORRT_INSTALL}")
    assert options.calib_data is not None  # BuildOptions requires it with legacy_calibrator
    samples = select_calibration_samples(options.calib_data, options.int8.images)
    reader = CityscapesCalibrationReader(samples, source.info, source.input_name, batch=source.info.batch)
    version = build_tensorrt_engine(source.path, engine, profile, options.tensorrt, reader, options.calib_cache)
    record = CalibrationRecord(method="tensorrt-entropy2", images=len(samples),
                               digest=calibration_digest(samples, options.calib_data),
                               images_read=reader.images_read,
                               cache=str(options.calib_cache) if options.calib_cache else None)
    info = dataclasses.replace(source.info, precision="int8")
    sidecar = EngineSidecar(backend="tensorrt", precision="int8", source_onnx=str(options.onnx),
                            source_sha256=source.sha256, input_profile=profile.to_dict(),
                            model_info=dataclasses.asdict(info), calibration=_calibration_summary(record),
                            tensorrt_version=version, gpu_name=gpu.name, compute_capability=gpu.capability,
                            optimization=_trt_optimization(options.tensorrt) + ", legacy INT8 calibrator")
    return BuildResult("tensorrt", reason, "int8", engine, write_sidecar(engine, sidecar), source.path, record,
                       time.perf_counter() - start)


def _calibration_summary(record: CalibrationRecord | None) -> dict | None:
    if record is None:
        return None
    return {"method": record.method, "images": record.images, "digest": record.digest, "cache": record.cache}


def _trt_optimization(options: TensorRTOptions) -> str:
    level = options.optimization_level if options.optimization_level is not None else "default"
    return f"tensorrt builder optimization level {level}"
