"""LRNNet: interface, size, input checks, and power iteration vs exact SVD inside the network."""

from __future__ import annotations

import pytest
import torch
from model_helpers import street_like_batch

from lrnnet.models import DEFAULT_POWER_ITERATIONS, LRNNet, lrnnet
from lrnnet.models.lrnnet import split_into_regions
from lrnnet.models.svd import exact_dominant_singular_vector, power_dominant_singular_vector

PAPER_PARAMETERS = 680_000


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_matches_paper():
    n = count_parameters(LRNNet(num_classes=19))
    assert abs(n - PAPER_PARAMETERS) / PAPER_PARAMETERS < 0.03, n


def test_svd_method_does_not_change_parameters():
    exact, power = LRNNet(svd="exact").state_dict(), LRNNet(svd="power", power_iterations=3).state_dict()
    assert {k: v.shape for k, v in exact.items()} == {k: v.shape for k, v in power.items()}


def test_config_rebuilds_the_model():
    model = lrnnet(num_classes=7, svd="exact", power_iterations=12, region_grids=(2, 4))
    assert model.config == {
        "num_classes": 7,
        "context": "svn",
        "svd": "exact",
        "power_iterations": 12,
        "svn_channels": 64,
        "region_grids": [2, 4],
    }
    rebuilt = LRNNet(**model.config)
    rebuilt.load_state_dict(model.state_dict())  # same keys, same shapes
    assert rebuilt.config == model.config
    assert LRNNet.input_stride == model.input_stride == 8


def test_context_none_has_no_svn():
    model = LRNNet(context="none").eval()
    assert not any("context" in name for name, _ in model.named_parameters())
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 128)).shape == (1, 19, 64, 128)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"svd": "qr"},
        {"power_iterations": 0},
        {"power_iterations": 2.5},
        {"context": "bogus"},
        {"num_classes": 0},
        {"region_grids": ()},
    ],
)
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        LRNNet(**kwargs)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((1, 3, 500, 1000), "multiples of 8"),
        ((1, 3, 512, 1020), "multiples of 8"),
        ((1, 3, 0, 64), "multiples of 8"),
        ((1, 4, 64, 64), r"\(N, 3, H, W\)"),
        ((3, 64, 64), r"\(N, 3, H, W\)"),
    ],
)
def test_bad_input_shape_raises_value_error(shape, match):
    with pytest.raises(ValueError, match=match):
        LRNNet()(torch.zeros(shape))


def test_integer_input_raises_value_error():
    with pytest.raises(ValueError, match="floating-point"):
        LRNNet()(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


@pytest.mark.parametrize("size", [(8, 8), (40, 72), (96, 200)])
def test_any_multiple_of_the_stride_works(size):
    # Feature maps of 1x1, 5x9 and 12x25: none a multiple of the 4x4 / 8x8 region grids.
    model = LRNNet(num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()


def test_region_split_pads_with_zeros_and_keeps_order():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    regions = split_into_regions(x, 2)  # 5x6 -> padded 6x6 -> four 3x3 regions per image
    assert regions.shape == (2 * 4, 3, 9)
    torch.testing.assert_close(regions[0], x[0, :, :3, :3].reshape(3, 9))
    torch.testing.assert_close(regions[4 + 3, :, :6], x[1, :, 3:5, 3:6].reshape(3, 6))
    assert torch.equal(regions[4 + 3, :, 6:], torch.zeros(3, 3))  # the padded row


def test_power_and_exact_logits_agree_at_512x1024(trained_like_model):
    """With shared weights and 30 power iterations, svd="power" reproduces svd="exact".

    Meaningful because the model's activations are trained-like (BatchNorm calibrated on
    street-like images, see conftest) and the SVN branch is checked to move the features
    substantially, so a wrong or unconverged singular vector would show in the logits.
    """
    exact_model = trained_like_model
    power_model = LRNNet(**{**exact_model.config, "svd": "power", "power_iterations": 30}).eval()
    power_model.load_state_dict(exact_model.state_dict())
    x = street_like_batch(1, 512, 1024, seed=3)

    svn_io = {}
    hook = exact_model.context.project.register_forward_hook(
        lambda module, args, out: svn_io.update(context=out, x=args[0])
    )
    encoder_out = {}
    hook2 = exact_model.context.register_forward_hook(lambda m, args, out: encoder_out.update(x=args[0]))
    with torch.no_grad():
        exact = exact_model(x)
        power = power_model(x)
    hook.remove()
    hook2.remove()
    # The SVN's contribution is a large fraction of the features it is added to.
    assert svn_io["context"].norm() > 0.3 * encoder_out["x"].norm()

    relative = ((power - exact).abs().max() / exact.abs().max()).item()
    assert relative < 1e-3, relative
    agreement = (power.argmax(1) == exact.argmax(1)).float().mean().item()
    assert agreement > 0.999, agreement


def test_power_matches_exact_on_real_svn_activations(trained_like_model):
    """The SVD inputs the network really produces: regions of the SVN's reduced feature map."""
    model = trained_like_model
    captured = {}
    hook = model.context.region_features.register_forward_hook(lambda m, a, out: captured.update(f=out))
    with torch.no_grad():
        model(street_like_batch(1, 512, 1024, seed=4))
    hook.remove()
    features = captured["f"].double()
    assert features.shape[1:] == (64, 64, 128)
    for grid in model.context.region_grids:
        regions = split_into_regions(features, grid)
        sigma = torch.linalg.svdvals(regions)
        assert (sigma[:, 0] > 0).all()  # no dead region: every comparison below is meaningful
        exact = exact_dominant_singular_vector(regions)
        errors = [
            (power_dominant_singular_vector(regions, k) - exact).norm(dim=-1).max().item() for k in (1, 3)
        ]
        default = (power_dominant_singular_vector(regions, DEFAULT_POWER_ITERATIONS) - exact).norm(dim=-1)
        assert errors[1] < errors[0]
        assert default.max().item() < 1e-5, (grid, default.max().item())


@pytest.mark.slow
def test_runs_at_1024x2048():
    model = LRNNet().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 1024, 2048))
    assert out.shape == (1, 19, 1024, 2048)
    assert torch.isfinite(out).all()
