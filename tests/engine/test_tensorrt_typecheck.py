"""mypy on the TensorRT code against tensorrt-stubs: API misuse is caught without TensorRT or a GPU.

tensorrt-stubs (10.13) puts its stubs in site-packages/tensorrt/ without a py.typed marker, so mypy
silently ignores them, and a few generated signatures are not valid Python (a parameter named
``in``; a parameter without a default after defaulted ones). The fixture copies the stubs into a
MYPYPATH folder and repairs exactly those lines; a deliberate misuse must then fail, which proves
the stubs are really in use.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The TensorRT modules of the project: the builder, and the runtime's TensorRT runner where it exists.
TENSORRT_MODULES = [p for p in ("lrnnet/engine/tensorrt_builder.py", "lrnnet/runtime/tensorrt_runner.py")
                    if (REPO / p).is_file()]

MISUSE = '''
def misuse() -> None:
    import tensorrt as trt

    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    config = builder.create_builder_config()
    config.set_memory_pool_limit("workspace", 1 << 20)
'''


def _split_params(params: str) -> list[str]:
    """Split a parameter list on top-level commas (not those inside brackets)."""
    parts, depth, current = [], 0, ""
    for char in params:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current] if current.strip() else parts


def _repair_signature(line: str) -> str:
    match = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if not match:
        return line
    head, params, tail = match.groups()
    fixed, seen_default = [], False
    for param in _split_params(params):
        param = re.sub(r"^(\s*)in:", r"\1in_:", param)
        name = param.strip()
        if "=" in name:
            seen_default = True
        elif seen_default and name and not name.startswith("*"):
            param += " = ..."
        fixed.append(param)
    return head + ",".join(fixed) + tail


@pytest.fixture(scope="module")
def stub_path(tmp_path_factory) -> Path:
    try:
        dist = importlib.metadata.distribution("tensorrt-stubs")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("tensorrt-stubs is not installed (make dev installs it)")
    root = tmp_path_factory.mktemp("trt-stubs")
    for file in dist.files or []:
        if str(file).endswith(".pyi"):
            target = root / str(file)
            target.parent.mkdir(parents=True, exist_ok=True)
            text = Path(dist.locate_file(file)).read_text()
            target.write_text("\n".join(_repair_signature(line) for line in text.splitlines()) + "\n")
    if not (root / "tensorrt" / "__init__.pyi").is_file():
        pytest.skip("tensorrt-stubs has no tensorrt/__init__.pyi in this version")
    return root


# The project's mypy settings, plus: errors inside the generated stubs themselves are not ours to report.
MYPY_CONFIG = """
[mypy]
python_version = 3.10
ignore_missing_imports = True
follow_imports = silent
show_error_codes = True

[mypy-tensorrt.*,tensorrt_bindings.*]
ignore_errors = True
"""


def _mypy(stubs: Path, work: Path, *files: str | Path) -> subprocess.CompletedProcess[str]:
    config = work / "mypy.ini"
    config.write_text(MYPY_CONFIG)
    env = {**os.environ, "MYPYPATH": str(stubs)}
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir",
                           str(work / "cache"), *map(str, files)],
                          check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def mypy_work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mypy")  # one cache for the module: the stubs are analysed once


@pytest.mark.slow
def test_a_misuse_of_the_tensorrt_api_fails_mypy(stub_path, mypy_work):
    # Proves the stubs are in use: without them every TensorRT name is Any and this passes.
    misuse = mypy_work / "misuse.py"
    misuse.write_text(MISUSE)
    result = _mypy(stub_path, mypy_work, misuse)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "set_memory_pool_limit" in result.stdout and "MemoryPoolType" in result.stdout, result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("module", TENSORRT_MODULES)
def test_tensorrt_code_type_checks_against_the_stubs(stub_path, mypy_work, module):
    result = _mypy(stub_path, mypy_work, module)
    assert result.returncode == 0, result.stdout + result.stderr
