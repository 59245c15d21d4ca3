"""Exact graph rewrites an INT8 recipe applies before quantizing, each paired with its calibration ranges.

LRNNet's downsampling unit is ``Relu(BN(Concat(Conv(x), MaxPool(x))))``: a BatchNormalization
after a Concat, which no int8 kernel of ONNX Runtime's CPU provider takes, so the unit's whole
output leaves int8 for it (DequantizeLinear, float BN, QuantizeLinear at full size). BN is a
per-channel affine map, so it splits exactly across the Concat: its first channels fold into the
strided Conv's weights and bias (an int8 Conv + Relu), the rest become a float Mul/Add/Relu on the
pooled tensor (a quarter of the input's pixels), and the Concat then joins two int8 tensors.

The ranges of the new tensors come from the calibration of the original graph, so one calibration
(and its cache) serves every recipe: each half of the new Concat is a subset of the channels of
the original unit's output (the Relu after the BN), so it takes that tensor's range, which is
also what the Concat's inputs need to share the output's scale (lrnnet.calib.int8).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lrnnet.calib.graph import tensor_readers

# Marks the float nodes a rewrite adds, so the quantizer is told to leave them float.
FLOAT_MARK = "/lrnnet_float"


def fold_downsampler_batchnorm(model: onnx.ModelProto, tensors_data: dict[str, Any]
                               ) -> tuple[onnx.ModelProto, dict[str, Any], list[str]]:
    """(rewritten model, ranges with the new tensors', names of the float nodes added); input unchanged.

    A unit whose BN output has another reader than its Relu, or whose Conv/MaxPool output has
    another reader than the Concat, or with any of those tensors a graph output, is left as it is.
    """
    model = copy.deepcopy(model)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    readers = tensor_readers(model)
    outputs = {value.name for value in graph.output}
    ranges = dict(tensors_data["data"])
    replaced: dict[str, list[onnx.NodeProto]] = {}
    dropped: set[str] = set()
    float_nodes: list[str] = []
    for bn in [n for n in graph.node if n.op_type == "BatchNormalization"]:
        unit = _downsampler_of(bn, producers, readers, outputs, initializers)
        if unit is None or unit["relu"].output[0] not in ranges:
            continue
        conv, pool, concat, relu = unit["conv"], unit["pool"], unit["concat"], unit["relu"]
        gamma, beta, mean, var = (numpy_helper.to_array(initializers[name]) for name in bn.input[1:5])
        epsilon = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = (gamma / np.sqrt(var + epsilon)).astype(np.float32)
        shift = (beta - mean * scale).astype(np.float32)
        weight = numpy_helper.to_array(initializers[conv.input[1]])
        bias = (numpy_helper.to_array(initializers[conv.input[2]]) if len(conv.input) > 2 and conv.input[2]
                else np.zeros(weight.shape[0], np.float32))
        k = weight.shape[0]
        base = bn.name.rsplit("/", 1)[0] + "/bn_split"
        folded_w, folded_b, pool_scale, pool_shift = (f"{base}/conv_weight", f"{base}/conv_bias",
                                                      f"{base}/pool_scale", f"{base}/pool_shift")
        graph.initializer.extend([
            numpy_helper.from_array((weight * scale[:k, None, None, None]).astype(np.float32), folded_w),
            numpy_helper.from_array((bias * scale[:k] + shift[:k]).astype(np.float32), folded_b),
            numpy_helper.from_array(scale[k:].reshape(1, -1, 1, 1), pool_scale),
            numpy_helper.from_array(shift[k:].reshape(1, -1, 1, 1), pool_shift),
        ])
        conv_out, conv_relu = f"{base}/conv_output", f"{base}/conv_relu_output"
        pool_mul, pool_add, pool_relu = f"{base}/pool_mul_output", f"{base}/pool_add_output", f"{base}/pool_relu_output"
        folded_conv = helper.make_node("Conv", [conv.input[0], folded_w, folded_b], [conv_out], name=f"{base}/Conv")
        folded_conv.attribute.extend(conv.attribute)
        pool_nodes = [
            helper.make_node("Mul", [pool.output[0], pool_scale], [pool_mul], name=f"{base}{FLOAT_MARK}/Mul"),
            helper.make_node("Add", [pool_mul, pool_shift], [pool_add], name=f"{base}{FLOAT_MARK}/Add"),
            helper.make_node("Relu", [pool_add], [pool_relu], name=f"{base}{FLOAT_MARK}/Relu"),
        ]
        replaced[conv.name] = [folded_conv, helper.make_node("Relu", [conv_out], [conv_relu], name=f"{base}/Relu")]
        replaced[concat.name] = [*pool_nodes, helper.make_node("Concat", [conv_relu, pool_relu], [relu.output[0]],
                                                               name=concat.name, axis=1)]
        dropped |= {bn.name, relu.name}
        float_nodes += [node.name for node in pool_nodes]
        for name in (conv_out, conv_relu, pool_relu):
            ranges[name] = ranges[relu.output[0]]
        # The pooled tensor is float now (read by the float affine): no range of its own. The Q/DQ pair
        # ONNX Runtime's quantizer still puts after a MaxPool (at its input's scale) is removed after
        # quantizing (lrnnet.calib.int8._drop_qdq_between_float_nodes); left in, ONNX Runtime would fold it
        # into an int8 MaxPool, whose NCHW loop is ~10x slower than the float one (lrnnet.calib.recipes).
        ranges.pop(pool.output[0], None)
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.name in replaced:
            nodes.extend(replaced[node.name])
        elif node.name not in dropped:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model, {**tensors_data, "data": ranges}, float_nodes


def _downsampler_of(bn: onnx.NodeProto, producers: dict[str, onnx.NodeProto],
                    readers: dict[str, list[onnx.NodeProto]], outputs: set[str],
                    initializers: dict[str, onnx.TensorProto]) -> dict[str, Any] | None:
    """The unit's nodes around `bn` when it is Relu(BN(Concat(Conv(x), MaxPool(x)))) with no other readers."""
    def read_once(name: str) -> bool:  # by one node, and not a graph output
        return len(readers.get(name, [])) == 1 and name not in outputs

    concat = producers.get(bn.input[0])
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2 \
            or not read_once(bn.output[0]) or not read_once(concat.output[0]):
        return None
    relu = readers[bn.output[0]][0]
    conv, pool = producers.get(concat.input[0]), producers.get(concat.input[1])
    if relu.op_type != "Relu" or conv is None or pool is None or conv.op_type != "Conv" or pool.op_type != "MaxPool" \
            or not all(read_once(node.output[0]) for node in (conv, pool)) \
            or not all(name in initializers for name in [*conv.input[1:], *bn.input[1:5]]) \
            or next((a.i for a in concat.attribute if a.name == "axis"), None) not in (1, -3):
        return None
    return {"conv": conv, "pool": pool, "concat": concat, "relu": relu}
