"""The export's gates, each pinned through the public path so that breaking it fails a test.

* verification's default tolerance (1e-4 of the logits' scale, 99.9% argmax agreement);
* a graph whose ONNX form really computes something else than its PyTorch forward (a custom
  autograd Function whose ``symbolic`` differs from its ``forward``) fails the export, writes nothing;
* an export with argmax in the graph is verified by its argmax agreement;
* a forbidden op fails ``export_onnx_report`` and ``lrnnet-export`` itself (exit 1, one line, no file).

The models are the tiny checkpoint's LRNNet with one extra step on the logits (a subclass, or a
context module registered in the model's table): real exports, real ONNX Runtime, nothing mocked.
"""

from __future__ import annotations

import pytest
import torch

from lrnnet.export import ExportOptions
from lrnnet.export.checks import GraphCheckError
from lrnnet.export.onnx import export_onnx_report
from lrnnet.export.verify import Tolerance, VerificationError, VerificationReport
from lrnnet.models import LRNNet, load_checkpoint

SIZE = (64, 128)


def _options(**overrides) -> ExportOptions:
    return ExportOptions(height=SIZE[0], width=SIZE[1], verify_scenes=1, **overrides)


class _ScaledInOnnx(torch.autograd.Function):
    """Identity in PyTorch; ``x * factor`` in the ONNX graph (the exporter uses ``symbolic``)."""

    @staticmethod
    def forward(ctx, x, factor: float):
        return x.clone()

    @staticmethod
    def symbolic(g, x, factor: float):
        return g.op("Mul", x, g.op("Constant", value_t=torch.tensor(factor, dtype=torch.float32)))


class _BiasedInOnnx(torch.autograd.Function):
    """Identity in PyTorch; in ONNX, ``bias`` added to class 0's logit (flips the pixels near a tie)."""

    @staticmethod
    def forward(ctx, x, bias: float):
        return x.clone()

    @staticmethod
    def symbolic(g, x, bias: float):
        shift = torch.zeros(1, 19, 1, 1)
        shift[0, 0] = bias
        return g.op("Add", x, g.op("Constant", value_t=shift))


class ScaledLogits(LRNNet):
    """The LRNNet whose exported logits are ``factor`` times PyTorch's."""

    factor = 1.0

    def forward(self, x):
        return _ScaledInOnnx.apply(super().forward(x), self.factor)


class BiasedLogits(LRNNet):
    bias = 0.0

    def forward(self, x):
        return _BiasedInOnnx.apply(super().forward(x), self.bias)


class ModLogits(LRNNet):
    """Computes the same logits through ``fmod`` by a large number: an ONNX ``Mod`` (forbidden) node."""

    def forward(self, x):
        return torch.fmod(super().forward(x), 1.0e4)


@pytest.fixture(scope="module")
def tiny_state(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint, svd="power")
    return dict(model.config), model.state_dict()


def _build(cls, tiny_state, **attributes):
    config, state = tiny_state
    model = cls(**config)
    model.load_state_dict(state)
    for name, value in attributes.items():
        setattr(model, name, value)
    return model.eval()


def _only_file(directory):
    return sorted(p.name for p in directory.iterdir())


def test_default_tolerance_is_1e4_of_the_logit_scale_and_999_argmax():
    assert Tolerance() == Tolerance(max_rel=1e-4, min_argmax_agreement=0.999)
    assert ExportOptions().tolerance == Tolerance()  # what lrnnet-export runs with
    # The edges: exactly at the tolerance passes, a hair beyond fails, and each figure is checked alone.
    assert VerificationReport(max_abs=1.0, max_rel=1e-4, argmax_agreement=0.999).passed
    assert not VerificationReport(max_abs=1.0, max_rel=1.01e-4, argmax_agreement=1.0).passed
    assert not VerificationReport(max_abs=1.0, max_rel=0.0, argmax_agreement=0.9989).passed
    assert VerificationReport(max_abs=None, max_rel=None, argmax_agreement=0.999).passed  # labels output
    assert not VerificationReport(max_abs=None, max_rel=None, argmax_agreement=0.998).passed


@pytest.mark.slow  # a real export (a few seconds on 2 shared cores)
def test_export_whose_onnx_diverges_from_pytorch_fails_and_writes_nothing(tiny_state, tmp_path):
    target = tmp_path / "out" / "lrnnet.onnx"
    model = _build(ScaledLogits, tiny_state, factor=1.0 + 3e-4)  # 3x the tolerance, argmax untouched
    with pytest.raises(VerificationError, match=r"max rel diff 3\.\d+e-04.*tolerance: max rel diff 1e-04"):
        export_onnx_report(model, target, _options())
    assert not target.exists()
    assert not target.parent.exists() or _only_file(target.parent) == []  # no temporary file left either


@pytest.mark.slow  # a real export (a few seconds on 2 shared cores)
def test_export_within_tolerance_passes_and_measures_the_difference(tiny_state, tmp_path):
    # The same model with a third of the tolerance: exported, and the figure is the real difference
    # (so a verification that measured nothing, or against itself, is caught too).
    model = _build(ScaledLogits, tiny_state, factor=1.0 + 3e-5)
    report = export_onnx_report(model, tmp_path / "lrnnet.onnx", _options())
    assert report.verification is not None and report.verification.max_rel is not None
    assert 2e-5 < report.verification.max_rel < 4e-5
    assert report.verification.argmax_agreement == 1.0
    assert (tmp_path / "lrnnet.onnx").stat().st_size == report.size_bytes


@pytest.mark.slow  # a real export (a few seconds on 2 shared cores)
def test_export_with_argmax_in_the_graph_is_verified_by_argmax_agreement(tiny_state, tmp_path):
    # Class 0's logit is 0.03 higher in ONNX than in PyTorch: a few percent of the pixels change class.
    model = _build(BiasedLogits, tiny_state, bias=0.03)
    target = tmp_path / "labels.onnx"
    with pytest.raises(VerificationError, match=r"argmax agreement 9\d\.\d+%.*>= 99\.9%"):
        export_onnx_report(model, target, _options(argmax=True))
    assert not target.exists() and _only_file(tmp_path) == []
    # With the agreement bound lowered it exports, and reports what it measured: some but few pixels.
    report = export_onnx_report(model, target, _options(argmax=True, tolerance=Tolerance(min_argmax_agreement=0.5)))
    assert report.verification is not None and report.verification.max_rel is None
    assert 0.9 < report.verification.argmax_agreement < 0.999


@pytest.mark.slow  # a real export (a few seconds on 2 shared cores)
def test_forbidden_op_fails_the_export(tiny_state, tmp_path):
    model = _build(ModLogits, tiny_state)
    target = tmp_path / "lrnnet.onnx"
    with pytest.raises(GraphCheckError, match=r"Mod x1 \(not supported by TensorRT"):
        export_onnx_report(model, target, _options(verify=False))
    assert _only_file(tmp_path) == []


class _ModContext(torch.nn.Module):
    """A context module someone might add: correct numbers, but through an ONNX Mod node."""

    def forward(self, x):
        return torch.fmod(x, 1.0e4)


@pytest.mark.slow  # a real export (a few seconds on 2 shared cores)
def test_lrnnet_export_fails_on_a_forbidden_op(tiny_state, tmp_path, monkeypatch, capsys):
    from lrnnet.cli.export import main
    from lrnnet.models import save_checkpoint
    from lrnnet.models.lrnnet import CONTEXT_MODULES

    # A new context module in the model's own table (as a contributor would add one): the checkpoint
    # names it, lrnnet-export builds the model from the checkpoint, and its graph has a Mod node.
    monkeypatch.setitem(CONTEXT_MODULES, "mod-test", lambda channels, **_: _ModContext())
    config, state = tiny_state
    model = LRNNet(**{**config, "context": "mod-test"})
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("context.")})
    checkpoint = tmp_path / "mod.pth"
    save_checkpoint(checkpoint, model.eval(), epoch=0, metrics={})
    target = tmp_path / "out.onnx"
    for extra in ([], ["--no-verify"]):  # the op check runs with and without verification
        capsys.readouterr()
        status = main([str(checkpoint), "-o", str(target), "--height", str(SIZE[0]), "--width", str(SIZE[1]),
                       "--verify-scenes", "1", "--no-progress", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 1, err
        # Progress of the steps, then the one error line, last; no traceback.
        errors = [line for line in err if "error" in line.lower()]
        assert len(errors) == 1 and errors[0] == err[-1], err
        assert err[-1].startswith("lrnnet-export: error: internal error: GraphCheckError") and "Mod x1" in err[-1]
        assert not any(line.startswith("Traceback") for line in err)
        assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mod.pth"]
