"""On-the-fly training data: `InjectStream`, the training stream of `dhs train --inject HOSTS`, and
`InjectionLog`, the lens metadata of every batch it gave (RUN/injections/).

    stream = InjectStream(InjectSource(cfg, cfg.batch_size), steps_per_epoch=100, rank=r, world_size=ws)
    loader = make_loader(stream, num_workers=0)         # train.data's loader: it counts consumed batches
    for epoch in ...: stream.set_epoch(epoch); for batch in loader: ...  # {"image", "label", "row_id", ...}

Batch t of epoch e on rank r is global batch g = (e x steps_per_epoch + t) x world_size + r, rendered by
`InjectSource.render(g)` (train/onthefly_source.py): a pure function of (seed, g). The generator state is
therefore only the cursor {"epoch", "batches_done"}, saved in the checkpoint as StampStream's is, and a resumed
run renders exactly the batches an uninterrupted one would (any number of loader workers: batch t comes from
worker (t - start) mod W, the order the in-order DataLoader asks in). An epoch is `inject_steps_per_epoch`
batches: it sets how often the run validates on the stored val split and writes last.pt.

RUN/injections/part-<first step>-<last step>.parquet: one row per stamp of every training batch, in step
order (step, epoch, row_id, kind: lens | paired_control | lookalike | control, label, host_id, the observing
columns, and on lens rows the lens and source metadata of `dhs simulate`'s tiers: theta_e_arcsec, src_dmag,
arc_snr, magnification, ...; a paired control names its lens in pair_of). Written atomically, one part every
`inject_log_every_steps` steps and at every checkpoint, so after a kill the parts cover exactly the steps of
the checkpoint a resumed run continues from (later rows are cut off on resume). Read the whole log with
`pandas.read_parquet("RUN/injections")`. Exercised by `dhs train --inject` and tests/train/test_onthefly.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from darkhaloscope.errors import UsageError
from darkhaloscope.fileio import atomic_path
from darkhaloscope.train.onthefly_source import InjectSource

LOG_FOLDER = "injections"
_STRING_COLUMNS = ("row_id", "kind", "host_id", "confuser_kind", "confuser_variant", "pair_of")
_INT_COLUMNS = ("step", "epoch", "label", "is_control")


class InjectStream(IterableDataset):
    """Freshly rendered batches {"image", "label", "row_id", "n_skipped", "render_s", "meta"} (+ "weight")."""

    def __init__(self, source: InjectSource, steps_per_epoch: int, *, rank: int = 0, world_size: int = 1,
                 confuser_weight: float = 1.0, hosts: str = ""):
        if steps_per_epoch < 1 or not 0 <= rank < world_size:
            raise UsageError(f"steps_per_epoch={steps_per_epoch} must be >= 1 and rank {rank} in 0..{world_size - 1}")
        self.source, self.steps_per_epoch, self.rank, self.world_size = source, int(steps_per_epoch), rank, world_size
        self.confuser_weight, self.hosts = float(confuser_weight), hosts
        self.epoch = 0
        self.num_workers = 1  # set by make_loader
        self.rows_skipped = 0  # (StampLoader's interface: rendering drops no row)
        self._batches_done = 0
        self._resume_epoch: int | None = None

    def __len__(self) -> int:
        return self.steps_per_epoch

    # ---- the cursor (StampStream's semantics) ----------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        if self._resume_epoch != epoch:
            self._batches_done = 0
        self._resume_epoch = None
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches_done": self._batches_done, "num_workers": self.num_workers,
                "fingerprint": self._fingerprint()}

    def load_state_dict(self, d: dict) -> None:
        want, got = self._fingerprint(), d.get("fingerprint") or {}
        diff = [f"{k}={got.get(k)} (now {v})" for k, v in want.items() if got.get(k) != v]
        if diff:
            raise UsageError("the saved on-the-fly cursor was made for other batches: " + ", ".join(diff) +
                             "; resume with the same --inject, sim.* keys, seed, batch_size and "
                             "inject_steps_per_epoch, or start a new run")
        done = int(d["batches_done"])
        if not 0 <= done <= len(self):
            raise UsageError(f"saved batches_done={done} is outside 0..{len(self)} batches per epoch")
        self.epoch, self._batches_done, self._resume_epoch = int(d["epoch"]), done, int(d["epoch"])

    def _fingerprint(self) -> dict:
        sim = hashlib.sha256(json.dumps(asdict(self.source.sim), sort_keys=True).encode()).hexdigest()[:16]
        hosts = "synthetic" if self.source.real is None else f"{self.hosts}:{len(self.source.real.ids)}"
        return {"inject": hosts, "sim_config": sim, "seed": self.source.seed, "batch_size": self.source.batch_size,
                "steps_per_epoch": self.steps_per_epoch, "world_size": self.world_size}

    def _start(self) -> None:
        if self._batches_done >= len(self):
            self._batches_done = 0

    # ---- iteration -------------------------------------------------------------------------------
    def global_batch(self, t: int) -> int:
        return (self.epoch * self.steps_per_epoch + t) * self.world_size + self.rank

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        workers, worker_id = (info.num_workers, info.id) if info is not None else (1, 0)
        self._start()
        start = self._batches_done
        for t in range(start + worker_id, len(self), workers):
            yield self.batch(self.global_batch(t))

    def batch(self, g: int) -> dict:
        b = self.source.render(g)
        out = {"image": torch.from_numpy(b.images), "label": torch.from_numpy(b.labels), "row_id": b.row_ids,
               "n_skipped": 0, "render_s": b.render_s,
               "meta": [{"row_id": r, "kind": k, "label": int(y), **c}
                        for r, k, y, c in zip(b.row_ids, b.kinds, b.labels, b.columns)]}
        if self.confuser_weight != 1.0:
            out["weight"] = torch.tensor([self.confuser_weight if k == "lookalike" else 1.0 for k in b.kinds])
        return out


class InjectionLog:
    """RUN/injections/ (see the module docstring); rank 0 only (`enabled`)."""

    def __init__(self, run_dir: Path, every_steps: int, enabled: bool = True):
        self.dir = Path(run_dir) / LOG_FOLDER
        self.every, self.enabled = int(every_steps), enabled
        self.rows: list[dict] = []
        self.first_step: int | None = None
        self.last_step: int | None = None

    def add(self, step: int, epoch: int, meta: list[dict]) -> None:
        if not self.enabled:
            return
        self.rows += [{"step": step, "epoch": epoch, **m} for m in meta]
        self.first_step = step if self.first_step is None else self.first_step
        self.last_step = step
        if self.last_step - self.first_step + 1 >= self.every:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one part (atomically)."""
        if not self.enabled or not self.rows:
            return
        self._write(self.dir / f"part-{self.first_step:09d}-{self.last_step:09d}.parquet", self.rows)
        self.rows, self.first_step, self.last_step = [], None, None

    def truncate(self, step: int) -> None:
        """Keep the rows of steps <= `step` (a resumed run's checkpoint); drop the rest."""
        if not self.enabled or not self.dir.is_dir():
            return
        for p in sorted(self.dir.glob("part-*.parquet")):
            first, last = (int(v) for v in p.stem.split("-")[1:3])
            if first > step:
                p.unlink()
            elif last > step:
                rows = [r for r in pq.read_table(p).to_pylist() if r["step"] <= step]
                p.unlink()
                self._write(self.dir / f"part-{first:09d}-{step:09d}.parquet", rows)

    @staticmethod
    def _write(path: Path, rows: list[dict]) -> None:
        names: dict[str, None] = {}
        for r in rows:
            names.update(dict.fromkeys(r))
        types = {n: pa.string() if n in _STRING_COLUMNS else pa.int64() if n in _INT_COLUMNS else pa.float64()
                 for n in names}
        table = pa.table({n: pa.array([r.get(n) for r in rows], types[n]) for n in names})
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)


class StepClock:
    """Seconds of each training step: rendering its batch (where it was rendered), waiting for it in the loop
    (with loader workers, rendering overlaps the model), and the model (prepare_batch + forward/backward/optimizer;
    on CUDA synchronised, so its own share and not its launch)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.rows: list[dict] = []
        self._pending: list[dict] = []

    def record(self, render_s: float, t_ready: float, t_got: float) -> None:
        """One step: the loop asked for its batch at t_ready, got it at t_got, and has just stepped."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        row = {"render_s": round(float(render_s), 5), "wait_s": round(t_got - t_ready, 5),
               "model_s": round(time.perf_counter() - t_got, 5)}
        self.rows.append(row)
        self._pending.append(row)

    def take_pending(self) -> list[dict]:
        """The rows since the last call (the loop's steps.jsonl flush)."""
        out, self._pending = self._pending, []
        return out

    def summary(self) -> dict:
        """Means per step and the render share of the step (wait + model) of this process's steps."""
        if not self.rows:
            return {}
        mean = {k: float(np.mean([r[k] for r in self.rows])) for k in ("render_s", "wait_s", "model_s")}
        step = mean["wait_s"] + mean["model_s"]
        return {**{f"{k}_mean": round(v, 5) for k, v in mean.items()}, "step_s_mean": round(step, 5),
                "render_frac": round(mean["render_s"] / step, 4) if step > 0 else None, "steps": len(self.rows)}
