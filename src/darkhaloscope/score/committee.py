"""Committees of trained runs for `dhs score`: load the members, refuse mismatched ones, combine their logits.

    dhs score --checkpoint runA/best.pt --checkpoint runB/best.pt --checkpoint runC/best.pt --data TIER --out s.parquet
    dhs score ... --combine rank          # mean rank instead of mean logit

The data are decoded and preprocessed once per batch; every member scores the same tensors. Members must
share the preprocessing (every `preprocess.*` key), the input bands (the band names each checkpoint
records, in channel order) and the scalar inputs (`meta_columns`): otherwise one line names the members
and the first mismatch (exit 2), since a committee of members that saw differently normalised stamps, or
other bands, would average numbers that mean different things. A checkpoint written before band names
were recorded is compared by what it has, the channel count of its first layer, and a note says so. Members
holding identical weights (a byte copy of best.pt, best.pt and last.pt of one step) are refused naming both.

Columns written beside the usual ones: `logit_m0`, `logit_m1`, ... (each member's logit, in the order of
the --checkpoint flags) and `logit_spread` (standard deviation of the member logits, the disagreement).
`combine=logit`: `logit` is the mean member logit and `score` its sigmoid; when every member holds a
temperature, `logit_calibrated` is the mean of the members' logit / T (`score_calibrated` its sigmoid; no
temperature is fitted for the committee itself). `combine=rank`: after the pass, each member's logits
are turned into rank fractions over all scored rows (ties share their mean rank), `score` is their mean
(in [0, 1]: a rank, not a probability) and `logit` = log(score / (1 - score)) so that evaluate ranks by it;
no calibrated columns. Rank fractions depend on the rows scored together, so `--shard` is refused with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.errors import UsageError
from darkhaloscope.score.scoresfile import (CALIBRATED_COLUMN, CALIBRATED_LOGIT_COLUMN, LOGIT_COLUMN, MEMBER_PREFIX,
                                            SCORE_COLUMN, SPREAD_COLUMN, is_member_column, read_provenance)

COMBINE = ("logit", "rank")  # how member outputs become the committee's


@dataclass
class Member:
    checkpoint: str
    model: object  # nn.Module in eval mode
    preprocess: object  # stamps.normalise.PreprocessConfig
    meta: dict  # from load_for_inference: config, epoch, calibration, ...

    @property
    def temperature(self) -> float | None:
        return (self.meta.get("calibration") or {}).get("temperature")

    @property
    def bands(self) -> list[str] | None:
        """Input band names in channel order, as recorded by `dhs train`; None in an older checkpoint."""
        bands = self.meta.get("bands")
        return None if bands is None else list(bands)

    @property
    def confuser_weight(self) -> float:
        """The loss weight its look-alike negatives had in training (1 = none; absent in old checkpoints)."""
        return float(self.meta["config"].get("confuser_weight", 1.0))

    def describe(self) -> dict:
        from darkhaloscope.score.writer import weights_epoch

        return {"checkpoint": self.checkpoint, "model": self.meta.get("model"), "epoch": weights_epoch(self.meta),
                "seed": self.meta["config"].get("seed"), "temperature": self.temperature, "bands": self.bands,
                "confuser_weight": self.confuser_weight}


def input_channels(model) -> int:
    """Channels of the first convolution / linear layer: the number of input bands the member reads."""
    for p in model.parameters():
        if p.ndim == 4:
            return int(p.shape[1])
    raise UsageError("model has no convolution: cannot tell its input bands")


def _inputs(m: Member, by_name: bool) -> dict:
    """What a member's input has to agree on: preprocessing, bands (names, or channel count), meta_columns."""
    return {**{f"preprocess.{k}": v for k, v in vars(m.preprocess).items()},
            "input bands": m.bands if by_name else input_channels(m.model),
            "meta_columns": list(m.meta["config"].get("meta_columns") or [])}


def check_compatible(members: list[Member]) -> str | None:
    """UsageError (one line) naming the first setting in which a member differs from the first member.
    Returns a note when some member records no band names (an older checkpoint): bands were then compared
    by channel count only."""
    old = [m.checkpoint for m in members if m.bands is None]
    how = "" if not old else (f" (by channel count: {', '.join(old)} record{'s' if len(old) == 1 else ''} no "
                              "band names, an older checkpoint)")
    first = members[0]
    ref = _inputs(first, by_name=not old)
    for m in members[1:]:
        got = _inputs(m, by_name=not old)
        for key in ref.keys() | got.keys():
            if ref.get(key) != got.get(key):
                what = f"{key}{how}" if key == "input bands" else key
                raise UsageError(f"committee members differ in {what}: {first.checkpoint} has {ref.get(key)!r}, "
                                 f"{m.checkpoint} has {got.get(key)!r}; score them separately")
    return f"committee input bands compared{how}" if old else None


def load_members(checkpoints: list[str], device, s3=None) -> tuple[list[Member], str | None]:
    """(members, note of `check_compatible` or None); mismatched members refused."""
    from darkhaloscope.runtime.loading import load_for_inference

    if len(set(map(str, checkpoints))) != len(checkpoints):
        raise UsageError(f"the same checkpoint is given twice among {', '.join(map(str, checkpoints))}")
    members = [Member(str(c), *load_for_inference(c, device, s3)) for c in checkpoints]
    if len(members) == 1:
        return members, None
    note = check_compatible(members)
    check_distinct(members)
    return members, note


def weights_digest(model) -> str:
    """sha256 of a model's weights (every state-dict tensor's name, dtype, shape and bytes, in order)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        a = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{a.dtype}|{tuple(t.shape)}|".encode())
        h.update(a.view(torch.uint8).numpy().tobytes() if a.numel() else b"")
    return h.hexdigest()


def check_distinct(members: list[Member]) -> None:
    """UsageError naming two members with identical weights (a byte copy of best.pt, or best.pt and last.pt
    saved at one step): their average is one model, and logit_spread 0 would read as full agreement."""
    seen: dict[str, str] = {}
    for m in members:
        d = weights_digest(m.model)
        if d in seen:
            raise UsageError(f"committee members {seen[d]} and {m.checkpoint} hold identical weights (the same "
                             "model twice); give checkpoints of different runs or steps")
        seen[d] = m.checkpoint


def committee_columns(member_logits: np.ndarray, temperatures: list[float | None]) -> dict[str, np.ndarray]:
    """{logit, logit_calibrated (if every member has T), logit_m<i>, logit_spread} of (M, N) member logits."""
    cols = {LOGIT_COLUMN: member_logits.mean(0)}
    if all(t is not None for t in temperatures):
        cols[CALIBRATED_LOGIT_COLUMN] = (member_logits / np.asarray(temperatures, np.float64)[:, None]).mean(0)
    cols |= {f"{MEMBER_PREFIX}{i}": z for i, z in enumerate(member_logits)}
    cols[SPREAD_COLUMN] = member_logits.std(0)
    return cols


def rank_fractions(z: np.ndarray) -> np.ndarray:
    """Mean-rank of each value among the finite ones, scaled to (0, 1): (rank - 0.5) / n; nan stays nan."""
    from scipy.stats import rankdata

    out = np.full(len(z), np.nan)
    ok = np.isfinite(z)
    if ok.any():
        out[ok] = (rankdata(z[ok]) - 0.5) / ok.sum()
    return out


def apply_rank_average(path: Path) -> None:
    """Rewrite scores file `path` (atomically) with score = mean member rank fraction, logit = its logit."""
    from darkhaloscope.score.writer import write_scores

    pf = pq.ParquetFile(path)
    names = [c for c in pf.schema_arrow.names if is_member_column(c)]
    members = pf.read(columns=names)
    q = np.mean([rank_fractions(members[c].to_numpy(zero_copy_only=False).astype(np.float64)) for c in names], 0)
    valid = np.isfinite(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        logit = np.log(q) - np.log1p(-q)
    recorded = read_provenance(pf.schema_arrow)

    def tables():
        start = 0
        for i in range(pf.num_row_groups):
            t = pf.read_row_group(i)
            sl = slice(start, start + t.num_rows)
            start += t.num_rows
            t = t.drop_columns([c for c in (CALIBRATED_COLUMN, CALIBRATED_LOGIT_COLUMN) if c in t.column_names])
            for name, v in ((SCORE_COLUMN, q[sl]), (LOGIT_COLUMN, logit[sl])):
                t = t.set_column(t.column_names.index(name), name,
                                 pa.array(v.astype(np.float32), mask=~valid[sl]))
            yield t
    write_scores(tables(), path, recorded)
