"""Open any model file at a chosen input size, so several models are evaluated at the same one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from lrnnet._io import check_input
from lrnnet.errors import InputError
from lrnnet.log import logger

__all__ = ["ChosenSize", "check_sizes", "common_size", "open_at_size"]


def _exported_size(path: Path, backend: str) -> tuple[int, int] | None:
    """The input size an exported model records (None for a .pth, which runs any size)."""
    from lrnnet.runtime.factory import resolve_backend

    chosen = resolve_backend(path, backend)
    if chosen != "onnxruntime" or path.suffix.lower() != ".onnx":
        return None
    from lrnnet.export.metadata import read_model_info

    info = read_model_info(path)
    return None if info.dynamic else info.input_size


def _static_size_message(path: Path, exported: tuple[int, int], size: tuple[int, int]) -> str:
    return (f"{path} was exported at a fixed {exported[0]}x{exported[1]}, so it cannot run at {size[0]}x{size[1]}: "
            f"re-export it with lrnnet-export --dynamic, or evaluate at its size (--size {exported[0]}x{exported[1]})")


def check_sizes(paths: Sequence[str | Path], size: tuple[int, int] | None, backend: str = "auto") -> None:
    """Before any model runs: every static export among `paths` must have `size` (None: nothing to check)."""
    if size is None:
        return
    for path in map(Path, paths):
        exported = _exported_size(path, backend) if path.is_file() else None
        if exported is not None and exported != tuple(size):
            raise InputError(_static_size_message(path, exported, (int(size[0]), int(size[1]))))


class ChosenSize(NamedTuple):
    size: tuple[int, int]  # (height, width)
    why: str  # where it comes from, for the command's output line


def common_size(paths: Sequence[str | Path], backend: str = "auto") -> ChosenSize | None:
    """Without --size: the size of the first static export among `paths`, so a .pth runs at it too; else
    the first .pth's export default (the size it was validated at, as lrnnet-export uses); else None
    (each dynamic export or engine at its own size)."""
    from lrnnet.runtime.factory import resolve_backend

    files = [Path(p) for p in paths if Path(p).is_file()]
    for path in files:
        size = _exported_size(path, backend)
        if size is not None:
            return ChosenSize(size, f"the fixed size of {path.name}")
    for path in files:
        if resolve_backend(path, backend) == "torch":
            return _checkpoint_default_size(path)
    return None


def _checkpoint_default_size(path: Path) -> ChosenSize:
    from lrnnet.export.onnx import default_export_size
    from lrnnet.models.checkpoint import checkpoint_sizes

    size = default_export_size(path)  # lrnnet-export's default, so eval scores what export ships
    if checkpoint_sizes(path).get("val_size") == size:
        return ChosenSize(size, f"the size {path.name} was validated at")
    return ChosenSize(size, f"{path.name} records no validation size")


def open_at_size(path: str | Path, size: tuple[int, int] | None = None, backend: str = "auto",
                 device: str | None = None, **options: Any) -> Any:
    """`open_runner`, with the model run at `size` (height, width) when given.

    A .pth runs any size; a dynamic ONNX runs at `size` (its metadata's size is replaced); a static
    ONNX or an engine must have been exported at `size` (InputError otherwise, saying what to do).
    """
    from lrnnet.runtime.factory import open_runner, resolve_backend

    path = check_input(path, "model file")
    chosen = resolve_backend(path, backend)
    if size is None:
        return open_runner(path, backend=backend, device=device, **options)
    if chosen == "torch":
        return open_runner(path, backend=backend, device=device, size=tuple(size), **options)
    if chosen == "onnxruntime":
        from lrnnet.export.metadata import read_model_info

        info = read_model_info(path)
        if tuple(size) != info.input_size:
            if not info.dynamic:
                raise InputError(_static_size_message(path, info.input_size, size))
            if size[0] % info.stride or size[1] % info.stride:
                raise InputError(f"size {size[0]}x{size[1]} must be multiples of the model's stride {info.stride}")
            logger.debug("%s: dynamic export, running at %dx%d", path, *size)
            info = replace(info, input_height=int(size[0]), input_width=int(size[1]))
        return open_runner(path, backend=backend, device=device, info=info, **options)
    runner = open_runner(path, backend=backend, device=device, **options)
    if tuple(size) != runner.info.input_size:
        runner.close()
        raise InputError(f"{path} was built for {runner.info.input_height}x{runner.info.input_width}, not "
                         f"{size[0]}x{size[1]}: rebuild it at that size (or drop --size)")
    return runner
