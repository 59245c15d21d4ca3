"""The calibration cache is reused only for the model and settings it was made for.

Model A is calibrated and its ranges cached; model B (the same network retrained: other weights,
so another ONNX file) is then quantized with A's cache. The build must recalibrate (with images)
or refuse (without), say which and why on one line, and B's INT8 graph must carry B's scales.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from lrnnet.calib.cache import CalibrationKey, read_cache
from lrnnet.calib.graph import load_source_onnx
from lrnnet.calib.int8 import Int8Options, quantize_int8
from lrnnet.errors import InputError
from lrnnet.export import ExportOptions
from lrnnet.export.onnx import export_onnx_report
from lrnnet.models import load_checkpoint

SIZE = (64, 128)
CALIB = Int8Options(method="minmax", images=2)
pytestmark = pytest.mark.slow  # each test quantizes (a few seconds on 2 shared cores)


@pytest.fixture(scope="module")
def models(tiny_checkpoint, tmp_path_factory):
    """ONNX exports of model A (the tiny checkpoint) and model B (A's weights, retrained: changed)."""
    work = tmp_path_factory.mktemp("cache_gates")
    a = load_checkpoint(tiny_checkpoint, svd="power").eval()
    b = load_checkpoint(tiny_checkpoint, svd="power").eval()
    with torch.no_grad():  # a "retrained" B: every conv of the encoder's first stage scaled up
        for module in list(b.encoder.modules())[:12]:
            if isinstance(module, torch.nn.Conv2d):
                module.weight.mul_(1.5)
    paths = {}
    for name, model in (("a", a), ("b", b)):
        paths[name] = work / f"{name}.onnx"
        export_onnx_report(model, paths[name], ExportOptions(height=SIZE[0], width=SIZE[1], verify=False))
    return paths


@pytest.fixture
def lrnnet_log(caplog):
    caplog.set_level(logging.INFO, logger="lrnnet")
    logger = logging.getLogger("lrnnet")
    attach = not logger.propagate  # a command ran setup_logging in this process: records stop at lrnnet
    if attach:
        logger.addHandler(caplog.handler)
    yield caplog
    if attach:
        logger.removeHandler(caplog.handler)


def _activation_scales(model: onnx.ModelProto) -> dict[str, float]:
    """Tensor -> scale of every QuantizeLinear of an activation (weights are initializers)."""
    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    return {node.input[0]: float(inits[node.input[1]]) for node in model.graph.node
            if node.op_type == "QuantizeLinear" and node.input[0] not in inits}


def _cache_lines(caplog, cache, word: str) -> list[str]:
    """The log lines (INFO or above) that name `cache` and `word`, with the path itself taken out."""
    lines = [r.getMessage().replace(str(cache), "<cache>") for r in caplog.records
             if str(cache) in r.getMessage() and r.levelno >= logging.INFO]
    return [line for line in lines if word in line.lower()]


@pytest.fixture(scope="module")
def calibrated_a(models, synthetic_root, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache") / "calib.json"
    model, record = quantize_int8(load_source_onnx(models["a"]), synthetic_root, CALIB, cache)
    assert record.images_read == CALIB.images and cache.exists()
    return model, cache


@pytest.fixture(scope="module")
def fresh_b(models, synthetic_root):
    model, _ = quantize_int8(load_source_onnx(models["b"]), synthetic_root, CALIB)
    return model


def _copy(cache, tmp_path):
    copy = tmp_path / cache.name
    copy.write_bytes(cache.read_bytes())
    return copy


def test_a_cache_of_model_a_is_not_used_for_model_b(models, calibrated_a, fresh_b, synthetic_root, tmp_path,
                                                    lrnnet_log):
    int8_a, cache_of_a = calibrated_a
    cache = _copy(cache_of_a, tmp_path)
    int8_b, record = quantize_int8(load_source_onnx(models["b"]), synthetic_root, CALIB, cache)
    assert record.images_read == CALIB.images  # it recalibrated ...
    scales_a, scales_b, expected = (_activation_scales(m) for m in (int8_a, int8_b, fresh_b))
    assert scales_b == expected  # ... and B's graph has B's own scales,
    differing = [name for name in scales_a if not np.isclose(scales_a[name], scales_b[name], rtol=1e-3)]
    assert len(differing) > len(scales_a) // 2  # which are not A's
    # One line says what differs (the model) and what it does (calibrate again).
    (line,) = _cache_lines(lrnnet_log, cache, "model")
    assert "calibrat" in line.lower()
    # The cache now holds B's ranges: the next build of B reuses it and reads no image.
    again, record = quantize_int8(load_source_onnx(models["b"]), None, CALIB, cache)
    assert record.images_read == 0 and _activation_scales(again) == expected


def test_a_cache_of_model_a_without_images_is_refused_for_model_b(models, calibrated_a, tmp_path):
    cache = _copy(calibrated_a[1], tmp_path)
    before = cache.read_bytes()
    with pytest.raises(InputError, match="calibration images"):
        quantize_int8(load_source_onnx(models["b"]), None, CALIB, cache)
    assert cache.read_bytes() == before  # refused, and A's cache left as it was


def test_the_same_model_and_settings_reuse_the_cache(models, calibrated_a, tmp_path, lrnnet_log):
    int8_a, cache_of_a = calibrated_a
    cache = _copy(cache_of_a, tmp_path)
    model, record = quantize_int8(load_source_onnx(models["a"]), None, CALIB, cache)
    assert record.images_read == 0 and record.images == CALIB.images
    assert _activation_scales(model) == _activation_scales(int8_a)
    assert _cache_lines(lrnnet_log, cache, "reus")


@pytest.mark.parametrize("changed, word", [
    (Int8Options(method="minmax", images=3), "images"),
    (Int8Options(method="percentile", images=2), "method"),
])
def test_other_settings_recalibrate_and_say_which(models, calibrated_a, synthetic_root, tmp_path, lrnnet_log,
                                                  changed, word):
    cache = _copy(calibrated_a[1], tmp_path)
    _, record = quantize_int8(load_source_onnx(models["a"]), synthetic_root, changed, cache)
    assert record.images_read == changed.images
    (line,) = _cache_lines(lrnnet_log, cache, word)
    assert "calibrat" in line.lower()


def test_every_key_field_takes_part_in_the_match(calibrated_a):
    _, cache = calibrated_a
    stored = read_cache(cache, _key_of(cache))
    assert stored is not None
    key = stored.key
    for field, other in (("source_sha256", "0" * 64), ("method", "entropy"), ("images", key.images + 1),
                         ("percentile", 99.0)):
        changed = CalibrationKey(**{**key.__dict__, field: other})
        assert read_cache(cache, changed) is None, field


def _key_of(cache) -> CalibrationKey:
    import json

    return CalibrationKey(**json.loads(cache.read_text())["key"])
