"""The Runner interface on ONNX Runtime and PyTorch: metadata, checks, predict, errors, and backend agreement."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from runtime_helpers import TINY_SIZE, rewrite_metadata, street_frames

from lrnnet.data.preprocess import preprocess_batch, resize_frame
from lrnnet.errors import InputError, MissingDependencyError
from lrnnet.export.metadata import read_model_info
from lrnnet.runtime import open_runner
from lrnnet.runtime.onnxruntime_runner import OnnxRuntimeRunner, providers_for
from lrnnet.runtime.torch_runner import TorchRunner, model_info_for


@pytest.fixture(scope="module")
def ort_runner(tiny_onnx):
    with open_runner(tiny_onnx) as runner:
        yield runner


@pytest.fixture(scope="module")
def torch_runner(tiny_checkpoint):
    with open_runner(tiny_checkpoint, size=TINY_SIZE) as runner:
        yield runner


def test_onnxruntime_runner_reads_the_metadata(ort_runner, tiny_onnx):
    assert isinstance(ort_runner, OnnxRuntimeRunner)
    assert ort_runner.backend == "onnxruntime" and ort_runner.precision == "fp32"
    assert ort_runner.info == read_model_info(tiny_onnx)
    assert ort_runner.info.input_size == TINY_SIZE
    assert ort_runner.fixed_batch == 1
    assert "CPU" in ort_runner.device


def test_infer_returns_logits_and_records_its_time(ort_runner):
    batch = preprocess_batch(street_frames(TINY_SIZE, 1), TINY_SIZE)
    logits = ort_runner.infer(batch)
    assert logits.shape == (1, 19, *TINY_SIZE) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    assert ort_runner.last_infer_ms > 0


def test_predict_resizes_and_matches_argmax_of_infer(ort_runner):
    frames = street_frames((100, 300), 3)  # not the model's size: predict resizes with THE preprocess function
    labels = ort_runner.predict(frames)
    assert labels.shape == (3, *TINY_SIZE) and labels.dtype == np.int32
    for frame, got in zip(frames, labels):  # the fixed batch of 1 is fed in chunks, in order
        expected = ort_runner.infer(preprocess_batch([frame], TINY_SIZE)).argmax(axis=1)[0]
        np.testing.assert_array_equal(got, expected)
    assert len(np.unique(labels)) > 1  # a calibrated model on a street scene predicts several classes


@pytest.mark.parametrize(("batch", "message"), [
    (np.zeros((1, 3, *TINY_SIZE), np.float64), "float32"),
    (np.zeros((1, 3, 64, 128), np.float32), "128x256"),
    (np.zeros((2, 3, *TINY_SIZE), np.float32), "batches of 1"),
    (np.zeros((1, *TINY_SIZE, 3), np.float32), "N x 3 x H x W"),
    ([[1.0]], "numpy array"),
])
def test_bad_batches_are_refused_with_the_reason(ort_runner, batch, message):
    with pytest.raises(InputError, match=message):
        ort_runner.infer(batch)


def test_closed_runner_refuses_to_run(tiny_onnx):
    runner = open_runner(tiny_onnx)
    with runner:
        pass
    assert runner.closed
    with pytest.raises(RuntimeError, match="closed"):
        runner.infer(np.zeros((1, 3, *TINY_SIZE), np.float32))
    runner.close()  # closing twice is harmless


def test_auto_says_which_backend_it_chose(tiny_onnx, caplog):
    caplog.set_level(logging.INFO, logger="lrnnet")
    logger = logging.getLogger("lrnnet")
    logger.addHandler(caplog.handler)  # lrnnet's logger does not propagate once a CLI has set it up
    try:
        open_runner(tiny_onnx).close()
    finally:
        logger.removeHandler(caplog.handler)
    assert any("OnnxRuntimeRunner" in r.getMessage() and "onnxruntime" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_backends_agree_on_the_same_input(ort_runner, torch_runner):
    """PyTorch FP32 vs ONNX Runtime FP32 on street scenes: logits close, argmax agreeing on > 99.9% of pixels."""
    batch = preprocess_batch(street_frames(TINY_SIZE, 2, seed=5), TINY_SIZE)
    reference = np.concatenate([torch_runner.infer(b[None]) for b in batch])
    exported = np.concatenate([ort_runner.infer(b[None]) for b in batch])
    scale = np.abs(reference).max()
    assert np.abs(exported - reference).max() <= 1e-3 * max(scale, 1.0)
    agreement = (exported.argmax(1) == reference.argmax(1)).mean()
    assert agreement > 0.999
    assert len(np.unique(reference.argmax(1))) > 1  # the comparison is not between two constant maps


def test_torch_runner_derives_its_info_from_the_checkpoint(torch_runner):
    info = torch_runner.info
    assert info.input_size == TINY_SIZE and info.num_classes == 19 and info.stride == 8
    assert info.model_config == torch_runner.model.config
    assert torch_runner.backend == "torch" and torch_runner.precision == "fp32"


def test_in_memory_torch_runner_restores_training_mode(tiny_checkpoint):
    from lrnnet.models import load_checkpoint

    model = load_checkpoint(tiny_checkpoint).train()
    with TorchRunner(model=model, info=model_info_for(model, (64, 128))) as runner:
        assert not model.training
        labels = runner.predict(street_frames((64, 128), 2))
        assert labels.shape == (2, 64, 128)
    assert model.training


def test_torch_runner_refuses_what_it_cannot_do(tiny_checkpoint):
    from lrnnet.models import load_checkpoint

    model = load_checkpoint(tiny_checkpoint)
    with pytest.raises(InputError, match="multiples"):
        TorchRunner(model=model, size=(100, 200))
    with pytest.raises(InputError, match="CUDA"):
        TorchRunner(model=model, size=TINY_SIZE, device="cpu", fp16=True)
    info = model_info_for(model, TINY_SIZE)
    info.num_classes, info.class_names = 5, info.class_names[:5]
    with pytest.raises(InputError, match="5"):
        TorchRunner(model=model, info=info)


@pytest.mark.slow
def test_graph_with_preprocessing_and_argmax(in_graph_onnx, ort_runner):
    """uint8 NHWC input and labels output: predict gives the same labels as the plain export."""
    with open_runner(in_graph_onnx) as runner:
        assert runner.info.preprocess_in_graph and runner.info.argmax_in_graph and runner.fixed_batch is None
        frames = street_frames((100, 300), 3, seed=3)
        batch = runner.prepare(frames)
        assert batch.dtype == np.uint8 and batch.shape == (3, *TINY_SIZE, 3)
        np.testing.assert_array_equal(batch[1], resize_frame(frames[1], TINY_SIZE))
        labels = runner.predict(frames)
        assert labels.shape == (3, *TINY_SIZE) and labels.dtype == np.int32
        reference = ort_runner.predict(frames)
        assert (labels == reference).mean() > 0.999
        with pytest.raises(InputError, match="uint8"):
            runner.infer(preprocess_batch(frames, TINY_SIZE))


# -- bad model files: one InputError each ---------------------------------------------------------------

def test_missing_model(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_runner(tmp_path / "nope.onnx")


def test_unknown_model_type(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match="unknown model type"):
        open_runner(path)


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "lrnnet.onnx"
    path.write_text("this is not a model")
    with pytest.raises(InputError, match="not a readable ONNX"):
        open_runner(path)


def test_onnx_without_lrnnet_metadata(tiny_onnx, tmp_path):
    path = rewrite_metadata(tiny_onnx, tmp_path / "foreign.onnx", strip=True)
    with pytest.raises(InputError, match="not an lrnnet export"):
        open_runner(path)


def test_onnx_whose_metadata_contradicts_its_graph(tiny_onnx, tmp_path):
    wrong_size = rewrite_metadata(tiny_onnx, tmp_path / "size.onnx", input_height=64)
    with pytest.raises(InputError, match="128x256"):
        open_runner(wrong_size)
    names = [f"c{i}" for i in range(7)]
    wrong_classes = rewrite_metadata(tiny_onnx, tmp_path / "classes.onnx", num_classes=7, class_names=names)
    with pytest.raises(InputError, match="classes"):
        open_runner(wrong_classes)


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="checkpoint"):
        open_runner(path)


def test_backend_that_cannot_run_the_file(tiny_onnx):
    with pytest.raises(InputError, match="cannot run"):
        open_runner(tiny_onnx, backend="torch")
    with pytest.raises(InputError, match="unknown backend"):
        open_runner(tiny_onnx, backend="tflite")


def test_engine_without_tensorrt_says_what_to_install(tiny_onnx, tmp_path):
    from lrnnet.engine.device import tensorrt_version

    if tensorrt_version() is not None:
        pytest.skip("TensorRT is installed here: the missing-TensorRT message cannot be seen")
    engine = tmp_path / "lrnnet_fp16.engine"
    engine.write_bytes(b"not really an engine")
    with pytest.raises(InputError, match="sidecar"):  # no sidecar: not built by lrnnet-build-engine
        open_runner(engine)
    from lrnnet.engine.sidecar import EngineSidecar, write_sidecar

    info = read_model_info(tiny_onnx)
    write_sidecar(engine, EngineSidecar(backend="tensorrt", precision="fp16", source_onnx=str(tiny_onnx),
                                        source_sha256="0" * 64, input_profile={}, model_info=info.__dict__,
                                        tensorrt_version="10.13.0.35", gpu_name="NVIDIA H100", compute_capability="9.0"))
    with pytest.raises(MissingDependencyError, match="lrnnet\\[tensorrt\\]"):
        open_runner(engine)


def test_onnxruntime_device_requests():
    assert providers_for("cpu", ["CPUExecutionProvider"]) == (["CPUExecutionProvider"], None)
    assert providers_for(None, ["CPUExecutionProvider"]) == (["CPUExecutionProvider"], None)
    with pytest.raises(MissingDependencyError, match="onnxruntime-gpu"):
        providers_for("cuda", ["CPUExecutionProvider"])
    providers, index = providers_for("tensorrt:1", ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                    "CPUExecutionProvider"])
    assert index == 1 and providers[0][0] == "TensorrtExecutionProvider" and providers[-1] == "CPUExecutionProvider"
    with pytest.raises(InputError, match="unknown device"):
        providers_for("gpu0", ["CPUExecutionProvider"])
    for unicode_digit in ("cuda:²", "tensorrt:١"):  # digits to str.isdigit, not to int()
        with pytest.raises(InputError, match="unknown device"):
            providers_for(unicode_digit, ["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_copied_model_runs_the_same(tiny_onnx, tmp_path, ort_runner):
    """The runner depends on nothing beside the file (metadata travels inside the ONNX)."""
    copy = shutil.copy(tiny_onnx, tmp_path / "moved.onnx")
    frames = street_frames(TINY_SIZE, 1, seed=2)
    with open_runner(copy) as runner:
        np.testing.assert_array_equal(runner.predict(frames), ort_runner.predict(frames))


# -- thread counts from the CPUs this process may use (lrnnet._threads) ------------------------------


def _cgroup_tree(tmp_path, proc_line: str, files: dict[str, str]):
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(proc_line + "\n")
    root = tmp_path / "cgroup"
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return proc, root


def test_cgroup_v2_quota_is_read_from_the_process_cgroup(tmp_path):
    from lrnnet._threads import _cgroup_quota

    proc, root = _cgroup_tree(tmp_path, "0::/job/7", {"job/7/cpu.max": "150000 100000\n"})
    assert _cgroup_quota(proc, root) == 1.5
    proc, root = _cgroup_tree(tmp_path / "unlimited", "0::/", {"cpu.max": "max 100000\n"})
    assert _cgroup_quota(proc, root) is None


def test_cgroup_v1_cfs_quota_is_read(tmp_path):
    from lrnnet._threads import _cgroup_quota

    proc, root = _cgroup_tree(tmp_path, "4:cpu,cpuacct:/docker/abc",
                              {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000\n",
                               "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"})
    assert _cgroup_quota(proc, root) == 2.0
    proc, root = _cgroup_tree(tmp_path / "unlimited", "4:cpu,cpuacct:/",
                              {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert _cgroup_quota(proc, root) is None


def test_usable_cpus_is_within_the_affinity_mask():
    import os

    from lrnnet._threads import usable_cpus

    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


def test_thread_plan_leaves_a_cpu_to_the_rest_when_there_are_few(monkeypatch):
    from lrnnet._threads import thread_plan

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert (thread_plan(1).torch, thread_plan(1).onnxruntime) == (1, 1)
    assert (thread_plan(2).torch, thread_plan(2).onnxruntime, thread_plan(2).opencv) == (1, 2, 1)
    assert thread_plan(8).torch == 7
    assert thread_plan(2).describe() == "threads: torch 1, onnxruntime 2, opencv 1 (2 CPUs usable)"
    assert thread_plan(1).describe().endswith("(1 CPU usable)")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice is what torch will use: report it
    assert thread_plan(2).torch == 3


def test_no_report_says_1_threads(tiny_onnx):
    from lrnnet._threads import count_text

    assert (count_text(1), count_text(2)) == ("1 thread", "2 threads")
    with OnnxRuntimeRunner(tiny_onnx, device="cpu", threads=1) as runner:
        assert "1 thread)" in runner.device and "1 threads" not in runner.device


@pytest.mark.parametrize("shape", [(1, 19, 256, 512), (2, 19, 300, 1024), (1, 2, 7, 5), (3, 4, 33, 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_class_argmax_is_numpys_argmax(shape, dtype):
    """Oracle: np.argmax over the class axis, id for id: random logits (a height that is no multiple of the
    row chunk), logits rounded to integers (ties: the first class wins) and NaNs in several places."""
    from lrnnet.runtime.runner import class_argmax

    rng = np.random.default_rng(7)
    logits = rng.standard_normal(shape).astype(dtype)
    tied = np.round(logits)
    with_nan = logits.copy()
    with_nan[0, 0, 0, 0] = with_nan[-1, -1, -1, -1] = with_nan[0, shape[1] // 2, shape[2] // 2, 1] = np.nan
    for case in (logits, tied, with_nan):
        got = class_argmax(case)
        assert got.dtype == np.int32 and got.shape == (shape[0], *shape[2:])
        np.testing.assert_array_equal(got, np.argmax(case, axis=1))
