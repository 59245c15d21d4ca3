"""The input shapes an engine accepts (TensorRT's optimization profile), read from the ONNX and its ModelInfo.

A static export has one shape (min = opt = max). A dynamic one (``lrnnet-export --dynamic``) has
named batch/height/width axes; the profile then spans batch 1..``max_batch`` and half to twice the
exported size (multiples of the model's stride), optimised for the exported size: 512x1024 exports
accept 256x512 up to the full Cityscapes 1024x2048.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from lrnnet.errors import InputError
from lrnnet.export.metadata import LAYOUT_NHWC_UINT8_BGR, ModelInfo
from lrnnet.limits import MAX_PIXELS, PIXELS_IN_ALL


@dataclass(frozen=True)
class InputProfile:
    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def dynamic(self) -> bool:
        return self.min != self.max

    def to_dict(self) -> dict[str, dict[str, list[int]]]:
        return {self.name: {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}}


def input_profile(model: onnx.ModelProto, info: ModelInfo, input_name: str, max_batch: int | None = None) -> InputProfile:
    """The profile of `input_name` in `model`; `max_batch` bounds a dynamic batch (default: the export's batch).

    `max_batch` is refused for a fixed batch, below the export's batch (the profile's optimum), or when
    that many of the largest images exceed lrnnet.limits.MAX_PIXELS (TensorRT sizes its buffers for them).
    """
    value = next((v for v in model.graph.input if v.name == input_name), None)
    if value is None:
        raise InputError(f"the graph has no input named {input_name!r}")
    dims = value.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise InputError(f"input {input_name!r} has rank {len(dims)}; an lrnnet graph takes a 4-D image batch")
    nhwc = info.input_layout == LAYOUT_NHWC_UINT8_BGR
    h_axis, w_axis = (1, 2) if nhwc else (2, 3)
    opt = [info.batch, 3, info.input_height, info.input_width] if not nhwc else \
        [info.batch, info.input_height, info.input_width, 3]
    low, high = list(opt), list(opt)
    for axis, dim in enumerate(dims):
        if dim.HasField("dim_value"):
            if dim.dim_value != opt[axis]:
                raise InputError(f"input {input_name!r} axis {axis} is {dim.dim_value} in the graph but "
                                 f"{opt[axis]} in its metadata; re-export it")
            continue
        if axis == 0:
            low[0], high[0] = 1, max_batch or info.batch
        elif axis in (h_axis, w_axis):
            low[axis] = max(info.stride, opt[axis] // 2 // info.stride * info.stride)
            high[axis] = opt[axis] * 2
        else:
            raise InputError(f"input {input_name!r} has a dynamic axis {axis} that lrnnet does not know")
    if max_batch is not None:
        _check_max_batch(max_batch, dims[0], info.batch, high[h_axis] * high[w_axis])
    return InputProfile(input_name, tuple(low), tuple(opt), tuple(high))


def _check_max_batch(max_batch: int, batch_dim: onnx.TensorShapeProto.Dimension, export_batch: int,
                     largest_pixels: int) -> None:
    if batch_dim.HasField("dim_value"):
        raise InputError(f"--max-batch is for dynamic-batch exports (lrnnet-export --dynamic); this graph's batch "
                         f"is fixed at {batch_dim.dim_value}")
    if max_batch < export_batch:
        raise InputError(f"--max-batch {max_batch} is below the export's batch {export_batch}, the profile's "
                         "optimum; give at least that")
    if max_batch * largest_pixels > MAX_PIXELS:
        raise InputError(f"--max-batch {max_batch} of the largest input the engine accepts ({largest_pixels:,} "
                         f"pixels each) is over {PIXELS_IN_ALL} (lrnnet.limits); at most "
                         f"--max-batch {max(1, MAX_PIXELS // largest_pixels)}")
