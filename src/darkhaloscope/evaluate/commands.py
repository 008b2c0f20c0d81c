"""CLI of the evaluate package: `dhs evaluate`, `dhs candidates`, `dhs bench evaluate`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from darkhaloscope.common.report.render import printable
from darkhaloscope.config import run_info, save_config
from darkhaloscope.configargs import add_config_arguments, config_from_args
from darkhaloscope.errors import UsageError
from darkhaloscope.evaluate.config import EvaluateConfig
from darkhaloscope.fileio import clean_temps
from darkhaloscope.stamps.fs import add_s3_arguments, s3_options_from_args


def run_evaluate(args, cfg: EvaluateConfig | None = None) -> int:
    from darkhaloscope.evaluate.run import evaluate_scores

    cfg = cfg or config_from_args(args, cls=EvaluateConfig, section="evaluate")
    t0 = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # refused before any work
        raise UsageError(f"--out {out} is a file; give a folder for report.md / report.html / metrics.json")
    for folder in (out, out / "figures"):
        clean_temps(folder)  # a killed run's half-written report files
    ev, paths = evaluate_scores(args.scores, out, cfg, data=args.data, use_recorded_data=not args.no_data,
                                checkpoint=args.checkpoint, s3=s3_options_from_args(args),
                                known_lenses=getattr(args, "known_lenses", None),
                                before_mining=getattr(args, "before_mining", None),
                                run=run_info(getattr(args, "argv", None)), log=lambda m: print(printable(m, keep="\n"), file=sys.stderr))
    save_config(cfg, out / "evaluate_config.yaml")
    print(printable("\n".join(ev.headline + [f"WARNING: {w}" for w in ev.warnings]), keep="\n"))  # data: no ESC
    print(f"wrote {paths['md']}, {paths['html']}, {paths['json']} in {time.perf_counter() - t0:.1f} s")
    return 0


def run_candidates(args) -> int:
    from darkhaloscope.evaluate.candidates import write_candidates

    paths = write_candidates(args.scores, args.out, args.top, data=args.data, s3=s3_options_from_args(args),
                             run=run_info(getattr(args, "argv", None)), split=args.split)
    print(f"wrote {paths['html']} ({args.top} candidates at most), {paths['md']}, {paths['json']}")
    return 0


def run_bench_evaluate(args) -> int:
    import tempfile

    from darkhaloscope.evaluate.synthetic import write_synthetic_scores

    cfg = config_from_args(args, cls=EvaluateConfig, section="evaluate")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = write_synthetic_scores(Path(tmp) / "scores.parquet", args.rows, seed=0)
        print(f"made {args.rows:,} synthetic scores in {time.perf_counter() - t0:.1f} s")
        ns = argparse.Namespace(scores=str(path), out=args.out or str(Path(tmp) / "report"), checkpoint=None,
                                data=None, no_data=True, argv=["bench", "evaluate"])
        t0 = time.perf_counter()
        run_evaluate(ns, cfg)
        dt = time.perf_counter() - t0
    print(f"dhs evaluate on {args.rows:,} scores: {dt:.1f} s ({args.rows / dt:,.0f} scores/s); goal: 1e7 in < 120 s")
    return 0


def register(sub, bench_sub) -> None:
    e = sub.add_parser("evaluate", help="metrics, selection function, calibration, figures and report from scores")
    e.add_argument("scores", help="scores parquet file written by `dhs score`")
    e.add_argument("--out", required=True, help="report folder (report.md, report.html, metrics.json, figures/)")
    e.add_argument("--checkpoint", default=None, help="also run the model probes (needs --data)")
    e.add_argument("--data", default=None, help="the scored data, for galleries and probes (default: as recorded)")
    e.add_argument("--no-data", action="store_true", help="do not read stamps: no galleries (fast, scores only)")
    e.add_argument("--known-lenses", dest="known_lenses", default=None, metavar="SCORES_OR_DATA",
                   help="real lenses: a scores file, or data (tier / cutout folder) scored with --checkpoint; adds "
                   "their recall at FPR 1e-2, 1e-3 set on the controls, per grade, and their gallery")
    e.add_argument("--before-mining", dest="before_mining", default=None, metavar="SCORES",
                   help="scores of the model hard-negative mining started from: adds FPR on the held-out "
                   "negatives before and after")
    add_config_arguments(e, EvaluateConfig, "evaluate")
    add_s3_arguments(e)
    e.set_defaults(func=run_evaluate)

    b = bench_sub.add_parser("evaluate", help="time `dhs evaluate` on synthetic scores (goal: 1e7 in < 2 min)")
    b.add_argument("--rows", type=int, default=10_000_000, help="synthetic scores to evaluate")
    b.add_argument("--out", default=None, help="keep the report here (default: a temp folder)")
    add_config_arguments(b, EvaluateConfig, "evaluate")
    b.set_defaults(func=run_bench_evaluate)

    c = sub.add_parser("candidates", help="the top-N scored stamps as an HTML page of g/r/z composites with scores, "
                       "ids and metadata", description="Page + PNGs of the highest-scored stamps of SCORES (ranked "
                       "by logit), read from the data `dhs score` recorded (or --data); or the first N cutouts of a "
                       "folder of npz / FITS cutouts. Writes OUT/candidates.html (self-contained), .md, .json, png/.")
    c.add_argument("scores", help="scores parquet file written by `dhs score`, or a folder of npz / FITS cutouts")
    c.add_argument("--top", type=int, default=50, help="candidates to show (default 50)")
    c.add_argument("--out", required=True, help="folder to write candidates.html / .md / .json and png/ into")
    c.add_argument("--data", default=None, help="the scored tier or cutout folder (default: as recorded in SCORES)")
    c.add_argument("--split", default="auto", help="rows of this region_split (default auto: test when SCORES has "
                   "one, as dhs evaluate; all: every row)")
    add_s3_arguments(c)
    c.set_defaults(func=run_candidates)
