"""The INT8 recipe's graph rewrites: exact in float, and what they leave for ONNX Runtime to run."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import quant_pre_process

from lrnnet.calib.graph import load_source_onnx
from lrnnet.calib.int8 import Int8Options, quantize_int8
from lrnnet.calib.recipes import ONNXRUNTIME_CPU_INT8_DISABLED_OPTIMIZERS
from lrnnet.calib.rewrite import FLOAT_MARK, fold_downsampler_batchnorm


def _ranges(model: onnx.ModelProto) -> dict:
    """Made-up ranges for every tensor (the rewrite copies them; their values do not matter here)."""
    names = {name for node in model.graph.node for name in node.output}
    return {"CLS": "TensorsData", "data": {name: {"lowest": 0.0, "highest": float(i + 1)}
                                           for i, name in enumerate(sorted(names))}}


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_downsampler_batchnorm_split_is_exact(tiny_onnx, tmp_path):
    quant_pre_process(str(tiny_onnx), str(tmp_path / "prepared.onnx"), skip_symbolic_shape=True)
    prepared = onnx.load(str(tmp_path / "prepared.onnx"))
    downsamplers = sum(n.op_type == "BatchNormalization" for n in prepared.graph.node)
    assert downsamplers == 3  # LRNNet's three downsampling units: the only BN an export keeps
    ranges = _ranges(prepared)
    rewritten, new_ranges, float_nodes = fold_downsampler_batchnorm(prepared, ranges)
    onnx.checker.check_model(rewritten)

    ops = Counter(n.op_type for n in rewritten.graph.node)
    assert ops["BatchNormalization"] == 0 and len(float_nodes) == 3 * downsamplers
    assert all(FLOAT_MARK in name for name in float_nodes)
    assert sum(n.op_type == "BatchNormalization" for n in prepared.graph.node) == downsamplers  # input untouched
    x = np.random.default_rng(0).random((1, 3, 128, 256), np.float32)
    reference, folded = _run(prepared, x), _run(rewritten, x)
    assert np.abs(folded - reference).max() <= 1e-5 * max(1.0, float(np.abs(reference).max()))
    assert (folded.argmax(1) == reference.argmax(1)).all()

    # The unit's output keeps its name and range; each half of the new Concat takes that range, and the
    # pooled tensor has none (it stays float).
    for concat in (n for n in rewritten.graph.node if n.op_type == "Concat" and "bn_split" in n.input[0]):
        unit_range = ranges["data"][concat.output[0]]
        assert [new_ranges["data"][name] for name in concat.input] == [unit_range, unit_range]
    pools = [n.output[0] for n in rewritten.graph.node if n.op_type == "MaxPool"]
    assert pools and not any(name in new_ranges["data"] for name in pools)
    assert json.dumps(ranges) == json.dumps(_ranges(prepared))  # the caller's ranges untouched


def test_onnxruntime_int8_keeps_maxpool_float_and_has_no_batchnorm(tiny_onnx, synthetic_root, tmp_path):
    """As the runner loads it: int8 convs around, MaxPool on float input, no BN, no Q/DQ between float nodes."""
    model, _ = quantize_int8(load_source_onnx(tiny_onnx), synthetic_root, Int8Options(method="minmax", images=4))
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"],
                         disabled_optimizers=list(ONNXRUNTIME_CPU_INT8_DISABLED_OPTIMIZERS))
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    producers = {out: node for node in optimized.graph.node for out in node.output}
    pools = [n for n in optimized.graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 3
    # Float MaxPool: its input is dequantized (or the float graph input), never a uint8 tensor.
    assert all(producers[p.input[0]].op_type == "DequantizeLinear" for p in pools if p.input[0] in producers)
    assert not any(n.op_type == "BatchNormalization" for n in optimized.graph.node)
