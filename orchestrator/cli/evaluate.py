"""`vrft eval BENCHMARK`: a model on a benchmark with its paper's protocol, or a saved
predictions.jsonl rescored without a model. Every input is checked before any engine starts."""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

EPILOG = """examples:
  vrft eval clevr_math --model Qwen/Qwen2-VL-2B-Instruct --data data/Visual-Counting-id-test-1k.json
  vrft eval coco_fewshot_8 --model runs/coco-…/checkpoints/step_000200 \\
      --annotations coco/annotations/instances_val2017.json --images coco/val2017 \\
      --existence-map exist_map_coco_Qwen2_vl_2B_baseline.json
  vrft eval lisa_test --model runs/lisa-hf --data data/lisa_test
  vrft eval clevr_math --predictions runs/eval/clevr_math/predictions.jsonl --data data/…-id-test-1k.json
"""
DESCRIPTION = ("Run a benchmark with its paper's protocol (prompts, R1 system prompt, decoding, resolution, "
               "answer parsing, metric) on rollout engines as Ray actors; write predictions.jsonl and "
               "metrics.json and print the metrics beside the paper's numbers. With --predictions, recompute "
               "the metrics from a saved file.")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _fail(message: str) -> SystemExit:
    return SystemExit(f"vrft: error: eval: {message.splitlines()[0]}")


def _model_folder(model: str, workdir: Path, trust_remote_code: bool) -> str:
    """A HF id or folder as it is; a run checkpoint (RUN_DIR/checkpoints/step_N) exported first."""
    path = Path(model).expanduser()
    if not path.exists():
        if _HUB_ID.match(model):
            return model
        raise _fail(f"--model not found: {model}")
    from vrft.orchestrator.train.export import export_checkpoint, learner_dir

    if (learner_dir(path) / "vrft_learner.json").is_file():
        out = workdir / "model"
        print(f"exporting checkpoint {path} → {out}", file=sys.stderr)
        return str(export_checkpoint(str(path), str(out), trust_remote_code=trust_remote_code))
    return str(path)


def _eval_spec(args):
    """The benchmark's inputs, as a run's `eval.benchmarks` entry holds them."""
    from vrft.orchestrator.config.schema import EvalSpec

    return EvalSpec(benchmark=args.benchmark, data=args.data, split=args.split, annotations=args.annotations,
                    images=args.images, limit=args.limit, protocol=args.protocol,
                    existence_map=args.existence_map, template=args.template,
                    template_file=args.template_file, scoring=args.scoring)


def _engine_spec(args, model: str, benchmark_max_pixels: int | None):
    """The engines to start: the model (at the benchmark's resolution unless overridden) and the engine
    flags; nothing of a training run."""
    from vrft.orchestrator.config.schema import EngineSpec

    return EngineSpec.model_validate({
        "model": {"path": model, "trust_remote_code": args.trust_remote_code,
                  "min_pixels": args.min_pixels, "max_pixels": args.max_pixels or benchmark_max_pixels},
        "rollout": {"engine": args.engine, "num_workers": args.workers, "dtype": args.dtype,
                    "num_gpus_per_worker": args.gpus_per_worker, "max_batch_size": args.batch_size,
                    "tensor_parallel_size": args.tensor_parallel_size,
                    "tools": {"names": args.tools, "max_turns": args.max_turns,
                              "max_total_tokens": args.max_total_tokens} if args.tools else None},
    })


def cmd_eval(args) -> int:
    from vrft.orchestrator.evaluation.driver import (
        format_report,
        load_eval_set,
        metrics_json,
        read_predictions,
        report_of,
        write_outputs,
    )
    from vrft.orchestrator.evaluation.intervals import add_intervals
    from vrft.verifiers.evaluation.benchmarks import get_benchmark

    try:
        bench = get_benchmark(args.benchmark)
        eval_set = load_eval_set(_eval_spec(args), rescoring=bool(args.predictions))
    except (ValueError, OSError, KeyError) as err:
        raise _fail(str(err)) from None
    if args.sam and (bench.kind != "lisa" or not (Path(args.sam).exists() or _HUB_ID.match(args.sam))):
        raise _fail(f"--sam {args.sam}: " + ("applies to the LISA benchmarks only" if bench.kind != "lisa"
                                             else "not found"))
    if args.tools:
        from vrft.rollout.tools import get_tools

        try:
            get_tools(args.tools)
        except ValueError as err:
            raise _fail(f"--tools: {err}") from None
    if args.predictions:  # rescoring: no model, no engine (SAM, with --sam, for the masks)
        try:
            records = read_predictions(args.predictions)
            if args.sam:
                from vrft.orchestrator.evaluation.driver import add_sam_masks

                add_sam_masks(eval_set, records, args.sam)
            report = add_intervals(eval_set, records, report_of(eval_set, records))
        except (ValueError, KeyError) as err:
            raise _fail(str(err)) from None
        out = Path(args.out) if args.out else Path(args.predictions).parent
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(metrics_json(report))
        print(format_report(report))
        return 0
    if not args.model:
        raise _fail("give --model (a HF id or folder, an export, or a run checkpoint), or --predictions")
    if args.samples < 1:
        raise _fail(f"--samples {args.samples}: give 1 or more")
    if args.samples > 1:
        if bench.kind in ("coco", "lvis"):
            raise _fail(f"--samples: {bench.name}'s mAP has no per-query correctness to count samples by")
        if (args.temperature if args.temperature is not None else bench.sampling.temperature) == 0:
            raise _fail(f"--samples {args.samples}: {bench.name}'s protocol decodes greedily (every sample "
                        "the same); give --temperature")
    with tempfile.TemporaryDirectory(prefix="vrft-eval-") as workdir:
        model = _model_folder(args.model, Path(workdir), args.trust_remote_code)
        records, report = _run(_engine_spec(args, model, bench.max_pixels), eval_set, args)
    out = Path(args.out) if args.out else Path("runs") / "eval" / bench.name
    write_outputs(out, records, report)
    print(format_report(report))
    print(f"EVAL {bench.name} " + " ".join(f"{k}={v:.2f}" for k, v in report["metrics"].items())
          + f" queries={len(records)} queries_per_s={report['timing']['queries_per_s']:.2f} out={out}")
    return 0


def _run(engines, eval_set, args):
    import ray

    from vrft.orchestrator.evaluation.driver import generate, score, tool_report, turn_summaries
    from vrft.orchestrator.runtime.cluster import start_ray
    from vrft.orchestrator.runtime.session import start_rollout
    from vrft.rollout.processor import load_processor
    from vrft.rollout.tools import get_tools

    mc = engines.model
    processor = load_processor(mc.path, mc.min_pixels, mc.max_pixels, mc.trust_remote_code)
    started = start_ray(engines)
    workers = []
    try:
        rc = engines.rollout
        placement = [{"num_cpus": rc.num_cpus_per_worker, "num_gpus": rc.num_gpus_per_worker}] * rc.num_workers
        workers = start_rollout(engines, mc.path, placement)
        tools = engines.rollout.tools
        schemas = [t.schema() for t in get_tools(tools.names).values()] if tools else None
        completions, timing = generate(workers, processor, eval_set, batch_size=args.batch_size,
                                       progress=not args.no_progress, seed=args.seed,
                                       max_new_tokens=args.max_new_tokens, samples=args.samples,
                                       temperature=args.temperature, tools=schemas)
    finally:
        for w in workers:
            ray.kill(w)
        if started and ray.is_initialized():
            ray.shutdown()
    samples = None
    if args.samples > 1:  # the standard metrics read each query's first sample; pass/maj/mean@k all k
        samples, completions = completions, [group[0] for group in completions]
    if args.sam:
        from vrft.orchestrator.evaluation.driver import add_sam_masks, report_of
        from vrft.orchestrator.evaluation.intervals import add_intervals

        records, _ = score(eval_set, completions)
        add_sam_masks(eval_set, records, args.sam)
        report = add_intervals(eval_set, records, report_of(eval_set, records))
    else:
        records, report = score(eval_set, completions)
    if samples is not None:
        from vrft.orchestrator.evaluation.intervals import k_sample_metrics

        report["metrics"].update(k_sample_metrics(eval_set, samples, args.samples, seed=args.seed))
        for record, group in zip(records, samples, strict=True):
            record["samples"] = group
    if "trajectories" in timing:  # with tools: each query's turns, and how the model used the tools
        trajectories = timing.pop("trajectories")
        for record, trajectory in zip(records, trajectories, strict=True):
            record["turns"] = turn_summaries(trajectory)
        report["tools"] = tool_report(trajectories, args.tools, args.max_turns)
    report["timing"] = timing
    report["model"] = args.model
    report["sampling"] = {**vars(eval_set.benchmark.sampling), "max_new_tokens": args.max_new_tokens
                          or eval_set.benchmark.sampling.max_new_tokens, "batch_size": args.batch_size}
    return records, report


def add_eval_command(sub) -> None:
    from vrft.verifiers.evaluation.benchmarks import list_benchmarks

    p = sub.add_parser("eval", help="evaluate a model on a paper benchmark, or rescore saved predictions",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("benchmark", help=f"one of: {', '.join(list_benchmarks())}")
    what = p.add_argument_group("what to evaluate")
    what.add_argument("--model", help="HF id or folder, a vrft export, or RUN_DIR/checkpoints/step_N")
    what.add_argument("--predictions", help="rescore this predictions.jsonl instead of running a model")
    data = p.add_argument_group("the benchmark's data")
    data.add_argument("--data", help="test rows (hub id, save_to_disk folder, JSON/JSONL meta file)")
    data.add_argument("--split", help="split of --data")
    data.add_argument("--limit", type=int, help="first N items (detection: first N images)")
    det = p.add_argument_group("detection (COCO, LVIS)")
    det.add_argument("--annotations", help="the COCO / LVIS annotation json")
    det.add_argument("--images", help="the folder of its images")
    det.add_argument("--existence-map", help="{image_id: [categories]} of the baseline model (the paper's "
                     "protocol); without it every ground-truth category is queried")
    det.add_argument("--protocol", choices=["existence_map", "gt_categories"], help="which categories each "
                     "image is queried for (default: existence_map when one is given, else gt_categories)")
    proto = p.add_argument_group("protocol and scoring")
    proto.add_argument("--scoring", choices=["paper", "strict"], default="paper",
                       help="how answers are read: paper (default) as the paper's released evaluation script "
                       "does, strict with vrft's own parsers (docs/evaluation.md, \"Scoring\"); metrics.json "
                       "records which ran")
    proto.add_argument("--template", help="prompt template by name (default: the benchmark's)")
    proto.add_argument("--template-file", help="a file holding the prompt text to use, e.g. the paper's exact "
                       "evaluation prompt from its released script; {field} is the row's column of that name "
                       "(detection: {category}; LISA: {instruction}); metrics.json records it")
    proto.add_argument("--max-new-tokens", type=int, help="cap the protocol's token limit (a deviation: "
                       "for quick checks only; metrics.json records it)")
    proto.add_argument("--seed", type=int, default=0, help="sampling seed (greedy protocols ignore it); "
                       "seeds the bootstrap intervals too")
    proto.add_argument("--samples", type=int, default=1, metavar="K",
                       help="K completions per query: adds pass@K (Chen et al.'s unbiased estimator), maj@K "
                       "and mean@K, each with its 95%% interval; the other metrics read the first sample")
    proto.add_argument("--temperature", type=float, help="sampling temperature (default: the protocol's; "
                       "--samples needs one above 0 where the protocol is greedy)")
    proto.add_argument("--sam", help="LISA: a SAM checkpoint (e.g. facebook/sam-vit-huge) turning each "
                       "predicted box into a mask for gIoU / cIoU (the rows need ground-truth masks)")
    tools = p.add_argument_group("image tools (multi-turn; docs/tools.md)")
    tools.add_argument("--tools", nargs="+", metavar="NAME", help="let the model call these tools on the image "
                       "(built in: zoom, rotate; or package.module:attribute); metrics.json records them "
                       "and predictions.jsonl every turn. Off by default: the papers answer in one turn")
    tools.add_argument("--max-turns", type=int, default=4, help="model turns per query with --tools")
    tools.add_argument("--max-total-tokens", type=int, default=1024,
                       help="completion tokens over all turns with --tools, observations included")
    engine = p.add_argument_group("engines (Ray actors)")
    engine.add_argument("--engine", choices=["hf", "vllm"], default="hf",
                        help="hf: transformers' generate; vllm: vLLM engines")
    engine.add_argument("--workers", type=int, default=1, help="rollout engines (Ray actors)")
    engine.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs each engine reserves")
    engine.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per vLLM engine")
    engine.add_argument("--batch-size", type=int, default=8, help="queries per engine call")
    engine.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="weights' dtype; auto: bf16 on GPU, fp32 on CPU")
    engine.add_argument("--min-pixels", type=int, help="the image processor's min_pixels (default: the model's)")
    engine.add_argument("--max-pixels", type=int, help="default: the benchmark's (Reason-RFT: 480000)")
    engine.add_argument("--trust-remote-code", action="store_true",
                        help="run the model's own code from its folder or hub repo")
    out = p.add_argument_group("output")
    out.add_argument("--out", help="output folder (default runs/eval/BENCHMARK)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)
