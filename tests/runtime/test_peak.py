"""The machine's GEMM peaks and a model's operation count (no speed is asserted: figures live in benchmarks)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from lrnnet.runtime.peak import GemmPeaks, _gemm_model, measure_gemm_peaks, model_ops, peak_columns


@pytest.fixture(scope="module")
def reference_model(tiny_checkpoint):
    """The tiny checkpoint in PyTorch with the power-iteration SVD (the form that was exported)."""
    from lrnnet.models import load_checkpoint

    return load_checkpoint(tiny_checkpoint, svd="power")


def test_operation_count_equals_pytorch_flop_counter(tiny_onnx, reference_model):
    """The oracle: torch's FlopCounterMode on the same model (power-iteration SVD) at the same shape."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        reference_model(torch.zeros(1, 3, 128, 256))
    ops = model_ops(tiny_onnx)
    assert ops.input_shape == (1, 3, 128, 256)
    assert ops.ops == counter.get_total_flops()
    assert set(ops.by_op) == {"Conv", "MatMul"}


def _graph(nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_counts_grouped_conv_matmul_and_gemm_by_hand():
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name) for name, shape in
            (("w", (8, 2, 3, 3)), ("m", (6, 5)), ("g", (7, 4)))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], group=2, pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("MatMul", ["c", "m"], ["y"]),
             helper.make_node("Gemm", ["a", "g"], ["z"], transA=1)]
    model = _graph(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, "h", "w"]),
                           helper.make_tensor_value_info("a", TensorProto.FLOAT, [7, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                    helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], init)
    with pytest.raises(ValueError, match="dynamic shape"):
        model_ops(model)
    ops = model_ops(model, (2, 4, 12, 12))
    conv = 2 * (2 * 8 * 6 * 6) * (2 * 3 * 3)  # output elements x (Cin/group x k x k) multiply-adds
    matmul = 2 * (2 * 8 * 6 * 5) * 6  # c is 2x8x6x6; x (6 x 5)
    gemm = 2 * (3 * 4) * 7  # A^T is 3x7
    assert ops.by_op == {"Conv": conv, "MatMul": matmul, "Gemm": gemm} and ops.ops == conv + matmul + gemm


@pytest.mark.slow
def test_dynamic_uint8_export_is_counted_at_any_shape(tmp_path, tiny_checkpoint, reference_model):
    """A dynamic, in-graph-preprocessing export: the count at 64x128 is PyTorch's at 64x128."""
    from torch.utils.flop_counter import FlopCounterMode

    from lrnnet.export import ExportOptions, export_checkpoint

    path = tmp_path / "dyn.onnx"
    export_checkpoint(tiny_checkpoint, path, ExportOptions(height=64, width=128, dynamic=True,
                                                           preprocess_in_graph=True, verify=False))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        reference_model(torch.zeros(1, 3, 64, 128))
    assert model_ops(path, (1, 64, 128, 3)).ops == counter.get_total_flops()


def test_the_peak_graphs_compute_what_they_claim():
    """The u8s8 GEMM really is uint8 x int8 -> int32 (so the peak times that kernel, not a float one)."""
    rng = np.random.default_rng(0)
    for kind in ("fp32", "u8s8"):
        model = _gemm_model(kind, 64)
        onnx.checker.check_model(model, full_check=True)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        weights = numpy_helper.to_array(model.graph.initializer[0])
        if kind == "fp32":
            a = rng.standard_normal((64, 64), dtype=np.float32)
            np.testing.assert_allclose(session.run(None, {"A": a})[0], a @ weights, rtol=1e-4, atol=1e-3)
        else:
            a = rng.integers(0, 256, (64, 64), dtype=np.uint8)
            got = session.run(None, {"A": a})[0]
            assert weights.dtype == np.int8 and got.dtype == np.int32
            np.testing.assert_array_equal(got, (a.astype(np.int64) - 128) @ weights.astype(np.int64))


def test_measure_gemm_peaks_reports_both_rates_and_how():
    peaks = measure_gemm_peaks(threads=1, sizes=(64, 96), seconds=0.02)
    assert peaks.threads == 1 and peaks.fp32_size in (64, 96) and peaks.u8s8_size in (64, 96)
    assert math.isfinite(peaks.fp32_gflops) and peaks.fp32_gflops > 0
    assert math.isfinite(peaks.u8s8_gops) and peaks.u8s8_gops > 0
    assert "MatMulInteger uint8 x int8" in peaks.method and "GOP/s" in peaks.summary()
    assert peaks.for_precision("int8") == (peaks.u8s8_gops, "GOP/s")
    assert peaks.for_precision("fp16") == peaks.for_precision("fp32") == (peaks.fp32_gflops, "GFLOP/s")


def test_peak_columns_arithmetic(tiny_onnx):
    ops = model_ops(tiny_onnx)
    peaks = GemmPeaks(fp32_gflops=100.0, u8s8_gops=400.0, threads=2, fp32_size=512, u8s8_size=512, method="m")
    fp32 = peak_columns(ops, peaks, "fp32", batch=1, latency_ms=20.0)
    assert fp32["achieved"] == pytest.approx(ops.giga / 0.020) and fp32["unit"] == "GFLOP/s"
    assert fp32["fraction_of_peak"] == pytest.approx(ops.giga / 0.020 / 100.0)
    int8 = peak_columns(ops, peaks, "int8", batch=2, latency_ms=20.0)
    assert int8["unit"] == "GOP/s" and int8["fraction_of_peak"] == pytest.approx(2 * ops.giga / 0.020 / 400.0)
    assert peak_columns(None, peaks, "fp32", 1, 20.0) == {}
