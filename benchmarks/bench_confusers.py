"""Confuser benchmark (issue #10 goals): does a finder trained as `dhs demo` trains it learn lensing rather
than "blue light near a red galaxy"?

    PYTHONPATH=src python benchmarks/bench_confusers.py --out /tmp/bench_confusers --workers 2

Two arms, side by side in one run, each the cpu-demo preset's net trained as the demo trains it (that preset,
`demo.stages.SIZES["full"]` epochs, tier seed 1 (`--tier-seed`), train seed 1, 70/15/15, half controls):
- before: 4,000 rows of the tier recipe the demo used before issue #10, as far as SimConfig keys reach it (no confusers,
  peak arc S/N log-uniform 5-60, theta_E uniform 0.5-3", sources r 20-25, host r-z 0.7-1.2 without colour
  gradient, isotropic noise correlation 0.35, no photon noise, smooth Sersic sources). The new PSF medians
  (g 1.45", r 1.3", z 1.2") are module constants and apply to both arms.
- after: the full demo's tier (`dhs simulate` defaults, realistic signal, with the demo's overrides: half of the
  controls carry confusers; `SIZES["full"].rows` rows).
`--after-run RUN` / `--before-run RUN` measure an existing run folder (its best.pt) instead of training one, e.g.
the run a `dhs demo` left in DIR/run.
At GPU scale (what the goals need; benchmarks/gpu_check.sh runs it with DHS_GPU_CHECK_CONFUSERS=1):

    python benchmarks/bench_confusers.py --out B --arms after --rows 60000 --preset gpu --model resnet18_s2 \
        --epochs 12 --workers 16 --train-set device=cuda

Both are scored on one freshly simulated held-out tier (another seed, new defaults, split test only) where
75% of the rows are controls and 60% of those carry a confuser (the kinds in equal shares), so that the
threshold passing 1% of the PLAIN controls rests on ~1,200 plain controls. Reported per arm: AUROC lenses
vs plain controls and vs confusers (all and per kind), the share of each kind above that threshold, and
recall at it overall and for sources at r 23-24, and how many of the real DR10 lens candidates (`--real`,
default ../shared/data/dr10_cutouts; positives only) lie above it, with the plain-control FPR needed to find
each, and, at the threshold anchored on the k-th best real candidate, the share of look-alikes and plain
controls above it and the recall there (`anchored`; the table prints k = 4), and how many of the 144 confirmed
PS1 lenses (`--real-lenses`, default ../shared/data/ps1_sled_lenses) are found at thresholds on the held-out
controls brought to each lens's own sky noise (noise-matched FPR 1% and 10%, docs/real-lenses.md) and at the
held-out controls' FPR 1% as they are. Writes OUT/results.json and prints a markdown table.

Options of the demo recipe (issue #24), each an arm trained on the 'after' tier with the same seed, and a
committee of the recipe over seeds, all measured as above on the same held-out tier and the same lenses:

    python benchmarks/bench_confusers.py --out B --arms after --variant jitter:preprocess.depth_jitter_mag=1.5 \
        --variant hostlight:preprocess.host_light=subtract --committee-seeds 2,3

For each arm besides 'after', the PS1 recall at the noise-matched FPR 1% minus the 'after' arm's, with a paired
bootstrap interval over the lenses and the control stamps (`evaluate.bootstrap.paired_recall_difference`,
from OUT/scores_<arm>_ps1.npz). `--report-only` prints the table of OUT/results.json again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BEFORE = {"confusers": "0", "arc_snr_dist": "loguniform:5:60", "theta_e_dist": "uniform",
          "theta_e_arcsec": "0.5,3.0", "src_mag_r": "20,25", "host_r_z": "0.7,1.2", "host_grad_dex": "0,0",
          "noise_corr_lag1": "0.35,0.35", "photon_noise": "false", "src_knots": "0,0", "src_second_prob": "0"}
BEFORE_ROWS = 4000  # the demo's tier size before issue #10
HELD_OUT = {"confusers": "0.6", "controls": "0.75", "splits": "test=1"}
FPR = 0.01  # operating point: passes 1% of the plain controls
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "dr10_cutouts"  # the six real grade-B candidates
PS1 = REAL.parent / "ps1_sled_lenses"  # 144 confirmed lenses in PS1 imaging (docs/real-lenses.md)


REUSE_TIERS = False  # --reuse-tiers: a tier already complete in OUT/data (its manifest written) is not simulated again


def simulate(out: Path, tier: str, rows: int, seed: int, overrides: dict, workers: int) -> Path:
    if REUSE_TIERS and (out / tier / "manifest.json").is_file():
        print(f"reusing {out / tier} (--reuse-tiers: simulated by an earlier run of this benchmark)")
        return out / tier
    from darkhaloscope.config import load_config
    from darkhaloscope.inject.build import simulate as simulate_tier  # either engine (the demo tier: torch)
    from darkhaloscope.sim.simconfig import SimConfig

    simulate_tier(out, tier, rows, seed, load_config(SimConfig, None, overrides), workers=workers, overwrite=True)
    return out / tier


def demo_arms() -> dict[str, tuple[int, dict]]:
    """arm -> (rows, SimConfig overrides): "after" is exactly the full demo's tier."""
    from darkhaloscope.demo.stages import SIZES

    return {"before": (BEFORE_ROWS, BEFORE), "after": (SIZES["full"].rows, dict(SIZES["full"].sim))}


def train_like_demo(tier: Path, run_dir: Path, epochs: int, preset: str = "cpu-demo",
                    extra: dict | None = None) -> Path:
    from darkhaloscope.config import load_config
    from darkhaloscope.train.config import TrainConfig
    from darkhaloscope.train.loop import train

    from darkhaloscope.configargs import preset_path

    cfg = load_config(TrainConfig, preset_path("train", preset),
                      {"data": str(tier), "epochs": epochs, "progress": False, "seed": 1, **(extra or {})})
    summary = train(cfg, run_dir, argv=["bench_confusers"])
    print(f"  best val AUROC {summary['best'].get('val_auroc', float('nan')):.4f} ({summary['steps']} steps)")
    return run_dir / "best.pt"


def measure_ps1(checkpoint: Path | list[Path], held_out: Path, scores: Path, folder: Path | None) -> dict | None:
    """The confirmed PS1 lenses found at thresholds on the held-out controls (look-alikes included) brought to
    each lens's own noise (noise-matched FPR 1% and 10%), and at the held-out controls' FPR 1% as they are.
    A list of checkpoints is a committee (mean logit). Writes <scores>_ps1.npz: each lens's id, value and noise
    bin, and each bin's re-noised control values, for the paired bootstraps of `report`."""
    if folder is None or not Path(folder).is_dir():
        return None
    from darkhaloscope.config import load_config
    from darkhaloscope.evaluate.config import EvaluateConfig
    from darkhaloscope.evaluate.knownlenses_report import measure_known_lenses

    cfg = load_config(EvaluateConfig, None, {"split": "all", "score": "raw", "known_lens_fprs": [FPR],
                                             "noise_match_fprs": [FPR, 0.1]})
    t0 = time.perf_counter()
    m = measure_known_lenses(str(folder), scores, cfg, checkpoint=_ckpt_arg(checkpoint), data=str(held_out),
                             out_dir=scores.with_name(scores.stem + "_ps1"), log=lambda _: None)
    if m is None or m.noise is None:
        return None
    np.savez(scores.with_name(scores.stem + "_ps1.npz"), ids=np.asarray(m.ids, str), values=m.values,
             bins=m.noise.bins.bin, controls=np.stack(m.noise.control_values))
    d = m.as_dict()
    return {"n": m.n, "noise_matched": d["noise_matched"]["recall"]["all"], "at_controls": d["recall"]["all"],
            "duplicates_merged": m.merged, "seconds": time.perf_counter() - t0, "seed": cfg.seed}


def _ckpt_arg(checkpoint: Path | list[Path]) -> str | list[str]:
    return [str(c) for c in checkpoint] if isinstance(checkpoint, list) else str(checkpoint)


def _ps1(r: dict) -> str:
    p = r.get("ps1_lenses")
    if not p:
        return "n/a"
    cell = lambda c: f"{c['found']}/{c['n']} [{c['ci95'][0]:.0%}, {c['ci95'][1]:.0%}]"  # noqa: E731
    nm, at = p["noise_matched"], p["at_controls"][f"{FPR:g}"]
    return f"{cell(nm[f'{FPR:g}'])} / {cell(nm['0.1'])} ({cell(at)})"


def measure(checkpoint: Path | list[Path], held_out: Path, scores: Path, real: Path | None = REAL) -> dict:
    from darkhaloscope.common import ranking as M
    from darkhaloscope.evaluate.analysis import rank_values
    from darkhaloscope.evaluate.confusers import confuser_metrics, plain_controls
    from darkhaloscope.score.config import ScoreConfig
    from darkhaloscope.score.infer import score_data
    from darkhaloscope.score.scoresfile import read_scores

    score_data(_ckpt_arg(checkpoint), str(held_out), scores, ScoreConfig(device="cpu"), progress=False)
    s = read_scores(scores, split="all", score="raw")
    r = rank_values(s)
    m = confuser_metrics(s.labels, r.values, s.confuser_kind, s.columns, [FPR], s.confuser_variant)
    plain = plain_controls(s.labels, s.confuser_kind)
    keep = (s.labels == 1) | plain
    key = f"{FPR:g}"
    r2324 = next((b for b in m["recall"].get(key, {}).get("src_mag_r", []) if b["bin"] == "23-24"), None)
    found = None
    if real is not None and Path(real).is_dir():  # real candidates: the plain-control FPR at which each is found
        import pyarrow.parquet as pq

        out = score_data(_ckpt_arg(checkpoint), str(real), scores.with_name(scores.stem + "_real.parquet"),
                         ScoreConfig(device="cpu"), progress=False).out
        real_scores = pq.read_table(out, columns=["score"])["score"].to_numpy()  # unlabelled: not read_scores
        from darkhaloscope.evaluate.knownlenses import fpr_to_find

        plain_scores = s.scores[plain]
        fpr_each = sorted(map(float, fpr_to_find(real_scores, plain_scores)))
        found = {"k": sum(f <= FPR for f in fpr_each), "n": len(fpr_each), "fpr_to_find": fpr_each,
                 "anchored": _anchored(real_scores, s.scores, s.labels, plain)}
    return {"auroc_lens_vs_plain": M.auroc(s.labels[keep], r.values[keep]).value, "real_candidates": found,
            "auroc_lens_vs_confusers": m["kinds"]["all confusers"]["auroc_vs_lenses"],
            "confuser_fpr": {k: {"fpr": d["fpr"][key], "auroc_vs_lenses": d["auroc_vs_lenses"], "n": d["n"]}
                             for k, d in m["kinds"].items()},
            "recall": m["recall"].get(key, {}).get("all"), "recall_r23_24": r2324, "metrics": m}


def _anchored(real_scores, scores, labels, plain) -> list[dict]:
    """Thresholds anchored on the real candidates: at the k-th highest real score (k = 1..n), the share of
    look-alikes and of plain controls scoring at least as high, and the recall of the simulated lenses there
    (`evaluate.knownlenses.fpr_to_find`, the rule of the report's real-lens section)."""
    from darkhaloscope.evaluate.knownlenses import fpr_to_find

    top = np.sort(np.asarray(real_scores, dtype=np.float64))[::-1]
    look = scores[(labels == 0) & ~plain]
    shares = {name: fpr_to_find(top, v) for name, v in (("plain", scores[plain]), ("recall", scores[labels == 1]))}
    looks = fpr_to_find(top, look) if len(look) else [None] * len(top)
    return [{"find": k, "look_alikes": None if lk is None else float(lk), "plain": float(p), "recall": float(r)}
            for k, (lk, p, r) in enumerate(zip(looks, shares["plain"], shares["recall"]), 1)]


def _real(r: dict) -> str:
    f = r.get("real_candidates")
    return "n/a" if not f else f"{f['k']}/{f['n']} ({', '.join(f'{x:.3g}' for x in f['fpr_to_find'])})"


def _at_four(r: dict) -> str:
    a = (r.get("real_candidates") or {}).get("anchored") or []
    row = next((x for x in a if x["find"] == 4), None)
    if row is None or row["look_alikes"] is None:
        return "n/a"
    return f"{row['look_alikes']:.3f} / {row['plain']:.4f}, {row['recall']:.3f}"


def _pct(d: dict | None) -> str:
    return "n/a" if not d or d.get("rate") is None else f"{d['rate']:.3f} ({d['k']}/{d['n']})"


def parse_variants(specs: list[str]) -> dict[str, dict]:
    """'NAME:KEY=VALUE[,KEY=VALUE...]' -> {NAME: TrainConfig overrides} (arms trained on the 'after' tier)."""
    out = {}
    for spec in specs:
        name, _, kvs = spec.partition(":")
        pairs = [kv.split("=", 1) for kv in kvs.split(",") if kv]
        if not name or name in ("before", "after", "committee") or not pairs or any(len(p) != 2 for p in pairs):
            raise SystemExit(f"error: --variant {spec!r}: write NAME:KEY=VALUE[,KEY=VALUE] with a new NAME")
        out[name] = dict(pairs)
    return out


def train_after_arms(out: Path, tier: Path, epochs: int, args, extra: dict, variants: dict[str, dict],
                     seeds: list[int], results: dict) -> None:
    """The variants and the committee: each trained on the 'after' tier as the demo trains (one at a time)."""
    for name, overrides in [*variants.items(), *((f"seed{s}", {"seed": s}) for s in seeds)]:
        t = time.perf_counter()
        ckpt = train_like_demo(tier, out / f"run_{name}", epochs, args.preset, {**extra, **overrides})
        t_train = time.perf_counter() - t
        if name.startswith("seed"):
            continue  # a committee member: measured as part of the committee
        results[name] = measure_arm(ckpt, out, name, args) | {"train_s": t_train, "overrides": overrides}
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")  # each arm kept
        print(f"{name}: train {t_train:.0f} s")
    if seeds:
        members = [out / "run_after" / "best.pt", *(out / f"run_seed{s}" / "best.pt" for s in seeds)]
        results["committee"] = measure_arm(members, out, "committee", args) | {"members": [str(m) for m in members]}


def measure_arm(ckpt: Path | list[Path], out: Path, name: str, args) -> dict:
    held = out / "data" / "held_out"
    r = measure(ckpt, held, out / f"scores_{name}.parquet", Path(args.real) if args.real else None)
    r["ps1_lenses"] = measure_ps1(ckpt, held, out / f"scores_{name}.parquet",
                                  Path(args.real_lenses) if args.real_lenses else None)
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--eval-rows", type=int, default=4000, help="rows of the held-out tier")
    p.add_argument("--epochs", type=int, default=None, help="default: the full demo's")
    p.add_argument("--before-run", default=None, help="measure this run folder as the 'before' arm (no training)")
    p.add_argument("--after-run", default=None, help="measure this run folder as the 'after' arm (no training)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--arms", default="before,after", help="arms to run: before, after or both (default)")
    p.add_argument("--rows", type=int, default=None, help="rows of the 'after' tier (default: the full demo's)")
    p.add_argument("--tier-seed", type=int, default=1, help="seed of the training tiers (the held-out tier: 99)")
    p.add_argument("--preset", default="cpu-demo", help="train preset of both arms (gpu on a CUDA machine)")
    p.add_argument("--model", default=None, help="model of both arms (default: the preset's)")
    p.add_argument("--train-set", nargs="*", default=[], metavar="KEY=VALUE", help="more TrainConfig overrides")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                   help="another arm: the 'after' arm with these TrainConfig overrides, e.g. "
                        "jitter:preprocess.depth_jitter_mag=1.5 (repeatable)")
    p.add_argument("--committee-seeds", default="", help="e.g. 2,3: train the 'after' arm at these seeds too and "
                   "measure the committee (mean logit) of them and the 'after' run (seed 1)")
    p.add_argument("--report-only", action="store_true", help="print the table of OUT/results.json again")
    p.add_argument("--reuse-tiers", action="store_true", help="keep the tiers an earlier run left complete in "
                   "OUT/data (same arguments: same tiers) instead of simulating them again")
    p.add_argument("--real", default=str(REAL), help="folder of real lens-candidate cutouts ('' = none)")
    p.add_argument("--real-lenses", default=str(PS1), help="folder of confirmed real lenses ('' = none)")
    args = p.parse_args(argv)
    out = Path(args.out)
    global REUSE_TIERS
    REUSE_TIERS = args.reuse_tiers
    if args.report_only:
        report(out, json.loads((out / "results.json").read_text()))
        return 0
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not arms or set(arms) - {"before", "after"}:
        p.error(f"--arms {args.arms!r}: choose before, after or before,after")
    variants = parse_variants(args.variant)
    seeds = [int(x) for x in args.committee_seeds.split(",") if x.strip()]
    if (variants or seeds) and "after" not in arms:
        p.error("--variant and --committee-seeds are compared with the 'after' arm: keep it in --arms")
    extra = dict(kv.split("=", 1) for kv in args.train_set) | ({"model": args.model} if args.model else {})
    t0 = time.perf_counter()
    held = simulate(out / "data", "held_out", args.eval_rows, 99, HELD_OUT, args.workers)
    print(f"held-out tier: {time.perf_counter() - t0:.0f} s")
    results = {}
    from darkhaloscope.demo.stages import SIZES

    epochs = args.epochs or SIZES["full"].epochs
    given = {"before": args.before_run, "after": args.after_run}
    for arm, (rows, overrides) in demo_arms().items():
        if arm not in arms:
            continue
        rows = args.rows if arm == "after" and args.rows else rows
        t = time.perf_counter()
        t_sim = t_train = None
        if given[arm]:
            ckpt = Path(given[arm]) / "best.pt"
        else:
            tier = simulate(out / "data", arm, rows, args.tier_seed, overrides, args.workers)
            t_sim = time.perf_counter() - t
            ckpt = train_like_demo(tier, out / f"run_{arm}", epochs, args.preset, extra)
            t_train = time.perf_counter() - t - t_sim
        results[arm] = {**measure_arm(ckpt, out, arm, args), "simulate_s": t_sim, "train_s": t_train}
        print(f"{arm}: " + (f"simulate {t_sim:.0f} s, train {t_train:.0f} s" if t_sim else f"measured {ckpt}"))
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    if variants or seeds:
        after_tier = out / "data" / "after"
        if not after_tier.is_dir():
            after_tier = simulate(out / "data", "after", args.rows or demo_arms()["after"][0], args.tier_seed,
                                  demo_arms()["after"][1], args.workers)
        train_after_arms(out, after_tier, epochs, args, extra, variants, seeds, results)
    results["total_s"] = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    report(out, results)
    return 0


def report(out: Path, results: dict) -> None:
    """The markdown table of every arm measured, and the PS1 recall differences vs 'after' (paired bootstrap)."""
    ran = [a for a in results if a != "total_s"]
    kinds = [k for k in results[ran[-1]]["confuser_fpr"] if k not in ("plain controls",)]
    print("\n| measure | " + " | ".join(ran) + " |\n|---|" + "---|" * len(ran))
    for name, f in (("AUROC lenses vs plain controls", lambda r: f"{r['auroc_lens_vs_plain']:.4f}"),
                    ("AUROC lenses vs confusers", lambda r: f"{r['auroc_lens_vs_confusers']:.4f}"),
                    ("recall at plain-control FPR 1%", lambda r: _pct(r["recall"])),
                    ("recall at it, sources r 23-24", lambda r: _pct(r["recall_r23_24"])),
                    ("real candidates above it (FPR to find each)", _real),
                    ("look-alikes / plain above, recall, at the threshold finding 4 real", _at_four),
                    ("PS1 lenses at noise-matched FPR 1% / 10% (at the controls' 1% as they are)", _ps1)):
        print(f"| {name} | " + " | ".join(f(results[a]) for a in ran) + " |")
    for k in kinds:
        cells = [f"{_pct(results[a]['confuser_fpr'][k]['fpr'])}, AUROC {results[a]['confuser_fpr'][k]['auroc_vs_lenses']:.3f}"
                 for a in ran]
        print(f"| {k}: share above the plain-1% threshold | " + " | ".join(cells) + " |")
    if "after" in ran:
        _ps1_differences(out, [a for a in ran if a not in ("before", "after")])
    if "total_s" in results:
        print(f"\ntotal {results['total_s']:.0f} s")


def _ps1_differences(out: Path, arms: list[str], n_boot: int = 2000) -> None:
    """PS1 recall at the noise-matched FPR 1% of each arm minus the 'after' arm's: the same lenses and the same
    re-noised control stamps, a paired bootstrap over both (`evaluate.bootstrap.paired_recall_difference`)."""
    from darkhaloscope.evaluate.bootstrap import paired_recall_difference

    base = out / "scores_after_ps1.npz"
    if not base.exists():
        return
    a = np.load(base)
    for arm in arms:
        path = out / f"scores_{arm}_ps1.npz"
        if not path.exists():
            continue
        b = np.load(path)
        if not (np.array_equal(a["ids"], b["ids"]) and np.array_equal(a["bins"], b["bins"])):
            print(f"{arm}: PS1 lenses or noise bins differ from the 'after' arm's: no paired difference")
            continue
        for fpr in (FPR, 0.1):  # the goal's operating point, and the looser one the demo prints beside it
            d = paired_recall_difference(a["values"], b["values"], a["bins"], a["controls"], b["controls"], fpr,
                                         n_boot=n_boot, seed=0)
            print(f"PS1 recall at noise-matched FPR {fpr:g}, {arm} - after: {d['difference']:+.3f} "
                  f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] (paired bootstrap, {n_boot} replicates, seed 0; "
                  f"{d['found_a']} vs {d['found_b']} of {d['n']})")


if __name__ == "__main__":
    raise SystemExit(main())
