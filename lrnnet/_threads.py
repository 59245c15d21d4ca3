"""How many CPUs this process may really use, and the thread counts chosen from that: one place.

`os.cpu_count()` is the machine's total; a container or `taskset` may allow fewer (the affinity
mask), and a cgroup CPU quota (`docker --cpus 2`, Kubernetes limits) caps the time on them. More
compute threads than usable CPUs do not run faster: they wait for each other at every parallel
region, which on a busy or throttled machine turns a 6 s training step into a 60 s one (issue 18).

Kept free of torch, onnxruntime and the models: the runtimes import it and apply what they use.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lrnnet.log import logger

__all__ = ["ThreadPlan", "announce_threads", "apply_process_defaults", "count_text", "thread_plan", "usable_cpus"]

_CGROUP = Path("/sys/fs/cgroup")


def _affinity_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _cgroup_quota(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = _CGROUP) -> float | None:
    """CPUs' worth of time the cgroup quota allows (cpu.max of v2, cfs quota of v1), or None when unlimited."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        relative = path.lstrip("/")
        if controllers == "":  # cgroup v2: "0::/path" -> cpu.max = "QUOTA PERIOD" or "max PERIOD"
            for folder in (root / relative, root):
                try:
                    quota, period = (folder / "cpu.max").read_text(encoding="utf-8").split()[:2]
                except (OSError, ValueError):
                    continue
                if quota != "max" and float(period) > 0:
                    return float(quota) / float(period)
        elif "cpu" in controllers.split(","):  # cgroup v1: cpu.cfs_quota_us is -1 when unlimited
            for folder in (root / controllers / relative, root / controllers, root / "cpu" / relative, root / "cpu"):
                try:
                    quota_us = float((folder / "cpu.cfs_quota_us").read_text(encoding="utf-8"))
                    period_us = float((folder / "cpu.cfs_period_us").read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if quota_us > 0 and period_us > 0:
                    return quota_us / period_us
    return None


def usable_cpus() -> int:
    """CPUs this process may run on: the affinity mask, capped by a cgroup CPU quota (rounded up)."""
    cpus = _affinity_cpus()
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


@dataclass(frozen=True)
class ThreadPlan:
    """Thread counts per library for `cpus` usable CPUs.

    torch (training, the PyTorch runner) leaves one CPU free when there are few: its OpenMP workers
    spin and wait for each other, so on 2 shared cores 1 thread trains faster than 2 (measured,
    issue 18). ONNX Runtime's inference of one frame uses them all, but on 2 CPUs or fewer its
    workers sleep instead of spinning between operators: spinning workers take the core from the
    video pipeline's decode and encode threads and from anything else running (measured on the
    shared 2-core box, 128x256: median 40 ms without spinning, 46 ms with, 37 ms on one thread).
    OpenCV's resizes and colour conversions are small next to the network: one thread, so they
    never compete with it.
    """

    cpus: int
    torch: int
    torch_interop: int
    onnxruntime: int
    onnxruntime_interop: int
    onnxruntime_spinning: bool
    opencv: int

    def describe(self) -> str:
        cpus = f"{self.cpus} CPU{'s' if self.cpus != 1 else ''} usable"
        return f"threads: torch {self.torch}, onnxruntime {self.onnxruntime}, opencv {self.opencv} ({cpus})"


def thread_plan(cpus: int | None = None) -> ThreadPlan:
    cpus = usable_cpus() if cpus is None else max(1, int(cpus))
    torch_threads = 1 if cpus <= 2 else cpus - 1
    user_choice = os.environ.get("OMP_NUM_THREADS", "")
    if user_choice.isdigit() and int(user_choice) > 0:  # torch reads it at import: report what it will use
        torch_threads = int(user_choice)
    return ThreadPlan(cpus=cpus, torch=torch_threads, torch_interop=1, onnxruntime=cpus, onnxruntime_interop=1,
                      onnxruntime_spinning=cpus > 2, opencv=1)


def count_text(count: int, noun: str = "thread") -> str:
    """'1 thread', '2 threads': the one way a report names a count."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


_announced = False


def apply_process_defaults() -> ThreadPlan:
    """Apply the plan as this process's defaults (every command calls it at start; announce_threads says it).

    OpenCV is set here. torch is lowered to the plan when already imported (never raised: a caller
    or a test that chose fewer keeps them), else OMP_NUM_THREADS tells it at import unless the user
    set it. ONNX Runtime takes its count per session (OnnxRuntimeRunner reads the plan). An explicit
    --threads of a command is applied after this and wins.
    """
    plan = thread_plan()
    import cv2

    cv2.setNumThreads(plan.opencv)
    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.get_num_threads() > plan.torch:
            torch.set_num_threads(plan.torch)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", str(plan.torch))
    return plan


def announce_threads() -> None:
    """Say the plan once per process, where compute starts (a trainer, a CPU runner), not before an error."""
    global _announced
    if not _announced:
        _announced = True
        logger.info("%s", thread_plan().describe())
