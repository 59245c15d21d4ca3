"""Device naming and selection shared by the runners: which device to use, and how a report names it."""

from __future__ import annotations

import contextlib
import platform

from lrnnet._threads import usable_cpus
from lrnnet.errors import InputError


def cpu_threads() -> int:
    """CPUs this process may run on: the affinity mask and the cgroup quota (lrnnet._threads.usable_cpus)."""
    return usable_cpus()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def parse_cuda_index(device: str) -> int:
    """'cuda' -> 0, 'cuda:1' -> 1; anything else is an InputError."""
    if device == "cuda":
        return 0
    prefix, _, index = device.partition(":")
    if prefix != "cuda" or not (index.isascii() and index.isdigit()):  # "²" is a digit to isdigit, not to int
        raise InputError(f"unknown device '{device}'; use cpu, cuda or cuda:N")
    return int(index)


def torch_cuda_name(index: int) -> str | None:
    """The GPU's name through torch when torch has CUDA (ONNX Runtime has no API for it), else None."""
    with contextlib.suppress(Exception):  # naming is best effort, never a failure
        import torch

        if torch.cuda.is_available() and index < torch.cuda.device_count():
            return str(torch.cuda.get_device_name(index))
    return None

