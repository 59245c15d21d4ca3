"""The metadata schema (lrnnet.export.metadata): every rule holds at its edge, and each break names its field.

Fast, on ModelInfo values and small ONNX graphs; the exports that write real metadata are tested
in test_onnx.py. Written for mutation testing: a changed bound, message or check fails here.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lrnnet.data.labels import CLASS_NAMES, PALETTE_RGB
from lrnnet.errors import InputError
from lrnnet.export.metadata import (
    DIGEST_KEY,
    KEY_PREFIX,
    LAYOUT_NCHW_FLOAT,
    LAYOUT_NHWC_UINT8_BGR,
    ModelInfo,
    check_weights_digest,
    read_model_info,
    weights_digest,
)


def _info(**changes) -> ModelInfo:
    info = ModelInfo(input_height=64, input_width=128, stride=8)
    for key, value in changes.items():
        setattr(info, key, value)
    return info


def _problem(**changes) -> str:
    with pytest.raises(InputError) as caught:
        _info(**changes).validate("x.onnx")
    message = str(caught.value)
    assert message.startswith("x.onnx has invalid lrnnet metadata: ") and message.endswith("re-export it with lrnnet-export")
    return message


def test_defaults_are_valid_cityscapes_metadata():
    info = _info()
    info.validate()
    assert info.num_classes == 19 == len(info.class_names) == len(info.palette)
    assert info.class_names == list(CLASS_NAMES) and info.palette == PALETTE_RGB.tolist()
    assert (info.input_layout, info.batch, info.precision, info.model, info.engine_target) == \
        (LAYOUT_NCHW_FLOAT, 1, "fp32", "lrnnet", "")
    assert info.input_size == (64, 128)


@pytest.mark.parametrize("changes, words", [
    ({"input_height": 0}, "input_height 0 is not an integer in 1..8192"),
    ({"input_width": 8200}, "input_width 8200 is not an integer in 1..8192"),
    ({"input_height": True}, "input_height True"),
    ({"stride": 3}, "stride 3 is not one of"),
    ({"input_height": 60}, "input size 60x128 is not a multiple of the stride 8"),
    ({"input_width": 132}, "input size 64x132 is not a multiple of the stride 8"),
    ({"num_classes": 0}, "num_classes 0 is not an integer in 1..1024"),
    ({"num_classes": 1025}, "num_classes 1025"),
    ({"class_names": "road"}, "class_names is not a list of names"),
    ({"class_names": [1] * 19}, "class_names is not a list of names"),
    ({"palette": [[0, 0, 256]] * 19}, "palette is not a list of [R, G, B] colours in 0..255"),
    ({"palette": [[0, 0, -1]] * 19}, "palette is not"),
    ({"palette": [[0, 0]] * 19}, "palette is not"),
    ({"palette": "red"}, "palette is not"),
    ({"num_classes": 18}, "18 classes but 19 names and 19 colours"),
    ({"palette": [[0, 0, 0]] * 18}, "19 classes but 19 names and 18 colours"),
    ({"mean": [0.5, 0.5]}, "mean [0.5, 0.5] is not three numbers in [0, 1]"),
    ({"mean": [0.5, 0.5, 1.5]}, "mean"),
    ({"mean": [0.5, 0.5, -0.1]}, "mean"),
    ({"mean": [0.5, 0.5, float("nan")]}, "mean"),
    ({"std": [0.2, 0.2, 0.0]}, "std [0.2, 0.2, 0.0] is not three numbers in [0.01, 1]"),
    ({"std": [0.2, 0.2, 1.01]}, "std"),
    ({"std": [0.2, 0.2]}, "std"),
    ({"input_layout": "NCHW"}, "input_layout 'NCHW' is not one of"),
    ({"dynamic": 1}, "dynamic 1 is not true/false"),
    ({"argmax_in_graph": "no"}, "argmax_in_graph 'no' is not true/false"),
    ({"preprocess_in_graph": True}, "disagrees with preprocess_in_graph True"),
    ({"input_layout": LAYOUT_NHWC_UINT8_BGR}, "disagrees with preprocess_in_graph False"),
    ({"batch": 0}, "batch 0 is not an integer in 1..1024"),
    ({"batch": 1025}, "batch 1025"),
    ({"power_iterations": -1}, "power_iterations -1 is not an integer in 0..1000"),
    ({"power_iterations": 1001}, "power_iterations 1001"),
    ({"precision": "bf16"}, "precision 'bf16' is not one of ['fp32', 'fp16', 'int8']"),
    ({"model_config": []}, "model_config is not a dict"),
    ({"extra": None}, "extra is not a dict"),
    ({"lrnnet_version": 1}, "lrnnet_version is not a string"),
    ({"engine_target": "gpu"}, "engine_target 'gpu' is not one of ['', 'onnxruntime', 'tensorrt']"),
    ({"engine_purpose": None}, "engine_purpose is not a string"),
])
def test_each_rule_names_its_field(changes, words):
    assert words in _problem(**changes)


@pytest.mark.parametrize("changes", [
    {"input_height": 8192, "input_width": 8192, "stride": 64}, {"input_height": 1, "input_width": 1, "stride": 1},
    {"num_classes": 1, "class_names": ["a"], "palette": [[0, 0, 0]]},
    {"num_classes": 1024, "class_names": ["a"] * 1024, "palette": [[255, 255, 255]] * 1024},
    {"mean": [0, 0.0, 1.0]}, {"std": [0.01, 1.0, 1]}, {"batch": 1024}, {"power_iterations": 0},
    {"power_iterations": 1000}, {"precision": "int8"}, {"precision": "fp16"}, {"engine_target": "tensorrt"},
    {"engine_target": "onnxruntime"}, {"input_layout": LAYOUT_NHWC_UINT8_BGR, "preprocess_in_graph": True},
    {"dynamic": True, "argmax_in_graph": True},
])
def test_the_edges_are_valid(changes):
    _info(**changes).validate()


def test_only_the_first_three_problems_are_listed():
    message = _problem(batch=0, precision="x", power_iterations=-1, engine_target="y")
    assert "batch 0" in message and "precision 'x'" in message and "power_iterations -1" in message
    assert "engine_target" not in message


def _graph() -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    const = helper.make_node("Constant", [], ["c"], name="const",
                             value=numpy_helper.from_array(np.ones(2, np.float32)))
    add = helper.make_node("Add", ["y", "c"], ["z"])
    graph = helper.make_graph([node, const, add], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3])], [weight])
    return helper.make_model(graph)


def test_round_trip_through_an_onnx_file(tmp_path):
    model = _graph()
    model.metadata_props.add(key="other.tool", value="kept")
    info = _info(precision="int8", extra={"calibration": {"images": 4}}, engine_target="onnxruntime",
                 engine_purpose="a test", model_config={"svd": "power"})
    info.write_to(model)
    info.write_to(model)  # rewriting replaces, never duplicates
    keys = [p.key for p in model.metadata_props]
    assert keys.count(DIGEST_KEY) == 1 and keys.count(KEY_PREFIX + "precision") == 1 and "other.tool" in keys
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props[KEY_PREFIX + "precision"]) == "int8" and props[DIGEST_KEY] == weights_digest(model)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert read_model_info(path) == info
    assert ModelInfo.from_onnx_model(model) == info


def test_flipped_weight_bytes_are_found(tmp_path, caplog):
    model = _graph()
    _info().write_to(model)
    check_weights_digest(model, "m.onnx")
    model.graph.initializer[0].raw_data = np.arange(6, dtype=np.float32)[::-1].copy().tobytes()
    with pytest.raises(InputError, match=r"^m\.onnx is corrupt: its weights do not match the SHA-256"):
        check_weights_digest(model, "m.onnx")
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InputError, match="is corrupt"):
        read_model_info(path)
    # A changed Constant counts too, and a graph without a digest is accepted (not lrnnet's).
    other = _graph()
    _info().write_to(other)
    other.graph.node[1].attribute[0].t.CopyFrom(numpy_helper.from_array(np.zeros(2, np.float32)))
    with pytest.raises(InputError, match="is corrupt"):
        check_weights_digest(other, "c.onnx")
    plain = _graph()
    check_weights_digest(plain, "plain.onnx")


def test_the_digest_depends_on_names_types_shapes_and_values():
    base = weights_digest(_graph())
    assert base == weights_digest(_graph()) and len(base) == 64
    renamed = _graph()
    renamed.graph.initializer[0].name = "w2"
    reshaped = _graph()
    reshaped.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "w"))
    retyped = _graph()
    retyped.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.arange(6, dtype=np.float64).reshape(2, 3), "w"))
    assert len({base, weights_digest(renamed), weights_digest(reshaped), weights_digest(retyped)}) == 4
    external = _graph()
    external.graph.initializer[0].data_location = TensorProto.EXTERNAL
    assert weights_digest(external) is None


def test_foreign_missing_and_broken_metadata_are_bad_input(tmp_path):
    with pytest.raises(InputError, match=r"^ONNX file .*absent\.onnx does not exist"):
        read_model_info(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x96 not protobuf \xff")
    with pytest.raises(InputError, match=r"junk\.onnx is not a readable ONNX model .*re-export it"):
        read_model_info(junk)
    foreign = tmp_path / "foreign.onnx"
    onnx.save(_graph(), str(foreign))
    with pytest.raises(InputError, match=r"foreign\.onnx is not an lrnnet export \(no 'lrnnet\.model' metadata\)"):
        read_model_info(foreign)
    props = _info().to_props()
    with pytest.raises(InputError, match=r"^m: metadata lrnnet\.batch is not JSON \('one'\)"):
        ModelInfo.from_props({**props, KEY_PREFIX + "batch": "one"}, "m")
    lacking = {k: v for k, v in props.items() if k != KEY_PREFIX + "stride"}
    with pytest.raises(InputError, match=r"^m: lrnnet metadata lacks lrnnet\.stride; re-export"):
        ModelInfo.from_props(lacking, "m")
    with pytest.raises(InputError, match="batch 0"):
        ModelInfo.from_props({**props, KEY_PREFIX + "batch": "0"}, "m")
    # Unknown keys (a newer lrnnet's) are ignored; the model name must be lrnnet's.
    assert ModelInfo.from_props({**props, KEY_PREFIX + "future_field": "1"}) == _info()
    with pytest.raises(InputError, match="not an lrnnet export"):
        ModelInfo.from_props({**props, KEY_PREFIX + "model": json.dumps("other")})


def _problems_of(message: str) -> list[str]:
    return message.split(" has invalid lrnnet metadata: ", 1)[1].rsplit("; re-export it with lrnnet-export", 1)[0] \
        .split("; ")


def test_messages_in_full_with_the_default_source():
    with pytest.raises(InputError) as caught:
        _info(batch=0, precision="x").validate()
    assert str(caught.value) == ("model has invalid lrnnet metadata: batch 0 is not an integer in 1..1024; "
                                 "precision 'x' is not one of ['fp32', 'fp16', 'int8']; re-export it with lrnnet-export")
    with pytest.raises(InputError) as caught:
        ModelInfo.from_dict({})
    assert str(caught.value) == ("model: lrnnet metadata lacks lrnnet.input_height, lrnnet.input_width, "
                                 "lrnnet.stride; re-export it with lrnnet-export")
    with pytest.raises(InputError, match=r"^m has invalid lrnnet metadata: batch 0"):
        ModelInfo.from_dict({**_info().__dict__, "batch": 0}, "m")
    with pytest.raises(InputError) as caught:
        ModelInfo.from_props({})
    assert str(caught.value) == ("model is not an lrnnet export (no 'lrnnet.model' metadata); "
                                 "export it with lrnnet-export")
    with pytest.raises(InputError, match=r"^model is not an lrnnet export"):
        ModelInfo.from_onnx_model(_graph())
    long = "x" * 50
    with pytest.raises(InputError) as caught:
        ModelInfo.from_props({KEY_PREFIX + "model": long}, "m")
    assert str(caught.value) == f"m: metadata lrnnet.model is not JSON ({long[:40]!r}); re-export it with lrnnet-export"


@pytest.mark.parametrize("changes, problem", [
    ({"class_names": [1] * 19}, "class_names is not a list of names"),
    ({"palette": "red"}, "palette is not a list of [R, G, B] colours in 0..255"),
    ({"model_config": []}, "model_config is not a dict"),
    ({"extra": None}, "extra is not a dict"),
    ({"lrnnet_version": 1}, "lrnnet_version is not a string"),
    ({"engine_purpose": None}, "engine_purpose is not a string"),
    ({"mean": [True, 0.5, 0.5]}, "mean [True, 0.5, 0.5] is not three numbers in [0, 1]"),  # a bool is no number
    ({"mean": ["0.5", 0.5, 0.5]}, "mean ['0.5', 0.5, 0.5] is not three numbers in [0, 1]"),
    ({"input_layout": "bad", "preprocess_in_graph": True},
     "input_layout 'bad' is not one of ['NCHW float32 RGB normalised', 'NHWC uint8 BGR']"),
])
def test_the_exact_problem(changes, problem):
    with pytest.raises(InputError) as caught:
        _info(**changes).validate("x")
    assert _problems_of(str(caught.value)) == [problem]


def test_read_model_info_leaves_external_data_alone_and_names_the_file(tmp_path):
    model = _graph()
    _info().write_to(model)
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="ext.data",
              size_threshold=0)
    (tmp_path / "ext.data").unlink()  # weights elsewhere (not needed to read the metadata)
    assert read_model_info(path) == _info()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x96 not protobuf \xff")
    with pytest.raises(InputError) as caught:
        read_model_info(junk)
    assert "NoneType" not in str(caught.value) and "Error)" in str(caught.value)
    bad = _graph()
    _info().write_to(bad)
    bad.graph.initializer[0].raw_data = np.zeros(6, np.float32).tobytes()
    onnx.save(bad, str(tmp_path / "bad.onnx"))
    with pytest.raises(InputError) as caught:
        read_model_info(tmp_path / "bad.onnx")
    assert str(caught.value) == (f"{tmp_path / 'bad.onnx'} is corrupt: its weights do not match the SHA-256 recorded "
                                 "when it was written (damaged on disk or in transfer); use another copy or re-export it")


def test_a_graph_without_a_digest_is_accepted_with_a_note_naming_it(tmp_path, caplog):
    import logging

    import lrnnet.log

    logger = logging.getLogger("lrnnet")
    caplog.set_level(logging.INFO, logger="lrnnet")
    attach = not logger.propagate
    if attach:
        logger.addHandler(caplog.handler)
    try:
        with lrnnet.log.deferred_notes():
            check_weights_digest(_graph(), "plain.onnx")
    finally:
        if attach:
            logger.removeHandler(caplog.handler)
    assert [r.getMessage() for r in caplog.records] == [
        "note: plain.onnx carries no weights digest (not written by this lrnnet): its integrity is not checked"]


def test_two_unnamed_constants_have_a_digest_in_graph_order():
    # Their digest names are the same ("/value"): the tensors themselves are never compared to sort them.
    def model(first, second):
        consts = [helper.make_node("Constant", [], [out], value=numpy_helper.from_array(np.full(2, v, np.float32)))
                  for out, v in (("a", first), ("b", second))]
        add = helper.make_node("Add", ["a", "b"], ["y"])
        graph = helper.make_graph([*consts, add], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
        return helper.make_model(graph)

    digest = weights_digest(model(1.0, 2.0))
    assert digest is not None and digest == weights_digest(model(1.0, 2.0)) != weights_digest(model(2.0, 1.0))
    stamped = model(1.0, 2.0)
    _info().write_to(stamped)
    check_weights_digest(stamped, "m.onnx")
