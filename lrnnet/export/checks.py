"""Static checks of an exported graph: deployable ops only, valid ONNX, TensorRT parser rules, inferable shapes.

The export fails (``GraphCheckError``, an internal failure, exit 1) when a check does not hold:
a graph TensorRT would reject or run through slow fallbacks is a bug of the exporter or the
model, never something the user can fix with other arguments.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "FORBIDDEN_OPS",
    "TENSORRT_NATIVE_OPS",
    "GraphCheckError",
    "check_graph",
    "check_onnx_valid",
    "check_ops",
    "check_parser_rules",
    "declare_output_shape",
    "op_counts",
]


class GraphCheckError(RuntimeError):
    """The exported graph breaks a deployment rule (an op, the ONNX spec, a shape)."""


# Ops that must never appear, with the reason given in the error message. Control flow and
# data-dependent shapes defeat TensorRT's static engine (or fall back to slow paths); SVD has no
# ONNX op at all (it would appear as an ATen fallback); the rest are exporter fallbacks.
FORBIDDEN_OPS: dict[str, str] = {
    "Loop": "control flow (the power iteration must be unrolled)",
    "Scan": "control flow (the power iteration must be unrolled)",
    "If": "control flow (a data-dependent branch)",
    "SVD": "no ONNX/TensorRT op (export with svd='power')",
    "ATen": "a PyTorch ATen fallback op (e.g. linalg.svd), unknown to every ONNX backend",
    "PythonOp": "a Python autograd function, unknown to every ONNX backend",
    "NonZero": "a data-dependent output shape",
    "Einsum": "not a native TensorRT layer in general (restricted support)",
    "Unique": "a data-dependent output shape",
    "Compress": "a data-dependent output shape",
    "SequenceConstruct": "ONNX sequences are not supported by TensorRT",
    "SequenceAt": "ONNX sequences are not supported by TensorRT",
    "SplitToSequence": "ONNX sequences are not supported by TensorRT",
    "ConcatFromSequence": "ONNX sequences are not supported by TensorRT",
    "Mod": "not supported by TensorRT's ONNX parser on every version",
}

# ONNX ops that TensorRT 10/11's ONNX parser maps to native layers with no restriction that
# matters to a CNN (onnx-tensorrt docs/operators.md). Deliberately an allow-list: an op not
# named here fails the export until someone checks it against TensorRT and adds it.
TENSORRT_NATIVE_OPS: frozenset[str] = frozenset({
    # arithmetic and elementwise
    "Abs", "Add", "Sub", "Mul", "Div", "Neg", "Pow", "Sqrt", "Reciprocal", "Exp", "Log", "Erf",
    "Max", "Min", "Sum", "Mean", "Clip", "Floor", "Ceil", "Round", "Sign",
    "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Where",
    # activations
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
    "Softplus", "Softmax", "LogSoftmax",
    # convolution, pooling, normalisation
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "MatMul", "Gemm",
    # reductions
    "ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ArgMax", "ArgMin",
    "TopK",
    # shapes and data movement
    "Shape", "Size", "Gather", "Concat", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose",
    "Slice", "Split", "Pad", "Expand", "Tile", "Resize", "Identity", "Constant", "ConstantOfShape",
    "Cast", "Range", "DepthToSpace", "SpaceToDepth", "Dropout",
    # explicit quantization (INT8 graphs of lrnnet-build-engine pass the same check)
    "QuantizeLinear", "DequantizeLinear",
})

_DEFAULT_DOMAINS = ("", "ai.onnx")


def _walk_nodes(graph: Any) -> Iterator[Any]:
    """Every node, including those in subgraphs (so a Loop's body cannot hide an op)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _walk_nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _walk_nodes(sub)


def op_counts(model: Any) -> Counter[str]:
    """How many nodes of each op type (domain-qualified when not the default domain)."""
    return Counter(_qualified(node) for node in _walk_nodes(model.graph))


def _qualified(node: Any) -> str:
    return node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def check_ops(model: Any, allowed: Iterable[str] = TENSORRT_NATIVE_OPS) -> Counter[str]:
    """Fail on forbidden ops, custom domains and ops outside ``allowed``; return the op counts."""
    counts = op_counts(model)
    allowed = frozenset(allowed)
    problems = []
    for op, count in sorted(counts.items()):
        base = op.split("::")[-1]
        if base in FORBIDDEN_OPS:
            problems.append(f"{op} x{count} ({FORBIDDEN_OPS[base]})")
        elif "::" in op:
            problems.append(f"{op} x{count} (custom domain, needs a plugin)")
        elif op not in allowed:
            problems.append(f"{op} x{count} (not in lrnnet's list of TensorRT-native ops)")
    if problems:
        raise GraphCheckError("the exported graph contains ops that cannot be deployed: " + "; ".join(problems))
    return counts


def check_onnx_valid(model: Any) -> Any:
    """onnx.checker (full check) and strict shape inference; returns the shape-inferred model.

    Inference runs on a copy whose outputs declare no shape, so the returned output shapes are
    what the graph computes, not what it claims.
    """
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for output in probe.graph.output:
        output.type.tensor_type.ClearField("shape")
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(probe, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GraphCheckError(f"the exported graph is not valid ONNX: {first_line}") from exc


def check_parser_rules(model: Any) -> None:
    """TensorRT's parser rules on types and attributes (lrnnet.export.tensorrt_rules), as an export check.

    Every export is meant to parse on TensorRT, whichever backend runs it later; a graph of our own
    exporter that breaks a rule is the exporter's bug, hence GraphCheckError (exit 1), not InputError.
    """
    from lrnnet.export.tensorrt_rules import tensorrt_rule_violations

    violations = tensorrt_rule_violations(model)
    if violations:
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise GraphCheckError(f"the exported graph breaks a TensorRT ONNX parser rule: {violations[0]}{more}")


def _dims(value_info: Any) -> list[int | str | None]:
    dims: list[int | str | None] = []
    for dim in value_info.type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims


def check_graph(model: Any, expected_output_shape: list[int | str] | None = None,
                allowed: Iterable[str] = TENSORRT_NATIVE_OPS) -> Counter[str]:
    """All checks: ops, ONNX validity, TensorRT's parser rules, and (when given) the inferred output shape; returns op counts.

    ``expected_output_shape`` has ints for static dims and names for dynamic ones; a static dim
    that shape inference cannot prove is a failure (TensorRT would then need a dynamic profile).
    """
    counts = check_ops(model, allowed)
    inferred = check_onnx_valid(model)
    check_parser_rules(model)
    if expected_output_shape is not None:
        # Both what the graph declares (what a consumer reads) and what shape inference proves.
        for source, graph in (("declared", model.graph), ("inferred", inferred.graph)):
            if len(graph.output) != 1:
                raise GraphCheckError(f"expected one graph output, found {len(graph.output)}")
            got = _dims(graph.output[0])
            if len(got) != len(expected_output_shape) or any(
                isinstance(want, int) and have != want for have, want in zip(got, expected_output_shape)
            ):
                raise GraphCheckError(f"the graph's {source} output shape is {got}, "
                                      f"expected {list(expected_output_shape)}")
    return counts


def declare_output_shape(model: Any, shape: list[int | str]) -> None:
    """Write ``shape`` (ints static, names dynamic) as the graph output's declared shape.

    The TorchScript exporter names dims it cannot prove static (the class dim of a dynamic graph
    becomes 'Resizelogits_dim_1'); consumers read the declared shape, so it must say 19.
    ``check_graph`` then proves it with strict shape inference.
    """
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise GraphCheckError(f"the graph output has rank {len(dims)}, expected {len(shape)}")
    for dim, value in zip(dims, shape):
        if isinstance(value, int):
            dim.dim_value = value
        else:
            dim.dim_param = value
