"""Build a TensorRT engine from a precision ONNX, with TensorRT 10.x or 11.x.

Precision lives in the graph (FP16 casts, INT8 Q/DQ: lrnnet.calib), so the network is strongly
typed: on 10.x through ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, on 11.x always (the flag
and the FP16/INT8 builder flags are gone there). The optional legacy path (``legacy_calibrator``,
10.x only) builds the FP32 graph as a weakly typed network with the INT8 flag and TensorRT's
``IInt8EntropyCalibrator2`` fed by the same Cityscapes reader as ONNX Runtime's quantizer.

TensorRT is imported inside the functions (``lazy_import`` gives the install hint, then a plain
``import tensorrt as trt`` so that mypy checks every call against tensorrt-stubs); the classes
that derive from TensorRT interfaces are defined inside factory functions for the same reason.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrnnet._io import atomic_output, write_bytes_atomic
from lrnnet._lazy import lazy_import
from lrnnet.engine.device import is_real_tensorrt
from lrnnet.engine.profile import InputProfile
from lrnnet.errors import InputError, MissingDependencyError
from lrnnet.log import logger, progress_bar, timed_step

if TYPE_CHECKING:
    import tensorrt as trt

    from lrnnet.calib.reader import CalibrationReader

SUPPORTED_MAJOR_VERSIONS = (10, 11)
MAX_OPTIMIZATION_LEVEL = 5
_PURPOSE = "building TensorRT engines"


@dataclass(frozen=True)
class TensorRTOptions:
    """Builder settings; None leaves TensorRT's default."""

    workspace_mib: int | None = None  # memory pool limit for tactics' scratch space
    timing_cache: Path | None = None  # read when it exists, written after the build
    optimization_level: int | None = None  # 0..5, TensorRT's default 3
    legacy_calibrator: bool = False  # TensorRT 10 only: implicit INT8 with IInt8EntropyCalibrator2

    def __post_init__(self) -> None:
        if self.workspace_mib is not None and self.workspace_mib <= 0:
            raise InputError(f"--workspace must be a positive number of MiB, got {self.workspace_mib}")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= MAX_OPTIMIZATION_LEVEL:
            raise InputError(f"--builder-optimization-level must be 0..{MAX_OPTIMIZATION_LEVEL}, "
                             f"got {self.optimization_level}")


def import_tensorrt() -> Any:
    """The tensorrt module, or MissingDependencyError saying what to install; checks the major version."""
    module = lazy_import("tensorrt", purpose=_PURPOSE)
    if not is_real_tensorrt(module):
        raise MissingDependencyError(f"TensorRT is not installed (only its type stubs) for {_PURPOSE}; install it "
                                     "with: pip install 'lrnnet[tensorrt]' (needs an NVIDIA GPU and driver)")
    version = str(getattr(module, "__version__", "0"))
    if tensorrt_major(version) not in SUPPORTED_MAJOR_VERSIONS:
        raise InputError(f"TensorRT {version} is not supported; lrnnet builds with TensorRT 10.x or 11.x "
                         "(pip install 'lrnnet[tensorrt]')")
    return module


def tensorrt_major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def build_tensorrt_engine(onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str],
                          profile: InputProfile, options: TensorRTOptions = TensorRTOptions(),
                          calibration_reader: CalibrationReader | None = None,
                          calibration_cache: Path | None = None) -> str:
    """Parse `onnx_path`, build, and write the serialized engine to `engine_path` atomically.

    Returns the TensorRT version used. `calibration_reader` (and `calibration_cache`, TensorRT's own
    cache file) are for ``options.legacy_calibrator`` only.
    """
    import_tensorrt()
    import tensorrt as trt

    version = trt.__version__
    major = tensorrt_major(version)
    if options.legacy_calibrator and major >= 11:
        raise InputError(f"--legacy-calibrator needs TensorRT 10 (TensorRT {version} removed implicit INT8 "
                         "calibration); drop it: the default INT8 path (explicit Q/DQ) works on 10 and 11")
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(_network_flags(major, options.legacy_calibrator))
    parser = trt.OnnxParser(network, trt_logger)
    with timed_step(f"Parsing {onnx_path} with TensorRT {version}"):
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise InputError(f"TensorRT {version} cannot parse {onnx_path}: {'; '.join(errors) or 'unknown error'}")

    config = builder.create_builder_config()
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.optimization_level is not None:
        config.builder_optimization_level = options.optimization_level
    if profile.dynamic:
        trt_profile = builder.create_optimization_profile()
        trt_profile.set_shape(profile.name, trt.Dims(list(profile.min)), trt.Dims(list(profile.opt)),
                              trt.Dims(list(profile.max)))
        config.add_optimization_profile(trt_profile)
        if options.legacy_calibrator:
            config.set_calibration_profile(trt_profile)
    timing_cache = _load_timing_cache(config, options.timing_cache)
    monitor = make_progress_monitor()  # kept referenced until the build is over, as TensorRT requires
    config.progress_monitor = monitor
    calibrator = None
    if options.legacy_calibrator:
        if calibration_reader is None:
            raise InputError("--legacy-calibrator needs calibration images (--calib-data)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers TensorRT keeps out of INT8 may still use FP16
        calibrator = make_entropy_calibrator(calibration_reader, calibration_cache)
        config.int8_calibrator = calibrator

    with timed_step("Building the TensorRT engine (minutes on a first build; the timing cache speeds up the next)"):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT {version} failed to build an engine from {onnx_path} (see its log above)")
    with atomic_output(engine_path) as tmp:
        tmp.write_bytes(memoryview(serialized))
    if options.timing_cache is not None and timing_cache is not None:
        write_bytes_atomic(options.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    del calibrator, monitor
    return version


def _network_flags(major: int, legacy_calibrator: bool) -> int:
    import tensorrt as trt

    if major >= 11 or legacy_calibrator:
        # 11.x: every network is strongly typed, there is no flag to set (EXPLICIT_BATCH went in 10.0).
        # Legacy: implicit INT8 needs a weakly typed network (the builder picks precisions).
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _load_timing_cache(config: trt.IBuilderConfig, path: Path | None) -> trt.ITimingCache | None:
    """Attach the timing cache at `path` (an empty one if the file does not exist yet)."""
    if path is None:
        return None
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        logger.warning("timing cache %s was made for another TensorRT or GPU; starting a new one", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=True)
    else:
        logger.info("timing cache: %s (%s)", path, "read" if data else "new")
    return cache


def make_progress_monitor() -> trt.IProgressMonitor:
    """A TensorRT progress monitor that shows the builder's top-level phases as progress bars."""
    import tensorrt as trt

    class _ProgressMonitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()  # TensorRT may call from several threads
            self._bars: dict[str, Any] = {}
            self._started: dict[str, float] = {}

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            with self._lock:
                self._started[phase_name] = time.perf_counter()
                if parent_phase is None:
                    self._bars[phase_name] = progress_bar(phase_name, total=num_steps, unit="step")
                logger.debug("TensorRT: %s started (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.update(1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()
                started = self._started.pop(phase_name, time.perf_counter())
                logger.debug("TensorRT: %s finished in %.1f s", phase_name, time.perf_counter() - started)

    return _ProgressMonitor()


def make_entropy_calibrator(reader: CalibrationReader, cache_path: Path | None) -> trt.IInt8Calibrator:
    """TensorRT 10's legacy ``IInt8EntropyCalibrator2`` over the Cityscapes calibration reader.

    Each batch is copied to one device buffer (cuda-python); TensorRT's own calibration cache is
    read from and written to `cache_path` when given.
    """
    import tensorrt as trt

    cudart = lazy_import("cuda.bindings.runtime", purpose="the TensorRT legacy INT8 calibrator")

    def check(result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err} in the INT8 calibrator")
        return rest[0] if len(rest) == 1 else rest

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            reader.rewind()
            self._device: int | None = None
            self._nbytes = 0

        def get_batch_size(self) -> int:
            return reader.batch

        def get_batch(self, names: list[str]) -> list[int]:
            feed = reader.get_next()
            if feed is None:
                return []
            array = feed[reader.input_name]
            if self._device is None:
                self._nbytes = array.nbytes
                self._device = int(check(cudart.cudaMalloc(self._nbytes)))
            check(cudart.cudaMemcpy(self._device, array.ctypes.data, array.nbytes,
                                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            return [self._device for _ in names]

        def read_calibration_cache(self) -> bytes | None:
            if cache_path is not None and cache_path.is_file():
                logger.info("TensorRT calibration cache: reading %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_path is not None:
                write_bytes_atomic(cache_path, bytes(memoryview(cache)))

        def __del__(self) -> None:
            if self._device is not None:
                cudart.cudaFree(self._device)

    return _EntropyCalibrator()
