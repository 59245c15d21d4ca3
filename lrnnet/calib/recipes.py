"""The one table of precision recipes: for each target runtime, how its FP16 and INT8 graphs are made.

A target is the runtime a precision graph is made for, chosen by ``--backend`` (auto: TensorRT when it
and a GPU are here, else ONNX Runtime). The two have opposite needs:

* ONNX Runtime's CPU provider fuses Q/DQ pairs into QLinearConv/QLinearAdd/QLinearConcat only for
  uint8 asymmetric activations with int8 symmetric weights (u8s8, the VNNI GEMM), and has slow or no
  int8 kernels for some ops, so what stays float is chosen by measurement (``Int8Recipe.why``).
* TensorRT wants symmetric int8 Q/DQ (zero point 0), per-channel weights on axis 0, float biases (its
  parser rejects an int32 DequantizeLinear) and Q/DQ where its fusions expect them; NVIDIA Model
  Optimizer places them so. Its FP16 is float16 written into the graph (TensorRT 11 builds strongly
  typed networks: no FP16 builder flag).

Measurements behind the ONNX Runtime choices (2026-12-01; LRNNet trained on synthetic scenes,
1x3x512x1024, ONNX Runtime 1.32 on 2 vCPUs of an Intel Xeon (AVX-512 VNNI, AMX-INT8) shared with five other jobs, so
per-inference CPU time on one thread, median of 8, FP32 = 1.00x; wall-clock round-robin agreed
within its noise): symmetric int8 activations (TensorRT's recipe) 0.68x; u8 asymmetric, everything
but the power iteration quantized 1.23x; + BN and head float 1.25x; + Slice/Split/Reshape sharing
their input's scale (ForceQuantizeNoInputCheck) 1.31x; + MaxPool float 1.48x; + no NCHWc pass at
load 1.51x; + SVN 1x1 convs float 1.57x (a later run of the same: 1.43x). Wall clock, 2 threads,
round-robin: 1.36x with the NCHWc pass, 1.49x without. Later (2026-12-02, same machine, one
thread, CPU time, 8 round-robin rounds, an untrained seeded export): the recipe above 1.46x; + Concat
inputs at the Concat output's scale (QLinearConcat copies) 1.54x; + the downsamplers' BN split into
their conv and a float affine on the pooled tensor, with ONNX Runtime's QDQ propagation off so
MaxPool stays float 1.63x (2 threads, wall: 1.28x -> 1.38x -> 1.62x). ``benchmarks/bench_precision.py``
has the current figures.
"""

from __future__ import annotations

from dataclasses import dataclass

TARGETS = ("onnxruntime", "tensorrt")

# ONNX Runtime graph optimisers left out when its CPU provider loads (or saves) an INT8 graph.
# NchwcTransformer: it re-lays only the few float convs and the Resize of a QLinear-fused graph,
# and its reorders cost more than they save. QDQPropagationTransformer: it puts a Q/DQ pair after
# every MaxPool that reads a DequantizeLinear, which the optimiser then folds into an int8 MaxPool,
# a plain NCHW loop ~10x slower than the float one (the recipe keeps MaxPool float on purpose;
# measured with it left in: 1.51x FP32 -> 1.63x without it, CPU time, 1x3x512x1024).
ONNXRUNTIME_CPU_INT8_DISABLED_OPTIMIZERS = ("NchwcTransformer", "QDQPropagationTransformer")


@dataclass(frozen=True)
class Int8Recipe:
    """How an INT8 Q/DQ graph is made for one target."""

    target: str
    tool: str  # "onnxruntime" (its quantize_static) | "modelopt" (NVIDIA Model Optimizer, itself on quantize_static)
    activations: str  # "uint8 asymmetric" | "int8 symmetric"
    weights: str  # always "int8 symmetric per-channel (axis 0)"
    # Left in float besides the SVN's power iteration and softmax (lrnnet.calib.graph.float_island_nodes),
    # which every recipe keeps in float32:
    float_op_types: tuple[str, ...]  # op types left float
    float_svn_convs: bool  # the SVN's 1x1 convs (query, region features, projection)
    float_head: bool  # the classifier conv and the final Resize (lrnnet.calib.graph.output_head_nodes)
    # ONNX Runtime quantizer only: op types given Q/DQ (None: every op it knows), and extra_options.
    op_types_to_quantize: tuple[str, ...] | None
    share_scales: bool  # ForceQuantizeNoInputCheck: data-movement ops keep their input's scale
    # A Concat's inputs quantized with the Concat output's range: ONNX Runtime's QLinearConcat then
    # copies instead of requantizing, and each branch output is rounded once, not twice.
    concat_shares_scale: bool
    # The downsamplers' BN after their Concat split exactly into the strided conv and a float affine on
    # the pooled tensor (lrnnet.calib.rewrite), so the unit's output stays int8.
    fold_downsampler_bn: bool
    purpose: str  # written into the graph's metadata (lrnnet.engine_purpose) and the sidecar
    why: str  # the measured reason for the float parts

    @property
    def symmetric_activations(self) -> bool:
        return self.activations == "int8 symmetric"


@dataclass(frozen=True)
class Fp16Recipe:
    """How an FP16 graph is made for one target (always onnxconverter-common; islands kept float32)."""

    target: str
    tool: str
    purpose: str
    cpu_optimise: bool  # save ONNX Runtime's CPU-optimised graph (False: the converter's graph as made)


@dataclass(frozen=True)
class TargetRecipes:
    target: str
    fp16: Fp16Recipe
    int8: Int8Recipe
    fp32_purpose: str


_ORT_INT8 = Int8Recipe(
    target="onnxruntime", tool="onnxruntime", activations="uint8 asymmetric",
    weights="int8 symmetric per-channel (axis 0)",
    float_op_types=("BatchNormalization", "MaxPool"), float_svn_convs=True, float_head=True,
    op_types_to_quantize=None, share_scales=True, concat_shares_scale=True, fold_downsampler_bn=True,
    purpose="ONNX Runtime CPU provider, QLinear-fused INT8 (u8 activations, s8 per-channel weights)",
    why="MaxPool float: ONNX Runtime's uint8 MaxPool is a plain NCHW loop, ~10x its float NCHWc one "
        "(1.31x -> 1.48x); the downsamplers' BatchNormalization (no int8 kernel) split exactly into the "
        "strided conv (int8) and a float affine on the pooled quarter (lrnnet.calib.rewrite; 1.54x -> "
        "1.63x; a depthwise 1x1 int8 conv in its place was slower, 1.41x); SVN 1x1 convs float: small convs at 1/8 scale "
        "whose Q/DQ cost more than they save (1.51x -> 1.57x); head float: int8 logits cost pixel "
        "agreement (99.28% -> 98.94% at 512x1024) and the uint8 Resize is no faster",
)

_TRT_INT8 = Int8Recipe(
    target="tensorrt", tool="modelopt", activations="int8 symmetric",
    weights="int8 symmetric per-channel (axis 0)",
    float_op_types=(), float_svn_convs=False, float_head=True,
    op_types_to_quantize=None, share_scales=False, concat_shares_scale=False, fold_downsampler_bn=False,
    purpose="TensorRT-ready strongly typed Q/DQ graph (NVIDIA Model Optimizer placement)",
    why="Model Optimizer places Q/DQ by TensorRT's fusion rules (inputs of weighted layers, one input "
        "of a residual Add); the head stays float for the argmax margins, as on every target",
)

TENSORRT_FALLBACK_INT8 = Int8Recipe(
    target="tensorrt", tool="onnxruntime", activations="int8 symmetric",
    weights="int8 symmetric per-channel (axis 0)",
    float_op_types=("BatchNormalization",), float_svn_convs=False, float_head=True,
    # TensorRT's rule for explicit quantization: Q/DQ on the inputs of weighted layers; it fuses and
    # propagates the rest itself (a Q/DQ on both inputs of a residual Add would block the conv+add fusion).
    op_types_to_quantize=("Conv",), share_scales=False, concat_shares_scale=False, fold_downsampler_bn=False,
    purpose="TensorRT-ready strongly typed Q/DQ graph (ONNX Runtime quantizer with TensorRT's rules; "
            "NVIDIA Model Optimizer was not importable)",
    why="BatchNormalization float: TensorRT imports BN only with constant parameters",
)

RECIPES: dict[str, TargetRecipes] = {
    "onnxruntime": TargetRecipes(
        target="onnxruntime",
        fp16=Fp16Recipe(
            target="onnxruntime", tool="onnxconverter-common", cpu_optimise=False,
            purpose="ONNX Runtime float16 graph for the CUDA execution provider; the CPU provider has no "
                    "float16 convolutions and runs it as float32 inside Casts (slower than FP32 on a CPU: "
                    "use --fp32 or --int8 there)"),
        int8=_ORT_INT8,
        fp32_purpose="ONNX Runtime FP32 graph (any execution provider)",
    ),
    "tensorrt": TargetRecipes(
        target="tensorrt",
        fp16=Fp16Recipe(
            target="tensorrt", tool="onnxconverter-common", cpu_optimise=False,
            purpose="TensorRT-ready strongly typed FP16 graph (float16 convs; power iteration and softmax "
                    "in float32)"),
        int8=_TRT_INT8,
        fp32_purpose="TensorRT-ready FP32 graph",
    ),
}


def recipes_for(target: str) -> TargetRecipes:
    if target not in RECIPES:
        raise ValueError(f"unknown precision target {target!r}; known: {', '.join(TARGETS)}")
    return RECIPES[target]


def purpose_of(target: str, precision: str, int8: Int8Recipe | None = None) -> str:
    """The words that say what a precision graph for `target` is for (metadata and sidecar)."""
    recipes = recipes_for(target)
    if precision == "int8":
        return (int8 or recipes.int8).purpose
    return recipes.fp16.purpose if precision == "fp16" else recipes.fp32_purpose
