"""The spectral non-local family: non-local blocks as graph filters, one implementation.

Paper: "Unifying Nonlocal Blocks for Neural Networks" (ICCV 2021; first as "A Spectral Nonlocal
Block for Neural Networks", arXiv:1911.01059), Lei Zhu, Qi She et al. Its view: the N = H*W
positions of a feature map are the nodes of a fully connected graph whose affinity A is computed
from the features, and a non-local block is a graph filter on it, approximated by Chebyshev
polynomials of A. With Z = g(X) (a 1x1 conv C -> C') every block here is

    Y = X + act(BN(sum_k T_k(A) Z W_k)),   T_0 = I, T_1 = A, T_2 = 2A^2 - I,

the W_k being 1x1 convs C' -> C, and the known blocks are the special cases in
``NONLOCAL_VARIANTS`` (affinity kind, which terms, which weights tied or zero):

* ``nl``   non-local block (Wang et al., CVPR 2018): A = softmax_j(theta_i . phi_j / sqrt(C')), W_0 = 0.
* ``ns``   non-local stage (Tao et al., NeurIPS 2018): same A, W_0 = -W_1, i.e. (A - I) Z W: the
           graph Laplacian's diffusion step (one block; a stage stacks blocks that share A).
* ``a2``   double attention (A^2-Net, Chen et al., NeurIPS 2018): A = softmax_C(theta)^T softmax_N(phi),
           W_0 = 0 (gather C' global descriptors with spatial softmaxes, distribute with channel ones).
* ``snl``  spectral non-local: the symmetric, normalised affinity A^ = D^-1/2 1/2(M + M^T) D^-1/2,
           M = ReLU(theta)^T ReLU(phi), and the full first-order filter Z W_0 + A^ Z W_1.
* ``gsnl`` generalised SNL: second order, Z W_0 + A^ Z W_1 + (2 A^ A^ Z - Z) W_2.

LRNNet's own SVN (lrnnet.py) is a non-local block on a reduced graph: queries at every position
attend to S regional singular vectors (an N x S bipartite affinity), W_0 = 0. CGNL (compact
generalised non-local) also appears in the paper but does not fall out of this code: its graph
has a node per channel *and* position (a Taylor-expanded Gaussian kernel over C*N nodes).

The weights are shared by one implementation: theta, phi, g (1x1 convs C -> C', no bias, as
the authors' code), the filter terms concatenated along channels into one 1x1 conv (the sum of
the W_k), BatchNorm, optional ReLU, residual. The output BatchNorm starts at zero
(``zero_init_residual``), so a new block is the identity and can be added to a trained net.

Export without N x N tensors where the maths allows. SNL's affinity has rank <= C', so
A^ Z = D^-1/2 1/2[Theta (Phi^T D^-1/2 Z) + Phi (Theta^T D^-1/2 Z)], d = 1/2[Theta (Phi^T 1) +
Phi (Theta^T 1)], costs O(N C'^2) instead of O(N^2 C'); A^2's affinity is a product of two
N x C' factors by construction. NL/NS's softmax of a product is not low rank: they build the
N x N matrix (8192^2 at 512x1024, the price the benchmark shows). ``dense=True`` builds every
affinity as an N x N matrix: the reference the factorised forms are tested against.

FP16 safety of the factorised SNL (TensorRT may run it in half precision): A^ does not change
when M is scaled, so Theta and Phi are scaled to max entry 1/sqrt(N) and Z to max |entry| 1
(restored afterwards; A^ Z is linear in Z). Then every degree is <= C', every entry of
D^-1/2 Theta <= 128 / sqrt(N) (degrees floored at float16's smallest normal 2^-14 for the
rsqrt, zero degree -> 0 by ``where``, no NonZero/ScatterND), each C' x C' product entry is
<= 128 sqrt(N) and each output partial sum <= 2 C' sqrt(N): below 65504 for C' = 64 and feature
maps of N < 2.6e5 positions (inputs up to about 4000 x 4000), whatever the activations' scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lrnnet.models.svd import _FLOOR

__all__ = [
    "NONLOCAL_VARIANTS",
    "NonLocalBlock",
    "NonLocalVariant",
    "double_attention_affinity",
    "nonlocal_context",
    "softmax_affinity",
    "spectral_affinity",
]

# An affinity operator: Z (B, C', N) -> Z A^T (B, C', N), i.e. (A Z)^T in the papers' N x C' layout.
AffinityOperator = Callable[[torch.Tensor], torch.Tensor]


def softmax_affinity(theta: torch.Tensor, phi: torch.Tensor, dense: bool = True) -> AffinityOperator:
    """NL / NS: A_ij = softmax_j(theta_i . phi_j / sqrt(C')) from (B, C', N) embeddings.

    Always an N x N matrix (``dense`` is accepted for a uniform signature): the softmax of a
    product has no low-rank form. The 1/sqrt(C') temperature (as mmcv's ``use_scale``, and
    Transformers) keeps the logits' scale independent of C' and their sums in float16 range.
    """
    del dense
    scale = theta.shape[1] ** -0.5
    # Transposed logits L^T[j, i] = phi_j . theta_i, softmax over j (dim 1) gives A^T directly,
    # so Z A^T is one MatMul with no transpose of an N x N tensor.
    affinity_t = torch.softmax(torch.matmul(phi.transpose(1, 2), theta * scale), dim=1)
    return lambda z: torch.matmul(z, affinity_t)


def double_attention_affinity(theta: torch.Tensor, phi: torch.Tensor, dense: bool = False) -> AffinityOperator:
    """A^2: A = softmax_C(theta)^T softmax_N(phi), rows summing to 1, rank <= C'.

    Factorised (the A^2-Net's own order): gather G = Z softmax_N(phi)^T (C' x C' global
    descriptors), distribute G softmax_C(theta). Both steps are convex combinations, so nothing
    outgrows max |Z| (float16-safe as is).
    """
    distribute = torch.softmax(theta, dim=1)  # over the C' maps, at each position
    gather = torch.softmax(phi, dim=2)  # over the N positions, for each map
    if dense:
        affinity_t = torch.matmul(gather.transpose(1, 2), distribute)  # A^T (B, N, N)
        return lambda z: torch.matmul(z, affinity_t)
    gather_t = gather.transpose(1, 2)
    return lambda z: torch.matmul(torch.matmul(z, gather_t), distribute)


def spectral_affinity(theta: torch.Tensor, phi: torch.Tensor, dense: bool = False) -> AffinityOperator:
    """SNL / gSNL: A^ = D^-1/2 A D^-1/2, A = 1/2(M + M^T), M = ReLU(theta)^T ReLU(phi); degree 0 -> 0.

    ``dense=True`` is the textbook N x N form (the reference); the default is the factorised,
    float16-safe O(N C'^2) form described in the module docstring. Both give the same A^ Z.
    """
    theta, phi = F.relu(theta), F.relu(phi)
    if dense:
        return _dense_spectral(theta, phi)
    return _factorised_spectral(theta, phi)


def _dense_spectral(theta: torch.Tensor, phi: torch.Tensor) -> AffinityOperator:
    m = torch.matmul(theta.transpose(1, 2), phi)  # (B, N, N)
    a = 0.5 * (m + m.transpose(1, 2))
    degree = a.sum(dim=2)  # (B, N)
    # Exact d^-1/2 for every d > 0. The inner where only feeds rsqrt a 1 where d == 0: rsqrt(0) = inf
    # in the unselected branch would still turn the backward pass into 0 * inf = NaN.
    positive = degree > 0
    r = torch.where(positive, torch.rsqrt(torch.where(positive, degree, torch.ones_like(degree))),
                    torch.zeros_like(degree))
    a_hat = r.unsqueeze(2) * a * r.unsqueeze(1)  # symmetric, so Z A^T = Z A
    return lambda z: torch.matmul(z, a_hat)


def _factorised_spectral(theta: torch.Tensor, phi: torch.Tensor) -> AffinityOperator:
    inv_sqrt_n = theta.shape[2] ** -0.5  # a graph op (Shape -> Pow) in an export with dynamic H, W
    # Scale each to max entry 1/sqrt(N), in two steps (max*sqrt(N) alone could overflow float16).
    theta = theta / theta.amax(dim=(1, 2), keepdim=True).clamp_min(_FLOOR) * inv_sqrt_n
    phi = phi / phi.amax(dim=(1, 2), keepdim=True).clamp_min(_FLOOR) * inv_sqrt_n
    # d = 1/2[Theta (Phi^T 1) + Phi (Theta^T 1)]: column sums (<= sqrt(N)), then channel dots (<= C').
    degree = 0.5 * ((theta * phi.sum(dim=2, keepdim=True)).sum(dim=1, keepdim=True)
                    + (phi * theta.sum(dim=2, keepdim=True)).sum(dim=1, keepdim=True))  # (B, 1, N)
    r = torch.where(degree > 0, torch.rsqrt(degree.clamp_min(_FLOOR)), torch.zeros_like(degree))
    theta_r, phi_r = theta * r, phi * r  # D^-1/2 folded into both factors: A^ = 1/2(Tr^T Pr + Pr^T Tr)
    theta_rt, phi_rt = theta_r.transpose(1, 2), phi_r.transpose(1, 2)

    def apply(z: torch.Tensor) -> torch.Tensor:
        scale = z.abs().amax(dim=(1, 2), keepdim=True).clamp_min(_FLOOR)
        unit = z / scale
        # Z A^ = 1/2[(Z Tr^T) Pr + (Z Pr^T) Tr]: two C' x C' products, never an N x N tensor.
        out = torch.matmul(torch.matmul(unit, theta_rt), phi_r) + torch.matmul(torch.matmul(unit, phi_rt), theta_r)
        return out * (0.5 * scale)

    return apply


_AFFINITIES: dict[str, Callable[..., AffinityOperator]] = {
    "softmax": softmax_affinity,
    "double_attention": double_attention_affinity,
    "spectral": spectral_affinity,
}


def _filter_term(term: str, z: torch.Tensor, az: torch.Tensor, apply: AffinityOperator) -> torch.Tensor:
    """One Chebyshev-filter term T(A) Z (channel-first), given az = A Z, computed once."""
    if term == "Z":
        return z
    if term == "AZ":
        return az
    if term == "AZ-Z":  # (A - I) Z: the Laplacian form, W_0 tied to -W_1
        return az - z
    if term == "(2AA-I)Z":  # second Chebyshev polynomial
        return 2.0 * apply(az) - z
    raise ValueError(f"unknown graph-filter term {term!r}")


@dataclass(frozen=True)
class NonLocalVariant:
    """One member of the family: which affinity, which filter terms (one W_k each), which output."""

    affinity: str  # key of the affinity builders: "softmax", "double_attention", "spectral"
    terms: tuple[str, ...]  # "Z", "AZ", "AZ-Z", "(2AA-I)Z"; tied or zeroed W_k are absent terms
    relu: bool  # ReLU after the output BatchNorm (the authors' code for NL, NS, SNL; not gSNL)
    formula: str  # one line, for documentation and the benchmark's table
    paper: str


NONLOCAL_VARIANTS: dict[str, NonLocalVariant] = {
    "nl": NonLocalVariant("softmax", ("AZ",), True, "Y = X + ReLU(BN(W softmax(θᵀφ/√C') Z))",
                          "Wang et al., Non-local Neural Networks, CVPR 2018"),
    "ns": NonLocalVariant("softmax", ("AZ-Z",), True, "Y = X + ReLU(BN(W (A − I) Z)), A as NL",
                          "Tao et al., Nonlocal Neural Networks, Nonlocal Diffusion and Nonlocal Modeling, NeurIPS 2018"),
    "a2": NonLocalVariant("double_attention", ("AZ",), True,
                          "Y = X + ReLU(BN(W softmax_C(θ)ᵀ softmax_N(φ) Z))",
                          "Chen et al., A^2-Nets: Double Attention Networks, NeurIPS 2018"),
    "snl": NonLocalVariant("spectral", ("Z", "AZ"), True, "Y = X + ReLU(BN(Z W1 + Â Z W2))",
                           "Zhu et al., Unifying Nonlocal Blocks for Neural Networks, ICCV 2021"),
    "gsnl": NonLocalVariant("spectral", ("Z", "AZ", "(2AA-I)Z"), False,
                            "Y = X + BN(Z W1 + Â Z W2 + (2ÂÂZ − Z) W3)",
                            "Zhu et al., A Spectral Nonlocal Block for Neural Networks, arXiv:1911.01059"),
}


class NonLocalBlock(nn.Module):
    """A member of the spectral non-local family on a (B, C, H, W) map (see the module docstring).

    ``reduced_channels`` is C' (default C/2, as the papers); ``dense`` builds the N x N affinity
    (the reference) instead of the factorised form, for the variants that have one.
    """

    def __init__(self, channels: int, variant: str = "snl", reduced_channels: int | None = None, *,
                 dense: bool = False) -> None:
        super().__init__()
        if variant not in NONLOCAL_VARIANTS:
            raise ValueError(f"variant must be one of {sorted(NONLOCAL_VARIANTS)}, got {variant!r}")
        reduced = channels // 2 if reduced_channels is None else reduced_channels
        if not isinstance(reduced, int) or reduced < 1:
            raise ValueError(f"reduced_channels must be a positive int, got {reduced_channels!r}")
        self.variant = variant
        self.spec = NONLOCAL_VARIANTS[variant]
        self.dense = dense
        self.theta = nn.Conv2d(channels, reduced, 1, bias=False)
        self.phi = nn.Conv2d(channels, reduced, 1, bias=False)
        self.g = nn.Conv2d(channels, reduced, 1, bias=False)
        # sum_k T_k Z W_k as one conv over the concatenated terms: the same maths, one op.
        self.project = nn.Conv2d(reduced * len(self.spec.terms), channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        self.zero_init_residual()

    def zero_init_residual(self) -> None:
        """Output BatchNorm to zero: the block is then exactly the identity (Wang et al.'s NL init).

        A model that re-initialises every BatchNorm to one calls this afterwards (LRNNet does).
        """
        nn.init.zeros_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        theta, phi, z = (conv(x).flatten(2) for conv in (self.theta, self.phi, self.g))  # (B, C', N)
        apply = _AFFINITIES[self.spec.affinity](theta, phi, dense=self.dense)
        az = apply(z)
        terms = [_filter_term(term, z, az, apply) for term in self.spec.terms]
        y = self.norm(self.project(torch.cat(terms, dim=1).reshape(n, -1, h, w)))
        return x + (F.relu(y) if self.spec.relu else y)


def nonlocal_context(variant: str) -> Callable[..., NonLocalBlock]:
    """A ``CONTEXT_MODULES`` builder for ``variant``: LRNNet's ``svn_channels`` is C'.

    LRNNet passes every context module the SVN's options; the ones only the SVN uses (region
    grids, SVD method, power iterations) mean nothing here and are ignored.
    """
    if variant not in NONLOCAL_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(NONLOCAL_VARIANTS)}, got {variant!r}")

    def build(channels: int, *, reduced_channels: int | None = None, **_svn_options: Any) -> NonLocalBlock:
        return NonLocalBlock(channels, variant, reduced_channels)

    build.__name__ = build.__qualname__ = f"nonlocal_context_{variant}"
    return build
