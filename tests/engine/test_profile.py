"""The input profile (TensorRT optimization profile, and the sidecar's record) from the graph and ModelInfo."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from lrnnet.engine.profile import input_profile
from lrnnet.errors import InputError
from lrnnet.export.metadata import LAYOUT_NHWC_UINT8_BGR, ModelInfo


def _graph(dims: list, elem_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("input", elem_type, dims)
    y = helper.make_tensor_value_info("out", elem_type, dims)
    return helper.make_model(helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "g", [x], [y]))


def test_static_profile_is_the_export_shape():
    info = ModelInfo(input_height=128, input_width=256, stride=8)
    profile = input_profile(_graph([1, 3, 128, 256]), info, "input")
    assert not profile.dynamic and profile.min == profile.opt == profile.max == (1, 3, 128, 256)


def test_dynamic_profile_spans_half_to_twice_the_size_in_strides():
    info = ModelInfo(input_height=512, input_width=1024, stride=8, dynamic=True)
    profile = input_profile(_graph(["batch", 3, "height", "width"]), info, "input", max_batch=4)
    assert profile.min == (1, 3, 256, 512) and profile.opt == (1, 3, 512, 1024) and profile.max == (4, 3, 1024, 2048)
    assert profile.to_dict() == {"input": {"min": [1, 3, 256, 512], "opt": [1, 3, 512, 1024],
                                           "max": [4, 3, 1024, 2048]}}
    # A size that halves to a non-multiple of the stride is rounded down to one.
    odd = input_profile(_graph([1, 3, "height", 200]), ModelInfo(input_height=200, input_width=200, stride=8),
                        "input")
    assert odd.min == (1, 3, 96, 200) and odd.max == (1, 3, 400, 200)


def test_nhwc_uint8_layout_uses_axes_1_and_2():
    info = ModelInfo(input_height=64, input_width=128, stride=8, input_layout=LAYOUT_NHWC_UINT8_BGR,
                     preprocess_in_graph=True)
    profile = input_profile(_graph([1, "height", "width", 3], TensorProto.UINT8), info, "input")
    assert profile.min == (1, 32, 64, 3) and profile.max == (1, 128, 256, 3)


def test_graph_and_metadata_must_agree():
    info = ModelInfo(input_height=128, input_width=256, stride=8)
    with pytest.raises(InputError, match="re-export"):
        input_profile(_graph([1, 3, 64, 256]), info, "input")
    with pytest.raises(InputError, match="no input named"):
        input_profile(_graph([1, 3, 128, 256]), info, "image")
