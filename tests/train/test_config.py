"""TrainConfig: defaults from the recipe, and every bad option refused once with a clear message."""

from pathlib import Path

import pytest
import torch

from lrnnet.errors import InputError
from lrnnet.runtime.latency import PAPER_INPUT_SIZE
from lrnnet.train.config import DEFAULT_EPOCHS, DEFAULT_SYNTHETIC_EPOCHS, SYNTHETIC_SIZE, TrainConfig


def test_defaults_real_data_use_the_paper_size(tmp_path):
    config = TrainConfig(data=tmp_path, device="cpu").resolved()
    assert config.size == PAPER_INPUT_SIZE and config.crop == PAPER_INPUT_SIZE
    assert config.epochs == DEFAULT_EPOCHS and config.device == "cpu"
    assert (config.optimizer, config.lr, config.poly_power, config.batch) == ("adam", 5e-4, 0.9, 8)


def test_defaults_synthetic_write_into_the_out_folder(tmp_path):
    config = TrainConfig(synthetic=True, out=tmp_path / "run", device="cpu").resolved()
    assert config.size == SYNTHETIC_SIZE and config.epochs == DEFAULT_SYNTHETIC_EPOCHS
    assert config.data_root == tmp_path / "run" / "synthetic"
    # With --data, --synthetic means "generate the scenes there".
    assert TrainConfig(synthetic=True, data=tmp_path / "s").resolved().data_root == tmp_path / "s"


@pytest.mark.parametrize("kwargs,message", [
    ({}, "no training data"),
    ({"data": "MISSING"}, "is not a directory"),
    ({"synthetic": True, "size": (64, 128), "crop": (128, 128)}, "larger than the training size"),
    ({"synthetic": True, "size": (64, 128), "crop": (60, 120)}, "multiples of the model's stride 8"),
    ({"synthetic": True, "size": (100, 200)}, "multiples of the model's stride 8"),
    ({"synthetic": True, "epochs": 2, "iters": 5}, "not both"),
    ({"synthetic": True, "batch": 0}, "--batch must be a positive integer"),
    ({"synthetic": True, "lr": -1.0}, "--lr must be a positive"),
    ({"synthetic": True, "optimizer": "rmsprop"}, "--optimizer must be one of"),
    ({"synthetic": True, "scale_range": (2.0, 0.5)}, "scale range"),
    ({"synthetic": True, "amp": True, "device": "cpu"}, "--amp"),
    ({"synthetic": True, "device": "tpu"}, "--device must be cpu or cuda"),
    ({"synthetic": True, "resume": "nope.pth"}, "no such checkpoint"),
    ({"synthetic": True, "seed": -1}, "--seed must be an integer from 0 to 4294967295"),
    ({"synthetic": True, "seed": 2**32}, "--seed must be an integer from 0"),
    ({"synthetic": True, "weight_decay": 1e30}, "--weight-decay must be >= 0 and below 1"),
    ({"synthetic": True, "weight_decay": -1e-4}, "--weight-decay must be >= 0"),
    # 1x1-pixel images, crops of padding only: nothing to learn
    ({"synthetic": True, "size": (64, 128), "scale_range": (1e-9, 1e-9)}, "shrink to 1x1, less than the model's stride"),
    ({"synthetic": True, "size": (64, 128), "scale_range": (0.1, 1.0)}, "shrink to 6x13"),
    # beyond the one image bound of every command: OpenCV would try to allocate 24 GB
    ({"synthetic": True, "size": (64, 128), "scale_range": (1000, 1000)}, "grow to 64000x128000, over the bound of 8192"),
    ({"synthetic": True, "size": (4096, 8192), "scale_range": (0.5, 1.5)}, "over the bound of 8192 a side"),
])
def test_bad_options_are_refused_with_a_clear_message(kwargs, message, tmp_path):
    if kwargs.get("data") == "MISSING":
        kwargs = {**kwargs, "data": tmp_path / "missing"}
    with pytest.raises(InputError, match=message):
        TrainConfig(out=tmp_path, **kwargs).resolved()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(tmp_path):
    with pytest.raises(InputError, match="no CUDA GPU"):
        TrainConfig(synthetic=True, out=tmp_path, device="cuda").resolved()


def test_to_dict_is_json_ready(tmp_path):
    import json

    config = TrainConfig(synthetic=True, out=tmp_path, device="cpu").resolved()
    assert json.loads(json.dumps(config.to_dict()))["size"] == list(SYNTHETIC_SIZE)
    assert Path(config.to_dict()["out"]) == tmp_path


def test_the_scale_bounds_are_inclusive(tmp_path):
    """At the stride and at the image bound exactly, the scales are accepted."""
    TrainConfig(synthetic=True, out=tmp_path, size=(64, 128), scale_range=(0.125, 64.0), device="cpu").resolved()
    TrainConfig(synthetic=True, out=tmp_path, seed=2**32 - 1, weight_decay=0.5, device="cpu").resolved()
