"""FP16 in the graph: onnxconverter-common's converter, with the power iteration kept in float32.

TensorRT 11 has no FP16 builder flag (networks are strongly typed), so half precision must be
written into the ONNX. The converter is a maintained one (onnxconverter-common's
``convert_float_to_float16``), told which nodes to leave alone: the SVN module's own arithmetic
and any softmax/reduction (lrnnet.calib.graph.float_island_nodes).
"""

from __future__ import annotations

import dataclasses
import warnings

import onnx

from lrnnet.calib.graph import SourceModel, float_island_nodes
from lrnnet.calib.recipes import recipes_for
from lrnnet.errors import InputError
from lrnnet.log import logger


def convert_to_fp16(source: SourceModel, keep_io_fp32: bool = True, target: str = "onnxruntime") -> onnx.ModelProto:
    """The FP16 graph of `source`, checked by onnx.checker; its metadata says precision 'fp16', and for
    which target (lrnnet.calib.recipes) and what for. The graph is the same for both targets: real
    float16 convolutions, the islands in float32; only TensorRT and ONNX Runtime's CUDA provider run
    it in half precision (the CPU provider casts it back to float32).

    keep_io_fp32: the graph keeps float32 inputs and outputs (casts inside), so callers feed and read
    the same arrays as with the FP32 graph. Without it the float input and output become float16.
    """
    from onnxconverter_common import float16

    # Resize is in the converter's default block list, but a blocked node that produces a graph
    # output (LRNNet's final upsampling of the logits) trips the converter with keep_io_types
    # ("The downstream node of the second cast node should be graph output"). So Resize runs in
    # FP16 (as TensorRT's FP16 mode would run it), except a Resize given float `scales`, which the
    # converter would turn into float16 scales, invalid for Resize: those stay blocked by name.
    op_block_list = [op for op in float16.DEFAULT_OP_BLOCK_LIST if op != "Resize"]
    scaled_resizes = [n.name for n in source.model.graph.node
                      if n.op_type == "Resize" and len(n.input) > 2 and n.input[2]]
    blocked = sorted(set(float_island_nodes(source.model)) | set(scaled_resizes))
    graph = onnx.ModelProto()
    graph.CopyFrom(source.model)  # the converter edits its argument
    # The converter re-infers shapes itself, and retypes only the first value_info of a name, so a
    # duplicated entry (onnxslim writes some) would keep a stale float32 type: start from none.
    del graph.graph.value_info[:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(graph, keep_io_types=keep_io_fp32, node_block_list=blocked,
                                                     op_block_list=op_block_list)
    _retype_casts_to_float16(converted)
    # One warning per weight below float16's range (|w| < 1e-7, set to +-1e-7): harmless, counted here.
    if caught:
        logger.debug("FP16: %d weights were outside float16's range and were clamped", len(caught))
    try:
        onnx.checker.check_model(converted)
    except onnx.checker.ValidationError as exc:
        raise InputError(f"the FP16 conversion of {source.path} is not a valid graph: {exc}") from exc
    extra = {**source.info.extra, "float32_nodes": len(blocked), "keep_io_fp32": keep_io_fp32}
    recipe = recipes_for(target).fp16
    extra["fp16_recipe"] = recipe.tool
    dataclasses.replace(source.info, precision="fp16", extra=extra, engine_target=target,
                        engine_purpose=recipe.purpose).write_to(converted)
    return converted


def _retype_casts_to_float16(model: onnx.ModelProto) -> None:
    """Point every Cast to float32 whose output the converter retyped to float16 at float16.

    The converter retypes the value_info of each float tensor outside the blocked nodes, but not a
    Cast's `to` attribute: the uint8 -> float Cast of a --preprocess-in-graph export then declares a
    float16 output while producing float32, and ONNX Runtime refuses the graph. A uint8 pixel is
    exact in float16, so the Cast writes float16 directly (no second Cast).
    """
    float16_values = {value.name for value in model.graph.value_info
                      if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    for node in model.graph.node:
        if node.op_type != "Cast" or node.output[0] not in float16_values:
            continue
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                attribute.i = onnx.TensorProto.FLOAT16
