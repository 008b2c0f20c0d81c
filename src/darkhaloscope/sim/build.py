"""Build a Phase 4c tier: `simulate_tier(out, tier, rows, seed, config)` -> manifest dict.

    from darkhaloscope.sim.build import simulate_tier
    from darkhaloscope.sim.simconfig import SimConfig
    manifest = simulate_tier("data", "demo", rows=4000, seed=1, config=SimConfig(), workers=2)

writes `data/demo/region_split=<split>/part-<chunk>.parquet` and `data/demo/manifest.json`.

The plan (`make_plan`) decides, before any pixel is rendered, each row's split, class and host:
split row counts follow `splits`, every split gets `controls` x its rows as controls (at least one of
each class, by construction), and every host belongs to exactly one split. Rows are then rendered in
chunks of `rows_per_file`; chunk c writes one file per split, atomically (temp file + rename), so an
interrupted run leaves only whole files, and `--resume` continues it: the build's fingerprint (rows, seed,
shard, config, version: `simulate-plan*.json`, written before the first chunk) must match, chunks whose files
are all there are kept (byte-identical to what a fresh build writes), the others are rendered. `--shard K/N` builds the chunks c with c % N == K (0-based K),
so the N shards' files together are byte-identical to the unsharded build. `--workers` renders chunks
in parallel processes.

Exercised by `dhs simulate` (inject/commands.py) and tests/sim/test_tier.py.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from darkhaloscope.config import parse_shard
from darkhaloscope.errors import UsageError
from darkhaloscope.fileio import atomic_path, atomic_write_text, clean_temps
from darkhaloscope.sim.confusers import kind_cycle, parse_kinds
from darkhaloscope.sim.hosts import RealHosts, assign_host_splits, exact_counts, load_real_hosts
from darkhaloscope.sim.params import grid_points, parse_grid, parse_snr_dist, parse_theta_e_dist
from darkhaloscope.sim.render import render_row
from darkhaloscope.sim.simconfig import SimConfig
from darkhaloscope.stamps.codec import encode_stamp
from darkhaloscope.stamps.schema import (BANDS, CONFUSER_COLUMN, CONFUSER_VARIANT_COLUMN, CONTROL_METADATA_COLUMNS,
                                          CTRL_STAMP_COLUMN, CUTOUT_OK_COLUMN, INJECTION_METADATA_COLUMNS, STAMP_COLUMN)


@dataclass
class Plan:
    """Per-row decisions, made up front from the seed (cheap: a few integers per row)."""

    splits: list[str]  # split names, indexed by split_idx
    split_idx: np.ndarray  # (N,) int8
    is_control: np.ndarray  # (N,) int8
    host_idx: np.ndarray  # (N,) int64 host index (synthetic: unique per split; real: into real.ids)
    inj_idx: np.ndarray  # (N,) int64 rank among injections (grid cycling), -1 for controls
    seed: int
    real_ids: list[str] | None = None  # real hosts' ids; None for synthetic hosts
    confuser_idx: np.ndarray | None = None  # (N,) int8 index into confuser_kinds, -1: none (plain control)
    confuser_kinds: tuple[str, ...] = ()

    def confuser_kind(self, i: int) -> str | None:
        """The confuser kind row i carries (None: a plain control or an injection)."""
        k = -1 if self.confuser_idx is None else int(self.confuser_idx[i])
        return None if k < 0 else self.confuser_kinds[k]

    def host_id(self, h: int) -> str:
        """The id written in `host_id` (synthetic ids are made on the fly: no per-host list in memory)."""
        return self.real_ids[h] if self.real_ids is not None else f"syn{self.seed}-{h:09d}"


@dataclass
class SimContext:
    """Everything a worker needs to render any row (inherited by forked workers)."""

    cfg: SimConfig
    seed: int
    plan: Plan
    real: RealHosts | None
    grid_points: list[dict]
    snr_sampler: object
    theta_e: object = None  # sampler(rng) -> Einstein radius, arcsec (default: from cfg.theta_e_dist)
    renderer: object = None  # batch renderer (ctx, rows) -> [RowResult] (the torch engine); None: render_row

    def __post_init__(self):
        if self.theta_e is None:
            self.theta_e = parse_theta_e_dist(self.cfg.theta_e_dist, self.cfg.theta_e_arcsec)[0]


def make_plan(rows: int, seed: int, cfg: SimConfig, real: RealHosts | None = None) -> Plan:
    fracs = cfg.split_fractions()
    names = list(fracs)
    if rows < 2 * len(names):
        raise UsageError(f"--rows={rows}: need at least {2 * len(names)} rows so that each of the "
                         f"{len(names)} splits gets a control and an injection")
    rng = np.random.default_rng([seed, 2])
    counts = exact_counts(rows, fracs, minimum=2)
    split_idx = np.empty(rows, np.int8)
    is_control = np.empty(rows, np.int8)
    order = rng.permutation(rows)
    start = 0
    for k, s in enumerate(names):
        rows_s = np.sort(order[start:start + counts[s]])
        start += counts[s]
        split_idx[rows_s] = k
        n_ctrl = int(min(max(round(cfg.controls * len(rows_s)), 1), len(rows_s) - 1))
        ctrl = np.zeros(len(rows_s), np.int8)
        ctrl[:n_ctrl] = 1
        is_control[rows_s] = rng.permutation(ctrl)
    host_idx = np.empty(rows, np.int64)
    if real is None:  # split k's hosts are offset_k, offset_k + 1, ...: disjoint by construction
        offset = 0
        for k in range(len(names)):
            rows_s = np.flatnonzero(split_idx == k)
            host_idx[rows_s] = offset + np.arange(len(rows_s)) // cfg.host_reuse
            offset += -(-len(rows_s) // cfg.host_reuse)
    else:
        host_split = assign_host_splits(len(real.ids), fracs, rng)
        for k, s in enumerate(names):
            rows_s = np.flatnonzero(split_idx == k)
            mine = np.array([h for h, hs in enumerate(host_split) if hs == s])
            host_idx[rows_s] = mine[np.arange(len(rows_s)) % len(mine)]
    inj_idx = np.full(rows, -1, np.int64)
    inj = np.flatnonzero(is_control == 0)
    inj_idx[inj] = np.arange(len(inj))
    kinds = parse_kinds(cfg.confuser_kinds)
    return Plan(names, split_idx, is_control, host_idx, inj_idx, seed, None if real is None else list(real.ids),
                plan_confusers(split_idx, is_control, cfg.confusers, kind_cycle(cfg.confuser_kinds), seed), kinds)


def plan_confusers(split_idx: np.ndarray, is_control: np.ndarray, fraction: float, cycle: np.ndarray,
                   seed: int) -> np.ndarray:
    """(N,) int8 confuser kind index per row (-1: none): in each split, round(fraction x controls) random
    controls (keeping at least one plain control) carry a confuser, the kinds in the shares of `cycle`
    (`confusers.kind_cycle`: equal shares are arange(n_kinds))."""
    rng = np.random.default_rng([seed, 3])
    out = np.full(len(split_idx), -1, np.int8)
    for k in np.unique(split_idx):
        ctrl = np.flatnonzero((split_idx == k) & (is_control == 1))
        n = min(int(round(fraction * len(ctrl))), max(len(ctrl) - 1, 0))
        pick = rng.permutation(ctrl)[:n]
        out[pick] = rng.permutation(cycle[np.arange(n) % len(cycle)])
    return out



def _arrow_type(name: str) -> pa.DataType:
    if name in (STAMP_COLUMN, CTRL_STAMP_COLUMN):
        return pa.binary()
    if name in ("is_control", CUTOUT_OK_COLUMN):
        return pa.int32()
    if name in ("stamp_id", "host_id", CONFUSER_COLUMN, CONFUSER_VARIANT_COLUMN):
        return pa.string()
    return pa.float64()


def column_names(cfg: SimConfig) -> list[str]:
    obs = [f"psf_fwhm_used_{b}" for b in cfg.bands] + [f"psfdepth_{b}" for b in cfg.bands]
    meta = [c for c in INJECTION_METADATA_COLUMNS if c != "injection_seed"] + list(CONTROL_METADATA_COLUMNS)
    return (["stamp_id", "host_id", STAMP_COLUMN, "is_control", CUTOUT_OK_COLUMN, "host_mag_r", "psf_moffat_beta",
             "centre_offset_x_px", "centre_offset_y_px"]
            + obs + meta + ([CTRL_STAMP_COLUMN] if cfg.pair else []))


def parquet_compression(cfg: SimConfig) -> str:
    """zstd for stored npz members (3 x 64 x 64 float32 noise: 45 KiB a row, as deflated members in snappy);
    snappy with deflated members: the files of the builds before stored members, byte for byte."""
    return "snappy" if cfg.npz_deflate else "zstd"


def encode_row_stamp(image: np.ndarray, cfg: SimConfig) -> bytes:
    """The `stamp_npz` bytes of one rendered (3, H, W) g/r/z stamp: `cfg.bands` of it, deflated or stored
    (`cfg.npz_deflate`; the Parquet file's zstd compresses stored members to the same size, RESULTS.md)."""
    return encode_stamp(image[[BANDS.index(b) for b in cfg.bands]], bands=cfg.bands, compress=cfg.npz_deflate)


def chunk_rows(chunk: int, rows: int, cfg: SimConfig) -> range:
    return range(chunk * cfg.rows_per_file, min(rows, (chunk + 1) * cfg.rows_per_file))


def chunk_files(root: Path, chunk: int, plan: Plan, cfg: SimConfig) -> dict[str, Path]:
    """The files chunk `chunk` writes: one per split that has rows in it."""
    r = chunk_rows(chunk, len(plan.split_idx), cfg)
    return {plan.splits[k]: root / f"region_split={plan.splits[k]}" / f"part-{chunk:05d}.parquet"
            for k in sorted(set(plan.split_idx[r.start:r.stop].tolist()))}


_CTX: SimContext | None = None  # set in forked workers (and in-process), read by _build_chunk


def _build_chunk(root: str, tier: str, chunk: int, on_row=None) -> tuple[int, int]:
    """Render and write one chunk; `on_row()` after each row (in-process progress). Returns (chunk, rows)."""
    ctx = _CTX
    cfg, plan = ctx.cfg, ctx.plan
    rows = chunk_rows(chunk, len(plan.split_idx), cfg)
    names = column_names(cfg)
    per_split: dict[int, dict[str, list]] = {}
    results = ctx.renderer(ctx, rows) if ctx.renderer is not None else (render_row(ctx, i) for i in rows)
    for i, res in zip(rows, results):
        cols = per_split.setdefault(int(plan.split_idx[i]), {n: [] for n in names})
        h = int(plan.host_idx[i])
        vals = dict(res.columns, stamp_id=f"{tier}-{i:09d}", host_id=plan.host_id(h), cutout_ok=1)
        vals[STAMP_COLUMN] = encode_row_stamp(res.image, cfg)
        if cfg.pair:
            vals[CTRL_STAMP_COLUMN] = None if res.ctrl_image is None else encode_row_stamp(res.ctrl_image, cfg)
        for n in names:
            cols[n].append(vals.get(n))
        if on_row is not None:
            on_row()
    paths = chunk_files(Path(root), chunk, plan, cfg)
    for k, cols in per_split.items():
        table = pa.table({n: pa.array(v, _arrow_type(n)) for n, v in cols.items()})
        with atomic_path(paths[plan.splits[k]]) as tmp:
            pq.write_table(table, tmp, row_group_size=cfg.row_group_rows, compression=parquet_compression(cfg))
    return chunk, len(rows)


def plan_file_name(shard: str | None) -> str:
    k, n = parse_shard(shard)
    return "simulate-plan.json" if n == 1 else f"simulate-plan-shard-{k:04d}-of-{n:04d}.json"


def manifest_file_name(shard: str | None) -> str:
    k, n = parse_shard(shard)
    return "manifest.json" if n == 1 else f"manifest-shard-{k:04d}-of-{n:04d}.json"


def _existing_build(root: Path, fingerprint: dict) -> str:
    """What is already at `root`, said in the refusal: a finished build (its manifest is written last), with
    these arguments or others, an interrupted one (its fingerprint, no manifest), or files of unknown origin."""
    shard = fingerprint["shard"]
    if (root / manifest_file_name(shard)).exists():
        try:
            same = json.loads((root / plan_file_name(shard)).read_text()) == fingerprint
        except (OSError, ValueError):
            same = False
        return (f" (a finished build of {'these same arguments: use it as it is' if same else 'other arguments'}; "
                f"its {manifest_file_name(shard)} is written)")
    if (root / plan_file_name(shard)).exists():
        return " (an interrupted build of it: --resume continues it with the same arguments)"
    return ""


def build_fingerprint(tier: str, rows: int, seed: int, cfg: SimConfig, shard: str | None) -> dict:
    """What decides every byte of a build: a resumed build must match it exactly."""
    from darkhaloscope.config import run_info

    return {"tier": tier, "rows": rows, "seed": seed, "shard": shard or "0/1",
            "config": json.loads(json.dumps(asdict(cfg))), "version": run_info(None)["version"]}


SETTINGS_ADDED = {"npz_deflate": True}  # settings newer than fingerprinted builds: the value such builds had


def check_resumable(root: Path, fingerprint: dict) -> None:
    """UsageError unless `root` holds the fingerprint of an earlier build with these same arguments."""
    path = root / plan_file_name(fingerprint["shard"])
    try:
        before = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--resume: {path} does not exist, so there is no build of this tier (shard) to continue; "
                         "drop --resume to start one, or --overwrite to replace what is there") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"--resume: {path} is unreadable ({e}); rebuild with --overwrite") from None
    differ = sorted(k for k in set(before) | set(fingerprint) if k != "config" and before.get(k) != fingerprint.get(k))
    cb, cn = {**SETTINGS_ADDED, **(before.get("config") or {})}, fingerprint["config"]
    differ += sorted(f"config.{k}" for k in set(cb) | set(cn) if cb.get(k) != cn.get(k))
    if differ:
        shown = "; ".join(f"{k}: was {_get({**before, 'config': cb}, k)!r}, now {_get(fingerprint, k)!r}"
                          for k in differ[:4])
        raise UsageError(f"--resume: this build differs from the one in {root} ({shown}); give the same "
                         "arguments to continue it, or --overwrite to replace it")


def _get(d: dict, key: str):
    return d.get("config", {}).get(key[7:]) if key.startswith("config.") else d.get(key)


TIER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")  # `--tier`: the tier's folder name


def prepare(out, tier: str, rows: int, seed: int, cfg: SimConfig, shard: str | None = None, s3=None,
            overwrite: bool = False, resume: bool = False) -> tuple[SimContext, list[int], Path]:
    """Validate everything and load hosts; return the context, this shard's chunks and the tier root.

    Raises before anything is written: bad config, unreadable hosts, output files already present (unless
    `overwrite`, or `resume` with the fingerprint of the same build).
    """
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other: continue the build or replace it")
    cfg.validate()
    if not TIER_NAME_RE.fullmatch(tier or ""):  # a folder name, shown in every line: no '/', control or bidi text
        raise UsageError(f"--tier {tier!r}: give a plain folder name such as demo or train_stamp64 (letters, "
                         "digits, '.', '_', '+', '-'; up to 100)")
    if rows < 1:
        raise UsageError(f"--rows={rows}: must be >= 1")
    k, n = parse_shard(shard)
    root = Path(out) / tier
    _check_writable(out, root)
    if cfg.hosts and "://" not in cfg.hosts:
        src, dst = Path(cfg.hosts).resolve(), root.resolve()
        if dst == src or src in dst.parents or dst in src.parents:  # its own rows (or a shard's) would become hosts
            raise UsageError(f"--hosts {cfg.hosts} is the tier being built ({root}), holds it or lies inside it: the "
                             "build would read what it writes; give hosts from another folder")
    real = load_real_hosts(cfg.hosts, s3, cfg.host_limit) if cfg.hosts else None
    plan = make_plan(rows, seed, cfg, real)
    ctx = SimContext(cfg, seed, plan, real, grid_points(parse_grid(cfg.grid)), parse_snr_dist(cfg.arc_snr_dist))
    n_chunks = -(-rows // cfg.rows_per_file)
    chunks = [c for c in range(n_chunks) if c % n == k]
    fingerprint = build_fingerprint(tier, rows, seed, cfg, shard)
    if resume:
        check_resumable(root, fingerprint)
    elif not overwrite:
        for c in chunks:
            for p in chunk_files(root, c, plan, cfg).values():
                if p.exists():
                    raise UsageError(f"{p} already exists{_existing_build(root, fingerprint)}; choose another "
                                     "--out/--tier or pass --overwrite")
    return ctx, chunks, root


def _check_writable(out, root: Path) -> None:
    """UsageError unless `root` can be created/written (checked on its nearest existing ancestor)."""
    from darkhaloscope.stamps.fs import is_s3

    if is_s3(str(out)):
        raise UsageError(f"--out {out}: the builder writes to a local or shared filesystem; build there, then "
                         "copy the tier to S3 (e.g. aws s3 sync)")
    p = root
    while not p.exists():
        p = p.parent
    if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {p} is not a writable folder; choose another --out")


def simulate_tier(out, tier: str, rows: int, seed: int, config: SimConfig | None = None, *, workers: int = 1,
                  shard: str | None = None, s3=None, overwrite: bool = False, progress: bool = False,
                  preview: str | None = None, argv: list[str] | None = None, resume: bool = False,
                  renderer=None) -> dict:
    """Build (this shard of) a tier and write its manifest (and a preview PNG); return the manifest dict.
    `resume`: continue an interrupted build with the same arguments (its complete chunks are kept).
    `renderer`: the batch renderer of `config.engine` when it is not numpy (`inject.build.simulate` passes it)."""
    global _CTX
    cfg = config or SimConfig()
    if (cfg.engine != "numpy") != (renderer is not None):
        raise UsageError(f"engine {cfg.engine!r}: build through darkhaloscope.inject.build.simulate (dhs simulate), "
                         "which passes its renderer")
    if preview is not None and not str(preview).lower().endswith(".png"):
        raise UsageError(f"--preview {preview}: must name a .png file")
    ctx, chunks, root = prepare(out, tier, rows, seed, cfg, shard, s3, overwrite, resume)
    clean_temps(root, recursive=True)  # half-written chunks of a killed run
    fingerprint = build_fingerprint(tier, rows, seed, cfg, shard)
    todo = [c for c in chunks if not all(p.exists() for p in chunk_files(root, c, ctx.plan, cfg).values())] \
        if resume else chunks
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / plan_file_name(shard), json.dumps(fingerprint, indent=1, sort_keys=True) + "\n")
    ctx.renderer = renderer
    render_row(ctx, 0)  # warm-up (numba JIT in lenstronomy) before forking workers inherit it
    if renderer is not None:
        renderer(ctx, [0])  # (and the torch engine's first kernels)
    t0 = time.perf_counter()
    _CTX = ctx
    try:
        _run_chunks(str(root), tier, todo, workers, sum(len(chunk_rows(c, rows, cfg)) for c in todo), progress)
    finally:
        _CTX = None
    elapsed = time.perf_counter() - t0
    manifest = make_manifest(ctx, tier, rows, chunks, root, shard, argv)
    k, n = parse_shard(shard)
    if overwrite and n == 1:  # a rebuild replaces the whole tier: drop files of an older, larger build
        keep = {root / f for f in manifest["files"]}
        for old in (list(root.glob("region_split=*/part-*.parquet")) + list(root.glob("manifest-shard-*.json"))
                    + list(root.glob("simulate-plan-shard-*.json"))):
            if old not in keep:
                old.unlink()
    atomic_write_text(root / manifest_file_name(shard), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    manifest["elapsed_s"] = elapsed
    # (not in the file: a resumed build's manifest is the fresh build's)
    manifest["chunks_resumed"] = len(chunks) - len(todo)
    manifest["rows_rendered"] = sum(len(chunk_rows(c, rows, cfg)) for c in todo)
    if preview is not None:
        from darkhaloscope.sim.preview import write_preview

        write_preview(ctx, preview)
        manifest["preview"] = str(preview)
    return manifest


def _run_chunks(root: str, tier: str, chunks: list[int], workers: int, total_rows: int, progress: bool) -> None:
    from darkhaloscope.common.progress import Progress

    workers = max(1, min(workers, len(chunks)))
    with Progress(total_rows, "simulate", unit="stamps", enabled=progress) as bar:
        if workers == 1 or "fork" not in mp.get_all_start_methods():  # (spawned workers cannot inherit ctx)
            for c in chunks:
                _build_chunk(root, tier, c, on_row=lambda: bar.advance(1))
            return
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as ex:
            pending = {ex.submit(_build_chunk, root, tier, c) for c in chunks}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        bar.advance(f.result()[1])
            except BaseException:
                for f in pending:
                    f.cancel()
                raise


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: the worker dies when `dhs simulate` does, even by kill -9 (no orphan keeps
    writing files). Linux: prctl(PR_SET_PDEATHSIG, SIGKILL); elsewhere a thread polls the parent pid."""
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    else:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def make_manifest(ctx: SimContext, tier: str, rows: int, chunks: list[int], root: Path, shard: str | None,
                  argv: list[str] | None) -> dict:
    """Counts per split and class (of this shard's rows), hosts per split, files, seed, config, version."""
    from darkhaloscope.config import run_info

    plan, cfg = ctx.plan, ctx.cfg
    sel = np.concatenate([np.arange(r.start, r.stop) for r in (chunk_rows(c, rows, cfg) for c in chunks)]) \
        if chunks else np.array([], np.int64)
    counts = {}  # (rows of this shard only)
    for k, s in enumerate(plan.splits):
        in_s = sel[plan.split_idx[sel] == k]
        n_ctrl = int(plan.is_control[in_s].sum())
        counts[s] = {"controls": n_ctrl, "injections": int(len(in_s) - n_ctrl),
                     "hosts": int(len(np.unique(plan.host_idx[in_s])))}
    files = sorted(str(p.relative_to(root)) for c in chunks for p in chunk_files(root, c, plan, cfg).values())
    info = run_info(argv)
    return {"tier": tier, "rows_total": rows, "rows_written": int(len(sel)), "seed": ctx.seed,
            "shard": shard or "0/1", "counts": counts, "bands": list(cfg.bands),
            "hosts": "synthetic" if ctx.real is None else ctx.real.source, "files": files,
            "config": json.loads(json.dumps(asdict(cfg))), "version": info["version"],
            "git_commit": info["git_commit"], "command": info["command"]}
