"""Speed against the machine's limit: this CPU's GEMM peaks, and a model's operations per inference.

    peaks = measure_gemm_peaks(threads)          # FP32 GFLOP/s and u8s8 GOP/s, a few seconds
    ops = model_ops("lrnnet.onnx", (1, 3, 512, 1024))   # multiply-adds x 2 of every Conv/MatMul
    achieved = ops.giga / (latency_ms / 1000)    # GFLOP/s (GOP/s for INT8), then / the matching peak

Both peaks are measured the way the engines compute, with ONNX Runtime on the CPU provider and
the thread count the engines' sessions use (lrnnet._threads): a float32 ``MatMul`` (MLAS SGEMM)
and a ``MatMulInteger`` of uint8 activations by int8 weights (MLAS's u8s8 GEMM, the kernel behind
QLinearConv/QLinearMatMul; on a CPU with AVX-512 VNNI or AVX-VNNI it is the VNNI kernel). Each is
the best of several timed runs of a square GEMM big enough to stay compute-bound, so the figure
is what this machine's cores can do at best right now (a busy, shared machine measures lower).

Operations count what the paper and its peers count: 2 x multiply-accumulates of convolutions
and matrix products, from the ONNX graph's shapes (so any .onnx works, at any input shape);
elementwise ops, pooling and resizes are not counted. LRNNet at 1x3x512x1024 is 16.6 GFLOP.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GemmPeaks", "ModelOps", "achieved_rate", "measure_gemm_peaks", "model_ops", "peak_columns"]

# Square GEMM sides: 2*512^3 = 0.27 and 2*1024^3 = 2.1 GFLOP per product, large enough that packing
# and threading overheads are a few percent; the best of the two is the peak (measured on the
# shared 2-core Xeon: FP32 peaks at 512-768, beyond that it falls to L2/L3 bandwidth).
DEFAULT_GEMM_SIZES = (512, 1024)
DEFAULT_SECONDS = 0.5  # per precision and size


@dataclass(frozen=True)
class GemmPeaks:
    """This machine's best GEMM throughput: FP32 GFLOP/s and uint8 x int8 GOP/s, with how it was measured."""

    fp32_gflops: float
    u8s8_gops: float
    threads: int
    fp32_size: int  # M = N = K of the GEMM that reached each peak
    u8s8_size: int
    method: str

    def for_precision(self, precision: str) -> tuple[float, str]:
        """(peak, unit) an engine of ``precision`` is held against: INT8 -> u8s8 GOP/s, else FP32 GFLOP/s.

        FP16 on the CPU provider runs its convolutions in FP32 (ONNX Runtime's CPU kernels are float),
        so its limit is the FP32 one.
        """
        return (self.u8s8_gops, "GOP/s") if precision == "int8" else (self.fp32_gflops, "GFLOP/s")

    @property
    def int8_over_fp32(self) -> float:
        return self.u8s8_gops / self.fp32_gflops if self.fp32_gflops > 0 else math.nan

    def summary(self) -> str:
        return (f"GEMM peak of this machine now ({self.threads} thread{'s' if self.threads != 1 else ''}, ONNX "
                f"Runtime CPU): FP32 {self.fp32_gflops:.0f} GFLOP/s, u8s8 {self.u8s8_gops:.0f} GOP/s "
                f"({self.int8_over_fp32:.1f}x FP32)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gemm_model(kind: str, size: int) -> Any:
    """A one-node ONNX graph: A (input) x B (an initializer, as weights are), float32 or uint8 x int8."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "fp32":
        weights = numpy_helper.from_array(rng.standard_normal((size, size), dtype=np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        inputs, out_type = [helper.make_tensor_value_info("A", TensorProto.FLOAT, [size, size])], TensorProto.FLOAT
        initializers = [weights]
    else:
        weights = numpy_helper.from_array(rng.integers(-127, 128, (size, size), dtype=np.int8), "B")
        zeros = [numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
                 numpy_helper.from_array(np.array(0, np.int8), "b_zero")]
        node = helper.make_node("MatMulInteger", ["A", "B", "a_zero", "b_zero"], ["Y"])
        inputs, out_type = [helper.make_tensor_value_info("A", TensorProto.UINT8, [size, size])], TensorProto.INT32
        initializers = [weights, *zeros]
    graph = helper.make_graph([node], kind, inputs, [helper.make_tensor_value_info("Y", out_type, [size, size])],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _best_seconds(run: Callable[[], Any], budget_s: float, min_runs: int = 3) -> float:
    """Fastest of repeated runs within ``budget_s`` (after one warm-up): the machine's best, not its average."""
    run()
    best, runs, deadline = math.inf, 0, time.perf_counter() + budget_s
    while runs < min_runs or time.perf_counter() < deadline:
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
        runs += 1
    return best


def measure_gemm_peaks(threads: int | None = None, sizes: tuple[int, ...] = DEFAULT_GEMM_SIZES,
                       seconds: float = DEFAULT_SECONDS) -> GemmPeaks:
    """FP32 and u8s8 GEMM peaks with ONNX Runtime's CPU kernels on ``threads`` intra-op threads.

    ``threads`` None: what lrnnet's ONNX Runtime sessions use (lrnnet._threads.thread_plan). Each
    precision's peak is its best over ``sizes`` (square GEMMs; which size a CPU's caches favour
    differs). About ``2 * len(sizes) * seconds`` of timing, plus a session setup each.
    """
    import onnxruntime as ort

    from lrnnet._threads import thread_plan

    plan = thread_plan()
    threads = threads or plan.onnxruntime
    rng = np.random.default_rng(1)
    rates: dict[str, float] = {}
    best_size: dict[str, int] = {}
    for kind, size in ((kind, size) for kind in ("fp32", "u8s8") for size in sizes):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # As the engines' sessions are configured: spinning or sleeping workers change the figure.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if plan.onnxruntime_spinning else "0")
        session = ort.InferenceSession(_gemm_model(kind, size).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        a = rng.standard_normal((size, size), dtype=np.float32) if kind == "fp32" else \
            rng.integers(0, 256, (size, size), dtype=np.uint8)
        feed = {"A": a}
        seconds_per_gemm = _best_seconds(lambda: session.run(None, feed), seconds)  # noqa: B023 - used at once
        rate = 2.0 * size ** 3 / seconds_per_gemm / 1e9
        if rate > rates.get(kind, 0.0):
            rates[kind], best_size[kind] = rate, size
    return GemmPeaks(fp32_gflops=rates["fp32"], u8s8_gops=rates["u8s8"], threads=threads,
                     fp32_size=best_size["fp32"], u8s8_size=best_size["u8s8"],
                     method=f"ONNX Runtime {ort.__version__} CPU provider: MatMul float32 and MatMulInteger "
                            f"uint8 x int8 (MLAS), square sizes {', '.join(map(str, sizes))}, best of repeated "
                            f"runs over {seconds:g} s each")


@dataclass(frozen=True)
class ModelOps:
    """Operations of one inference: 2 x multiply-accumulates of convolutions and matrix products."""

    ops: int
    input_shape: tuple[int, ...]
    by_op: dict[str, int]

    @property
    def giga(self) -> float:
        return self.ops / 1e9


_CONV_WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "ConvInteger": 1, "QLinearConv": 3, "FusedConv": 1}
_MATMUL_OPS = frozenset({"MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul", "Gemm"})  # A is input 0


def model_ops(model: str | Path | Any, input_shape: tuple[int, ...] | None = None) -> ModelOps:
    """Count the convolution and matrix-product operations of ``model`` (a path or ModelProto) at ``input_shape``.

    ``input_shape`` None: the graph input's own static shape. Dynamic graphs are given the shape
    before ONNX shape inference, so every Conv's output size is known.
    """
    import onnx

    proto = onnx.load(str(model), load_external_data=False) if isinstance(model, (str, Path)) else model
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    initializers = {init.name: tuple(init.dims) for init in probe.graph.initializer}
    graph_input = next(i for i in probe.graph.input if i.name not in initializers)
    dims = graph_input.type.tensor_type.shape.dim
    if input_shape is None:
        if not all(d.HasField("dim_value") for d in dims):
            raise ValueError(f"{graph_input.name} has a dynamic shape; pass input_shape")
        input_shape = tuple(d.dim_value for d in dims)
    if len(input_shape) != len(dims):
        raise ValueError(f"input shape {input_shape} has rank {len(input_shape)}, the graph's input rank {len(dims)}")
    for dim, value in zip(dims, input_shape):
        dim.Clear()
        dim.dim_value = int(value)
    for output in probe.graph.output:
        output.type.tensor_type.ClearField("shape")
    inferred = _infer_shapes(probe)
    shapes: dict[str, tuple[int, ...]] = dict(initializers)
    for info in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        tensor_dims = info.type.tensor_type.shape.dim
        if tensor_dims and all(d.HasField("dim_value") for d in tensor_dims):
            shapes[info.name] = tuple(d.dim_value for d in tensor_dims)
    by_op: dict[str, int] = {}
    for node in inferred.graph.node:
        count = _node_ops(node, shapes)
        if count:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + count
    return ModelOps(ops=sum(by_op.values()), input_shape=tuple(int(v) for v in input_shape), by_op=by_op)


def _infer_shapes(model: Any) -> Any:
    """Every tensor's static shape. ONNX Runtime's symbolic inference first: ONNX's own (even with data
    propagation) loses the spatial size after the channel-split Slices of a dynamic LRNNet export,
    whose bounds are computed from Shape; the symbolic one evaluates that arithmetic."""
    import onnx

    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # noqa: BLE001 - e.g. an op it does not know; ONNX's inference may still do
        return onnx.shape_inference.infer_shapes(model, data_prop=True)


def _node_ops(node: Any, shapes: dict[str, tuple[int, ...]]) -> int:
    op = node.op_type
    if op in _CONV_WEIGHT_INPUT:
        weight = shapes.get(node.input[_CONV_WEIGHT_INPUT[op]])
        output = shapes.get(node.output[0])
        if weight is None or output is None:
            raise ValueError(f"cannot count {op} '{node.name}': its shapes are not known")
        if op == "ConvTranspose":  # every input pixel is scattered through the kernel: count on the input
            data = shapes.get(node.input[0])
            if data is None:
                raise ValueError(f"cannot count ConvTranspose '{node.name}': its input shape is not known")
            return 2 * math.prod(data) * math.prod(weight[1:])
        # Output elements x (input channels per group x kernel) multiply-adds; weight is (Cout, Cin/g, k...).
        return 2 * math.prod(output) * math.prod(weight[1:])
    if op in _MATMUL_OPS:
        a, output = shapes.get(node.input[0]), shapes.get(node.output[0])
        if a is None or output is None:
            raise ValueError(f"cannot count {op} '{node.name}': its shapes are not known")
        transposed_a = op == "Gemm" and any(attr.name == "transA" and attr.i for attr in node.attribute)
        k = a[-2] if transposed_a else a[-1]
        return 2 * math.prod(output) * k
    return 0


def achieved_rate(ops: ModelOps, batch: int, latency_ms: float) -> float:
    """Giga-operations per second an engine reached: ``ops`` is per image, ``latency_ms`` per batch."""
    return ops.giga * batch / (latency_ms / 1000.0) if latency_ms > 0 else math.nan


def peak_columns(ops: ModelOps | None, peaks: GemmPeaks | None, precision: str, batch: int,
                 latency_ms: float) -> dict[str, Any]:
    """What a benchmark row adds: achieved rate, its unit, the matching peak and the fraction of it."""
    if ops is None or peaks is None:
        return {}
    peak, unit = peaks.for_precision(precision)
    rate = achieved_rate(ops, batch, latency_ms)
    return {"model_gops": ops.giga, "achieved": rate, "unit": unit, "peak": peak,
            "fraction_of_peak": rate / peak if peak > 0 else math.nan}
