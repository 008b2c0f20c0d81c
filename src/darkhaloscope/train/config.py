"""`TrainConfig`: every setting of `dhs train`, with its unit or reason. Defaults = the users' Phase 5 recipe.

    cfg = load_config(TrainConfig, None, ["--epochs=3", "--preprocess.norm=annulus"])

The defaults below are the only ones; presets (`darkhaloscope/presets/train/*.yaml`: `cpu-demo`, polar_cnn
on 2 CPU cores; `gpu`, loader sizes for a GPU node) hold only what they change. Exercised by
`dhs train --data DATA --out RUN [--preset NAME | --config FILE] [--key=value ...]`.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field

from darkhaloscope.errors import UsageError
from darkhaloscope.sim.simconfig import SimConfig
from darkhaloscope.stamps.normalise import PreprocessConfig, check_coords, check_pooling

CPU_PRESET = "cpu-demo"  # what `dhs train` / `dhs review` use without --config on a machine without CUDA
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: bf16 on a CUDA device that has it, fp32 elsewhere
SYNTHETIC_HOSTS = "synthetic"  # --inject synthetic: the simulator's own LRG-like hosts
# `dhs simulate` keys that shape a stored tier's files, not the lenses: refused under `dhs train --sim.*`
# (hosts: --inject names them; host_reuse: a synthetic host is new in every row)
SIM_TIER_KEYS = ("splits", "bands", "rows_per_file", "row_group_rows", "pair", "hosts", "host_reuse")


@dataclass
class InjectSimConfig(SimConfig):
    """`dhs simulate`'s SimConfig as `dhs train --inject` takes it (`--sim.KEY=VALUE`): the torch engine."""

    engine: str = "torch"  # numpy (the reference, row by row) | torch (batched, float32): inject/engine.py


@dataclass
class TrainConfig:
    data: str = ""  # tier URI: local folder, parquet file or s3:// prefix (`--data`)
    train_split: str = "train"  # region_split value trained on
    val_split: str = "val"  # region_split value validated on (best checkpoint chosen on its AUROC)
    mined: str = ""  # tier of hard negatives from `dhs mine`, mixed into the train split ("" = none)
    mined_repeat: int = 1  # times each mined negative is read per epoch: its weight against the other rows
    confuser_weight: float = 1.0  # loss weight of a negative that carries a look-alike (confuser_kind set, or pool
    #   'confuser' in a `dhs catalog` tier) against 1 for every other row: > 1 ranks look-alikes below plain
    #   galaxies, the regime of a search at prevalence 1e-4 (benchmarks/RESULTS.md, section confusers)
    # model
    model: str = "resnet18"  # registry name (a wrong one lists them) or timm:NAME (the [cuda] extra)
    coords: str = "none"  # position planes appended to the bands: none | r (radius from the stamp centre) | xyr
    #                       (x, y offsets and r), in units of 16 px (models.coords)
    pooling: str = "avg"  # last feature map -> features: avg (global) | radial (rings about the stamp centre) |
    #                       grid (+ coarse grid of positions) (models.pooling)
    meta_columns: list[str] = field(default_factory=list)  # scalar model inputs; label-leaking ones refused
    init: str | None = None  # local state dict (whole model, backbone only, or a dhs checkpoint) to start from
    # optimisation (Phase 5: AdamW lr 3e-4 wd 0.01, cosine)
    epochs: int = 10  # passes over the train split
    batch_size: int = 256  # stamps per optimizer step PER RANK (global batch = batch_size x world size)
    lr: float = 3e-4  # AdamW peak learning rate (reached after warmup)
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_frac: float = 0.03  # fraction of all optimizer steps spent ramping the lr linearly from 0
    min_lr_frac: float = 0.0  # cosine floor, as a fraction of lr
    grad_clip_norm: float = 1.0  # max global L2 norm of the gradients (0 = no clipping)
    # speed
    device: str = "auto"  # auto (cuda:LOCAL_RANK if available, else cpu), cpu, cuda, cuda:1 ...
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (fp16 uses a gradient scaler)
    channels_last: bool = True  # NHWC memory layout: faster convolutions on tensor cores
    compile: bool = False  # torch.compile the model (minutes of warm-up; worth it for long GPU runs)
    num_workers: int = 2  # DataLoader worker processes per rank (0 = load in the training process)
    prefetch_factor: int = 4  # batches prefetched per worker
    decode_threads: int = 1  # npz decode threads per worker
    torch_threads: int = 0  # CPU intra-op threads of the training process (0 = torch's default); a CPU run
    #                         resumes bit-exactly only with the same count, so pin it when that matters
    shuffle_buffer: int = 4096  # rows in the streaming shuffle buffer
    decoded_cache_mb: int = 1024  # with num_workers 0: keep up to this many MB of decoded stamps in RAM across
    #                               epochs (per split; a small tier is decoded once, not every epoch); 0 = off
    cache_dir: str | None = None  # local cache for s3:// tier files (None = stream, no cache)
    max_train_rows: int | None = None  # use at most this many train rows (None = all); smoke tests
    max_val_rows: int | None = None  # validate on at most this many val rows (None = all)
    # validation, logging, checkpoints
    val_every_steps: int = 0  # also validate every N optimizer steps (0 = only at the end of each epoch)
    val_batch_size: int = 512  # stamps per validation forward pass
    log_every_steps: int = 20  # sync the per-step losses to the host (nan/inf check, steps.jsonl) every N steps
    checkpoint_every_steps: int = 0  # also write last.pt every N optimizer steps (0 = off)
    checkpoint_every_minutes: float = 15.0  # also write last.pt every N minutes of training (0 = off)
    checkpoint_uri: str | None = None  # mirror last.pt/best.pt to this s3:// (or local) prefix after each save
    tensorboard: bool = False  # also write TensorBoard scalars to RUN/tb (only if tensorboard is installed)
    progress: bool = True  # steps, samples/s, loss, ETA (rank 0): a bar on a terminal, else a line every 10 s
    seed: int = 0  # seeds model init, shuffling and augmentation: a CPU run is bit-reproducible
    on_error: str = "skip"  # undecodable stamp: skip (counted and reported) or raise
    initial_loss_tolerance: float = 0.25  # warn when |first loss - ln 2| exceeds this (nats)
    shard_check_rows: int = 2048  # per rank: row ids checked for overlap across ranks/workers (0 = off)
    # on-the-fly training (docs/onthefly.md): every training batch rendered fresh, validation on --data's val split
    inject: str = ""  # hosts to inject into: synthetic (the simulator's), a tier (its train split's controls) or
    #   a folder of npz cutouts; their ids in --data's other splits are left out. "" = train on the stored tier
    inject_steps_per_epoch: int = 100  # --inject: rendered batches per epoch (a validation and last.pt after each)
    inject_audit_stamps: int = 512  # --inject: stamps rendered for the audit's shortcut and paired-control
    #   checks before the first step (the GO/NO-GO of `dhs audit`: NO-GO refuses, exit 3)
    inject_log_every_steps: int = 50  # --inject: batches of lens metadata per part file of RUN/injections/
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)  # normalisation + augmentation
    sim: InjectSimConfig = field(default_factory=InjectSimConfig)  # --inject: the lenses, look-alikes and
    #   observing model rendered (dhs simulate's keys, as --sim.KEY=VALUE; controls, confusers: the batch's shares)

    def validate(self) -> None:
        self.preprocess.validate()
        if self.decoded_cache_mb < 0:
            raise UsageError(f"decoded_cache_mb must be >= 0 (0 = decode every epoch); got {self.decoded_cache_mb}")
        check_coords(self.coords)
        check_pooling(self.pooling)
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision={self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.on_error not in ("skip", "raise"):
            raise UsageError(f"on_error={self.on_error!r}: choose skip or raise")
        for name in ("epochs", "batch_size", "val_batch_size", "log_every_steps"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name}={getattr(self, name)} must be >= 1")
        if not 0 <= self.warmup_frac < 1:
            raise UsageError(f"warmup_frac={self.warmup_frac} must be in [0, 1)")
        if self.lr <= 0:
            raise UsageError(f"lr={self.lr} must be > 0")
        if self.mined_repeat < 1:
            raise UsageError(f"mined_repeat={self.mined_repeat} must be >= 1")
        if not (self.confuser_weight > 0 and math.isfinite(self.confuser_weight)):
            raise UsageError(f"confuser_weight={self.confuser_weight} must be a finite number > 0 (1 = no weighting)")
        if self.weight_decay < 0:
            raise UsageError(f"weight_decay={self.weight_decay} must be >= 0")
        if self.inject:
            self._validate_inject()
        if self.train_split == self.val_split:
            raise UsageError(f"train_split and val_split are both {self.train_split!r}; validation needs "
                             "held-out rows")

    def _validate_inject(self) -> None:
        """--inject's own settings, and the simulate config (only then: it imports the lens model)."""
        for name in ("inject_steps_per_epoch", "inject_log_every_steps"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name}={getattr(self, name)} must be >= 1")
        if self.inject_audit_stamps < 0:
            raise UsageError(f"inject_audit_stamps={self.inject_audit_stamps} must be >= 0 (0: no audit gate)")
        if self.batch_size < 2:
            raise UsageError(f"batch_size={self.batch_size}: --inject renders lenses and controls into every batch, "
                             "so a batch needs at least 2 stamps")
        if self.sim.hosts:
            raise UsageError(f"sim.hosts={self.sim.hosts!r}: with dhs train the hosts are --inject's value "
                             "(synthetic, a tier or a folder of npz cutouts); drop sim.hosts")
        fixed = InjectSimConfig()
        changed = [k for k in SIM_TIER_KEYS if getattr(self.sim, k) != getattr(fixed, k)]
        if changed:
            raise UsageError(f"sim.{changed[0]}={getattr(self.sim, changed[0])!r}: it shapes a stored tier's files "
                             "(dhs simulate) and has no meaning for batches rendered on the fly; drop it")
        if self.mined:
            raise UsageError("mined and --inject both change the training rows: mix hard negatives into a stored "
                             "tier (dhs train --mined) or train on the fly, not both")
        self.sim.validate()


def auto_preset(overrides: dict, choose: str = "give --preset=NAME, --config=FILE or --model=NAME to choose"
                ) -> tuple[str | None, str]:
    """(preset name or None, the one line that says why) for a run given no --config/--preset: the CPU
    preset when no CUDA device would be used and no model was asked for; the defaults (the GPU recipe,
    resnet18) otherwise. `choose`: how the command's user picks another (its own flags)."""
    device = str(overrides.get("device", "auto"))
    if "model" in overrides or device.startswith("cuda"):
        return None, ""
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            return None, ""
    return CPU_PRESET, (f"no --config and no CUDA device: using preset {CPU_PRESET} (a small net sized for CPU "
                        f"cores); {choose}")
