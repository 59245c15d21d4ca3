"""TensorRT's ONNX parser rules, checked offline: op types, data types and attributes.

A graph can be valid ONNX, run on ONNX Runtime, use only ops TensorRT knows, and still be refused
by TensorRT's parser: a Slice on UINT8, a QuantizeLinear with a uint8 zero point, a Resize in
``cubic`` mode. This module holds a graph against the parser's documented support, on any machine
(no TensorRT needed), so the file a GPU machine will build from is known to parse.

Source of the rules (TensorRT 10.x), cited where each is used:

* onnx-tensorrt ``docs/operators.md`` ("Supported ONNX Operators", TensorRT 10.0/10.1),
  https://github.com/onnx/onnx-tensorrt/blob/96e781103cfc4adf4a6bb557e94bac8e693f6f4c/docs/operators.md
  (commit 96e7811, "ONNX-TensorRT 10.1 GA release"): the per-op type column and restrictions,
  opsets 9-20, "UINT8 is only supported as network input or output tensor types", INT8/INT4/FP8
  only through quantization from a higher-precision float, DOUBLE only with down-casting.
* onnx-tensorrt ``onnxOpImporters.cpp`` at the same commit, ``QuantDequantLinearHelper``: the
  scale must have coefficients, all positive, static shape; the zero point all zeros ("TensorRT
  only supports symmetric quantization"); a UINT8 zero point is silently read as INT8; Q/DQ output
  types are FP8, INT8 or INT4 only (so an int32 DequantizeLinear, a quantized bias, is refused).
* TensorRT "Quantize" operator reference (docs.nvidia.com/deeplearning/tensorrt/operators/docs/
  Quantize.html): "the scale tensor must be a build-time constant", scalar for per-tensor, 1-D
  for per-channel, 2-D (block) for INT4 only; and the developer guide's quantization scheme:
  per-tensor activations, per-channel weights on the output-channel axis (K: axis 0 of a Conv
  weight, axis 1 of a ConvTranspose weight).

Two rules are lrnnet's, marked as such in their messages: no INT64 network output (TensorRT
before 10 has no INT64 I/O and lrnnet's runners bind labels as int32), and no non-default domain
(com.microsoft and the like are ONNX Runtime contrib ops, which TensorRT knows only as plugins).

    violations = tensorrt_rule_violations(model)   # [] when every rule holds
    check_tensorrt_parser_rules(model)             # InputError naming the first broken rule
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrnnet.errors import InputError

__all__ = [
    "OPSET_RANGE",
    "OP_TYPES",
    "Violation",
    "check_tensorrt_parser_rules",
    "tensorrt_rule_violations",
]

OPERATORS_MD = "onnx-tensorrt docs/operators.md (TensorRT 10.1, commit 96e7811)"
QDQ_IMPORTER = "onnx-tensorrt QuantDequantLinearHelper (TensorRT 10.1)"
OPSET_RANGE = (9, 20)  # operators.md: "TensorRT 10.0 supports operators in the inclusive range of opset 9 to 20"

_FLOAT = ("FLOAT", "FLOAT16", "BFLOAT16")
_NUMERIC = (*_FLOAT, "INT32", "INT64")
_MOVEMENT = (*_NUMERIC, "BOOL")
_QUANTIZED = ("INT8", "FLOAT8E4M3FN", "INT4")

# op -> data types its (data) input may have, transcribed from operators.md's "Supported Types"
# (FP32 = FLOAT, FP8 = FLOAT8E4M3FN), for every op lrnnet's export allow-list names plus Cast and Q/DQ.
OP_TYPES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("Abs", "Add", "ArgMax", "ArgMin", "DepthToSpace", "Div", "Equal", "Greater",
                     "GreaterOrEqual", "Less", "LessOrEqual", "Max", "Min", "Mul", "Neg", "Pad", "Range",
                     "ReduceL2", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum", "ReduceSumSquare",
                     "Relu", "Sign", "SpaceToDepth", "Sub", "Sum", "TopK"), _NUMERIC),
    **dict.fromkeys(("And", "Not", "Or"), ("BOOL",)),
    **dict.fromkeys(("AveragePool", "BatchNormalization", "Ceil", "Clip", "Conv", "ConvTranspose", "Dropout",
                     "Elu", "Erf", "Exp", "Floor", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "HardSigmoid",
                     "HardSwish", "InstanceNormalization", "LayerNormalization", "LeakyRelu", "Log",
                     "LogSoftmax", "MatMul", "MaxPool", "PRelu", "Pow", "QuantizeLinear", "Reciprocal",
                     "Resize", "Round", "Selu", "Sigmoid", "Softmax", "Softplus", "Sqrt", "Tanh"), _FLOAT),
    "Cast": (*_MOVEMENT, "UINT8"),
    **dict.fromkeys(("Concat", "Constant", "ConstantOfShape", "Expand", "Flatten", "Gather", "Identity",
                     "Reshape", "Shape", "Size", "Slice", "Split", "Squeeze", "Tile", "Transpose", "Unsqueeze",
                     "Where"), _MOVEMENT),
    "DequantizeLinear": _QUANTIZED,
    "Mean": (*_NUMERIC, "FLOAT8E4M3FN"),
}

# Which input carries the data whose type operators.md lists (0 unless said here); the output for
# ops whose only input is a shape.
_DATA_INPUT = {"Where": 1}
_TYPE_FROM_OUTPUT = {"Constant", "ConstantOfShape", "Range"}
# Inputs that must be initializers (or Constant outputs): operators.md's "`axes` must be an initializer".
_CONSTANT_INPUTS = {"Slice": {3: "axes"}, "Pad": {3: "axes"}, "Squeeze": {1: "axes"}, "Unsqueeze": {1: "axes"},
                    **{op: {1: "axes"} for op in ("ReduceL2", "ReduceMax", "ReduceMean", "ReduceMin",
                                                  "ReduceSum", "ReduceSumSquare")},
                    "Dropout": {2: "training_mode"}}
_RESIZE_COORDINATES = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
_RESIZE_MODES = ("nearest", "linear")
_RESIZE_NEAREST = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Violation:
    """One broken rule: which node (or tensor), its op, and the rule with its source."""

    node: str
    op: str
    rule: str

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op}): {self.rule}"


def check_tensorrt_parser_rules(model: Any) -> None:
    """Raise InputError naming the node, the op and the rule when ``model`` breaks a TensorRT parser rule."""
    violations = tensorrt_rule_violations(model)
    if violations:
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise InputError(f"the graph breaks a TensorRT ONNX parser rule: {violations[0]}{more}")


def tensorrt_rule_violations(model: Any) -> list[Violation]:
    """Every broken rule of ``model`` (an onnx.ModelProto), in graph order; [] when it would parse."""
    graph = _TypedGraph(model)
    violations = list(_opset_violations(model))
    for node in model.graph.node:
        violations.extend(_node_violations(node, graph))
    violations.extend(_io_violations(graph))
    return violations


class _TypedGraph:
    """The data type of every tensor (shape inference on a copy), constants, producers and consumers."""

    def __init__(self, model: Any) -> None:
        import onnx

        try:
            inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
        except Exception:  # noqa: BLE001 - the types already declared are still checked
            inferred = model
        g = inferred.graph
        self.elem_type: dict[str, int] = {}
        for info in (*g.input, *g.value_info, *g.output):
            if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
                self.elem_type[info.name] = info.type.tensor_type.elem_type
        self.constants: dict[str, Any] = {init.name: init for init in g.initializer}
        for init in g.initializer:
            self.elem_type[init.name] = init.data_type
        for node in g.node:
            if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
                for attribute in node.attribute:
                    if attribute.name == "value":
                        self.constants[node.output[0]] = attribute.t
                        self.elem_type[node.output[0]] = attribute.t.data_type
        self.inputs = [i.name for i in g.input if i.name not in self.constants]
        self.outputs = [o.name for o in g.output]
        self.producer = {out: node for node in g.node for out in node.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in g.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def type_name(self, tensor: str) -> str | None:
        import onnx

        elem = self.elem_type.get(tensor)
        return onnx.TensorProto.DataType.Name(elem) if elem else None

    def constant(self, tensor: str) -> np.ndarray | None:
        from onnx import numpy_helper

        proto = self.constants.get(tensor)
        return None if proto is None else numpy_helper.to_array(proto)


def _opset_violations(model: Any) -> Iterator[Violation]:
    low, high = OPSET_RANGE
    for opset in model.opset_import:
        if opset.domain in _DEFAULT_DOMAINS and not low <= opset.version <= high:
            yield Violation("(model)", "opset", f"opset {opset.version} is outside TensorRT 10's {low}-{high} "
                                                f"({OPERATORS_MD})")


def _node_violations(node: Any, graph: _TypedGraph) -> Iterator[Violation]:
    name, op = node.name or (node.output[0] if node.output else "?"), node.op_type

    def violation(rule: str) -> Violation:
        return Violation(name, op, rule)

    if node.domain not in _DEFAULT_DOMAINS:
        yield violation(f"domain '{node.domain}' is not ONNX's (a contrib op; TensorRT has it only as a plugin) "
                        "[lrnnet rule]")
        return
    allowed = OP_TYPES.get(op)
    if allowed is None:
        yield violation(f"not an op lrnnet has checked against {OPERATORS_MD}")
        return
    tensor = node.output[0] if op in _TYPE_FROM_OUTPUT else \
        (node.input[_DATA_INPUT.get(op, 0)] if len(node.input) > _DATA_INPUT.get(op, 0) else "")
    dtype = graph.type_name(tensor) if tensor else None
    if dtype is not None and dtype not in allowed:
        yield violation(f"{dtype} {'output' if op in _TYPE_FROM_OUTPUT else 'input'} '{tensor}' is not a type "
                        f"TensorRT's {op} takes ({', '.join(allowed)}; {OPERATORS_MD})")
    for index, what in _CONSTANT_INPUTS.get(op, {}).items():
        if len(node.input) > index and node.input[index] and node.input[index] not in graph.constants:
            yield violation(f"input '{what}' must be an initializer ({OPERATORS_MD})")
    yield from (violation(rule) for rule in _attribute_rules(node, graph))
    if op in ("QuantizeLinear", "DequantizeLinear"):
        yield from (violation(rule) for rule in _qdq_rules(node, graph))


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _attribute_rules(node: Any, graph: _TypedGraph) -> Iterator[str]:
    op, attrs = node.op_type, _attributes(node)
    if op in ("AveragePool", "MaxPool"):
        if len(attrs.get("kernel_shape", [])) not in (2, 3):
            yield f"{len(attrs.get('kernel_shape', []))}D pooling; only 2D or 3D ({OPERATORS_MD})"
        if any(d != 1 for d in attrs.get("dilations", [])):
            yield f"dilations {list(attrs['dilations'])} must be empty or all ones ({OPERATORS_MD})"
        if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            yield f"the Indices output is unsupported ({OPERATORS_MD})"
    elif op == "Constant":
        for bad in ("sparse_value", "value_string", "value_strings"):
            if bad in attrs:
                yield f"attribute '{bad}' is unsupported ({OPERATORS_MD})"
    elif op == "Resize":
        checks = (("coordinate_transformation_mode", "half_pixel", _RESIZE_COORDINATES),
                  ("mode", "nearest", _RESIZE_MODES), ("nearest_mode", "round_prefer_floor", _RESIZE_NEAREST),
                  ("keep_aspect_ratio_policy", "stretch", ("stretch",)))
        for attribute, default, supported in checks:
            value = _text(attrs.get(attribute, default))
            if value not in supported:
                yield f"{attribute}='{value}' is unsupported (supported: {', '.join(supported)}; {OPERATORS_MD})"
        if attrs.get("antialias", 0):
            yield f"antialiasing is not supported ({OPERATORS_MD})"
    elif op == "TopK" and attrs.get("sorted", 1) != 1:
        yield f"`sorted` must be 1 ({OPERATORS_MD})"
    elif op == "LayerNormalization" and any(node.output[1:]):
        yield f"only the first output Y is supported ({OPERATORS_MD})"
    elif op == "Dropout" and len(node.input) > 2 and node.input[2]:
        training = graph.constant(node.input[2])
        if training is not None and bool(training):
            yield f"training_mode must evaluate to False ({OPERATORS_MD})"


def _qdq_rules(node: Any, graph: _TypedGraph) -> Iterator[str]:
    """TensorRT's explicit-quantization rules for one QuantizeLinear / DequantizeLinear."""
    op, attrs = node.op_type, _attributes(node)
    is_dq = op == "DequantizeLinear"
    data = node.input[0]
    if is_dq and graph.type_name(data) == "INT32":
        yield (f"int32 input '{data}' (a quantized bias): TensorRT dequantizes only INT8, FP8 and INT4; keep "
               f"biases float, TensorRT fuses them into the int8 layer ({QDQ_IMPORTER})")
    if len(node.input) < 2 or not node.input[1]:
        yield f"no scale input ({QDQ_IMPORTER})"
        return
    scale = graph.constant(node.input[1])
    if scale is None:
        yield (f"scale '{node.input[1]}' is computed, not an initializer: TensorRT needs a build-time constant "
               "scale (TensorRT Quantize operator reference)")
        return
    if scale.size == 0 or not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        yield f"scale '{node.input[1]}' must be finite and all positive ({QDQ_IMPORTER})"
    zero_point = graph.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2]:
        zero_type = graph.type_name(node.input[2])
        if zero_point is None:
            yield f"zero point '{node.input[2]}' must be a constant ({QDQ_IMPORTER})"
        elif np.any(zero_point.astype(np.float64) != 0):
            yield (f"zero point '{node.input[2]}' is not all zeros: TensorRT only supports symmetric quantization "
                   f"({QDQ_IMPORTER})")
        if zero_type == "UINT8":
            yield (f"uint8 zero point '{node.input[2]}' (u8 asymmetric quantization, ONNX Runtime's CPU form): "
                   f"TensorRT reads it as INT8 and changes the values; use int8 with zero point 0 ({QDQ_IMPORTER})")
        elif zero_type is not None and zero_type not in _QUANTIZED:
            yield f"{zero_type} zero point: Q/DQ types must be INT8, FP8 or INT4 ({QDQ_IMPORTER})"
    if scale.ndim > 1:
        yield f"{scale.ndim}-D scale (block quantization) is for INT4 only (TensorRT Quantize operator reference)"
    elif scale.size > 1:
        yield from _per_channel_rules(node, graph, int(attrs.get("axis", 1)), scale.size)


def _per_channel_rules(node: Any, graph: _TypedGraph, axis: int, channels: int) -> Iterator[str]:
    """Per-channel scales: weights only, on the output-channel axis of the consuming Conv."""
    data = node.input[0]
    weights = data if node.op_type == "QuantizeLinear" else None
    if node.op_type == "DequantizeLinear":
        producer = graph.producer.get(data)
        weights = data if data in graph.constants else (
            producer.input[0] if producer is not None and producer.op_type == "QuantizeLinear" else None)
    if weights is None or weights not in graph.constants:
        yield (f"per-channel scale ({channels} values) on an activation: TensorRT quantizes activations "
               "per-tensor, weights per-channel (TensorRT developer guide, quantization scheme)")
        return
    shape = graph.constants[weights].dims
    if axis < 0:
        axis += len(shape)
    if not 0 <= axis < len(shape) or shape[axis] != channels:
        yield f"per-channel axis {axis} does not match {channels} scales for weights of shape {list(shape)}"
    if node.op_type == "DequantizeLinear":
        for consumer in graph.consumers.get(node.output[0], []):
            wanted = {"Conv": 0, "ConvTranspose": 1}.get(consumer.op_type)
            if wanted is not None and list(consumer.input[1:2]) == [node.output[0]] and axis != wanted:
                yield (f"per-channel weights of {consumer.op_type} '{consumer.name}' on axis {axis}; TensorRT wants "
                       f"the output-channel axis {wanted} (TensorRT developer guide, quantization scheme)")


def _io_violations(graph: _TypedGraph) -> Iterator[Violation]:
    """Types that TensorRT allows only at the network's edges (or not at all)."""
    edges = set(graph.inputs) | set(graph.outputs)
    for name in graph.outputs:
        if graph.type_name(name) == "INT64":
            yield Violation(name, "graph output", "INT64 network output; emit int32 labels (TensorRT before 10 has "
                                                  "no INT64 I/O; lrnnet's runners bind int32) [lrnnet rule]")
    for tensor in graph.elem_type:
        dtype = graph.type_name(tensor)
        node = graph.producer.get(tensor)
        where, op = (node.name or tensor, node.op_type) if node is not None else \
            (tensor, "initializer" if tensor in graph.constants else "graph input")
        if dtype == "DOUBLE":
            yield Violation(where, op, f"DOUBLE tensor '{tensor}': TensorRT casts it to FLOAT, clamping "
                                       f"({OPERATORS_MD}); export float32")
        elif dtype == "UINT8":
            if tensor not in edges:
                yield Violation(where, op, f"UINT8 tensor '{tensor}' inside the network: UINT8 is only supported "
                                           f"as network input or output ({OPERATORS_MD})")
            elif tensor in graph.inputs:
                for consumer in graph.consumers.get(tensor, []):
                    if consumer.op_type != "Cast":
                        yield Violation(consumer.name or tensor, consumer.op_type,
                                        f"takes the UINT8 network input '{tensor}' directly; UINT8 is only "
                                        f"supported at network I/O, so Cast it first ({OPERATORS_MD})")
            elif node is not None and node.op_type != "Cast":
                yield Violation(where, op, f"writes the UINT8 network output '{tensor}'; only a Cast may "
                                           f"({OPERATORS_MD})")
        elif dtype in _QUANTIZED:
            if tensor in edges:
                yield Violation(where, op, f"{dtype} network {'input' if tensor in graph.inputs else 'output'} "
                                           f"'{tensor}': quantized types exist only between Q and DQ "
                                           f"({OPERATORS_MD})")
            # An INT8 Constant is refused too (operators.md's Constant row has no quantized type; quantized
            # weights are initializers, which DequantizeLinear takes), but by the op-type rule, which holds the
            # output of Constant, ConstantOfShape and Range against its row: said once, there.
            if node is not None and node.op_type != "QuantizeLinear" and node.op_type not in _TYPE_FROM_OUTPUT:
                yield Violation(where, op, f"produces {dtype} tensor '{tensor}'; quantized types come only from "
                                           f"QuantizeLinear ({OPERATORS_MD})")
            for consumer in graph.consumers.get(tensor, []):
                is_zero_point = consumer.op_type == "QuantizeLinear" and list(consumer.input[2:3]) == [tensor]
                if consumer.op_type != "DequantizeLinear" and not is_zero_point:
                    yield Violation(consumer.name or tensor, consumer.op_type,
                                    f"takes {dtype} tensor '{tensor}'; quantized types may only feed "
                                    f"DequantizeLinear ({OPERATORS_MD})")
