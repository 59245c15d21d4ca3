"""TensorRT's parser rules, offline: each broken rule names its node, op and rule; our exports pass."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from graph_helpers import graph_model as _model
from graph_helpers import value_info as _vi
from onnx import TensorProto, helper, numpy_helper

from lrnnet.errors import InputError
from lrnnet.export.checks import GraphCheckError, check_graph
from lrnnet.export.tensorrt_rules import OP_TYPES, check_tensorrt_parser_rules, tensorrt_rule_violations

F, U8, I8, I32, I64 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, TensorProto.INT64


def _const(name, values, dtype=None):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _only_violation(model):
    violations = tensorrt_rule_violations(model)
    assert violations, "expected a broken rule"
    with pytest.raises(InputError) as caught:
        check_tensorrt_parser_rules(model)
    message = str(caught.value)
    assert "\n" not in message and str(violations[0]) in message
    return violations


def _uint8_slice_first(cast_first: bool):
    """Today's defect (and its fix): uint8 NHWC BGR input, channel flip by Slice step -1, Transpose."""
    starts, ends, axes, steps = (_const("starts", [-1], np.int64), _const("ends", [-(2**62)], np.int64),
                                 _const("axes", [3], np.int64), _const("steps", [-1], np.int64))
    first = "x_f" if cast_first else "x"
    nodes = [helper.make_node("Slice", [first, "starts", "ends", "axes", "steps"], ["flipped"], name="/Slice"),
             helper.make_node("Transpose", ["flipped"], ["nchw"], perm=[0, 3, 1, 2], name="/Transpose")]
    if cast_first:
        nodes.insert(0, helper.make_node("Cast", ["x"], ["x_f"], to=F, name="/Cast"))
        nodes.append(helper.make_node("Relu", ["nchw"], ["y"], name="/Relu"))
    else:
        nodes.append(helper.make_node("Cast", ["nchw"], ["y"], to=F, name="/Cast"))
    return _model(nodes, [_vi("x", U8, [1, 4, 6, 3])], [_vi("y", F, [1, 3, 4, 6])], [starts, ends, axes, steps])


def test_uint8_slice_and_transpose_before_the_cast_are_caught():
    violations = _only_violation(_uint8_slice_first(cast_first=False))
    first = violations[0]
    assert (first.node, first.op) == ("/Slice", "Slice") and "UINT8" in first.rule
    assert any(v.op == "Transpose" and "UINT8" in v.rule for v in violations)
    assert any("only supported as network input or output" in v.rule for v in violations)


def test_casting_first_passes():
    assert tensorrt_rule_violations(_uint8_slice_first(cast_first=True)) == []


def test_export_check_raises_graph_check_error_with_the_rule():
    # Inside the export a violation is the exporter's bug (exit 1), not the user's input.
    with pytest.raises(GraphCheckError, match=r"TensorRT ONNX parser rule: node '/Slice' \(Slice\): UINT8"):
        check_graph(_uint8_slice_first(cast_first=False))


def _qdq_conv(*, zero_point=0, zero_dtype=np.int8, scale_const=True, w_axis=0, bias_int32=False,
              act_scale=None):
    """x -> Q -> DQ -> Conv(weights DQ per-channel) -> y; each keyword breaks one rule."""
    weights = _const("w_q", np.ones((4, 3, 1, 1)), np.int8)
    w_scale = _const("w_scale", np.full(4 if w_axis == 0 else 3, 0.1), np.float32)
    w_zero = _const("w_zero", np.zeros(w_scale.dims), np.int8)
    x_scale = _const("x_scale", np.float32(0.05) if act_scale is None else act_scale, np.float32)
    x_zero = _const("x_zero", zero_point, zero_dtype)
    inits = [weights, w_scale, w_zero, x_zero]
    nodes = []
    if scale_const:
        inits.append(x_scale)
    else:  # a scale computed at run time from the data
        nodes.append(helper.make_node("ReduceMax", ["x"], ["x_scale"], keepdims=0, name="/ReduceMax"))
    nodes += [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"], name="/Q"),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"], name="/DQ"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=w_axis, name="/DQ_w"),
    ]
    conv_inputs = ["x_dq", "w"]
    if bias_int32:
        inits += [_const("b_q", np.zeros(4), np.int32), _const("b_scale", np.full(4, 0.005), np.float32)]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale"], ["b"], axis=0, name="/DQ_bias"))
        conv_inputs.append("b")
    nodes.append(helper.make_node("Conv", conv_inputs, ["y"], name="/Conv"))
    return _model(nodes, [_vi("x", F, [1, 3, 4, 4])], [_vi("y", F, [1, 4, 4, 4])], inits)


def test_symmetric_int8_qdq_with_per_channel_weights_passes():
    assert tensorrt_rule_violations(_qdq_conv()) == []


@pytest.mark.parametrize("kwargs, node, op, rule", [
    ({"zero_point": 3}, "/Q", "QuantizeLinear", "not all zeros: TensorRT only supports symmetric"),
    ({"zero_point": 128, "zero_dtype": np.uint8}, "/Q", "QuantizeLinear", "uint8 zero point"),
    ({"scale_const": False}, "/Q", "QuantizeLinear", "not an initializer: TensorRT needs a build-time constant"),
    ({"w_axis": 1}, "/DQ_w", "DequantizeLinear", "TensorRT wants the output-channel axis 0"),
    ({"bias_int32": True}, "/DQ_bias", "DequantizeLinear", "int32 input 'b_q' (a quantized bias)"),
    ({"act_scale": [0.1, 0.1, 0.1]}, "/Q", "QuantizeLinear", "per-channel scale (3 values) on an activation"),
    ({"act_scale": -0.5}, "/Q", "QuantizeLinear", "must be finite and all positive"),
])
def test_each_broken_qdq_rule_names_node_op_and_rule(kwargs, node, op, rule):
    violations = _only_violation(_qdq_conv(**kwargs))
    assert any((v.node, v.op) == (node, op) and rule in v.rule for v in violations), violations


def test_per_channel_scale_count_must_match_the_axis():
    w = _const("w_q", np.ones((4, 3, 1, 1)), np.int8)
    s = _const("w_s", np.full(5, 0.1), np.float32)
    model = _model([helper.make_node("DequantizeLinear", ["w_q", "w_s"], ["w"], axis=0, name="/DQ_w"),
                    helper.make_node("Conv", ["x", "w"], ["y"], name="/Conv")],
                   [_vi("x", F, [1, 3, 2, 2])], [_vi("y", F, [1, 4, 2, 2])], [w, s])
    assert any(v.node == "/DQ_w" and "axis 0 does not match 5 scales" in v.rule for v in _only_violation(model))


def test_contrib_domain_op_fails():
    node = helper.make_node("QLinearConv", ["x"], ["y"], domain="com.microsoft", name="/QLinearConv")
    model = _model([node], [_vi("x", F, [1, 3, 4, 4])], [_vi("y", F, None)], domains=["com.microsoft"])
    (violation,) = _only_violation(model)
    assert (violation.node, violation.op) == ("/QLinearConv", "QLinearConv") and "com.microsoft" in violation.rule


def test_int64_network_output_fails():
    model = _model([helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0, name="/ArgMax")],
                   [_vi("x", F, [1, 3, 4, 4])], [_vi("y", I64, [1, 4, 4])])
    (violation,) = _only_violation(model)
    assert violation.node == "y" and "INT64 network output" in violation.rule


def test_uint8_output_must_come_from_a_cast():
    ok = _model([helper.make_node("Cast", ["x"], ["y"], to=U8, name="/Cast")],
                [_vi("x", F, [2])], [_vi("y", U8, [2])])
    assert tensorrt_rule_violations(ok) == []
    bad = _model([helper.make_node("Identity", ["x"], ["y"], name="/Identity")],
                 [_vi("x", U8, [2])], [_vi("y", U8, [2])])
    assert any(v.op == "Identity" and "UINT8" in v.rule for v in _only_violation(bad))


def test_int8_tensor_outside_qdq_fails():
    model = _model([helper.make_node("Cast", ["x"], ["x8"], to=I8, name="/Cast8"),
                    helper.make_node("Cast", ["x8"], ["y"], to=F, name="/CastF")],
                   [_vi("x", F, [2])], [_vi("y", F, [2])])
    violations = _only_violation(model)
    assert any(v.node == "/Cast8" and "quantized types come only from QuantizeLinear" in v.rule for v in violations)
    assert any(v.node == "/CastF" and "may only feed DequantizeLinear" in v.rule for v in violations)


@pytest.mark.parametrize("attrs, rule", [
    ({"mode": "cubic"}, "mode='cubic' is unsupported"),
    ({"coordinate_transformation_mode": "tf_crop_and_resize"}, "coordinate_transformation_mode"),
    ({"antialias": 1}, "antialiasing"),
])
def test_resize_attributes(attrs, rule):
    scales = _const("scales", [1, 1, 2, 2], np.float32)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="/Resize", **attrs)
    model = _model([node], [_vi("x", F, [1, 1, 2, 2])], [_vi("y", F, [1, 1, 4, 4])], [scales], opset=18)
    (violation,) = _only_violation(model)
    assert violation.op == "Resize" and rule in violation.rule


def test_pooling_attributes_and_computed_axes():
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2], name="/Pool")
    model = _model([pool], [_vi("x", F, [1, 1, 8, 8])], [_vi("y", F, None)])
    assert "dilations [2, 2]" in _only_violation(model)[0].rule
    # Slice whose axes come from the data (Shape), not an initializer.
    nodes = [helper.make_node("Shape", ["x"], ["axes"], start=0, end=1, name="/Shape"),
             helper.make_node("Slice", ["x", "s", "e", "axes"], ["y"], name="/Slice")]
    model = _model(nodes, [_vi("x", F, [1, 4])], [_vi("y", F, None)],
                   [_const("s", [0], np.int64), _const("e", [1], np.int64)])
    (violation,) = _only_violation(model)
    assert violation.node == "/Slice" and "'axes' must be an initializer" in violation.rule


def test_float_op_on_int32_and_opset_range():
    model = _model([helper.make_node("Sqrt", ["x"], ["y"], name="/Sqrt")], [_vi("x", I32, [2])], [_vi("y", I32, [2])])
    assert "INT32 input 'x' is not a type TensorRT's Sqrt takes" in _only_violation(model)[0].rule
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="/Relu")], [_vi("x", F, [2])], [_vi("y", F, [2])],
                   opset=21)
    assert "opset 21 is outside TensorRT 10's 9-20" in _only_violation(model)[0].rule


def test_table_covers_the_export_allow_list():
    from lrnnet.export.checks import TENSORRT_NATIVE_OPS

    assert TENSORRT_NATIVE_OPS <= set(OP_TYPES) and {"Cast", "QuantizeLinear", "DequantizeLinear"} <= set(OP_TYPES)


def test_the_tiny_export_passes(tiny_onnx):
    assert tensorrt_rule_violations(onnx.load(str(tiny_onnx))) == []


@pytest.mark.slow
def test_dynamic_preprocess_argmax_export_passes_and_still_verifies(tiny_checkpoint, tmp_path, oracle):
    """The export that began with Slice/Transpose on UINT8: now Cast first, and still equal to PyTorch."""
    from lrnnet.export import ExportOptions, export_checkpoint

    path = tmp_path / "dyn.onnx"
    report = export_checkpoint(tiny_checkpoint, path, ExportOptions(height=64, width=128, dynamic=True,
                                                                    preprocess_in_graph=True, argmax=True,
                                                                    verify_scenes=1))
    model = onnx.load(str(path))
    assert model.graph.node[0].op_type == "Cast" and list(model.graph.node[0].input) == ["input"]
    assert tensorrt_rule_violations(model) == []
    assert report.verification is not None and report.verification.summary().startswith("argmax agreement 100.000%")
    # Independent oracle: the uint8 graph's labels vs PyTorch on preprocess()'d street frames.
    frames = oracle.frames((64, 128), 2)
    labels = oracle.run_onnx(path, oracle.onnx_input(frames, (64, 128), uint8_nhwc=True))
    assert labels.dtype == np.int32
    assert (labels == oracle.logits(frames, (64, 128)).argmax(1)).mean() >= 0.999
