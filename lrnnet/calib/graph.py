"""The source graph of a precision build: load and vet the FP32 export, and find what must stay in float.

Both precision passes (FP16 conversion, INT8 Q/DQ) keep the same islands in float32: the SVN
module's own arithmetic, i.e. the power iteration with its max-abs rescaling, the Gram products,
the L2 normalisation and the sign convention, plus the attention softmax. Its 1x1 convolutions
(query, region features, projection) are ordinary layers and do get lower precision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import onnx

from lrnnet._io import file_sha256
from lrnnet.errors import InputError
from lrnnet.export.metadata import ModelInfo, check_weights_digest
from lrnnet.log import logger

# torch.onnx (TorchScript exporter) names every node "/<module path>/<Op>_<k>". The decoder's
# context module is LRNNet.context (the SVN), so its own ops (written in ReducedNonLocal.forward and
# the power-iteration functions it calls) are "/context/<Op>..." with no further scope; ops of its
# conv submodules are "/context/query/...", "/context/region_features/...", "/context/project/...".
SVN_SCOPE = "/context/"
_OWN_OP_OF_SCOPE = re.compile(rf"(^|.*/){re.escape(SVN_SCOPE.strip('/'))}/[^/]+$")

# Numerically sensitive wherever they occur (overflow or cancellation in half precision, or a
# distribution that int8 cannot represent): kept in float even outside the SVN scope.
SENSITIVE_OP_TYPES = frozenset({"Softmax", "LogSoftmax", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2",
                                "ReduceSumSquare", "Sqrt", "Pow", "Reciprocal", "Exp", "Log"})


@dataclass(frozen=True)
class SourceModel:
    """A vetted FP32 lrnnet export: its path, graph, metadata and content hash."""

    path: Path
    model: onnx.ModelProto
    info: ModelInfo
    sha256: str

    @property
    def input_name(self) -> str:
        return graph_input_names(self.model)[0]


def graph_input_names(model: onnx.ModelProto) -> list[str]:
    """The real inputs (graph inputs that are not initializers, as old exporters list both)."""
    initializers = {init.name for init in model.graph.initializer}
    return [value.name for value in model.graph.input if value.name not in initializers]


def tensor_readers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes that read each tensor, in graph order (graph outputs are not nodes: check those apart)."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def load_source_onnx(path: str | Path) -> SourceModel:
    """Load the FP32 export to build from; InputError for a missing, corrupt, foreign or already-converted file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ONNX file {path} does not exist; export one with: lrnnet-export CHECKPOINT -o {path}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, ValidationError, external-data errors all mean the same
        raise InputError(f"{path} is not a valid ONNX model (truncated or corrupt: "
                         f"{type(exc).__name__}); re-export it with lrnnet-export") from exc
    info = ModelInfo.from_onnx_model(model, str(path))
    check_weights_digest(model, str(path))  # bytes flipped inside a weight: InputError naming the file
    if info.precision != "fp32":
        raise InputError(f"{path} is already a {info.precision} graph; build from the FP32 export "
                         "(the lrnnet-export output, lrnnet.onnx by default)")
    if len(graph_input_names(model)) != 1:
        raise InputError(f"{path} has inputs {graph_input_names(model)}; an lrnnet export has exactly one")
    return SourceModel(path, model, info, file_sha256(path))


def float_island_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that FP16 conversion and INT8 quantization must leave in float32."""
    in_scope = [n.name for n in model.graph.node if _OWN_OP_OF_SCOPE.match(n.name)]
    sensitive = [n.name for n in model.graph.node if n.op_type in SENSITIVE_OP_TYPES and n.name]
    if not in_scope and any(n.op_type == "MatMul" for n in model.graph.node):
        # A graph whose node names lost their module scopes (another exporter, a renaming pass):
        # the sensitive op types still cover the power iteration's reductions and normalisation.
        logger.warning("no nodes under the SVN scope %r in the graph; keeping only %s in float32",
                       SVN_SCOPE, ", ".join(sorted(SENSITIVE_OP_TYPES & {n.op_type for n in model.graph.node})))
    return sorted(set(in_scope) | set(sensitive))


def output_head_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes from each graph output back to (and including) the last Conv: the classifier head.

    For LRNNet: the 1x1 classifier Conv, the bilinear Resize to the input size (and ArgMax when in
    the graph). INT8 leaves them in float: int8 logits would round away the margins argmax decides
    on, and the head is a small share of the work (one 1x1 conv at 1/8 resolution).
    """
    producers = {output: node for node in model.graph.node for output in node.output}
    initializers = {init.name for init in model.graph.initializer}
    head: list[str] = []
    for graph_output in model.graph.output:
        node = producers.get(graph_output.name)
        while node is not None and node.name not in head:
            head.append(node.name)
            if node.op_type == "Conv":
                break
            # Follow the data input (the first one a node produces), not shapes or sizes.
            data = [name for name in node.input if name and name not in initializers and name in producers]
            node = producers[data[0]] if data else None
    return head
