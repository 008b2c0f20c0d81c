"""Training guards: refuse a one-class split before anything is written, flag a strange initial loss,
stop on a nan/inf loss, and check that ranks / loader workers see disjoint rows.

All are called by `train.loop.train` (`dhs train`); each message says what was found and what to do.
"""

from __future__ import annotations

import math

import numpy as np

from darkhaloscope.errors import DataError, RefusedError
from darkhaloscope.stamps.counts import class_counts, duplicate_ids, one_class_splits
from darkhaloscope.stamps.pack import check_packed_complete
from darkhaloscope.stamps.provenance import survey_design
from darkhaloscope.stamps.tier import Tier

LN2 = math.log(2.0)  # BCE of a classifier that outputs p = 0.5 for every stamp (nats)


def check_class_counts(tier: Tier, train_split: str, val_split: str, *, cutout_ok_only: bool = True) -> dict:
    """Refuse an unfinished packed tier and repeated stamp_ids (DataError); count classes of the train and val splits from the label columns only; RefusedError if one-class.

    Returns {split: {0: n_controls, 1: n_injections}} for the two splits.
    """
    check_packed_complete(tier)
    dup = duplicate_ids(tier)
    if dup:
        raise DataError(dup)
    counts = class_counts(tier, cutout_ok_only=cutout_ok_only)
    splits = [train_split, val_split]
    msgs = one_class_splits(counts, splits)
    if msgs:
        have = ", ".join(sorted(counts)) or "none"
        rebuild = ("the target list put no lenses there: rebuild it with `dhs catalog` and a --seed that puts "
                   "lenses in every split (`dhs catalog` names one), then `dhs cutouts` again"
                   if survey_design(tier) else "rebuild the tier with controls (is_control=1) and injections "
                   "(is_control=0) in every split")
        raise RefusedError(f"{tier.uri}: {'; '.join(msgs)} (splits present: {have}); a classifier needs both "
                           f"classes in train and val: {rebuild}, or pick other splits with --train_split / "
                           "--val_split")
    return {s: counts[s] for s in splits}


def initial_loss_warning(loss: float, tolerance: float) -> str | None:
    """A warning when the first training loss is far from ln 2 (what an untrained classifier should give)."""
    if abs(loss - LN2) <= tolerance:
        return None
    return (f"initial training loss {loss:.4f} is far from ln 2 = {LN2:.4f} (tolerance {tolerance}): the "
            "logits at initialisation are large, which usually means unnormalised inputs (check the "
            "preprocess settings and stamp units: nanomaggies) or a badly initialised model")


def check_finite_losses(losses: np.ndarray, first_step: int, *, epoch: int, lrs: list[float]) -> None:
    """DataError naming the first step whose loss is nan/inf (training stops; last.pt stays as it was)."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"training loss became {losses[i]} at step {first_step + i} (epoch {epoch}, lr {lrs[i]:.3g}); "
                        "stopped without writing a checkpoint. Check the tier for NaN/Inf stamps "
                        "(`dhs audit`), lower --lr, or keep --grad_clip_norm on; then resume from last.pt "
                        "with --resume auto")


def check_disjoint_rows(rows_per_rank: list[list[str]]) -> dict:
    """Refuse when a row id is seen twice (two ranks, or two loader workers, reading the same shard).

    Returns {'rows_per_rank': [...], 'overlap': 0}.
    """
    seen: dict[str, int] = {}
    for rank, rows in enumerate(rows_per_rank):
        for r in rows:
            if r in seen:
                where = "twice on rank" if seen[r] == rank else f"on ranks {seen[r]} and"
                raise RefusedError(f"row {r} was read {where} {rank} in the first batches of epoch 0: "
                                   "the input is not sharded across ranks/loader workers, so processes "
                                   "train on the same rows; this is a bug in the input pipeline, please "
                                   "report it (a workaround is --num_workers=0)")
            seen[r] = rank
    return {"rows_per_rank": [len(r) for r in rows_per_rank], "overlap": 0}
