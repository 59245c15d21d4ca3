"""PyTorch LRNNet -> a verified, deployable ONNX file with lrnnet metadata.

Steps (each can fail the export; nothing is written unless all pass):
1. the model in its export form: SVD by a fixed, unrolled number of power iterations
   (``svd="power"``, a constructor option: same weights, a new module, the caller's untouched);
2. trace with the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``): on torch 2.x it
   needs no extra package (the dynamo exporter needs onnxscript) and unrolls the power loop into
   a static graph of plain ops; ``dynamic`` adds named batch/height/width axes;
3. simplify with onnxslim (constant folding of the shape arithmetic the tracer records);
4. checks: TensorRT-native ops only (no Loop/Scan/If/SVD/NonZero/Einsum), TensorRT's parser rules
   on types and attributes (lrnnet.export.tensorrt_rules), onnx.checker with full check, strict
   shape inference, and the inferred output shape;
5. metadata (``ModelInfo``) into ``metadata_props``;
6. verification with ONNX Runtime CPU against PyTorch on structured images;
7. atomic write: a temporary file beside the target, renamed on success.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lrnnet._io import write_bytes_atomic
from lrnnet.data.labels import CLASS_NAMES, PALETTE_RGB
from lrnnet.errors import InputError
from lrnnet.export.checks import check_graph, declare_output_shape
from lrnnet.export.metadata import ModelInfo, stamp_weights_digest
from lrnnet.export.verify import Tolerance, VerificationReport, verify_onnx
from lrnnet.export.wrapper import DeployWrapper
from lrnnet.limits import MAX_POWER_ITERATIONS, pixels_problem
from lrnnet.log import logger, timed_step

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "LABELS_NAME",
    "LOGITS_NAME",
    "MAX_OPSET",
    "MIN_OPSET",
    "ExportOptions",
    "ExportReport",
    "export_checkpoint",
    "export_onnx",
    "export_onnx_report",
    "exportable_model",
]

DEFAULT_OPSET = 17
# 13: the first opset whose Squeeze/Unsqueeze/Split take axes as inputs, which TensorRT 10/11
# expect; 20: the newest TensorRT 10.0 parses and the TorchScript exporter emits.
MIN_OPSET, MAX_OPSET = 13, 20

INPUT_NAME = "input"
LOGITS_NAME = "logits"  # float32 N x C x H x W
LABELS_NAME = "labels"  # int32 N x H x W (argmax in graph)


@dataclass(frozen=True)
class ExportOptions:
    """What to export; validated once here (sizes against the model's stride in ``check_model``)."""

    height: int = 512
    width: int = 1024
    batch: int = 1
    dynamic: bool = False  # dynamic batch, height, width (multiples of the model's stride)
    opset: int = DEFAULT_OPSET
    power_iterations: int | None = None  # None: the model's (checkpoint's) own count
    preprocess_in_graph: bool = False  # uint8 NHWC BGR input
    argmax: bool = False  # int32 labels output
    simplify: bool = True  # onnxslim
    verify: bool = True
    verify_scenes: int = 3  # synthetic street scenes verified (plus a gradient and a checkerboard)
    tolerance: Tolerance = field(default_factory=Tolerance)

    def __post_init__(self) -> None:
        for name in ("height", "width", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(f"export {name} must be a positive integer, got {value!r}")
        too_large = pixels_problem(self.batch, self.height, self.width)
        if too_large:  # every export size passes here: flags, a checkpoint's recorded size, library callers
            raise InputError(f"export size {too_large}; use a smaller --height/--width or --batch")
        if not isinstance(self.opset, int) or not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise InputError(f"opset must be between {MIN_OPSET} and {MAX_OPSET} (TensorRT 10/11 and the "
                             f"exporter both support these), got {self.opset!r}")
        if self.power_iterations is not None:
            check_power_iterations(self.power_iterations, "--power-iterations")
        if self.verify_scenes < 0:
            raise InputError(f"verify_scenes must be >= 0, got {self.verify_scenes}")

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def check_model(self, model: Any) -> None:
        """The size must suit the model: H and W positive multiples of its input stride."""
        stride = int(model.input_stride)
        if self.height % stride or self.width % stride:
            raise InputError(
                f"export height and width must be multiples of the network's stride {stride}, got "
                f"{self.height}x{self.width} (e.g. {_round_to(self.height, stride)}x{_round_to(self.width, stride)})"
            )


def check_power_iterations(count: Any, where: str) -> None:
    """InputError unless `count` (from `where`: the flag, or a checkpoint's config) is 1..MAX_POWER_ITERATIONS."""
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_POWER_ITERATIONS:
        raise InputError(f"power iterations must be an integer in 1..{MAX_POWER_ITERATIONS} (lrnnet.limits: more "
                         f"cannot sharpen a float32 answer), got {count!r} from {where}")


def check_output_name(path: Path) -> None:
    """An export is an .onnx file: refuse a folder or another file type before minutes of work."""
    if path.is_dir():
        raise InputError(f"output {path} is a directory; give a file name such as {path / 'lrnnet.onnx'}")
    if path.suffix.lower() != ".onnx":
        engine = " (an engine is built from the export by lrnnet-build-engine)" if path.suffix == ".engine" else ""
        raise InputError(f"an export is an .onnx file{engine}; -o {path} should end in .onnx")


def _round_to(value: int, stride: int) -> int:
    return max(stride, round(value / stride) * stride)


@dataclass
class ExportReport:
    """What an export wrote and measured: the summary line of ``lrnnet-export``."""

    path: Path
    info: ModelInfo
    size_bytes: int
    opset: int
    op_count: int  # nodes in the written graph
    op_counts: dict[str, int]
    nodes_before_simplify: int
    verification: VerificationReport | None

    def summary(self) -> str:
        size = f"{self.size_bytes / 1e6:.1f} MB" if self.size_bytes >= 1e5 else f"{self.size_bytes / 1e3:.1f} kB"
        shape = "dynamic N x H x W" if self.info.dynamic else \
            f"{self.info.batch}x{self.info.input_height}x{self.info.input_width}"
        verified = f"verified: {self.verification.summary()}" if self.verification else "not verified (--no-verify)"
        return (f"wrote {self.path} ({size}, opset {self.opset}, {self.op_count} ops, input {shape} "
                f"{self.info.input_layout}, power iterations {self.info.power_iterations}); {verified}")


def exportable_model(model: Any, power_iterations: int | None = None) -> Any:
    """``model`` in its export form: power-iteration SVD with ``power_iterations`` (default: the model's),
    eval mode, on the CPU (where the trace and the verification run). NaN/Inf weights are an InputError.

    Returns ``model`` itself when it is already all that, otherwise a new LRNNet built from its
    config with those options and a CPU copy of its weights (the two SVD forms share every
    parameter); the caller's model is never changed, not even its train/eval mode or device.
    """
    from lrnnet.models import build_model
    from lrnnet.models.checkpoint import check_finite_weights

    config = dict(model.config)
    wanted = {"svd": "power", "power_iterations": power_iterations or config["power_iterations"]}
    check_power_iterations(wanted["power_iterations"],
                           "--power-iterations" if power_iterations else "the model's config")
    state = model.state_dict()
    check_finite_weights(state, "the model")  # an in-memory model; a checkpoint's load already checked it
    on_cpu = all(tensor.device.type == "cpu" for tensor in state.values())
    if on_cpu and not model.training and all(config.get(key) == value for key, value in wanted.items()):
        return model
    export_form = build_model({**config, **wanted})
    export_form.load_state_dict({key: tensor.detach().cpu() for key, tensor in state.items()})
    return export_form.eval()


def _model_info(model: Any, options: ExportOptions, wrapper: DeployWrapper) -> ModelInfo:
    num_classes = int(model.num_classes)
    if num_classes == len(CLASS_NAMES):
        names, palette = list(CLASS_NAMES), PALETTE_RGB.tolist()
    else:  # not a Cityscapes model: no names to claim; colours cycle through the Cityscapes palette
        names = [f"class_{i}" for i in range(num_classes)]
        palette = [PALETTE_RGB[i % len(PALETTE_RGB)].tolist() for i in range(num_classes)]
    return ModelInfo(
        input_height=options.height, input_width=options.width, stride=int(model.input_stride),
        num_classes=num_classes, class_names=names, palette=palette, input_layout=wrapper.input_layout,
        batch=options.batch, dynamic=options.dynamic, power_iterations=int(model.config["power_iterations"]),
        preprocess_in_graph=options.preprocess_in_graph, argmax_in_graph=options.argmax,
        precision="fp32", model_config=dict(model.config),
    )


def _example_input(options: ExportOptions) -> torch.Tensor:
    if options.preprocess_in_graph:
        return torch.zeros(options.batch, options.height, options.width, 3, dtype=torch.uint8)
    return torch.zeros(options.batch, 3, options.height, options.width, dtype=torch.float32)


def _dynamic_axes(options: ExportOptions) -> dict[str, dict[int, str]] | None:
    if not options.dynamic:
        return None
    spatial = (1, 2) if options.preprocess_in_graph else (2, 3)
    output = LABELS_NAME if options.argmax else LOGITS_NAME
    output_spatial = (1, 2) if options.argmax else (2, 3)
    return {
        INPUT_NAME: {0: "batch", spatial[0]: "height", spatial[1]: "width"},
        output: {0: "batch", output_spatial[0]: "height", output_spatial[1]: "width"},
    }


def _trace_to_onnx(wrapper: DeployWrapper, options: ExportOptions) -> Any:
    import onnx

    # A private temporary directory, not the output's: the target directory only ever sees the
    # final, checked and verified file (atomically renamed into place).
    with tempfile.TemporaryDirectory(prefix="lrnnet-export-") as tmp, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = Path(tmp) / "traced.onnx"
        torch.onnx.export(
            wrapper, (_example_input(options),), str(traced), dynamo=False, opset_version=options.opset,
            input_names=[INPUT_NAME], output_names=[LABELS_NAME if options.argmax else LOGITS_NAME],
            dynamic_axes=_dynamic_axes(options), do_constant_folding=True,
        )
        graph = onnx.load(str(traced))
    # The tracer warns about every Python-side shape check (the model validates its input size);
    # verification at a second size is what proves a dynamic graph generalises, so these are
    # only shown with -v.
    for warning in caught:
        if not issubclass(warning.category, DeprecationWarning):
            logger.debug("exporter: %s: %s", warning.category.__name__, warning.message)
    return graph


def _simplify(model: Any) -> Any:
    import onnxslim

    try:
        return onnxslim.slim(model)
    except Exception as exc:  # noqa: BLE001 - an optimiser failure must not fail a correct export
        logger.warning("onnxslim could not simplify the graph (%s: %s); keeping the exporter's graph",
                       type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return model


def _verification_plan(options: ExportOptions, stride: int) -> list[tuple[int, int, int]]:
    """(batch, height, width) shapes to verify: the export's, and for a dynamic graph a second one.

    The second shape changes every dynamic axis: one more image, and about half the size plus one
    stride, so a trace that baked in the export size (or a multiple of anything coarser than the
    stride) is caught here rather than at deployment.
    """
    plan = [(options.batch, options.height, options.width)]
    if options.dynamic:
        half = (options.height // 2 // stride * stride + stride, options.width // 2 // stride * stride + stride)
        plan.append((options.batch + 1, *half))
    return plan


def export_onnx_report(model: Any, path: str | os.PathLike[str], options: ExportOptions | None = None) -> ExportReport:
    """Export ``model`` (an LRNNet) to ``path``; return what was written and measured."""
    options = options or ExportOptions()
    path = Path(path)
    check_output_name(path)  # found now, not after minutes of export and verification
    options.check_model(model)
    model = exportable_model(model, options.power_iterations)
    wrapper = DeployWrapper(model, preprocess_in_graph=options.preprocess_in_graph, argmax=options.argmax).eval()
    info = _model_info(model, options, wrapper)

    with timed_step(f"Exporting to ONNX (opset {options.opset}, {'dynamic' if options.dynamic else 'static'} "
                    f"shape, {info.power_iterations} power iterations)"):
        graph = _trace_to_onnx(wrapper, options)
    nodes_before = len(graph.graph.node)
    if options.simplify:
        graph = _simplify(graph)
        logger.info("Simplified with onnxslim: %d -> %d nodes", nodes_before, len(graph.graph.node))
    info.write_to(graph)

    if options.dynamic:
        output_shape: list[int | str] = ["batch", "height", "width"] if options.argmax else \
            ["batch", info.num_classes, "height", "width"]
    else:
        output_shape = [options.batch, *([] if options.argmax else [info.num_classes]), options.height, options.width]
    declare_output_shape(graph, output_shape)
    counts = check_graph(graph, output_shape)
    stamp_weights_digest(graph)  # last, over the weights as written (lrnnet.export.metadata)
    data = graph.SerializeToString()

    verification = None
    if options.verify:
        verification = verify_onnx(
            data, wrapper, _verification_plan(options, info.stride), uint8_nhwc=options.preprocess_in_graph,
            labels_out=options.argmax, scenes=options.verify_scenes, tolerance=options.tolerance,
        )
        logger.debug("Verified against PyTorch: %s", verification.summary())  # the summary line repeats it

    write_bytes_atomic(path, data)
    return ExportReport(path=path, info=info, size_bytes=len(data), opset=options.opset,
                        op_count=sum(counts.values()), op_counts=dict(counts),
                        nodes_before_simplify=nodes_before, verification=verification)


def export_onnx(model: Any, path: str | os.PathLike[str], options: ExportOptions | None = None) -> ModelInfo:
    """Export ``model`` to a verified ONNX file at ``path``; returns the metadata written into it."""
    return export_onnx_report(model, path, options).info


def export_checkpoint(checkpoint: str | os.PathLike[str], path: str | os.PathLike[str],
                      options: ExportOptions | None = None) -> ExportReport:
    """Load a checkpoint (state dict or training checkpoint) in its export form and export it."""
    from lrnnet.models import load_checkpoint

    options = options or ExportOptions()
    check_output_name(Path(path))
    overrides: dict[str, Any] = {"svd": "power"}
    if options.power_iterations is not None:
        overrides["power_iterations"] = options.power_iterations
    # No "Loading ..." line: it takes a fraction of a second, and a bad checkpoint's error then stays
    # the only line on stderr.
    model = load_checkpoint(checkpoint, map_location="cpu", **overrides)
    options.check_model(model)  # a size the model refuses is the one line, not after the scale warning
    warning = export_size_warning(checkpoint, options)
    if warning:
        logger.warning("%s", warning)
    return export_onnx_report(model, path, options)


PAPER_EXPORT_SIZE = (512, 1024)  # the export size of a checkpoint that records none (the paper's input)


def default_export_size(checkpoint: str | os.PathLike[str]) -> tuple[int, int]:
    """The size a checkpoint was validated at (lrnnet-train records it), else 512x1024."""
    return export_size_of(checkpoint)[0]


def export_size_of(checkpoint: str | os.PathLike[str]) -> tuple[tuple[int, int], bool]:
    """(default_export_size, whether the checkpoint recorded it), from one read of the checkpoint."""
    from lrnnet.models.checkpoint import checkpoint_sizes

    recorded = checkpoint_sizes(checkpoint).get("val_size")
    return (recorded or PAPER_EXPORT_SIZE), recorded is not None


def export_size_warning(checkpoint: str | os.PathLike[str], options: ExportOptions) -> str | None:
    """One line when a static export's size is not the scale the checkpoint was trained at, else None.

    A fully convolutional net runs at any size, but objects then appear at another scale than it
    learned (at 4x the pixels, the demo's cars come out as rings).
    """
    from lrnnet.models.checkpoint import checkpoint_sizes

    trained = checkpoint_sizes(checkpoint).get("train_size")
    if trained is None or options.dynamic or options.size == trained:
        return None
    return (f"exporting at {options.height}x{options.width}, but {checkpoint} was trained at "
            f"{trained[0]}x{trained[1]}: objects will appear at another scale than it learned "
            f"(export with --height {trained[0]} --width {trained[1]} unless it is what you want)")
