"""The one place for the ONNX metadata contract (DESIGN.md, Contracts).

The exporter writes a `ModelInfo` into the ONNX `metadata_props`; every later stage (build-engine,
infer, eval, bench, the engine sidecar) reads it back instead of asking the user again.

The schema is here and only here: `ModelInfo.validate` (types, ranges, allowed values, and the
fields' agreement with each other) runs on every read (`from_props`, hence `read_model_info` and
every runner; the engine sidecar's copy too); a bad value is InputError naming the file and the key.
The runners hold it against the graph itself (input dtype/layout/shape, output channels vs classes).

Integrity: `write_to` also stamps `lrnnet.weights_sha256`, a SHA-256 of the graph's initializers
(and Constant tensors); `read_model_info` recomputes it, so bytes flipped inside a weight are an
InputError naming the file. A graph without one (not written by lrnnet) is accepted with a note.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import lrnnet
from lrnnet.data.labels import CLASS_NAMES, PALETTE_RGB
from lrnnet.data.preprocess import MEAN_RGB, STD_RGB
from lrnnet.errors import InputError
from lrnnet.limits import MAX_SIDE
from lrnnet.log import note

MODEL_NAME = "lrnnet"
KEY_PREFIX = "lrnnet."  # every key is stored as "lrnnet.<field name>", values JSON-encoded
DIGEST_KEY = KEY_PREFIX + "weights_sha256"  # not a ModelInfo field: it is a fact about the file's weights

LAYOUT_NCHW_FLOAT = "NCHW float32 RGB normalised"
LAYOUT_NHWC_UINT8_BGR = "NHWC uint8 BGR"
LAYOUTS = (LAYOUT_NCHW_FLOAT, LAYOUT_NHWC_UINT8_BGR)
PRECISIONS = ("fp32", "fp16", "int8")
ENGINE_TARGETS = ("", "onnxruntime", "tensorrt")  # as lrnnet.calib.recipes.TARGETS, plus "" (not built)
STRIDES = (1, 2, 4, 8, 16, 32, 64)
MAX_CLASSES = 1024


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
    # Precision graphs (lrnnet-build-engine): the runtime the recipe was made for, and what the file is for,
    # in words (lrnnet.calib.recipes); "" in a plain export.
    engine_target: str = ""  # "" | "onnxruntime" | "tensorrt"
    engine_purpose: str = ""

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    def to_props(self) -> dict[str, str]:
        return {KEY_PREFIX + key: json.dumps(value) for key, value in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "model") -> ModelInfo:
        values = {key[len(KEY_PREFIX):]: value for key, value in props.items() if key.startswith(KEY_PREFIX)}
        if _decode(values.get("model", "null"), "model", source) != MODEL_NAME:
            raise InputError(f"{source} is not an lrnnet export (no '{KEY_PREFIX}model' metadata); "
                             "export it with lrnnet-export")
        known = {f.name for f in fields(cls)}
        decoded = {key: _decode(value, key, source) for key, value in values.items() if key in known}
        return cls.from_dict(decoded, source)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "model") -> ModelInfo:
        """A validated ModelInfo from decoded values (unknown keys ignored); InputError when they break the schema."""
        known = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise InputError(f"{source}: lrnnet metadata lacks {', '.join(KEY_PREFIX + m for m in missing)}; "
                             "re-export it with lrnnet-export")
        info = cls(**{key: value for key, value in values.items() if key in known})
        info.validate(source)
        return info

    def validate(self, source: str = "model") -> None:
        """The metadata schema: each field's type and range, and the fields' agreement; InputError otherwise."""
        problems = _schema_problems(self)
        if problems:
            raise InputError(f"{source} has invalid lrnnet metadata: {'; '.join(problems[:3])}; "
                             "re-export it with lrnnet-export")

    def write_to(self, onnx_model: Any) -> None:
        """Set the metadata on an onnx.ModelProto, replacing earlier lrnnet keys."""
        kept = [p for p in onnx_model.metadata_props if not p.key.startswith(KEY_PREFIX)]
        del onnx_model.metadata_props[:]
        onnx_model.metadata_props.extend(kept)
        for key, value in self.to_props().items():
            entry = onnx_model.metadata_props.add()
            entry.key, entry.value = key, value
        stamp_weights_digest(onnx_model)

    @classmethod
    def from_onnx_model(cls, onnx_model: Any, source: str = "model") -> ModelInfo:
        return cls.from_props({p.key: p.value for p in onnx_model.metadata_props}, source)


def _decode(value: str, key: str, source: str) -> Any:
    try:
        return json.loads(value)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{source}: metadata {KEY_PREFIX}{key} is not JSON ({value[:40]!r}); "
                         "re-export it with lrnnet-export") from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _schema_problems(info: ModelInfo) -> list[str]:
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    for name in ("input_height", "input_width"):
        value = getattr(info, name)
        need(_is_int(value) and 1 <= value <= MAX_SIDE, f"{name} {value!r} is not an integer in 1..{MAX_SIDE}")
    need(_is_int(info.stride) and info.stride in STRIDES, f"stride {info.stride!r} is not one of {STRIDES}")
    if not problems:
        need(info.input_height % info.stride == 0 and info.input_width % info.stride == 0,
             f"input size {info.input_height}x{info.input_width} is not a multiple of the stride {info.stride}")
    need(_is_int(info.num_classes) and 1 <= info.num_classes <= MAX_CLASSES,
         f"num_classes {info.num_classes!r} is not an integer in 1..{MAX_CLASSES}")
    need(isinstance(info.class_names, list) and all(isinstance(n, str) for n in info.class_names),
         "class_names is not a list of names")
    need(isinstance(info.palette, list) and all(
        isinstance(c, list) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c) for c in info.palette),
        "palette is not a list of [R, G, B] colours in 0..255")
    if not problems:
        need(len(info.class_names) == info.num_classes == len(info.palette),
             f"{info.num_classes} classes but {len(info.class_names)} names and {len(info.palette)} colours")
    # mean and std are for pixels scaled to [0, 1] (lrnnet.data.preprocess); a std of 0 would divide by zero.
    need(isinstance(info.mean, list) and len(info.mean) == 3 and all(_is_number(v) and 0 <= v <= 1 for v in info.mean),
         f"mean {info.mean!r} is not three numbers in [0, 1]")
    need(isinstance(info.std, list) and len(info.std) == 3 and all(_is_number(v) and 0.01 <= v <= 1 for v in info.std),
         f"std {info.std!r} is not three numbers in [0.01, 1]")
    need(info.input_layout in LAYOUTS, f"input_layout {info.input_layout!r} is not one of {list(LAYOUTS)}")
    for name in ("dynamic", "preprocess_in_graph", "argmax_in_graph"):
        need(isinstance(getattr(info, name), bool), f"{name} {getattr(info, name)!r} is not true/false")
    if info.input_layout in LAYOUTS and isinstance(info.preprocess_in_graph, bool):
        need((info.input_layout == LAYOUT_NHWC_UINT8_BGR) == info.preprocess_in_graph,
             f"input_layout {info.input_layout!r} disagrees with preprocess_in_graph {info.preprocess_in_graph}")
    need(_is_int(info.batch) and 1 <= info.batch <= 1024, f"batch {info.batch!r} is not an integer in 1..1024")
    need(_is_int(info.power_iterations) and 0 <= info.power_iterations <= 1000,
         f"power_iterations {info.power_iterations!r} is not an integer in 0..1000")
    need(info.precision in PRECISIONS, f"precision {info.precision!r} is not one of {list(PRECISIONS)}")
    need(isinstance(info.model_config, dict), "model_config is not a dict")
    need(isinstance(info.extra, dict), "extra is not a dict")
    need(isinstance(info.lrnnet_version, str), "lrnnet_version is not a string")
    need(info.engine_target in ENGINE_TARGETS, f"engine_target {info.engine_target!r} is not one of {list(ENGINE_TARGETS)}")
    need(isinstance(info.engine_purpose, str), "engine_purpose is not a string")
    return problems


def weights_digest(onnx_model: Any) -> str | None:
    """SHA-256 of the graph's weights (initializers and Constant tensors), or None if some live in external files."""
    from onnx import TensorProto, numpy_helper

    tensors = [(t.name, t) for t in onnx_model.graph.initializer]
    for node in onnx_model.graph.node:
        if node.op_type == "Constant":
            tensors += [(f"{node.name}/{a.name}", a.t) for a in node.attribute if a.HasField("t")]
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        if tensor.data_location == TensorProto.EXTERNAL:
            return None
        digest.update(f"{name}|{tensor.data_type}|{list(tensor.dims)}|".encode())
        digest.update(numpy_helper.to_array(tensor).tobytes())
    return digest.hexdigest()


def stamp_weights_digest(onnx_model: Any) -> None:
    """Record the digest of the graph's weights as it is now (call it last, before the graph is saved)."""
    kept = [p for p in onnx_model.metadata_props if p.key != DIGEST_KEY]
    del onnx_model.metadata_props[:]
    onnx_model.metadata_props.extend(kept)
    digest = weights_digest(onnx_model)
    if digest is not None:
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = DIGEST_KEY, digest


def check_weights_digest(onnx_model: Any, source: str) -> None:
    """InputError if the graph's weights differ from the digest recorded in it; a note if it has none."""
    recorded = next((p.value for p in onnx_model.metadata_props if p.key == DIGEST_KEY), None)
    if recorded is None:  # accepted, and said: the user should know nothing vouches for these weights
        note(f"{source} carries no weights digest (not written by this lrnnet): its integrity is not checked")
        return
    actual = weights_digest(onnx_model)
    if actual is not None and actual != recorded:
        raise InputError(f"{source} is corrupt: its weights do not match the SHA-256 recorded when it was written "
                         "(damaged on disk or in transfer); use another copy or re-export it")


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
    info = ModelInfo.from_onnx_model(model, str(path))
    check_weights_digest(model, str(path))
    return info
