"""The stages of `dhs demo`, one function each: `stage(demo) -> (result line, as expected?)`.

    simulate        the demo tier (train/val/test, synthetic LRG-like hosts, half controls in every split)
    debug_tier      the users' Phase 4c debug tier from it (every control dropped with pyarrow)
    real_hosts      (--real-hosts) a small tier injecting arcs into real DR10 cutouts
    audit_debug     audit says NO-GO on the debug tier, naming the split; audit_demo / audit_real: GO
    refuse_debug    `dhs train` refuses the debug tier (exit 3)
    train           the cpu-demo preset's net (polar_fourier) on CPU -> DIR/run/best.pt
    score           the test split -> DIR/scores/test.parquet (score_real: the real-host tier)
    score_candidates  the real DR10 lens candidates (../shared/data/dr10_cutouts; positives, never controls)
                    -> DIR/scores/real_candidates.parquet, for the report's real-lens section
    evaluate        DIR/report/report.html, test AUROC >= the size's bound, the confusers' FPR (+ real-lens recall)
    real_lenses     confirmed real lenses (../shared/data/ps1_sled_lenses): found at noise-matched FPR 1% / 10%
    review          the demo tier and the run -> DIR/report/review.md (GO expected)
A later stage is one more function here and one line in `run.STAGES`. Exercise: `dhs demo --quick`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

MIN_TEST_AUROC = 0.95  # the test AUROC --quick promises (its bright-arc smoke tier); the full demo's is in SIZES


@dataclass(frozen=True)
class DemoSize:
    rows: int  # stamps of the demo tier, all splits (70/15/15), half controls
    real_rows: int  # stamps of the real-host tier (--real-hosts)
    epochs: int  # training epochs on CPU (the cpu-demo preset's net)
    sim: dict[str, str] = field(default_factory=dict)  # SimConfig overrides (the arcs the demo injects)
    train: dict[str, object] = field(default_factory=dict)  # TrainConfig overrides on top of the cpu-demo preset
    n_boot: int = 1000  # bootstrap replicates of `dhs evaluate`
    probes: bool = True  # model probes (core mask, occlusion maps, host light) in the evaluation report
    probe_rows: int = 1000  # stamps of the model probes (dhs evaluate's probe_rows: 2,000; 1,000 is ~4 s less)
    quick_review: bool = False  # the review's QUICK preset
    min_auroc: float = MIN_TEST_AUROC  # the test AUROC the demo promises on this tier


# --quick injects brighter, larger arcs (S/N 30-100, theta_E uniform 1.2-2.5") and no confuser controls so that a
# 3-epoch run on 420 train stamps still reaches test AUROC >= 0.95 (a smoke test); the full demo trains on the
# default, realistic arcs (faint counts-drawn sources) with half of the controls carrying confusers (the default
# is 0.3): 12,000 stamps, three times the former 4,000, because look-alikes are learnt from examples (trained on
# 4,000 stamps with 30% confusers: lenses vs confusers AUROC 0.57 on a held-out tier; on 12,000 with 50%: 0.68,
# benchmarks/RESULTS.md, section confusers). Its own test AUROC is lower than on plain controls (half of its
# controls are look-alikes): bound 0.75; it states the confusers' FPR beside it.
# Both render with the torch engine (the same draws as the numpy reference, in float32; docs/injection.md): the
# full tier in ~40% of the numpy engine's time.
SIZES: dict[str, DemoSize] = {
    "full": DemoSize(rows=12000, real_rows=300, epochs=8, sim={"confusers": "0.5", "engine": "torch"}, min_auroc=0.75),
    "quick": DemoSize(rows=600, real_rows=90, epochs=3, n_boot=200, probes=False, quick_review=True,
                      sim={"arc_snr_dist": "uniform:30:100", "theta_e_arcsec": "1.2,2.5", "theta_e_dist": "uniform",
                           "confusers": "0", "engine": "torch"}),
}


@dataclass
class Demo:
    """What the stages share: sizes, paths, the command line, and what earlier stages produced."""

    out: Path
    size: DemoSize
    quick: bool
    workers: int
    seed: int
    real_hosts: str | None
    train_config: Path  # the CPU training preset
    command: str  # the `dhs demo ...` line, for the reports' footers
    say: object = print  # progress lines of long stages
    real_candidates: str | None = None  # folder of real lens-candidate cutouts scored for the real-lens section
    real_lenses: str | None = None  # folder of confirmed real lenses (PS1 SLED): recall at their own depth
    train_overrides: dict = field(default_factory=dict)  # TrainConfig overrides from the command line
    results: dict = field(default_factory=dict)  # stage outputs: train summary, metrics, review, ...

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def good(self) -> Path:
        return self.data / "demo"

    @property
    def debug(self) -> Path:
        return self.data / "debug_injections_only"

    @property
    def real(self) -> Path:
        return self.data / "real_hosts"

    @property
    def run_dir(self) -> Path:
        return self.out / "run"

    @property
    def report(self) -> Path:
        return self.out / "report"

    @property
    def scores(self) -> Path:
        return self.out / "scores" / "test.parquet"

    def tcfg(self, **overrides):
        from darkhaloscope.config import load_config
        from darkhaloscope.train.config import TrainConfig

        base = {"data": str(self.good), "epochs": self.size.epochs, "progress": False, "seed": self.seed,
                **self.size.train, **self.train_overrides}
        return load_config(TrainConfig, self.train_config, {**base, **overrides})


def make_debug_tier(src: Path, dst: Path) -> dict[str, int]:
    """Copy tier `src` to `dst` keeping only injections (is_control=0): the users' Phase 4c debug tier."""
    if dst.exists():
        shutil.rmtree(dst)
    kept: dict[str, int] = {}
    for p in sorted(src.rglob("*.parquet")):
        t = pq.read_table(p)
        t = t.filter(pc.equal(t["is_control"], 0))
        out = dst / p.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, out)
        split = p.parent.name.split("=", 1)[-1]
        kept[split] = kept.get(split, 0) + t.num_rows
    return kept


def _simulate(d: Demo, tier: str, rows: int, seed: int, **extra) -> tuple[str, bool]:
    from darkhaloscope.config import load_config
    from darkhaloscope.inject.build import simulate as simulate_tier
    from darkhaloscope.sim.simconfig import SimConfig

    cfg = load_config(SimConfig, None, {**d.size.sim, **extra})
    m = simulate_tier(d.data, tier, rows, seed, cfg, workers=d.workers, overwrite=True)
    return ", ".join(f"{s} {v['injections']}+{v['controls']}" for s, v in m["counts"].items()) + \
        " (injections+controls)", True


def simulate(d: Demo) -> tuple[str, bool]:
    return _simulate(d, "demo", d.size.rows, d.seed)


def debug_tier(d: Demo) -> tuple[str, bool]:
    kept = make_debug_tier(d.good, d.debug)
    return (f"the demo tier with every control dropped (pyarrow), like the Phase 4c debug tier: "
            f"{', '.join(f'{s} {n}' for s, n in kept.items())} injections, 0 controls"), True


def real_hosts(d: Demo) -> tuple[str, bool]:
    return _simulate(d, "real_hosts", d.size.real_rows, d.seed + 1, hosts=str(d.real_hosts))


def _audit(tier: Path, expect: str) -> tuple[str, bool]:
    from darkhaloscope.audit import run_audit

    r = run_audit(str(tier))
    errors = sorted(r.by_severity("error"), key=lambda f: ("split 'train'" not in f.message, "split '" not in f.message))
    why = f"; {errors[0].message}" if errors else ""  # the whole message: never cut mid-word
    return f"{r.headline()}{why}", r.verdict == expect


def audit_debug(d: Demo) -> tuple[str, bool]:
    return _audit(d.debug, "NO-GO")


def audit_demo(d: Demo) -> tuple[str, bool]:
    return _audit(d.good, "GO")


def audit_real(d: Demo) -> tuple[str, bool]:
    return _audit(d.real, "GO")


def refuse_debug(d: Demo) -> tuple[str, bool]:
    from darkhaloscope.errors import RefusedError
    from darkhaloscope.train.loop import train

    try:
        train(d.tcfg(data=str(d.debug)), d.out / "debug_run")
    except RefusedError as e:
        return f"dhs train refuses it (exit 3): {e}", True
    return "dhs train did NOT refuse the one-class tier", False


def train(d: Demo) -> tuple[str, bool]:
    from darkhaloscope.train.loop import train as train_run

    if d.run_dir.exists():
        shutil.rmtree(d.run_dir)
    s = train_run(d.tcfg(), d.run_dir, argv=d.command.split()[1:])
    d.results["train"] = s
    b = s["best"]
    return (f"best val AUROC {b.get('val_auroc', 0):.4f} at epoch {b.get('epoch')} of 0-{s['epochs'] - 1} "
            f"(epochs count from 0, as in the log and metrics.csv; {s['steps']:,} steps)"), True


def score(d: Demo) -> tuple[str, bool]:
    from darkhaloscope.score.config import ScoreConfig
    from darkhaloscope.score.infer import score_data

    s = score_data(str(d.run_dir / "best.pt"), str(d.good), d.scores, ScoreConfig(device="cpu"), split="test",
                   progress=False)
    d.results["scored"] = s.rows
    return f"{s.rows:,} test stamps in {s.seconds:.1f} s -> {d.scores}", True


def evaluate(d: Demo) -> tuple[str, bool]:
    from darkhaloscope.config import load_config
    from darkhaloscope.evaluate.config import EvaluateConfig
    from darkhaloscope.evaluate.run import evaluate_scores

    cfg = load_config(EvaluateConfig, None, {"n_boot": d.size.n_boot, "probe_rows": d.size.probe_rows})
    known = d.results.get("candidate_scores")
    ev, _ = evaluate_scores(d.scores, d.report, cfg, checkpoint=str(d.run_dir / "best.pt") if d.size.probes else None,
                            known_lenses=str(known) if known else None, run={"command": d.command, **_version()})
    d.results["metrics"] = ev.metrics
    a = ev.metrics["auroc"]
    ok = a["value"] is not None and a["value"] >= d.size.min_auroc
    real = next((h for h in ev.headline if h.startswith("Real lenses:")), "")
    d.results["real_lenses"] = real
    return f"{_auroc_line(ev.metrics)}, bound >= {d.size.min_auroc}" + _confuser_line(ev.metrics) + \
        (f"; {real}" if real else ""), ok


def _auroc_line(metrics: dict) -> str:
    """'test AUROC v (95% CI lo-hi) on n stamps'."""
    a = metrics["auroc"]
    ci = a.get("ci95") or {}
    band = f" (95% CI {ci['low']:.4f}-{ci['high']:.4f})" if ci.get("low") is not None else ""
    value = "undefined" if a["value"] is None else f"{a['value']:.4f}"
    return f"test AUROC {value}{band} on {metrics['n_rows']:,} stamps"


def _confuser_line(metrics: dict) -> str:
    """'; confusers: k/n (x%) above the threshold passing 1% of plain controls, AUROC lenses vs confusers y'."""
    m = metrics.get("confusers") or {}
    conf = (m.get("kinds") or {}).get("all confusers")
    key = next((k for k, op in (m.get("operating_points") or {}).items() if op["threshold"] is not None), None)
    if not conf or key is None or conf["fpr"].get(key) is None:
        return ""
    f = conf["fpr"][key]
    return (f"; confusers: {f['k']}/{f['n']} ({f['rate']:.0%}) above the threshold passing {float(key):.0%} of plain "
            f"controls, AUROC lenses vs confusers {conf['auroc_vs_lenses']:.3f}")


def score_candidates(d: Demo) -> tuple[str, bool]:
    """Score the real DR10 lens candidates (all positives); a missing folder is one line, not a failure."""
    from darkhaloscope.score.config import ScoreConfig
    from darkhaloscope.score.infer import score_data

    folder = d.real_candidates
    if not folder or not Path(folder).is_dir():
        return f"{folder or 'no folder given'}: no real lens candidates here; the report has no real-lens section", True
    s = score_data(str(d.run_dir / "best.pt"), folder, d.out / "scores" / "real_candidates.parquet",
                   ScoreConfig(device="cpu"), progress=False)
    d.results["candidate_scores"] = s.out
    return f"{s.rows} real lens candidates from {folder} scored (positives, never controls) -> {s.out}", True


def real_lenses(d: Demo) -> tuple[str, bool]:
    """How many confirmed real lenses (../shared/data/ps1_sled_lenses) the model finds at the thresholds set
    on the test controls brought to each lens's own sky noise (noise-matched FPR 1% and 10%), next to the
    DR10 candidates; a missing folder is one line, not a failure."""
    from darkhaloscope.config import load_config
    from darkhaloscope.evaluate.config import EvaluateConfig
    from darkhaloscope.evaluate.hostrange import INSIDE_HOSTS
    from darkhaloscope.evaluate.knownlenses_report import measure_known_lenses

    folder = d.real_lenses
    if not folder or not Path(folder).is_dir():
        return f"{folder or 'no folder given'}: no real lenses here; skipped", True
    cfg = load_config(EvaluateConfig, None, {"known_lens_fprs": [1e-2], "noise_match_fprs": [1e-2, 1e-1]})
    m = measure_known_lenses(folder, str(d.scores), cfg, checkpoint=str(d.run_dir / "best.pt"), data=str(d.good),
                             out_dir=d.out / "scores" / "real_lenses", log=lambda m: d.say(f"  {m}"))
    if m is None or m.noise is None:
        return f"{folder}: not measured ({'no lens scored' if m is None else m.noise_note})", False
    d.results["real_lenses_at_depth"] = m.as_dict()  # "real_lenses" is evaluate's headline line (a string)
    cells = ", ".join(f"{c.found}/{c.n} ({c.recall:.0%}, 95% CI {c.lo:.0%}-{c.hi:.0%}) at noise-matched FPR {k}"
                      for k, c in m.noise_recall["all"].items() if c.resolvable)
    plain = m.recall["all"]["0.01"]
    line = f"{m.n} real lenses of {Path(folder).name}: {cells or 'no FPR resolvable'}"
    if m.sim_depth is not None:  # what the same model finds of the simulated lenses brought to their depths
        line += "; simulated lenses at their depths: " + m.sim_depth.summary("noise-matched FPR")
    line += f"; {plain.found}/{plain.n} at FPR 0.01 of the DR10-depth controls" if plain.resolvable else ""
    line += f" ({m.merged} duplicate(s) merged)" if m.merged else ""
    inside = m.noise_recall.get(INSIDE_HOSTS, {})
    if inside:  # some lenses' hosts lie outside the controls' brightness range: the like-for-like figure
        line += "; on hosts inside the controls' brightness range: " + ", ".join(
            f"{c.found}/{c.n} at noise-matched FPR {k}" for k, c in inside.items() if c.resolvable)
    dr10 = (d.results.get("metrics") or {}).get("known_lenses") or {}
    nm10 = ((dr10.get("noise_matched") or {}).get("recall") or {}).get("all") or {}
    if dr10.get("n"):
        c10 = [f"{v['found']}/{v['n']} at noise-matched FPR {k}" for k, v in nm10.items() if v.get("resolvable")]
        line += f"; DR10 candidates: {', '.join(c10) or 'see the report'}"
    d.results["real_lenses_at_depth_line"] = line
    return line, True


def score_real(d: Demo) -> tuple[str, bool]:
    from darkhaloscope.score.config import ScoreConfig
    from darkhaloscope.common.ranking import auroc
    from darkhaloscope.score.infer import score_data

    s = score_data(str(d.run_dir / "best.pt"), str(d.real), d.out / "scores" / "real_hosts.parquet",
                   ScoreConfig(device="cpu"), progress=False)
    t = pq.read_table(s.out, columns=["label", "logit"])
    a = auroc(t["label"].to_numpy().astype("int8"), t["logit"].to_numpy())
    return f"AUROC {a} on {s.rows:,} stamps injected into real DR10 hosts (never trained on)", True


def review(d: Demo) -> tuple[str, bool]:
    from darkhaloscope.config import load_config
    from darkhaloscope.review.config import QUICK, ReviewConfig
    from darkhaloscope.review.review import run_review

    rcfg = load_config(ReviewConfig, None, dict(QUICK) if d.size.quick_review else {})
    rv = run_review(str(d.good), d.run_dir, d.tcfg(), rcfg, out=d.report / "review.md",
                    info={"command": d.command, **_version()}, say=lambda m: d.say(f"  {m}"))
    d.results["review"] = rv
    extra = f"; blocking: {rv.blocking[0][1].message}" if rv.blocking else ""
    return f"{rv.headline()}{extra}", rv.verdict == "GO"


def headline(d: Demo) -> list[str]:
    """The figures a demo ends with (computed by its stages; absent when their stage did not run)."""
    lines = []
    t = d.results.get("train")
    if t and t["best"].get("val_auroc") is not None:
        lines.append(f"trained: best val AUROC {t['best']['val_auroc']:.4f} at epoch {t['best'].get('epoch')} of "
                     f"0-{t['epochs'] - 1}")
    m = d.results.get("metrics")
    if m:
        lines.append(_auroc_line(m) + _confuser_line(m))
    for key in ("real_lenses", "real_lenses_at_depth_line"):  # DR10 candidates (evaluate), PS1 lenses at their depth
        if d.results.get(key):
            lines.append(d.results[key])
    rv = d.results.get("review")
    if rv is not None:
        lines.append(f"review: {rv.verdict}" + (f" ({len(rv.blocking)} blocking reason(s))" if rv.blocking else ""))
    return lines


def to_open(d: Demo, out: Path) -> list[tuple[Path, str]]:
    """(path, what it holds) of the files a user opens after the demo, those that exist."""
    items = [(d.report / "report.html", "the evaluation: curves, galleries, look-alikes, real lenses"),
             (d.report / "review.html", "GO/NO-GO review of the tier and the run"),
             (d.run_dir / "best.pt", "the trained model"),
             (out / "demo_summary.json", "every stage's result and time")]
    return [(p, what) for p, what in items if p.exists()]


def _version() -> dict:
    from darkhaloscope.config import run_info

    info = run_info([])
    return {"version": info["version"], "git_commit": info["git_commit"]}
