"""Recall vs depth: a finder scored on one held-out tier whose sky noise is stepped (issue #24, depth robustness).

    PYTHONPATH=src python benchmarks/bench_depth.py --out /tmp/bench_depth --run demo=DEMO/run \
        [--run jitter=RUN2] [--steps 0,0.5,1,1.5] [--eval-rows 2000]

One held-out tier (the full demo's recipe: `dhs simulate` defaults, half of the controls with look-alikes; seed
97, split test only) is simulated once, or `--tier TIER` names one (its test split is used). For each step d (mag shallower), every stamp, lenses and controls,
gets correlated Gaussian noise (`evaluate.noisematch.renoise`, seeded per step) raising its own measured sky
noise by 10^(0.4 d) per band, and is scored by each run's best.pt. Reported per run and step: AUROC lenses vs
controls, recall at FPR 1% of the controls at the same depth, and recall at the threshold set at d = 0 (what
a survey that calibrated on deep data gets on shallower data) with the FPR of the shallower controls there.
With `--real-lenses` (default ../shared/data/ps1_sled_lenses), also the confirmed PS1 lenses found at the
noise-matched FPR 1% and 10% and at the held-out controls' 1% as they are (docs/real-lenses.md). And, per run,
recall at each depth by the lens's Einstein radius and its arc's peak r S/N at the tier's depth (`BINS`): which
simulated lenses a survey of that depth still finds, to set beside the real ones. `--run` names (NAME) name the
output files (scores_NAME.parquet, ps1_NAME/). Writes OUT/results.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import numpy as np

PS1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "ps1_sled_lenses"
FPR = 0.01
HELD_OUT = {"confusers": "0.5", "splits": "test=1"}
# recall at each depth per bin of the lens's Einstein radius and of its arc's peak r S/N at the tier's own depth
# (the simulator draws arcs of S/N >= 3 at that depth: at d mag shallower the same arc has S/N / 10^(0.4 d))
BINS = {"theta_e_arcsec": [0.0, 1.2, 1.6, 2.0, 10.0], "arc_snr": [0.0, 6.0, 10.0, 20.0, np.inf]}
BIN_COLUMNS = tuple(BINS)


def load_tier(tier: Path, split: str | None = None):
    """(images, labels, meta): the split's decodable stamps, their labels and BIN_COLUMNS (NaN for controls)."""
    from darkhaloscope.score.sources import open_source

    images, labels, meta = [], [], {c: [] for c in BIN_COLUMNS}
    for b in open_source(str(tier), split=split).batches():
        images.append(b.images[b.valid])
        labels.append(np.ma.getdata(b.labels)[b.valid])
        for c in BIN_COLUMNS:
            col = b.meta[c].to_numpy(zero_copy_only=False) if c in b.meta.column_names else np.full(len(b.valid), np.nan)
            meta[c].append(np.asarray(col, dtype=float)[b.valid])
    return (np.concatenate(images), np.concatenate(labels).astype(np.int8),
            {c: np.concatenate(v) for c, v in meta.items()})


def binned_recall(lens_scores: np.ndarray, thr: float, lens_meta: dict[str, np.ndarray]) -> dict:
    """Recall at `thr` of the lenses in each bin of BINS: {column: [{lo, hi, k, n}, ...]} (bins without lenses
    or a column the tier lacks are left out)."""
    out = {}
    for col, edges in BINS.items():
        v = lens_meta[col]
        cells = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = (v >= lo) & (v < hi)
            if m.any():
                cells.append({"lo": lo, "hi": hi, "k": int((lens_scores[m] > thr).sum()), "n": int(m.sum())})
        if cells:
            out[col] = cells
    return out


def step_scores(score_fn, images: np.ndarray, step: float, seed: int) -> np.ndarray:
    from darkhaloscope.evaluate.noisematch import renoise, sky_sigma

    if step == 0:
        return score_fn(images)
    own = sky_sigma(images)
    out = np.empty(len(images))
    for s in range(0, len(images), 500):  # bounded memory
        part = slice(s, s + 500)
        noisy = renoise(images[part], own[part], own[part] * 10 ** (0.4 * step), np.random.default_rng([seed, s]))
        out[part] = score_fn(noisy)
    return out


def measure_run(name: str, run: Path, tier: Path, images, labels, meta, steps, seed: int, ps1: Path | None,
                out: Path) -> dict:
    from darkhaloscope.common import ranking as M
    from darkhaloscope.evaluate.probes import _model_scorer

    score_fn = _model_scorer(str(run / "best.pt"), None)
    rows, thr0 = [], None
    for i, d in enumerate(steps):
        t = time.perf_counter()
        v = step_scores(score_fn, images, d, seed + i)
        ctrl, lens = v[labels == 0], v[labels == 1]
        thr, _ = M.control_threshold(ctrl, FPR)
        thr0 = thr if thr0 is None else thr0
        k, k0 = int((lens > thr).sum()), int((lens > thr0).sum())
        lo, hi = M.wilson_interval(np.array([k]), np.array([len(lens)]))
        rows.append({"step_mag": d, "auroc": M.auroc(labels, v).value, "recall_at_own_fpr": k / len(lens),
                     "ci95": [float(lo[0]), float(hi[0])], "recall_at_deep_threshold": k0 / len(lens),
                     "fpr_at_deep_threshold": float((ctrl > thr0).mean()), "n_lenses": int(len(lens)),
                     "n_controls": int(len(ctrl)), "seconds": time.perf_counter() - t,
                     "by_bin": binned_recall(lens, thr, {c: v[labels == 1] for c, v in meta.items()})})
        print(f"  {name} d={d:g}: AUROC {rows[-1]['auroc']:.4f}, recall@1% {k}/{len(lens)}, "
              f"at the deep threshold {k0}/{len(lens)} (FPR {rows[-1]['fpr_at_deep_threshold']:.3f})", flush=True)
    result = {"steps": rows}
    if ps1 is not None and ps1.is_dir():
        from darkhaloscope.config import load_config
        from darkhaloscope.evaluate.config import EvaluateConfig
        from darkhaloscope.evaluate.knownlenses_report import measure_known_lenses
        from darkhaloscope.score.config import ScoreConfig
        from darkhaloscope.score.infer import score_data

        scores = out / f"scores_{name}.parquet"
        score_data(str(run / "best.pt"), str(tier), scores, ScoreConfig(device="cpu"), progress=False, split="test")
        cfg = load_config(EvaluateConfig, None, {"split": "all", "known_lens_fprs": [FPR],
                                                 "noise_match_fprs": [FPR, 0.1], "seed": seed})
        t, c = time.perf_counter(), time.process_time()
        m = measure_known_lenses(str(ps1), scores, cfg, checkpoint=str(run / "best.pt"), data=str(tier),
                                 out_dir=out / f"ps1_{name}", log=lambda _: None)
        d = m.as_dict()
        result["ps1"] = {"n": m.n, "noise_matched": d["noise_matched"]["recall"]["all"],
                         "at_controls": d["recall"]["all"], "seconds": time.perf_counter() - t,
                         "cpu_seconds": time.process_time() - c, "n_controls": m.noise.n_controls,
                         "bins": len(m.noise.bins.target),
                         "target_sigma": d["noise_matched"]["target_sigma"],
                         "achieved_sigma": d["noise_matched"]["achieved_sigma"]}
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR", help="a run folder (best.pt)")
    p.add_argument("--steps", default="0,0.5,1,1.5", help="mag shallower, comma-separated")
    p.add_argument("--eval-rows", type=int, default=2000)
    p.add_argument("--seed", type=int, default=97, help="held-out tier and noise seed")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--tier", default=None, help="use this tier's test split (e.g. a demo's DIR/data/demo, never "
                   "trained on) instead of simulating one")
    p.add_argument("--real-lenses", default=str(PS1), help="folder of confirmed real lenses ('' = none)")
    args = p.parse_args(argv)
    from darkhaloscope.cli import _fail
    from darkhaloscope.errors import DHSError

    try:
        return _main(args)
    except DHSError as e:  # one `error:` line and its exit code, as `dhs`
        return _fail(e)


def _main(args) -> int:
    from darkhaloscope.config import load_config
    from darkhaloscope.errors import MissingInputError, UsageError
    from darkhaloscope.fileio import atomic_write_text
    from darkhaloscope.inject.build import simulate as simulate_tier  # either engine (the demo tier: torch)
    from darkhaloscope.sim.simconfig import SimConfig

    runs = [spec.split("=", 1) for spec in args.run]
    names = [r[0] for r in runs]
    if any(len(r) != 2 or not re.fullmatch(r"[A-Za-z0-9_.-]+", r[0]) for r in runs) or len(set(names)) != len(names):
        raise UsageError("--run: NAME=RUN_DIR with distinct names of letters, digits, '_', '.', '-' (they name "
                         "output files)")
    try:
        steps = [float(s) for s in args.steps.split(",")]
    except ValueError:
        raise UsageError(f"--steps {args.steps!r}: magnitudes shallower, comma-separated numbers") from None
    if not all(0 <= d <= 5 for d in steps):
        raise UsageError(f"--steps {args.steps!r}: each step must be in [0, 5] mag")
    if args.tier and not (Path(args.tier) / "manifest.json").is_file():
        raise MissingInputError(f"--tier {args.tier}: not a tier of `dhs simulate` (no manifest.json)")
    for name, run in runs:
        if not (Path(run) / "best.pt").is_file():
            raise MissingInputError(f"--run {name}={run}: no best.pt there; give a run folder of `dhs train`")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tier = Path(args.tier) if args.tier else out / "held_out_depth"
    if not (tier / "manifest.json").exists():
        simulate_tier(out, "held_out_depth", args.eval_rows, args.seed, load_config(SimConfig, None, HELD_OUT),
                      workers=args.workers, overwrite=True)
    images, labels, meta = load_tier(tier, "test")
    print(f"held-out tier: {len(images)} stamps ({int((labels == 1).sum())} lenses), {time.perf_counter() - t0:.0f} s")
    results = {"load_average_start": os.getloadavg(), "seed": args.seed, "steps": steps, "runs": {}}
    ps1 = Path(args.real_lenses) if args.real_lenses else None
    for name, run in runs:
        results["runs"][name] = measure_run(name, Path(run), tier, images, labels, meta, steps, args.seed, ps1, out)
    results["load_average_end"] = os.getloadavg()
    results["total_s"] = time.perf_counter() - t0
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=str) + "\n")
    names = list(results["runs"])
    print("\n| step (mag shallower) | " + " | ".join(f"{n}: AUROC, recall@1% [95% CI], recall at deep thr (FPR)"
                                                     for n in names) + " |\n|---|" + "---|" * len(names))
    for i, d in enumerate(steps):
        cells = []
        for n in names:
            r = results["runs"][n]["steps"][i]
            cells.append(f"{r['auroc']:.4f}, {r['recall_at_own_fpr']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}], "
                         f"{r['recall_at_deep_threshold']:.3f} ({r['fpr_at_deep_threshold']:.3f})")
        print(f"| {d:g} | " + " | ".join(cells) + " |")
    for n in names:
        q = results["runs"][n].get("ps1")
        if q:
            c = lambda x: f"{x['found']}/{x['n']} [{x['ci95'][0]:.0%}, {x['ci95'][1]:.0%}]"  # noqa: E731
            print(f"{n}: PS1 lenses at noise-matched FPR 1% {c(q['noise_matched']['0.01'])}, 10% "
                  f"{c(q['noise_matched']['0.1'])}; at the controls' 1% as they are {c(q['at_controls']['0.01'])} "
                  f"(score 144 + {q['bins']} x {q['n_controls']} re-noised controls: {q['seconds']:.0f} s wall, "
                  f"{q['cpu_seconds']:.0f} s CPU)")
    for n in names:
        print(f"\n{n}: recall at FPR 1% of the controls at the same depth, by bin (k/n)\n| bin | "
              + " | ".join(f"d={d:g}" for d in steps) + " |\n|---|" + "---|" * len(steps))
        for col in BINS:
            per_step = [r["by_bin"].get(col, []) for r in results["runs"][n]["steps"]]
            for j, cell in enumerate(per_step[0]):
                row = [f"{s[j]['k']}/{s[j]['n']} ({s[j]['k'] / s[j]['n']:.0%})" for s in per_step]
                print(f"| {col} {cell['lo']:g}-{cell['hi']:g} | " + " | ".join(row) + " |")
    print(f"total {results['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
