"""Model-only speed by the paper's protocol (DESIGN.md, Speed protocol).

Batch 1, 1x3x512x1024, a random input already on the device in the graph's own type, 50 warm-up
then 100 timed iterations, each synchronised with the device before the clock stops; mean and
p50/p90/p99 latency and FPS, compared with the paper's 71 FPS on a GTX 1080Ti (the reference
device, not this one). Decode, preprocessing, host<->device copies and argmax are NOT in these
figures: that is what `lrnnet-infer`'s end-to-end report measures.

How each backend keeps its input on the device:

* torch: a tensor created on the runner's device (a CUDA tensor on a GPU), the runner's module
  called directly (with FP16 autocast when the runner is FP16), optionally replayed as a CUDA graph;
  ``torch.cuda.synchronize()`` ends each iteration.
* onnxruntime: a preallocated array in the graph's input type; on a GPU provider, I/O binding with
  the input and output in device memory (``run_with_iobinding`` + ``synchronize_outputs``).
* anything else (the TensorRT runner, unless it offers ``device_step``): ``runner.infer`` on a
  preallocated host array, which includes the copies; the result says so (``input_on_device``).

A runner may provide ``device_step(shape, dtype) -> (step, sync)`` to take over the last case.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from lrnnet.errors import InputError
from lrnnet.limits import MAX_BENCH_ITERATIONS, count_problem, pixels_problem
from lrnnet.log import logger, progress
from lrnnet.runtime._device import cpu_name, cpu_threads
from lrnnet.runtime.latency import PAPER_BATCH, PAPER_INPUT_SIZE, compare_with_paper, summarize_latency

__all__ = ["DEFAULT_ITERS", "DEFAULT_WARMUP", "SWEEP_SIZES", "BenchmarkOptions", "BenchmarkResult", "add_peak_fraction",
           "benchmark", "check_pixels", "check_shape", "distinct", "host_description", "resolve_size", "runner_threads", "runs_on_cpu", "sweep"]

DEFAULT_WARMUP = 50
DEFAULT_ITERS = 100
SWEEP_SIZES: tuple[tuple[int, int], ...] = (PAPER_INPUT_SIZE, (1024, 2048))  # half and full Cityscapes

Step = Callable[[], Any]
H = TypeVar("H", bound=Hashable)


@dataclass(frozen=True)
class BenchmarkOptions:
    """One timed configuration. `size` None: the paper's 512x1024, or a static model's own size."""

    size: tuple[int, int] | None = None
    batch: int = PAPER_BATCH
    warmup: int = DEFAULT_WARMUP
    iters: int = DEFAULT_ITERS
    cuda_graph: bool = False  # torch on CUDA: replay one captured graph per iteration
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise InputError(f"batch must be positive, got {self.batch}")
        if self.warmup < 0:
            raise InputError(f"warm-up iterations must be >= 0, got {self.warmup}")
        if self.iters < 1:
            raise InputError(f"timed iterations must be positive, got {self.iters}")
        for what, value, minimum in (("warm-up iterations", self.warmup, 0), ("timed iterations", self.iters, 1)):
            problem = count_problem(value, MAX_BENCH_ITERATIONS, minimum)  # a sample buffer of `iters` floats
            if problem is not None:
                raise InputError(f"{what}: {problem}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) <= 0):
            raise InputError(f"size must be a positive (height, width), got {self.size}")


@dataclass
class BenchmarkResult:
    model: str
    backend: str
    precision: str
    device: str
    input_shape: tuple[int, ...]
    size: tuple[int, int]  # (height, width)
    batch: int
    warmup: int
    iters: int
    input_on_device: bool
    method: str  # how the input was fed and the iteration synchronised, in words
    latency: dict[str, Any]  # summarize_latency: mean/p50/p90/p99 ms per batch, fps (batches/s), count
    host: dict[str, Any] = field(default_factory=dict)
    samples_ms: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)  # per timed iteration
    # Speed against the machine's limit (add_peak_fraction): model GOP per image, the achieved rate at
    # the mean latency, its unit (GFLOP/s, or GOP/s for INT8), the matching GEMM peak and the fraction.
    roofline: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float | None:
        """Images per second (batch / mean latency); at batch 1 the paper's FPS."""
        mean = self.latency.get("mean_ms")
        return self.batch * 1000.0 / mean if mean else None

    def paper_comparison(self) -> dict[str, Any]:
        comparison = compare_with_paper(self.fps, device=self.device, input_size=self.size,
                                        precision=self.precision)
        if self.batch != PAPER_BATCH:  # throughput at batch N is not the paper's latency-bound FPS
            comparison["same_setting"] = False
            comparison["differences"].append(f"batch {self.batch} (paper: {PAPER_BATCH})")
            comparison["note"] += f"; batch {self.batch} (paper: {PAPER_BATCH})"
        return comparison

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "backend": self.backend, "precision": self.precision, "device": self.device,
            "host": self.host,
            "protocol": {"input_shape": list(self.input_shape), "batch": self.batch, "warmup": self.warmup,
                         "iters": self.iters, "input": "random", "input_on_device": self.input_on_device,
                         "method": self.method},
            "latency_ms": {k: v for k, v in self.latency.items() if k != "fps"},
            "fps": self.fps,
            "paper": self.paper_comparison(),
            **({"roofline": self.roofline} if self.roofline else {}),
        }

    def row(self) -> str:
        lat = self.latency
        shape = "x".join(str(d) for d in self.input_shape)
        roof = self.roofline
        limit = f"{roof['achieved']:9.1f} {roof['unit']:<7} {100.0 * roof['fraction_of_peak']:6.1f}%" if roof else \
            f"{'-':>9} {'':<7} {'-':>7}"
        return (f"{self.backend:<11} {self.precision:<5} {shape:<16} {lat['mean_ms']:9.2f} {lat['p50_ms']:9.2f} "
                f"{lat['p90_ms']:9.2f} {lat['p99_ms']:9.2f} {self.fps:9.1f} {limit}")


TABLE_HEADER = (f"{'backend':<11} {'prec':<5} {'input':<16} {'mean ms':>9} {'p50 ms':>9} {'p90 ms':>9} "
                f"{'p99 ms':>9} {'FPS':>9} {'achieved':>9} {'unit':<7} {'of peak':>7}")


def host_description() -> dict[str, Any]:
    """The machine: CPU model and the threads this process may use; GPU name when torch sees CUDA."""
    host: dict[str, Any] = {"cpu": cpu_name(), "cpu_threads": cpu_threads()}
    with contextlib.suppress(Exception):  # naming is best effort
        import torch

        host["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            host["gpu"] = torch.cuda.get_device_name(torch.cuda.current_device())
    return host


def _input_layout(runner: Any) -> tuple[bool, np.dtype]:
    nhwc = bool(runner.info.preprocess_in_graph)
    return nhwc, np.dtype(np.uint8) if nhwc else np.dtype(np.float32)


def resolve_size(runner: Any, size: tuple[int, int] | None) -> tuple[int, int]:
    """None -> the paper's 512x1024, or a static export's own size (said, not silently)."""
    info = runner.info
    if size is not None:
        return (int(size[0]), int(size[1]))
    size = PAPER_INPUT_SIZE if info.dynamic else info.input_size
    if size != PAPER_INPUT_SIZE:
        logger.info("%s was exported at a fixed %dx%d: benchmarking at that size (the paper's protocol is "
                    "%dx%d; export with --dynamic to run it)", runner.name, *size, *PAPER_INPUT_SIZE)
    return size


def distinct(items: Iterable[H]) -> list[H]:
    """Each item once, in the order first given: a size or a batch asked for twice is timed (and reported) once."""
    return list(dict.fromkeys(items))


def check_pixels(sizes: Iterable[tuple[int, int] | None], batches: Iterable[int]) -> None:
    """Every (size, batch) within lrnnet.limits (InputError otherwise), before any model is loaded or input
    allocated. A size of None is the paper's 512x1024 (a static export's own size is checked again once known)."""
    batches = distinct(batches)
    for size in distinct(sizes):
        height, width = size or PAPER_INPUT_SIZE
        for batch in batches:
            problem = pixels_problem(batch, height, width)
            if problem is not None:
                raise InputError(f"input {problem}: use a smaller --batch or size")


def check_shape(runner: Any, size: tuple[int, int], batch: int) -> tuple[int, ...]:
    """The input shape for (size, batch), or InputError when this model cannot take it."""
    info = runner.info
    height, width = size
    check_pixels([size], [batch])
    if not info.dynamic and (height, width) != info.input_size:
        raise InputError(f"{runner.name} has a static input of {info.input_height}x{info.input_width}, so it "
                         f"cannot run at {height}x{width}: re-export it with lrnnet-export --dynamic, or "
                         "benchmark the .pth checkpoint (PyTorch runs any size)")
    if height % info.stride or width % info.stride:
        raise InputError(f"input {height}x{width}: height and width must be multiples of the model's stride "
                         f"{info.stride}")
    fixed = getattr(runner, "fixed_batch", None)
    if fixed is not None and batch != fixed:
        raise InputError(f"{runner.name} has a fixed batch of {fixed}, so it cannot run batch {batch}: re-export "
                         "it with lrnnet-export --dynamic, or benchmark the .pth checkpoint")
    nhwc, _ = _input_layout(runner)
    return (batch, height, width, 3) if nhwc else (batch, 3, height, width)


def _random_input(shape: tuple[int, ...], dtype: np.dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)


@contextlib.contextmanager
def _torch_step(runner: Any, shape: tuple[int, ...], options: BenchmarkOptions
                ) -> Iterator[tuple[Step, Step, bool, str]]:
    import torch

    module = runner.model
    device = next(module.parameters()).device
    on_cuda = device.type == "cuda"
    if options.cuda_graph and not on_cuda:
        raise InputError("--cuda-graph needs the torch backend on a CUDA device")
    generator = torch.Generator(device=device).manual_seed(options.seed)
    x = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    fp16 = runner.precision == "fp16"

    def autocast() -> contextlib.AbstractContextManager[Any]:
        return torch.autocast("cuda", dtype=torch.float16) if fp16 else contextlib.nullcontext()

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize(device)

    with torch.inference_mode():
        if not options.cuda_graph:
            def step() -> Any:
                with autocast():
                    return module(x)
            method = "torch tensor on " + ("CUDA" if on_cuda else "CPU") + (", FP16 autocast" if fp16 else "")
            yield step, sync, True, method
            return
        # Warm up on a side stream before capture (cuDNN autotuning and allocations must not be captured).
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), autocast():
            for _ in range(3):
                module(x)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), autocast():
            module(x)
        yield graph.replay, sync, True, "CUDA graph replay, input on CUDA" + (", FP16 autocast" if fp16 else "")


_ORT_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


@contextlib.contextmanager
def _onnxruntime_step(runner: Any, shape: tuple[int, ...], options: BenchmarkOptions
                      ) -> Iterator[tuple[Step, Step, bool, str]]:
    # The benchmark feeds the session directly so that the input can stay on the device.
    session = runner.session
    graph_input, graph_output = session.get_inputs()[0], session.get_outputs()[0]
    dtype = np.dtype(_ORT_NUMPY.get(graph_input.type, np.float32))
    host = _random_input(shape, dtype, options.seed)
    cuda_index = runner.cuda_index
    if cuda_index is None:
        feed = {graph_input.name: host}
        names = [graph_output.name]
        yield (lambda: session.run(names, feed)), (lambda: None), True, "preallocated numpy input, CPU provider"
        return
    import onnxruntime as ort

    device_input = ort.OrtValue.ortvalue_from_numpy(host, "cuda", cuda_index)
    binding = session.io_binding()
    binding.bind_ortvalue_input(graph_input.name, device_input)
    binding.bind_output(graph_output.name, "cuda", cuda_index)
    session.run_with_iobinding(binding)  # let ORT allocate the output on the device once, then reuse it
    binding.bind_ortvalue_output(graph_output.name, binding.get_outputs()[0])
    yield (lambda: session.run_with_iobinding(binding)), binding.synchronize_outputs, True, \
        "I/O binding, input and output in CUDA memory"


@contextlib.contextmanager
def _generic_step(runner: Any, shape: tuple[int, ...], options: BenchmarkOptions
                  ) -> Iterator[tuple[Step, Step, bool, str]]:
    _, dtype = _input_layout(runner)
    device_step = getattr(runner, "device_step", None)
    if callable(device_step):
        step, sync = device_step(shape, dtype)
        yield step, sync, True, f"{runner.backend} device_step, input on the device"
        return
    host = _random_input(shape, dtype, options.seed)
    # runner.infer returns host arrays, so the device has finished when it returns.
    yield (lambda: runner.infer(host)), (lambda: None), False, "runner.infer on a host array (copies included)"


_STEPS = {"torch": _torch_step, "onnxruntime": _onnxruntime_step}


def benchmark(runner: Any, options: BenchmarkOptions = BenchmarkOptions(), model_name: str | None = None
              ) -> BenchmarkResult:
    """Time `runner`'s model by the paper's protocol at one (size, batch)."""
    shape = check_shape(runner, resolve_size(runner, options.size), options.batch)
    if options.cuda_graph and runner.backend != "torch":
        raise InputError(f"--cuda-graph is for the torch backend; {runner.backend} was asked for")
    make_step = _STEPS.get(runner.backend, _generic_step)
    nhwc, _ = _input_layout(runner)
    samples = np.empty(options.iters, dtype=np.float64)
    desc = f"Benchmarking {runner.backend} {runner.precision} {'x'.join(map(str, shape))}"
    with make_step(runner, shape, options) as (step, sync, on_device, method):
        for _ in progress(range(options.warmup), desc=desc + " (warm-up)", total=options.warmup):
            step()
        sync()
        for i in progress(range(options.iters), desc=desc, total=options.iters):
            start = time.perf_counter()
            step()
            sync()
            samples[i] = (time.perf_counter() - start) * 1000.0
    result = BenchmarkResult(
        model=str(model_name or getattr(runner, "name", "model")), backend=runner.backend, precision=runner.precision,
        device=runner.device, input_shape=shape, size=(shape[1], shape[2]) if nhwc else (shape[2], shape[3]),
        batch=options.batch, warmup=options.warmup, iters=options.iters,
        input_on_device=on_device, method=("NHWC uint8 " if nhwc else "") + method,
        latency=summarize_latency(samples), host=host_description(), samples_ms=samples)
    logger.debug("%s", result.row())
    return result


def sweep(runner: Any, sizes: Sequence[tuple[int, int] | None], batches: Sequence[int],
          options: BenchmarkOptions = BenchmarkOptions(), model_name: str | None = None) -> list[BenchmarkResult]:
    """Every (size, batch); every combination is checked before any is timed, so a static model fails at once."""
    combos = [(size, batch) for size in distinct(resolve_size(runner, size) for size in sizes)
              for batch in distinct(batches)]
    for size, batch in combos:
        check_shape(runner, size, batch)
    return [benchmark(runner, BenchmarkOptions(size=size, batch=batch, warmup=options.warmup, iters=options.iters,
                                               cuda_graph=options.cuda_graph, seed=options.seed), model_name)
            for size, batch in combos]


def runs_on_cpu(runner: Any) -> bool:
    """Whether the runner computes on this machine's CPU (so its speed is held against the CPU's GEMM peak)."""
    if runner.backend == "onnxruntime":
        return getattr(runner, "cuda_index", None) is None
    if runner.backend == "torch":
        return next(runner.model.parameters()).device.type == "cpu"
    return False


def runner_threads(runner: Any) -> int | None:
    """The intra-op threads the runner computes with (what the GEMM peaks must be measured with)."""
    if runner.backend == "onnxruntime":
        return getattr(runner, "threads", None) or getattr(runner, "_threads", None)
    if runner.backend == "torch":
        import torch

        return int(torch.get_num_threads())
    return None


def _model_ops(runner: Any, model_path: Any, input_shape: tuple[int, ...]) -> Any:
    """Operations per inference of what the runner runs, at ``input_shape`` (None when they cannot be counted)."""
    from lrnnet.runtime.peak import ModelOps, model_ops

    model_path = model_path or getattr(runner, "name", "")  # an ONNX runner is named by its file
    try:
        if runner.backend == "torch":
            import torch
            from torch.utils.flop_counter import FlopCounterMode

            module = runner.model
            with FlopCounterMode(display=False) as counter, torch.inference_mode():
                module(torch.zeros(input_shape, device=next(module.parameters()).device))
            per_image = counter.get_total_flops() // input_shape[0]
            return ModelOps(ops=per_image, input_shape=(1, *input_shape[1:]), by_op={})
        if str(model_path).endswith(".onnx"):
            ops = model_ops(model_path, (1, *input_shape[1:]))
            return ops
    except Exception as exc:  # noqa: BLE001 - a count is an extra column, never a reason to lose the timing
        logger.info("could not count the operations of %s (%s: %s); no fraction of peak", model_path,
                    type(exc).__name__, exc)
    return None


def add_peak_fraction(results: Sequence[BenchmarkResult], runner: Any, model_path: Any, peaks: Any) -> None:
    """Fill each CPU result's ``roofline``: achieved GFLOP/s (GOP/s for INT8) and its fraction of ``peaks``.

    ``model_path``: the .onnx the runner runs (None: the runner's name); a torch runner is counted
    on its module.
    ``peaks``: lrnnet.runtime.peak.GemmPeaks measured in the same run with the runner's threads.
    GPU results are left without (a CPU GEMM peak says nothing about them).
    """
    from lrnnet.runtime.peak import peak_columns

    if peaks is None or not runs_on_cpu(runner):
        return
    counted: dict[tuple[int, ...], Any] = {}
    for result in results:
        shape = (1, *result.input_shape[1:])
        if shape not in counted:
            counted[shape] = _model_ops(runner, model_path, shape)
        result.roofline = peak_columns(counted[shape], peaks, result.precision, result.batch,
                                       result.latency["mean_ms"])
