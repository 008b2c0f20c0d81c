"""Resuming a training run (`dhs train --resume`), as functions of the loop's trainer (train/loop.py):

    State                          # what the loop tracks between steps (all of it checkpointed)
    resume_run(trainer, "auto")    # from last.pt (or the checkpoint mirror); bit-exact continuation
    restore_best(trainer, ck, path)  # best.pt lost (kill, disk full): recreate, fetch or forget it

The kill -9 round trip that proves it: train/resume_check.py.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from darkhaloscope.errors import UsageError
from darkhaloscope.runtime import distributed as dd
from darkhaloscope.train import checkpoint as ckp


@dataclass
class State:
    """What the loop tracks between steps; all of it goes into the checkpoint."""

    epoch: int = 0  # current epoch (0-based)
    batches_done: int = 0  # batches of this epoch consumed on each rank (the data cursor)
    step: int = 0  # optimizer steps done in total
    best: dict = field(default_factory=dict)  # val metrics of the best checkpoint so far
    initial_loss: float | None = None  # mean loss of the first step (warned about if far from ln 2)


def resume_run(self, resume: str | None) -> None:
    """Load the checkpoint `resume` names (`auto`: last.pt here or in the mirror) into the trainer `self`:
    weights, optimizer, scheduler, scaler, RNG states and the data cursor; cut the logs back to its step. No
    checkpoint: start from step 0 with empty logs. A checkpoint of another architecture: UsageError."""
    path = ckp.find_resume(self.run_dir, resume, self.mirror) if self.info.is_main else None
    path = dd.broadcast_object(str(path) if path else None, self.info)
    self.resumed_from = path
    if path is None:
        self.log.truncate(0)  # rows a run killed before its first checkpoint wrote
        if self.inject_log is not None:
            self.inject_log.truncate(0)
        if resume and self.info.is_main:
            print(f"resume: no checkpoint in {self.run_dir}" + (f" or {self.cfg.checkpoint_uri}" if self.mirror else "")
                  + "; starting from step 0")
        return
    ck = ckp.load_checkpoint(path, map_location=self.device)
    arch = ("model", "coords", "pooling")  # what decides the weights' shapes (absent keys: the old defaults)
    held = {k: ck["config"].get(k, ckp.ARCH_DEFAULTS.get(k)) for k in arch}
    want = {k: getattr(self.cfg, k) for k in arch}
    if held != want:  # name the model, and the other settings only where they differ
        differ = [k for k in arch[1:] if held[k] != want[k]]
        had, asks = (f"{d['model']!r}" + (f" ({', '.join(f'{k}={d[k]}' for k in differ)})" if differ else "")
                     for d in (held, want))
        raise UsageError(f"{path} holds model {had} but the config asks for {asks}; use the same model or a new "
                         "--out folder")
    self.model.load_state_dict(ck["model"])
    self.optimizer.load_state_dict(ck["optimizer"])
    self.scheduler.load_state_dict(ck["scheduler"])
    self.scaler.load_state_dict(ck["scaler"])
    rngs = ck["rng"]
    ckp.set_rng_state(rngs[self.info.rank] if len(rngs) == self.info.world_size else rngs[0], self.aug)
    c = ck["cursor"]
    self.train_stream.load_state_dict(c)  # checks that data, batch size, seed, workers... are unchanged
    self.state = State(epoch=ck["epoch"], batches_done=c["batches_done"] if c["epoch"] == ck["epoch"] else 0,
                       step=ck["step"], best=ck["best"], initial_loss=ck.get("initial_loss"))
    self.log.truncate(self.state.step)
    if self.inject_log is not None:
        self.inject_log.truncate(self.state.step)
    restore_best(self, ck, Path(path))
    if self.info.is_main:
        print(f"resumed from {path}: epoch {self.state.epoch}, batch {self.state.batches_done}/{self.steps_per_epoch}, "
              f"step {ck['step']}")

def restore_best(self, ck: dict, path: Path) -> None:
    """best.pt missing but the checkpoint records a best (killed or disk full while writing best.pt):
    recreate it from the checkpoint when that is the best state, else fetch it from the mirror, else
    forget the best so the next validation writes a new best.pt."""
    best = self.run_dir / ckp.BEST
    missing = bool(self.state.best) and not best.is_file() if self.info.is_main else None
    if not dd.broadcast_object(missing, self.info):  # rank 0's file system decides for all ranks
        return
    if self.state.best.get("step") == ck["step"]:
        if self.info.is_main:
            ckp.save_checkpoint({k: v for k, v in ck.items() if k not in ("format", "version")}, best)
            print(f"resume: {best} was missing; recreated it from {path} (the best state, step {ck['step']})")
        return
    fetched = self.mirror.download(ckp.BEST, best) if self.mirror is not None and self.info.is_main else False
    if dd.broadcast_object(fetched, self.info):
        if self.info.is_main:
            print(f"resume: {best} was missing; fetched it from {self.cfg.checkpoint_uri}")
        return
    if self.info.is_main:
        print(f"warning: {best} (step {self.state.best.get('step')}) is missing; the best is chosen again "
              "from the validations still to come", file=sys.stderr)
    self.state.best = {}
