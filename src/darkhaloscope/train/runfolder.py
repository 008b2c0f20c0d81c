"""A training run's folder and its first guards (rank 0 decides, every rank follows):

    refusal = claim_run_folder(run_dir, resume, overwrite)   # None, or why --out cannot be used as it is
    counts = refuse_or_count(cfg, s3, info)                  # class counts of train/val, or RefusedError (exit 3)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from darkhaloscope.errors import RefusedError
from darkhaloscope.fileio import clean_temps
from darkhaloscope.runtime import distributed as dd
from darkhaloscope.stamps.tier import open_tier
from darkhaloscope.train import guards
from darkhaloscope.train.config import TrainConfig


RUN_FILES = ("last.pt", "best.pt", "config.yaml", "run.json", "summary.json", "metrics.csv", "metrics.jsonl",
             "steps.jsonl", "inject_audit.json")  # what a run writes (and --overwrite removes), besides tb/, injections/


def claim_run_folder(run_dir: Path, resume: str | None, overwrite: bool) -> str | None:
    """Rank 0: remove stale temp files; refuse (return the message) a non-empty folder without --resume /
    --overwrite; with --overwrite remove the previous run's files (never anything else)."""
    clean_temps(run_dir)
    if not run_dir.exists() or resume:
        return None
    if not run_dir.is_dir():
        return f"--out {run_dir} is a file; give a folder for the run"
    present = sorted(p.name for p in run_dir.iterdir())
    if not present:
        return None
    if not overwrite:
        return (f"--out {run_dir} already holds {', '.join(present[:4])}{' ...' if len(present) > 4 else ''}; "
                "pass --resume auto to continue that run or --overwrite to replace it (or choose another --out)")
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for folder in ("tb", "injections"):
        if (run_dir / folder).is_dir():
            shutil.rmtree(run_dir / folder)
    return None


def refuse_or_count(cfg: TrainConfig, s3, info: dd.DistInfo) -> dict:
    """Rank 0 counts classes; every rank raises the same RefusedError if a split is one-class."""
    result = None
    if info.is_main:
        try:
            tier = open_tier(cfg.data, s3)
            if cfg.inject:  # training batches are rendered: only the stored val split is counted
                from darkhaloscope.train.onthefly_source import check_val_tier

                result = check_val_tier(tier, cfg.val_split)
            else:
                result = guards.check_class_counts(tier, cfg.train_split, cfg.val_split)
        except RefusedError as e:
            result = str(e)
    result = dd.broadcast_object(result, info)
    if isinstance(result, str):
        raise RefusedError(result)
    return result
