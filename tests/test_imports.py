"""Every lrnnet module imports on a CPU machine without TensorRT, CUDA or onnxruntime-gpu (lazy imports)."""

import importlib
import pkgutil
import sys

import lrnnet


def test_every_submodule_imports_without_optional_packages():
    names = [m.name for m in pkgutil.walk_packages(lrnnet.__path__, "lrnnet.")]
    assert "lrnnet.data.cityscapes" in names
    for name in names:
        importlib.import_module(name)
    assert "tensorrt" not in sys.modules
    assert "pycuda" not in sys.modules and "cuda" not in sys.modules


def test_model_package_imports_no_deployment_library():
    code = ("import sys, lrnnet.models; "
            "bad = [m for m in ('onnx', 'onnxruntime', 'tensorrt') if m in sys.modules]; "
            "assert not bad, bad")
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)
