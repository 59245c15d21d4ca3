"""Power iteration vs torch.linalg.svd for the dominant left singular vector (lrnnet/models/svd.py)."""

from __future__ import annotations

import math

import pytest
import torch

from lrnnet.models.svd import (
    dominant_singular_vector,
    dominant_singular_vectors,
    exact_dominant_singular_vector,
    power_dominant_singular_vector,
)


def matrices_with_spectrum(singular_values: list[float], batch: int, channels: int, n: int, seed: int):
    """(batch, channels, n) float64 matrices U diag(s) V^T with random orthonormal U, V; and U[:, :, 0]."""
    g = torch.Generator().manual_seed(seed)
    k = len(singular_values)
    u, _ = torch.linalg.qr(torch.randn(batch, channels, k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(batch, n, k, generator=g, dtype=torch.float64))
    s = torch.tensor(singular_values, dtype=torch.float64)
    return (u * s) @ v.transpose(1, 2), u[:, :, 0]


def tan_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """tan of the angle between the lines spanned by a and b (sign-blind), per batch row."""
    cos = (a * b).sum(-1).abs() / (a.norm(dim=-1) * b.norm(dim=-1))
    cos = cos.clamp(max=1.0)
    return torch.sqrt(1 - cos**2) / cos


def test_error_falls_as_singular_value_ratio_predicts():
    # Each iteration multiplies by G = M M^T, whose eigenvalues are sigma_i^2: the angle to u1
    # obeys tan(theta_k) <= tan(theta_0) * (sigma2/sigma1)^(2k), with equality in the limit.
    ratio = 0.8
    m, u1 = matrices_with_spectrum([1.0, ratio, 0.5, 0.3, 0.1], batch=8, channels=16, n=40, seed=0)
    start = m.abs().sum(-1)  # the power method's documented start vector (up to scale)
    tan0 = tan_angle(start, u1)
    errors = []
    for k in range(1, 16):
        tan_k = tan_angle(power_dominant_singular_vector(m, k), u1)
        assert torch.all(tan_k <= tan0 * ratio ** (2 * k) * (1 + 1e-9) + 1e-12), k
        errors.append(tan_k)
    # The observed rate per iteration tends to (sigma2/sigma1)^2.
    observed = (errors[-1] / errors[-2]).median().item()
    assert observed == pytest.approx(ratio**2, rel=0.02)


@pytest.mark.parametrize("ratio", [0.3, 0.6, 0.9])
def test_iterations_needed_match_prediction(ratio):
    m, u1 = matrices_with_spectrum([2.0, 2.0 * ratio, 0.2], batch=4, channels=32, n=64, seed=1)
    tan0 = tan_angle(m.abs().sum(-1), u1).max().item()
    k = math.ceil(math.log(1e-6 / tan0) / (2 * math.log(ratio)))  # predicted iterations for 1e-6
    assert tan_angle(power_dominant_singular_vector(m, k), u1).max().item() <= 1e-6


def test_same_sign_convention_as_exact():
    m, _ = matrices_with_spectrum([3.0, 1.0, 0.5, 0.2], batch=64, channels=24, n=50, seed=2)
    exact = exact_dominant_singular_vector(m)
    power = power_dominant_singular_vector(m, 60)
    torch.testing.assert_close(power, exact, rtol=0, atol=1e-9)  # same vectors, not just same lines
    assert torch.all(exact.sum(-1) >= 0)
    # The sign is a property of the line, not of the matrix's sign: M and -M give the same vector.
    torch.testing.assert_close(exact_dominant_singular_vector(-m), exact)
    torch.testing.assert_close(power_dominant_singular_vector(-m, 60), power)


def test_unit_norm_and_float32_agreement():
    m, _ = matrices_with_spectrum([1.0, 0.5, 0.25], batch=16, channels=64, n=128, seed=3)
    m = m.float()
    power = power_dominant_singular_vector(m, 30)
    torch.testing.assert_close(power.norm(dim=-1), torch.ones(16), rtol=0, atol=1e-6)
    torch.testing.assert_close(power, exact_dominant_singular_vector(m), rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["exact", "power"])
def test_zero_and_rank_deficient_inputs_are_finite(method):
    zeros = torch.zeros(3, 8, 5)
    u = dominant_singular_vector(zeros, method, 10)
    assert torch.equal(u, torch.zeros(3, 8))  # documented: an all-zero region gives the zero vector
    # Rank 1: u1 is exact after any number of iterations, and the rest of the spectrum is zero.
    col = torch.tensor([3.0, -1.0, 2.0, 0.0])
    rank1 = (col[:, None] * torch.tensor([1.0, 2.0, -1.0])[None, :]).expand(2, 4, 3).contiguous()
    u = dominant_singular_vector(rank1, method, 3)
    torch.testing.assert_close(u, (col / col.norm()).expand(2, 4), rtol=0, atol=1e-6)
    # One zero row and tiny values: still finite.
    tiny = torch.full((2, 4, 6), 1e-30)
    tiny[:, 0] = 0
    assert torch.isfinite(dominant_singular_vector(tiny, method, 5)).all()


def test_power_is_finite_and_accurate_in_float16_with_huge_values():
    g = torch.Generator().manual_seed(4)
    m = torch.rand(4, 64, 128, generator=g) * 1e4  # post-ReLU-like, large
    half = m.half()
    # What the guard protects against: a naive sum of squares overflows float16.
    assert torch.isinf((half * half).sum(-1)).any()
    u = power_dominant_singular_vector(half, 10)
    assert u.dtype == torch.float16
    assert torch.isfinite(u).all()
    torch.testing.assert_close(u.float(), exact_dominant_singular_vector(half.float()), rtol=0, atol=2e-3)
    # Mixed signs and a zero region in the same float16 batch.
    mixed = (torch.randn(3, 32, 64, generator=g) * 2e4).clamp(-6e4, 6e4).half()
    mixed[1] = 0
    assert torch.isfinite(power_dominant_singular_vector(mixed, 10)).all()


def test_batched_call_equals_separate_calls():
    a, _ = matrices_with_spectrum([1.0, 0.4], batch=3, channels=8, n=12, seed=5)
    b, _ = matrices_with_spectrum([1.0, 0.4], batch=5, channels=8, n=30, seed=6)
    ua, ub = dominant_singular_vectors([a, b], "power", 20)
    torch.testing.assert_close(ua, power_dominant_singular_vector(a, 20))
    torch.testing.assert_close(ub, power_dominant_singular_vector(b, 20))


def test_deterministic():
    m, _ = matrices_with_spectrum([1.0, 0.9, 0.8], batch=4, channels=16, n=20, seed=7)
    assert torch.equal(power_dominant_singular_vector(m, 7), power_dominant_singular_vector(m, 7))


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown SVD method"):
        dominant_singular_vector(torch.ones(1, 2, 2), "qr", 3)
