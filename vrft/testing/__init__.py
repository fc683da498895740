"""vrft.testing: the offline fixtures the project makes itself, so that nothing downloads in the tests,
the demo or the benchmarks: a tiny random-weight Qwen2-VL / Qwen2.5-VL / Qwen3-VL (`tiny_model`), a
text-only one for vLLM on CPU (`tiny_text_model`), a tiny SAM (`tiny_sam`), synthetic image tasks drawn
with PIL (`synthetic`), and rows in the papers' released schemas (`released`).

Not part of a training run: of the product, only the commands that make fixtures (`vrft
make-tiny-model`, `vrft make-synthetic-data`) import it (tests/test_layers.py holds that)."""
