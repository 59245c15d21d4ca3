"""LRNNet: light-weighted network with an efficient reduced non-local operation.

Paper: "LRNNet: A Light-Weighted Network with Efficient Reduced Non-Local Operation for Real-Time
Semantic Segmentation", Weihao Jiang, Zhaozhi Xie, Yaoyi Li, Chang Liu, Hongtao Lu,
ICME Workshops 2020, https://arxiv.org/abs/2006.02706 (0.68M parameters, 72.2% mIoU on
Cityscapes test, 71 FPS at 512x1024 on a GTX 1080Ti).

Encoder: three ResNet-style stages of factorized convolution blocks (FCB) at 1/2, 1/4 and 1/8 of
the input, each stage opened by a downsampling unit. Decoder: the reduced non-local module (SVN),
whose keys and values are the dominant singular vectors of spatial regions of the feature map,
then a 1x1 classifier and bilinear upsampling to the input size. See README.md beside this file
for which details come from the paper and which were chosen here.

The model knows nothing of ONNX or TensorRT: the export-friendly SVD (``svd="power"``, a fixed
number of unrolled power iterations) is a constructor argument, like every option that changes
the exported graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lrnnet.models.nonlocal_family import nonlocal_context
from lrnnet.models.svd import SVD_METHODS, dominant_singular_vectors

__all__ = [
    "CONTEXT_MODULES",
    "DEFAULT_POWER_ITERATIONS",
    "DownsamplingUnit",
    "FactorizedConvBlock",
    "LRNNet",
    "ReducedNonLocal",
    "channel_shuffle",
    "lrnnet",
]

# The fewest iterations that match torch.linalg.svd to float32 noise (~7e-7 per vector) on
# trained-like activations, whose worst region has sigma2/sigma1 ~ 0.62; 10 leaves 1e-5. Each
# extra iteration costs one tiny batched (C' x C') matvec. Figures: benchmarks/bench_svn.py, README.md.
DEFAULT_POWER_ITERATIONS = 15

_BN_EPS = 1e-3  # as ERFNet/LEDNet, the code bases LRNNet's encoder descends from

# (channels, dilation of each FCB, Dropout2d rate) of each stage, which opens with a downsampling unit.
# Depth and dilations 1,2,5,9,2,5,9,17 of stage 3 follow LEDNet, which LRNNet's encoder builds on.
_ENCODER_STAGES: tuple[tuple[int, tuple[int, ...], float], ...] = (
    (32, (1, 1, 1), 0.03),
    (64, (1, 1), 0.03),
    (128, (1, 2, 5, 9, 2, 5, 9, 17), 0.3),
)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channel groups (ShuffleNet), so the next block's channel split mixes both halves."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    *,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    relu: bool = True,
) -> nn.Sequential:
    """Conv + BatchNorm (+ ReLU), 'same' padding, stride 1.

    The conv keeps its bias although BatchNorm follows, as in the ERFNet/LEDNet code LRNNet's
    encoder derives from; it changes nothing after BN folding and counts in the 0.68M parameters.
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            (kh, kw),
            padding=((kh - 1) // 2 * dh, (kw - 1) // 2 * dw),
            dilation=(dh, dw),
            groups=groups,
            bias=True,
        ),
        nn.BatchNorm2d(out_channels, eps=_BN_EPS),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DownsamplingUnit(nn.Module):
    """Halve H and W: a stride-2 3x3 conv's channels concatenated with a 2x2 max-pool of the input.

    ENet/ERFNet/LEDNet's downsampler: the pooled input keeps the information the strided conv
    cannot, at no parameter cost. H and W must be even.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(f"out_channels ({out_channels}) must exceed in_channels ({in_channels})")
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=True)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class FactorizedConvBlock(nn.Module):
    """LRNNet's factorized convolution block (FCB), a residual block.

    Short range: the channels are split in two halves, each processed by 1D factorized
    convolutions (3x1 then 1x3, and 1x3 then 3x1), which is where most of the block's spatially
    less informative, short-range work happens at a fraction of a 3x3 conv's cost. Long range:
    after merging, a dilated depthwise 3x3 conv (dilation grows with depth) followed by a 1x1
    pointwise conv, i.e. a depthwise-separable 2D conv with a large receptive field. Then
    dropout, the residual sum, and a channel shuffle so the next split mixes both halves.
    """

    def __init__(self, channels: int, dilation: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"FCB needs an even number of channels, got {channels}")
        half = channels // 2
        self.left = nn.Sequential(_conv_bn(half, half, (3, 1)), _conv_bn(half, half, (1, 3)))
        self.right = nn.Sequential(_conv_bn(half, half, (1, 3)), _conv_bn(half, half, (3, 1)))
        self.depthwise = _conv_bn(channels, channels, 3, dilation=dilation, groups=channels, relu=False)
        self.pointwise = _conv_bn(channels, channels, 1, relu=False)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = x.chunk(2, dim=1)
        y = torch.cat([self.left(left), self.right(right)], dim=1)
        y = self.dropout(self.pointwise(self.depthwise(y)))
        return channel_shuffle(F.relu(x + y), groups=2)


def split_into_regions(x: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, C, H, W) -> (N * grid * grid, C, rh * rw): a grid x grid partition into region matrices.

    H and W need not be multiples of ``grid``: the map is zero-padded up to the next multiple,
    which leaves every region's left singular vectors unchanged (zero columns add nothing to
    M M^T), so any input size that is a multiple of the encoder's stride works.
    """
    n, c, h, w = x.shape
    # Ceil division written on non-negative operands: exported to ONNX's integer Div, which
    # truncates, the usual -(-h // g) would round the wrong way under dynamic height/width.
    rh, rw = (h + grid - 1) // grid, (w + grid - 1) // grid
    # Padded unconditionally (a zero pad is a no-op): a Python `if` on the size would be frozen into
    # a graph traced at one size and break an export with dynamic height/width.
    x = F.pad(x, (0, rw * grid - w, 0, rh * grid - h))
    x = x.reshape(n, c, grid, rh, grid, rw).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n * grid * grid, c, rh * rw)


class ReducedNonLocal(nn.Module):
    """The SVN module: non-local attention whose keys/values are regional dominant singular vectors.

    Upper branch (a bottleneck): 1x1 convs reduce C to ``reduced_channels`` for the queries (one
    per position) and for the features that are partitioned into regions at each scale of
    ``region_grids`` (g x g regions for grid g). Each region's dominant left singular vector,
    its most representative feature direction, is both its key and its value, so attention
    costs H*W*S instead of (H*W)^2 for S = sum(g*g) regions. A 1x1 conv restores C channels.
    Lower branch: the input itself; the two are fused by a residual sum.
    """

    def __init__(
        self,
        channels: int,
        reduced_channels: int = 64,
        region_grids: Sequence[int] = (4, 8),
        svd: str = "power",
        power_iterations: int = DEFAULT_POWER_ITERATIONS,
    ) -> None:
        super().__init__()
        if svd not in SVD_METHODS:
            raise ValueError(f"svd must be one of {SVD_METHODS}, got {svd!r}")
        if not isinstance(power_iterations, int) or power_iterations < 1:
            raise ValueError(f"power_iterations must be a positive int, got {power_iterations!r}")
        if not region_grids or any(not isinstance(g, int) or g < 1 for g in region_grids):
            raise ValueError(f"region_grids must be positive ints, got {region_grids!r}")
        self.svd = svd
        self.power_iterations = power_iterations
        self.region_grids = tuple(region_grids)
        self.query = _conv_bn(channels, reduced_channels, 1, relu=False)
        # ReLU: non-negative region features have a well-defined dominant direction (a Perron
        # vector, entries >= 0), which the power method's start vector (region mean) is close to.
        self.region_features = _conv_bn(channels, reduced_channels, 1)
        self.project = _conv_bn(reduced_channels, channels, 1, relu=False)

    def regional_singular_vectors(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C', H, W) -> (N, S, C'): the dominant left singular vector of every region, all scales."""
        n = features.shape[0]
        regions = [split_into_regions(features, g) for g in self.region_grids]
        vectors = dominant_singular_vectors(regions, self.svd, self.power_iterations)
        return torch.cat([v.reshape(n, g * g, -1) for v, g in zip(vectors, self.region_grids)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        query = self.query(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        keys = self.regional_singular_vectors(self.region_features(x))  # (N, S, C'), also the values
        attention = torch.softmax(torch.matmul(query, keys.transpose(1, 2)), dim=-1)  # (N, HW, S)
        context = torch.matmul(attention, keys).transpose(1, 2).reshape(n, -1, h, w)
        return F.relu(x + self.project(context))


def _no_context(channels: int, **_: Any) -> nn.Module:
    return nn.Identity()


# The decoder's context module, by name: a builder taking the encoder's channel count and the
# module's options. The spectral non-local family (nonlocal_family.py) shares the SVN's slot.
CONTEXT_MODULES: dict[str, Callable[..., nn.Module]] = {
    "svn": ReducedNonLocal,
    "none": _no_context,
    "nl": nonlocal_context("nl"),
    "ns": nonlocal_context("ns"),
    "a2": nonlocal_context("a2"),
    "snl": nonlocal_context("snl"),
    "gsnl": nonlocal_context("gsnl"),
}


class LRNNet(nn.Module):
    """LRNNet for semantic segmentation: ``forward(N,3,H,W float) -> logits (N,num_classes,H,W)``.

    H and W must be multiples of ``input_stride`` (8: three downsampling units, each halving an
    even size). ``config`` holds the constructor arguments, enough to rebuild the model.
    """

    input_stride: int = 8

    def __init__(
        self,
        num_classes: int = 19,
        *,
        context: str = "svn",
        svd: str = "power",
        power_iterations: int = DEFAULT_POWER_ITERATIONS,
        svn_channels: int = 64,
        region_grids: Sequence[int] = (4, 8),
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if context not in CONTEXT_MODULES:
            raise ValueError(f"context must be one of {sorted(CONTEXT_MODULES)}, got {context!r}")
        self.config: dict[str, Any] = {
            "num_classes": num_classes,
            "context": context,
            "svd": svd,
            "power_iterations": power_iterations,
            "svn_channels": svn_channels,
            "region_grids": list(region_grids),
        }
        self.encoder = self._build_encoder()
        encoder_channels = _ENCODER_STAGES[-1][0]
        self.context = CONTEXT_MODULES[context](
            encoder_channels,
            reduced_channels=svn_channels,
            region_grids=tuple(region_grids),
            svd=svd,
            power_iterations=power_iterations,
        )
        self.classifier = nn.Conv2d(encoder_channels, num_classes, 1)
        self._init_weights()

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    @staticmethod
    def _build_encoder() -> nn.Sequential:
        layers: list[nn.Module] = []
        in_channels = 3
        for channels, dilations, dropout in _ENCODER_STAGES:
            layers.append(DownsamplingUnit(in_channels, channels))
            layers.extend(FactorizedConvBlock(channels, d, dropout) for d in dilations)
            in_channels = channels
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # The paper trains from scratch and does not state an initialisation: He (Kaiming) normal
        # for convs, BatchNorm at identity, as torchvision's ResNet.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # He init makes the classifier's logits start with std ~12 (a loss of ~26 instead of ln 19);
        # a small normal init starts training at a uniform prediction, as segmentation heads usually do.
        nn.init.normal_(self.classifier.weight, std=0.01)
        if self.classifier.bias is not None:
            nn.init.zeros_(self.classifier.bias)
        # A context block whose output BatchNorm must start at zero (so that it starts as the
        # identity, as torchvision's zero_init_residual) re-applies that after the loop above.
        zero_init_residual = getattr(self.context, "zero_init_residual", None)
        if callable(zero_init_residual):
            zero_init_residual()

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is a float (N, 3, H, W) batch with H, W multiples of input_stride."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LRNNet expects an (N, 3, H, W) image batch, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"LRNNet expects a floating-point input, got {x.dtype}")
        h, w = int(x.shape[2]), int(x.shape[3])
        s = self.input_stride
        if h % s or w % s or h == 0 or w == 0:
            raise ValueError(
                f"LRNNet input height and width must be positive multiples of {s}, got {h}x{w} "
                f"(e.g. resize or pad to {max(s, h // s * s)}x{max(s, w // s * s)} "
                f"or {-(-h // s) * s}x{-(-w // s) * s})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        features = self.context(self.encoder(x))
        logits = self.classifier(features)  # classify at 1/8 scale, then upsample: 8x cheaper
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)


def lrnnet(num_classes: int = 19, **kwargs: Any) -> LRNNet:
    """Factory: an LRNNet as in the paper (SVN context), with ``LRNNet``'s keyword options."""
    return LRNNet(num_classes=num_classes, **kwargs)
