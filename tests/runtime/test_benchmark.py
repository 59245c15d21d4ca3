"""The speed protocol (lrnnet.runtime.benchmark) and lrnnet-bench: JSON fields, shapes, bad inputs.

Speeds are never asserted (benchmarks/ prints them); the tests check what is measured and reported.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lrnnet.cli.bench import main
from lrnnet.errors import InputError
from lrnnet.export.metadata import LAYOUT_NHWC_UINT8_BGR, ModelInfo
from lrnnet.runtime._device import cpu_name
from lrnnet.runtime.benchmark import BenchmarkOptions, benchmark, sweep
from lrnnet.runtime.latency import PAPER_FPS, PAPER_SETTING
from lrnnet.runtime.runner import Runner


class CountingRunner(Runner):
    """A Runner without a known backend (the generic path: runner.infer on a host array) that counts calls."""

    backend = "counting"

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(info, device="test device", name="counting")
        self.shapes: list[tuple[int, ...]] = []
        self.dtypes: set[np.dtype] = set()

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        self.dtypes.add(batch.dtype)
        n, h, w = (batch.shape[0], *(batch.shape[1:3] if self.info.preprocess_in_graph else batch.shape[2:4]))
        return np.zeros((n, self.info.num_classes, h, w), np.float32)


def test_warmup_is_not_timed_and_every_iteration_is(tmp_path):
    runner = CountingRunner(ModelInfo(input_height=32, input_width=64, stride=8, dynamic=True))
    result = benchmark(runner, BenchmarkOptions(size=(16, 32), batch=2, warmup=3, iters=7))
    assert runner.shapes == [(2, 3, 16, 32)] * 10 and runner.dtypes == {np.dtype(np.float32)}
    assert result.latency["count"] == 7 and result.input_shape == (2, 3, 16, 32) and result.size == (16, 32)
    assert not result.input_on_device and "host" in result.method  # said, since copies are included
    lat = result.latency
    assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert result.fps == pytest.approx(2 * 1000.0 / lat["mean_ms"])  # images per second at batch 2
    paper = result.to_dict()["paper"]
    assert not paper["same_setting"] and any("batch 2" in d for d in paper["differences"])


def test_uint8_nhwc_graph_gets_uint8_nhwc_input():
    info = ModelInfo(input_height=32, input_width=64, stride=8, preprocess_in_graph=True,
                     input_layout=LAYOUT_NHWC_UINT8_BGR)
    runner = CountingRunner(info)
    result = benchmark(runner, BenchmarkOptions(warmup=0, iters=2))  # static: its own size, not 512x1024
    assert runner.shapes == [(1, 32, 64, 3)] * 2 and runner.dtypes == {np.dtype(np.uint8)}
    assert result.size == (32, 64)


def test_static_model_refuses_other_sizes_and_batches_before_timing():
    runner = CountingRunner(ModelInfo(input_height=32, input_width=64, stride=8, dynamic=False))
    with pytest.raises(InputError, match="--dynamic"):
        sweep(runner, [(32, 64), (64, 128)], [1], BenchmarkOptions(warmup=0, iters=1))
    assert runner.shapes == []  # nothing was timed before the refusal
    runner.fixed_batch = 1
    with pytest.raises(InputError, match="fixed batch of 1"):
        benchmark(runner, BenchmarkOptions(batch=4, iters=1))
    with pytest.raises(InputError, match="positive"):
        BenchmarkOptions(iters=0)


def test_torch_sweep_in_memory_model():
    import torch

    from lrnnet.models import LRNNet
    from lrnnet.runtime.torch_runner import TorchRunner

    torch.manual_seed(0)
    with TorchRunner(model=LRNNet(), size=(32, 64), device="cpu") as runner:
        results = sweep(runner, [(32, 64), (16, 32)], [1, 2], BenchmarkOptions(warmup=1, iters=2))
    assert [r.input_shape for r in results] == [(1, 3, 32, 64), (2, 3, 32, 64), (1, 3, 16, 32), (2, 3, 16, 32)]
    assert all(r.input_on_device and r.backend == "torch" and r.latency["count"] == 2 for r in results)


def _run(argv, capsys) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_cli_json_fields(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc, stdout, _ = _run(["--model", str(tiny_checkpoint), "--device", "cpu", "--height", "32", "--width", "64",
                          "--warmup", "1", "--iters", "3", "--threads", "1", "--json", str(out), "--no-progress",
                          "--no-peak"], capsys)
    assert rc == 0
    data = json.loads(out.read_text())
    assert "gemm_peaks" not in data and "roofline" not in data["runs"][0]  # --no-peak
    assert data["reference"] == PAPER_SETTING and data["host"]["cpu"] == cpu_name()
    assert data["host"]["cpu_threads"] >= 1
    (run,) = data["runs"]
    assert run["backend"] == "torch" and run["precision"] == "fp32" and "CPU" in run["device"]
    assert data["host"]["torch_threads"] == 1
    assert run["protocol"] == {"input_shape": [1, 3, 32, 64], "batch": 1, "warmup": 1, "iters": 3,
                               "input": "random", "input_on_device": True, "method": "torch tensor on CPU"}
    lat = run["latency_ms"]
    assert set(lat) == {"mean_ms", "p50_ms", "p90_ms", "p99_ms", "count"} and lat["count"] == 3
    assert run["fps"] == pytest.approx(1000.0 / lat["mean_ms"])
    assert run["paper"]["target_fps"] == PAPER_FPS and run["paper"]["same_setting"] is False
    assert run["paper"]["measured_fps"] == pytest.approx(run["fps"])
    assert "torch" in stdout and "vs paper" in stdout and cpu_name() in stdout


def test_fraction_of_peak_on_onnxruntime(tiny_onnx):
    """Each CPU result gets the model's operations over its mean latency, held against the matching peak."""
    from lrnnet.runtime.benchmark import add_peak_fraction, runner_threads
    from lrnnet.runtime.factory import open_runner
    from lrnnet.runtime.peak import GemmPeaks, model_ops

    peaks = GemmPeaks(fp32_gflops=50.0, u8s8_gops=200.0, threads=1, fp32_size=512, u8s8_size=512, method="given")
    with open_runner(tiny_onnx, backend="onnxruntime", threads=1) as runner:
        assert runner_threads(runner) == 1
        results = sweep(runner, [None], [1], BenchmarkOptions(warmup=0, iters=2))
        add_peak_fraction(results, runner, tiny_onnx, peaks)
    (result,) = results
    roof = result.roofline
    giga = model_ops(tiny_onnx).giga
    assert roof["model_gops"] == pytest.approx(giga) and roof["unit"] == "GFLOP/s" and roof["peak"] == 50.0
    assert roof["achieved"] == pytest.approx(giga / (result.latency["mean_ms"] / 1000.0))
    assert roof["fraction_of_peak"] == pytest.approx(roof["achieved"] / 50.0)
    assert result.to_dict()["roofline"] == roof and "GFLOP/s" in result.row()


@pytest.mark.slow
def test_cli_measures_peaks_in_the_same_run(tiny_checkpoint, tmp_path, capsys):
    from torch.utils.flop_counter import FlopCounterMode

    out = tmp_path / "bench.json"
    rc, stdout, _ = _run(["--model", str(tiny_checkpoint), "--device", "cpu", "--height", "32", "--width", "64",
                          "--warmup", "1", "--iters", "3", "--threads", "1", "--json", str(out), "--no-progress"], capsys)
    assert rc == 0
    data = json.loads(out.read_text())
    peaks = data["gemm_peaks"]
    assert peaks["threads"] == 1 and peaks["fp32_gflops"] > 0 and peaks["u8s8_gops"] > 0
    roof = data["runs"][0]["roofline"]
    import torch

    from lrnnet.models import load_checkpoint

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        load_checkpoint(tiny_checkpoint)(torch.zeros(1, 3, 32, 64))
    assert roof["model_gops"] == pytest.approx(counter.get_total_flops() / 1e9)
    assert roof["peak"] == peaks["fp32_gflops"] and roof["unit"] == "GFLOP/s"
    assert roof["fraction_of_peak"] == pytest.approx(roof["achieved"] / roof["peak"])
    assert "GEMM peak of this machine now (1 thread" in stdout and "of peak" in stdout


def test_cli_static_onnx_and_bad_inputs_are_one_line_exit_2(tiny_onnx, tiny_checkpoint, tmp_path, capsys):
    cases = [
        (["--model", str(tmp_path / "missing.onnx")], "does not exist"),
        (["--model", str(tiny_onnx), "--height", "512", "--width", "1024"], "--dynamic"),
        (["--model", str(tiny_onnx), "--sweep"], "--dynamic"),
        (["--model", str(tiny_onnx), "--batch", "2"], "fixed batch"),
        (["--model", str(tiny_onnx), "--height", "128"], "both --height and --width"),
        (["--model", str(tiny_checkpoint), "--height", "100", "--width", "100", "--device", "cpu"], "multiples"),
        (["--model", str(tiny_checkpoint), "--iters", "0"], "positive integer"),
        (["--model", str(tiny_onnx), "--fp16"], "precision lives in"),
        (["--model", str(tiny_onnx), "--cuda-graph", "--iters", "1"], "torch and tensorrt"),
    ]
    for argv, expected in cases:
        rc, _, err = _run([*argv, "--json", str(tmp_path / "bench.json")], capsys)
        lines = err.strip().splitlines()
        assert rc == 2, (argv, err)
        assert lines[-1].startswith("lrnnet-bench: error: ") and expected in lines[-1], (argv, err)
        assert sum(line.startswith("lrnnet-bench") for line in lines) == 1
    assert not (tmp_path / "bench.json").exists()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU with a CUDA build of PyTorch")
@pytest.mark.parametrize("fp16,cuda_graph", [(False, False), (True, False), (True, True)])
def test_torch_cuda_input_is_on_the_device(tiny_checkpoint, fp16, cuda_graph):
    from lrnnet.runtime import open_runner

    with open_runner(tiny_checkpoint, device="cuda", size=(128, 256), fp16=fp16) as runner:
        result = benchmark(runner, BenchmarkOptions(size=(128, 256), warmup=2, iters=5, cuda_graph=cuda_graph))
    assert result.input_on_device and result.precision == ("fp16" if fp16 else "fp32")
    assert ("CUDA graph" in result.method) == cuda_graph and "CUDA" in result.device
    assert result.latency["count"] == 5 and result.latency["mean_ms"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_onnxruntime_cuda_uses_io_binding(tiny_onnx):
    import onnxruntime

    from lrnnet.runtime import open_runner

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("needs onnxruntime-gpu with the CUDA provider")
    with open_runner(tiny_onnx, device="cuda") as runner:
        result = benchmark(runner, BenchmarkOptions(warmup=2, iters=5))
    assert result.input_on_device and "I/O binding" in result.method


def test_every_size_and_batch_is_held_to_the_pixel_bound_before_a_model_is_loaded(tiny_checkpoint, tmp_path, capsys):
    junk = tmp_path / "junk.onnx"  # loading it would fail: the bound must be checked first
    junk.write_bytes(b"not an onnx file")
    cases = [
        ([str(junk), "--sweep", "8192x8192", "--batch", "2"], "2 x 8192x8192 is 134,217,728 pixels, too large"),
        ([str(junk), "--sweep", "64x64", "8192x8192", "--batch", "1", "2"], "2 x 8192x8192"),
        ([str(junk), "--height", "4096", "--width", "4096", "--batch", "5"], "5 x 4096x4096"),
        ([str(junk), "--batch", "129"], "129 x 512x1024"),  # the default size
        ([str(tiny_checkpoint), "--batch", "100000", "--device", "cpu"], "100000 x 512x1024"),
    ]
    for argv, expected in cases:
        rc, stdout, err = _run(["--model", *argv, "--no-progress", "--json", str(tmp_path / "b.json")], capsys)
        lines = [line for line in err.splitlines() if "error" in line]
        assert rc == 2 and stdout == "", (argv, err)
        assert len(lines) == 1 and expected in lines[0] and "at most 8192x8192 pixels in all" in lines[0], (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.onnx"]


def test_the_library_holds_each_shape_and_iteration_count_to_the_bounds():
    runner = CountingRunner(ModelInfo(input_height=32, input_width=64, stride=8, dynamic=True))
    with pytest.raises(InputError, match=r"3 x 8192x8192 is 201,326,592 pixels, too large"):
        sweep(runner, [(32, 64), (8192, 8192)], [1, 3], BenchmarkOptions(warmup=0, iters=1))
    assert runner.shapes == []
    for options in ({"iters": 10**11}, {"iters": 10**21}, {"warmup": 10**11}):
        with pytest.raises(InputError, match=r"is too many \(at most 1,000,000\)"):
            BenchmarkOptions(**options)


def test_a_batch_asked_for_twice_is_timed_and_reported_once(tiny_checkpoint, tmp_path, capsys):
    runner = CountingRunner(ModelInfo(input_height=32, input_width=64, stride=8, dynamic=True))
    results = sweep(runner, [(16, 32), (16, 32)], [1, 2, 1, 2, 1], BenchmarkOptions(warmup=0, iters=1))
    assert [r.input_shape for r in results] == [(1, 3, 16, 32), (2, 3, 16, 32)]
    out = tmp_path / "bench.json"
    rc, stdout, err = _run(["--model", str(tiny_checkpoint), "--device", "cpu", "--height", "32", "--width", "64",
                            "--batch", "1", "1", "--warmup", "0", "--iters", "2", "--threads", "1", "--json", str(out),
                            "--no-progress", "--no-peak"], capsys)
    assert rc == 0, err
    assert [run["protocol"]["input_shape"] for run in json.loads(out.read_text())["runs"]] == [[1, 3, 32, 64]]
    assert sum("1x3x32x64" in line for line in stdout.splitlines()) == 1
    assert sum(line.startswith("vs paper") for line in stdout.splitlines()) == 1


def test_the_report_never_overwrites_the_models_sidecar(tiny_onnx, tmp_path, capsys):
    """`--json lrnnet_fp16.onnx.json` named the model's own sidecar (what the engine was built from, how): it was
    replaced by the speed report, exit 0."""
    import shutil

    from lrnnet.engine.sidecar import sidecar_path

    model = shutil.copy(tiny_onnx, tmp_path / "lrnnet_fp16.onnx")
    sidecar = sidecar_path(model)
    sidecar.write_text('{"built": "by lrnnet-build-engine"}')
    rc, _, err = _run(["--model", str(model), "--json", str(sidecar), "--iters", "1", "--no-peak", "--no-progress"],
                      capsys)
    assert rc == 2 and err.strip().splitlines() == [
        (f"lrnnet-bench: error: output {sidecar} is the input {sidecar}; refusing to overwrite an input (give another "
        "output name)")], err
    assert sidecar.read_text() == '{"built": "by lrnnet-build-engine"}'
