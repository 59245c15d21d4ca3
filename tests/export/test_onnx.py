"""export_onnx: the graph computes what PyTorch computes, at every shape it claims, with its metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lrnnet
from lrnnet.data.labels import CLASS_NAMES, PALETTE_RGB
from lrnnet.data.preprocess import MEAN_RGB, STD_RGB
from lrnnet.errors import InputError
from lrnnet.export import ExportOptions, export_onnx, export_onnx_report
from lrnnet.export.metadata import LAYOUT_NCHW_FLOAT, LAYOUT_NHWC_UINT8_BGR, ModelInfo, read_model_info
from lrnnet.export.onnx import exportable_model
from lrnnet.export.verify import Tolerance, VerificationError
from lrnnet.models import LRNNet

MAX_REL = 1e-4
MIN_AGREEMENT = 0.999


def _graph_io(path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    return (inp.name, inp.type, inp.shape), (out.name, out.type, out.shape)


def test_tiny_export_matches_pytorch(tiny_onnx, oracle):
    result = oracle.compare(tiny_onnx, (128, 256), n=1)
    assert result.max_rel < MAX_REL
    assert result.agreement > MIN_AGREEMENT


def test_metadata_round_trip(tiny_onnx, tiny_checkpoint):
    config = torch.load(tiny_checkpoint, weights_only=True)["model_config"]
    info = read_model_info(tiny_onnx)
    assert info == ModelInfo(
        input_height=128, input_width=256, stride=LRNNet.input_stride, num_classes=19,
        class_names=list(CLASS_NAMES), palette=PALETTE_RGB.tolist(), mean=list(MEAN_RGB), std=list(STD_RGB),
        input_layout=LAYOUT_NCHW_FLOAT, batch=1, dynamic=False, power_iterations=config["power_iterations"],
        preprocess_in_graph=False, argmax_in_graph=False, precision="fp32",
        model_config={**config, "svd": "power"}, lrnnet_version=lrnnet.__version__,
    )
    assert _graph_io(tiny_onnx) == (("input", "tensor(float)", [1, 3, 128, 256]),
                                    ("logits", "tensor(float)", [1, 19, 128, 256]))


@pytest.mark.slow
def test_export_at_512x1024(reference_model, oracle, tmp_path):
    path = tmp_path / "lrnnet.onnx"
    # The exporter's own verification is tested at small sizes; here the oracle alone, to save time.
    report = export_onnx_report(reference_model, path, ExportOptions(height=512, width=1024, verify=False))
    assert report.verification is None and report.op_count == sum(report.op_counts.values())
    assert read_model_info(path).input_size == (512, 1024)
    result = oracle.compare(path, (512, 1024), n=1)
    assert result.max_rel < MAX_REL
    assert result.agreement > MIN_AGREEMENT


@pytest.mark.slow
def test_dynamic_export_at_two_sizes(reference_model, oracle, tmp_path):
    path = tmp_path / "dynamic.onnx"
    info = export_onnx(reference_model, path, ExportOptions(height=64, width=128, dynamic=True, verify=False))
    assert info.dynamic and info.stride == 8
    (_, _, input_shape), (_, _, output_shape) = _graph_io(path)
    assert input_shape == ["batch", 3, "height", "width"] and output_shape == ["batch", 19, "height", "width"]
    # Neither the traced size nor multiples of anything coarser than the stride 8 (72 = 8 * 9,
    # 136 = 8 * 17, ...), so the regions of the SVN's grids need padding; and another batch size.
    for size, n in (((72, 136), 1), ((88, 120), 2)):
        result = oracle.compare(path, size, n=n)
        assert result.max_rel < MAX_REL, size
        assert result.agreement > MIN_AGREEMENT, size


def test_preprocessing_in_graph_takes_uint8_bgr_frames(reference_model, oracle, tmp_path):
    path = tmp_path / "uint8.onnx"
    info = export_onnx(reference_model, path, ExportOptions(height=64, width=128, preprocess_in_graph=True,
                                                            verify=False))
    assert info.preprocess_in_graph and info.input_layout == LAYOUT_NHWC_UINT8_BGR
    assert _graph_io(path)[0] == ("input", "tensor(uint8)", [1, 64, 128, 3])
    # Compared with preprocess() + the model in PyTorch on frames of another size (resized first).
    frames = oracle.frames((96, 200), 1)
    got = oracle.run_onnx(path, oracle.onnx_input(frames, (64, 128), uint8_nhwc=True))
    expected = oracle.logits(frames, (64, 128))
    assert np.abs(got - expected).max() / np.abs(expected).max() < MAX_REL


def test_exact_svd_model_is_exported_in_power_form_without_touching_it():
    torch.manual_seed(0)
    exact = LRNNet(svd="exact", power_iterations=7).eval()
    before = {k: v.clone() for k, v in exact.state_dict().items()}
    power = exportable_model(exact, power_iterations=9)
    assert power is not exact
    assert power.config == {**exact.config, "svd": "power", "power_iterations": 9}
    assert exact.config["svd"] == "exact" and exact.config["power_iterations"] == 7
    assert all(torch.equal(before[k], v) for k, v in exact.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in power.state_dict().items())
    assert exportable_model(power, 9) is power  # already in export form: no copy
    trained = exportable_model(exact.train(), 9)
    assert exact.training and not trained.training  # a model in train mode is copied, not switched


def test_nan_weights_are_refused_before_export(reference_model):
    # Another iteration count makes a copy: the shared reference model stays intact.
    broken = exportable_model(reference_model, reference_model.config["power_iterations"] + 1)
    assert broken is not reference_model
    with torch.no_grad():
        broken.classifier.weight[0, 0] = float("nan")
    with pytest.raises(InputError, match=r"NaN/Inf weights in 1 tensors, e.g. \['classifier.weight'\]"):
        exportable_model(broken)


def test_failed_verification_writes_nothing(reference_model, tmp_path):
    path = tmp_path / "lrnnet.onnx"
    # No float32 graph can meet a 1e-12 relative tolerance: the real verification fails.
    options = ExportOptions(height=64, width=128, verify_scenes=0, simplify=False, tolerance=Tolerance(max_rel=1e-12))
    with pytest.raises(VerificationError, match="disagrees with PyTorch: max abs diff"):
        export_onnx(reference_model, path, options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"height": 0}, "height must be a positive integer"),
    ({"width": -8}, "width must be a positive integer"),
    ({"batch": 0}, "batch must be a positive integer"),
    ({"opset": 12}, "opset must be between 13 and 20"),
    ({"power_iterations": 0}, r"power iterations must be an integer in 1\.\.100"),
    ({"power_iterations": 101}, r"power iterations must be an integer in 1\.\.100"),
    ({"height": 8200}, "at most 8192 a side"),
])
def test_bad_options_are_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        ExportOptions(**kwargs)


def test_size_must_be_a_multiple_of_the_stride(reference_model, tmp_path):
    with pytest.raises(InputError, match=r"multiples of the network's stride 8, got 100x256 \(e.g. 96x256\)"):
        export_onnx(reference_model, tmp_path / "x.onnx", ExportOptions(height=100, width=256))
    assert list(tmp_path.iterdir()) == []
