"""Heavy optional imports (TensorRT, CUDA bindings) happen here, at first use, with an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from lrnnet.errors import MissingDependencyError

_INSTALL_HINTS = {
    "tensorrt": "pip install 'lrnnet[tensorrt]' (TensorRT 10.x or 11.x, needs an NVIDIA GPU and driver)",
    "cuda": "pip install 'lrnnet[tensorrt]' (installs cuda-python)",
    "cuda.bindings": "pip install 'lrnnet[tensorrt]' (installs cuda-python)",
    "ray": "pip install 'lrnnet[ray]' (Ray Data, for many sources in one job)",
    "ray.data": "pip install 'lrnnet[ray]' (Ray Data, for many sources in one job)",
}


def lazy_import(name: str, purpose: str = "") -> ModuleType:
    """Import `name` or fail with one line saying what to install."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = _INSTALL_HINTS.get(name, f"pip install {name.split('.')[0]}")
        need = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(f"'{name}' is not installed{need} ({exc}); install it with: {hint}") from exc

