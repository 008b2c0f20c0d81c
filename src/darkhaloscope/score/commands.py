"""CLI of the score package: `dhs score`, `dhs merge-scores`, `dhs mine`, `dhs bench score`."""

from __future__ import annotations

import sys

from darkhaloscope.config import run_info
from darkhaloscope.configargs import add_config_arguments, config_from_args
from darkhaloscope.score.config import ScoreConfig
from darkhaloscope.stamps.fs import add_s3_arguments, s3_options_from_args


def run_score(args) -> int:
    from darkhaloscope.common.report.render import printable
    from darkhaloscope.score.infer import score_data
    from darkhaloscope.config import parse_shard

    cfg = config_from_args(args, cls=ScoreConfig, section="score")
    s = score_data(args.checkpoint, args.data, args.out, cfg, s3=s3_options_from_args(args), split=args.split,
                   shard=parse_shard(args.shard), progress=not args.quiet, run=run_info(getattr(args, "argv", None)),
                   combine=args.combine)
    who = f" with a committee of {len(args.checkpoint)} (mean {args.combine})" if len(args.checkpoint) > 1 else ""
    if not s.is_main:  # torchrun: rank 0 reports the merged file for all ranks
        return 0
    if s.note:
        print(f"note: {printable(s.note)}", file=sys.stderr)  # names files of the data: no ESC
    if args.split is None:
        _say_splits(s.out)
    print(f"scored {s.rows:,} stamps{who} ({s.failed:,} failed to decode, score left empty) in {s.seconds:.1f} s "
          f"= {s.stamps_per_s:,.0f} stamps/s -> {s.out}")
    return 0


def _say_splits(path) -> None:
    """One note when every split of a tier was scored: rows a model trained on rank high among candidates."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from darkhaloscope.stamps.schema import SPLIT_COLUMN

    if SPLIT_COLUMN not in pq.read_schema(path).names:
        return
    counts = {v["values"]: v["counts"] for v in pc.value_counts(pq.read_table(path, columns=[SPLIT_COLUMN])[
        SPLIT_COLUMN]).to_pylist() if v["values"] is not None}
    if len(counts) > 1:
        from darkhaloscope.common.report.render import printable

        rows = printable(", ".join(f"{k} {n:,}" for k, n in sorted(counts.items())))  # split names are data
        print(f"note: scored every split ({rows} rows); the "
              "train and val rows are ones a model trained on: dhs evaluate and dhs candidates take the test split "
              "unless --split all (or score with --split test)", file=sys.stderr)


def run_bench_score(args) -> int:
    from darkhaloscope.score.infer import score_data

    cfg = config_from_args(args, cls=ScoreConfig, section="score")
    s = score_data(args.checkpoint, args.data, args.out, cfg, s3=s3_options_from_args(args), progress=False)
    print(f"dhs score: {s.rows:,} stamps in {s.seconds:.1f} s = {s.stamps_per_s:,.0f} stamps/s "
          f"(batch {cfg.batch_size}, device {cfg.device}, amp {cfg.amp})")
    return 0


def run_merge_scores(args) -> int:
    from darkhaloscope.score.merge import merge_scores

    m = merge_scores(args.parts, args.out)
    print(f"merged {m.parts} part(s), shards 0-{m.shards - 1} of {m.shards}: {m.rows:,} rows ({m.failed:,} with an "
          f"empty score) -> {m.out}")
    return 0


def run_mine(args) -> int:
    from darkhaloscope.score.mining import mine_tier

    m = mine_tier(args.checkpoint, args.data, args.top, args.out, split=None if args.split == "all" else args.split,
                  s3=s3_options_from_args(args), progress=not args.quiet, argv=getattr(args, "argv", None),
                  overwrite=args.overwrite)
    print(f"dhs mine: kept the {m['rows']:,} highest-scoring of {m['negatives_scored']:,} negatives (logit >= "
          f"{m['kth_logit']:.3g}) -> {args.out}; train with --mined={args.out}")
    return 0


def register(sub, bench_sub) -> None:
    p = sub.add_parser("score", help="score every stamp of a tier / cutout folder with a checkpoint -> scores.parquet")
    p.add_argument("--checkpoint", required=True, action="append",
                   help="a `dhs train` checkpoint (path or s3:// URI); repeat for a committee (one pass over the data)")
    p.add_argument("--combine", default="logit", choices=("logit", "rank"),
                   help="committee: average the members' logits (default) or their rank fractions")
    p.add_argument("--data", required=True, help="tier (folder, file or s3:// prefix) or folder of npz/FITS cutouts")
    p.add_argument("--out", required=True, help="scores parquet file to write")
    p.add_argument("--split", default=None, help="score only this region_split (default: every row; a note says "
                   "when that includes training rows)")
    p.add_argument("--shard", default=None, metavar="K/N", help="score only shard K of N (many machines)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(p, ScoreConfig, "score")
    add_s3_arguments(p)
    p.set_defaults(func=run_score)

    g = sub.add_parser("merge-scores", help="the scores files of a sharded `dhs score` (--shard K/N) as one file, "
                       "checked: one scoring, every shard once")
    g.add_argument("parts", nargs="+", metavar="PART", help="scores files of the shards, e.g. scores/part-*.parquet")
    g.add_argument("--out", required=True, help="scores parquet file to write")
    g.set_defaults(func=run_merge_scores)

    m = sub.add_parser("mine", help="hard-negative mining: the K highest-scoring negatives of a tier, as a tier "
                       "`dhs train --mined` mixes in")
    m.add_argument("--checkpoint", required=True, help="a `dhs train` checkpoint (path or s3:// URI)")
    m.add_argument("--data", required=True, help="tier of negatives (real galaxies, e.g. from `dhs cutouts`)")
    m.add_argument("--top", type=int, required=True, help="negatives to keep (highest scores first)")
    m.add_argument("--out", required=True, help="tier folder to write (OUT/region_split=<split>/part-00000.parquet)")
    m.add_argument("--split", default="train", help="split mined (default train; 'all' for every row)")
    m.add_argument("--overwrite", action="store_true", help="replace a previous `dhs mine` output in --out")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    add_s3_arguments(m)
    m.set_defaults(func=run_mine)

    s = bench_sub.add_parser("score", help="stamps/s of `dhs score` on a tier with a checkpoint")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", default="bench_scores.parquet")
    add_config_arguments(s, ScoreConfig, "score")
    add_s3_arguments(s)
    s.set_defaults(func=run_bench_score)
