"""`ReviewConfig`: how much `dhs review` measures (the defaults are below; override with `--key=value`).

    dhs review --data DATA --out review.md --overfit_steps=500 --planned_rows=10000000
    dhs review --data DATA --out review.md --quick       # the QUICK preset below (tests, `dhs demo --quick`)

The planned training run itself (model, batch size, epochs, workers, checkpoint mirror) comes from a
TrainConfig (`--config NAME_OR_FILE`, default: what `dhs train` would use); this dataclass only sizes the
measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from darkhaloscope.errors import UsageError


SECTIONS: tuple[str, ...] = ("data", "sanity", "throughput", "memory", "checkpoint", "run")  # in report order


@dataclass
class ReviewConfig:
    device: str = "auto"  # where the sanity checks and benchmarks run: auto (cuda if available), cpu, cuda
    sections: list[str] = field(default_factory=lambda: list(SECTIONS))  # which sections to measure (the
    # verdict covers only these), e.g. --set sections=data,run to re-check a run without benchmarks
    # --- data
    audit_sample_rows: int = 2000  # stamps the audit decodes for its pixel checks
    # --- training-code sanity (real batches of DATA)
    sanity_model: str = "auto"  # auto: the planned model on CUDA or when it is CPU-sized (small_cnn, polar_cnn),
    # else small_cnn on CPU (a ResNet-18 step takes seconds on 2 cores); the planned model's initial loss is
    # always measured
    sanity_batch_size: int = 32  # stamps of the batch that must be overfitted
    initial_loss_tolerance: float = 0.25  # |initial BCE - ln 2| above this (nats) -> blocking
    overfit_steps: int = 300  # at most this many steps on one batch ...
    overfit_lr: float = 3e-3  # ... with AdamW at this learning rate (no augmentation) ...
    overfit_max_loss: float = 0.05  # ... must bring its BCE below this (nats)
    shuffled_steps: int = 100  # steps trained on labels permuted across the batches read ...
    shuffled_val_rows: int = 1024  # ... then on at most this many val rows its BCE against the true labels ...
    shuffled_bce_margin: float = 0.03  # ... must stay >= ln 2 - this (nats): it has nothing to be confident
    max_batch_dispersion: float = 4.0  # variance of the batches' injection shares / binomial's (random ~1, sorted ~n)
    # about (measured here: 0.686-0.745 after 100 steps; the same steps on true labels: 0.40-0.60)
    # --- throughput
    planned_rows: int = 0  # rows per epoch of the planned run (0: the train split of DATA); e.g. 10000000
    loader_rows: int = 1024  # stamps per timed `bench loader` pass
    bench_batch_size: int = 0  # batch of `bench train` (0: the planned run's; batch 16 timed a batch-64 run 2.2x slow)
    bench_steps: int = 4  # timed steps of `bench train` (after one warm-up step)
    gpu_bench: list[str] = field(default_factory=list)  # `dhs bench train --json` files measured on GPUs
    gpu_mfu: float = 0.35  # assumed fraction of peak tensor FLOP/s a conv net reaches (estimates only)
    s3_mb_per_s: float = 100.0  # assumed S3 read bandwidth of a cloud notebook, MB/s (estimates only)
    # --- checkpointing
    checkpoint_steps: int = 8  # steps per epoch of the scratch save / kill / resume run (2 epochs)
    # --- --run
    probe_rows: int = 512  # val stamps of the core-masked and image-statistics shortcut probes
    target_auroc: float = 0.95  # best val AUROC below this -> warning
    max_train_val_gap: float = 0.15  # val loss - train loss (nats) above this at the best epoch -> warning

    def validate(self) -> None:
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown or not self.sections:
            raise UsageError(f"sections={self.sections}: choose among {', '.join(SECTIONS)}")
        for name in ("audit_sample_rows", "sanity_batch_size", "overfit_steps", "shuffled_steps",
                     "shuffled_val_rows", "loader_rows", "bench_steps", "probe_rows"):
            if getattr(self, name) < 1:
                raise UsageError(f"review setting {name}={getattr(self, name)} must be >= 1")
        if self.checkpoint_steps < 4:
            raise UsageError(f"checkpoint_steps={self.checkpoint_steps} must be >= 4 (the kill lands mid-epoch)")
        if not self.max_batch_dispersion > 1:
            raise UsageError(f"max_batch_dispersion={self.max_batch_dispersion} must be > 1 (random batches scatter ~1x)")
        if not 0 < self.gpu_mfu <= 1:
            raise UsageError(f"gpu_mfu={self.gpu_mfu} is a fraction of peak in (0, 1]")
        if self.planned_rows < 0 or self.bench_batch_size < 0:
            raise UsageError("planned_rows and bench_batch_size must be >= 0 (0 = automatic)")
        if not 0.5 < self.target_auroc <= 1:
            raise UsageError(f"target_auroc={self.target_auroc} must be in (0.5, 1]")


# `--quick`: the same checks, smaller (about 20 s of CPU on 2 cores for a small tier); user --set wins. With 30
# steps of 16 stamps the shuffled-label BCE scatters more (0.65-0.75 measured), hence the wider margin.
QUICK: dict[str, object] = {"audit_sample_rows": 400, "sanity_batch_size": 16, "overfit_steps": 150,
                            "shuffled_steps": 30, "shuffled_val_rows": 256, "loader_rows": 256, "bench_steps": 2,
                            "shuffled_bce_margin": 0.1, "checkpoint_steps": 4, "probe_rows": 200}
