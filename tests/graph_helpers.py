"""Small hand-built ONNX graphs for the graph-check and TensorRT-rule tests."""

from __future__ import annotations

from onnx import helper


def graph_model(nodes, inputs, outputs, initializers=(), opset=17, domains=()):
    """A model of `nodes` with the standard domain at `opset` (and each of `domains` at version 1)."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)]
    return helper.make_model(graph, opset_imports=opsets)


def value_info(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)
