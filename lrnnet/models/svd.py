"""Dominant left singular vector of a batch of matrices, two ways.

LRNNet's reduced non-local module (SVN) summarises each spatial region of a feature map, a
matrix M of shape (C, n) (C channels, n positions), by its dominant left singular vector u1:
the unit C-vector that best explains the region's features. Two ways to get it:

* ``method="exact"``: ``torch.linalg.svd``. The reference; not exportable to ONNX/TensorRT.
* ``method="power"``: a fixed number of power iterations on the scaled Gram matrix
  G = (M / s)(M / s)^T / n. A plain Python loop over a constant count, so ``torch.onnx.export``
  unrolls it into a static graph of Abs/ReduceMax/Max/Div/MatMul/Mul/ReduceSum/Sqrt/Where ops:
  no Loop, If, SVD, NonZero or Einsum.

Both return the same vector up to the power method's convergence error, with one sign
convention (``sum(u) >= 0``, sum 0 counting as positive) and one convention for an all-zero
region (the zero vector). Convergence: after k iterations the angle to u1 shrinks like
(sigma2 / sigma1) ** (2 k), since each iteration multiplies by G = M M^T (sigma1 > sigma2 are
M's two largest singular values).

FP16 safety of the power path (TensorRT may run it in half precision):

* M is divided by its largest absolute entry and by sqrt(n) before the Gram product, so every
  partial sum in G is at most 1: nothing can overflow 65504. G is then scaled to largest entry 1.
* Inside the loop v is rescaled by its largest absolute entry, not its L2 norm, so no sum of
  squares is ever formed there; the one final L2 normalisation runs on a vector whose largest
  entry is 1, so its sum of squares lies in [1, C].
* Every division is by max(value, floor): an all-zero region yields 0, never NaN or Inf.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "SVD_METHODS",
    "dominant_singular_vector",
    "dominant_singular_vectors",
    "exact_dominant_singular_vector",
    "power_dominant_singular_vector",
    "power_iterate_gram",
    "scaled_gram",
]

SVD_METHODS = ("exact", "power")

# Floor of every guarded division: float16's smallest normal number, so the guard survives a
# conversion of the graph to half precision (a float32 "tiny" would become 0 there). Floors only
# change magnitudes, never directions, so they cost no accuracy for any non-zero region.
_FLOOR = 2.0**-14


def _apply_sign_convention(u: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Flip each vector (along ``dim``) so that its components sum to >= 0; sum 0 counts as positive.

    Written with torch.where rather than torch.sign so that a zero sum maps to +1 without any
    data-dependent control flow.
    """
    total = u.sum(dim=dim, keepdim=True)
    sign = torch.where(total < 0, -torch.ones_like(total), torch.ones_like(total))
    return u * sign


def exact_dominant_singular_vector(m: torch.Tensor) -> torch.Tensor:
    """Dominant left singular vector of each matrix in ``m`` (..., C, n) via ``torch.linalg.svd``.

    Returns (..., C) in ``m``'s dtype; all-zero matrices give the zero vector.
    """
    work = m if m.dtype in (torch.float32, torch.float64) else m.float()
    u, s, _ = torch.linalg.svd(work, full_matrices=False)
    u1 = _apply_sign_convention(u[..., :, 0])
    # An all-zero region has no dominant direction; SVD would return an arbitrary unit vector.
    nonzero = (s[..., :1] > 0).to(u1.dtype)
    return (u1 * nonzero).to(m.dtype)


def power_dominant_singular_vector(m: torch.Tensor, iterations: int) -> torch.Tensor:
    """Dominant left singular vector of each matrix in ``m`` (B, C, n) by ``iterations`` power steps.

    Returns (B, C) in ``m``'s dtype; all-zero matrices give the zero vector.
    """
    gram, start = scaled_gram(m)
    return power_iterate_gram(gram, start, iterations).squeeze(-1)


def scaled_gram(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The power method's inputs for (B, C, n) matrices: Gram matrices (B, C, C), start vectors (B, C, 1).

    Separate from the loop so that matrices with different n (regions of several sizes) can share
    one unrolled loop: their Gram matrices are all C x C and concatenate along the batch.
    """
    if m.dim() != 3:
        raise ValueError(f"expected a batch of matrices (B, C, n), got shape {tuple(m.shape)}")
    n = m.shape[-1]
    # Scale entries into [-1, 1], then by 1/sqrt(n): every partial sum of the Gram product is <= 1.
    scale = m.abs().amax(dim=(1, 2), keepdim=True).clamp_min(_FLOOR)
    # Two steps, never scale * sqrt(n): that product alone overflows float16 for entries ~1e4.
    scaled = (m / scale) * (n**-0.5)
    gram = torch.matmul(scaled, scaled.transpose(1, 2))  # symmetric PSD
    # Largest entry 1 (a diagonal one, G being PSD), so the top eigenvalue is in [1, C] and the
    # loop's rescaling never has to blow up a vanishing vector, whatever n is.
    gram = gram / gram.abs().amax(dim=(1, 2), keepdim=True).clamp_min(_FLOOR)
    # Deterministic start: the region's mean absolute feature (up to scale). Non-zero unless the
    # region is zero; for non-negative (post-ReLU) features it is the region mean, close to u1.
    start = scaled.abs().sum(dim=2, keepdim=True)
    return gram, start


def power_iterate_gram(gram: torch.Tensor, start: torch.Tensor, iterations: int) -> torch.Tensor:
    """Run ``iterations`` power steps v <- G v on (B, C, C) Gram matrices from (B, C, 1) ``start``.

    Returns unit vectors (B, C, 1) with the sign convention applied (zero where G v vanishes).
    """
    v = _rescale_by_max_abs(start)
    for _ in range(int(iterations)):  # constant count: unrolled into a static graph when exported
        v = _rescale_by_max_abs(torch.matmul(gram, v))
    sum_sq = (v * v).sum(dim=1, keepdim=True)  # in [1, C] unless v == 0
    u = v * torch.rsqrt(sum_sq.clamp_min(_FLOOR))
    return _apply_sign_convention(u, dim=1)


def _rescale_by_max_abs(v: torch.Tensor) -> torch.Tensor:
    return v / v.abs().amax(dim=1, keepdim=True).clamp_min(_FLOOR)


def dominant_singular_vector(m: torch.Tensor, method: str, iterations: int) -> torch.Tensor:
    """Dominant left singular vector of each (C, n) matrix in ``m`` (B, C, n), by ``method``: (B, C)."""
    return dominant_singular_vectors([m], method, iterations)[0]


def dominant_singular_vectors(
    matrices: Sequence[torch.Tensor], method: str, iterations: int
) -> list[torch.Tensor]:
    """``dominant_singular_vector`` for several batches (B_i, C, n_i) at once: [(B_i, C), ...].

    The power method runs one loop for all of them (one set of unrolled ops in an exported
    graph, not one per region size).
    """
    if method == "exact":
        return [exact_dominant_singular_vector(m) for m in matrices]
    if method != "power":
        raise ValueError(f"unknown SVD method {method!r}; expected one of {SVD_METHODS}")
    grams, starts = zip(*(scaled_gram(m) for m in matrices))
    vectors = power_iterate_gram(torch.cat(grams), torch.cat(starts), iterations).squeeze(-1)
    return list(torch.split(vectors, [m.shape[0] for m in matrices]))
