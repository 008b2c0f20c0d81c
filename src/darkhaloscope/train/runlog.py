"""The run folder's logs (rank 0 only): per-step losses and one metrics row per validation.

    RUN/steps.jsonl    {"step", "epoch", "loss", "lr"} per optimizer step (mean over ranks)
    RUN/metrics.csv    one row per validation (end of each epoch; also every N steps if asked):
    RUN/metrics.jsonl  epoch, step, train_loss, lr, samples_per_s, val_loss, val_auroc, val_ap, TPRs,
                       temperature fitted on val, val ECE before / after it
    RUN/tb/            TensorBoard scalars, when `tensorboard: true` and tensorboard is installed

On every restart the logs are cut back to the checkpoint's step (to step 0 when there is no checkpoint), so a resumed run's logs equal those of an
uninterrupted one. Exercised by `dhs train`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from darkhaloscope.fileio import atomic_write_text
from darkhaloscope.common.jsonio import json_safe, read_jsonl  # one rule: NaN / inf -> null

METRIC_COLUMNS = ("epoch", "step", "train_loss", "lr", "samples_per_s", "elapsed_s", "val_loss", "val_auroc",
                  "val_ap", "val_tpr_at_fpr_1e-2", "val_tpr_at_fpr_1e-3", "val_n", "temperature", "val_ece", "val_ece_calibrated", "is_best")


class RunLog:
    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool = False):
        self.dir = Path(run_dir)
        self.enabled = enabled  # False on ranks > 0: nothing is written
        self.steps_path = self.dir / "steps.jsonl"
        self.metrics_csv = self.dir / "metrics.csv"
        self.metrics_jsonl = self.dir / "metrics.jsonl"
        self._steps_f = None
        self.tb = None
        self.tb_missing = False
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.dir / "tb"))
            except ImportError:
                self.tb_missing = True

    def truncate(self, step: int) -> None:
        """Drop log rows after `step` (those a killed run wrote past its last checkpoint)."""
        if not self.enabled or not (self.steps_path.exists() or self.metrics_jsonl.exists()):
            return
        steps = [r for r in read_jsonl(self.steps_path) if r["step"] <= step]
        atomic_write_text(self.steps_path, "".join(json.dumps(r) + "\n" for r in steps))
        metrics = [r for r in read_jsonl(self.metrics_jsonl) if r["step"] <= step]
        self._write_metrics(metrics)

    def steps(self, rows: list[dict]) -> None:
        if not self.enabled or not rows:
            return
        if self._steps_f is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._steps_f = open(self.steps_path, "a")
        self._steps_f.write("".join(json.dumps({k: json_safe(v) for k, v in r.items()}) + "\n" for r in rows))
        self._steps_f.flush()
        if self.tb is not None:
            for r in rows:
                self.tb.add_scalar("train/loss", r["loss"], r["step"])
                self.tb.add_scalar("train/lr", r["lr"], r["step"])

    def metrics(self, row: dict) -> None:
        """Append one validation row to metrics.jsonl and rewrite metrics.csv (both atomically)."""
        if not self.enabled:
            return
        rows = read_jsonl(self.metrics_jsonl) + [{k: json_safe(row.get(k)) for k in METRIC_COLUMNS}]
        self._write_metrics(rows)
        if self.tb is not None:
            for k in METRIC_COLUMNS[6:-1]:
                if row.get(k) is not None:
                    self.tb.add_scalar(f"val/{k[4:]}", row[k], row["step"])

    def _write_metrics(self, rows: list[dict]) -> None:
        atomic_write_text(self.metrics_jsonl, "".join(json.dumps(r) + "\n" for r in rows))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in METRIC_COLUMNS})
        atomic_write_text(self.metrics_csv, buf.getvalue())

    def close(self) -> None:
        if self._steps_f is not None:
            self._steps_f.close()
            self._steps_f = None
        if self.tb is not None:
            self.tb.close()
