"""The deployed graph around LRNNet: optional in-graph preprocessing and argmax.

This lives in export/, not models/: the model computes logits from normalised images and knows
nothing of deployment. `DeployWrapper` adds what a deployment may want inside the graph:

* preprocessing (``preprocess_in_graph``): uint8 NHWC BGR frames already at the model's size, cast to float
  at once (TensorRT takes UINT8 only at the network input, into a Cast) ->
  float32 NCHW RGB normalised with MEAN_RGB/STD_RGB, computed exactly as
  ``lrnnet.data.preprocess.preprocess`` does (same float32 constants, same order of operations),
  so the graph's input can be a decoded video frame with no host-side work but the resize;
* argmax (``argmax``): per-pixel class map as int32 (TensorRT cannot output int64).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lrnnet.data.preprocess import MEAN_RGB, STD_RGB
from lrnnet.export.metadata import LAYOUT_NCHW_FLOAT, LAYOUT_NHWC_UINT8_BGR

__all__ = ["DeployWrapper", "normalisation_constants"]


def normalisation_constants() -> tuple[np.ndarray, np.ndarray]:
    """(mean * 255, 1 / (std * 255)) as float32 RGB, computed as the preprocess function computes them.

    Same dtype and the same operations, so in-graph normalisation is bit-identical to preprocess().
    """
    mean_255 = np.array(MEAN_RGB, dtype=np.float32) * 255.0
    inv_std_255 = 1.0 / (np.array(STD_RGB, dtype=np.float32) * 255.0)
    return mean_255.astype(np.float32), inv_std_255.astype(np.float32)


class DeployWrapper(nn.Module):
    """``model`` with optional in-graph preprocessing (uint8 NHWC BGR input) and argmax (int32 output)."""

    mean_255: torch.Tensor
    inv_std_255: torch.Tensor

    def __init__(self, model: nn.Module, *, preprocess_in_graph: bool = False, argmax: bool = False) -> None:
        super().__init__()
        self.model = model
        self.preprocess_in_graph = preprocess_in_graph
        self.argmax = argmax
        mean_255, inv_std_255 = normalisation_constants()
        # Buffers, not parameters: exported as initializers, never trained.
        self.register_buffer("mean_255", torch.from_numpy(mean_255).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("inv_std_255", torch.from_numpy(inv_std_255).reshape(1, 3, 1, 1), persistent=False)

    @property
    def input_layout(self) -> str:
        return LAYOUT_NHWC_UINT8_BGR if self.preprocess_in_graph else LAYOUT_NCHW_FLOAT

    def normalise(self, frames_bgr: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) BGR -> float32 (N, 3, H, W) RGB, ImageNet-normalised."""
        # Cast first: TensorRT's parser takes UINT8 only as a network input feeding a Cast (its Slice and
        # Transpose importers reject UINT8; lrnnet.export.tensorrt_rules). The flip (a Slice with step -1)
        # and the layout change are exact in float32, then the same (x - mean) * inv_std as preprocess().
        # Folding the flip into the first conv's weights is not an option: the first downsampler also
        # max-pools the input and concatenates it, so its channel order reaches the next layer.
        rgb = frames_bgr.to(torch.float32).flip(-1).permute(0, 3, 1, 2)
        return (rgb - self.mean_255) * self.inv_std_255

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess_in_graph:
            x = self.normalise(x)
        logits = self.model(x)
        if self.argmax:
            return logits.argmax(dim=1).to(torch.int32)
        return logits
