"""The spectral non-local family: shapes, identity at init, factorised == dense, degree-0 safety, export."""

from __future__ import annotations

import pytest
import torch
from model_helpers import calibrate_batchnorm, street_like_batch

from lrnnet.models import CONTEXT_MODULES, LRNNet, build_model
from lrnnet.models.nonlocal_family import (
    NONLOCAL_VARIANTS,
    NonLocalBlock,
    double_attention_affinity,
    softmax_affinity,
    spectral_affinity,
)

VARIANTS = sorted(NONLOCAL_VARIANTS)
FACTORISED = [v for v in VARIANTS if NONLOCAL_VARIANTS[v].affinity != "softmax"]
AFFINITIES = {"softmax": softmax_affinity, "double_attention": double_attention_affinity,
              "spectral": spectral_affinity}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


def active_block(variant: str, dense: bool = False, seed: int = 0) -> NonLocalBlock:
    """A block whose output BatchNorm is no longer zero, so the non-local branch shows in the output."""
    torch.manual_seed(seed)
    block = NonLocalBlock(128, variant, 64, dense=dense)
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.1, 0.1)
        block.norm.running_mean.normal_(0, 0.1)
        block.norm.running_var.uniform_(0.5, 2.0)
    return block.eval()


def features(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Encoder-like input of a context module: non-negative (post-ReLU), spatially coherent."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 128, max(1, h // 4), max(1, w // 4), generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return torch.relu(smooth + 0.3 * torch.randn(n, 128, h, w, generator=g))


def test_every_variant_is_a_context_module():
    assert set(VARIANTS) == {"nl", "ns", "a2", "snl", "gsnl"}
    assert set(VARIANTS) < set(CONTEXT_MODULES)


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shapes(variant):
    model = LRNNet(num_classes=5, context=variant).eval()
    assert isinstance(model.context, NonLocalBlock) and model.context.variant == variant
    with torch.no_grad():
        assert model(torch.randn(2, 3, 40, 72)).shape == (2, 5, 40, 72)
        x = features(2, 5, 9, seed=1)  # 45 positions, not a multiple of anything
        assert active_block(variant)(x).shape == x.shape


@pytest.mark.parametrize("variant", VARIANTS)
def test_new_block_is_the_identity(variant):
    """Zero-initialised output BatchNorm, also after LRNNet's own initialisation of every BN to one."""
    model = LRNNet(context=variant)
    x = features(2, 8, 16, seed=2)
    with torch.no_grad():
        assert torch.equal(model.context.eval()(x), x)
        assert torch.equal(model.context.train()(x), x)  # batch statistics: still zero out
    assert torch.count_nonzero(model.context.norm.weight) == 0
    # The branch is not dead: with the BatchNorm scale moved off zero the block changes its input.
    with torch.no_grad():
        model.context.norm.weight.fill_(1.0)
        assert (model.context.eval()(x) - x).abs().max() > 0.1 * x.abs().max()


def test_config_rebuilds_a_family_model():
    model = LRNNet(num_classes=3, context="gsnl", svn_channels=32)
    rebuilt = build_model(model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.config["context"] == "gsnl"
    assert rebuilt.context.theta.out_channels == 32  # svn_channels is the family's C'
    assert rebuilt.context.project.in_channels == 3 * 32  # one W_k per Chebyshev term


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="variant"):
        NonLocalBlock(128, "cgnl")


@pytest.mark.parametrize("variant", FACTORISED)
def test_factorised_block_equals_dense_block(variant):
    factorised, dense = active_block(variant), active_block(variant, dense=True)
    dense.load_state_dict(factorised.state_dict())
    x = features(2, 12, 20, seed=3)
    with torch.no_grad():
        got, want = factorised(x), dense(x)
    assert relative_error(got, want) < 1e-5
    assert (want - x).abs().max() > 0.1 * x.abs().max()  # the compared branch is not negligible


@pytest.mark.parametrize("affinity", ["double_attention", "spectral"])
def test_factorised_affinity_equals_dense(affinity):
    g = torch.Generator().manual_seed(4)
    theta, phi, z = (torch.randn(2, 16, 300, generator=g) for _ in range(3))
    build = AFFINITIES[affinity]
    dense, factorised = build(theta, phi, dense=True), build(theta, phi, dense=False)
    assert relative_error(factorised(z), dense(z)) < 1e-5
    # Chebyshev's second term applies the operator to its own output: the error must not grow.
    assert relative_error(factorised(factorised(z)), dense(dense(z))) < 1e-5


@pytest.mark.parametrize("affinity", ["softmax", "double_attention", "spectral"])
@pytest.mark.parametrize("dense", [True, False])
def test_affinity_against_its_definition(affinity, dense):
    """Oracles from the definitions: row-stochastic A maps 1 to 1; A^ maps sqrt(d) to sqrt(d)."""
    g = torch.Generator().manual_seed(5)
    theta, phi = torch.randn(2, 8, 50, generator=g, dtype=torch.float64), \
        torch.randn(2, 8, 50, generator=g, dtype=torch.float64)
    apply = AFFINITIES[affinity](theta, phi, dense=dense)
    if affinity == "spectral":
        t, p = theta.relu(), phi.relu()
        m = t.transpose(1, 2) @ p
        a = 0.5 * (m + m.transpose(1, 2))  # built here from the paper's formula, loops-free but direct
        fixed_point = a.sum(dim=2).sqrt().unsqueeze(1)  # D^-1/2 A D^-1/2 D^1/2 1 = D^1/2 1
        assert torch.allclose(apply(fixed_point), fixed_point, rtol=1e-10, atol=1e-12)
        # ... and A^ itself, on a basis: entry (i, j) is A_ij / sqrt(d_i d_j).
        d = a.sum(dim=2)
        dd = d.unsqueeze(2) * d.unsqueeze(1)
        want = torch.where(dd > 0, a / dd.sqrt(), torch.zeros_like(a))  # degree 0 -> 0
        assert torch.allclose(apply(torch.eye(50, dtype=torch.float64).expand(2, 50, 50)), want, atol=1e-12)
    else:
        ones = torch.ones(2, 1, 50, dtype=torch.float64)
        assert torch.allclose(apply(ones), ones, atol=1e-12)


def test_factorised_spectral_is_float16_safe():
    """Large, same-signed activations (post-ReLU embeddings of 1e3, features of 2e4: all in float16
    range, as is the result A^ Z ~ Z) overflow float16 in the textbook form, where a degree sums
    N x C' products of 1e6, but not in the factorised one, which matches the float64 reference.
    Both of its scalings are needed here: without 1/sqrt(N) the degrees reach ~N C' / 2 > 65504, and
    without Z's max-abs scaling the C' x C' products sum N features of 2e4."""
    g = torch.Generator().manual_seed(6)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(1, 64, 2048, generator=g, dtype=torch.float64)

    theta, phi, z = 1e3 * uniform(0.5, 1.0), 1e3 * uniform(0.5, 1.0), 2e4 * uniform(0.5, 1.0)
    want = spectral_affinity(theta, phi, dense=True)(z)
    half = [t.half() for t in (theta, phi, z)]
    assert not torch.isfinite(spectral_affinity(*half[:2], dense=True)(half[2])).all()
    got = spectral_affinity(*half[:2], dense=False)(half[2])
    assert torch.isfinite(got).all()
    assert relative_error(got, want) < 1e-2


@pytest.mark.parametrize("variant", VARIANTS)
def test_degree_zero_gives_no_nan(variant):
    """All-zero input, an all-zero half of the map, and ReLU-dead embeddings: finite values and grads."""
    zero = torch.zeros(1, 128, 6, 10)
    half_zero = features(1, 6, 10, seed=7)
    half_zero[..., :5] = 0
    for x in (zero, half_zero):
        for dense in (False, True):
            block = active_block(variant, dense=dense)
            y = block(x.clone().requires_grad_(True))
            assert torch.isfinite(y).all()
            y.square().sum().backward()
            assert all(torch.isfinite(p.grad).all() for p in block.parameters() if p.grad is not None)
    # Dead embeddings: theta's weights negative on a non-negative input, so ReLU(theta) == 0 and every
    # degree of the spectral graph is 0; A^ Z must then be 0 (the block adds only its Z W1 term).
    x = features(1, 6, 10, seed=8)
    blocks = [active_block(variant, dense=d) for d in (False, True)]
    for block in blocks:
        with torch.no_grad():
            block.theta.weight.copy_(-block.theta.weight.abs())
    with torch.no_grad():
        got, want = blocks[0](x), blocks[1](x)
    assert torch.isfinite(got).all() and torch.isfinite(want).all()
    assert relative_error(got, want) < 1e-5


EXPORT_SIZE = (32, 192)  # a 4 x 24 feature map: N = 96 positions, no other dim of the graph is 96


@pytest.fixture(scope="module")
def calibrated_backbone() -> dict[str, torch.Tensor]:
    """Encoder and classifier weights with BatchNorm statistics set on street-like images, once."""
    torch.manual_seed(0)
    model = calibrate_batchnorm(LRNNet(context="none"), [street_like_batch(2, *EXPORT_SIZE, seed=9)])
    return model.state_dict()


def _trained_like(variant: str, backbone: dict[str, torch.Tensor]) -> LRNNet:
    torch.manual_seed(0)
    model = LRNNet(context=variant)
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    assert not unexpected and all(key.startswith("context.") for key in missing)
    with torch.no_grad():  # as a trained block would be: its output BatchNorm is no longer zero
        model.context.norm.weight.fill_(1.0)
        # Kaiming-initialised embeddings of the encoder's features give softmax logits of +-60, a
        # one-hot attention whose output jumps with float32 rounding (NL/NS then differ by 1e-4
        # between any two float32 implementations); a quarter of that keeps attention soft.
        model.context.theta.weight.mul_(0.25)
        model.context.phi.weight.mul_(0.25)
    return model.eval()


def _has_square_tensor(graph, n: int) -> bool:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(graph)
    for value in inferred.graph.value_info:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if dims.count(n) >= 2:
            return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_export_passes_graph_checks_and_onnx_runtime_verification(variant, calibrated_backbone, tmp_path):
    """Through the exporter's library API: op checks, ONNX checker, ORT vs PyTorch on structured images."""
    import onnx

    from lrnnet.export import ExportOptions, export_onnx_report

    model = _trained_like(variant, calibrated_backbone)
    with torch.no_grad():  # the verified graph really contains a working non-local branch
        f = model.encoder(street_like_batch(1, *EXPORT_SIZE, seed=10))
        assert (model.context(f) - f).abs().max() > 0.1 * f.abs().max()
    report = export_onnx_report(model, tmp_path / f"{variant}.onnx",
                                ExportOptions(height=EXPORT_SIZE[0], width=EXPORT_SIZE[1], verify_scenes=1))
    assert report.verification is not None and report.verification.passed
    assert report.verification.max_rel is not None and report.verification.max_rel < 1e-4
    assert report.info.model_config["context"] == variant
    # Factorised variants hold no N x N tensor; NL/NS cannot avoid one (the check can see it).
    n = (EXPORT_SIZE[0] // model.input_stride) * (EXPORT_SIZE[1] // model.input_stride)
    graph = onnx.load(str(report.path))
    assert _has_square_tensor(graph, n) == (NONLOCAL_VARIANTS[variant].affinity == "softmax")
