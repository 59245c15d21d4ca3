"""Calibration cache files and keys without a quantization: what matches, what is refused, what is written.

Fast companions of test_cache_gates.py (which quantizes real models): these pin each branch of
lrnnet.calib.cache so that a mutation of it fails a test within a second.
"""

from __future__ import annotations

import json
import logging
import struct

import numpy as np
import pytest

from lrnnet.calib.cache import (
    CACHE_FORMAT,
    CalibrationCache,
    CalibrationKey,
    read_cache,
    trt_calibration_table,
    trt_table_path,
    write_cache,
)
from lrnnet.errors import InputError

KEY = CalibrationKey(source_sha256="ab" * 32, method="percentile", images=4, percentile=99.999)
# ONNX Runtime's save_tensors_data layout: numpy values as {"CLS": "numpy.array", "data": [...], "dtype": ...}.
RANGES = {"data": {
    "conv1_out": {"lowest": {"CLS": "numpy.array", "data": [-2.5], "dtype": "float32"},
                  "highest": {"CLS": "numpy.array", "data": [1.25], "dtype": "float32"}},
    "relu_out": {"lowest": 0.0, "highest": [[6.35]]},
    "dead_out": {"lowest": 0.0, "highest": 0.0},
    "empty_out": {"lowest": [], "highest": {"data": []}},
}}


def _cache(key: CalibrationKey = KEY) -> CalibrationCache:
    return CalibrationCache(key=key, digest="cd" * 32, images_used=3, root="/data/cityscapes", ort_tensors_data=RANGES)


@pytest.fixture
def lrnnet_log(caplog):
    caplog.set_level(logging.INFO, logger="lrnnet")
    logger = logging.getLogger("lrnnet")
    attach = not logger.propagate
    if attach:
        logger.addHandler(caplog.handler)
    yield caplog
    if attach:
        logger.removeHandler(caplog.handler)


def test_round_trip(tmp_path):
    path = tmp_path / "calib.json"
    write_cache(path, _cache())
    raw = json.loads(path.read_text())
    assert raw["format"] == CACHE_FORMAT == "lrnnet-calibration-cache/2"
    assert raw["key"] == {"source_sha256": "ab" * 32, "method": "percentile", "images": 4, "percentile": 99.999}
    assert (raw["digest"], raw["images_used"], raw["root"]) == ("cd" * 32, 3, "/data/cityscapes")
    assert read_cache(path, KEY) == _cache()
    assert trt_table_path(path) == tmp_path / "calib.trt-calib.txt"
    assert trt_table_path(path).read_text() == trt_calibration_table(_cache())


def test_missing_cache_is_none(tmp_path):
    assert read_cache(tmp_path / "none.json", KEY) is None


@pytest.mark.parametrize("field, value, word", [
    ("source_sha256", "ef" * 32, "model"),
    ("method", "minmax", "method"),
    ("images", 5, "images"),
    ("percentile", 99.9, "percentile"),
])
def test_any_key_difference_is_a_miss_that_says_what_differs(tmp_path, lrnnet_log, field, value, word):
    path = tmp_path / "calib.json"
    write_cache(path, _cache())
    lrnnet_log.clear()
    assert read_cache(path, CalibrationKey(**{**KEY.__dict__, field: value})) is None
    lines = [r.getMessage().replace(str(path), "<cache>") for r in lrnnet_log.records]
    assert len(lines) == 1 and word in lines[0].lower() and "calibrat" in lines[0].lower(), lines
    assert "<cache>" in lines[0]
    others = {"model", "method", "images", "percentile"} - {word}
    # Only what differs (the old and new values themselves may be words: method "percentile").
    text = lines[0].replace("<cache>", "").replace(str(getattr(KEY, field)), "").replace(str(value), "")
    assert not any(other in text for other in others), lines


def test_two_differences_are_both_named(tmp_path, lrnnet_log):
    path = tmp_path / "calib.json"
    write_cache(path, _cache())
    lrnnet_log.clear()
    assert read_cache(path, CalibrationKey(**{**KEY.__dict__, "source_sha256": "00" * 32, "images": 8})) is None
    (line,) = [r.getMessage() for r in lrnnet_log.records]
    assert "model" in line and "images" in line


@pytest.mark.parametrize("content", [
    "not json",
    json.dumps({"format": "something-else/1"}),
    json.dumps({"format": CACHE_FORMAT, "key": {"method": "minmax"}}),
    json.dumps({"format": CACHE_FORMAT, "key": {**KEY.__dict__}, "digest": "x"}),
    json.dumps({"format": CACHE_FORMAT, "key": {**KEY.__dict__}, "digest": "x", "images_used": "many",
                "ort_tensors_data": {}}),
    json.dumps(["a", "list"]),
    "[" * 200000 + "]" * 200000,  # deeper than the JSON parser recurses: was a RecursionError
])
def test_a_file_that_is_not_a_cache_is_bad_input(tmp_path, content):
    path = tmp_path / "calib.json"
    path.write_text(content)
    with pytest.raises(InputError, match=rf"^{path} is not an lrnnet calibration cache .*--calib-cache$"):
        read_cache(path, KEY)


def test_root_is_optional_when_reading(tmp_path):
    path = tmp_path / "calib.json"
    raw = {"format": CACHE_FORMAT, "key": KEY.__dict__, "digest": "d", "images_used": 2, "ort_tensors_data": RANGES}
    path.write_text(json.dumps(raw))
    cache = read_cache(path, KEY)
    assert cache is not None and cache.root == "" and cache.images_used == 2


def test_amax_reads_every_layout():
    assert _cache().amax() == {"conv1_out": 2.5, "relu_out": pytest.approx(6.35), "dead_out": 0.0, "empty_out": 0.0}
    assert CalibrationCache(key=KEY, digest="", images_used=0, root="", ort_tensors_data={}).amax() == {}


def _scale(hex_text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(hex_text))[0]


def test_tensorrt_table_has_one_scale_per_tensor():
    lines = trt_calibration_table(_cache()).splitlines()
    assert lines[0] == "TRT-0-LegacyCalibration"
    entries = dict(line.split(": ") for line in lines[1:])
    assert list(entries) == ["conv1_out", "dead_out", "empty_out", "relu_out"]  # sorted
    assert _scale(entries["conv1_out"]) == pytest.approx(2.5 / 127, rel=1e-6)
    assert _scale(entries["relu_out"]) == pytest.approx(6.35 / 127, rel=1e-6)
    assert _scale(entries["dead_out"]) == pytest.approx(1 / 127, rel=1e-6)  # never a zero scale
    assert trt_calibration_table(_cache()).endswith("\n")


@pytest.mark.parametrize("method, header", [("entropy", "EntropyCalibration2"), ("minmax", "MinMaxCalibration"),
                                            ("percentile", "LegacyCalibration")])
def test_tensorrt_table_header_names_the_algorithm(method, header):
    cache = _cache(CalibrationKey(source_sha256="0", method=method, images=1))
    assert trt_calibration_table(cache).splitlines()[0] == f"TRT-0-{header}"


@pytest.mark.parametrize("version, number", [("10.3.0", "100300"), ("10.13.2", "101302"), ("11", "110000"),
                                             ("8.6.1", "8601"), ("9.2", "9200")])
def test_tensorrt_table_header_version(version, number):
    assert trt_calibration_table(_cache(), trt_version=version).splitlines()[0] == f"TRT-{number}-LegacyCalibration"


def _graph(input_type, initializer: bool = False):
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Relu", ["input"], ["x"]), helper.make_node("Relu", ["x"], ["y"])]
    inits = [numpy_helper.from_array(np.zeros(1, np.float32), "input")] if initializer else []
    return helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", input_type, [1])],
                                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits))


def _cache_of(names) -> CalibrationCache:
    return CalibrationCache(key=KEY, digest="d", images_used=1, root="",
                            ort_tensors_data={"data": {n: {"lowest": 0.0, "highest": 1.0} for n in names}})


def test_a_cache_must_fit_the_graph_it_quantizes():
    from onnx import TensorProto

    from lrnnet.calib.cache import check_cache_against_graph

    check_cache_against_graph(_cache_of(["input", "x", "y"]), _graph(TensorProto.FLOAT), "c.json")
    check_cache_against_graph(_cache_of(["x", "y"]), _graph(TensorProto.UINT8), "c.json")  # a frame input has no range
    check_cache_against_graph(_cache_of(["x", "y"]), _graph(TensorProto.FLOAT, initializer=True), "c.json")
    with pytest.raises(InputError, match=r"^c\.json is not an lrnnet calibration cache for this graph \(it has ranges "
                                         r"for 2 tensors the graph does not have, e\.g\. 'a'\); delete it"):
        check_cache_against_graph(_cache_of(["x", "b", "a"]), _graph(TensorProto.FLOAT), "c.json")
    for float_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16):
        with pytest.raises(InputError, match=r"^c\.json .*\(no range for the graph input 'input'\); delete it"):
            check_cache_against_graph(_cache_of(["x", "y"]), _graph(float_type), "c.json")


@pytest.mark.parametrize("change, reason", [
    ({"images_used": "3"}, "'images_used' is a str ('3'), expected int"),
    ({"digest": None}, "'digest' is missing, expected str"),
    ({"images_used": True}, "'images_used' is a bool ('True'), expected int"),
    ({"images_used": 0}, "'images_used' is 0"),
    ({"key": {**KEY.__dict__, "images": "4"}}, "key 'images' is a str ('4')"),
    ({"key": {**KEY.__dict__, "percentile": float("inf")}}, "key 'percentile' is a float ('inf')"),
    ({"digest": ["y" * 60]}, "'digest' is a list (" + repr(str(["y" * 60])[:40]) + "), expected str"),
])
def test_a_broken_field_is_named_with_its_kind(tmp_path, change, reason):
    path = tmp_path / "calib.json"
    write_cache(path, _cache())
    raw = {**json.loads(path.read_text()), **change}
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError) as caught:
        read_cache(path, KEY)
    assert str(caught.value) == f"{path} is not an lrnnet calibration cache ({reason}); delete it or pass another --calib-cache"


def _broken(path, mutate) -> str:
    write_cache(path, _cache())
    raw = json.loads(path.read_text())
    mutate(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError) as caught:
        read_cache(path, KEY)
    message = str(caught.value)
    prefix, suffix = f"{path} is not an lrnnet calibration cache (", "); delete it or pass another --calib-cache"
    assert message.startswith(prefix) and message.endswith(suffix), message
    return message[len(prefix):-len(suffix)]


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def mutate(raw):
        target = raw
        for key in keys[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return mutate


_DELETE = object()
_DATA = ("ort_tensors_data", "data")


@pytest.mark.parametrize("mutate, reason", [
    (_set(*_DATA, {}), "no tensor ranges ('ort_tensors_data.data' is empty or missing)"),
    (_set("ort_tensors_data", "data", _DELETE), "no tensor ranges ('ort_tensors_data.data' is empty or missing)"),
    (_set("ort_tensors_data", "data", [1]), "no tensor ranges ('ort_tensors_data.data' is empty or missing)"),
    (_set(*_DATA, "relu_out", 5.0), "tensor 'relu_out' has no lowest/highest range"),
    (_set(*_DATA, "relu_out", {"lowest": 0.0}), "tensor 'relu_out' has no lowest/highest range"),
    (_set(*_DATA, "relu_out", {"highest": 1.0}), "tensor 'relu_out' has no lowest/highest range"),
    (_set(*_DATA, "relu_out", {"lowest": "low", "highest": 1.0}),
     "tensor 'relu_out' has a range that is not a number (a str ('low'))"),
    (_set(*_DATA, "relu_out", {"lowest": True, "highest": 1.0}),
     "tensor 'relu_out' has a range that is not a number (a bool ('True'))"),
    (_set(*_DATA, "relu_out", {"lowest": [0.0, 1.0], "highest": 1.0}),
     "tensor 'relu_out' has a range that is not a number (2 values)"),
    (_set(*_DATA, "relu_out", {"lowest": 0.0, "highest": float("nan")}),
     "tensor 'relu_out' has a non-finite range [0.0, nan]"),
    (_set(*_DATA, "relu_out", {"lowest": float("-inf"), "highest": 1.0}),
     "tensor 'relu_out' has a non-finite range [-inf, 1.0]"),
    (_set(*_DATA, "relu_out", {"lowest": 2.0, "highest": 1.5}), "tensor 'relu_out' has lowest 2 above highest 1.5"),
    (_set(*_DATA, "relu_out", {"lowest": 0.0, "highest": 10 ** 400}),  # past any float: was an OverflowError
     "tensor 'relu_out' has a range that is not a number (int too large to convert to float)"),
    (_set(*_DATA, "relu_out", {"lowest": 0.0, "highest": {"CLS": "numpy.array", "data": 1.0, "dtype": "object"}}),
     "tensor 'relu_out' has a range that is not a number (an array of dtype 'object')"),
    (_set("ort_tensors_data", "calibration_method", {"CLS": "CalibrationMethod", "value": "CalibrationMethod.Bogus"}),
     "unknown calibration method 'CalibrationMethod.Bogus'"),
    (_set(*_DATA, "relu_out", {"lowest": -65505.0, "highest": 1.0}),
     "tensor 'relu_out' has range [-65505, 1], beyond any activation (|x| > 65504, FP16's largest)"),
    (_set("format", "lrnnet-calibration-cache/0"),
     "format 'lrnnet-calibration-cache/0', expected 'lrnnet-calibration-cache/2'"),
    (_set("format", _DELETE), "format None, expected 'lrnnet-calibration-cache/2'"),
    (_set("key", "abc"), "'key' is a str ('abc'), expected dict"),
    (_set("root", 3), "'root' is a int ('3'), expected str"),
    (_set("ort_tensors_data", [1]), "'ort_tensors_data' is a list ('[1]'), expected dict"),
    (_set("key", "extra", 1), ("'key' has fields ['extra', 'images', 'method', 'percentile', 'source_sha256'], "
                              "expected ['images', 'method', 'percentile', 'source_sha256']")),
    (_set("key", "percentile", _DELETE), ("'key' has fields ['images', 'method', 'source_sha256'], "
                                         "expected ['images', 'method', 'percentile', 'source_sha256']")),
    (_set("key", "images", 4.0), "key 'images' is a float ('4.0')"),
    (_set("key", "images", True), "key 'images' is a bool ('True')"),
    (_set("key", "method", 1), "key 'method' is a int ('1')"),
    (_set("key", "percentile", "high"), "key 'percentile' is a str ('high')"),
    (_set("key", "percentile", float("nan")), "key 'percentile' is a float ('nan')"),
])
def test_every_schema_rule_of_a_cache_file(tmp_path, mutate, reason):
    assert _broken(tmp_path / "calib.json", mutate) == reason


def test_ranges_at_the_edges_are_valid(tmp_path):
    path = tmp_path / "calib.json"
    for entry in ({"lowest": -65504.0, "highest": 65504.0}, {"lowest": 1.0, "highest": 1.0},
                  {"lowest": {"CLS": "numpy.array", "data": [[0.5]]}, "highest": 2}, {"lowest": [], "highest": 0}):
        cache = CalibrationCache(key=KEY, digest="d", images_used=1, root="",
                                 ort_tensors_data={"data": {"t": entry}})
        write_cache(path, cache)
        assert read_cache(path, KEY) == cache
    key = CalibrationKey(source_sha256="0", method="minmax", images=1, percentile=None)
    cache = CalibrationCache(key=key, digest="d", images_used=1, root="", ort_tensors_data=RANGES)
    write_cache(path, cache)
    assert read_cache(path, key) == cache  # percentile None (not the percentile method) is valid


def test_not_text_not_json_and_not_an_object(tmp_path):
    path = tmp_path / "calib.json"
    for content, reason in ((b"\xff\xfe\x00garbage", "not text"), (b"", ("not JSON (Expecting value: line 1 column "
                                                                         "1 (char 0))")),
                            (b'"calibration"', "a JSON str, not an object"), (b"[1]", "a JSON list, not an object")):
        path.write_bytes(content)
        with pytest.raises(InputError) as caught:
            read_cache(path, KEY)
        assert str(caught.value) == (f"{path} is not an lrnnet calibration cache ({reason}); delete it or pass "
                                     "another --calib-cache")


def test_a_mismatch_names_every_difference_and_what_happens(tmp_path, lrnnet_log):
    path = tmp_path / "calib.json"
    write_cache(path, _cache())
    other = CalibrationKey(source_sha256="ef" * 32, method="minmax", images=8, percentile=None)
    lrnnet_log.clear()
    assert read_cache(path, other) is None
    (line,) = [r.getMessage() for r in lrnnet_log.records]
    assert line == (f"calibration cache {path} was made for model sha256 {'ab' * 6}.. (this model: {'ef' * 6}..), "
                    "method percentile (now minmax), 4 images (now 8), percentile 99.999 (now None): recalibrating "
                    "and overwriting it")
    with pytest.raises(InputError) as caught:
        read_cache(path, other, recalibrate=False)
    assert str(caught.value).startswith(f"calibration cache {path} was made for model sha256 ")
    assert str(caught.value).endswith(": cannot recalibrate without calibration images; pass --calib-data (the cache "
                                      "will be overwritten), or the cache made for this model and these settings")
    # The images (digest) count only when given, and only when the count is the same.
    assert read_cache(path, KEY, digest="cd" * 32) is not None
    lrnnet_log.clear()
    assert read_cache(path, KEY, digest="99" * 32) is None
    (line,) = [r.getMessage() for r in lrnnet_log.records]
    assert f"was made for other calibration images (digest {'cd' * 6}.., now {'99' * 6}..)" in line
    lrnnet_log.clear()
    assert read_cache(path, CalibrationKey(**{**KEY.__dict__, "images": 5}), digest="99" * 32) is None
    (line,) = [r.getMessage() for r in lrnnet_log.records]
    assert "other calibration images" not in line and "4 images (now 5)" in line


def test_a_range_end_that_is_missing_reads_as_zero_like_an_empty_array():
    # CalibrationCache.amax on a cache made in memory (read_cache refuses such a file): what a missing end means.
    ranges = {"data": {"no_lowest": {"highest": 0.5}, "no_highest": {"lowest": -0.25},
                       "no_data": {"lowest": {"CLS": "numpy.array", "dtype": "float32"}, "highest": 0.125}}}
    cache = CalibrationCache(key=KEY, digest="d", images_used=1, root="", ort_tensors_data=ranges)
    assert cache.amax() == {"no_lowest": 0.5, "no_highest": 0.25, "no_data": 0.125}


def test_a_range_end_in_a_one_element_array_is_that_value(tmp_path):
    assert _broken(tmp_path / "calib.json", _set(*_DATA, "relu_out", {"lowest": [3.0], "highest": [[1.0]]})) == \
        "tensor 'relu_out' has lowest 3 above highest 1"
    assert _broken(tmp_path / "calib.json", _set(*_DATA, "relu_out", {"lowest": 0.0, "highest": [[70000.0]]})) == \
        "tensor 'relu_out' has range [0, 70000], beyond any activation (|x| > 65504, FP16's largest)"


def test_a_cache_of_another_graph_is_refused_in_full():
    from onnx import TensorProto

    from lrnnet.calib.cache import check_cache_against_graph

    with pytest.raises(InputError) as caught:
        check_cache_against_graph(_cache_of(["x", "a"]), _graph(TensorProto.FLOAT), "c.json")
    assert str(caught.value) == ("c.json is not an lrnnet calibration cache for this graph (it has ranges for 1 tensors "
                                 "the graph does not have, e.g. 'a'); delete it or pass another --calib-cache")
    with pytest.raises(InputError) as caught:
        check_cache_against_graph(_cache_of(["x"]), _graph(TensorProto.FLOAT), "c.json")
    assert str(caught.value) == ("c.json is not an lrnnet calibration cache for this graph (no range for the graph "
                                 "input 'input'); delete it or pass another --calib-cache")


def test_writing_a_cache_says_where_with_its_table(tmp_path, lrnnet_log):
    path = tmp_path / "calib.json"
    lrnnet_log.clear()
    write_cache(path, _cache())
    assert [r.getMessage() for r in lrnnet_log.records] == [
        f"calibration cache written: {path} (+ calib.trt-calib.txt)"]


def test_a_range_below_one_gets_its_own_scale_not_the_floor():
    cache = _cache_of(["small", "one"])
    cache.ort_tensors_data["data"]["small"] = {"lowest": -0.5, "highest": 0.25}
    entries = dict(line.split(": ") for line in trt_calibration_table(cache).splitlines()[1:])
    assert _scale(entries["small"]) == pytest.approx(0.5 / 127, rel=1e-6)
    assert _scale(entries["one"]) == pytest.approx(1 / 127, rel=1e-6)


def test_a_cache_of_the_older_format_is_remade_not_trusted(tmp_path, lrnnet_log):
    # Format /1's digest named the images' files and sizes only; its cache may be of other images.
    path = tmp_path / "calib.json"
    write_cache(path, _cache())
    path.write_text(json.dumps({**json.loads(path.read_text()), "format": "lrnnet-calibration-cache/1"}))
    lrnnet_log.clear()
    assert read_cache(path, KEY, digest="cd" * 32) is None
    (line,) = [r.getMessage() for r in lrnnet_log.records]
    assert line == (f"calibration cache {path} was made for an older lrnnet (its image digest named files, not their "
                    "content): recalibrating and overwriting it")
    with pytest.raises(InputError, match="an older lrnnet .*: cannot recalibrate without calibration images"):
        read_cache(path, KEY, recalibrate=False)


def test_a_cache_lacking_ranges_the_graph_needs_is_refused_naming_them():
    from onnx import TensorProto

    from lrnnet.calib.cache import calibrated_tensors, check_cache_against_graph

    assert calibrated_tensors(_graph(TensorProto.FLOAT)) == {"input", "y"}  # x has no recorded type: not measured
    with pytest.raises(InputError) as caught:
        check_cache_against_graph(_cache_of(["input", "x"]), _graph(TensorProto.FLOAT), "c.json")
    assert str(caught.value) == ("c.json is not an lrnnet calibration cache for this graph (no range for 1 of the "
                                 "tensors a calibration of it measures: 'y'); delete it or pass another --calib-cache")
