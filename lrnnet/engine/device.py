"""What this machine offers an engine: the TensorRT version and the CUDA GPU (name, compute capability).

Never raises: absence is an answer (None), so ``--backend auto`` and the sidecar check can say what
is missing. The GPU is asked through cuda-python (installed with lrnnet[tensorrt]) and, failing
that, through torch when it was built with CUDA.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    name: str
    capability: str  # "major.minor", e.g. "8.9"
    index: int = 0


def tensorrt_version() -> str | None:
    """The installed TensorRT's version ("10.13.0.35"), or None when it does not import."""
    try:
        trt = importlib.import_module("tensorrt")
    except Exception:  # noqa: BLE001 - a broken install (missing CUDA libraries) counts as absent
        return None
    if not is_real_tensorrt(trt):
        return None
    return str(getattr(trt, "__version__", "unknown"))


def is_real_tensorrt(module: object) -> bool:
    """tensorrt-stubs alone makes ``import tensorrt`` succeed (a namespace package of .pyi files)."""
    return hasattr(module, "Builder")


def current_gpu(index: int = 0) -> GpuInfo | None:
    """The CUDA GPU `index`, or None when there is none (or no way to ask)."""
    return _gpu_from_cuda_python(index) or _gpu_from_torch(index)


def _gpu_from_cuda_python(index: int) -> GpuInfo | None:
    for module in ("cuda.bindings.runtime", "cuda.cudart"):  # cuda-python >= 12.6 layout, then the older one
        try:
            cudart = importlib.import_module(module)
            err, count = cudart.cudaGetDeviceCount()
            if int(err) != 0 or index >= count:
                return None
            err, props = cudart.cudaGetDeviceProperties(index)
            if int(err) != 0:
                return None
            name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) \
                else str(props.name)
            return GpuInfo(name=name, capability=f"{props.major}.{props.minor}", index=index)
        except Exception:  # noqa: BLE001, S112 - not installed, no driver: try the next way
            continue
    return None


def _gpu_from_torch(index: int) -> GpuInfo | None:
    try:
        import torch

        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            return None
        major, minor = torch.cuda.get_device_capability(index)
        return GpuInfo(name=str(torch.cuda.get_device_name(index)), capability=f"{major}.{minor}", index=index)
    except Exception:  # noqa: BLE001 - naming is best effort
        return None
