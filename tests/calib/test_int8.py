"""INT8 in the graph, per target: TensorRT's symmetric per-channel Q/DQ (Model Optimizer, or ONNX Runtime's
quantizer with TensorRT's rules), ONNX Runtime's QLinear-fused u8s8 graph, and the calibration cache."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from lrnnet.calib.cache import trt_table_path
from lrnnet.calib.graph import float_island_nodes, load_source_onnx, output_head_nodes
from lrnnet.calib.int8 import Int8Options, quantize_int8
from lrnnet.calib.recipes import TENSORRT_FALLBACK_INT8
from lrnnet.errors import InputError
from lrnnet.export.metadata import ModelInfo

CALIB = Int8Options(method="minmax", images=4)  # small and quick: the behaviour, not the ranges, is tested
TRT_RULES = {"target": "tensorrt", "recipe": TENSORRT_FALLBACK_INT8}  # no Model Optimizer import: fast


@pytest.fixture(scope="module")
def calibrated(tiny_onnx, synthetic_root, tmp_path_factory):
    """A first INT8 build that reads images and writes a cache (the calibration folder is a private copy)."""
    work = tmp_path_factory.mktemp("int8")
    root = shutil.copytree(synthetic_root, work / "cityscapes")
    cache = work / "calib.json"
    model, record = quantize_int8(load_source_onnx(tiny_onnx), root, CALIB, cache, **TRT_RULES)
    return model, record, root, cache


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def test_int8_graph_is_symmetric_per_channel_qdq(calibrated):
    model, _, _, _ = calibrated
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    inits = _initializers(model)
    zero_points = [inits[n.input[2]] for n in model.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 for z in zero_points)  # int8, and no int32 (bias) DQ
    assert all(not z.any() for z in zero_points)  # symmetric: every zero point is 0
    producers = {out: node for node in model.graph.node for out in node.output}
    head = set(output_head_nodes(model))
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in head]
    assert len(convs) > 50
    for conv in convs:  # every Conv weight but the classifier's: int8, dequantized per output channel (axis 0)
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear", conv.name
        weight, scale = inits[dq.input[0]], inits[dq.input[1]]
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        assert weight.dtype == np.int8 and axis == 0 and scale.shape == (weight.shape[0],), conv.name
        if len(conv.input) > 2:  # the bias stays float32 (TensorRT)
            assert conv.input[2] in inits and inits[conv.input[2]].dtype == np.float32, conv.name
    classifier = next(n for n in model.graph.node if n.op_type == "Conv" and n.name in head)
    assert inits[classifier.input[1]].dtype == np.float32  # the logits' head stays float
    for bn in (n for n in model.graph.node if n.op_type == "BatchNormalization"):  # TensorRT needs constants
        assert all(name in inits for name in bn.input[1:]), bn.name
    assert ModelInfo.from_onnx_model(model).precision == "int8"


def test_power_iteration_is_not_quantized(tiny_onnx, calibrated):
    model, _, _, _ = calibrated
    island = set(float_island_nodes(onnx.load(str(tiny_onnx))))
    producers = {out: node for node in model.graph.node for out in node.output}
    island_nodes = [n for n in model.graph.node if n.name in island]
    assert {"MatMul", "ReduceSum", "Softmax"} <= {n.op_type for n in island_nodes}
    # Values enter the island dequantized (from the quantized convs around it), but no tensor between
    # two of its nodes goes through a Q/DQ pair: the power iteration and softmax compute in float.
    for node in island_nodes:
        for name in node.input:
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            source = producers.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
            assert source is None or source.name not in island, f"{source.name} -> Q/DQ -> {node.name}"


def test_int8_graph_runs_on_onnxruntime(tiny_onnx, calibrated, synthetic_root):
    from lrnnet.data.cityscapes import CityscapesDataset
    from lrnnet.data.preprocess import preprocess

    model, _, _, _ = calibrated
    image = preprocess(CityscapesDataset(synthetic_root, "val")[0][0], (128, 256))
    int8 = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    fp32 = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    quantized, reference = int8.run(None, {"input": image})[0], fp32.run(None, {"input": image})[0]
    assert quantized.shape == reference.shape and np.isfinite(quantized).all()
    # Quantization error, not a different model: correlated logits. (Argmax agreement is tested on the
    # trained model in test_precision_accuracy.py; this untrained net's top-2 margins are tiny.)
    assert np.corrcoef(quantized.ravel(), reference.ravel())[0, 1] > 0.9


def test_calibration_cache_round_trip_reads_no_images(tiny_onnx, calibrated):
    model, record, root, cache = calibrated
    assert record.images_read == record.images == 4 and cache.is_file() and trt_table_path(cache).is_file()
    shutil.rmtree(root)  # the second build cannot read an image: there is none
    again, reused = quantize_int8(load_source_onnx(tiny_onnx), None, CALIB, cache, **TRT_RULES)
    assert reused.images_read == 0 and reused.digest == record.digest
    assert again.graph.SerializeToString() == model.graph.SerializeToString()  # same scales, same graph
    # The cache holds the ranges of every quantizable tensor: the ONNX Runtime recipe quantizes from it too.
    cpu, cpu_record = quantize_int8(load_source_onnx(tiny_onnx), None, CALIB, cache, target="onnxruntime")
    assert cpu_record.images_read == 0 and cpu_record.recipe == "onnxruntime/onnxruntime"
    assert {n.op_type for n in cpu.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    # Other settings make another cache key: it must calibrate, and cannot without images.
    with pytest.raises(InputError, match="calib-data"):
        quantize_int8(load_source_onnx(tiny_onnx), None, Int8Options(method="entropy", images=4), cache)


def test_trt_calibration_table_lists_activation_scales(calibrated):
    import struct

    _, _, _, cache = calibrated
    lines = trt_table_path(cache).read_text().splitlines()
    assert lines[0].startswith("TRT-") and lines[0].endswith("MinMaxCalibration")
    scales = {name: struct.unpack(">f", bytes.fromhex(value.strip()))[0]
              for name, value in (line.rsplit(":", 1) for line in lines[1:])}
    assert "input" in scales and all(s > 0 for s in scales.values())
    # The input is preprocessed ImageNet-normalised RGB: its amax (127 * scale) lies within 1..3.
    assert 1.0 < scales["input"] * 127 < 3.0


def test_quantize_without_images_or_cache_is_an_input_error(tiny_onnx, tmp_path):
    with pytest.raises(InputError, match="calib-data"):
        quantize_int8(load_source_onnx(tiny_onnx), None, CALIB, tmp_path / "absent.json")
    assert not (tmp_path / "absent.json").exists()


def test_dynamic_shape_graph_quantizes_and_runs_at_other_sizes(synthetic_root, tmp_path):
    """A dynamic N x H x W export (lrnnet-export --dynamic) goes through the same path."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)
               for name, shape in (("w1", (8, 3, 3, 3)), ("w2", (4, 8, 1, 1)))]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["a"], name="/model/encoder/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"], name="/model/encoder/Relu"),
             helper.make_node("Conv", ["b", "w2"], ["logits"], name="/model/classifier/Conv")]
    graph = helper.make_graph(nodes, "dynamic", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                ["batch", 3, "height", "width"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                             ["batch", 4, "height", "width"])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ModelInfo(input_height=64, input_width=128, stride=8, num_classes=4, class_names=list("abcd"),
              palette=[[0, 0, 0]] * 4, dynamic=True).write_to(model)
    onnx.save(model, str(tmp_path / "dynamic.onnx"))
    quantized, record = quantize_int8(load_source_onnx(tmp_path / "dynamic.onnx"), synthetic_root, CALIB)
    assert record.images_read == 4
    producers = {out: node for node in quantized.graph.node for out in node.output}
    conv = next(n for n in quantized.graph.node if n.name == "/model/encoder/Conv")
    assert producers[conv.input[1]].op_type == "DequantizeLinear"
    session = ort.InferenceSession(quantized.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.zeros((2, 3, 32, 48), np.float32)})[0].shape == (2, 4, 32, 48)


def _zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = _initializers(model)
    return [inits[n.input[2]] for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]


def test_onnxruntime_int8_fuses_into_qlinear_ops(tiny_onnx, synthetic_root, tmp_path):
    """The CPU recipe: u8 asymmetric activations, s8 symmetric per-channel weights, fused by ONNX Runtime."""
    model, record = quantize_int8(load_source_onnx(tiny_onnx), synthetic_root, CALIB, target="onnxruntime")
    assert record.recipe == "onnxruntime/onnxruntime"
    info = ModelInfo.from_onnx_model(model)
    assert info.engine_target == "onnxruntime" and "QLinear-fused" in info.engine_purpose
    inits = _initializers(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    activation_zps = [z for z in _zero_points(model) if z.dtype == np.uint8]
    assert activation_zps and any(z.any() for z in activation_zps)  # uint8, asymmetric
    weights = [producers[n.input[1]] for n in model.graph.node
               if n.op_type == "Conv" and producers.get(n.input[1]) is not None]
    assert weights and all(inits[dq.input[0]].dtype == np.int8 and not inits[dq.input[2]].any() for dq in weights)
    assert not any(inits[n.input[0]].dtype == np.int32 for n in model.graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] in inits)  # biases float: ORT quantizes them

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    fused = Counter(node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    # Every conv the recipe quantizes (all but the SVN 1x1s and the classifier) is a QLinearConv; the
    # residual sums and the downsamplers' concats stay int8 too (a broken chain would leave them float).
    assert fused["QLinearConv"] == len(weights), fused
    assert fused["QLinearAdd"] > 0 and fused["QLinearConcat"] > 0, fused
    assert fused["QuantizeLinear"] + fused["DequantizeLinear"] < fused["QLinearConv"], fused
    # Each concat's inputs are quantized at its output's scale and zero point (concat_shares_scale):
    # ONNX Runtime's QLinearConcat then copies. Inputs: Y_scale, Y_zp, then (X, X_scale, X_zp) per input.
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    values = _initializers(optimized)
    concats = [n for n in optimized.graph.node if n.op_type == "QLinearConcat"]
    for concat in concats:
        out_scale, out_zp = values[concat.input[0]], values[concat.input[1]]
        for scale, zp in zip(concat.input[3::3], concat.input[4::3]):
            assert values[scale] == out_scale and values[zp] == out_zp, concat.name


def assert_tensorrt_int8_graph(model: onnx.ModelProto) -> int:
    """TensorRT's explicit-quantization form; returns how many convs have quantized weights.

    Symmetric int8 (every zero point an int8 0), per-channel weights on axis 0 (one scale per
    output channel), no int32 DequantizeLinear (biases stay float), only the standard ONNX domain,
    and the TensorRT parser's rules (lrnnet.export.tensorrt_rules).
    """
    from lrnnet.export.tensorrt_rules import check_tensorrt_parser_rules

    inits = _initializers(model)
    zero_points = _zero_points(model)
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert not [n.name for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                and inits[n.input[0]].dtype == np.int32]
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    producers = {out: node for node in model.graph.node for out in node.output}
    quantized = 0
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        dq = producers.get(conv.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        quantized += 1
        channels = conv_out = (inits[dq.input[0]] if dq.input[0] in inits else
                               inits[producers[dq.input[0]].input[0]]).shape[0]  # int8 weight, or Q of float
        assert next((a.i for a in dq.attribute if a.name == "axis"), 1) == 0, conv.name
        assert inits[dq.input[1]].shape == (channels,) == (conv_out,), conv.name
    check_tensorrt_parser_rules(model)
    return quantized


def test_fallback_tensorrt_graph_has_tensorrts_form(calibrated):
    model, record, _, _ = calibrated
    assert record.recipe == "tensorrt/onnxruntime"
    assert assert_tensorrt_int8_graph(model) > 50
    info = ModelInfo.from_onnx_model(model)
    assert info.engine_target == "tensorrt" and "Model Optimizer was not importable" in info.engine_purpose
    # (Where its Q/DQ land around the residual Adds is ONNX Runtime's choice: Model Optimizer's test checks them.)


def assert_one_quantized_input_per_residual_add(model: onnx.ModelProto) -> None:
    """TensorRT fuses a residual Add into the conv that feeds it when only the other input is quantized."""
    producers = {out: node for node in model.graph.node for out in node.output}
    adds = [n for n in model.graph.node if n.op_type == "Add" and len(n.input) == 2 and
            all(name in producers for name in n.input)]
    dequantized = [sum(producers[name].op_type == "DequantizeLinear" for name in add.input) for add in adds]
    assert adds and max(dequantized) <= 1 and sum(dequantized) > 0, dequantized


@pytest.mark.slow
def test_modelopt_tensorrt_graph_has_tensorrts_form(tiny_onnx, synthetic_root, calibrated):
    """NVIDIA Model Optimizer's graph (the TensorRT default), next to the fallback's: same form, counts compared."""
    pytest.importorskip("modelopt.onnx.quantization")
    from onnxruntime.quantization import calibrate, registry

    before = dict(registry.QDQRegistry), calibrate.HistogramCalibrater.collect_data
    model, record = quantize_int8(load_source_onnx(tiny_onnx), synthetic_root, CALIB, target="tensorrt")
    # Model Optimizer patches ONNX Runtime's quantizer for good; the CPU recipe later in this process needs it back.
    assert (dict(registry.QDQRegistry), calibrate.HistogramCalibrater.collect_data) == before
    assert record.recipe == "tensorrt/modelopt" and record.method == "modelopt-max" and record.images_read >= 4
    info = ModelInfo.from_onnx_model(model)
    assert info.engine_target == "tensorrt" and "Model Optimizer placement" in info.engine_purpose
    quantized = assert_tensorrt_int8_graph(model)
    fallback, _, _, _ = calibrated
    ops, fallback_ops = Counter(n.op_type for n in model.graph.node), Counter(n.op_type for n in fallback.graph.node)
    # Both quantize nearly every conv; Model Optimizer also quantizes one input of each residual Add
    # (TensorRT fuses it into the conv), which the fallback leaves to TensorRT.
    assert quantized >= assert_tensorrt_int8_graph(fallback) - 2
    assert ops["Conv"] == fallback_ops["Conv"] and ops["QuantizeLinear"] > 0
    assert_one_quantized_input_per_residual_add(model)
    # The power iteration stays float32: no float16 cast in the graph (high_precision_dtype="fp32").
    assert not any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
