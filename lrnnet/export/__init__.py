"""PyTorch -> ONNX export of LRNNet, graph checks, metadata and verification against PyTorch.

``from lrnnet.export import export_onnx, ExportOptions`` works, but loads the exporter (and torch)
only on first use: stages that only read metadata (``lrnnet.export.metadata``) stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from lrnnet.export.onnx import (
        ExportOptions,
        ExportReport,
        export_checkpoint,
        export_onnx,
        export_onnx_report,
    )

__all__ = ["ExportOptions", "ExportReport", "export_checkpoint", "export_onnx", "export_onnx_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lrnnet.export import onnx as exporter

        return getattr(exporter, name)
    raise AttributeError(f"module 'lrnnet.export' has no attribute {name!r}")
