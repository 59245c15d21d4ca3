"""INT8 in the graph: explicit QuantizeLinear/DequantizeLinear, calibrated, by the target's recipe.

TensorRT 11 dropped the implicit INT8 calibrator, and TensorRT 10 and ONNX Runtime both run
explicitly quantized graphs, so INT8 is an ONNX with Q/DQ pairs. How they are placed depends on
the target (lrnnet.calib.recipes, the one table of these facts): for ONNX Runtime's CPU provider,
ONNX Runtime's ``quantize_static`` with uint8 asymmetric activations and int8 symmetric
per-channel weights, so its optimiser fuses them into QLinearConv/QLinearAdd/QLinearConcat; for
TensorRT, NVIDIA Model Optimizer (symmetric int8, zero point 0, per-channel weights on axis 0,
float biases, Q/DQ by TensorRT's fusion rules), or where it cannot be imported ONNX Runtime's
quantizer with TensorRT's rules. Every recipe reads the same calibration set (lrnnet.calib.reader:
a Cityscapes root, a folder of images or a video, one preprocessing) and keeps the SVN module's
arithmetic and softmax in float (lrnnet.calib.graph.float_island_nodes).

Calibration ranges are cached (lrnnet.calib.cache) with ONNX Runtime's own supported route:
``quantize_static(calibration_cache_path=...)`` saves the ranges it computed, and with an existing
file it quantizes from them and never runs the reader. The ranges are those of every tensor the
ONNX Runtime quantizer could quantize (one calibration pass over all of them), so one cache serves
both ONNX Runtime-quantizer recipes. Model Optimizer calibrates from the images itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from lrnnet._io import scratch_folder
from lrnnet.calib.agreement import check_int8_against_fp32
from lrnnet.calib.cache import (
    CalibrationCache,
    CalibrationKey,
    check_cache_against_graph,
    read_cache,
    refresh_trt_table,
    write_cache,
)
from lrnnet.calib.graph import SVN_SCOPE, SourceModel, float_island_nodes, output_head_nodes, tensor_readers
from lrnnet.calib.reader import DEFAULT_CALIB_IMAGES, CalibrationReader, open_calibration_set
from lrnnet.calib.recipes import TENSORRT_FALLBACK_INT8, Int8Recipe, recipes_for
from lrnnet.calib.rewrite import fold_downsampler_batchnorm
from lrnnet.errors import InputError, MissingDependencyError
from lrnnet.log import logger, timed_step

CALIB_METHODS = ("entropy", "minmax", "percentile")
# Percentile, not entropy: quantize_static runs ONNX Runtime's entropy calibrator with 128 histogram
# bins (TensorRT's uses 2048; quantize_static offers no option for it), too coarse for LRNNet's
# activations. Measured on a model trained on synthetic scenes, 8 calibration images, pixel
# agreement of INT8 with FP32 argmax: percentile 97.4%, minmax 97.2%, entropy 90-95%.
DEFAULT_CALIB_METHOD = "percentile"
DEFAULT_PERCENTILE = 99.999


@dataclass(frozen=True)
class Int8Options:
    """How to calibrate. `images` is how many training images (deterministic, across cities)."""

    method: str = DEFAULT_CALIB_METHOD
    images: int = DEFAULT_CALIB_IMAGES
    percentile: float = DEFAULT_PERCENTILE  # used by method="percentile" only

    def __post_init__(self) -> None:
        if self.method not in CALIB_METHODS:
            raise InputError(f"unknown calibration method '{self.method}'; choose one of {', '.join(CALIB_METHODS)}")
        if self.images < 1:
            raise InputError(f"--calib-images must be at least 1, got {self.images}")
        if not 0.0 < self.percentile <= 100.0:
            raise InputError(f"percentile must be in (0, 100], got {self.percentile}")


@dataclass(frozen=True)
class CalibrationRecord:
    """What calibrated an INT8 graph; goes into its metadata and the engine sidecar."""

    method: str
    images: int  # images calibration used (whole batches: CalibrationReader.images)
    digest: str  # SHA-256 of the chosen images' content (lrnnet.calib.reader.CalibrationSet.digest)
    images_read: int  # distinct images decoded by this build: 0 when the cache was reused
    cache: str | None  # the cache file used or written, if any
    recipe: str = ""  # "<target>/<tool>": which INT8 recipe of lrnnet.calib.recipes made the graph

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def quantize_int8(source: SourceModel, calib_root: str | Path | None, options: Int8Options = Int8Options(),
                  cache_path: str | Path | None = None, target: str = "onnxruntime",
                  recipe: Int8Recipe | None = None) -> tuple[onnx.ModelProto, CalibrationRecord]:
    """The INT8 Q/DQ graph of `source` for `target` ("onnxruntime" | "tensorrt") and what calibrated it.

    `calib_root`: a Cityscapes root, a folder of images or a video (lrnnet.calib.reader). With
    `cache_path` naming an existing cache for this model and these options, no image is read
    (`calib_root` may then be None) by the ONNX Runtime-quantizer recipes; otherwise the images are
    read and, with `cache_path`, the ranges are written there (plus a TensorRT-style calibration
    table beside it). The TensorRT recipe needs the images (Model Optimizer calibrates itself).
    `recipe` replaces the target's own (e.g. lrnnet.calib.recipes.TENSORRT_FALLBACK_INT8, to compare).
    """
    from onnxruntime.quantization import quant_pre_process, quantize_static

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise MissingDependencyError("INT8 calibration needs an onnxruntime whose quantize_static takes "
                                     "calibration_cache_path (microsoft/onnxruntime#28221; 1.32 has it); "
                                     "install it with: pip install -U onnxruntime")
    recipe = recipe or recipes_for(target).int8
    if recipe.tool == "modelopt":
        missing = _modelopt_missing()
        if missing is not None:
            logger.warning("INT8 for TensorRT: NVIDIA Model Optimizer cannot be imported (%s; install it with: "
                           "pip install 'lrnnet[modelopt]' && pip install --no-deps nvidia-modelopt==0.47.0); "
                           "using ONNX Runtime's quantizer with TensorRT's rules instead",
                           missing)
            recipe = TENSORRT_FALLBACK_INT8
    if recipe.tool == "modelopt" and calib_root is None:
        raise InputError("INT8 for TensorRT calibrates with NVIDIA Model Optimizer, which reads the images itself: "
                         "pass --calib-data (a Cityscapes root, a folder of images or a video)")
    key = CalibrationKey(source_sha256=source.sha256, method=options.method, images=options.images,
                         percentile=options.percentile if options.method == "percentile" else None)
    # The set is listed (not decoded) first, so a cache made from other images is known as such.
    calibration = open_calibration_set(calib_root, options.images) if calib_root is not None else None
    use_cache = cache_path is not None and recipe.tool == "onnxruntime"
    if cache_path is not None and not use_cache:
        logger.info("calibration: Model Optimizer calibrates from the images; --calib-cache %s is not used "
                    "by the TensorRT recipe", cache_path)
    cached = read_cache(cache_path, key, digest=calibration.digest() if calibration else None,
                        recalibrate=calibration is not None) if use_cache and cache_path is not None else None
    reader: CalibrationReader | None = None
    if cached is None:
        if calibration is None:
            raise InputError("--int8 needs calibration images: pass --calib-data (a Cityscapes root, a folder of "
                             "images or a video), or --calib-cache naming a cache built for this model and these "
                             "settings")
        reader = CalibrationReader(calibration, source.info, source.input_name, batch=source.info.batch)
        digest = calibration.digest()
        logger.info("calibration: %s, method %s; INT8 recipe for %s: %s activations, %s weights (%s)",
                    calibration.describe(), _method_of(recipe, options), recipe.target, recipe.activations,
                    recipe.weights, "NVIDIA Model Optimizer" if recipe.tool == "modelopt" else "ONNX Runtime quantizer")
    else:
        digest = cached.digest
        logger.info("calibration: reusing %s (%d images, method %s); no image is read",
                    cache_path, cached.images_used, options.method)

    # Every temporary of this build (ONNX Runtime's too) in one folder that a killed run leaves to the next.
    with scratch_folder("lrnnet-int8") as tmp:
        prepared, ranges, quantized = tmp / "prepared.onnx", tmp / "ranges.json", tmp / "int8.onnx"
        # Shape inference and ORT's basic graph optimisation before quantizing, as ONNX Runtime
        # recommends; node names survive it, so the float islands are found on its output. ONNX
        # shape inference only: the symbolic one (meant for transformers) gives up on LRNNet's
        # dynamic-size exports ("Incomplete symbolic shape inference"), and adds nothing to a CNN.
        with timed_step("Preparing the graph for quantization"):
            # From the file: given a ModelProto it writes external data to a scratch folder it then deletes.
            quant_pre_process(str(source.path), str(prepared), skip_symbolic_shape=True)
        prepared_graph = onnx.load(str(prepared), load_external_data=False)
        excluded = _float_nodes(prepared_graph, recipe)
        computed_ranges = None
        if recipe.tool == "modelopt":
            assert reader is not None
            with timed_step("Calibrating and quantizing to INT8 (NVIDIA Model Optimizer)"):
                _quantize_with_modelopt(prepared, quantized, reader, excluded, options)
        else:
            if cached is not None:
                check_cache_against_graph(cached, prepared_graph, cache_path)
                ranges.write_text(json.dumps(cached.ort_tensors_data))
            else:
                # One calibration pass over every tensor the quantizer could quantize (all but the
                # power iteration), saved as ranges: any ONNX Runtime-quantizer recipe quantizes from them.
                with timed_step("Calibrating"):
                    _ort_quantize(prepared, tmp / "all.onnx", reader, _float_nodes(prepared_graph, None), options,
                                  None, ranges)
                computed_ranges = json.loads(ranges.read_text())
            to_quantize, graph_to_quantize, tensors_data = prepared, prepared_graph, json.loads(ranges.read_text())
            if recipe.fold_downsampler_bn:
                graph_to_quantize, tensors_data, float_added = fold_downsampler_batchnorm(prepared_graph, tensors_data)
                excluded = sorted(set(excluded) | set(float_added))
                to_quantize = tmp / "rewritten.onnx"
                onnx.save(graph_to_quantize, str(to_quantize))
            if recipe.concat_shares_scale:
                tensors_data = concat_inputs_share_range(graph_to_quantize, tensors_data, excluded)
            ranges.write_text(json.dumps(tensors_data))
            with timed_step("Quantizing to INT8"):
                _ort_quantize(to_quantize, quantized, None, excluded, options, recipe, ranges)
        model = onnx.load(str(quantized))
        _drop_qdq_between_float_nodes(model, excluded)
        _drop_unused_opsets(model)
        check_int8_against_fp32(source, prepared, model, calibration if reader is not None else None,
                                (cached.ort_tensors_data if cached else computed_ranges or {}).get("data"), excluded)
        record = CalibrationRecord(method=_method_of(recipe, options),
                                   images=reader.images if reader else cached.images_used if cached else 0,
                                   digest=digest, images_read=reader.images_read if reader else 0,
                                   cache=str(cache_path) if use_cache else None,
                                   recipe=f"{recipe.target}/{recipe.tool}")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise InputError(f"the INT8 graph of {source.path} is not valid: {exc}") from exc
    if cache_path is not None and computed_ranges is not None:
        write_cache(cache_path, CalibrationCache(key=key, digest=digest, images_used=record.images,
                                                 root=str(calib_root), ort_tensors_data=computed_ranges))
    elif cache_path is not None and cached is not None:
        refresh_trt_table(cache_path, cached)
    extra = {**source.info.extra, "float32_nodes": len(excluded), "calibration": record.to_dict(),
             "int8_recipe": {"activations": recipe.activations, "weights": recipe.weights, "tool": recipe.tool,
                             "float": _float_parts(recipe)}}
    dataclasses.replace(source.info, precision="int8", extra=extra, engine_target=recipe.target,
                        engine_purpose=recipe.purpose).write_to(model)
    return model, record


def _modelopt_missing() -> str | None:
    """Why NVIDIA Model Optimizer's ONNX quantizer cannot be imported, or None when it can."""
    try:
        importlib.import_module("modelopt.onnx.quantization")
    except Exception as exc:  # noqa: BLE001 - an ImportError, or its [onnx] extra's own import-time checks
        return " ".join(str(exc).split())[:200] or type(exc).__name__
    return None


def _method_of(recipe: Int8Recipe, options: Int8Options) -> str:
    if recipe.tool == "modelopt":
        return f"modelopt-{'entropy' if options.method == 'entropy' else 'max'}"
    return options.method


def _float_parts(recipe: Int8Recipe) -> list[str]:
    parts = ["power iteration and softmax", *recipe.float_op_types]
    parts += ["downsampler BN: folded into the conv, float affine on the pooled channels"] if recipe.fold_downsampler_bn else []
    return parts + (["SVN 1x1 convs"] if recipe.float_svn_convs else []) + (["head"] if recipe.float_head else [])


def _float_nodes(graph: onnx.ModelProto, recipe: Int8Recipe | None) -> list[str]:
    """Names of the nodes `recipe` leaves in float (None: only the power iteration, for calibration)."""
    names = set(float_island_nodes(graph))
    if recipe is not None:
        names |= {n.name for n in graph.graph.node if n.op_type in recipe.float_op_types}
        if recipe.float_head:
            names |= set(output_head_nodes(graph))
        if recipe.float_svn_convs:
            names |= {n.name for n in graph.graph.node if n.op_type == "Conv" and SVN_SCOPE in n.name}
    return sorted(names)


def concat_inputs_share_range(graph: onnx.ModelProto, tensors_data: dict[str, Any],
                              excluded: list[str]) -> dict[str, Any]:
    """ONNX Runtime calibration ranges with each quantized Concat's inputs given the Concat output's range.

    Only inputs that nothing else reads: their one use is the Concat, which requantizes them to its
    output's scale anyway, so quantizing them there directly rounds once instead of twice, and
    ONNX Runtime's QLinearConcat with equal scales and zero points copies instead of requantizing.
    """
    ranges = tensors_data["data"]
    readers = tensor_readers(graph)
    outputs = {value.name for value in graph.graph.output}
    skip = set(excluded)
    shared = dict(ranges)
    for node in graph.graph.node:
        if node.op_type == "Concat" and node.name not in skip and node.output[0] in ranges:
            for name in node.input:
                if name in ranges and len(readers[name]) == 1 and name not in outputs:
                    shared[name] = ranges[node.output[0]]
    return {**tensors_data, "data": shared}


def _ort_quantize(prepared: Path, output: Path, reader: CalibrationReader | None, excluded: list[str],
                  options: Int8Options, recipe: Int8Recipe | None, ranges: Path) -> None:
    """ONNX Runtime's quantize_static in QDQ format; `recipe` None: the calibration pass (ranges of everything)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # The calibration pass (recipe None) keeps each tensor's own lowest/highest: the uint8 recipe uses
    # them as they are, and a symmetric recipe makes them symmetric itself (ONNX Runtime's compute_scale_zp).
    symmetric = recipe is not None and recipe.symmetric_activations
    extra_options: dict[str, Any] = {
        "ActivationSymmetric": symmetric,  # zero point 0 (TensorRT); uint8 asymmetric for ONNX Runtime's CPU
        "WeightSymmetric": True,
        "CalibPercentile": options.percentile,
        # Biases stay float: TensorRT's parser rejects a DequantizeLinear of int32 (it fuses the float
        # bias into the int8 convolution itself), and ONNX Runtime quantizes float biases of QDQ
        # convolutions to int32 in its own graph optimiser, so its CPU kernels lose nothing.
        "QuantizeBias": False,
        # Calibrate one batch per collect call: the calibrators keep every intermediate tensor of a
        # call in memory, so this bounds memory to one image's activations, whatever --calib-images is.
        "CalibStridedMinMax": 1,
        # Slice/Split/Reshape/Transpose keep their input's scale, so ONNX Runtime drops their Q/DQ
        # pairs and the int8 chain is not broken at the FCBs' channel split (measured: 1.25x -> 1.31x).
        "ForceQuantizeNoInputCheck": bool(recipe is not None and recipe.share_scales),
    }
    method = {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
              "percentile": CalibrationMethod.Percentile}[options.method]
    unsigned = recipe is not None and not recipe.symmetric_activations
    # ONNX Runtime prints progress lines to stdout; our output is the log, so hide them. Its "Axis 1
    # is out-of-range" warning for a BN scale (rank 1) is about per-channel weights it then skips.
    with contextlib.redirect_stdout(io.StringIO()), _quiet_logger():
        quantize_static(
            str(prepared), str(output), calibration_data_reader=reader,
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
            activation_type=QuantType.QUInt8 if unsigned else QuantType.QInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=list(recipe.op_types_to_quantize) if recipe and recipe.op_types_to_quantize else None,
            nodes_to_exclude=excluded, calibrate_method=method, extra_options=extra_options,
            calibration_cache_path=str(ranges),
        )


def _quantize_with_modelopt(prepared: Path, output: Path, reader: CalibrationReader, excluded: list[str],
                            options: Int8Options) -> None:
    """NVIDIA Model Optimizer's INT8 (TensorRT's placement), calibrated on the CPU, float parts in float32."""
    import modelopt.onnx.quantization as moq
    import modelopt.onnx.trt_utils as mo_trt

    from lrnnet.engine.device import tensorrt_version

    # Model Optimizer asks TensorRT about custom layers whenever `import tensorrt` succeeds, and the
    # type stubs (tensorrt-stubs, a namespace package with no Logger) make it succeed: tell it the truth.
    mo_trt.TRT_PYTHON_AVAILABLE = tensorrt_version() is not None
    # high_precision_dtype fp32: Model Optimizer's default casts every unquantized node to float16,
    # the power iteration included, which lrnnet keeps in float32 on purpose (its max-abs rescaling
    # and the Gram products lose their sign/ordering in half precision); TensorRT picks FP16 itself
    # for float layers of a strongly typed network only where the graph says so.
    # Its calibrators draw their own progress bars (the reader draws ours): TQDM_DISABLE hides theirs.
    # log_level CRITICAL: it logs "Failed to get GPU count: NVML Shared Library Not Found" at ERROR on
    # every CPU machine, then calibrates on the CPU as asked; its real failures raise.
    with contextlib.redirect_stdout(io.StringIO()), _environment(TQDM_DISABLE="1"), \
            _onnxruntime_quantization_restored(), _quiet_logger("modelopt"):
        moq.quantize(onnx_path=str(prepared), quantize_mode="int8", calibration_data_reader=_FirstBatchReader(reader),
                     calibration_method="entropy" if options.method == "entropy" else "max",
                     calibration_eps=["cpu"], nodes_to_exclude=excluded, high_precision_dtype="fp32",
                     output_path=str(output), log_level="CRITICAL")


class _FirstBatchReader:
    """The calibration reader plus ``get_first()``, which Model Optimizer calls for a trial run."""

    def __init__(self, reader: CalibrationReader) -> None:
        self._reader = reader
        self._first: dict[str, Any] | None = None

    def get_first(self) -> dict[str, Any]:
        if self._first is None:
            self._reader.rewind()
            self._first = self._reader.get_next()
            self._reader.rewind()
        assert self._first is not None  # the reader refuses an empty set
        return self._first

    def __len__(self) -> int:
        return len(self._reader)

    def __getattr__(self, name: str) -> Any:  # get_next, rewind, set_range
        return getattr(self._reader, name)


def _drop_qdq_between_float_nodes(model: onnx.ModelProto, float_nodes: list[str]) -> None:
    """Remove QuantizeLinear -> DequantizeLinear pairs from a float node's output read only by float nodes.

    ONNX Runtime's quantizer gives a data-movement op (MaxPool) an output Q/DQ even when it and its
    readers are left float; the pair only rounds, and ONNX Runtime's optimiser would fold it into an
    int8 MaxPool, which is slower than the float one (lrnnet.calib.recipes).
    """
    graph = model.graph
    floats = set(float_nodes)
    producers = {output: node for node in graph.node for output in node.output}
    readers = tensor_readers(model)
    outputs = {value.name for value in graph.output}
    dropped: set[int] = set()
    for quantize in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        source = producers.get(quantize.input[0])
        dequantizes = readers.get(quantize.output[0], [])
        if source is None or source.name not in floats or quantize.output[0] in outputs or not dequantizes \
                or any(dq.op_type != "DequantizeLinear" or dq.output[0] in outputs for dq in dequantizes) \
                or any(r.name not in floats for dq in dequantizes for r in readers.get(dq.output[0], [])):
            continue
        for dq in dequantizes:
            for reader in readers.get(dq.output[0], []):
                for i, name in enumerate(reader.input):
                    if name == dq.output[0]:
                        reader.input[i] = quantize.input[0]
            dropped.add(id(dq))
        dropped.add(id(quantize))
    kept = [node for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)


def _drop_unused_opsets(model: onnx.ModelProto) -> None:
    """Model Optimizer declares every ONNX Runtime domain; keep only the domains nodes use (TensorRT reads them)."""
    used = {node.domain for node in model.graph.node} | {""}
    kept = [opset for opset in model.opset_import if opset.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)


@contextlib.contextmanager
def _environment(**values: str) -> Any:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _onnxruntime_quantization_restored() -> Any:
    """Undo Model Optimizer's patches of ONNX Runtime's quantizer when it returns.

    ``modelopt.onnx.quantization`` replaces methods of ONNX Runtime's calibrators and quantizers
    (ort_patching.patch_ort_modules) and edits its operator registries (ort_utils.configure_ort:
    Relu, Concat, Slice, Split, ... removed) for good; the ONNX Runtime recipe, run later in the same
    process, then calibrates wrongly (its histogram calibrator collects nothing) and leaves Relu and
    Concat unfused. Everything those modules and their classes hold, and the registries' contents,
    are put back as they were.
    """
    import inspect as _inspect

    from onnxruntime.quantization import base_quantizer, calibrate, qdq_quantizer, quantize, registry

    modules = [calibrate, quantize, qdq_quantizer, base_quantizer, registry]
    owners: list[Any] = modules + [cls for module in modules for cls in vars(module).values()
                                   if _inspect.isclass(cls) and cls.__module__ == module.__name__]
    saved = [(owner, dict(vars(owner))) for owner in owners]
    tables = [(table, dict(table)) for module in modules for name, table in vars(module).items()
              if isinstance(table, dict) and not name.startswith("__")]
    try:
        yield
    finally:
        for owner, attributes in saved:
            for name, value in attributes.items():
                if vars(owner).get(name) is not value:
                    setattr(owner, name, value)
        for table, contents in tables:
            table.clear()
            table.update(contents)


@contextlib.contextmanager
def _quiet_logger(name: str = "") -> Any:
    """Errors only from `name` (the root logger by default) while inside."""
    import logging

    target = logging.getLogger(name or None)
    level = target.level
    # Model Optimizer logs "Failed to get GPU count: NVML Shared Library Not Found" at ERROR on any
    # CPU machine before it calibrates on the CPU as asked; its real failures raise.
    target.setLevel(logging.CRITICAL if name else logging.ERROR)
    try:
        yield
    finally:
        target.setLevel(level)
