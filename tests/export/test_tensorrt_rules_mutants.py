"""TensorRT's parser rules, one small graph per rule: the exact violation (node, op, rule text), and no
false positive on the supported neighbour of each broken graph. Written against the survivors of
``make mutation`` (issue 19); fast, hand-made graphs only."""

from __future__ import annotations

import numpy as np
import pytest
from graph_helpers import graph_model as _model
from graph_helpers import value_info as _vi
from onnx import TensorProto, helper, numpy_helper

from lrnnet.errors import InputError
from lrnnet.export.tensorrt_rules import (
    OPERATORS_MD,
    QDQ_IMPORTER,
    Violation,
    check_tensorrt_parser_rules,
    tensorrt_rule_violations,
)

F, D, U8, I8, I32, I64 = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.UINT8, TensorProto.INT8,
                          TensorProto.INT32, TensorProto.INT64)
MD = f"({OPERATORS_MD})"
QDQ = f"({QDQ_IMPORTER})"


def _const(name, values, dtype=None):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _found(model):
    return [str(v) for v in tensorrt_rule_violations(model)]


def _one_node(node, x_type=F, x_shape=(1, 1, 8, 8), y_type=F, y_shape=None, inits=(), opset=17, extra_outputs=()):
    inputs = [_vi("x", x_type, list(x_shape))]
    outputs = [_vi("y", y_type, y_shape), *extra_outputs]
    return _model([node], inputs, outputs, inits, opset)


# --- the message a user reads ---------------------------------------------------------------------------

def test_violation_text_names_node_op_and_rule():
    assert str(Violation("/Conv", "Conv", "a rule")) == "node '/Conv' (Conv): a rule"


def test_the_error_names_the_first_violation_and_how_many_more():
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], dilations=[2], name="/Pool")
    model = _one_node(pool, x_shape=(1, 1, 8))
    with pytest.raises(InputError) as caught:
        check_tensorrt_parser_rules(model)
    assert str(caught.value) == (f"the graph breaks a TensorRT ONNX parser rule: node '/Pool' (MaxPool): "
                                 f"1D pooling; only 2D or 3D {MD} (and 1 more)")


def test_one_violation_says_no_more():
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], name="/Pool")
    with pytest.raises(InputError) as caught:
        check_tensorrt_parser_rules(_one_node(pool, x_shape=(1, 1, 8)))
    assert str(caught.value) == (f"the graph breaks a TensorRT ONNX parser rule: node '/Pool' (MaxPool): "
                                 f"1D pooling; only 2D or 3D {MD}")


def test_a_valid_graph_raises_nothing():
    relu = helper.make_node("Relu", ["x"], ["y"], name="/Relu")
    assert check_tensorrt_parser_rules(_one_node(relu, y_shape=[1, 1, 8, 8])) is None


# --- opsets -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [9, 13, 20])
def test_opsets_9_to_20_pass(opset):
    relu = helper.make_node("Relu", ["x"], ["y"], name="/Relu")
    assert _found(_one_node(relu, opset=opset)) == []


def test_opset_8_is_below_the_range():
    relu = helper.make_node("Relu", ["x"], ["y"], name="/Relu")
    assert _found(_one_node(relu, opset=8)) == [
        f"node '(model)' (opset): opset 8 is outside TensorRT 10's 9-20 {MD}"]


def test_an_other_domains_opset_version_is_not_checked():
    relu = helper.make_node("Relu", ["x"], ["y"], name="/Relu")
    model = _one_node(relu)
    model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    model.opset_import.append(helper.make_opsetid("ai.onnx", 17))
    assert _found(model) == []


# --- node naming, domains, unknown ops ----------------------------------------------------------------------

def test_an_unnamed_node_is_named_by_its_output():
    node = helper.make_node("Hardmax", ["x"], ["y"])
    assert _found(_one_node(node)) == [f"node 'y' (Hardmax): not an op lrnnet has checked against {OPERATORS_MD}"]


def test_a_node_without_name_or_output_is_a_question_mark():
    node = helper.make_node("Hardmax", ["x"], [])
    relu = helper.make_node("Relu", ["x"], ["y"], name="/Relu")
    model = _model([node, relu], [_vi("x", F, [2])], [_vi("y", F, [2])])
    assert _found(model) == [f"node '?' (Hardmax): not an op lrnnet has checked against {OPERATORS_MD}"]


def test_a_contrib_op_is_reported_once_with_its_domain():
    node = helper.make_node("Relu", ["x"], ["y"], domain="com.example", name="/Relu")
    model = _one_node(node)
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    assert _found(model) == [("node '/Relu' (Relu): domain 'com.example' is not ONNX's (a contrib op; TensorRT has "
                             "it only as a plugin) [lrnnet rule]")]


def test_the_ai_onnx_domain_is_onnx():
    node = helper.make_node("Relu", ["x"], ["y"], domain="ai.onnx", name="/Relu")
    assert _found(_one_node(node)) == []


# --- data types of the data input --------------------------------------------------------------------------

def test_type_rule_text_lists_the_types():
    node = helper.make_node("Sqrt", ["x"], ["y"], name="/Sqrt")
    assert _found(_one_node(node, x_type=I32, y_type=I32, x_shape=[2])) == [
        (f"node '/Sqrt' (Sqrt): INT32 input 'x' is not a type TensorRT's Sqrt takes "
        f"(FLOAT, FLOAT16, BFLOAT16; {OPERATORS_MD})")]


def test_where_is_typed_by_its_data_input_not_its_condition():
    cond = _vi("c", TensorProto.BOOL, [2])
    where = helper.make_node("Where", ["c", "x", "z"], ["y"], name="/Where")
    ok = _model([where], [cond, _vi("x", F, [2]), _vi("z", F, [2])], [_vi("y", F, [2])])
    assert _found(ok) == []
    bad = _model([where], [cond, _vi("x", TensorProto.STRING, [2]), _vi("z", TensorProto.STRING, [2])],
                 [_vi("y", TensorProto.STRING, [2])])
    assert _found(bad)[0].startswith("node '/Where' (Where): STRING input 'x' is not a type TensorRT's Where takes")


def test_constant_is_typed_by_its_output():
    value = numpy_helper.from_array(np.zeros(2, np.uint16), "v")
    node = helper.make_node("Constant", [], ["c"], value=value, name="/Const")
    cast = helper.make_node("Cast", ["c"], ["y"], to=F, name="/Cast")
    model = _model([node, cast], [], [_vi("y", F, [2])])
    assert _found(model)[0] == (f"node '/Const' (Constant): UINT16 output 'c' is not a type TensorRT's Constant "
                                f"takes (FLOAT, FLOAT16, BFLOAT16, INT32, INT64, BOOL; {OPERATORS_MD})")


def test_a_node_without_inputs_of_a_typed_op_is_not_typed():
    node = helper.make_node("Relu", [], ["y"], name="/Relu")
    model = _model([node], [], [_vi("y", F, [2])])
    assert not any("is not a type" in v for v in _found(model))


# --- inputs that must be initializers ------------------------------------------------------------------------

def test_unsqueeze_axes_from_an_initializer_or_constant_pass_and_from_data_fail():
    unsq = helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="/Unsq")
    assert _found(_model([unsq], [_vi("x", F, [2])], [_vi("y", F, [1, 2])], [_const("axes", [0], np.int64)])) == []
    const = helper.make_node("Constant", [], ["axes"], value=_const("v", [0], np.int64), name="/Axes")
    assert _found(_model([const, unsq], [_vi("x", F, [2])], [_vi("y", F, [1, 2])])) == []
    bad = _model([unsq], [_vi("x", F, [2]), _vi("axes", I64, [1])], [_vi("y", F, None)])
    assert _found(bad) == [f"node '/Unsq' (Unsqueeze): input 'axes' must be an initializer {MD}"]


def test_squeeze_without_axes_passes():
    node = helper.make_node("Squeeze", ["x", ""], ["y"], name="/Sq")
    assert _found(_one_node(node, x_shape=[1, 2])) == []


# --- pooling ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_2d_and_3d_pooling_with_unit_dilations_pass(op):
    extra = {"dilations": [1, 1]} if op == "MaxPool" else {}
    pool2 = helper.make_node(op, ["x"], ["y"], kernel_shape=[2, 2], name="/Pool", **extra)
    assert _found(_one_node(pool2)) == []
    pool3 = helper.make_node(op, ["x"], ["y"], kernel_shape=[2, 2, 2], name="/Pool")
    assert _found(_one_node(pool3, x_shape=(1, 1, 4, 4, 4))) == []


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_1d_and_4d_pooling_fail(op):
    pool1 = helper.make_node(op, ["x"], ["y"], kernel_shape=[2], name="/Pool")
    assert _found(_one_node(pool1, x_shape=(1, 1, 8))) == [f"node '/Pool' ({op}): 1D pooling; only 2D or 3D {MD}"]
    pool4 = helper.make_node(op, ["x"], ["y"], kernel_shape=[2, 2, 2, 2], name="/Pool")
    assert _found(_one_node(pool4, x_shape=(1, 1, 4, 4, 4, 4))) == [
        f"node '/Pool' ({op}): 4D pooling; only 2D or 3D {MD}"]


def test_pooling_without_kernel_shape_is_0d():
    pool = helper.make_node("MaxPool", ["x"], ["y"], name="/Pool")
    assert f"node '/Pool' (MaxPool): 0D pooling; only 2D or 3D {MD}" in _found(_one_node(pool))


def test_one_non_unit_dilation_fails():
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[1, 2], name="/Pool")
    assert _found(_one_node(pool)) == [f"node '/Pool' (MaxPool): dilations [1, 2] must be empty or all ones {MD}"]


def test_maxpool_indices_output_fails_and_an_empty_one_passes():
    pool = helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2], name="/Pool")
    model = _one_node(pool, extra_outputs=[_vi("idx", I64, None)])
    assert f"node '/Pool' (MaxPool): the Indices output is unsupported {MD}" in _found(model)
    pool = helper.make_node("MaxPool", ["x"], ["y", ""], kernel_shape=[2, 2], name="/Pool")
    assert _found(_one_node(pool)) == []


# --- Constant ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("attribute, value", [
    ("value_string", b"abc"), ("value_strings", [b"a", b"b"]),
    ("sparse_value", helper.make_sparse_tensor(_const("sv", [1.0], np.float32), _const("si", [0], np.int64), [2])),
])
def test_constant_string_and_sparse_values_fail(attribute, value):
    node = helper.make_node("Constant", [], ["y"], name="/Const", **{attribute: value})
    model = _model([node], [], [_vi("y", F, None)])
    assert f"node '/Const' (Constant): attribute '{attribute}' is unsupported {MD}" in _found(model)


def test_constant_value_passes():
    node = helper.make_node("Constant", [], ["y"], value=_const("v", [1.0], np.float32), name="/Const")
    assert _found(_model([node], [], [_vi("y", F, [1])])) == []


# --- Resize --------------------------------------------------------------------------------------------------------

def _resize(**attrs):
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="/Resize", **attrs)
    return _model([node], [_vi("x", F, [1, 1, 2, 2])], [_vi("y", F, [1, 1, 4, 4])],
                  [_const("scales", [1, 1, 2, 2], np.float32)], opset=18)


@pytest.mark.parametrize("attrs", [
    {}, {"mode": "linear"}, {"mode": "nearest", "nearest_mode": "floor"}, {"nearest_mode": "ceil"},
    {"nearest_mode": "round_prefer_ceil"}, {"coordinate_transformation_mode": "asymmetric"},
    {"coordinate_transformation_mode": "align_corners"}, {"coordinate_transformation_mode": "pytorch_half_pixel"},
    {"coordinate_transformation_mode": "tf_half_pixel_for_nn"}, {"keep_aspect_ratio_policy": "stretch"},
    {"antialias": 0},
])
def test_supported_resize_attributes_pass(attrs):
    assert _found(_resize(**attrs)) == []


@pytest.mark.parametrize("attrs, rule", [
    ({"mode": "cubic"}, "mode='cubic' is unsupported (supported: nearest, linear; "),
    ({"nearest_mode": "bogus"}, ("nearest_mode='bogus' is unsupported (supported: floor, ceil, round_prefer_floor, "
                                "round_prefer_ceil; ")),
    ({"keep_aspect_ratio_policy": "not_larger"}, ("keep_aspect_ratio_policy='not_larger' is unsupported "
                                                 "(supported: stretch; ")),
    ({"coordinate_transformation_mode": "tf_crop_and_resize"},
     ("coordinate_transformation_mode='tf_crop_and_resize' is unsupported (supported: half_pixel, "
     "pytorch_half_pixel, tf_half_pixel_for_nn, asymmetric, align_corners; ")),
])
def test_each_unsupported_resize_attribute_is_named_with_the_supported_values(attrs, rule):
    assert _found(_resize(**attrs)) == [f"node '/Resize' (Resize): {rule}{OPERATORS_MD})"]


def test_resize_antialias_text():
    assert _found(_resize(antialias=1)) == [f"node '/Resize' (Resize): antialiasing is not supported {MD}"]


# --- TopK, LayerNormalization, Dropout -------------------------------------------------------------------------------

def _topk(**attrs):
    node = helper.make_node("TopK", ["x", "k"], ["y", "i"], name="/TopK", **attrs)
    return _model([node], [_vi("x", F, [4])], [_vi("y", F, [2]), _vi("i", I32, None)],
                  [_const("k", [2], np.int64)])


def test_topk_sorted_passes_and_unsorted_fails():
    assert not any("sorted" in v for v in _found(_topk()))
    assert not any("sorted" in v for v in _found(_topk(sorted=1)))
    assert f"node '/TopK' (TopK): `sorted` must be 1 {MD}" in _found(_topk(sorted=0))


def test_layer_normalization_extra_outputs_fail():
    def layernorm(outputs):
        node = helper.make_node("LayerNormalization", ["x", "s"], outputs, name="/LN")
        extra = [_vi(o, F, None) for o in outputs[1:] if o]
        return _model([node], [_vi("x", F, [2, 4])], [_vi("y", F, [2, 4]), *extra], [_const("s", np.ones(4), np.float32)])

    assert _found(layernorm(["y"])) == []
    assert _found(layernorm(["y", ""])) == []
    assert _found(layernorm(["y", "", "inv"])) == [
        f"node '/LN' (LayerNormalization): only the first output Y is supported {MD}"]


def _dropout(inputs, inits=(), graph_inputs=()):
    node = helper.make_node("Dropout", ["x", *inputs], ["y"], name="/Drop")
    return _model([node], [_vi("x", F, [2]), *graph_inputs], [_vi("y", F, [2])], list(inits), opset=13)


def test_dropout_in_inference_mode_passes():
    assert _found(_dropout([])) == []
    assert _found(_dropout(["", ""])) == []
    assert _found(_dropout(["r", "t"], [_const("r", 0.5, np.float32), _const("t", False)])) == []


def test_dropout_in_training_mode_fails():
    model = _dropout(["r", "t"], [_const("r", 0.5, np.float32), _const("t", True)])
    assert _found(model) == [f"node '/Drop' (Dropout): training_mode must evaluate to False {MD}"]


def test_dropout_training_mode_from_data_must_be_an_initializer():
    model = _dropout(["", "t"], graph_inputs=[_vi("t", TensorProto.BOOL, [])])
    assert _found(model) == [f"node '/Drop' (Dropout): input 'training_mode' must be an initializer {MD}"]


# --- Q/DQ ---------------------------------------------------------------------------------------------------------

def _qdq(q_inputs, inits, dq_scale="s", graph_inputs=(), dq_axis=None, q_attrs=None):
    q = helper.make_node("QuantizeLinear", ["x", *q_inputs], ["q"], name="/Q", **(q_attrs or {}))
    dq_in = ["q", dq_scale] + ([q_inputs[1]] if len(q_inputs) > 1 else [])
    dq = helper.make_node("DequantizeLinear", dq_in, ["y"], name="/DQ",
                          **({} if dq_axis is None else {"axis": dq_axis}))
    return _model([q, dq], [_vi("x", F, [1, 3, 2, 2]), *graph_inputs], [_vi("y", F, [1, 3, 2, 2])], inits)


def test_per_tensor_int8_qdq_passes():
    assert _found(_qdq(["s", "z"], [_const("s", 0.1, np.float32), _const("z", 0, np.int8)])) == []


def test_quantize_without_zero_point_makes_uint8_which_is_caught():
    # ONNX's default zero point is uint8, so its Q output is UINT8 inside the network.
    found = _found(_qdq(["s"], [_const("s", 0.1, np.float32)]))
    assert any(v.startswith("node '/DQ' (DequantizeLinear): UINT8 input 'q' is not a type") for v in found)
    assert any(v.startswith("node '/Q' (QuantizeLinear): UINT8 tensor 'q' inside the network") for v in found)


def test_qdq_without_a_scale_fails():
    q = helper.make_node("QuantizeLinear", ["x"], ["q"], name="/Q")
    dq = helper.make_node("DequantizeLinear", ["q", ""], ["y"], name="/DQ")
    model = _model([q, dq], [_vi("x", F, [2])], [_vi("y", F, [2])])
    found = _found(model)
    assert f"node '/Q' (QuantizeLinear): no scale input {QDQ}" in found
    assert f"node '/DQ' (DequantizeLinear): no scale input {QDQ}" in found


def test_computed_scale_text():
    model = _qdq(["s"], [], graph_inputs=[_vi("s", F, [])])
    assert "node '/Q' (QuantizeLinear): scale 's' is computed, not an initializer: TensorRT needs a build-time " \
           "constant scale (TensorRT Quantize operator reference)" in _found(model)


@pytest.mark.parametrize("scale", [[], [np.nan], [np.inf], [0.0], [0.1, -0.1, 0.1]])
def test_scales_not_finite_and_positive_fail(scale):
    model = _qdq(["s"], [_const("s", scale, np.float32)], q_attrs={"axis": 1}, dq_axis=1)
    assert f"node '/Q' (QuantizeLinear): scale 's' must be finite and all positive {QDQ}" in _found(model)


def test_nonzero_zero_point_text():
    model = _qdq(["s", "z"], [_const("s", 0.1, np.float32), _const("z", -1, np.int8)])
    assert f"node '/Q' (QuantizeLinear): zero point 'z' is not all zeros: TensorRT only supports symmetric " \
           f"quantization {QDQ}" in _found(model)


def test_computed_zero_point_fails():
    model = _qdq(["s", "z"], [_const("s", 0.1, np.float32)], graph_inputs=[_vi("z", I8, [])])
    assert f"node '/Q' (QuantizeLinear): zero point 'z' must be a constant {QDQ}" in _found(model)


def test_uint8_zero_point_text():
    model = _qdq(["s", "z"], [_const("s", 0.1, np.float32), _const("z", 0, np.uint8)])
    assert f"node '/Q' (QuantizeLinear): uint8 zero point 'z' (u8 asymmetric quantization, ONNX Runtime's CPU " \
           f"form): TensorRT reads it as INT8 and changes the values; use int8 with zero point 0 {QDQ}" \
           in _found(model)


def test_int16_zero_point_is_not_a_quantized_type():
    model = _qdq(["s", "z"], [_const("s", 0.1, np.float32), _const("z", 0, np.int16)], q_attrs=None)
    assert f"node '/Q' (QuantizeLinear): INT16 zero point: Q/DQ types must be INT8, FP8 or INT4 {QDQ}" \
        in _found(model)


def test_2d_scale_is_block_quantization():
    model = _qdq(["s"], [_const("s", np.full((1, 3), 0.1), np.float32)])
    assert "node '/Q' (QuantizeLinear): 2-D scale (block quantization) is for INT4 only (TensorRT Quantize " \
           "operator reference)" in _found(model)


def test_int32_dequantize_text():
    dq = helper.make_node("DequantizeLinear", ["b", "s"], ["y"], name="/DQ")
    model = _model([dq], [], [_vi("y", F, [2])], [_const("b", [0, 0], np.int32), _const("s", 0.1, np.float32)])
    assert _found(model) == [
        (f"node '/DQ' (DequantizeLinear): INT32 input 'b' is not a type TensorRT's DequantizeLinear takes "
        f"(INT8, FLOAT8E4M3FN, INT4; {OPERATORS_MD})"),
        (f"node '/DQ' (DequantizeLinear): int32 input 'b' (a quantized bias): TensorRT dequantizes only INT8, FP8 "
        f"and INT4; keep biases float, TensorRT fuses them into the int8 layer {QDQ}")]


def _weights_dq(w_shape, scales, axis, consumer="Conv", q_first=False):
    """Weights (int8 initializer, or float through a Q) -> DQ(axis) -> consumer's weight input."""
    inits = [_const("s", np.full(scales, 0.1), np.float32)]
    nodes = []
    if q_first:
        inits += [_const("wf", np.ones(w_shape), np.float32), _const("zw", np.zeros(scales), np.int8)]
        nodes.append(helper.make_node("QuantizeLinear", ["wf", "s", "zw"], ["w_q"], axis=axis, name="/Q_w"))
    else:
        inits.append(_const("w_q", np.ones(w_shape), np.int8))
    nodes.append(helper.make_node("DequantizeLinear", ["w_q", "s"], ["w"], axis=axis, name="/DQ_w"))
    nodes.append(helper.make_node(consumer, ["x", "w"], ["y"], name="/C"))
    return _model(nodes, [_vi("x", F, [1, 3, 2, 2])], [_vi("y", F, None)], inits)


def test_per_channel_conv_weights_on_axis_0_pass_also_through_a_quantize():
    assert _found(_weights_dq((4, 3, 1, 1), 4, 0)) == []
    assert _found(_weights_dq((4, 3, 1, 1), 4, 0, q_first=True)) == []
    assert _found(_weights_dq((4, 3, 1, 1), 4, -4)) == []


def test_per_channel_conv_transpose_weights_on_axis_1_pass_and_axis_0_fails():
    assert _found(_weights_dq((3, 4, 1, 1), 4, 1, consumer="ConvTranspose")) == []
    assert _found(_weights_dq((3, 4, 1, 1), 3, 0, consumer="ConvTranspose")) == [
        ("node '/DQ_w' (DequantizeLinear): per-channel weights of ConvTranspose '/C' on axis 0; TensorRT wants the "
        "output-channel axis 1 (TensorRT developer guide, quantization scheme)")]


def test_per_channel_wrong_axis_through_a_quantize_is_reported():
    found = _found(_weights_dq((4, 3, 1, 1), 3, 1, q_first=True))
    assert "node '/DQ_w' (DequantizeLinear): per-channel weights of Conv '/C' on axis 1; TensorRT wants the " \
           "output-channel axis 0 (TensorRT developer guide, quantization scheme)" in found


def test_per_channel_negative_axis_counts_from_the_end():
    found = _found(_weights_dq((4, 3, 1, 1), 3, -3))
    assert any("per-channel weights of Conv '/C' on axis 1;" in v for v in found), found


def test_per_channel_axis_out_of_range_text():
    found = _found(_weights_dq((4, 3, 1, 1), 4, 4))
    assert "node '/DQ_w' (DequantizeLinear): per-channel axis 4 does not match 4 scales for weights of shape " \
           "[4, 3, 1, 1]" in found


def test_per_channel_on_a_dq_of_an_activation_fails():
    model = _qdq(["s"], [_const("s", [0.1, 0.1, 0.1], np.float32)], q_attrs={"axis": 1}, dq_axis=1)
    found = _found(model)
    text = ("per-channel scale (3 values) on an activation: TensorRT quantizes activations per-tensor, weights "
            "per-channel (TensorRT developer guide, quantization scheme)")
    assert f"node '/Q' (QuantizeLinear): {text}" in found and f"node '/DQ' (DequantizeLinear): {text}" in found


def test_per_channel_weights_feeding_a_non_conv_are_not_held_to_an_axis():
    assert _found(_weights_dq((3, 4), 4, 1, consumer="MatMul")) == []


def test_per_channel_weights_as_a_conv_data_input_are_not_held_to_the_weight_axis():
    inits = [_const("s", np.full(3, 0.1), np.float32), _const("w_q", np.ones((1, 3, 2, 2)), np.int8),
             _const("k", np.ones((4, 3, 1, 1)), np.float32)]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "s"], ["w"], axis=1, name="/DQ_w"),
             helper.make_node("Conv", ["w", "k"], ["y"], name="/C")]
    assert _found(_model(nodes, [], [_vi("y", F, None)], inits)) == []


# --- types at the network's edges -----------------------------------------------------------------------------

def test_double_tensors_fail_where_they_are():
    cast = helper.make_node("Cast", ["x"], ["d"], to=D, name="/CastD")
    back = helper.make_node("Cast", ["d"], ["y"], to=F, name="/CastF")
    found = _found(_model([cast, back], [_vi("x", F, [2])], [_vi("y", F, [2])]))
    assert f"node '/CastD' (Cast): DOUBLE tensor 'd': TensorRT casts it to FLOAT, clamping {MD}; export float32" \
        in found
    assert any(v.startswith("node '/CastF' (Cast): DOUBLE input 'd' is not a type TensorRT's Cast takes") for v in found)
    assert len(found) == 2


def test_double_graph_input_and_initializer_are_named_as_such():
    add = helper.make_node("Add", ["x", "c"], ["y"], name="/Add")
    model = _model([add], [_vi("x", D, [2])], [_vi("y", D, [2])], [_const("c", [1.0, 2.0], np.float64)])
    found = _found(model)
    assert f"node 'x' (graph input): DOUBLE tensor 'x': TensorRT casts it to FLOAT, clamping {MD}; export float32" \
        in found
    assert f"node 'c' (initializer): DOUBLE tensor 'c': TensorRT casts it to FLOAT, clamping {MD}; export float32" \
        in found
    assert any(v.startswith("node '/Add' (Add): DOUBLE tensor 'y'") for v in found)


def test_an_unnamed_producer_is_named_by_its_tensor():
    cast = helper.make_node("Cast", ["x"], ["d"], to=D)
    back = helper.make_node("Cast", ["d"], ["y"], to=F, name="/CastF")
    found = _found(_model([cast, back], [_vi("x", F, [2])], [_vi("y", F, [2])]))
    assert f"node 'd' (Cast): DOUBLE tensor 'd': TensorRT casts it to FLOAT, clamping {MD}; export float32" in found


def test_uint8_inside_the_network_text():
    cast = helper.make_node("Cast", ["x"], ["u"], to=U8, name="/CastU")
    back = helper.make_node("Cast", ["u"], ["y"], to=F, name="/CastF")
    found = _found(_model([cast, back], [_vi("x", F, [2])], [_vi("y", F, [2])]))
    assert found == [(f"node '/CastU' (Cast): UINT8 tensor 'u' inside the network: UINT8 is only supported as "
                     f"network input or output {MD}")]


def test_uint8_input_feeding_a_non_cast_text_and_unnamed_consumer():
    ident = helper.make_node("Identity", ["x"], ["t"])
    cast = helper.make_node("Cast", ["x"], ["y"], to=F, name="/Cast")
    model = _model([ident, cast], [_vi("x", U8, [2])], [_vi("y", F, [2]), _vi("t", U8, [2])])
    found = _found(model)
    assert f"node 'x' (Identity): takes the UINT8 network input 'x' directly; UINT8 is only supported at network " \
           f"I/O, so Cast it first {MD}" in found
    assert not any("(Cast)" in v for v in found)


def test_uint8_input_cast_first_and_uint8_output_written_by_a_cast_pass():
    cast = helper.make_node("Cast", ["x"], ["f"], to=F, name="/Cast")
    back = helper.make_node("Cast", ["f"], ["y"], to=U8, name="/CastU")
    assert _found(_model([cast, back], [_vi("x", U8, [2])], [_vi("y", U8, [2])])) == []


def test_uint8_output_written_by_a_non_cast_text():
    cast = helper.make_node("Cast", ["x"], ["u"], to=U8, name="/CastU")
    ident = helper.make_node("Identity", ["u"], ["y"], name="/Id")
    found = _found(_model([cast, ident], [_vi("x", F, [2])], [_vi("y", U8, [2])]))
    assert f"node '/Id' (Identity): writes the UINT8 network output 'y'; only a Cast may {MD}" in found


def test_uint8_input_that_is_also_an_output_is_not_an_internal_tensor():
    cast = helper.make_node("Cast", ["x"], ["y"], to=F, name="/Cast")
    model = _model([cast], [_vi("x", U8, [2])], [_vi("y", F, [2]), _vi("x", U8, [2])])
    assert _found(model) == []


def test_int8_network_input_and_output_text():
    dq = helper.make_node("DequantizeLinear", ["x", "s"], ["f"], name="/DQ")
    q = helper.make_node("QuantizeLinear", ["f", "s", "z"], ["y"], name="/Q")
    model = _model([dq, q], [_vi("x", I8, [2])], [_vi("y", I8, [2])],
                   [_const("s", 0.1, np.float32), _const("z", 0, np.int8)])
    found = _found(model)
    assert f"node 'x' (graph input): INT8 network input 'x': quantized types exist only between Q and DQ {MD}" \
        in found
    assert f"node '/Q' (QuantizeLinear): INT8 network output 'y': quantized types exist only between Q and DQ {MD}" \
        in found
    assert not any("quantized types come only from" in v or "may only feed" in v for v in found), found


def test_int8_from_a_non_quantize_fed_to_a_non_dequantize_text():
    cast = helper.make_node("Cast", ["x"], ["q"], to=I8, name="/Cast8")
    back = helper.make_node("Cast", ["q"], ["y"], to=F)
    found = _found(_model([cast, back], [_vi("x", F, [2])], [_vi("y", F, [2])]))
    assert f"node '/Cast8' (Cast): produces INT8 tensor 'q'; quantized types come only from QuantizeLinear {MD}" \
        in found
    assert f"node 'q' (Cast): takes INT8 tensor 'q'; quantized types may only feed DequantizeLinear {MD}" in found


def test_int8_weight_initializer_and_int8_zero_point_initializer_pass():
    dq = helper.make_node("DequantizeLinear", ["w_q", "s"], ["w"], name="/DQ")
    add = helper.make_node("Add", ["x", "w"], ["f"], name="/Add")
    q = helper.make_node("QuantizeLinear", ["f", "s", "z"], ["f_q"], name="/Q")
    dq2 = helper.make_node("DequantizeLinear", ["f_q", "s", "z"], ["y"], name="/DQ2")
    model = _model([dq, add, q, dq2], [_vi("x", F, [2])], [_vi("y", F, [2])],
                   [_const("w_q", [1, 2], np.int8), _const("s", 0.1, np.float32), _const("z", 0, np.int8)])
    assert _found(model) == []


def test_int8_as_a_quantize_data_input_fails():
    q = helper.make_node("QuantizeLinear", ["w8", "s", "z"], ["q"], name="/Q")
    dq = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="/DQ")
    model = _model([q, dq], [], [_vi("y", F, [1])],
                   [_const("s", 0.1, np.float32), _const("z", 0, np.int8), _const("w8", [3], np.int8)])
    found = _found(model)
    assert any(v.startswith("node '/Q' (QuantizeLinear): takes INT8 tensor 'w8'") for v in found), found
    assert not any("tensor 'z'" in v for v in found), found


def test_int64_output_text():
    node = helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0, name="/ArgMax")
    assert _found(_one_node(node, y_type=I64)) == [
        ("node 'y' (graph output): INT64 network output; emit int32 labels (TensorRT before 10 has no INT64 I/O; "
        "lrnnet's runners bind int32) [lrnnet rule]")]


def test_int32_output_passes():
    node = helper.make_node("Cast", ["x"], ["y"], to=I32, name="/Cast")
    assert _found(_one_node(node, y_type=I32)) == []


def test_declared_types_are_checked_when_shape_inference_fails():
    # An Add of mismatched shapes defeats inference; the declared DOUBLE output is still found.
    add = helper.make_node("Add", ["x", "z"], ["y"], name="/Add")
    model = _model([add], [_vi("x", F, [2]), _vi("z", F, [3])], [_vi("y", D, [2])])
    assert any(v.startswith("node '/Add' (Add): DOUBLE tensor 'y'") for v in _found(model))


@pytest.mark.parametrize("z_type, z_shape", [(F, [3]), (I32, [2])], ids=["shape-error", "type-error"])
def test_internal_types_are_still_inferred_around_a_node_inference_fails_on(z_type, z_shape):
    # One Add that shape inference rejects (mismatched shapes, or mixed types) must not hide the rest:
    # the internal DOUBLE tensor 'd', declared nowhere, is still found by the lenient inference.
    nodes = [helper.make_node("Add", ["x", "z"], ["a"], name="/Add"),
             helper.make_node("Cast", ["x"], ["d"], to=D, name="/CastD"),
             helper.make_node("Cast", ["d"], ["y"], to=F, name="/CastF")]
    model = _model(nodes, [_vi("x", F, [2]), _vi("z", z_type, z_shape)], [_vi("y", F, [2]), _vi("a", F, None)])
    found = _found(model)
    assert f"node '/CastD' (Cast): DOUBLE tensor 'd': TensorRT casts it to FLOAT, clamping {MD}; export float32" \
        in found


def test_constant_of_shape_output_is_not_an_initializer():
    # ConstantOfShape has a `value` attribute too; its output is computed, so it cannot give `axes`.
    cos = helper.make_node("ConstantOfShape", ["n"], ["axes"], value=_const("v", [0], np.int64), name="/COS")
    unsq = helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="/Unsq")
    model = _model([cos, unsq], [_vi("x", F, [2])], [_vi("y", F, None)], [_const("n", [1], np.int64)])
    assert f"node '/Unsq' (Unsqueeze): input 'axes' must be an initializer {MD}" in _found(model)


def test_a_scale_from_a_constant_node_is_a_build_time_constant():
    nodes = [helper.make_node("Constant", [], ["s"], value=_const("sv", 0.1, np.float32), name="/S"),
             helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="/Q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="/DQ")]
    assert _found(_model(nodes, [_vi("x", F, [2])], [_vi("y", F, [2])], [_const("z", 0, np.int8)])) == []


def test_dropout_training_mode_from_a_constant_node_fails():
    nodes = [helper.make_node("Constant", [], ["t"], value=_const("tv", True), name="/T"),
             helper.make_node("Dropout", ["x", "", "t"], ["y"], name="/Drop")]
    assert _found(_model(nodes, [_vi("x", F, [2])], [_vi("y", F, [2])], opset=13)) == [
        f"node '/Drop' (Dropout): training_mode must evaluate to False {MD}"]


def test_dropout_with_a_ratio_only_passes():
    assert _found(_dropout(["r"], [_const("r", 0.5, np.float32)])) == []


def test_an_untyped_input_is_not_held_to_a_type():
    # The output of a contrib op has no type that ONNX can infer: the Relu after it is not judged on one.
    nodes = [helper.make_node("Custom", ["x"], ["c"], domain="com.example", name="/Custom"),
             helper.make_node("Relu", ["c"], ["y"], name="/Relu")]
    model = _model(nodes, [_vi("x", F, [2])], [_vi("y", F, [2])])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    found = _found(model)
    assert len(found) == 1 and found[0].startswith("node '/Custom' (Custom): domain 'com.example'"), found


def test_a_where_missing_its_data_inputs_is_not_typed():
    where = helper.make_node("Where", ["c"], ["y"], name="/Where")
    model = _model([where], [_vi("c", TensorProto.BOOL, [2])], [_vi("y", F, [2])])
    assert not any("is not a type" in v for v in _found(model))


def test_layer_normalization_mean_output_fails():
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y", "mean"], name="/LN")
    model = _model([node], [_vi("x", F, [2, 4])], [_vi("y", F, [2, 4]), _vi("mean", F, None)],
                   [_const("s", np.ones(4), np.float32)])
    assert _found(model) == [f"node '/LN' (LayerNormalization): only the first output Y is supported {MD}"]


def test_two_channel_scale_on_an_activation_is_per_channel():
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1, name="/Q")
    dq = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1, name="/DQ")
    model = _model([q, dq], [_vi("x", F, [1, 2])], [_vi("y", F, [1, 2])],
                   [_const("s", [0.1, 0.1], np.float32), _const("z", [0, 0], np.int8)])
    found = _found(model)
    assert any(v.startswith("node '/Q' (QuantizeLinear): per-channel scale (2 values) on an activation") for v in found)


def test_per_channel_axis_defaults_to_1():
    # No axis attribute: ONNX's default 1, the output-channel axis of a ConvTranspose weight.
    inits = [_const("s", np.full(4, 0.1), np.float32), _const("w_q", np.ones((3, 4, 1, 1)), np.int8)]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "s"], ["w"], name="/DQ_w"),
             helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="/C")]
    assert _found(_model(nodes, [_vi("x", F, [1, 3, 2, 2])], [_vi("y", F, None)], inits)) == []


def test_per_channel_dq_of_a_computed_int8_tensor_is_an_activation():
    inits = [_const("s", np.full(4, 0.1), np.float32), _const("w_q", np.ones((4, 3, 1, 1)), np.int8)]
    nodes = [helper.make_node("Identity", ["w_q"], ["w_i"], name="/Id"),
             helper.make_node("DequantizeLinear", ["w_i", "s"], ["w"], axis=0, name="/DQ_w"),
             helper.make_node("Conv", ["x", "w"], ["y"], name="/C")]
    found = _found(_model(nodes, [_vi("x", F, [1, 3, 2, 2])], [_vi("y", F, None)], inits))
    assert any(v.startswith("node '/DQ_w' (DequantizeLinear): per-channel scale (4 values) on an activation")
               for v in found), found


def test_per_channel_dq_of_a_graph_input_is_an_activation():
    dq = helper.make_node("DequantizeLinear", ["x", "s"], ["y"], axis=1, name="/DQ")
    model = _model([dq], [_vi("x", I8, [1, 3])], [_vi("y", F, [1, 3])], [_const("s", np.full(3, 0.1), np.float32)])
    assert any(v.startswith("node '/DQ' (DequantizeLinear): per-channel scale (3 values) on an activation")
               for v in _found(model))


def test_per_channel_weights_dq_that_is_a_graph_output_passes():
    inits = [_const("s", np.full(4, 0.1), np.float32), _const("w_q", np.ones((4, 3)), np.int8)]
    dq = helper.make_node("DequantizeLinear", ["w_q", "s"], ["y"], axis=0, name="/DQ_w")
    assert _found(_model([dq], [], [_vi("y", F, [4, 3])], inits)) == []


def test_wrong_weight_axis_is_found_on_a_conv_with_bias():
    found = _found(_model(
        [helper.make_node("DequantizeLinear", ["w_q", "s"], ["w"], axis=1, name="/DQ_w"),
         helper.make_node("Conv", ["x", "w", "b"], ["y"], name="/C")],
        [_vi("x", F, [1, 3, 2, 2])], [_vi("y", F, None)],
        [_const("s", np.full(3, 0.1), np.float32), _const("w_q", np.ones((4, 3, 1, 1)), np.int8),
         _const("b", np.zeros(4), np.float32)]))
    assert any(v.startswith("node '/DQ_w' (DequantizeLinear): per-channel weights of Conv '/C' on axis 1;")
               for v in found), found


def test_an_unused_uint8_input_passes():
    relu = helper.make_node("Relu", ["x"], ["y"], name="/Relu")
    model = _model([relu], [_vi("x", F, [2]), _vi("u", U8, [2])], [_vi("y", F, [2])])
    assert _found(model) == []


def test_an_int8_constant_node_is_reported_once_by_the_constant_rule():
    const = helper.make_node("Constant", [], ["w_q"], value=_const("v", [1, 2], np.int8), name="/W")
    dq = helper.make_node("DequantizeLinear", ["w_q", "s", "z"], ["y"], name="/DQ")
    model = _model([const, dq], [], [_vi("y", F, [2])], [_const("s", 0.1, np.float32), _const("z", 0, np.int8)])
    assert _found(model) == [(f"node '/W' (Constant): INT8 output 'w_q' is not a type TensorRT's Constant takes "
                             f"(FLOAT, FLOAT16, BFLOAT16, INT32, INT64, BOOL; {OPERATORS_MD})")]


@pytest.mark.parametrize("form", ["initializer", "Constant", "ConstantOfShape"])
def test_int8_weights_parse_as_an_initializer_and_are_refused_once_as_a_node(form):
    # operators.md (TensorRT 10.1): Constant and ConstantOfShape list no quantized type; DequantizeLinear takes INT8.
    dq = helper.make_node("DequantizeLinear", ["w_q", "s", "z"], ["y"], name="/DQ")
    scales = [_const("s", 0.1, np.float32), _const("z", 0, np.int8)]
    if form == "initializer":
        model = _model([dq], [], [_vi("y", F, [2])], [*scales, _const("w_q", [1, 2], np.int8)])
        assert _found(model) == []
        check_tensorrt_parser_rules(model)
        return
    if form == "Constant":
        node = helper.make_node("Constant", [], ["w_q"], value=_const("v", [1, 2], np.int8), name="/W")
        inits = scales
    else:
        node = helper.make_node("ConstantOfShape", ["n"], ["w_q"], value=_const("v", [1], np.int8), name="/W")
        inits = [*scales, _const("n", [2], np.int64)]
    model = _model([node, dq], [], [_vi("y", F, [2])], inits)
    rule = (f"node '/W' ({form}): INT8 output 'w_q' is not a type TensorRT's {form} takes "
            f"(FLOAT, FLOAT16, BFLOAT16, INT32, INT64, BOOL; {OPERATORS_MD})")
    assert _found(model) == [rule]
    with pytest.raises(InputError) as caught:
        check_tensorrt_parser_rules(model)
    assert str(caught.value) == f"the graph breaks a TensorRT ONNX parser rule: {rule}"  # no "(and 1 more)"
