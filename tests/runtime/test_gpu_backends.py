"""GPU paths of the runners: PyTorch CUDA (FP16 autocast, CUDA graphs), ONNX Runtime CUDA EP (I/O binding),
and TensorRT engines (sidecar check, CUDA graph, the video command). Skipped without a GPU / TensorRT."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from runtime_helpers import TINY_SIZE, read_video, street_frames

from lrnnet.data.preprocess import preprocess_batch
from lrnnet.engine.device import current_gpu, tensorrt_version
from lrnnet.errors import InputError
from lrnnet.runtime import open_runner


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _ort_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


needs_cuda = pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU with a CUDA build of PyTorch")
needs_ort_cuda = pytest.mark.skipif(not _ort_cuda(), reason="needs onnxruntime-gpu with the CUDA provider")


@pytest.fixture(scope="module")
def needs_tensorrt() -> None:
    """Checked when a TensorRT test runs, not at collection: importing tensorrt (even its stubs) at collection
    would put it in sys.modules for the whole session (tests/test_imports.py checks that nothing does)."""
    if tensorrt_version() is None or current_gpu() is None:
        pytest.skip("needs TensorRT 10/11 and a CUDA GPU")


def _batches(n: int = 2, seed: int = 4) -> list[np.ndarray]:
    return [preprocess_batch([f], TINY_SIZE) for f in street_frames(TINY_SIZE, n, seed=seed)]


@pytest.fixture(scope="module")
def cpu_reference(tiny_onnx):
    with open_runner(tiny_onnx, device="cpu") as runner:
        return [runner.infer(b) for b in _batches()]


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_fp32_and_fp16_against_the_cpu(tiny_checkpoint, cpu_reference):
    with open_runner(tiny_checkpoint, device="cuda", size=TINY_SIZE, fp16=False) as fp32:
        assert fp32.precision == "fp32" and "CUDA" in fp32.device
        for batch, reference in zip(_batches(), cpu_reference):
            np.testing.assert_allclose(fp32.infer(batch), reference, atol=1e-2 * max(1.0, np.abs(reference).max()))
    with open_runner(tiny_checkpoint, device="cuda", size=TINY_SIZE) as fp16:  # autocast FP16 by default
        assert fp16.precision == "fp16"
        for batch, reference in zip(_batches(), cpu_reference):
            assert (fp16.infer(batch).argmax(1) == reference.argmax(1)).mean() > 0.99


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_graph_replays_the_same_results_for_new_inputs(tiny_checkpoint):
    with open_runner(tiny_checkpoint, device="cuda", size=TINY_SIZE) as plain, \
            open_runner(tiny_checkpoint, device="cuda", size=TINY_SIZE, cuda_graph=True) as graphed:
        outputs = []
        for batch in _batches(3):  # the graph's static input is refilled each call
            expected, got = plain.infer(batch), graphed.infer(batch)
            np.testing.assert_allclose(got, expected, atol=1e-2 * max(1.0, np.abs(expected).max()))
            outputs.append(got)
        assert not np.array_equal(outputs[0], outputs[1])


@pytest.mark.gpu
@needs_ort_cuda
def test_onnxruntime_cuda_with_io_binding(tiny_onnx, cpu_reference):
    with open_runner(tiny_onnx, device="cuda") as runner:
        assert runner.cuda_index == 0 and "CUDA" in runner.device
        for batch, reference in zip(_batches(), cpu_reference):  # the bound buffers are reused
            np.testing.assert_allclose(runner.infer(batch), reference, atol=1e-2 * max(1.0, np.abs(reference).max()))


@pytest.fixture(scope="module")
def fp16_engine(needs_tensorrt, tiny_onnx, tmp_path_factory):
    from lrnnet.engine.build import BuildOptions, build_engine

    folder = tmp_path_factory.mktemp("engine")
    result = build_engine(BuildOptions(onnx=tiny_onnx, precision="fp16", backend="tensorrt",
                                       output=folder / "lrnnet_fp16.engine"))
    return result.engine


@pytest.mark.tensorrt
def test_tensorrt_engine_agrees_with_onnxruntime(fp16_engine, cpu_reference):
    with open_runner(fp16_engine) as runner:
        assert runner.backend == "tensorrt" and runner.precision == "fp16"
        for batch, reference in zip(_batches(), cpu_reference):
            logits = runner.infer(batch)
            assert logits.shape == reference.shape and logits.dtype == np.float32
            assert (logits.argmax(1) == reference.argmax(1)).mean() > 0.99
        assert runner.last_infer_ms > 0


@pytest.mark.tensorrt
def test_tensorrt_cuda_graph_and_device_step(fp16_engine):
    with open_runner(fp16_engine) as plain, open_runner(fp16_engine, cuda_graph=True) as graphed:
        for batch in _batches(3):
            np.testing.assert_allclose(graphed.infer(batch), plain.infer(batch), rtol=0, atol=1e-3)
        step, sync = graphed.device_step((1, 3, *TINY_SIZE), np.float32)
        for _ in range(3):
            step()
        sync()


@pytest.mark.tensorrt
def test_engine_from_another_tensorrt_is_refused_naming_both(fp16_engine, tmp_path):
    import shutil

    from lrnnet.engine.sidecar import read_sidecar, sidecar_path, write_sidecar

    engine = shutil.copy(fp16_engine, tmp_path / "lrnnet_fp16.engine")
    sidecar = dataclasses.replace(read_sidecar(fp16_engine), tensorrt_version="9.9.9")
    write_sidecar(engine, sidecar)
    with pytest.raises(InputError, match="9.9.9") as error:
        open_runner(engine)
    assert tensorrt_version() in str(error.value)
    assert json.loads(sidecar_path(engine).read_text())["tensorrt_version"] == "9.9.9"


@pytest.mark.tensorrt
def test_video_command_on_an_engine(fp16_engine, synthetic_video, tmp_path, capsys):
    from lrnnet.cli.infer import main

    rc = main([str(synthetic_video), "--model", str(fp16_engine), "-o", str(tmp_path / "out.mp4"),
               "--report", str(tmp_path / "r.json"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["backend"] == "tensorrt" and report["frames"] == 12
    assert len(read_video(tmp_path / "out.mp4")) == 12
