"""`dhs demo`: the whole toolkit on data it makes itself, in one command, on a laptop CPU.

    dhs demo --out demo_out                       # ~3 min on 2 cores: 4,000 simulated stamps, small_cnn
    dhs demo --out demo_out --quick               # ~1 min: 600 stamps with bright arcs (smoke test)
    dhs demo --out demo_out --real-hosts ../shared/data/dr10_cutouts   # + a tier on real DR10 hosts

Stages (in-process, through the Python APIs, each printed with its time):
 1. simulate the demo tier (train/val/test, synthetic LRG-like hosts, half controls in every split);
 2. make the users' Phase 4c debug tier from it: every control row dropped with pyarrow;
 3. (--real-hosts) simulate a small tier injecting arcs into the real DR10 cutouts;
 4. audit: the debug tier is NO-GO (naming the split), the good tiers GO; `dhs train` refuses the debug tier;
 5. train small_cnn on CPU (configs/train_cpu_demo.yaml) -> DIR/run/best.pt;
 6. score the test split and evaluate it -> DIR/report/report.html (+ the real-host tier's AUROC);
 7. review the demo tier and the run -> DIR/report/review.md (GO expected);
then a summary table. Exit 0 when every verdict is as expected and test AUROC >= 0.95, else 1.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.markup import escape

from darkhaloscope.errors import RefusedError, UsageError

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"  # repository configs/ (YAML defaults)
MIN_TEST_AUROC = 0.95  # the demo's promise


@dataclass(frozen=True)
class DemoSize:
    rows: int  # stamps of the demo tier, all splits (70/15/15), half controls
    real_rows: int  # stamps of the real-host tier (--real-hosts)
    epochs: int  # small_cnn epochs on CPU
    sim: dict[str, str] = field(default_factory=dict)  # SimConfig overrides (the arcs the demo injects)
    n_boot: int = 1000  # bootstrap replicates of `dhs evaluate`
    probes: bool = True  # model probes (core mask, occlusion maps) in the evaluation report
    quick_review: bool = False  # the review's QUICK preset


# --quick injects brighter, larger arcs (S/N 30-100, theta_E uniform 1.2-2.5") and no confuser controls so that a 3-epoch
# run on 420 train stamps still reaches test AUROC >= 0.95 (a smoke test); the full demo keeps the default simulator apart from S/N >= 5.
SIZES: dict[str, DemoSize] = {
    "full": DemoSize(rows=4000, real_rows=300, epochs=8, sim={"arc_snr_dist": "loguniform:5:60"}),
    "quick": DemoSize(rows=600, real_rows=90, epochs=3, n_boot=200, probes=False, quick_review=True,
                      sim={"arc_snr_dist": "uniform:30:100", "theta_e_arcsec": "1.2,2.5", "theta_e_dist": "uniform",
                           "confusers": "0"}),
}


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


class Stages:
    """Runs named stages, prints each with its time, keeps (stage, result, seconds) rows for the summary."""

    def __init__(self, console):
        self.console, self.rows, self.problems = console, [], []

    def run(self, name: str, fn: Callable[[], tuple[str, bool]]):
        self.console.print(f"[bold]{name}[/] ...")
        t0 = time.perf_counter()
        result, ok = fn()
        dt = time.perf_counter() - t0
        self.rows.append((name, result, dt, ok))
        if not ok:
            self.problems.append(f"{name}: {result}")
        self.console.print(f"  {'[green]ok[/]' if ok else '[bold red]UNEXPECTED[/]'} {escape(str(result))} [dim]({dt:.1f} s)[/]")


def run_demo(out: str | Path, *, quick: bool = False, real_hosts: str | None = None, workers: int = 0,
             seed: int = 1, console=None) -> int:
    from rich.console import Console
    from rich.table import Table

    from darkhaloscope.audit import run_audit
    from darkhaloscope.config import load_config
    from darkhaloscope.evaluate.config import ScoreConfig
    from darkhaloscope.evaluate.score import score_data
    from darkhaloscope.review.config import QUICK, ReviewConfig
    from darkhaloscope.review.review import run_review
    from darkhaloscope.sim.build import simulate_tier
    from darkhaloscope.sim.simconfig import SimConfig
    from darkhaloscope.train.config import TrainConfig
    from darkhaloscope.train.loop import train

    console = console or Console()
    size = SIZES["quick" if quick else "full"]
    out = Path(out)
    if real_hosts and not Path(real_hosts).is_dir():
        raise UsageError(f"--real-hosts {real_hosts}: not a folder; give the folder of DR10 npz cutouts "
                         "(e.g. ../shared/data/dr10_cutouts)")
    cfg_path = CONFIG_DIR / "train_cpu_demo.yaml"
    if not cfg_path.is_file():
        raise UsageError(f"{cfg_path} is missing: run `dhs demo` from a checkout installed with `pip install -e .`")
    workers = workers or os.cpu_count() or 1
    data, run_dir, report = out / "data", out / "run", out / "report"
    good, debug, real = data / "demo", data / "debug_injections_only", data / "real_hosts"
    st = Stages(console)
    t_start = time.perf_counter()
    console.print(f"dhs demo{' --quick' if quick else ''}: {size.rows:,} simulated stamps, small_cnn on CPU, "
                  f"{workers} worker(s); everything goes to {out}/")

    def simulate(tier: str, rows: int, sim_seed: int, **extra):
        cfg = load_config(SimConfig, None, {**size.sim, **extra})
        m = simulate_tier(data, tier, rows, sim_seed, cfg, workers=workers, overwrite=True)
        c = m["counts"]
        return ", ".join(f"{s} {v['injections']}+{v['controls']}" for s, v in c.items()) + " (injections+controls)", True

    st.run("simulate demo tier", lambda: simulate("demo", size.rows, seed))

    def debug_tier():
        kept = make_debug_tier(good, debug)
        return (f"the demo tier with every control dropped (pyarrow), like the Phase 4c debug tier: "
                f"{', '.join(f'{s} {n}' for s, n in kept.items())} injections, 0 controls"), True
    st.run("make debug tier", debug_tier)
    if real_hosts:
        st.run("simulate real-host tier", lambda: simulate("real_hosts", size.real_rows, seed + 1, hosts=str(real_hosts)))

    def audit(tier: Path, expect: str):
        def fn():
            r = run_audit(str(tier))
            errors = sorted(r.by_severity("error"), key=lambda f: ("split 'train'" not in f.message,
                                                                   "split '" not in f.message))  # name a split
            why = f"; {errors[0].message[:150]}" if errors else ""
            return f"{r.headline()}{why}", r.verdict == expect
        return fn
    st.run("audit debug tier (expect NO-GO)", audit(debug, "NO-GO"))
    st.run("audit demo tier (expect GO)", audit(good, "GO"))
    if real_hosts:
        st.run("audit real-host tier (expect GO)", audit(real, "GO"))

    tcfg = load_config(TrainConfig, cfg_path, {"data": str(good), "epochs": size.epochs, "progress": False,
                                               "seed": seed})

    def refuse_debug():
        try:
            train(load_config(TrainConfig, cfg_path, {"data": str(debug), "progress": False}), out / "debug_run")
        except RefusedError as e:
            return f"dhs train refuses it (exit 3): {str(e)[:140]}", True
        return "dhs train did NOT refuse the one-class tier", False
    st.run("train on debug tier (expect refusal)", refuse_debug)
    summary: dict = {}

    def train_good():
        if run_dir.exists():
            shutil.rmtree(run_dir)
        summary.update(train(tcfg, run_dir, argv=["demo", "--out", str(out)]))
        b = summary["best"]
        return f"best val AUROC {b.get('val_auroc', 0):.4f} at epoch {b.get('epoch')} ({summary['steps']} steps)", True
    st.run("train small_cnn", train_good)
    best = run_dir / "best.pt"
    scores = out / "scores" / "test.parquet"
    metrics: dict = {}

    def score_eval():
        import argparse

        from darkhaloscope.evaluate.commands import run_evaluate

        s = score_data(str(best), str(good), scores, ScoreConfig(device="cpu"), split="test", progress=False)
        argv = ["evaluate", str(scores), "--out", str(report), f"--n_boot={size.n_boot}"]
        ns = argparse.Namespace(scores=str(scores), out=str(report), checkpoint=str(best) if size.probes else None,
                                data=None, no_data=False, config=None, set=[f"n_boot={size.n_boot}"], argv=argv)
        if run_evaluate(ns) != 0:
            return "dhs evaluate failed", False
        metrics.update(json.loads((report / "metrics.json").read_text()))
        a = metrics["auroc"]
        ci = a.get("ci95") or {}
        ok = a["value"] is not None and a["value"] >= MIN_TEST_AUROC
        band = f" (95% CI {ci['low']:.4f}-{ci['high']:.4f})" if ci.get("low") is not None else ""
        return f"test AUROC {a['value']:.4f}{band} on {s.rows} stamps, bound >= {MIN_TEST_AUROC}", ok
    st.run("score + evaluate test split", score_eval)
    if real_hosts:
        def score_real():
            from darkhaloscope.common.ranking import auroc

            s = score_data(str(best), str(real), out / "scores" / "real_hosts.parquet", ScoreConfig(device="cpu"),
                           progress=False)
            t = pq.read_table(s.out, columns=["label", "logit"])
            a = auroc(t["label"].to_numpy().astype("int8"), t["logit"].to_numpy())
            return f"AUROC {a} on {s.rows} stamps injected into real DR10 hosts (never trained on)", True
        st.run("score real-host tier", score_real)
    review_box: dict = {}

    def review():
        rcfg = load_config(ReviewConfig, None, dict(QUICK) if size.quick_review else {})
        rv = run_review(str(good), run_dir, tcfg, rcfg, out=report / "review.md",
                        info={"command": f"dhs demo --out {out}" + (" --quick" if quick else "")},
                        say=lambda m: console.print(f"  [dim]{escape(m)}[/]"))
        review_box["rv"] = rv
        extra = f"; blocking: {rv.blocking[0][1].message[:120]}" if rv.blocking else ""
        return f"{rv.headline()}{extra}", rv.verdict == "GO"
    st.run("review demo tier + run (expect GO)", review)

    table = Table(title=f"dhs demo summary ({time.perf_counter() - t_start:.0f} s in all)")
    for col in ("stage", "result", "time"):
        table.add_column(col, overflow="fold", justify="right" if col == "time" else "left")
    for name, result, dt, ok in st.rows:
        table.add_row(name, escape(str(result)) if ok else f"[bold red]{escape(str(result))}[/]", f"{dt:.1f} s")
    console.print(table)
    console.print(f"report: {report / 'report.html'}\nreview: {report / 'review.md'}\nrun:    {run_dir}/ (best.pt)")
    if st.problems:
        console.print(f"[bold red]demo failed[/]: {escape('; '.join(st.problems))}")
        return 1
    return 0
