"""Checkpoints: both formats round-trip, and every bad input fails with one clear InputError."""

from __future__ import annotations

import pickle

import pytest
import torch

from lrnnet.errors import InputError
from lrnnet.models import LRNNet, build_model, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def model() -> LRNNet:
    torch.manual_seed(0)
    m = LRNNet(num_classes=5, power_iterations=4)
    with torch.no_grad():  # non-default BatchNorm buffers, so a round trip that drops them shows
        for module in m.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    return m


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_training_checkpoint_round_trip(model, tmp_path):
    path = tmp_path / "run" / "model.pth"
    save_checkpoint(path, model, epoch=3, miou=0.5)
    raw = torch.load(path, weights_only=True)
    assert raw["model_config"] == model.config and raw["epoch"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["model.pth"]  # no temporary file left behind

    loaded = load_checkpoint(path)
    assert not loaded.training
    assert loaded.config == model.config
    assert_same_weights(loaded, model)


def test_overrides_switch_svd_method(model, tmp_path):
    path = tmp_path / "model.pth"
    save_checkpoint(path, model)
    loaded = load_checkpoint(path, svd="exact")
    assert loaded.config["svd"] == "exact" and loaded.config["num_classes"] == 5
    assert_same_weights(loaded, model)


def test_plain_state_dict_infers_num_classes(model, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path)
    assert loaded.config["num_classes"] == 5
    assert_same_weights(loaded, model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_non_finite_weights_are_refused_naming_the_tensor(model, tmp_path):
    state = model.state_dict()
    sixth = list(state)[5]
    path = tmp_path / "diverged.pth"
    torch.save({**state, sixth: state[sixth] * float("nan")}, path)  # a plain state dict: no digest to catch it
    with pytest.raises(InputError, match=rf"diverged.pth has NaN/Inf weights in 1 tensors, e.g. \['{sixth}'\]"):
        load_checkpoint(path)
    saved = tmp_path / "saved.pth"  # lrnnet's own format: the digest matches the NaN it was saved with
    broken = LRNNet(**model.config)
    broken.load_state_dict({**state, sixth: state[sixth] * float("inf")})
    save_checkpoint(saved, broken)
    with pytest.raises(InputError, match=rf"saved.pth has NaN/Inf weights .*'{sixth}'"):
        load_checkpoint(saved)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth")


def test_directory(tmp_path):
    with pytest.raises(InputError, match="not a file"):
        load_checkpoint(tmp_path)


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(InputError, match="cannot read .* as a PyTorch checkpoint"):
        load_checkpoint(path)


def test_truncated_checkpoint(model, tmp_path):
    path = tmp_path / "model.pth"
    save_checkpoint(path, model)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="cannot read"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "obj, match", [([1, 2, 3], "holds a list"), ({"lr": 0.1}, "is not a state dict"), ({}, "no state dict")]
)
def test_not_a_state_dict(obj, match, tmp_path):
    path = tmp_path / "thing.pth"
    torch.save(obj, path)
    with pytest.raises(InputError, match=match):
        load_checkpoint(path)


def test_state_dict_of_another_model(tmp_path):
    path = tmp_path / "linear.pth"
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    with pytest.raises(InputError, match="not an LRNNet state dict"):
        load_checkpoint(path)


def test_missing_and_unexpected_keys_are_named(model, tmp_path):
    state = dict(model.state_dict())
    del state["encoder.0.conv.weight"]
    state["head.extra.weight"] = torch.zeros(1)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    with pytest.raises(
        InputError,
        match=r"1 missing keys, e\.g\. \['encoder\.0\.conv\.weight'\].*"
        r"1 unexpected keys, e\.g\. \['head\.extra\.weight'\]",
    ):
        load_checkpoint(path)


def test_shape_mismatch_is_named(model, tmp_path):
    path = tmp_path / "model.pth"
    save_checkpoint(path, model)
    with pytest.raises(
        InputError, match=r"classifier\.weight: checkpoint \(5, 128, 1, 1\) vs model \(19, 128, 1, 1\)"
    ):
        load_checkpoint(path, num_classes=19)


def test_bad_model_config(model, tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"model": model.state_dict(), "model_config": {"num_classes": 5, "depth": 3}}, path)
    with pytest.raises(InputError, match="bad model config"):
        load_checkpoint(path)
    torch.save({"model": model.state_dict(), "model_config": {"num_classes": 5, "svd": "qr"}}, path)
    with pytest.raises(InputError, match="svd must be one of"):
        load_checkpoint(path)


def test_build_model_rejects_non_dict():
    with pytest.raises(InputError, match="must be a dict"):
        build_model(["num_classes", 19])


def test_failed_save_leaves_existing_file_intact(model, tmp_path):
    path = tmp_path / "model.pth"
    save_checkpoint(path, model, note="first")
    before = path.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError)):
        save_checkpoint(path, model, callback=lambda: None)  # not picklable: torch.save fails midway
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]


def test_pickled_module_is_refused_not_executed(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(LRNNet(num_classes=3), path)  # a pickled nn.Module, not a state dict
    with pytest.raises(InputError, match="objects other than tensors"):
        load_checkpoint(path)
