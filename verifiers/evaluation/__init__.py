"""The papers' evaluation, in one place: each benchmark's whole protocol and the metric code.

- ``benchmarks``: one ``Benchmark`` record per benchmark (its data, prompt template and whether that
  is the paper's verbatim text, system prompt, decoding, resolution, how answers are read under each
  scoring, metric, class lists, the paper's numbers and the released script it follows), and the
  scorers that turn prediction records into a report.
- ``rows``: an item's ground truth read from one of the benchmark's data rows.
- ``detection``: COCO / LVIS mAP (pycocotools); ``item_scores``: the per-item scores of the other
  benchmarks and LISA's mask gIoU / cIoU; ``script_readings``: answers read as the released evaluation
  scripts read them (the ``paper`` scoring); ``classes``: the COCO / LVIS class lists;
  ``paper_numbers``: the papers' table values; ``sam_masks``: LISA's box-to-mask step.

The driver that runs a model over a benchmark is ``vrft.orchestrator.evaluation``; the reward code
(the rest of ``vrft.verifiers``) never imports this package (tests/test_layers.py).
"""
