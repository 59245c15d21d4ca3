"""PyTorch backend: a .pth checkpoint or an in-memory LRNNet, on CPU or CUDA.

On CUDA it runs under FP16 autocast by default, and optionally replays a captured CUDA graph
(fixed input shape; removes the per-layer launch overhead that dominates small inputs) or a
`torch.compile`d model. The reference that the exported backends are checked against.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from lrnnet._threads import announce_threads, count_text
from lrnnet.data.labels import CLASS_NAMES, PALETTE_RGB
from lrnnet.errors import InputError, MissingDependencyError
from lrnnet.export.metadata import ModelInfo
from lrnnet.runtime._device import cpu_name, parse_cuda_index
from lrnnet.runtime.runner import Runner

__all__ = ["DEFAULT_SIZE", "TorchRunner", "model_info_for"]

DEFAULT_SIZE = (512, 1024)  # Cityscapes at half resolution, as the paper runs it


def model_info_for(model: Any, size: tuple[int, int] = DEFAULT_SIZE, precision: str = "fp32") -> ModelInfo:
    """The ModelInfo of an in-memory LRNNet run at `size` (what an export of it at that size would record)."""
    config = dict(getattr(model, "config", {}) or {})
    num_classes = int(config.get("num_classes", getattr(model, "num_classes", len(CLASS_NAMES))))
    stride = int(getattr(model, "input_stride", 8))
    height, width = size
    if height <= 0 or width <= 0 or height % stride or width % stride:
        raise InputError(f"input size {height}x{width} must be positive multiples of the model's stride {stride}")
    if num_classes == len(CLASS_NAMES):
        names, palette = list(CLASS_NAMES), PALETTE_RGB.tolist()
    else:  # a model trained on another label set: generic names, distinct colours from a fixed seed
        names = [f"class_{i}" for i in range(num_classes)]
        palette = np.random.default_rng(0).integers(0, 256, size=(num_classes, 3)).tolist()
    return ModelInfo(input_height=height, input_width=width, stride=stride, num_classes=num_classes,
                     class_names=names, palette=palette, dynamic=True,
                     power_iterations=int(config.get("power_iterations", 0) or 0),
                     precision=precision, model_config=config)


class TorchRunner(Runner):
    """Run LRNNet in PyTorch.

    Give either `checkpoint` (a .pth path, loaded with `lrnnet.models.load_checkpoint`) or `model`
    (an nn.Module, e.g. during training). `info` defaults to the model's config at `size`
    (default 512x1024). `device`: None (the model's own device for `model`; CUDA if available for a
    checkpoint), "cpu", "cuda[:N]". `fp16`: autocast on CUDA (default on CUDA; not available on CPU).
    `cuda_graph`: capture one CUDA graph per input shape and replay it. `compile`: `torch.compile`.

    An in-memory model is switched to eval mode while the runner is open and back on close().
    """

    backend = "torch"

    def __init__(self, model: Any = None, info: ModelInfo | None = None, *, checkpoint: str | Path | None = None,
                 device: str | None = None, size: tuple[int, int] | None = None, fp16: bool | None = None,
                 cuda_graph: bool = False, compile: bool = False) -> None:
        import torch

        self._torch = torch
        if (model is None) == (checkpoint is None):
            raise ValueError("TorchRunner needs exactly one of model= or checkpoint=")
        if device is None:
            if model is not None:
                device = str(next(model.parameters()).device)
            else:
                device = "cuda" if torch.cuda.is_available() else "cpu"
        if device != "cpu":
            index = parse_cuda_index(device)
            if not torch.cuda.is_available():
                raise MissingDependencyError(f"device '{device}' asked for, but this PyTorch has no CUDA "
                                             "(install a CUDA build of torch, or use --device cpu)")
            device = f"cuda:{index}"
        self._device = torch.device(device)
        on_cuda = self._device.type == "cuda"
        if fp16 is None:
            fp16 = on_cuda
        if fp16 and not on_cuda:
            raise InputError("FP16 autocast needs CUDA; on the CPU run FP32: drop --fp16 (fp16=False from Python)")
        if cuda_graph and not on_cuda:
            raise InputError("CUDA graphs need a CUDA device")
        if cuda_graph and compile:
            raise InputError("choose one of cuda_graph and compile (torch.compile captures its own graphs)")
        self._fp16, self._use_graph = fp16, cuda_graph

        name = "in-memory model"
        if checkpoint is not None:
            from lrnnet.models import load_checkpoint

            name = str(checkpoint)
            model = load_checkpoint(checkpoint, map_location="cpu")
        self._module = model
        self._was_training = bool(model.training)
        model.eval()
        model.to(self._device)

        precision = "fp16" if fp16 else "fp32"
        if info is None:
            info = model_info_for(model, size or DEFAULT_SIZE, precision)
        else:
            if size is not None and tuple(size) != info.input_size:
                raise InputError(f"size {size} contradicts the given ModelInfo's {info.input_size}")
            model_classes = getattr(model, "num_classes", info.num_classes)
            if int(model_classes) != info.num_classes:
                raise InputError(f"the model has {model_classes} classes but its ModelInfo says {info.num_classes}")
        if info.preprocess_in_graph or info.argmax_in_graph:
            raise InputError("the torch backend runs the bare model (normalised float input, logits out); "
                             "its ModelInfo cannot have preprocessing or argmax in the graph")

        if on_cuda:
            gpu = torch.cuda.get_device_name(self._device)
            extras = [x for x, on in (("autocast FP16", fp16), ("CUDA graph", cuda_graph), ("compiled", compile)) if on]
            device_name = f"{gpu} (PyTorch CUDA{', ' + ', '.join(extras) if extras else ''})"
        else:
            announce_threads()
            device_name = f"{cpu_name()} (CPU, PyTorch {count_text(torch.get_num_threads())}" \
                          f"{', compiled' if compile else ''})"
        super().__init__(info, device_name, precision, name=name)
        self._forward = torch.compile(model) if compile else model
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}  # shape -> (graph, input, output)
        self._pinned: dict[tuple[int, ...], Any] = {}

    @property
    def model(self) -> Any:
        return self._module

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._fp16:
            return self._torch.autocast("cuda", dtype=self._torch.float16)
        return contextlib.nullcontext()

    def _to_device(self, batch: np.ndarray) -> Any:
        torch = self._torch
        host = torch.from_numpy(batch)
        if self._device.type != "cuda":
            return host
        # A pinned staging buffer per shape: copies from pageable memory are synchronous and slower.
        pinned = self._pinned.get(batch.shape)
        if pinned is None:
            pinned = self._pinned[batch.shape] = torch.empty(batch.shape, dtype=host.dtype).pin_memory()
        pinned.copy_(host)
        return pinned.to(self._device, non_blocking=True)

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            if self._use_graph:
                output = self._replay(batch)
            else:
                with self._autocast():
                    output = self._forward(self._to_device(batch))
            return output.float().cpu().numpy()

    def _replay(self, batch: np.ndarray) -> Any:
        """Replay the CUDA graph captured for this input shape (capturing it on first use)."""
        torch = self._torch
        entry = self._graphs.get(batch.shape)
        if entry is None:
            static_input = torch.empty(batch.shape, dtype=torch.float32, device=self._device)
            static_input.copy_(self._to_device(batch))
            # Warm up on a side stream first (cuDNN autotuning, lazy allocations must not be captured).
            side = torch.cuda.Stream(self._device)
            side.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(side), self._autocast():
                for _ in range(3):
                    self._forward(static_input)
            torch.cuda.current_stream(self._device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), self._autocast():
                static_output = self._forward(static_input)
            entry = self._graphs[batch.shape] = (graph, static_input, static_output)
        graph, static_input, static_output = entry
        static_input.copy_(self._to_device(batch), non_blocking=True)
        graph.replay()
        return static_output

    def _close_impl(self) -> None:
        self._graphs.clear()
        self._pinned.clear()
        if self._was_training:
            self._module.train()
