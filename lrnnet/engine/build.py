"""lrnnet-build-engine as a library call: FP32 export -> precision ONNX for a target -> engine + sidecar.

    result = build_engine(BuildOptions(onnx=Path("lrnnet.onnx"), precision="int8", calib_data=root))

The target is the backend (``backend="auto"``: TensorRT when it and a GPU are here, otherwise ONNX
Runtime), and it picks the precision recipe (lrnnet.calib.recipes). Precision first (lrnnet.calib:
FP16 conversion or INT8 Q/DQ, checked by onnx.checker and ONNX Runtime, and for TensorRT by its
parser's rules), then the engine:

* ONNX Runtime: ``lrnnet_<precision>.onnx``, the precision graph (FP32/INT8 graph-optimised by
  ONNX Runtime), plus its sidecar.
* TensorRT: ``lrnnet_<precision>.trt.onnx``, the TensorRT-ready precision graph, plus its sidecar,
  written on any machine; with TensorRT and a GPU also ``lrnnet_<precision>.engine``. Without them
  the build stops there (exit 0) and says how to build the engine on the GPU machine: from the
  TensorRT-ready graph, with lrnnet-build-engine or trtexec.

Nothing is written until the precision graph exists and passes its checks; each file is written
atomically, the sidecar last.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from lrnnet._io import check_writable, preflight, write_bytes_atomic
from lrnnet.calib.graph import SourceModel, load_source_onnx
from lrnnet.calib.int8 import DEFAULT_CALIB_METHOD, CalibrationRecord, Int8Options
from lrnnet.calib.reader import DEFAULT_CALIB_IMAGES
from lrnnet.calib.recipes import TARGETS, purpose_of, recipes_for
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
from lrnnet.export.metadata import ModelInfo, read_model_info
from lrnnet.log import logger, note

PRECISIONS = ("fp32", "fp16", "int8")
BACKEND_CHOICES = ("auto", "tensorrt", "onnxruntime")
DEFAULT_SOURCE = Path("lrnnet.onnx")
TENSORRT_READY_SUFFIX = ".trt.onnx"  # lrnnet_int8.engine is built from lrnnet_int8.trt.onnx
TENSORRT_INSTALL = "pip install 'lrnnet[tensorrt]' on a machine with an NVIDIA GPU and driver"


@dataclass(frozen=True)
class BuildOptions:
    """Everything a build needs; validated here, once."""

    onnx: Path = DEFAULT_SOURCE
    precision: str = "fp16"
    backend: str = "auto"
    output: Path | None = None  # the engine; default lrnnet_<precision>.engine|.onnx in the current folder
    calib_data: Path | None = None  # INT8: a Cityscapes root, a folder of images or a video (lrnnet.calib.reader)
    int8: Int8Options = field(default_factory=Int8Options)
    calib_cache: Path | None = None
    keep_io_fp32: bool = True
    max_batch: int | None = None  # dynamic exports: largest batch the engine accepts
    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)

    def __post_init__(self) -> None:
        if self.onnx.is_dir():
            raise InputError(f"ONNX file {self.onnx} is a directory; give the export itself, such as "
                             f"{self.onnx / DEFAULT_SOURCE}")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision '{self.precision}'; choose one of {', '.join(PRECISIONS)}")
        if self.backend not in BACKEND_CHOICES:
            raise InputError(f"unknown backend '{self.backend}'; choose one of {', '.join(BACKEND_CHOICES)}")
        if self.precision == "int8" and self.calib_data is None and \
                (self.calib_cache is None or not self.calib_cache.exists()) and \
                _tensorrt_ready_info(self.onnx) is None:  # a TensorRT-ready INT8 graph is calibrated already
            raise InputError("--int8 needs calibration images: pass --calib-data with a Cityscapes root, a folder "
                             "of images or a video, or --calib-cache naming an existing cache")
        # The target of auto is checked once it has chosen (build_engine).
        check_options_apply(self, None if self.backend == "auto" else self.backend, from_ready=False)
        if self.tensorrt.legacy_calibrator and self.calib_data is None:
            raise InputError("--legacy-calibrator needs --calib-data (TensorRT's calibrator reads the images)")


@dataclass(frozen=True)
class OptionScope:
    """Where one option applies: the targets and precisions it means something for."""

    flag: str
    given: Callable[[BuildOptions], bool]
    targets: tuple[str, ...]
    precisions: tuple[str, ...]
    from_ready: bool  # it still applies when the source is a TensorRT-ready graph (calibrated already)
    why: str  # what the option is for, said when it is refused


# The one table of which option applies where. An option given where it cannot apply is refused,
# naming it and why (trtexec and Polygraphy refuse contradictory flags too), never silently ignored.
OPTION_SCOPES = (
    OptionScope("--calib-data", lambda o: o.calib_data is not None, TARGETS, ("int8",), False,
                "INT8 calibration from the FP32 export"),
    OptionScope("--calib-cache", lambda o: o.calib_cache is not None, TARGETS, ("int8",), False,
                "INT8 calibration from the FP32 export"),
    OptionScope("--calib-images", lambda o: o.int8.images != DEFAULT_CALIB_IMAGES, TARGETS, ("int8",), False,
                "INT8 calibration from the FP32 export"),
    OptionScope("--calib-method", lambda o: o.int8.method != DEFAULT_CALIB_METHOD, TARGETS, ("int8",), False,
                "INT8 calibration from the FP32 export"),
    OptionScope("--no-keep-io-fp32", lambda o: not o.keep_io_fp32, TARGETS, ("fp16",), False,
                "the FP16 conversion of the FP32 export"),
    OptionScope("--max-batch", lambda o: o.max_batch is not None, ("tensorrt",), PRECISIONS, True,
                "TensorRT's optimization profile (ONNX Runtime takes any batch of a dynamic graph)"),
    OptionScope("--workspace", lambda o: o.tensorrt.workspace_mib is not None, ("tensorrt",), PRECISIONS, True,
                "TensorRT's builder"),
    OptionScope("--timing-cache", lambda o: o.tensorrt.timing_cache is not None, ("tensorrt",), PRECISIONS, True,
                "TensorRT's builder"),
    OptionScope("--builder-optimization-level", lambda o: o.tensorrt.optimization_level is not None,
                ("tensorrt",), PRECISIONS, True, "TensorRT's builder"),
    OptionScope("--legacy-calibrator", lambda o: o.tensorrt.legacy_calibrator, ("tensorrt",), ("int8",), False,
                "TensorRT 10's implicit INT8 calibration of the FP32 export"),
)


def check_options_apply(options: BuildOptions, target: str | None, from_ready: bool, why_target: str = "") -> None:
    """InputError naming the first option given that cannot apply to this build (OPTION_SCOPES); target None: not
    chosen yet (auto), only the precision is checked."""
    for scope in OPTION_SCOPES:
        if not scope.given(options):
            continue
        if target is not None and target not in scope.targets:
            chosen = f" ({why_target})" if why_target else ""
            raise InputError(f"{scope.flag} is for {scope.why}; this build targets {target}{chosen}")
        if options.precision not in scope.precisions:
            raise InputError(f"{scope.flag} is for {scope.why}, not --{options.precision}")
        if from_ready and not scope.from_ready:
            raise InputError(f"{scope.flag} is for {scope.why}; {options.onnx} is a TensorRT-ready graph, "
                             "calibrated and converted already")


@dataclass
class BuildResult:
    backend: str
    reason: str  # why this backend
    precision: str
    engine: Path | None  # None: a TensorRT target where TensorRT is not here (only the graph was written)
    sidecar: Path  # the engine's sidecar, or the TensorRT-ready graph's when no engine was built
    precision_onnx: Path  # the precision graph (for ONNX Runtime: the engine itself)
    calibration: CalibrationRecord | None
    seconds: float
    next_step: str | None = None  # how to build the engine elsewhere (engine is None)

    def summary(self) -> str:
        calibrated = ""
        if self.calibration is not None:
            c = self.calibration
            source = f"reused cache {c.cache}" if c.images_read == 0 else f"{c.images_read} images read"
            calibrated = f"; INT8 calibrated on {c.images} images ({c.method}, {source})"
        if self.engine is None:
            return (f"wrote {self.precision_onnx} and {self.sidecar} (TensorRT-ready {self.precision} graph"
                    f"{calibrated}) in {self.seconds:.1f} s; {self.next_step}")
        graph = f", {self.precision_onnx}" if self.precision_onnx != self.engine else ""
        return (f"wrote {self.engine}{graph} ({self.precision} on {self.backend}; {self.reason}{calibrated}) and "
                f"{self.sidecar} in {self.seconds:.1f} s")


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
    outputs = [path, sidecar_path(path)] + ([tensorrt_ready_path(path), sidecar_path(tensorrt_ready_path(path))]
                                            if backend == "tensorrt" else [])
    caches = _cache_outputs(options)
    for cache, what in caches.items():  # first, so that a refusal names the flag
        check_writable(cache, what=what)
    preflight(inputs=[options.onnx], outputs=outputs + list(caches))  # before any work (lrnnet._io)
    return path


def _cache_outputs(options: BuildOptions) -> dict[Path, str]:
    """The calibration cache (read, and written when it does not match) and its TensorRT table, held to -o's rules."""
    if options.precision != "int8" or options.calib_cache is None:
        return {}
    cache = {options.calib_cache: "--calib-cache"}
    if options.tensorrt.legacy_calibrator:  # TensorRT's own cache file, no table beside it
        return cache
    from lrnnet.calib.cache import trt_table_path

    return {**cache, trt_table_path(options.calib_cache): "--calib-cache's TensorRT table"}


def tensorrt_ready_path(engine: Path) -> Path:
    """``lrnnet_int8.engine`` -> ``lrnnet_int8.trt.onnx``: the graph a TensorRT engine is built from."""
    return engine.with_name(engine.stem + TENSORRT_READY_SUFFIX)


def make_precision_graph(source: SourceModel, options: BuildOptions,
                         target: str = "onnxruntime") -> tuple[onnx.ModelProto, CalibrationRecord | None]:
    """The FP32/FP16/INT8 graph of `source` by `target`'s recipe (metadata says which and what for).

    Every graph loads on ONNX Runtime's CPU provider (that is checked); a TensorRT-target graph also
    passes the TensorRT parser's rules (lrnnet.export.tensorrt_rules), or this raises InputError.
    """
    if options.precision == "fp16":
        from lrnnet.calib.fp16 import convert_to_fp16

        model, record = convert_to_fp16(source, keep_io_fp32=options.keep_io_fp32, target=target), None
    elif options.precision == "int8":
        from lrnnet.calib.int8 import quantize_int8

        model, record = quantize_int8(source, options.calib_data, options.int8, options.calib_cache, target=target)
    else:
        model, record = onnx.ModelProto(), None
        model.CopyFrom(source.model)
        dataclasses.replace(source.info, engine_target=target,
                            engine_purpose=purpose_of(target, "fp32")).write_to(model)
    what = f"the {options.precision} graph of {source.path}"
    check_runs_on_onnxruntime(model, what, source=source.model)
    if target == "tensorrt":
        check_tensorrt_rules(model, what)
    return model, record


def check_tensorrt_rules(model: onnx.ModelProto, what: str) -> None:
    """The TensorRT ONNX parser's documented rules (op types, data types, attributes); InputError if broken."""
    from lrnnet.export.tensorrt_rules import check_tensorrt_parser_rules

    try:
        check_tensorrt_parser_rules(model)
    except InputError as exc:
        raise InputError(f"{what} would not parse on TensorRT: {exc}") from exc


def build_engine(options: BuildOptions) -> BuildResult:
    """Build and write the engine and its sidecar; see the module docstring."""
    start = time.perf_counter()
    ready = _tensorrt_ready_info(options.onnx)
    if ready is not None:
        return _build_from_tensorrt_ready(options, ready, start)
    source = load_source_onnx(options.onnx)
    check_runs_on_onnxruntime(source.model, str(source.path))  # before calibration: metadata that lies is refused
    backend, reason, gpu = choose_backend(options.backend)
    check_options_apply(options, backend, from_ready=False, why_target=reason)
    # The summary line names the backend and why; said up front only with -v, so that a bad output name
    # or bad calibration data found next is the one line a failing build prints.
    logger.debug("Backend: %s (%s)", backend, reason)
    engine = _engine_path(options, backend)
    profile = input_profile(source.model, source.info, source.input_name, options.max_batch)

    if options.tensorrt.legacy_calibrator:
        return _build_legacy_int8(source, options, engine, profile, reason, gpu, start)

    model, record = make_precision_graph(source, options, target=backend)
    if record is not None:
        _say_calibration_method(options.int8.method, record)
    info = ModelInfo.from_onnx_model(model)
    sidecar = EngineSidecar(backend="onnxruntime", precision=options.precision, source_onnx=str(options.onnx),
                            source_sha256=source.sha256, input_profile=profile.to_dict(),
                            model_info=dataclasses.asdict(info), calibration=_calibration_summary(record),
                            onnxruntime_version=_onnxruntime_version(), target=backend,
                            purpose=info.engine_purpose)
    if backend == "onnxruntime":
        if options.precision == "fp16" and not recipes_for(backend).fp16.cpu_optimise:
            # As converted: ONNX Runtime's CPU optimisation of a float16 graph wraps every conv in Casts
            # to float32 (no float16 CPU kernels), which would make the file a slower FP32 graph.
            _write_onnx(model, engine)
            sidecar.optimization = "none (the float16 graph as converted; ONNX Runtime optimises at load)"
        else:
            optimize_for_onnxruntime(model, engine)
            sidecar.optimization = f"onnxruntime {OPTIMIZATION_LEVEL}"
        return BuildResult(backend, reason, options.precision, engine, write_sidecar(engine, sidecar), engine,
                           record, time.perf_counter() - start)

    # TensorRT parses the precision graph as made (not ONNX Runtime's optimisation of it), written
    # beside the engine on every machine: it is what a TensorRT machine builds the engine from.
    graph_file = tensorrt_ready_path(engine)
    _write_onnx(model, graph_file)
    graph_sidecar = write_sidecar(graph_file, dataclasses.replace(sidecar, onnxruntime_version=None))
    if gpu is None or tensorrt_version() is None:
        return BuildResult(backend, reason, options.precision, None, graph_sidecar, graph_file, record,
                           time.perf_counter() - start,
                           next_step=_next_step(graph_file, engine, options, reason, profile))
    return _run_tensorrt_build(options, graph_file, engine, profile, sidecar, record, reason, gpu, start)


def _run_tensorrt_build(options: BuildOptions, graph_file: Path, engine: Path, profile: InputProfile,
                        sidecar: EngineSidecar, record: CalibrationRecord | None, reason: str, gpu: GpuInfo,
                        start: float) -> BuildResult:
    from lrnnet.engine.tensorrt_builder import build_tensorrt_engine

    version = build_tensorrt_engine(graph_file, engine, profile, options.tensorrt)
    trt_sidecar = dataclasses.replace(sidecar, backend="tensorrt", tensorrt_version=version, gpu_name=gpu.name,
                                      compute_capability=gpu.capability, onnxruntime_version=None,
                                      optimization=_trt_optimization(options.tensorrt),
                                      created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return BuildResult("tensorrt", reason, options.precision, engine, write_sidecar(engine, trt_sidecar), graph_file,
                       record, time.perf_counter() - start)


def _next_step(graph_file: Path, engine: Path, options: BuildOptions, reason: str, profile: InputProfile) -> str:
    """One sentence: the engine is built on the GPU machine, and the two commands that build it."""
    lrnnet_flags, trtexec_flags = _tensorrt_flags(options)
    output = "" if options.output is None else f" -o {engine}"
    typed = " --stronglyTyped" if options.precision != "fp32" else ""
    if profile.dynamic:  # trtexec needs the optimisation profile spelled out
        typed += "".join(f" --{kind}Shapes={profile.name}:{'x'.join(map(str, shape))}"
                         for kind, shape in (("min", profile.min), ("opt", profile.opt), ("max", profile.max)))
    return (f"no TensorRT engine here ({reason}): build it on the GPU machine with "
            f"`lrnnet-build-engine {graph_file} --{options.precision} --backend tensorrt{output}{lrnnet_flags}` or "
            f"`trtexec --onnx={graph_file} --saveEngine={engine}{typed}{trtexec_flags}` (TensorRT 10/11; the "
            f"precision is in the graph: no --int8/--fp16 flags)")


def _tensorrt_flags(options: BuildOptions) -> tuple[str, str]:
    """The TensorRT builder settings given, as lrnnet-build-engine and as trtexec flags (carried to the GPU machine)."""
    trt = options.tensorrt
    pairs = []
    if options.max_batch is not None:  # trtexec: in the --maxShapes of the profile
        pairs.append((f" --max-batch {options.max_batch}", ""))
    if trt.workspace_mib is not None:
        pairs.append((f" --workspace {trt.workspace_mib}", f" --memPoolSize=workspace:{trt.workspace_mib}M"))
    if trt.timing_cache is not None:
        pairs.append((f" --timing-cache {trt.timing_cache}", f" --timingCacheFile={trt.timing_cache}"))
    if trt.optimization_level is not None:
        pairs.append((f" --builder-optimization-level {trt.optimization_level}",
                      f" --builderOptimizationLevel={trt.optimization_level}"))
    return "".join(a for a, _ in pairs), "".join(b for _, b in pairs)


def _tensorrt_ready_info(path: Path) -> ModelInfo | None:
    """The metadata of `path` when it is a TensorRT-ready precision graph (made here earlier), else None."""
    if not path.is_file():
        return None  # load_source_onnx says what is wrong
    try:
        info = read_model_info(path)
    except InputError:
        return None  # load_source_onnx says what is wrong
    return info if info.engine_target == "tensorrt" else None


def _build_from_tensorrt_ready(options: BuildOptions, info: ModelInfo, start: float) -> BuildResult:
    """The TensorRT engine of a TensorRT-ready graph (lrnnet_<precision>.trt.onnx): no precision step."""
    from lrnnet._io import file_sha256

    path = options.onnx
    if options.precision != info.precision:
        raise InputError(f"{path} is a TensorRT-ready {info.precision} graph; build it with --{info.precision}, "
                         "or build another precision from the FP32 export")
    if options.backend == "onnxruntime":
        raise InputError(f"{path} is a TensorRT-ready graph; for ONNX Runtime build from the FP32 export "
                         "(lrnnet-build-engine lrnnet.onnx --backend onnxruntime)")
    check_options_apply(options, "tensorrt", from_ready=True)
    _, reason, gpu = choose_backend("tensorrt")
    if gpu is None or tensorrt_version() is None:
        raise MissingDependencyError(f"building the TensorRT engine of {path} needs TensorRT and an NVIDIA GPU: "
                                     f"{reason}; install it with: {TENSORRT_INSTALL}")
    model = onnx.load(str(path))
    check_runs_on_onnxruntime(model, str(path))
    check_tensorrt_rules(model, str(path))
    engine = options.output or default_engine_path(info.precision, "tensorrt")
    if engine.suffix == ".onnx":
        raise InputError(f"a TensorRT engine is not an .onnx file; use -o {engine.with_suffix('.engine')}")
    preflight(inputs=[path], outputs=[engine, sidecar_path(engine)])
    input_name = next(value.name for value in model.graph.input
                      if value.name not in {init.name for init in model.graph.initializer})
    profile = input_profile(model, info, input_name, options.max_batch)
    calibration = info.extra.get("calibration")
    sidecar = EngineSidecar(backend="tensorrt", precision=info.precision, source_onnx=str(path),
                            source_sha256=file_sha256(path), input_profile=profile.to_dict(),
                            model_info=dataclasses.asdict(info), target="tensorrt", purpose=info.engine_purpose,
                            calibration=calibration if isinstance(calibration, dict) else None)
    return _run_tensorrt_build(options, path, engine, profile, sidecar, None, reason, gpu, start)


def _write_onnx(model: onnx.ModelProto, path: Path) -> None:
    # lrnnet's writer, not onnx.save: a full disk is then an OSError naming the file.
    write_bytes_atomic(path, model.SerializeToString())


def _onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def _build_legacy_int8(source: SourceModel, options: BuildOptions, engine: Path, profile: InputProfile, reason: str,
                       gpu: GpuInfo | None, start: float) -> BuildResult:
    """TensorRT 10's implicit INT8: the FP32 graph, calibrated by TensorRT's entropy calibrator."""
    from lrnnet.calib.reader import CalibrationReader, open_calibration_set
    from lrnnet.engine.tensorrt_builder import build_tensorrt_engine

    if gpu is None or tensorrt_version() is None:
        raise MissingDependencyError(f"--legacy-calibrator builds with TensorRT: {reason}; install it with: "
                                     f"{TENSORRT_INSTALL}")
    assert options.calib_data is not None  # BuildOptions requires it with legacy_calibrator
    samples = open_calibration_set(options.calib_data, options.int8.images)
    reader = CalibrationReader(samples, source.info, source.input_name, batch=source.info.batch)
    version = build_tensorrt_engine(source.path, engine, profile, options.tensorrt, reader, options.calib_cache)
    record = CalibrationRecord(method="tensorrt-entropy2", images=reader.images,
                               digest=samples.digest(),
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


def _say_calibration_method(asked: str, record: CalibrationRecord) -> None:
    """A note when the recipe's tool calibrated by another method than asked (Model Optimizer has max and entropy)."""
    used = record.method.removeprefix("modelopt-")
    if used != asked and (asked, used) != ("minmax", "max"):  # Model Optimizer's max is the min/max range
        note(f"INT8 calibrated by {record.method}: NVIDIA Model Optimizer (the TensorRT recipe) has no {asked} "
             "method; --calib-method entropy is its other one")


def _calibration_summary(record: CalibrationRecord | None) -> dict | None:
    if record is None:
        return None
    return {"method": record.method, "images": record.images, "digest": record.digest, "cache": record.cache,
            "recipe": record.recipe}


def _trt_optimization(options: TensorRTOptions) -> str:
    level = options.optimization_level if options.optimization_level is not None else "default"
    return f"tensorrt builder optimization level {level}"
