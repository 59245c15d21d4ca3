"""The graph checks: forbidden and non-TensorRT ops fail, valid ONNX passes, shapes are checked."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from graph_helpers import graph_model as _model
from onnx import TensorProto, helper, numpy_helper

from lrnnet.export.checks import (
    FORBIDDEN_OPS,
    TENSORRT_NATIVE_OPS,
    GraphCheckError,
    check_graph,
    check_onnx_valid,
    check_ops,
    declare_output_shape,
    op_counts,
)


def _relu_model(shape=(1, 3, 4, 4)):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    return _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y])


def _loop_model():
    """y = x + 1 repeated 3 times with an ONNX Loop (what an un-unrolled power iteration would be)."""
    body_inputs = [
        helper.make_tensor_value_info("i", TensorProto.INT64, []),
        helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [2]),
    ]
    body_outputs = [
        helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
        helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [2]),
    ]
    one = numpy_helper.from_array(np.ones(2, np.float32), "one")
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body", body_inputs, body_outputs, initializer=[one],
    )
    trip = numpy_helper.from_array(np.array(3, np.int64), "trip")
    cond = numpy_helper.from_array(np.array(True), "cond")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    loop = helper.make_node("Loop", ["trip", "cond", "x"], ["y"], body=body)
    return _model([loop], [x], [y], [trip, cond])


def test_plain_graph_passes_and_counts_ops():
    counts = check_graph(_relu_model(), [1, 3, 4, 4])
    assert counts == {"Relu": 1}


def test_loop_fails_with_reason():
    with pytest.raises(GraphCheckError, match=r"Loop x1 \(control flow"):
        check_ops(_loop_model())


def test_ops_inside_subgraphs_are_counted():
    # The Add lives in the Loop's body: a check of the top-level nodes alone would miss it.
    assert op_counts(_loop_model()) == {"Loop": 1, "Identity": 1, "Add": 1}


@pytest.mark.parametrize("op", ["NonZero", "Einsum", "If", "Scan"])
def test_every_forbidden_op_fails(op):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    with pytest.raises(GraphCheckError, match=op):
        check_ops(_model([helper.make_node(op, ["x"], ["y"])], [x], [y]))
    assert op in FORBIDDEN_OPS and op not in TENSORRT_NATIVE_OPS


def test_op_outside_the_tensorrt_list_fails():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    with pytest.raises(GraphCheckError, match="Hardmax x1 .not in lrnnet's list"):
        check_ops(_model([helper.make_node("Hardmax", ["x"], ["y"])], [x], [y]))


def test_custom_domain_op_fails():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    node = helper.make_node("Relu", ["x"], ["y"], domain="com.example")
    with pytest.raises(GraphCheckError, match="com.example::Relu"):
        check_ops(_model([node], [x], [y]))


def test_invalid_onnx_fails():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    dangling = _model([helper.make_node("Add", ["x", "missing"], ["y"])], [x], [y])
    with pytest.raises(GraphCheckError, match="not valid ONNX"):
        check_onnx_valid(dangling)


def test_output_shape_mismatch_fails():
    with pytest.raises(GraphCheckError, match=r"output shape is \[1, 3, 4, 4\].*expected \[1, 19, 4, 4\]"):
        check_graph(_relu_model(), [1, 19, 4, 4])


def test_named_dims_match_anything():
    check_graph(_relu_model(("n", 3, "h", "w")), ["batch", 3, "height", "width"])


def test_the_tiny_export_is_deployable(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    counts = check_graph(model, [1, 19, 128, 256])
    # The power iteration is unrolled: MatMuls, no loop; SVD gone.
    assert counts["MatMul"] > 1 and not set(counts) & set(FORBIDDEN_OPS)
    assert set(counts) <= TENSORRT_NATIVE_OPS


def test_declared_output_shape_must_agree_with_inference():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "c", 4, 4])  # as the exporter may name it
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y])
    with pytest.raises(GraphCheckError, match="declared output shape is \\[1, 'c', 4, 4\\]"):
        check_graph(model, [1, 3, 4, 4])
    declare_output_shape(model, [1, 3, 4, 4])
    assert check_graph(model, [1, 3, 4, 4]) == {"Relu": 1}
    declare_output_shape(model, [1, 5, 4, 4])  # a lie about the class dim: shape inference refutes it
    with pytest.raises(GraphCheckError):
        check_graph(model, [1, 5, 4, 4])
