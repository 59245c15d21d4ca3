"""A real small disk for the full-disk and read-only tests: a tmpfs mounted for the test (CI runs as root)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted(mount_args: list[str], mount_point: Path) -> Iterator[Path]:
    """`mount <mount_args> <mount_point>` for the duration, lazily unmounted after; skip where refused."""
    result = subprocess.run(["mount", *mount_args, str(mount_point)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here ({result.stderr.strip() or 'mount refused'}); needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of `size` (mount's syntax: 512k, 5m) at the new folder `mount_point`; skip where refused."""
    mount_point.mkdir()
    with mounted(["-t", "tmpfs", "-o", f"size={size}", "tmpfs"], mount_point) as path:
        yield path
