"""verify_onnx on tiny graphs (a 1x1 convolution): every figure, branch and message, in milliseconds.

The export-level gates are in test_verify_gates.py (the real LRNNet); these pin the verifier itself
with small ONNX graphs exported here, fast enough for mutation testing.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from lrnnet.errors import InputError
from lrnnet.export.verify import (
    Tolerance,
    VerificationError,
    VerificationReport,
    verification_frames,
    verify_onnx,
)

SIZE = (16, 32)


class Conv(torch.nn.Module):
    """A fixed 1x1 convolution, 3 -> 4 classes; optionally argmax (int32) and uint8 NHWC input."""

    def __init__(self, scale: float = 1.0, bias0: float = 0.0, labels: bool = False, uint8: bool = False,
                 classes: int = 4) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, classes, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(classes, 3, 1, 1, generator=generator) * scale)
            self.conv.bias.copy_(torch.randn(classes, generator=generator) * 0.1 * scale)
            self.conv.bias[0] += bias0
        self.labels, self.uint8 = labels, uint8

    def forward(self, x):
        if self.uint8:
            x = x.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        y = self.conv(x)
        return y.argmax(1).to(torch.int32) if self.labels else y


def _onnx(module: torch.nn.Module, batch: int = 1) -> bytes:
    shape = (batch, *SIZE, 3) if module.uint8 else (batch, 3, *SIZE)
    example = torch.zeros(shape, dtype=torch.uint8 if module.uint8 else torch.float32)
    buffer = io.BytesIO()
    torch.onnx.export(module.eval(), (example,), buffer, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["out"])
    return buffer.getvalue()


@pytest.fixture(scope="module")
def graphs():
    return {"logits": _onnx(Conv()), "labels": _onnx(Conv(labels=True)), "uint8": _onnx(Conv(uint8=True)),
            "batch2": _onnx(Conv(), batch=2)}


def _verify(graph, reference, **options):
    defaults = {"uint8_nhwc": False, "labels_out": False, "scenes": 1}
    return verify_onnx(graph, reference.eval(), [(1, *SIZE)], **{**defaults, **options})


def test_an_exact_graph_passes_with_its_figures(graphs):
    report = _verify(graphs["logits"], Conv())
    assert report.passed and report.images == 3 and report.shapes == [(1, 3, *SIZE)]
    assert report.max_abs is not None and report.max_rel is not None
    assert 0 <= report.max_abs < 1e-5 and 0 <= report.max_rel < 1e-6 and report.argmax_agreement == 1.0
    assert report.tolerance == Tolerance()


def test_a_scaled_graph_fails_by_its_relative_difference(graphs):
    with pytest.raises(VerificationError) as caught:
        _verify(graphs["logits"], Conv(scale=1.0 + 1e-3))  # PyTorch 0.1% larger than the graph
    message = str(caught.value)
    assert message.startswith("the ONNX graph disagrees with PyTorch: max abs diff ")
    assert "max rel diff 1.00e-03" in message or "max rel diff 9.99e-04" in message, message
    assert message.endswith("tolerance: max rel diff 1e-04, argmax agreement >= 99.9%")
    # Half the tolerance passes, with the difference measured.
    report = _verify(graphs["logits"], Conv(scale=1.0 + 5e-5))
    assert report.max_rel == pytest.approx(5e-5, rel=0.05)
    assert report.max_abs is not None and report.max_abs > 0
    loose = _verify(graphs["logits"], Conv(scale=1.0 + 1e-3), tolerance=Tolerance(max_rel=2e-3))
    assert loose.passed and loose.tolerance == Tolerance(max_rel=2e-3)


def test_the_relative_difference_is_against_the_largest_logit(graphs):
    reference = Conv()
    report = _verify(graphs["logits"], Conv(scale=1.0 + 5e-5))
    frames = verification_frames(SIZE, scenes=1)
    from lrnnet.data.preprocess import preprocess

    feeds = [preprocess(f, SIZE) for f in frames]
    with torch.no_grad():
        largest = [float(reference(torch.from_numpy(x)).abs().max()) for x in feeds]
        diffs = [float((Conv(scale=1.0 + 5e-5)(torch.from_numpy(x)) - reference(torch.from_numpy(x))).abs().max())
                 for x in feeds]
    assert report.max_rel == pytest.approx(max(d / s for d, s in zip(diffs, largest)), rel=1e-2)
    assert report.max_abs == pytest.approx(max(diffs), rel=1e-2)


def test_labels_are_verified_by_argmax_agreement(graphs):
    report = _verify(graphs["labels"], Conv(labels=True), labels_out=True)
    assert report.passed and report.max_abs is None and report.max_rel is None and report.argmax_agreement == 1.0
    with pytest.raises(VerificationError, match=r"^the ONNX graph disagrees with PyTorch: argmax agreement \d+\.\d{3}%"):
        _verify(graphs["labels"], Conv(labels=True, bias0=0.5), labels_out=True)
    shifted = _verify(graphs["labels"], Conv(labels=True, bias0=0.5), labels_out=True,
                      tolerance=Tolerance(min_argmax_agreement=0.0))
    assert 0.0 < shifted.argmax_agreement < 0.999


def test_logits_are_verified_by_argmax_agreement_too(graphs):
    # A class-0 shift small against the logits' scale but enough to flip pixels: rel passes, argmax fails.
    with pytest.raises(VerificationError, match="argmax agreement"):
        _verify(graphs["logits"], Conv(bias0=0.2), tolerance=Tolerance(max_rel=1.0))


def test_uint8_nhwc_graphs_get_resized_uint8_frames(graphs):
    report = _verify(graphs["uint8"], Conv(uint8=True), uint8_nhwc=True)
    assert report.passed and report.shapes == [(1, *SIZE, 3)] and report.max_rel < 1e-6


def test_batches_are_filled_up_and_every_shape_recorded_once(graphs):
    report = verify_onnx(graphs["batch2"], Conv().eval(), [(2, *SIZE)], uint8_nhwc=False, labels_out=False,
                         scenes=3)
    assert report.images == 6 and report.shapes == [(2, 3, *SIZE)]  # 5 frames in batches of 2: the last filled up


def test_a_shape_mismatch_is_named(graphs):
    with pytest.raises(VerificationError, match=r"ONNX output shape \(1, 4, 16, 32\) differs from PyTorch's "
                                                r"\(1, 5, 16, 32\) for input \(1, 3, 16, 32\)"):
        _verify(graphs["logits"], Conv(classes=5))


class _Broken(torch.nn.Module):
    uint8 = False

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.conv = Conv()

    def forward(self, x):
        out = self.conv(x)
        return torch.where(out > 0, torch.full_like(out, self.value), out)


def test_a_pytorch_model_giving_nan_is_bad_input_and_an_onnx_nan_is_a_failure(graphs):
    with pytest.raises(InputError, match="outputs NaN/Inf on the verification images"):
        _verify(graphs["logits"], _Broken(float("nan")))
    with pytest.raises(InputError, match="NaN/Inf"):
        _verify(graphs["logits"], _Broken(float("inf")))
    nan_graph = _onnx(_Broken(float("nan")))
    with pytest.raises(VerificationError, match="max abs diff inf"):
        _verify(nan_graph, Conv(), tolerance=Tolerance(max_rel=1e30, min_argmax_agreement=0.0))


def test_summary_text():
    report = VerificationReport(shapes=[(1, 3, 16, 32), (2, 3, 8, 8)], images=5, max_abs=1.5e-6, max_rel=2.25e-7,
                                argmax_agreement=0.99987)
    assert report.summary() == ("max abs diff 1.50e-06, max rel diff 2.25e-07; argmax agreement 99.987% "
                                "on 5 images (1x3x16x32, 2x3x8x8)")
    labels = VerificationReport(shapes=[(1, 16, 32, 3)], images=3, argmax_agreement=1.0)
    assert labels.summary() == "argmax agreement 100.000% on 3 images (1x16x32x3)"


def test_verification_frames():
    frames = verification_frames((24, 40), scenes=2, seed=1)
    assert len(frames) == 4 and all(f.shape == (24, 40, 3) and f.dtype == np.uint8 for f in frames)
    gradient, checker = frames[2], frames[3]
    assert gradient[0, 0].tolist() == [0, 0, 255] and gradient[-1, -1].tolist() == [255, 255, 0]
    assert sorted({tuple(c) for c in checker.reshape(-1, 3).tolist()}) == [(15, 40, 120), (230, 200, 20)]
    assert checker[0, 0].tolist() == [15, 40, 120] and checker[0, 4].tolist() == [230, 200, 20]  # cells of 4
    again = verification_frames((24, 40), scenes=2, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))
    assert not np.array_equal(verification_frames((24, 40), scenes=1, seed=2)[0], frames[0])
    assert len(verification_frames((24, 40))) == 5  # three scenes by default


def test_the_agreement_is_the_fraction_of_pixels(graphs):
    import onnxruntime as ort

    from lrnnet.data.preprocess import preprocess

    reference = Conv(labels=True, bias0=0.5).eval()
    report = verify_onnx(graphs["labels"], reference, [(1, *SIZE)], uint8_nhwc=False, labels_out=True,
                         tolerance=Tolerance(min_argmax_agreement=0.0))  # the default: three scenes
    assert report.images == 5
    session = ort.InferenceSession(graphs["labels"], providers=["CPUExecutionProvider"])
    agree = total = 0
    for frame in verification_frames(SIZE):
        feed = preprocess(frame, SIZE)
        with torch.no_grad():
            expected = reference(torch.from_numpy(feed)).numpy()
        got = session.run(None, {"input": feed})[0]
        agree, total = agree + int((expected == got).sum()), total + expected.size
    assert report.argmax_agreement == agree / total


def test_a_summary_with_only_one_figure():
    assert VerificationReport(max_abs=1.0, max_rel=None, images=1, shapes=[(1, 3, 8, 8)]).summary() == \
        "argmax agreement 100.000% on 1 images (1x3x8x8)"


def test_verification_frame_patterns():
    assert all(np.array_equal(a, b) for a, b in zip(verification_frames((24, 40)), verification_frames((24, 40), seed=0)))
    gradient = verification_frames((24, 41), scenes=0)[0]
    assert gradient[0, 20].tolist() == [128, 0, 128] and gradient[12, 0].tolist() == [0, 133, 255]
    checker = verification_frames((24, 40), scenes=0)[1]
    dark, bright = [15, 40, 120], [230, 200, 20]
    assert checker[1, 0].tolist() == dark and checker[0, 8].tolist() == dark and checker[4, 4].tolist() == dark
    assert checker[4, 0].tolist() == bright and checker[0, 12].tolist() == bright
    large = verification_frames((128, 256), scenes=0)[1]  # cells of 128 // 16 = 8
    assert large[0, 7].tolist() == dark and large[0, 8].tolist() == bright
    odd = verification_frames((100, 160), scenes=0)[1]  # cells of 100 // 16 = 6 (an integer)
    assert odd[0, 5].tolist() == dark and odd[0, 6].tolist() == bright


def test_the_nan_message_in_full(graphs):
    with pytest.raises(InputError) as caught:
        _verify(graphs["logits"], _Broken(float("nan")))
    assert str(caught.value) == ("the model outputs NaN/Inf on the verification images: the checkpoint's weights are "
                                 "broken (a diverged training run?); export a healthy checkpoint")


def test_an_all_zero_reference_measures_against_float32s_tiny():
    # max |torch| is 0: the difference is divided by float32's smallest normal, so any difference fails.
    # (Small logits, so that the quotient stays finite: about 1e36.)
    with pytest.raises(VerificationError) as caught:
        _verify(_onnx(Conv(scale=1e-3)), Conv(scale=0.0), tolerance=Tolerance(max_rel=1e30, min_argmax_agreement=0.0))
    message = str(caught.value)
    max_abs = float(message.split("max abs diff ", 1)[1].split(",", 1)[0])
    max_rel = float(message.split("max rel diff ", 1)[1].split(";", 1)[0])
    assert 0 < max_abs < 1 and max_rel == pytest.approx(max_abs / float(np.finfo(np.float32).tiny), rel=1e-2)
