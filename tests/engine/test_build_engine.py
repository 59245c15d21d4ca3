"""lrnnet-build-engine end to end on ONNX Runtime (what runs here), its sidecar, and its bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
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

pytestmark = pytest.mark.usefixtures("fresh_log_handler")

HAVE_TENSORRT = tensorrt_version() is not None and current_gpu() is not None




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
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_target_without_tensorrt_writes_the_ready_graph(workdir, capsys, synthetic_root, precision):
    from lrnnet.export.tensorrt_rules import check_tensorrt_parser_rules

    calib = ["--calib-data", str(synthetic_root), "--calib-images", "4"] if precision == "int8" else []
    assert main([f"--{precision}", "--backend", "tensorrt", *calib]) == 0
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    ready = f"lrnnet_{precision}.trt.onnx"
    assert len(out) == 1 and "build it on the GPU machine" in out[0], out
    assert f"lrnnet-build-engine {ready} --{precision} --backend tensorrt" in out[0]
    assert f"trtexec --onnx={ready} --saveEngine=lrnnet_{precision}.engine --stronglyTyped" in out[0]
    assert _files(workdir) == {"lrnnet.onnx", ready, ready + ".json"}
    sidecar = read_sidecar(workdir / ready)
    assert sidecar.target == "tensorrt" and "TensorRT-ready" in sidecar.purpose and sidecar.precision == precision
    graph = onnx.load(str(workdir / ready))
    info = ModelInfo.from_onnx_model(graph)
    assert info.engine_target == "tensorrt" and info.engine_purpose == sidecar.purpose
    check_tensorrt_parser_rules(graph)  # raises on a broken rule
    if precision == "fp16":
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.graph.initializer)
    else:
        assert "Model Optimizer" in info.engine_purpose or "Model Optimizer" in captured.err
    assert find_newest_engine(workdir) is None  # a build input, not an engine to run


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT and a GPU are present")
def test_engine_from_the_ready_graph_needs_tensorrt(workdir, capsys):
    assert main(["--fp16", "--backend", "tensorrt"]) == 0
    capsys.readouterr()
    before = _files(workdir)
    assert main(["lrnnet_fp16.trt.onnx", "--fp16"]) == 2
    assert "needs TensorRT and an NVIDIA GPU" in _one_line_error(capsys)
    assert main(["lrnnet_fp16.trt.onnx", "--int8"]) == 2
    assert "TensorRT-ready fp16 graph" in _one_line_error(capsys)
    assert _files(workdir) == before


def test_source_is_positional_or_onnx(workdir, capsys):
    (workdir / "lrnnet.onnx").rename(workdir / "model.onnx")
    assert main(["model.onnx", "--fp32", "--backend", "onnxruntime"]) == 0
    assert (workdir / "lrnnet_fp32.onnx").is_file()
    capsys.readouterr()
    assert main(["model.onnx", "--fp32", "--onnx", "other.onnx"]) == 2
    assert "two sources" in _one_line_error(capsys)


def test_onnxruntime_files_say_what_they_are(workdir):
    build_engine(BuildOptions(onnx=Path("lrnnet.onnx"), precision="fp16", backend="onnxruntime"))
    fp16 = onnx.load(str(workdir / "lrnnet_fp16.onnx"))
    info = ModelInfo.from_onnx_model(fp16)
    assert info.engine_target == "onnxruntime" and "CUDA execution provider" in info.engine_purpose
    assert read_sidecar(workdir / "lrnnet_fp16.onnx").purpose == info.engine_purpose
    # Saved as converted: real float16 convs, not the CPU provider's float32 convs wrapped in Casts.
    inits = {i.name: i for i in fp16.graph.initializer}
    convs = [n for n in fp16.graph.node if n.op_type == "Conv" and n.input[1] in inits]
    assert sum(inits[n.input[1]].data_type == onnx.TensorProto.FLOAT16 for n in convs) > len(convs) // 2


def test_tensorrt_target_graph_breaking_a_parser_rule_is_refused(workdir, capsys):
    """A graph TensorRT's parser would reject (Slice on UINT8) exits 2 and writes nothing."""
    from onnx import TensorProto, helper

    model = onnx.load(str(workdir / "lrnnet.onnx"))
    consumers = [n for n in model.graph.node if "input" in n.input]
    model.graph.node.insert(0, helper.make_node("Cast", ["input"], ["as_u8"], to=TensorProto.UINT8, name="u8"))
    model.graph.initializer.extend([onnx.numpy_helper.from_array(np.array([v], np.int64), name) for name, v in
                                    (("s0", 0), ("s1", 3), ("ax", 1))])
    model.graph.node.insert(1, helper.make_node("Slice", ["as_u8", "s0", "s1", "ax"], ["sliced"], name="slice_u8"))
    model.graph.node.insert(2, helper.make_node("Cast", ["sliced"], ["back"], to=TensorProto.FLOAT, name="f32"))
    for node in consumers:
        node.input[:] = ["back" if name == "input" else name for name in node.input]
    ModelInfo.from_onnx_model(model).write_to(model)
    onnx.save(model, str(workdir / "bad.onnx"))
    assert main(["bad.onnx", "--fp32", "--backend", "tensorrt"]) == 2
    line = _one_line_error(capsys)
    assert "slice_u8" in line and "Slice" in line
    assert _files(workdir) == {"lrnnet.onnx", "bad.onnx"}


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
    assert result.engine.name == "lrnnet_int8.engine" and read_sidecar(workdir / "lrnnet_int8.trt.onnx").precision == "int8"
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


# --- the audit's defects (one test each, failing on the code before its fix) -----------------------

def _labels(path: Path, frames: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: frames})[0]


@pytest.mark.parametrize("flags", [["--backend", "onnxruntime"], ["--backend", "onnxruntime", "--no-keep-io-fp32"],
                                   ["--backend", "tensorrt"]])
def test_fp16_of_a_preprocess_in_graph_export(workdir, in_graph_onnx, flags, capsys):
    """The uint8 -> float Cast of the in-graph preprocessing casts to float16 in the FP16 graph."""
    shutil.copy(in_graph_onnx, workdir / "in_graph.onnx")
    assert main(["in_graph.onnx", "--fp16", "-o", "fp16.onnx" if "onnxruntime" in flags else "fp16.engine",
                 *flags]) == 0, capsys.readouterr().err
    fp16 = workdir / ("fp16.onnx" if "onnxruntime" in flags else "fp16.trt.onnx")
    frames = np.random.default_rng(0).integers(0, 256, (1, 64, 128, 3), dtype=np.uint8)
    assert (_labels(fp16, frames) == _labels(workdir / "in_graph.onnx", frames)).mean() > 0.95


def test_a_graph_lrnnet_broke_is_an_internal_error(tiny_onnx):
    from onnx import TensorProto, helper

    from lrnnet.engine.onnxruntime_builder import GraphRejected, check_runs_on_onnxruntime

    good = onnx.load(str(tiny_onnx))
    broken = onnx.ModelProto()
    broken.CopyFrom(good)
    first = broken.graph.node[0]
    cast = helper.make_node("Cast", [first.output[0]], ["as_f16"], to=TensorProto.FLOAT16, name="cast_f16")
    broken.graph.node.insert(1, cast)  # a float16 tensor where float32 is expected
    for node in broken.graph.node[2:]:
        node.input[:] = ["as_f16" if name == first.output[0] else name for name in node.input]
    with pytest.raises(GraphRejected, match="lrnnet made from it"):
        check_runs_on_onnxruntime(broken, "the fp16 graph", source=good)
    with pytest.raises(InputError, match="ONNX Runtime cannot load the source"):
        check_runs_on_onnxruntime(broken, "the source", source=broken)  # the input itself does not load


def test_full_disk_says_the_disk_is_full(workdir, capsys):
    """ONNX Runtime's optimised graph is written by lrnnet's writer: ENOSPC, not "INVALID_PROTOBUF"."""
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from disk_helpers import tmpfs

    with tmpfs(workdir / "full", "1500k"):  # room for the probe, not for the 2.8 MB FP32 graph
        assert main(["--fp32", "--backend", "onnxruntime", "-o", "full/x.onnx"]) == 2
        assert _one_line_error(capsys).endswith("the disk is full; free some space or write elsewhere (full/x.onnx)")
        assert not list((workdir / "full").iterdir())


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT and a GPU are present: the engine is built, no next step")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_printed_next_step_passes_every_check_up_to_tensorrt(workdir, capsys, synthetic_root, precision):
    """The printed lrnnet-build-engine command is run: it fails only for TensorRT's absence (fp32 included)."""
    import shlex

    calib = ["--calib-data", str(synthetic_root), "--calib-images", "4"] if precision == "int8" else []
    assert main([f"--{precision}", "--backend", "tensorrt", "-o", "out.engine", "--workspace", "64",
                 "--builder-optimization-level", "2", *calib]) == 0
    printed = capsys.readouterr().out
    command = shlex.split(printed.split("`")[1])
    assert command[0] == "lrnnet-build-engine" and "--workspace" in command
    assert main(command[1:]) == 2
    assert "needs TensorRT and an NVIDIA GPU" in _one_line_error(capsys)


@pytest.mark.parametrize("lie", ["num_classes", "argmax_in_graph"])
def test_metadata_that_contradicts_the_graph_is_refused(workdir, capsys, lie):
    """The runtime's own check (check_graph_against_info) runs before the build, not at lrnnet-infer."""
    import dataclasses

    model = onnx.load(str(workdir / "lrnnet.onnx"))
    info = ModelInfo.from_onnx_model(model)
    if lie == "num_classes":
        info = dataclasses.replace(info, num_classes=5, class_names=info.class_names[:5], palette=info.palette[:5],
                                   model_config={**info.model_config, "num_classes": 5})
    else:
        info = dataclasses.replace(info, argmax_in_graph=True)
    info.write_to(model)
    onnx.save(model, str(workdir / "lie.onnx"))
    assert main(["lie.onnx", "--fp16", "--backend", "onnxruntime"]) == 2
    expected = "outputs 19 classes but its metadata says 5" if lie == "num_classes" else "the metadata belongs to"
    assert expected in _one_line_error(capsys)
    assert _files(workdir) == {"lrnnet.onnx", "lie.onnx"}


@pytest.mark.parametrize("argv, refused", [
    (["--fp16", "--calib-data", "/nonexistent", "--calib-cache", "c.json", "--calib-images", "3"],
     "--calib-data is for INT8 calibration from the FP32 export, not --fp16"),
    (["--fp32", "--calib-method", "entropy"], "--calib-method is for INT8 calibration"),
    (["--int8", "--calib-data", "x", "--no-keep-io-fp32"], "--no-keep-io-fp32 is for the FP16 conversion"),
    (["--fp16", "--backend", "onnxruntime", "--workspace", "100", "--timing-cache", "tc.bin"],
     "--workspace is for TensorRT's builder; this build targets onnxruntime"),
    (["--fp16", "--backend", "onnxruntime", "--builder-optimization-level", "5"],
     "--builder-optimization-level is for TensorRT's builder"),
    (["--fp16", "--backend", "onnxruntime", "--max-batch", "8"], "--max-batch is for TensorRT's optimization profile"),
    (["--fp16", "--backend", "tensorrt", "--max-batch", "2"], "--max-batch is for dynamic-batch exports"),
    (["--fp16", "--legacy-calibrator"], "--legacy-calibrator is for TensorRT 10's implicit INT8"),
])
def test_options_that_cannot_apply_are_refused(workdir, capsys, argv, refused):
    assert main(argv) == 2
    assert refused in _one_line_error(capsys)
    assert _files(workdir) == {"lrnnet.onnx"}


def test_tensorrt_ready_graph_refuses_calibration_options(workdir, capsys):
    assert main(["--fp16", "--backend", "tensorrt"]) == 0
    capsys.readouterr()
    assert main(["lrnnet_fp16.trt.onnx", "--fp16", "--no-keep-io-fp32"]) == 2
    assert "is a TensorRT-ready graph, calibrated and converted already" in _one_line_error(capsys)


def test_max_batch_is_bounded(workdir, capsys, in_graph_onnx):
    shutil.copy(in_graph_onnx, workdir / "dynamic.onnx")
    assert main(["dynamic.onnx", "--fp16", "--backend", "tensorrt", "--max-batch", "100000000"]) == 2
    assert "over 8192x8192 pixels in all (lrnnet.limits); at most --max-batch 512" in _one_line_error(capsys)
    assert _files(workdir) == {"lrnnet.onnx", "dynamic.onnx"}


def test_a_folder_as_source_is_said_to_be_a_folder(workdir, capsys):
    (workdir / "cdir").mkdir()
    assert main(["cdir", "--fp16"]) == 2
    assert "ONNX file cdir is a directory" in _one_line_error(capsys)


@pytest.mark.parametrize("asked, used, said", [("percentile", "modelopt-max", True), ("minmax", "modelopt-max", False),
                                               ("entropy", "modelopt-entropy", False), ("percentile", "percentile", False)])
def test_another_calibration_method_than_asked_is_said(asked, used, said, caplog):
    """Model Optimizer (TensorRT's INT8 recipe) has max and entropy only: a percentile request is not silently max."""
    from lrnnet.calib.int8 import CalibrationRecord
    from lrnnet.engine.build import _say_calibration_method

    caplog.set_level("INFO", logger="lrnnet")
    _say_calibration_method(asked, CalibrationRecord(method=used, images=4, digest="0", images_read=4, cache=None))
    assert ("has no percentile method" in caplog.text) is said


@pytest.mark.parametrize("cache, message", [
    ("nofolder/c.json", "--calib-cache nofolder/c.json: folder nofolder does not exist; create it first"),
    ("cdir", "--calib-cache cdir is a directory; give a file name such as cdir/<name>"),
    ("c5.json", "--calib-cache's TensorRT table c5.trt-calib.txt is a directory; give a file name"),
])
def test_the_calibration_cache_is_held_to_the_outputs_rules_before_any_work(workdir, capsys, synthetic_root, cache,
                                                                           message):
    (workdir / "cdir").mkdir()
    (workdir / "c5.trt-calib.txt").mkdir()
    before = _files(workdir)
    assert main(["--int8", "--calib-data", str(synthetic_root), "--calib-images", "2", "--calib-cache", cache,
                 "-o", "x.onnx"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1].startswith(f"lrnnet-build-engine: error: {message}")
    assert "Calibrating" not in captured.err  # refused before the images were read
    assert _files(workdir) == before
