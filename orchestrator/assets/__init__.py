"""Offline assets the project makes itself, so nothing downloads in tests or the demo: a tiny
random-weight Qwen2-VL (`tiny_model`), a text-only one for vLLM on CPU (`tiny_text_model`),
synthetic image tasks drawn with PIL (`synthetic`), and fixtures in the papers' released schemas
(`released`). Only the commands that make assets (`vrft make-tiny-model`, `make-synthetic-data`) import it."""
