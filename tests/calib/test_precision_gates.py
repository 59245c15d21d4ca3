"""The conversions really happen: FP16 and INT8 engines of lrnnet-build-engine differ from FP32 as they should.

An accuracy budget alone ("within 5% of the logit scale", "correlation > 0.9") passes a conversion
that did nothing: the FP32 graph copied. So each engine is checked for what it is (float16 Conv
weights and Conv compute; int8 weights behind DequantizeLinear on the convs, Q/DQ on activations)
and for a difference from FP32 that is nonzero and bounded, with budgets a few times what was
measured (in the comments) rather than an order of magnitude above it.
"""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

from lrnnet.calib.graph import output_head_nodes
from lrnnet.cli.build_engine import main
from lrnnet.data.preprocess import preprocess
from lrnnet.data.synthetic import synthetic_video_frames

SIZE = (128, 256)  # the tiny export's (tests/fixtures_export.py)
# two engine builds, one of them calibrated
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_log_handler")]




@pytest.fixture(scope="module")
def engines(tiny_onnx, synthetic_root, tmp_path_factory):
    """lrnnet-build-engine --fp16 and --int8 on ONNX Runtime, run in a folder holding lrnnet.onnx."""
    import os

    work = tmp_path_factory.mktemp("precision_gates")
    shutil.copy(tiny_onnx, work / "lrnnet.onnx")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert main(["--fp16", "--backend", "onnxruntime", "--no-progress"]) == 0
        assert main(["--int8", "--backend", "onnxruntime", "--calib-data", str(synthetic_root),
                     "--calib-images", "4", "--no-progress"]) == 0
    finally:
        os.chdir(cwd)
    return {"fp32": work / "lrnnet.onnx", "fp16": work / "lrnnet_fp16.onnx", "int8": work / "lrnnet_int8.onnx"}


@pytest.fixture(scope="module")
def logits(engines):
    """Each engine's float32 logits on four street frames (not the calibration images)."""
    frames = [frame for frame, _ in synthetic_video_frames(SIZE, 20, seed=3)][::5]
    feed = np.concatenate([preprocess(frame, SIZE) for frame in frames])
    result = {}
    for name, path in engines.items():
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (input_name,) = [i.name for i in session.get_inputs()]
        result[name] = np.concatenate([session.run(None, {input_name: feed[i:i + 1]})[0] for i in range(len(feed))])
        assert result[name].dtype == np.float32
    return result


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_fp16_graph_computes_its_convs_in_float16(tiny_onnx):
    """The precision graph (lrnnet.calib's FP16 recipe): float16 Conv weights, Conv outputs typed float16."""
    from lrnnet.calib.fp16 import convert_to_fp16
    from lrnnet.calib.graph import load_source_onnx

    model = convert_to_fp16(load_source_onnx(tiny_onnx))
    inits = _inits(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) > 50
    assert all(inits[n.input[1]].dtype == np.float16 for n in convs)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    conv_out = Counter(types.get(n.output[0]) for n in convs)
    assert conv_out == Counter({TensorProto.FLOAT16: len(convs)}), conv_out
    # float32 at the edges (keep-io-fp32, the default): what a caller feeds and reads is unchanged.
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [TensorProto.FLOAT]


def test_fp16_engine_holds_float16_weights(engines):
    # The ONNX Runtime engine is its CPU-optimised graph: where the CPU has no float16 Conv kernel,
    # ONNX Runtime casts around it, but the weights it holds are the float16 ones.
    model = onnx.load(str(engines["fp16"]))
    inits = _inits(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) > 50
    for conv in convs:
        weight = conv.input[1]
        if weight not in inits:  # a Cast inserted by ONNX Runtime in front of a float32 kernel
            assert producers[weight].op_type == "Cast", conv.name
            weight = producers[weight].input[0]
        assert inits[weight].dtype == np.float16, conv.name
    assert sum(a.dtype == np.float16 for a in inits.values()) > 0.8 * len(inits)


def test_fp16_logits_differ_from_fp32_by_float16_rounding_only(logits):
    # Measured (tiny net, these frames): max |fp16 - fp32| = 1.94% of the logits' scale, pixel
    # agreement 98.3%. A copied FP32 graph gives 0 and 100%.
    rel = _relative(logits["fp16"], logits["fp32"])
    assert 1e-3 < rel < 0.04, rel  # nonzero (a conversion happened), at most twice the measure
    assert 0.95 < float((logits["fp16"].argmax(1) == logits["fp32"].argmax(1)).mean()) < 1.0


def test_int8_engine_quantizes_the_convs(engines):
    model = onnx.load(str(engines["int8"]))
    inits = _inits(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    head = set(output_head_nodes(model))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    quantized = [n for n in convs if n.input[1] not in inits]
    # Left float by the recipe (lrnnet.calib.recipes): the classifier head and the SVN's 1x1 convs.
    # Measured: 81 of the tiny net's 85 convs quantized.
    assert len(quantized) >= 80 and len(convs) == 85
    for conv in convs:
        if conv not in quantized:
            assert conv.name in head or "/context/" in conv.name, conv.name
    for conv in quantized:  # weights: int8 behind a DequantizeLinear; input: a dequantized activation
        weight_dq, input_dq = producers[conv.input[1]], producers.get(conv.input[0])
        assert weight_dq.op_type == "DequantizeLinear" and inits[weight_dq.input[0]].dtype == np.int8, conv.name
        assert input_dq is not None and input_dq.op_type == "DequantizeLinear", conv.name
        assert producers[input_dq.input[0]].op_type == "QuantizeLinear", conv.name
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["QuantizeLinear"] >= len(quantized) and ops["DequantizeLinear"] >= 2 * len(quantized)


def test_int8_logits_differ_from_fp32_by_quantization_error_only(logits):
    # Measured (tiny untrained net, 4 calibration images, the ONNX Runtime u8s8 recipe): max diff
    # 0.54 of the logits' scale, correlation 0.931, pixel agreement 54.2% (its top-2 margins are
    # tiny; tests/calib/test_precision_accuracy.py measures a trained net's mIoU). A copied FP32
    # graph gives 0, 1.0 and 100%.
    int8, fp32 = logits["int8"], logits["fp32"]
    rel = _relative(int8, fp32)
    assert 0.05 < rel < 0.9, rel  # a real quantization error, bounded
    correlation = float(np.corrcoef(int8.ravel(), fp32.ravel())[0, 1])
    assert 0.85 < correlation < 0.9999, correlation
    assert 0.35 < float((int8.argmax(1) == fp32.argmax(1)).mean()) < 0.99
