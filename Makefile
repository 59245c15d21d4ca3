# The README's two commands: `make demo` and `make test`. Both create .venv and install lrnnet first.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch. On this project's machines pip finds it on local disk; elsewhere add
# TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu (or install the CUDA build you want first).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
# NVIDIA Model Optimizer (TensorRT INT8 graphs), without its [onnx] extra's pins: pyproject's `modelopt` extra has its needs.
MODELOPT_SPEC ?= nvidia-modelopt==0.47.0
# e.g. make demo DEMO_ARGS="--cityscapes /data/cityscapes"
DEMO_ARGS ?=

.PHONY: install dev demo test lint mutation clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,ray,modelopt]"
	$(PY) -m pip install -q --no-deps "tensorrt-stubs>=10" "$(MODELOPT_SPEC)"
	touch $@

install dev: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/lrnnet-demo --workdir demo $(DEMO_ARGS)

# pytest exits 5 when it collected no tests; that is not a failure of the suite.
test: $(VENV)/.installed
	$(PY) -m pytest -q; status=$$?; if [ $$status -eq 5 ]; then exit 0; else exit $$status; fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check lrnnet tests benchmarks
	$(VENV)/bin/mypy lrnnet

# Mutation testing of the gate modules ([tool.mutmut] in pyproject.toml, docs/mutation.md); not in CI.
# A fresh copy each run (mutmut reuses mutants/ otherwise); prints the score and every surviving mutant.
MUTATION_JOBS ?= 2
mutation: $(VENV)/.installed
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS)
	$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) demo .pytest_cache mutants
