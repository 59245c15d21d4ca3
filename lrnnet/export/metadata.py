"""The one place for the ONNX metadata contract (DESIGN.md, Contracts).

The exporter writes a `ModelInfo` into the ONNX `metadata_props`; every later stage (build-engine,
infer, eval, bench, the engine sidecar) reads it back instead of asking the user again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import lrnnet
from lrnnet.data.labels import CLASS_NAMES, PALETTE_RGB
from lrnnet.data.preprocess import MEAN_RGB, STD_RGB
from lrnnet.errors import InputError

MODEL_NAME = "lrnnet"
KEY_PREFIX = "lrnnet."  # every key is stored as "lrnnet.<field name>", values JSON-encoded

LAYOUT_NCHW_FLOAT = "NCHW float32 RGB normalised"
LAYOUT_NHWC_UINT8_BGR = "NHWC uint8 BGR"


@dataclass
class ModelInfo:
    """What a deployed LRNNet graph is and expects; the field names are the metadata keys."""

    input_height: int  # the exported size; with dynamic=True the size the graph was traced at
    input_width: int
    stride: int  # dynamic H and W must be multiples of it
    num_classes: int = len(CLASS_NAMES)
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    palette: list[list[int]] = field(default_factory=lambda: PALETTE_RGB.tolist())  # RGB, index = class
    mean: list[float] = field(default_factory=lambda: list(MEAN_RGB))
    std: list[float] = field(default_factory=lambda: list(STD_RGB))
    input_layout: str = LAYOUT_NCHW_FLOAT
    batch: int = 1
    dynamic: bool = False
    power_iterations: int = 0
    preprocess_in_graph: bool = False
    argmax_in_graph: bool = False
    precision: str = "fp32"  # fp32 | fp16 | int8
    model_config: dict[str, Any] = field(default_factory=dict)  # LRNNet constructor options
    model: str = MODEL_NAME
    lrnnet_version: str = lrnnet.__version__
    extra: dict[str, Any] = field(default_factory=dict)  # stage-specific facts (e.g. calibration digest)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    def to_props(self) -> dict[str, str]:
        return {KEY_PREFIX + key: json.dumps(value) for key, value in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "model") -> ModelInfo:
        values = {key[len(KEY_PREFIX):]: value for key, value in props.items() if key.startswith(KEY_PREFIX)}
        if json.loads(values.get("model", "null")) != MODEL_NAME:
            raise InputError(f"{source} is not an lrnnet export (no '{KEY_PREFIX}model' metadata); "
                             "export it with lrnnet-export")
        known = {f.name for f in fields(cls)}
        return cls(**{key: json.loads(value) for key, value in values.items() if key in known})

    def write_to(self, onnx_model: Any) -> None:
        """Set the metadata on an onnx.ModelProto, replacing earlier lrnnet keys."""
        kept = [p for p in onnx_model.metadata_props if not p.key.startswith(KEY_PREFIX)]
        del onnx_model.metadata_props[:]
        onnx_model.metadata_props.extend(kept)
        for key, value in self.to_props().items():
            entry = onnx_model.metadata_props.add()
            entry.key, entry.value = key, value

    @classmethod
    def from_onnx_model(cls, onnx_model: Any, source: str = "model") -> ModelInfo:
        return cls.from_props({p.key: p.value for p in onnx_model.metadata_props}, source)


def read_model_info(onnx_path: str | Path) -> ModelInfo:
    """Read the metadata of an ONNX file; clear errors for a missing, corrupt or foreign file."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise InputError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InputError(f"{path} is not a readable ONNX model ({type(exc).__name__}); re-export it") from exc
    return ModelInfo.from_onnx_model(model, str(path))
