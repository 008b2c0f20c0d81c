"""The training engine behind `dhs train`: guards, then epochs of streamed batches, validation,
checkpoints and logs; the same code runs on a 2-core CPU and under torchrun on several GPUs.

    summary = train(load_config(TrainConfig, preset_path("train", "cpu-demo"), ["--data=TIER"]), "RUN")
    summary["best_val_auroc"], summary["paths"]["best"]

Order of work: (1) class counts of train/val from the label columns (one-class -> RefusedError, exit 3,
nothing written); (2) run folder: config.yaml, run.json; (3) model, AdamW, cosine+warmup, scaler; resume
from last.pt (`--resume auto`, or the mirror); (4) per step: host->device copy, `prepare_batch` (THE
normalisation + augmentation), autocast forward, BCEWithLogits, backward, clip, step; losses are synced
every `log_every_steps` (nan/inf -> stop); (5) validation each epoch (and every N steps), best.pt on val
AUROC; last.pt every N steps / N minutes / epoch end. Only rank 0 writes.
With `inject` (train/onthefly.py) the training batches are rendered on the fly: an audit gate runs on a few
before anything is written, each step's render / wait / model seconds go into steps.jsonl and the summary, and
every batch's lens metadata into RUN/injections/; validation stays on the stored val split of `data`.
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from darkhaloscope.common.progress import Progress
from darkhaloscope.config import config_to_dict, run_info, save_config
from darkhaloscope.errors import RefusedError, UsageError
from darkhaloscope.fileio import atomic_write_text
from darkhaloscope.models import create_model, load_init
from darkhaloscope.stamps.fs import S3Options
from darkhaloscope.stamps.schema import BANDS, check_model_inputs
from darkhaloscope.train import checkpoint as ckp
from darkhaloscope.runtime import distributed as dd
from darkhaloscope.train import guards
from darkhaloscope.train.config import TrainConfig
from darkhaloscope.train.data import StampStream, make_loader
from darkhaloscope.train.metrics import val_metrics
from darkhaloscope.models.preprocess import prepare_batch
from darkhaloscope.train.runlog import RunLog
from darkhaloscope.train.runfolder import claim_run_folder, refuse_or_count
from darkhaloscope.train.resume import State, resume_run
from darkhaloscope.train.step import make_optimizer, make_scheduler, predict_logits, resolve_precision, train_step


def train(cfg: TrainConfig, out_dir, argv: list[str] | None = None, *, resume: str | None = None,
          s3: S3Options | None = None, overwrite: bool = False,
          on_save: Callable[[Path, int], None] | None = None) -> dict:
    """Train as configured; returns a summary dict (best_val_auroc, epochs, steps, paths, ...).

    A run folder that already holds files needs `resume` (continue it) or `overwrite` (replace its run
    files), so a finished run is never overwritten by accident. `on_save(path, step)` is called on rank 0
    after each checkpoint lands (train.resume_check kills the run there)."""
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other: continue the run or replace it")
    info, device = dd.setup(cfg.device)
    try:
        refusal = claim_run_folder(Path(out_dir), resume, overwrite) if info.is_main else None
        refusal = dd.broadcast_object(refusal, info)  # every rank stops, or none
        if refusal:
            raise UsageError(refusal)
        summary = _Trainer(cfg, Path(out_dir), argv, s3, info, device, on_save).run(resume)
        # every rank done with its last collective before any destroys the group: a gloo rank that tore down
        # while the other still finished its epoch was now and then aborted ('terminate called without an
        # active exception', exit -6); only on success, so a failed rank never waits here for a dead one
        dd.barrier(info)
        return summary
    finally:
        dd.teardown(info)


class _Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, argv, s3, info: dd.DistInfo, device: torch.device,
                 on_save: Callable[[Path, int], None] | None = None):
        self.cfg, self.run_dir, self.argv, self.s3, self.info, self.device = cfg, run_dir, argv, s3, info, device
        self.on_save = on_save
        if not cfg.data:
            raise UsageError("--inject renders the training batches but validates on a stored tier: pass --data TIER "
                             f"with a '{cfg.val_split}' split" if cfg.inject else
                             "no training data: pass --data TIER (a folder, parquet file or s3:// prefix)")
        check_model_inputs(cfg.meta_columns)  # RefusedError before anything is read or written
        if cfg.meta_columns:
            raise UsageError(f"meta_columns {cfg.meta_columns}: the input pipeline does not carry scalar columns "
                             "yet; train on stamps only (models accept metadata via create_model)")
        self.precision = resolve_precision(cfg.precision, device)
        self.counts = refuse_or_count(cfg, s3, info)
        self.log = RunLog(run_dir, enabled=info.is_main, tensorboard=cfg.tensorboard)
        if self.log.tb_missing:
            print("warning: tensorboard=true but tensorboard is not installed (pip install tensorboard); "
                  "metrics.csv / steps.jsonl are written as usual", file=sys.stderr)
        self.state = State()
        self.calibration: dict | None = None  # temperature of the latest validation (common.calibration)
        self.inject_log = None  # RUN/injections/ (--inject)
        self.clock = None  # --inject: render / wait / model seconds of each step (train.onthefly.StepClock)

    # ---- set-up ----------------------------------------------------------------------------------
    def _write_run_folder(self) -> None:
        if not self.info.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run_dir / "config.yaml")
        info = run_info(self.argv) | {"resumed_from": self.resumed_from, "world_size": self.info.world_size,
                                      "device": str(self.device), "precision": self.precision,
                                      "torch": torch.__version__, "class_counts": _counts_json(self.counts)}
        if getattr(self.model, "timm_version", None):  # a timm:NAME model: the timm that built it
            info["timm"] = self.model.timm_version
        atomic_write_text(self.run_dir / "run.json", _json(info))

    def _build(self) -> None:
        cfg, info = self.cfg, self.info
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        mf = torch.channels_last if cfg.channels_last else torch.preserve_format
        model = create_model(cfg.model, coords=cfg.coords, pooling=cfg.pooling)
        if cfg.init:
            loaded = load_init(model, cfg.init)
            if info.is_main:
                print(f"init: {loaded} weights from {cfg.init}")
        self.model = model.to(self.device, memory_format=mf)
        stream_kw = dict(seed=cfg.seed, s3=self.s3, cache_dir=cfg.cache_dir, rank=info.rank,
                         world_size=info.world_size, on_error=cfg.on_error, decode_threads=cfg.decode_threads,
                         decoded_cache_mb=cfg.decoded_cache_mb if cfg.num_workers == 0 else 0)
        if cfg.inject:
            from darkhaloscope.train.onthefly import InjectionLog, InjectStream, StepClock
            from darkhaloscope.train.onthefly_source import InjectSource

            self.source = InjectSource(cfg, cfg.batch_size, self.s3)
            self.train_stream = InjectStream(self.source, cfg.inject_steps_per_epoch, rank=info.rank,
                                             world_size=info.world_size, confuser_weight=cfg.confuser_weight,
                                             hosts=cfg.inject)
            self.inject_log = InjectionLog(self.run_dir, cfg.inject_log_every_steps, enabled=info.is_main)
            self.clock = StepClock(self.device)
        else:
            self.train_stream = StampStream(cfg.data, cfg.train_split, cfg.batch_size, shuffle=True,
                                            shuffle_buffer=cfg.shuffle_buffer, max_rows=cfg.max_train_rows,
                                            mined=cfg.mined, mined_repeat=cfg.mined_repeat,
                                            confuser_weight=cfg.confuser_weight, **stream_kw)
        self.val_stream = StampStream(cfg.data, cfg.val_split, cfg.val_batch_size, shuffle=False,
                                      max_rows=cfg.max_val_rows, confuser_weight=cfg.confuser_weight,
                                      weight_optional=True, **stream_kw)  # val loss weighs rows as training does
        pin = self.device.type == "cuda"
        # (--inject on CUDA renders in this process: forked loader workers cannot share its CUDA context)
        workers = 0 if cfg.inject and cfg.sim.device == "cuda" else cfg.num_workers
        self.train_loader = make_loader(self.train_stream, num_workers=workers, pin_memory=pin,
                                        prefetch_factor=cfg.prefetch_factor)
        self.val_loader = make_loader(self.val_stream, num_workers=cfg.num_workers, pin_memory=pin,
                                      prefetch_factor=cfg.prefetch_factor)
        self.steps_per_epoch = len(self.train_stream)
        if self.steps_per_epoch == 0:
            raise RefusedError(f"{cfg.data}: split '{cfg.train_split}' gives 0 batches of {cfg.batch_size} per rank "
                               f"({info.world_size} rank(s)); lower --batch_size or use more rows")
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.optimizer = make_optimizer(self.model, cfg.lr, cfg.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, self.total_steps, cfg.warmup_frac, cfg.min_lr_frac)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.aug = torch.Generator(device=self.device)
        self.aug.manual_seed(cfg.seed * 1000 + info.rank)  # each rank draws different augmentations
        self.mirror = ckp.Mirror(cfg.checkpoint_uri, self.s3) if cfg.checkpoint_uri else None

    # ---- checkpoints -----------------------------------------------------------------------------
    def _save(self, names: tuple[str, ...]) -> None:
        """All ranks gather RNG states; rank 0 writes `names` (last.pt / best.pt) and mirrors them."""
        rngs = dd.all_gather_objects(ckp.rng_state(self.aug), self.info)
        if not self.info.is_main:
            return
        if self.inject_log is not None:  # the lens metadata of every step up to this checkpoint is on disk
            self.inject_log.flush()
        s = self.state
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rngs,
                 "cursor": self.train_stream.state_dict(), "step": s.step, "epoch": s.epoch,
                 "best": s.best, "initial_loss": s.initial_loss, "config": config_to_dict(self.cfg),
                 "bands": list(BANDS),  # input channels in order (a committee compares them by name)
                 "git_commit": run_info([])["git_commit"], "world_size": self.info.world_size,
                 # temperature fitted on val for these weights (absent from a save between validations)
                 "calibration": self.calibration if (self.calibration or {}).get("step") == s.step else None}
        for name in names:
            path = ckp.save_checkpoint(state, self.run_dir / name)
            if self.mirror is not None:
                self.mirror.upload(path)
            if self.on_save is not None:
                self.on_save(Path(path), s.step)
        self._last_save_t = time.monotonic()

    # ---- validation ------------------------------------------------------------------------------
    def _validate(self) -> dict:
        model = self.model
        model.eval()
        labels, logits, weights = [], [], []
        self.val_stream.set_epoch(0)  # the whole val split, from its first batch, every time
        for batch in self.val_loader:
            x = prepare_batch(batch["image"].to(self.device, non_blocking=True), self.cfg.preprocess, train=False)
            logits.append(predict_logits(model, x, device=self.device, precision=self.precision).cpu())
            labels.append(batch["label"])
            weights.append(batch["weight"] if "weight" in batch else torch.ones(len(batch["label"])))
        model.train()
        lab, log, w = (torch.cat(v).numpy() if v else np.zeros(0) for v in (labels, logits, weights))
        parts = dd.all_gather_objects((lab, log, w), self.info)
        out = val_metrics(*(np.concatenate([p[i] for p in parts]) for i in range(3))) if self.info.is_main else None
        return dd.broadcast_object(out, self.info)

    def _after_validation(self, m: dict, train_loss: float, rate: float, epoch: int) -> None:
        """Log one metrics row, update best, save last.pt (+ best.pt). `epoch`: the epoch validated."""
        s = self.state
        auroc = m.get("val_auroc")
        is_best = auroc is not None and (s.best.get("val_auroc") is None or auroc > s.best["val_auroc"])
        if is_best:
            s.best = {**m, "epoch": epoch, "step": s.step}
        self.calibration = None if m.get("temperature") is None else {
            "temperature": m["temperature"], "ece_raw": m["val_ece"], "ece_calibrated": m["val_ece_calibrated"],
            "split": self.cfg.val_split, "n": m["val_n"], "step": s.step}
        row = {"epoch": epoch, "step": s.step, "train_loss": train_loss, "lr": self.scheduler.get_last_lr()[0],
               "samples_per_s": round(rate, 1), "elapsed_s": round(time.monotonic() - self.t0, 2), **m,
               "is_best": int(is_best)}
        self.log.metrics(row)
        # best.pt first: last.pt (which records the best) never points at a best.pt that was not written
        self._save(("best.pt", "last.pt") if is_best else ("last.pt",))
        self.progress.print(f"epoch {epoch} step {s.step}: train loss {train_loss:.4f}, val loss {_f(m['val_loss'])}, "
                            f"AUROC {_f(m['val_auroc'])}, AP {_f(m['val_ap'])}, TPR@FPR1e-2 "
                            f"{_f(m['val_tpr_at_fpr_1e-2'])}, T {_f(m['temperature'])} (ECE {_f(m['val_ece'])} -> "
                            f"{_f(m['val_ece_calibrated'])}){' (best)' if is_best else ''}")

    # ---- the loop --------------------------------------------------------------------------------
    def run(self, resume: str | None) -> dict:
        self._build()
        resume_run(self, resume)  # before writing: a refused resume leaves the run folder as it was
        audit = None
        if self.inject_log is not None and self.resumed_from is None:  # --inject: the audit gate (NO-GO: exit 3)
            from darkhaloscope.train.onthefly_audit import gate

            audit = gate(self.source, self.cfg.inject_audit_stamps, self.info)
        self._write_run_folder()
        if audit is not None and self.info.is_main:
            atomic_write_text(self.run_dir / "inject_audit.json", audit.to_json() + "\n")
        cfg, s, info = self.cfg, self.state, self.info
        net = self.model
        if info.world_size > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            net = torch.compile(net)
        self.t0 = self._last_save_t = time.monotonic()
        self.progress = Progress(self.total_steps, "train", unit="steps", done=s.step,
                                 enabled=info.is_main and cfg.progress)
        self.shard = None if cfg.shard_check_rows > 0 else {"checked": False}
        try:
            while s.epoch < cfg.epochs:
                self._train_epoch(net)
        finally:
            self.progress.close()
            self.log.close()
            if self.inject_log is not None:
                self.inject_log.flush()
        return self._summary()

    def _train_epoch(self, net) -> None:
        cfg, s, ws = self.cfg, self.state, self.info.world_size
        self.train_stream.set_epoch(s.epoch)  # keeps a resumed cursor for this epoch
        pending: list[torch.Tensor] = []  # per-step losses on the device, synced every log_every_steps
        lrs: list[float] = []
        losses: list[float] = []
        t_epoch, samples, first_step = time.monotonic(), 0, s.step
        left = self.steps_per_epoch - s.batches_done  # batches this epoch still has (equal on all ranks)
        shard_rows: list[str] = []
        shard_after = min(left, math.ceil(cfg.shard_check_rows / cfg.batch_size)) if self.shard is None else 0
        t_ready = time.perf_counter()
        for batch in self.train_loader:
            t_got = time.perf_counter()
            x = batch["image"].to(self.device, non_blocking=True)
            y = batch["label"].to(self.device, non_blocking=True)
            w = batch["weight"].to(self.device, non_blocking=True) if "weight" in batch else None
            x = prepare_batch(x, cfg.preprocess, train=True, generator=self.aug)
            lrs.append(self.scheduler.get_last_lr()[0])  # the lr this step uses
            pending.append(train_step(net, x, y, self.optimizer, self.scheduler, self.scaler, device=self.device,
                                      precision=self.precision, grad_clip_norm=cfg.grad_clip_norm, weight=w))
            s.step += 1
            s.batches_done += 1
            samples += len(y)
            if self.inject_log is not None:  # --inject: this step's seconds and its lens metadata
                self.clock.record(batch["render_s"], t_ready, t_got)
                self.inject_log.add(s.step, s.epoch, batch["meta"])
            if shard_after:
                shard_rows.extend(batch["row_id"])
                if s.step - first_step == shard_after:
                    self.shard = guards.check_disjoint_rows(dd.all_gather_objects(shard_rows, self.info))
                    shard_after = 0
            due_log = s.step % cfg.log_every_steps == 0
            due_ckpt = bool(cfg.checkpoint_every_steps) and s.step % cfg.checkpoint_every_steps == 0
            due_val = bool(cfg.val_every_steps) and s.step % cfg.val_every_steps == 0
            if s.batches_done < self.steps_per_epoch and (due_log or due_ckpt or due_val):
                rate = samples * ws / (time.monotonic() - t_epoch)
                losses += self._flush(pending, lrs, rate)
                pending, lrs = [], []
                if due_val:  # also saves last.pt
                    self._after_validation(self._validate(), float(np.mean(losses)), rate, s.epoch)
                elif due_ckpt or (due_log and self._time_to_save()):
                    self._save(("last.pt",))
            t_ready = time.perf_counter()
        rate = samples * ws / max(1e-9, time.monotonic() - t_epoch)
        losses += self._flush(pending, lrs, rate)
        if s.step == first_step:
            raise RefusedError(f"epoch {s.epoch} delivered no training batch (cursor {s.batches_done}/"
                               f"{self.steps_per_epoch}); the tier changed under the run or the cursor is wrong")
        s.epoch, s.batches_done = s.epoch + 1, 0
        self._after_validation(self._validate(), float(np.mean(losses)), rate, s.epoch - 1)

    def _time_to_save(self) -> bool:
        due = self.cfg.checkpoint_every_minutes > 0 and \
            time.monotonic() - self._last_save_t >= 60 * self.cfg.checkpoint_every_minutes
        return bool(dd.broadcast_object(due, self.info))  # rank 0's clock decides for all

    def _flush(self, pending: list[torch.Tensor], lrs: list[float], rate: float) -> list[float]:
        """Sync the pending per-step losses (mean over ranks), stop on nan/inf, log them. Returns the losses."""
        if not pending:
            return []
        s = self.state
        losses = dd.all_mean(torch.stack(pending).float(), self.info).cpu().numpy().astype(np.float64)
        first = s.step - len(losses) + 1
        guards.check_finite_losses(losses, first, epoch=s.epoch, lrs=lrs)
        if first == 1:
            s.initial_loss = float(losses[0])
            warn = guards.initial_loss_warning(s.initial_loss, self.cfg.initial_loss_tolerance)
            if self.info.is_main:
                self.progress.print(f"initial loss {s.initial_loss:.4f} (ln 2 = {guards.LN2:.4f})")
                if warn:
                    self.progress.print(f"warning: {warn}")
        times = self.clock.take_pending() if self.clock is not None else []
        self.log.steps([{"step": first + i, "epoch": s.epoch, "loss": float(v), "lr": lrs[i],
                         **(times[i] if len(times) == len(losses) else {})} for i, v in enumerate(losses)])
        self.progress.update(s.step, info=f"epoch {s.epoch} of 0-{self.cfg.epochs - 1}: {s.batches_done}/"
                             f"{self.steps_per_epoch} steps, {rate:,.0f} samples/s, loss {float(losses[-1]):.4f}")
        return [float(v) for v in losses]

    def _summary(self) -> dict:
        s, rd = self.state, self.run_dir
        files = {"best": "best.pt", "last": "last.pt", "config": "config.yaml", "metrics": "metrics.csv",
                 "steps": "steps.jsonl", "run": "run.json"}
        summary = {
            "best_val_auroc": s.best.get("val_auroc"), "best": s.best, "epochs": s.epoch, "steps": s.step,
            "steps_per_epoch": self.steps_per_epoch,
            "steps_per_rank": dd.all_gather_objects(s.step, self.info),  # equal, or DDP would have hung
            "initial_loss": s.initial_loss, "world_size": self.info.world_size, "rank": self.info.rank,
            "shard_check": self.shard, "precision": self.precision, "device": str(self.device),
            "class_counts": _counts_json(self.counts), "run_dir": str(rd),
            "paths": {k: str(rd / f) for k, f in files.items()},
        }
        if self.clock is not None:
            summary["step_times"] = self.clock.summary()
            summary["paths"]["injections"] = str(rd / "injections")
        if self.info.is_main:
            atomic_write_text(rd / "summary.json", _json(summary))
        return summary


def _counts_json(counts: dict) -> dict:
    return {split: {str(k): v for k, v in c.items()} for split, c in counts.items()}


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=2, default=str) + "\n"
