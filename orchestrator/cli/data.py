"""`vrft check-data` and `vrft prepare-data`, and the data check `vrft train` runs before Ray starts."""

from __future__ import annotations

import argparse
from pathlib import Path

PREPARE_EPILOG = """examples:
  vrft prepare-data k-shot data/aircraft_full data/aircraft_8shot --k 8 --seed 0
  vrft prepare-data k-shot data/ViRFT_COCO data/coco_2shot --k 2 --task detection
  vrft prepare-data coco annotations/instances_train2017.json train2017/ data/coco_det --negatives-per-image 1
  vrft prepare-data lisa ReasonSeg/train data/lisa_grounding
  vrft prepare-data verl data/deepeyes/data_0.1.2_visual_toolbox_v2.parquet data/deepeyes_vstar --tools-only
"""


def cmd_check_data(args) -> int:
    from vrft.orchestrator.data.check import check_rows, format_table
    from vrft.orchestrator.train.preflight import load_run_config, processor_if_needed

    cfg = load_run_config(args.config, args.overrides)
    try:
        reports = check_rows(cfg, processor_if_needed(cfg), limit=args.limit)
    except (ValueError, OSError, KeyError) as err:
        raise SystemExit(f"vrft: error: {str(err).splitlines()[0]}") from None
    print(format_table(reports))
    failed = sum(r.failed for r in reports.values())
    rows = sum(r.rows for r in reports.values())
    print(f"{rows} rows, {failed} failing" + ("" if failed else ": every perfect answer gets the maximum"))
    return 1 if failed else 0


def cmd_prepare_data(args) -> int:
    from vrft.orchestrator.data import prepare

    try:
        if args.mode == "k-shot":
            path, summary = prepare.k_shot(args.source, args.out, args.k, seed=args.seed, task=args.task,
                                           class_column=args.class_column, split=args.split,
                                           negatives=args.negatives, classes=args.classes)
        elif args.mode == "coco":
            path, summary = prepare.coco_to_detection(args.annotations, args.image_dir, args.out,
                                                      negatives_per_image=args.negatives_per_image,
                                                      seed=args.seed, categories=args.categories)
        elif args.mode == "verl":
            path, summary = prepare.verl_to_rows(args.sources, args.out, data_sources=args.data_source,
                                                 tools_only=args.tools_only)
        else:
            path, summary = prepare.lisa_to_grounding(args.source, args.out, image_dir=args.image_dir,
                                                      all_instructions=args.all_instructions)
    except (ValueError, OSError, KeyError) as err:
        raise SystemExit(f"vrft: error: prepare-data {args.mode}: {str(err).splitlines()[0]}") from None
    print(prepare.describe(path, summary))
    if summary.get("unscorable"):
        print(f"{summary['unscorable']} annotation files cannot be scored (no polygon, instruction or image): "
              f"listed in {Path(path) / prepare.LISA_UNSCORABLE}")
    return 0


CHECK_DATA = ("Load the data exactly as `vrft train` would, write each row's ground truth as a perfect "
              "answer in its task's format, score it with the run's rewards and print a per-task table. "
              "Exits 1 when a row does not parse or a perfect answer misses the rewards' maximum.")


def add_data_commands(sub) -> None:
    p = sub.add_parser("check-data", help="score every row's ground truth as a perfect answer, per task",
                       description=CHECK_DATA)
    p.add_argument("config", help="YAML experiment config")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. data.path=data/coco")
    p.add_argument("--limit", type=int, default=None, help="check only the first N rows")
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("prepare-data", help="build k-shot subsets, COCO detection rows, LISA boxes or rows "
                       "from verl parquet files",
                       description="Build what the papers trained on but did not release, as a "
                       "save_to_disk folder in Visual-RFT's schema (image, problem, solution).",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=PREPARE_EPILOG)
    modes = p.add_subparsers(dest="mode", required=True)
    m = modes.add_parser("k-shot", help="a seeded k-per-class subset of a classification/detection set")
    m.add_argument("source", help="dataset (hub id, save_to_disk folder or JSON meta file)")
    m.add_argument("out", help="the save_to_disk folder to write")
    m.add_argument("--k", type=int, required=True, choices=[1, 2, 4, 8, 16], help="rows kept per class")
    m.add_argument("--seed", type=int, default=0, help="seeds which rows are kept")
    m.add_argument("--task", default="classification",  # k_shot refuses a task without classes, in one line
                   help="the rows' task, one whose rows have a class (default: classification)")
    m.add_argument("--class-column", help="column holding the class (default: read from the answer)")
    m.add_argument("--split", help="split of source (default: train)")
    m.add_argument("--negatives", action="store_true", help="detection: keep No Objects rows too")
    m.add_argument("--classes", nargs="+", help="keep only these classes (e.g. COCO's 8 few-shot classes)")
    m = modes.add_parser("coco", help="COCO instances json + images → Visual-RFT detection rows (0-1000)")
    m.add_argument("annotations", help="COCO instances json")
    m.add_argument("image_dir", help="the folder of its images")
    m.add_argument("out", help="the save_to_disk folder to write")
    m.add_argument("--negatives-per-image", type=int, default=0, help="No Objects rows per image")
    m.add_argument("--categories", nargs="+", help="only these category names")
    m.add_argument("--seed", type=int, default=0, help="seeds the negative rows")
    m = modes.add_parser("lisa", help="LISA ReasonSeg polygons → grounding rows as gen_box_ann.py builds them "
                         "(first instruction, shapes[0]'s pixel box and mask)")
    m.add_argument("source", help="folder of LISA .json annotations (images beside them)")
    m.add_argument("out", help="the save_to_disk folder to write")
    m.add_argument("--image-dir", help="where the images are, if not beside the jsons")
    m.add_argument("--all-instructions", action="store_true", help="a row for every instruction of an image, "
                   "not only the first (vrft's strict reading; the paper's scoring still reads the first)")
    m = modes.add_parser("verl", help="verl-style parquet rows (DeepEyes' training files) → question rows "
                         "with their first image, for multi-turn tool rollouts (docs/tools.md)")
    m.add_argument("sources", nargs="+", help="verl parquet files (prompt, images, reward_model, extra_info, "
                   "data_source, env_name)")
    m.add_argument("out", help="the save_to_disk folder to write")
    m.add_argument("--data-source", nargs="+", help="keep only rows with these data_source values (e.g. vstar)")
    m.add_argument("--tools-only", action="store_true", help="keep only rows with a non-empty env_name "
                   "(the rows the paper rolled out with tools)")
    p.set_defaults(func=cmd_prepare_data)
