"""Every lrnnet module imports on a CPU machine without TensorRT, CUDA or onnxruntime-gpu (lazy imports).

Both checks run in a fresh interpreter: within the test session other tests may have imported the
optional packages (tensorrt-stubs alone makes `import tensorrt` succeed).
"""

import subprocess
import sys

IMPORT_ALL = """
import importlib, pkgutil, sys
import lrnnet
names = [m.name for m in pkgutil.walk_packages(lrnnet.__path__, "lrnnet.")]
assert "lrnnet.data.cityscapes" in names and "lrnnet.engine.tensorrt_builder" in names, names
for name in names:
    importlib.import_module(name)
loaded = [m for m in ("tensorrt", "pycuda", "cuda", "onnxruntime_gpu") if m in sys.modules]
assert not loaded, f"imported at module level: {loaded}"
"""

MODELS_ONLY = """
import sys, lrnnet.models
bad = [m for m in ("onnx", "onnxruntime", "tensorrt") if m in sys.modules]
assert not bad, bad
"""


def test_every_submodule_imports_without_optional_packages():
    subprocess.run([sys.executable, "-c", IMPORT_ALL], check=True)


def test_model_package_imports_no_deployment_library():
    subprocess.run([sys.executable, "-c", MODELS_ONLY], check=True)
