"""lrnnet-build-engine end to end on ONNX Runtime (what runs here), its sidecar, and its bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

from lrnnet.cli.build_engine import main
from lrnnet.engine.build import BuildOptions, build_engine, choose_backend
from lrnnet.engine.device import current_gpu, tensorrt_version
from lrnnet.engine.sidecar import (
    EngineSidecar,
    check_sidecar_compatible,
    find_newest_engine,
    read_sidecar,
    sidecar_path,
)
from lrnnet.errors import InputError
from lrnnet.export.metadata import ModelInfo

HAVE_TENSORRT = tensorrt_version() is not None and current_gpu() is not None


@pytest.fixture(autouse=True)
def fresh_log_handler():
    """setup_logging binds the stderr of the first command; give each test's command its own (capsys)."""
    from lrnnet.log import logger

    saved = logger.handlers[:]
    logger.handlers.clear()
    yield
    logger.handlers[:] = saved


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_onnx) -> Path:
    """An empty working folder holding a copy of the tiny export as lrnnet.onnx (the default source)."""
    shutil.copy(tiny_onnx, tmp_path / "lrnnet.onnx")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lrnnet-build-engine: error: "), err
    return err[0]


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT and a GPU are present: auto picks TensorRT")
def test_fp16_build_on_onnxruntime_writes_engine_and_sidecar(workdir, capsys):
    assert main(["--fp16", "--backend", "auto"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "TensorRT is not installed" in out  # which backend and why
    assert _files(workdir) == {"lrnnet.onnx", "lrnnet_fp16.onnx", "lrnnet_fp16.onnx.json"}
    sidecar = read_sidecar(workdir / "lrnnet_fp16.onnx")
    assert sidecar.backend == "onnxruntime" and sidecar.precision == "fp16"
    assert sidecar.source_sha256 == hashlib.sha256((workdir / "lrnnet.onnx").read_bytes()).hexdigest()
    assert sidecar.input_profile == {"input": {"min": [1, 3, 128, 256], "opt": [1, 3, 128, 256],
                                               "max": [1, 3, 128, 256]}}
    assert sidecar.info.precision == "fp16" and sidecar.info.input_size == (128, 256)
    engine = onnx.load(str(workdir / "lrnnet_fp16.onnx"))
    assert ModelInfo.from_onnx_model(engine).precision == "fp16"
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in engine.graph.initializer)
    ort.InferenceSession(str(workdir / "lrnnet_fp16.onnx"), providers=["CPUExecutionProvider"])


def test_newest_engine_is_found(workdir, synthetic_root):
    assert find_newest_engine(workdir) is None  # lrnnet.onnx has no sidecar: not a built engine
    build_engine(BuildOptions(onnx=Path("lrnnet.onnx"), precision="fp16", backend="onnxruntime"))
    assert find_newest_engine(workdir).name == "lrnnet_fp16.onnx"
    build_engine(BuildOptions(onnx=Path("lrnnet.onnx"), precision="fp32", backend="onnxruntime"))
    os.utime(workdir / "lrnnet_fp16.onnx", (1, 1))  # make the order unambiguous on coarse clocks
    assert find_newest_engine(workdir).name == "lrnnet_fp32.onnx"
    assert find_newest_engine(workdir, backends={"tensorrt"}) is None


def test_sidecar_mismatch_names_both_sides():
    sidecar = EngineSidecar(backend="tensorrt", precision="fp16", source_onnx="lrnnet.onnx", source_sha256="0",
                            input_profile={}, model_info={}, tensorrt_version="10.3.0", gpu_name="NVIDIA A100",
                            compute_capability="8.0")
    check_sidecar_compatible(sidecar, "10.3.0", "NVIDIA A100-SXM4-80GB", "8.0")  # same architecture: fine
    with pytest.raises(InputError, match=r"TensorRT 10\.3\.0 .*TensorRT 10\.13\.0"):
        check_sidecar_compatible(sidecar, "10.13.0", "NVIDIA A100", "8.0")
    with pytest.raises(InputError, match=r"NVIDIA A100 \(compute 8\.0\).*RTX 4090 \(compute 8\.9\)"):
        check_sidecar_compatible(sidecar, "10.3.0", "NVIDIA GeForce RTX 4090", "8.9")
    with pytest.raises(InputError, match="no CUDA GPU"):
        check_sidecar_compatible(sidecar, "10.3.0", None, None)
    with pytest.raises(InputError, match="TensorRT is not installed"):
        check_sidecar_compatible(sidecar, None, None, None)
    onnxruntime_engine = EngineSidecar(backend="onnxruntime", precision="fp16", source_onnx="x", source_sha256="0",
                                       input_profile={}, model_info={})
    check_sidecar_compatible(onnxruntime_engine, None, None, None)


def test_sidecar_round_trip_and_bad_sidecar(tmp_path):
    engine = tmp_path / "lrnnet_int8.engine"
    engine.write_bytes(b"engine")
    with pytest.raises(InputError, match="no sidecar"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match="not an lrnnet engine sidecar"):
        read_sidecar(engine)


def test_backend_choice_says_why():
    backend, why, _ = choose_backend("auto")
    if HAVE_TENSORRT:
        assert backend == "tensorrt" and "TensorRT" in why
    else:
        assert backend == "onnxruntime" and why.startswith("auto: ")
    assert choose_backend("onnxruntime")[0] == "onnxruntime"


# --- bad inputs: one line, exit 2, nothing written --------------------------------------------------

def test_truncated_onnx(workdir, capsys):
    data = (workdir / "lrnnet.onnx").read_bytes()
    (workdir / "lrnnet.onnx").write_bytes(data[: len(data) // 2])
    assert main(["--fp16"]) == 2
    assert "not a valid ONNX model" in _one_line_error(capsys)
    assert _files(workdir) == {"lrnnet.onnx"}


def test_foreign_onnx(workdir, capsys):
    model = onnx.load(str(workdir / "lrnnet.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(workdir / "other.onnx"))
    assert main(["--fp16", "--onnx", "other.onnx"]) == 2
    assert "not an lrnnet export" in _one_line_error(capsys)
    assert _files(workdir) == {"lrnnet.onnx", "other.onnx"}


def test_missing_onnx(workdir, capsys):
    assert main(["--fp16", "--onnx", "absent.onnx"]) == 2
    assert "lrnnet-export" in _one_line_error(capsys)


def test_int8_without_calibration_data(workdir, capsys):
    assert main(["--int8"]) == 2
    assert "--calib-data" in _one_line_error(capsys)
    assert _files(workdir) == {"lrnnet.onnx"}


def test_empty_calibration_folder(workdir, capsys):
    (workdir / "empty").mkdir()
    assert main(["--int8", "--calib-data", "empty", "--calib-cache", "calib.json"]) == 2
    assert "has no images" in _one_line_error(capsys)
    assert _files(workdir) == {"lrnnet.onnx", "empty"}


def test_already_converted_onnx_is_refused(workdir, capsys):
    assert main(["--fp16", "--backend", "onnxruntime"]) == 0
    capsys.readouterr()
    assert main(["--int8", "--onnx", "lrnnet_fp16.onnx", "--calib-data", "x"]) == 2
    assert "already a fp16 graph" in _one_line_error(capsys)


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT and a GPU are present")
def test_tensorrt_missing(workdir, capsys):
    assert main(["--fp16", "--backend", "tensorrt"]) == 2
    line = _one_line_error(capsys)
    assert "pip install 'lrnnet[tensorrt]'" in line and "lrnnet-infer VIDEO --model lrnnet_fp16.onnx" in line
    # What it could build is there and complete (the ONNX Runtime engine); no TensorRT engine.
    assert _files(workdir) == {"lrnnet.onnx", "lrnnet_fp16.onnx", "lrnnet_fp16.onnx.json"}
    assert read_sidecar(workdir / "lrnnet_fp16.onnx").backend == "onnxruntime"
    assert ModelInfo.from_onnx_model(onnx.load(str(workdir / "lrnnet_fp16.onnx"))).precision == "fp16"


def test_bad_output_names(workdir, capsys):
    assert main(["--fp16", "--backend", "onnxruntime", "-o", "x.engine"]) == 2
    assert "should end in .onnx" in _one_line_error(capsys)
    assert main(["--fp16", "--backend", "onnxruntime", "-o", "lrnnet.onnx"]) == 2
    assert "refusing to overwrite an input" in _one_line_error(capsys)
    assert _files(workdir) == {"lrnnet.onnx"}


# --- TensorRT (skipped without it) --------------------------------------------------------------

@pytest.mark.tensorrt
@pytest.mark.skipif(not HAVE_TENSORRT, reason="needs TensorRT 10/11 and a CUDA GPU")
def test_tensorrt_fp16_engine_builds_and_loads(workdir):
    import tensorrt as trt

    from lrnnet.engine.tensorrt_builder import TensorRTOptions

    result = build_engine(BuildOptions(onnx=Path("lrnnet.onnx"), precision="fp16", backend="tensorrt",
                                       tensorrt=TensorRTOptions(timing_cache=workdir / "timing.cache")))
    assert result.engine.name == "lrnnet_fp16.engine" and (workdir / "timing.cache").is_file()
    sidecar = read_sidecar(result.engine)
    gpu = current_gpu()
    assert sidecar.tensorrt_version == trt.__version__ and sidecar.compute_capability == gpu.capability
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    assert runtime.deserialize_cuda_engine(result.engine.read_bytes()) is not None


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAVE_TENSORRT, reason="needs TensorRT 10/11 and a CUDA GPU")
def test_tensorrt_int8_qdq_engine_builds(workdir, synthetic_root):
    from lrnnet.calib.int8 import Int8Options

    result = build_engine(BuildOptions(onnx=Path("lrnnet.onnx"), precision="int8", backend="tensorrt",
                                       calib_data=synthetic_root, int8=Int8Options(images=4)))
    sidecar = read_sidecar(result.engine)
    assert result.engine.name == "lrnnet_int8.engine" and read_sidecar(workdir / "lrnnet_int8.onnx").precision == "int8"
    assert not [p for p in workdir.iterdir() if p.name.startswith(".")]  # no scratch file left
    assert sidecar.calibration["images"] == 4 and sidecar.precision == "int8"


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAVE_TENSORRT, reason="needs TensorRT 10/11 and a CUDA GPU")
def test_legacy_calibrator_on_tensorrt_10_only(workdir, synthetic_root):
    from lrnnet.calib.int8 import Int8Options
    from lrnnet.engine.tensorrt_builder import TensorRTOptions

    options = BuildOptions(onnx=Path("lrnnet.onnx"), precision="int8", backend="tensorrt", calib_data=synthetic_root,
                           int8=Int8Options(images=4), calib_cache=workdir / "trt.cache",
                           tensorrt=TensorRTOptions(legacy_calibrator=True))
    if tensorrt_version().startswith("10."):
        result = build_engine(options)
        assert (workdir / "trt.cache").is_file() and read_sidecar(result.engine).calibration["images"] == 4
    else:
        with pytest.raises(InputError, match="needs TensorRT 10"):
            build_engine(options)
