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

from pathlib import Path

import onnx

from lrnnet._io import atomic_output
from lrnnet.calib.recipes import ONNXRUNTIME_CPU_INT8_DISABLED_OPTIMIZERS
from lrnnet.errors import InputError
from lrnnet.export.metadata import ModelInfo

OPTIMIZATION_LEVEL = "ORT_ENABLE_BASIC"


def check_runs_on_onnxruntime(model: onnx.ModelProto, what: str) -> None:
    """Create an ONNX Runtime CPU session for `model`: the graph loads and every op has a kernel."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(f"ONNX Runtime cannot load {what}: {' '.join(str(exc).split())[:300]}") from exc


def optimize_for_onnxruntime(model: onnx.ModelProto, output: str | Path) -> None:
    """Write `model`, graph-optimised by ONNX Runtime (BASIC), to `output` atomically, metadata kept."""
    import onnxruntime as ort

    info = ModelInfo.from_onnx_model(model)
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVEL)
    with atomic_output(output) as tmp:
        options.optimized_model_filepath = str(tmp)
        try:
            disabled = list(ONNXRUNTIME_CPU_INT8_DISABLED_OPTIMIZERS) if info.precision == "int8" else []
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"],
                                 disabled_optimizers=disabled)
        except Exception as exc:
            raise InputError(f"ONNX Runtime cannot load the {info.precision} graph: "
                             f"{' '.join(str(exc).split())[:300]}") from exc
        optimized = onnx.load(str(tmp))
        info.write_to(optimized)  # ORT keeps metadata_props today; write them anyway, they are the contract
        onnx.save(optimized, str(tmp))
