"""Calibration caches through the real lrnnet-build-engine: reuse, mismatch lines, and validation (exit 2)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from lrnnet.calib.cache import CACHE_FORMAT, CalibrationKey, read_cache
from lrnnet.cli.build_engine import main
from lrnnet.errors import InputError

pytestmark = pytest.mark.usefixtures("fresh_log_handler")




@pytest.fixture(scope="module")
def first_build(tiny_onnx, synthetic_root, tmp_path_factory):
    """A folder with lrnnet.onnx and the calibration cache (2 Cityscapes images) its first INT8 build wrote."""
    from lrnnet.log import logger

    work = tmp_path_factory.mktemp("cache_build")
    shutil.copy(tiny_onnx, work / "lrnnet.onnx")
    saved = logger.handlers[:]
    logger.handlers.clear()
    try:
        assert main(["--int8", "--onnx", str(work / "lrnnet.onnx"), "--calib-data", str(synthetic_root),
                     "--calib-images", "2", "--calib-cache", str(work / "calib.json"), "-o",
                     str(work / "first.onnx"), "--no-progress"]) == 0
    finally:
        logger.handlers[:] = saved
    return work


@pytest.fixture
def workdir(first_build, tmp_path, monkeypatch) -> Path:
    for name in ("lrnnet.onnx", "calib.json"):
        shutil.copy(first_build / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _build(*extra: str) -> int:
    return main(["--int8", "--calib-cache", "calib.json", "--calib-images", "2", "-o", "out.onnx", "--no-progress",
                 *extra])


def _one_error_line(capsys) -> str:
    """The failure's one line: the last on stderr, the only error (progress lines may come before it)."""
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and err[-1] == errors[0] and errors[0].startswith("lrnnet-build-engine: error: "), err
    assert not any("Traceback" in line for line in err)
    return errors[0]


def _info_lines(caplog, capsys) -> list[str]:
    """The command's log lines (pytest's log capture holds them when it has hooked the lrnnet logger)."""
    return caplog.messages + capsys.readouterr().err.splitlines()


def test_matching_cache_is_reused_without_data(workdir, capsys, caplog):
    assert _build() == 0
    assert any("reusing calib.json" in line for line in _info_lines(caplog, capsys))
    assert (workdir / "out.onnx").is_file()


@pytest.mark.slow
def test_other_settings_recalibrate_and_say_so_in_one_line(workdir, synthetic_root, capsys, caplog):
    before = json.loads((workdir / "calib.json").read_text())
    assert main(["--int8", "--calib-cache", "calib.json", "--calib-images", "3", "--calib-data", str(synthetic_root),
                 "-o", "out.onnx", "--no-progress"]) == 0
    lines = sorted({line for line in _info_lines(caplog, capsys) if "was made for" in line})
    assert lines == ["calibration cache calib.json was made for 2 images (now 3): recalibrating and overwriting it"]
    after = json.loads((workdir / "calib.json").read_text())
    assert before["key"]["images"] == 2 and after["key"]["images"] == after["images_used"] == 3


@pytest.mark.slow
def test_other_images_recalibrate(workdir, tmp_path, synthetic_root, capsys, caplog):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, path in enumerate(sorted(synthetic_root.glob("leftImg8bit/val/*/*.png"))[:2]):
        shutil.copy(path, folder / f"{i}.png")
    assert _build("--calib-data", str(folder)) == 0
    line = next(line for line in _info_lines(caplog, capsys) if "was made for" in line)
    assert "other calibration images (digest " in line and line.endswith(": recalibrating and overwriting it")


def test_mismatch_without_data_is_an_input_error(workdir, capsys):
    cache = (workdir / "calib.json").read_bytes()
    assert main(["--int8", "--calib-cache", "calib.json", "--calib-images", "3", "-o", "out.onnx"]) == 2
    line = _one_error_line(capsys)
    assert "calib.json was made for 2 images (now 3): cannot recalibrate without calibration images; " \
           "pass --calib-data" in line
    assert not (workdir / "out.onnx").exists() and (workdir / "calib.json").read_bytes() == cache


def _corrupt(cache: dict, how: str) -> str:
    data = cache["ort_tensors_data"]["data"]
    first = next(iter(data))
    if how == "huge ranges":
        for entry in data.values():
            entry["lowest"], entry["highest"] = -1e30, 1e30
    elif how == "NaN range":
        data[first]["highest"] = math.nan
    elif how == "string range":
        data[first]["lowest"] = "low"
    elif how == "inverted range":
        data[first]["lowest"], data[first]["highest"] = 1.0, -1.0
    elif how == "unknown tensor":
        data["no_such_tensor"] = dict(data[first])
    elif how == "no ranges":
        cache["ort_tensors_data"]["data"] = {}
    elif how == "only the input's range":
        cache["ort_tensors_data"]["data"] = {"input": data["input"]}
    elif how == "images is a string":
        cache["key"]["images"] = "2"
    elif how == "missing digest":
        del cache["digest"]
    return json.dumps(cache)  # json writes NaN as NaN, which json.loads reads back


@pytest.mark.parametrize("how, reason", [
    ("huge ranges", "beyond any activation"),
    ("NaN range", "non-finite range"),
    ("string range", "not a number"),
    ("inverted range", "above highest"),
    ("unknown tensor", "tensors the graph does not have, e.g. 'no_such_tensor'"),
    ("no ranges", "no tensor ranges"),
    ("only the input's range", "of the tensors a calibration of it measures: "),
    ("images is a string", "key 'images' is a str"),
    ("missing digest", "'digest' is missing"),
    ("empty file", "not JSON"),
    ("a JSON string", "a JSON str, not an object"),
    ("binary", "not text"),
])
def test_broken_cache_with_an_unchanged_key_is_refused(workdir, capsys, how, reason):
    cache_path = workdir / "calib.json"
    cache = json.loads(cache_path.read_text())
    if how == "empty file":
        cache_path.write_text("")
    elif how == "a JSON string":
        cache_path.write_text(json.dumps("calibration"))
    elif how == "binary":
        cache_path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        cache_path.write_text(_corrupt(cache, how))
    written = cache_path.read_bytes()
    assert _build() == 2
    line = _one_error_line(capsys)
    assert "calib.json is not an lrnnet calibration cache" in line and reason in line, line
    assert not (workdir / "out.onnx").exists() and not (workdir / "out.onnx.json").exists()
    assert cache_path.read_bytes() == written  # never overwritten by a failed build


def test_every_difference_is_named(first_build):
    path = first_build / "calib.json"
    raw = json.loads(path.read_text())
    this = CalibrationKey(**raw["key"])
    assert read_cache(path, this, digest=raw["digest"]) is not None
    other = CalibrationKey(source_sha256="f" * 64, method="minmax", images=this.images + 1, percentile=None)
    with pytest.raises(InputError, match="other calibration images"):
        read_cache(path, this, digest="0" * 64, recalibrate=False)
    with pytest.raises(InputError) as caught:
        read_cache(path, other, digest="0" * 64, recalibrate=False)
    message = str(caught.value)
    assert f"model sha256 {this.source_sha256[:12]}.. (this model: ffffffffffff..)" in message
    assert f"method {this.method} (now minmax)" in message and f"{this.images} images (now {this.images + 1})" in message
    assert f"percentile {this.percentile} (now None)" in message
    assert raw["format"] == CACHE_FORMAT


def test_graph_check_needs_float_inputs_only():
    """A uint8 frame input (in-graph preprocessing) has no range; a float input must have one."""
    from onnx import TensorProto, helper

    from lrnnet.calib.cache import CalibrationCache, check_cache_against_graph

    def graph(dtype):
        nodes = [helper.make_node("Cast", ["input"], ["x"], to=TensorProto.FLOAT),
                 helper.make_node("Relu", ["x"], ["y"])]
        return helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", dtype, [1])],
                                                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))

    key = CalibrationKey(source_sha256="0" * 64, method="minmax", images=1)
    cache = CalibrationCache(key=key, digest="d", images_used=1, root="",
                             ort_tensors_data={"data": {"x": {"lowest": 0.0, "highest": 1.0},
                                                        "y": {"lowest": 0.0, "highest": 1.0}}})
    check_cache_against_graph(cache, graph(TensorProto.UINT8), "c.json")
    with pytest.raises(InputError, match="no range for the graph input 'input'"):
        check_cache_against_graph(cache, graph(TensorProto.FLOAT), "c.json")


@pytest.mark.parametrize("lowest, highest, reason", [
    (-60000.0, 60000.0, "the INT8 graph agrees with FP32 on "),
    (0.0, 0.0, "the calibration ranges are degenerate: "),
])
def test_a_cache_of_finite_nonsense_ranges_is_refused(workdir, capsys, lowest, highest, reason):
    """Valid by the schema, but no calibration of this model: the build is compared with FP32 and refused."""
    cache_path = workdir / "calib.json"
    cache = json.loads(cache_path.read_text())
    for entry in cache["ort_tensors_data"]["data"].values():
        entry["lowest"], entry["highest"] = lowest, highest
    cache_path.write_text(json.dumps(cache))
    assert _build() == 2
    line = _one_error_line(capsys)
    assert reason in line and "recalibrate" in line, line
    assert not (workdir / "out.onnx").exists() and not (workdir / "calib.trt-calib.txt").exists()


def test_a_damaged_tensorrt_table_beside_a_reused_cache_is_rewritten(workdir, first_build):
    table = workdir / "calib.trt-calib.txt"
    table.write_text("garbage\n")
    assert _build() == 0
    assert table.read_text() == (first_build / "calib.trt-calib.txt").read_text()
