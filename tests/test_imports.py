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


def _lrnnet_import_graph() -> dict[str, set[str]]:
    """module -> the lrnnet modules it imports, from every import statement (module level or in a function).

    Lazy imports inside functions count: a circle through them still couples the modules, and is
    what broke `lrnnet/runtime` before the factory moved out of `runner.py`. A package's implicit
    import of its parent `__init__` is not an edge (every submodule has it).
    """
    import ast
    from pathlib import Path

    import lrnnet

    root = Path(lrnnet.__file__).parent
    files = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(known(alias.name) for alias in node.names if alias.name.startswith("lrnnet"))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                if base == "lrnnet" or base.startswith("lrnnet."):
                    for alias in node.names:  # `from pkg import submodule` imports the submodule
                        full = f"{base}.{alias.name}"
                        targets.add(full if full in files else known(base))
        graph[module] = {t for t in targets if t and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_lrnnet_module_takes_part_in_an_import_cycle():
    graph = _lrnnet_import_graph()
    assert "lrnnet.runtime.runner" in graph["lrnnet.runtime.onnxruntime_runner"], "the scan missed an import"
    assert _cycles(graph) == []
