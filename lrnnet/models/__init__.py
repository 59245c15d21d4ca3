"""PyTorch models: LRNNet (FCB encoder, SVN reduced non-local decoder) and its checkpoints.

Imports torch only: nothing here knows ONNX, ONNX Runtime or TensorRT.
"""

from lrnnet.models.checkpoint import build_model, load_checkpoint, save_checkpoint
from lrnnet.models.lrnnet import CONTEXT_MODULES, DEFAULT_POWER_ITERATIONS, LRNNet, lrnnet
from lrnnet.models.svd import SVD_METHODS, dominant_singular_vector

__all__ = [
    "CONTEXT_MODULES",
    "DEFAULT_POWER_ITERATIONS",
    "SVD_METHODS",
    "LRNNet",
    "build_model",
    "dominant_singular_vector",
    "load_checkpoint",
    "lrnnet",
    "save_checkpoint",
]
