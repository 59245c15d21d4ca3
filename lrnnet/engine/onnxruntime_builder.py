"""The ONNX Runtime "engine": the precision ONNX of the ONNX Runtime target, graph-optimised by ONNX Runtime and saved.

The optimisation level is BASIC: constant folding and redundant-node elimination, which leave
standard ONNX ops only. EXTENDED and above fuse into com.microsoft contrib ops and NCHWc layouts
tied to the execution provider and CPU that optimised them (ONNX Runtime's documentation warns that
such saved graphs may not run elsewhere); ONNX Runtime applies those fusions again at session start
(the QLinearConv fusion of INT8 included), so nothing is lost. Q/DQ pairs survive BASIC, so INT8
stays INT8; BASIC also quantizes the float conv biases into int32 DequantizeLinear, which ONNX
Runtime runs and TensorRT's parser rejects: the file is for ONNX Runtime, and the TensorRT target
gets its own graph (lrnnet.engine.build, lrnnet_<precision>.trt.onnx). FP16 is saved as converted
(lrnnet.engine.build): the CPU provider's optimisation would wrap every float16 conv in Casts.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import onnx

from lrnnet._io import free_bytes, scratch_folder, write_bytes_atomic
from lrnnet.calib.recipes import ONNXRUNTIME_CPU_INT8_DISABLED_OPTIMIZERS
from lrnnet.errors import InputError
from lrnnet.export.metadata import ModelInfo

OPTIMIZATION_LEVEL = "ORT_ENABLE_BASIC"


class GraphRejected(RuntimeError):
    """ONNX Runtime refuses a graph lrnnet made from a source it loads: a bug in lrnnet (exit 1), not bad input."""


def check_runs_on_onnxruntime(model: onnx.ModelProto, what: str, source: onnx.ModelProto | None = None) -> None:
    """Create an ONNX Runtime CPU session for `model`: the graph loads, every op has a kernel, and its
    I/O agrees with its metadata by the check the runtime applies when it opens the engine (so a graph
    whose metadata lies is refused here, not by lrnnet-infer later).

    `source`: the graph `model` was made from. When ONNX Runtime loads it but not `model`, lrnnet's
    own step broke the graph (GraphRejected, an internal error); otherwise the input is what to fix
    (InputError).
    """
    from lrnnet.runtime.onnxruntime_runner import check_graph_against_info

    try:
        session = _session(model)
    except Exception as exc:
        reason = _first_words(exc)
        if source is not None and _loads(source):
            raise GraphRejected(f"ONNX Runtime loads the source but not {what}, which lrnnet made from it: "
                                f"{reason}") from exc
        raise InputError(f"ONNX Runtime cannot load {what}: {reason}") from exc
    check_graph_against_info(what, ModelInfo.from_onnx_model(model), session.get_inputs()[0],
                             session.get_outputs()[0])


def _session(model: onnx.ModelProto, options: Any = None, **kwargs: Any) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"], **kwargs)


def _loads(model: onnx.ModelProto) -> bool:
    try:
        _session(model)
    except Exception:  # noqa: BLE001 - any refusal means the same here: it does not load
        return False
    return True


def _first_words(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def optimize_for_onnxruntime(model: onnx.ModelProto, output: str | Path) -> None:
    """Write `model`, graph-optimised by ONNX Runtime (BASIC), to `output` atomically, metadata kept.

    ONNX Runtime saves its optimised graph into a private folder and reports a failed write only as
    "INVALID_PROTOBUF"; lrnnet's own writer then puts the graph at `output`, so a full disk there is
    an OSError naming the file. `model` has passed check_runs_on_onnxruntime: a failure here is a
    full temporary folder, or a bug (GraphRejected).
    """
    import onnxruntime as ort

    info = ModelInfo.from_onnx_model(model)
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVEL)
    disabled = list(ONNXRUNTIME_CPU_INT8_DISABLED_OPTIMIZERS) if info.precision == "int8" else []
    with scratch_folder("lrnnet-ort") as scratch:  # a killed build's copy is removed by the next one
        saved = scratch / "optimized.onnx"
        options.optimized_model_filepath = str(saved)
        try:
            _session(model, options, disabled_optimizers=disabled)
        except Exception as exc:
            _raise_if_disk_full(scratch, model.ByteSize(), exc)
            raise GraphRejected(f"ONNX Runtime cannot optimise the {info.precision} graph: {_first_words(exc)}") \
                from exc
        optimized = onnx.load(str(saved))
    info.write_to(optimized)  # ORT keeps metadata_props today; write them anyway, they are the contract
    write_bytes_atomic(output, optimized.SerializeToString())


def _raise_if_disk_full(folder: Path, needed: int, exc: BaseException) -> None:
    """ENOSPC naming `folder` when it has no room for `needed` bytes: ONNX Runtime's write failed for that."""
    free = free_bytes(folder)
    if free is not None and free < needed:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder)) from exc
