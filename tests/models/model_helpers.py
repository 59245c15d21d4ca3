"""Helpers of the model tests and benchmarks: street-like inputs, trained-like BatchNorm statistics."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrnnet.models import LRNNet


def street_like_batch(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Normalised images with large smooth regions and some texture, not white noise.

    Regions of a segmentation input differ from each other and are coherent inside, which is
    what gives the SVN's region matrices a clear dominant direction; white noise would not.
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, max(1, height // 64), max(1, width // 64), generator=g)
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return smooth + 0.1 * torch.randn(n, 3, height, width, generator=g)


def calibrate_batchnorm(model: LRNNet, batches: list[torch.Tensor]) -> LRNNet:
    """Set every BatchNorm's running statistics from ``batches`` (cumulative average), then eval().

    A randomly initialised net in eval mode normalises with mean 0 / variance 1 and its
    activations drift in scale block after block; after this, every BatchNorm output is
    normalised as in a trained net, so the SVN sees activations of a realistic scale and spread.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative moving average over the batches
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(batch)
    return model.eval()
