"""The learning-rate schedule: poly decay per iteration, as ERFNet/LEDNet and most real-time segmenters use."""

from __future__ import annotations

__all__ = ["poly_lr"]


def poly_lr(base_lr: float, step: int, total_steps: int, power: float = 0.9) -> float:
    """lr at `step` (0-based) of `total_steps`: base_lr * (1 - step / total_steps) ** power.

    A pure function of the step, so a resumed run needs no scheduler state to continue exactly.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= step <= total_steps:
        raise ValueError(f"step {step} outside 0..{total_steps}")
    return base_lr * (1.0 - step / total_steps) ** power
