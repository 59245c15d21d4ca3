"""ONNX Runtime backend: CPU here; CUDA and TensorRT execution providers with onnxruntime-gpu.

On a GPU provider the input and output live in device buffers allocated once and bound with
I/O binding, so each call is one host->device copy, the run, and one device->host copy (ONNX
Runtime would otherwise allocate the output on every run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lrnnet._lazy import lazy_import
from lrnnet._threads import announce_threads, count_text, thread_plan
from lrnnet.calib.recipes import ONNXRUNTIME_CPU_INT8_DISABLED_OPTIMIZERS
from lrnnet.errors import InputError, MissingDependencyError
from lrnnet.export.metadata import ModelInfo, read_model_info
from lrnnet.log import logger
from lrnnet.runtime._device import cpu_name, parse_cuda_index, torch_cuda_name
from lrnnet.runtime.runner import Runner

__all__ = ["OnnxRuntimeRunner", "providers_for"]

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
_GPU_HINT = "pip install 'lrnnet[gpu]' (onnxruntime-gpu) on a machine with an NVIDIA GPU"

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def providers_for(device: str | None, available: list[str]) -> tuple[list[Any], int | None]:
    """Execution providers for a device request, and the CUDA device index (None on CPU).

    None: CUDA when onnxruntime-gpu has it, else CPU. The TensorRT EP is only used when asked for
    ("tensorrt" or "tensorrt:N"): its first run builds an engine, which takes minutes.
    """
    if device is None:
        device = "cuda" if CUDA_EP in available else "cpu"
    if device == "cpu":
        return [CPU_EP], None
    use_trt = device.startswith("tensorrt")
    index = parse_cuda_index("cuda" + device[len("tensorrt"):] if use_trt else device)
    needed = [TRT_EP, CUDA_EP] if use_trt else [CUDA_EP]
    missing = [ep for ep in needed if ep not in available]
    if missing:
        raise MissingDependencyError(f"ONNX Runtime has no {', '.join(missing)} here (available: "
                                     f"{', '.join(available)}); install it with: {_GPU_HINT}")
    options = {"device_id": index}
    providers: list[Any] = [(ep, dict(options)) for ep in needed]
    return providers + [CPU_EP], index


def check_graph_against_info(path: str | Path, info: ModelInfo, graph_input: Any, graph_output: Any) -> None:
    """The graph's declared I/O (ONNX Runtime's NodeArgs) must match its metadata, or the metadata belongs
    to another model: InputError. The one check, run by this runner and by lrnnet-build-engine before it
    builds (lrnnet.engine.onnxruntime_builder.check_runs_on_onnxruntime)."""
    input_type = _ORT_TYPES.get(graph_input.type)
    shape = list(graph_input.shape)
    expected_type = np.uint8 if info.preprocess_in_graph else np.float32
    if input_type is None or (input_type != expected_type and
                              not (expected_type == np.float32 and input_type == np.float16)):
        raise InputError(f"{path}: input type {graph_input.type} does not match the metadata layout "
                         f"'{info.input_layout}'")
    channel_axis, spatial = (3, shape[1:3]) if info.preprocess_in_graph else (1, shape[2:4])
    if len(shape) != 4 or (isinstance(shape[channel_axis], int) and shape[channel_axis] != 3):
        raise InputError(f"{path}: input shape {shape} is not an image batch ({info.input_layout})")
    if not info.dynamic and all(isinstance(d, int) for d in spatial) and tuple(spatial) != info.input_size:
        raise InputError(f"{path}: the graph takes {spatial[0]}x{spatial[1]} but its metadata says "
                         f"{info.input_height}x{info.input_width}")
    out = list(graph_output.shape)
    out_type = _ORT_TYPES.get(graph_output.type)
    if info.argmax_in_graph:  # labels: an integer N x H x W map
        if out_type not in (np.int32, np.int64) or len(out) != 3:
            raise InputError(f"{path}: the metadata says the graph outputs class labels (argmax in the graph) but "
                             f"it outputs {graph_output.type} of shape {out}; the metadata belongs to another model")
    else:  # logits: float N x classes x H x W
        if out_type not in (np.float32, np.float16) or len(out) != 4:
            raise InputError(f"{path}: the metadata says the graph outputs float logits N x {info.num_classes} x H x W "
                             f"but it outputs {graph_output.type} of shape {out}; the metadata belongs to another model")
        if isinstance(out[1], int) and out[1] != info.num_classes:
            raise InputError(f"{path}: the graph outputs {out[1]} classes but its metadata says {info.num_classes}")
    if not info.dynamic and len(out) >= 3 and all(isinstance(d, int) for d in out[-2:]) \
            and tuple(out[-2:]) != info.input_size:
        raise InputError(f"{path}: the graph outputs {out[-2]}x{out[-1]} maps for a "
                         f"{info.input_height}x{info.input_width} input; the metadata belongs to another model")


class OnnxRuntimeRunner(Runner):
    """An lrnnet ONNX export on ONNX Runtime.

    `device`: None (CUDA if available, else CPU), "cpu", "cuda[:N]", "tensorrt[:N]".
    `threads`: intra-op threads on CPU; default the thread plan's (lrnnet._threads: the CPUs this process may use). Inter-op threads
    stay 1: the graph is a chain, so parallel branches would only add contention.
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, device: str | None = None, threads: int | None = None,
                 info: ModelInfo | None = None) -> None:
        ort = lazy_import("onnxruntime", purpose="the onnxruntime backend")
        path = Path(path)
        info = info or read_model_info(path)
        providers, self._cuda_index = providers_for(device, ort.get_available_providers())

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        plan = thread_plan()
        self._threads = threads or plan.onnxruntime
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = plan.onnxruntime_interop
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if plan.onnxruntime_spinning else "0")
        options.log_severity_level = 3  # errors only: warnings about unused initialisers are noise here
        try:
            # INT8 on the CPU: without the optimisers that undo the recipe's float parts (lrnnet.calib.recipes).
            disabled = (list(ONNXRUNTIME_CPU_INT8_DISABLED_OPTIMIZERS)
                        if info.precision == "int8" and self._cuda_index is None else [])
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers,
                                                 disabled_optimizers=disabled)
        except Exception as exc:
            first = " ".join(str(exc).split())[:300]
            raise InputError(f"ONNX Runtime cannot load {path}: {first}") from exc
        active = self._session.get_providers()
        if self._cuda_index is not None and CUDA_EP not in active:
            raise MissingDependencyError(f"ONNX Runtime could not start CUDA for {path} (active: {active}); "
                                         f"check the CUDA/cuDNN libraries of onnxruntime-gpu: {_GPU_HINT}")

        provider = next(ep for ep in active if ep in (TRT_EP, CUDA_EP, CPU_EP))
        if self._cuda_index is None:
            device_name = f"{cpu_name()} (CPU, {count_text(self._threads)})"
            announce_threads()
        else:
            gpu = torch_cuda_name(self._cuda_index) or f"GPU {self._cuda_index}"
            device_name = f"{gpu} (ONNX Runtime {provider.replace('ExecutionProvider', '')} EP)"
        super().__init__(info, device_name, info.precision, name=str(path))

        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise InputError(f"{path}: expected one image input and a segmentation output, got "
                             f"{len(inputs)} inputs and {len(outputs)} outputs; is it an lrnnet export?")
        self._input, self._output = inputs[0], outputs[0]
        self._input_type = _ORT_TYPES.get(self._input.type)
        check_graph_against_info(path, self.info, self._input, self._output)
        batch = self._input.shape[0]
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
        self._binding: Any = None
        self._bound_shape: tuple[int, ...] | None = None

    @property
    def session(self) -> Any:
        """The onnxruntime.InferenceSession (for the benchmark, which feeds it device-resident inputs)."""
        return self._session

    @property
    def cuda_index(self) -> int | None:
        """The CUDA device of a GPU provider; None on the CPU."""
        return self._cuda_index

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        if self._input_type == np.float16:  # an FP16 graph without FP32 I/O: the runner contract stays float32
            batch = batch.astype(np.float16)
        if self._cuda_index is None:
            output = self._session.run([self._output.name], {self._input.name: batch})[0]
        else:
            output = self._run_bound(batch)
        if output.dtype == np.float16:
            output = output.astype(np.float32)
        elif output.dtype == np.int64:
            output = output.astype(np.int32)
        return output

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        """Run with device buffers allocated once per input shape (I/O binding)."""
        ort = lazy_import("onnxruntime")
        first_run = self._bound_shape != batch.shape
        if first_run:
            self._device_input = ort.OrtValue.ortvalue_from_shape_and_type(batch.shape, batch.dtype, "cuda",
                                                                           self._cuda_index)
            self._binding = self._session.io_binding()
            self._binding.bind_ortvalue_input(self._input.name, self._device_input)
            # The output's shape follows from the input's: let ONNX Runtime allocate it on the device
            # in the first run, then bind that buffer so later runs write into it.
            self._binding.bind_output(self._output.name, "cuda", self._cuda_index)
            self._bound_shape = batch.shape
        self._device_input.update_inplace(batch)
        self._session.run_with_iobinding(self._binding)
        if first_run:
            self._device_output = self._binding.get_outputs()[0]
            self._binding.bind_ortvalue_output(self._output.name, self._device_output)
            logger.debug("ONNX Runtime: bound device buffers for input %s", batch.shape)
        return self._device_output.numpy()

    def _close_impl(self) -> None:
        self._binding = None
        self._session = None
