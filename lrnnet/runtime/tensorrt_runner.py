"""TensorRT backend: a serialized engine built by lrnnet-build-engine, run with the name-based API.

TensorRT 10.x and 11.x: `set_input_shape`, `set_tensor_address`, `execute_async_v3` on one CUDA
stream (the binding-index API is gone in both). The engine's sidecar is checked before the engine
is deserialised, so an engine from another TensorRT or GPU fails with one line naming both sides.

Memory: every I/O tensor gets one device buffer and one pinned host buffer, allocated once at the
largest shape of the engine's profile; a call is then a pinned host->device copy, the engine, a
device->host copy and one stream synchronisation. Optionally the engine's launch is captured in a
CUDA graph (per input shape) and replayed, which removes the per-kernel launch cost.

Device memory goes through cuda-python's runtime bindings (`cuda.bindings.runtime`), not torch
CUDA tensors: cuda-python is what the `lrnnet[tensorrt]` extra installs (NVIDIA's own binding,
the one TensorRT's samples use), while the torch on a deployment machine is often a CPU build.
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrnnet._lazy import lazy_import
from lrnnet.errors import InputError, MissingDependencyError
from lrnnet.log import logger
from lrnnet.runtime._device import parse_cuda_index
from lrnnet.runtime.runner import Runner

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["TensorRTRunner", "import_cudart", "import_tensorrt"]


def import_tensorrt() -> Any:
    """The real TensorRT module, or MissingDependencyError (type stubs alone import as a namespace package)."""
    from lrnnet.engine.device import is_real_tensorrt

    module = lazy_import("tensorrt", purpose="the TensorRT backend")
    if not is_real_tensorrt(module):
        raise MissingDependencyError("'tensorrt' here is only type stubs (tensorrt-stubs), not TensorRT; "
                                     "install it with: pip install 'lrnnet[tensorrt]'")
    return module


def import_cudart() -> Any:
    """cuda-python's runtime API: `cuda.bindings.runtime` (cuda-python >= 12.6) or the older `cuda.cudart`."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return lazy_import("cuda.bindings", purpose="TensorRT device memory")  # raises with the install hint


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    """TensorRT Dims -> a tuple of ints (-1 for a dynamic axis)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


class _Cuda:
    """The few CUDA runtime calls the runner needs, each checked: cuda-python returns (error, *results)."""

    def __init__(self) -> None:
        self.rt = import_cudart()

    def __call__(self, what: str, result: Any) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            _, text = self.rt.cudaGetErrorString(err)
            raise RuntimeError(f"CUDA {what} failed: {text.decode() if isinstance(text, bytes) else text}")
        return values[0] if len(values) == 1 else (tuple(values) if values else None)


class _IOBuffer:
    """One I/O tensor: a device buffer and a pinned host buffer of `capacity` bytes."""

    def __init__(self, cuda: _Cuda, name: str, dtype: np.dtype, capacity: int) -> None:
        self.name, self.dtype, self.nbytes = name, dtype, max(capacity, dtype.itemsize)
        self._cuda = cuda
        self.host_ptr = cuda("cudaMallocHost", cuda.rt.cudaMallocHost(self.nbytes))
        self.device_ptr = cuda("cudaMalloc", cuda.rt.cudaMalloc(self.nbytes))
        raw = ctypes.cast(self.host_ptr, ctypes.POINTER(ctypes.c_uint8))
        self._host = np.ctypeslib.as_array(raw, (self.nbytes,))

    def host(self, shape: tuple[int, ...]) -> np.ndarray:
        """A view of the pinned buffer as an array of `shape`."""
        count = int(np.prod(shape))
        return self._host[: count * self.dtype.itemsize].view(self.dtype).reshape(shape)

    def free(self) -> None:
        rt = self._cuda.rt
        if self.device_ptr:
            rt.cudaFree(self.device_ptr)
            self.device_ptr = 0
        if self.host_ptr:
            rt.cudaFreeHost(self.host_ptr)
            self.host_ptr = 0


class TensorRTRunner(Runner):
    """A serialized TensorRT engine with its `<engine>.json` sidecar (written by lrnnet-build-engine).

    `device`: None or "cuda[:N]". `cuda_graph`: capture the engine launch in a CUDA graph per input
    shape and replay it (falls back to plain launches, with a warning, if the engine cannot be captured).
    """

    backend = "tensorrt"

    def __init__(self, path: str | Path, device: str | None = None, cuda_graph: bool = False) -> None:
        from lrnnet.engine.device import current_gpu, tensorrt_version
        from lrnnet.engine.sidecar import check_sidecar_compatible, read_sidecar

        path = Path(path)
        self._ready = False  # close() before the end of __init__ must free only what exists
        sidecar = read_sidecar(path)
        if sidecar.backend != "tensorrt":
            raise InputError(f"{path} is a {sidecar.backend} engine per its sidecar, not a TensorRT engine")
        if device == "cpu":
            raise InputError(f"{path} is a TensorRT engine, which runs on a CUDA GPU only (--device cuda[:N]); "
                             "on a CPU, run the ONNX it was built from")
        index = parse_cuda_index(device or "cuda")
        trt_mod = import_tensorrt()
        gpu = current_gpu(index)
        check_sidecar_compatible(sidecar, tensorrt_version(), gpu.name if gpu else None,
                                 gpu.capability if gpu else None)
        assert gpu is not None  # check_sidecar_compatible refuses a machine without a GPU
        info = sidecar.info
        super().__init__(info, f"{gpu.name} (TensorRT {trt_mod.__version__}"
                               f"{', CUDA graph' if cuda_graph else ''})", sidecar.precision, name=str(path))

        self._cuda = _Cuda()
        self._cuda("cudaSetDevice", self._cuda.rt.cudaSetDevice(index))
        self._logger = trt_mod.Logger(trt_mod.Logger.WARNING)
        self._runtime: trt.Runtime = trt_mod.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise InputError(f"TensorRT {trt_mod.__version__} cannot deserialise {path} (corrupt, or built by "
                             "another TensorRT); rebuild it with lrnnet-build-engine")
        self._engine: trt.ICudaEngine = engine
        self._context: trt.IExecutionContext = engine.create_execution_context()
        self._stream = self._cuda("cudaStreamCreate", self._cuda.rt.cudaStreamCreate())
        self._stream_handle = int(self._stream)  # TensorRT takes the raw cudaStream_t as an int
        self._buffers: dict[str, _IOBuffer] = {}
        self._graph: Any = None
        self._graph_exec: Any = None
        self._use_graph = cuda_graph
        self._shape: tuple[int, ...] | None = None
        self._out_shape: tuple[int, ...] = ()
        self._ready = True
        self._setup_io(trt_mod)

    def _setup_io(self, trt_mod: Any) -> None:
        engine, context = self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt_mod.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt_mod.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise InputError(f"{self.name}: expected one input and one output, got {inputs} and {outputs}")
        self._input, self._output = inputs[0], outputs[0]
        shape = _dims(engine.get_tensor_shape(self._input))
        if -1 in shape:
            largest = _dims(engine.get_tensor_profile_shape(self._input, 0)[2])
        else:
            largest = shape
        self.fixed_batch = shape[0] if shape[0] != -1 else None
        self._check_shape_against_info(shape)
        in_dtype = np.dtype(trt_mod.nptype(engine.get_tensor_dtype(self._input)))
        out_dtype = np.dtype(trt_mod.nptype(engine.get_tensor_dtype(self._output)))
        if not context.set_input_shape(self._input, largest):
            raise InputError(f"{self.name}: TensorRT refused the input shape {largest}")
        out_largest = _dims(context.get_tensor_shape(self._output))
        self._check_io_against_info(in_dtype, out_dtype, out_largest)
        self._buffers[self._input] = _IOBuffer(self._cuda, self._input, in_dtype, int(np.prod(largest)) * in_dtype.itemsize)
        self._buffers[self._output] = _IOBuffer(self._cuda, self._output, out_dtype,
                                                int(np.prod(out_largest)) * out_dtype.itemsize)
        for name, buffer in self._buffers.items():  # addresses never change: set once
            if not context.set_tensor_address(name, buffer.device_ptr):
                raise RuntimeError(f"TensorRT refused the address of {name}")
        logger.debug("TensorRT I/O: %s %s %s -> %s %s %s", self._input, largest, in_dtype, self._output,
                     out_largest, out_dtype)

    def _check_io_against_info(self, in_dtype: np.dtype, out_dtype: np.dtype, out_shape: tuple[int, ...]) -> None:
        """As the ONNX Runtime runner: input dtype vs layout, labels vs logits, classes (the metadata is the engine's)."""
        info = self.info
        if (in_dtype == np.uint8) != info.preprocess_in_graph:
            raise InputError(f"{self.name}: input type {in_dtype} does not match the sidecar's layout '{info.input_layout}'")
        if info.argmax_in_graph:
            if out_dtype.kind not in "iu" or len(out_shape) != 3:
                raise InputError(f"{self.name}: the sidecar says the engine outputs class labels but it outputs "
                                 f"{out_dtype} of shape {out_shape}; rebuild it with lrnnet-build-engine")
        elif out_dtype.kind != "f" or len(out_shape) != 4 or out_shape[1] != info.num_classes:
            raise InputError(f"{self.name}: the sidecar says the engine outputs {info.num_classes}-class logits but it "
                             f"outputs {out_dtype} of shape {out_shape}; rebuild it with lrnnet-build-engine")

    def _check_shape_against_info(self, shape: tuple[int, ...]) -> None:
        info = self.info
        spatial = shape[1:3] if info.preprocess_in_graph else shape[2:4]
        if len(shape) != 4:
            raise InputError(f"{self.name}: input shape {shape} is not an image batch")
        if not info.dynamic and -1 not in spatial and tuple(spatial) != info.input_size:
            raise InputError(f"{self.name}: the engine takes {spatial[0]}x{spatial[1]} but its sidecar says "
                             f"{info.input_height}x{info.input_width}")

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        rt, cuda = self._cuda.rt, self._cuda
        inp, out = self._buffers[self._input], self._buffers[self._output]
        batch = batch.astype(inp.dtype, copy=False)
        if batch.shape != self._shape:
            if not self._context.set_input_shape(self._input, batch.shape):
                raise InputError(f"{self.name}: input shape {batch.shape} is outside the engine's profile")
            self._out_shape = _dims(self._context.get_tensor_shape(self._output))
            self._shape = batch.shape
            self._release_graph()
        np.copyto(inp.host(batch.shape), batch)
        h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda("cudaMemcpyAsync", rt.cudaMemcpyAsync(inp.device_ptr, inp.host_ptr, batch.nbytes, h2d, self._stream))
        self._launch()
        out_bytes = int(np.prod(self._out_shape)) * out.dtype.itemsize
        cuda("cudaMemcpyAsync", rt.cudaMemcpyAsync(out.host_ptr, out.device_ptr, out_bytes, d2h, self._stream))
        cuda("cudaStreamSynchronize", rt.cudaStreamSynchronize(self._stream))
        result = out.host(self._out_shape)
        if result.dtype == np.float16:
            return result.astype(np.float32)
        if result.dtype.kind in "iu":
            return result.astype(np.int32)
        return result.copy()  # the pinned buffer is reused by the next call

    def device_step(self, shape: tuple[int, ...], dtype: Any) -> tuple[Callable[[], None], Callable[[], None]]:
        """(step, sync) for the model-only benchmark: random input copied to the device once, then each
        step is only the engine launch (or graph replay) and sync waits for the stream."""
        self._check_open()
        rt, cuda = self._cuda.rt, self._cuda
        inp = self._buffers[self._input]
        probe = np.zeros(shape, dtype=inp.dtype)
        self._infer_impl(self.check_batch(probe.astype(dtype)))  # sets the shape, captures the graph if asked
        host = inp.host(tuple(shape))
        host[...] = np.random.default_rng(0).standard_normal(shape).astype(inp.dtype) \
            if inp.dtype.kind == "f" else np.random.default_rng(0).integers(0, 256, shape).astype(inp.dtype)
        cuda("cudaMemcpy", rt.cudaMemcpy(inp.device_ptr, inp.host_ptr, host.nbytes,
                                         rt.cudaMemcpyKind.cudaMemcpyHostToDevice))

        def sync() -> None:
            cuda("cudaStreamSynchronize", rt.cudaStreamSynchronize(self._stream))

        return self._launch, sync

    def _launch(self) -> None:
        if self._use_graph and self._graph_exec is None:
            self._capture()
        if self._graph_exec is not None:
            self._cuda("cudaGraphLaunch", self._cuda.rt.cudaGraphLaunch(self._graph_exec, self._stream))
        elif not self._context.execute_async_v3(self._stream_handle):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.name}")

    def _capture(self) -> None:
        """Capture one launch in a CUDA graph; TensorRT wants one plain launch first (deferred shape work)."""
        rt, cuda = self._cuda.rt, self._cuda
        if not self._context.execute_async_v3(self._stream_handle):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.name}")
        cuda("cudaStreamSynchronize", rt.cudaStreamSynchronize(self._stream))
        cuda("cudaStreamBeginCapture", rt.cudaStreamBeginCapture(
            self._stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
        try:
            launched = self._context.execute_async_v3(self._stream_handle)
        finally:  # whatever happened, the stream must leave capture mode
            err, graph = rt.cudaStreamEndCapture(self._stream)
        try:
            cuda("cudaStreamEndCapture", (err, graph))
            self._graph = graph
            if not launched:
                raise RuntimeError("execute_async_v3 failed during capture")
            self._graph_exec = cuda("cudaGraphInstantiate", rt.cudaGraphInstantiate(self._graph, 0))
        except RuntimeError as exc:
            logger.warning("CUDA graph capture failed for %s (%s): running without it", self.name, exc)
            self._release_graph()
            self._use_graph = False

    def _release_graph(self) -> None:
        rt = self._cuda.rt
        if self._graph_exec is not None:
            rt.cudaGraphExecDestroy(self._graph_exec)
            self._graph_exec = None
        if self._graph is not None:
            rt.cudaGraphDestroy(self._graph)
            self._graph = None

    def _close_impl(self) -> None:
        if not getattr(self, "_ready", False):
            return
        self._release_graph()
        for buffer in self._buffers.values():
            buffer.free()
        self._buffers.clear()
        self._cuda.rt.cudaStreamDestroy(self._stream)
        # Context before engine before runtime: each holds resources of the next.
        del self._context
        del self._engine
        del self._runtime
