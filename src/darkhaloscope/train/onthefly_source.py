"""What `dhs train --inject HOSTS` renders: `InjectSource.render(g)` is batch g of a run, a pure function of
(run seed, g), made by the simulator (`dhs simulate`'s engines: inject/engine.py's `TorchEngine.render_rows`, or
the numpy reference `sim.render.render_row`).

    source = InjectSource(cfg, s3)                    # cfg: TrainConfig with inject and sim set
    b = source.render(0)                              # RenderedBatch: images, labels, kinds, columns, ...

A batch of B stamps (`composition`): round(sim.controls x B) negatives, the rest lenses; of the negatives,
round(sim.confusers x negatives) carry a look-alike (kinds in equal shares, at least one plain control kept);
each plain control is the paired control of a lens (the same host stamp, same noise, without the arc: the
renderer's `keep_ctrl`), and only when there are more plain controls than lenses (sim.controls > 0.5) are the
others rendered on hosts of their own. So a batch costs (lenses + look-alikes + unpaired controls) rendered rows.

Hosts: `synthetic` (drawn from the batch's seed: a new galaxy for every row), or real (a tier: the controls of
its train split only; a folder of npz cutouts), minus every host id that appears in any other split of --data
(`train_hosts`): the val/test hosts never enter a training batch. Real hosts are drawn with replacement.
Exercised by `dhs train --inject` and tests/train/test_onthefly.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darkhaloscope.errors import UsageError
from darkhaloscope.sim.build import Plan, SimContext
from darkhaloscope.sim.hosts import RealHosts, load_real_hosts
from darkhaloscope.stamps.schema import HOST_ID_COLUMNS, INJECTION_METADATA_COLUMNS, LABEL_SOURCE_COLUMN, STAMP_COLUMN
from darkhaloscope.stamps.tier import Tier, is_local_tier, open_tier
from darkhaloscope.train.config import SYNTHETIC_HOSTS, TrainConfig

TRAIN_STREAM, AUDIT_STREAM = 23, 24  # seed-sequence tags: training batches, the audit gate's batches
ROW_KINDS = ("lens", "paired_control", "lookalike", "control")


def batch_seed(seed: int, g: int, tag: int = TRAIN_STREAM) -> int:
    """The simulate seed of batch g of a run seeded `seed` (63 bits: never a small seed of a stored tier)."""
    return int(np.random.SeedSequence([int(seed), tag, int(g)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def composition(batch_size: int, controls: float, confusers: float) -> tuple[int, int, int, int]:
    """(lenses, look-alikes, paired controls, unpaired plain controls) of a batch: they sum to batch_size."""
    neg = min(max(round(controls * batch_size), 1), batch_size - 1)
    lenses = batch_size - neg
    lookalikes = min(int(round(confusers * neg)), neg - 1)
    paired = min(neg - lookalikes, lenses)
    return lenses, lookalikes, paired, neg - lookalikes - paired


@dataclass
class RenderedBatch:
    images: np.ndarray  # (B, 3, 64, 64) float32, g/r/z nanomaggies
    labels: np.ndarray  # (B,) float32: 1 lens, 0 control (paired, look-alike or plain)
    kinds: list[str]  # ROW_KINDS of each stamp
    row_ids: list[str]  # otf<g>-<j>: unique in the run
    columns: list[dict]  # per stamp: host_id and the renderer's columns (lens metadata on lens rows only)
    ctrl: list[np.ndarray | None]  # per stamp: a lens's host without the arc (None elsewhere)
    render_s: float  # wall seconds the rendering took


def _is_tier(hosts: str) -> bool:
    from darkhaloscope.stamps.fs import is_s3

    p = Path(hosts)
    return is_s3(hosts) or (p.is_file() and p.suffix == ".parquet") or (p.is_dir() and is_local_tier(p))


def held_out_host_ids(data: Tier, train_split: str, hosts: str) -> set[str]:
    """Host ids of every split of --data but the train split (the hosts on-the-fly training must not use)."""
    others = [s for s in data.splits() if s != train_split]
    id_col = next((c for c in HOST_ID_COLUMNS if c in data.columns), None)
    if id_col is None:
        raise UsageError(f"--data {data.uri} has no host id column ({', '.join(HOST_ID_COLUMNS)}), so the hosts of "
                         f"its {', '.join(others) or 'held-out'} split(s) cannot be kept out of training on the real "
                         f"hosts of --inject {hosts}; give a --data tier with host ids, or --inject synthetic")
    out: set[str] = set()
    for s in others:
        out |= {str(v) for v in data.read_columns([id_col], split=s)[id_col].to_pylist()}
    return out


def check_val_tier(data: Tier, val_split: str) -> dict:
    """The stored yardstick of an on-the-fly run: --data must hold `val_split` with both classes (exit 2 when the
    split is missing, 3 when one-class, as for a stored-tier run). Returns {val_split: {0: n, 1: n}}."""
    from darkhaloscope.train.guards import check_class_counts

    if val_split not in data.splits():
        raise UsageError(f"--data {data.uri} has no '{val_split}' split (splits: {', '.join(data.splits()) or 'none'}); "
                         "--inject renders the training batches but validates on a stored val split: give a tier "
                         "with one (e.g. dhs simulate), or --val_split NAME")
    return check_class_counts(data, val_split, val_split)


def train_hosts(hosts: str, data: Tier, train_split: str, s3, limit: int) -> tuple[RealHosts, int]:
    """The real hosts on-the-fly training may use, and how many were left out for being --data's val/test hosts.
    A host tier gives the controls of its train split only; its columns are checked before anything is read."""
    split = None
    if _is_tier(hosts):
        tier = open_tier(hosts, s3)
        missing = [c for c in (STAMP_COLUMN, LABEL_SOURCE_COLUMN) if c not in tier.columns]
        if missing:
            raise UsageError(f"--inject {hosts}: the host tier has no {' or '.join(missing)} column, and its controls "
                             f"({LABEL_SOURCE_COLUMN}=1, {STAMP_COLUMN}: a Phase 4c tier, not a packed one) become the "
                             "hosts; give a Phase 4c tier, a folder of npz cutouts, or synthetic")
        if train_split not in tier.splits():
            raise UsageError(f"--inject {hosts}: the host tier has no '{train_split}' split (splits: "
                             f"{', '.join(tier.splits()) or 'none'}); hosts are taken from its {train_split} split "
                             "only, so that val/test hosts never enter training")
        split = train_split
    real = load_real_hosts(hosts, s3, limit, split=split, option="--inject")
    held = held_out_host_ids(data, train_split, hosts)
    keep = [i for i, h in enumerate(real.ids) if h not in held]
    if not keep:
        raise UsageError(f"--inject {hosts}: all {len(real.ids)} host(s) appear in a held-out split of --data "
                         f"{data.uri} (e.g. {real.ids[0]}); give hosts that are not its val/test hosts")
    sub = RealHosts(real.images[keep], [real.ids[i] for i in keep], real.source, real.sigma_nmgy[keep],
                    None if real.psf_fwhm_arcsec is None else real.psf_fwhm_arcsec[keep])
    return sub, len(real.ids) - len(keep)


class InjectSource:
    """Renders the batches of one run: hosts loaded and the config checked once, then `render(g)`."""

    def __init__(self, cfg: TrainConfig, batch_size: int, s3=None, data: Tier | None = None):
        from darkhaloscope.inject.build import make_renderer
        from darkhaloscope.sim.confusers import kind_cycle, parse_kinds
        from darkhaloscope.sim.params import grid_points, parse_grid, parse_snr_dist

        self.sim, self.seed, self.train_split = cfg.sim, cfg.seed, cfg.train_split
        self.renderer = make_renderer(cfg.sim)  # validates; refuses an unknown engine, cuda without CUDA
        self.real, self.hosts_left_out = None, 0
        if cfg.inject != SYNTHETIC_HOSTS:
            data = data or open_tier(cfg.data, s3)
            self.real, self.hosts_left_out = train_hosts(cfg.inject, data, cfg.train_split, s3, cfg.sim.host_limit)
        self.kinds, self.kind_cycle = parse_kinds(cfg.sim.confuser_kinds), kind_cycle(cfg.sim.confuser_kinds)
        self.grid = grid_points(parse_grid(cfg.sim.grid))
        self.snr = parse_snr_dist(cfg.sim.arc_snr_dist)
        self.batch_size = batch_size
        self.counts = composition(batch_size, cfg.sim.controls, cfg.sim.confusers)

    def describe(self) -> str:
        lenses, look, paired, plain = self.counts
        hosts = "synthetic hosts" if self.real is None else (
            f"{len(self.real.ids):,} real hosts of {self.real.source}"
            + (f" ({self.hosts_left_out} left out: hosts of --data's held-out splits)" if self.hosts_left_out else ""))
        return (f"on-the-fly batches of {self.batch_size}: {lenses} lens(es), {paired} paired control(s), {look} "
                "look-alike(s)" + (f", {plain} other control(s)" if plain else "") + f"; {hosts}; {self.sim.engine} engine"
                + (f" on {self.sim.device}" if self.sim.engine == "torch" else ""))

    def plan(self, seed: int, g: int) -> Plan:
        """The rows rendered for a batch: lenses, then look-alikes, then unpaired plain controls."""
        lenses, look, _, plain = self.counts
        rows = lenses + look + plain
        is_control = np.r_[np.zeros(lenses, np.int8), np.ones(look + plain, np.int8)]
        confuser = np.full(rows, -1, np.int8)
        cycle = self.kind_cycle
        confuser[lenses:lenses + look] = np.random.default_rng([seed, 3]).permutation(cycle[np.arange(look) % len(cycle)])
        if self.real is None:  # a synthetic host is a function of (seed, index): new galaxies every batch
            host_idx = np.arange(rows, dtype=np.int64)
        else:
            host_idx = np.random.default_rng([seed, 4]).integers(0, len(self.real.ids), rows)
        inj_idx = np.full(rows, -1, np.int64)
        inj_idx[:lenses] = g * lenses + np.arange(lenses)  # a --sim.grid cycles on across batches
        return Plan([self.train_split], np.zeros(rows, np.int8), is_control, host_idx, inj_idx, seed,
                    None if self.real is None else self.real.ids, confuser, self.kinds)

    def render(self, g: int, tag: int = TRAIN_STREAM) -> RenderedBatch:
        from darkhaloscope.sim.render import render_row

        seed = batch_seed(self.seed, g, tag)
        plan = self.plan(seed, g)
        ctx = SimContext(self.sim, seed, plan, self.real, self.grid, self.snr)
        rows = range(len(plan.is_control))
        t0 = time.perf_counter()
        res = (self.renderer.render_rows(ctx, rows, keep_ctrl=True) if self.renderer is not None  # (1 thread)
               else [render_row(ctx, i, keep_ctrl=True) for i in rows])
        render_s = time.perf_counter() - t0
        lenses, look, paired, plain = self.counts
        order = list(range(lenses)) + list(range(paired)) + list(range(lenses, lenses + look + plain))
        kinds = ["lens"] * lenses + ["paired_control"] * paired + ["lookalike"] * look + ["control"] * plain
        images, columns, ctrl = [], [], []
        for j, (i, kind) in enumerate(zip(order, kinds)):
            r = res[i]
            cols = {"host_id": plan.host_id(int(plan.host_idx[i])), **r.columns}
            if kind == "paired_control":  # the lens's host: its observing columns, no lens
                cols = {k: (None if k in INJECTION_METADATA_COLUMNS else v) for k, v in cols.items()}
                cols["is_control"], cols["pair_of"] = 1, f"otf{g}-{i}"
            images.append(r.ctrl_image if kind == "paired_control" else r.image)
            ctrl.append(r.ctrl_image if kind == "lens" else None)
            columns.append(cols)
        labels = np.array([k == "lens" for k in kinds], np.float32)
        return RenderedBatch(np.stack(images).astype(np.float32, copy=False), labels, kinds,
                             [f"otf{g}-{j}" for j in range(len(kinds))], columns, ctrl, render_s)
