"""The graph checks, exactly: the message of each failure, ops in subgraphs and custom domains counted,
shapes proved through data propagation. Written against the survivors of ``make mutation`` (issue 19)."""

from __future__ import annotations

import pytest
from graph_helpers import graph_model as _model
from graph_helpers import value_info as _vi
from onnx import TensorProto, helper

from lrnnet.export.checks import (
    GraphCheckError,
    check_graph,
    check_onnx_valid,
    check_ops,
    check_parser_rules,
    declare_output_shape,
    op_counts,
)

F = TensorProto.FLOAT


def _relu(x_shape=(1, 3), y_shape=(1, 3), outputs=None):
    return _model([helper.make_node("Relu", ["x"], ["y"], name="/Relu")], [_vi("x", F, list(x_shape))],
                  outputs or [_vi("y", F, None if y_shape is None else list(y_shape))])


def _branch(op):
    return helper.make_graph([helper.make_node(op, ["a"], ["b"])], "branch", [], [_vi("b", F, [2])])


def test_ops_of_if_branches_and_of_graph_list_attributes_are_counted():
    if_node = helper.make_node("If", ["c"], ["y"], then_branch=_branch("Relu"), else_branch=_branch("Sigmoid"))
    holder = helper.make_node("Custom", [], ["z"], domain="com.example")
    holder.attribute.append(helper.make_attribute("branches", [_branch("Tanh"), _branch("Exp")]))
    model = _model([if_node, holder], [_vi("c", TensorProto.BOOL, [])], [_vi("y", F, [2])], domains=["com.example"])
    assert op_counts(model) == {"If": 1, "Relu": 1, "Sigmoid": 1, "com.example::Custom": 1, "Tanh": 1, "Exp": 1}


def test_the_ai_onnx_domain_is_not_qualified():
    node = helper.make_node("Relu", ["x"], ["y"], domain="ai.onnx")
    assert op_counts(_model([node], [_vi("x", F, [2])], [_vi("y", F, [2])])) == {"Relu": 1}


def test_every_problem_is_listed_sorted_with_its_count_and_reason():
    nodes = [helper.make_node("Hardmax", ["x"], ["h"]), helper.make_node("Hardmax", ["h"], ["h2"]),
             helper.make_node("NonZero", ["h2"], ["n"]), helper.make_node("Relu", ["x"], ["r"], domain="com.example"),
             helper.make_node("Loop", ["x"], ["l"], domain="com.example")]
    model = _model(nodes, [_vi("x", F, [2])], [_vi("n", F, None)], domains=["com.example"])
    with pytest.raises(GraphCheckError) as caught:
        check_ops(model)
    assert str(caught.value) == (
        "the exported graph contains ops that cannot be deployed: "
        "Hardmax x2 (not in lrnnet's list of TensorRT-native ops); NonZero x1 (a data-dependent output shape); "
        "com.example::Loop x1 (control flow (the power iteration must be unrolled)); "
        "com.example::Relu x1 (custom domain, needs a plugin)")


def test_an_allow_list_of_ones_own_replaces_the_tensorrt_list():
    model = _relu()
    assert check_ops(model, allowed=["Relu"]) == {"Relu": 1}
    with pytest.raises(GraphCheckError, match=r"^the exported graph contains ops that cannot be deployed: "
                                              r"Relu x1 \(not in lrnnet's list of TensorRT-native ops\)$"):
        check_ops(model, allowed=["Sigmoid"])
    with pytest.raises(GraphCheckError, match="Relu x1"):
        check_graph(model, allowed=["Sigmoid"])
    assert check_graph(model, allowed=iter(["Relu"])) == {"Relu": 1}


def test_a_declared_output_shape_the_graph_does_not_compute_is_invalid_onnx():
    with pytest.raises(GraphCheckError, match="^the exported graph is not valid ONNX: "):
        check_onnx_valid(_relu(y_shape=(1, 4)))


def test_the_invalid_onnx_message_is_one_line():
    bad = _model([helper.make_node("Add", ["x", "missing"], ["y"], name="/Add")], [_vi("x", F, [2])],
                 [_vi("y", F, [2])])
    with pytest.raises(GraphCheckError) as caught:
        check_onnx_valid(bad)
    message = str(caught.value)
    assert message.startswith("the exported graph is not valid ONNX: ") and "\n" not in message
    assert "'missing'" in message  # what is wrong, not only the exception's type


def test_the_returned_shapes_are_computed_not_declared():
    model = _relu(x_shape=(2, 5), y_shape=("n", "m"))
    inferred = check_onnx_valid(model)
    dims = inferred.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 5]
    # the caller's model keeps its declared shape
    assert [d.dim_param for d in model.graph.output[0].type.tensor_type.shape.dim] == ["n", "m"]


def test_a_static_shape_through_shape_and_reshape_is_proved_by_data_propagation():
    # y = Reshape(Relu(x), Shape(x)): only data propagation knows the shape tensor's values.
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Reshape", ["r", "s"], ["y"])]
    model = _model(nodes, [_vi("x", F, [1, 3, 4, 4])], [_vi("y", F, [1, 3, 4, 4])])
    inferred = check_onnx_valid(model)
    assert [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim] == [1, 3, 4, 4]
    assert check_graph(model, [1, 3, 4, 4]) == {"Relu": 1, "Shape": 1, "Reshape": 1}


def test_a_type_the_graph_does_not_compute_is_invalid_onnx():
    model = _relu(outputs=[_vi("y", TensorProto.INT32, [1, 3])])
    with pytest.raises(GraphCheckError, match="^the exported graph is not valid ONNX: "):
        check_onnx_valid(model)


def test_parser_rule_message_names_the_first_and_counts_the_rest():
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], dilations=[2], name="/Pool")
    model = _model([pool], [_vi("x", F, [1, 1, 8])], [_vi("y", F, None)])
    with pytest.raises(GraphCheckError) as caught:
        check_parser_rules(model)
    assert str(caught.value) == (
        "the exported graph breaks a TensorRT ONNX parser rule: node '/Pool' (MaxPool): 1D pooling; only 2D or 3D "
        "(onnx-tensorrt docs/operators.md (TensorRT 10.1, commit 96e7811)) (and 1 more)")


def test_one_parser_rule_broken_says_no_more():
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], name="/Pool")
    model = _model([pool], [_vi("x", F, [1, 1, 8])], [_vi("y", F, None)])
    with pytest.raises(GraphCheckError) as caught:
        check_parser_rules(model)
    assert str(caught.value).endswith("only 2D or 3D (onnx-tensorrt docs/operators.md (TensorRT 10.1, commit 96e7811))")
    assert check_parser_rules(_relu()) is None


def test_parser_rules_are_part_of_check_graph():
    # Valid ONNX, known ops, but TensorRT's parser refuses dilated pooling.
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2], name="/Pool")
    model = _model([pool], [_vi("x", F, [1, 1, 8, 8])], [_vi("y", F, [1, 1, 6, 6])])
    with pytest.raises(GraphCheckError, match=r"parser rule: node '/Pool' \(MaxPool\): dilations \[2, 2\]"):
        check_graph(model)


def test_two_outputs_fail_a_shape_check_and_pass_without_one():
    model = _relu(outputs=[_vi("y", F, [1, 3]), _vi("x", F, [1, 3])])
    with pytest.raises(GraphCheckError, match="^expected one graph output, found 2$"):
        check_graph(model, [1, 3])
    assert check_graph(model) == {"Relu": 1}


def test_a_rank_mismatch_fails():
    with pytest.raises(GraphCheckError, match=r"^the graph's declared output shape is \[1, 3\], expected \[1, 3, 1\]$"):
        check_graph(_relu(), [1, 3, 1])


def test_an_unknown_declared_dim_does_not_prove_a_static_one():
    with pytest.raises(GraphCheckError, match=r"^the graph's declared output shape is \[None, 3\], expected \[1, 3\]$"):
        check_graph(_relu(y_shape=(None, 3)), [1, 3])


def test_an_inferred_dim_that_is_only_named_fails_a_static_expectation():
    # x's batch is named: inference proves only 'n', so an expected static 1 is not proved.
    model = _relu(x_shape=("n", 3), y_shape=(1, 3))
    with pytest.raises(GraphCheckError, match=r"^the graph's inferred output shape is \['n', 3\], expected \[1, 3\]$"):
        check_graph(model, [1, 3])
    assert check_graph(model, ["n", 3]) == {"Relu": 1}


def test_declare_output_shape_writes_values_and_names():
    model = _relu(y_shape=("a", "b"))
    declare_output_shape(model, ["batch", 3])
    dims = model.graph.output[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("batch", 3)
    assert not dims[1].HasField("dim_param") and not dims[0].HasField("dim_value")


def test_declare_output_shape_refuses_another_rank():
    with pytest.raises(GraphCheckError, match=r"^the graph output has rank 2, expected 3$"):
        declare_output_shape(_relu(), [1, 3, 1])
