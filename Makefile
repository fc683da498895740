# Every install step lives here: a fresh machine with Python 3.11 and the package registries
# needs nothing else. torch goes in first; every later pip call is constrained so it stays.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export DS_BUILD_OPS := 0
export DS_ACCELERATOR ?= cpu
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install demo test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt --no-build-isolation deepspeed
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	@# DeepSpeed JIT-builds its CPU communication op on first use (~1 min): do it once, here.
	$(PY) -c "from deepspeed.accelerator import get_accelerator as a; a().create_op_builder('ShareMemCommBuilder').load()"
	touch $(STAMP)

DEMO_ASSETS := runs/assets

demo: install
	@test -f $(DEMO_ASSETS)/model-small/config.json || $(VENV)/bin/vrft make-tiny-model $(DEMO_ASSETS)/model-small --size small
	@test -d $(DEMO_ASSETS)/color || $(VENV)/bin/vrft make-synthetic-data $(DEMO_ASSETS)/color --task color --n 2048 --seed 0
	$(VENV)/bin/vrft train configs/local/demo_cpu.yaml

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) -m benchmarks.run

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .cache runs
