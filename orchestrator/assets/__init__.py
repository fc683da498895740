"""Offline assets the project makes itself, so nothing downloads in tests or the demo: a tiny
random-weight Qwen2-VL (`tiny_model`), a text-only one for vLLM on CPU (`tiny_text_model`), and
synthetic image tasks drawn with PIL (`synthetic`). Production code never imports this package."""
