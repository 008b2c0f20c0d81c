"""`run_demo`: the stages of `dhs demo` in order, each printed with its result and time; then one row per stage,
the headline figures and the files to open (`stages.headline`, `stages.to_open`), and DIR/demo_summary.json
(with the machine and digests: what varies between machines). Exit 0 when every stage is as expected (test
AUROC at least the size's bound in `stages.SIZES`: 0.75 for the full demo, 0.95 for --quick), else 1.

    dhs demo --out demo_out            # 12,000 simulated stamps, polar_fourier, 8 epochs (times: docs/index.md)
    dhs demo --out demo_out --quick    # 600 stamps with bright arcs, 3 epochs (a smoke test)
    dhs demo --out demo_out --real-hosts ../shared/data/dr10_cutouts   # + a tier on real DR10 hosts
    dhs demo --out demo_out --confuser-weight 3   # look-alikes weigh 3x in the loss (the trade: docs/models.md)
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

from darkhaloscope.demo import stages as S
from darkhaloscope.errors import UsageError
from darkhaloscope.common.jsonio import write_json

REAL_CANDIDATES = "../shared/data/dr10_cutouts"  # real DR10 lens candidates beside a checkout (CI layout)
GRADE_TOP = 200  # candidates the printed `dhs grade serve` command adds: the top of the test split
REAL_LENSES = "../shared/data/ps1_sled_lenses"  # 144 confirmed lenses in PS1 imaging (docs/real-lenses.md)
# (stage name, function, runs only with --real-hosts); a later stage is one more line here
STAGES: list[tuple[str, Callable[[S.Demo], tuple[str, bool]], bool]] = [
    ("simulate demo tier", S.simulate, False),
    ("make debug tier", S.debug_tier, False),
    ("simulate real-host tier", S.real_hosts, True),
    ("audit debug tier (expect NO-GO)", S.audit_debug, False),
    ("audit demo tier (expect GO)", S.audit_demo, False),
    ("audit real-host tier (expect GO)", S.audit_real, True),
    ("train on debug tier (expect refusal)", S.refuse_debug, False),
    ("train (cpu-demo preset)", S.train, False),
    ("score test split", S.score, False),
    ("score real lens candidates", S.score_candidates, False),
    ("evaluate test split", S.evaluate, False),
    ("real lenses at their own depth", S.real_lenses, False),
    ("score real-host tier", S.score_real, True),
    ("review demo tier + run (expect GO)", S.review, False),
]


def run_demo(out: str | Path, *, quick: bool = False, real_hosts: str | None = None, workers: int = 0,
             seed: int = 1, console=None, real_candidates: str | None = REAL_CANDIDATES,
             confuser_weight: float = 1.0, real_lenses: str | None = REAL_LENSES) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    if real_hosts and not Path(real_hosts).is_dir():
        raise UsageError(f"--real-hosts {real_hosts}: not a folder; give the folder of DR10 npz cutouts "
                         "(e.g. ../shared/data/dr10_cutouts)")
    from darkhaloscope.configargs import preset_path
    from darkhaloscope.train.config import CPU_PRESET

    cfg_path = preset_path("train", CPU_PRESET)  # package data: found installed editable or not
    out = Path(out)
    size = S.SIZES["quick" if quick else "full"]
    if not (math.isfinite(confuser_weight) and confuser_weight > 0):
        raise UsageError(f"--confuser-weight {confuser_weight:g}: give a finite number > 0 (1 = look-alikes weigh as "
                         "every other row)")
    weighted = confuser_weight != 1
    if weighted and size.sim.get("confusers") == "0":
        raise UsageError(f"--confuser-weight {confuser_weight:g}: the --quick tier has no look-alikes to weigh; "
                         "drop --quick (the full demo's tier carries them) or --confuser-weight")
    command = (f"dhs demo --out {out}" + (" --quick" if quick else "")
               + (f" --real-hosts {real_hosts}" if real_hosts else "")
               + (f" --confuser-weight {confuser_weight:g}" if weighted else ""))
    d = S.Demo(out=out, size=size, quick=quick, workers=workers or os.cpu_count() or 1,
               seed=seed, real_hosts=real_hosts, train_config=cfg_path, command=command,
               real_candidates=real_candidates, real_lenses=real_lenses,
               train_overrides={"confuser_weight": confuser_weight} if weighted else {},
               say=lambda m: console.print(Text(m, style="dim")))
    console.print(Text(f"{command}: {d.size.rows:,} simulated stamps, {d.tcfg().model} on CPU, {d.workers} worker(s); "
                       f"everything goes to {out}/"))
    rows, t_start = [], time.perf_counter()
    for name, fn, needs_real in STAGES:
        if needs_real and not real_hosts:
            continue
        console.print(Text(f"{name} ...", style="bold"))
        t0 = time.perf_counter()
        result, ok = fn(d)
        dt = time.perf_counter() - t0
        rows.append({"stage": name, "result": result, "seconds": round(dt, 1), "ok": ok})
        console.print(Text.assemble(("  ok " if ok else "  UNEXPECTED ", "green" if ok else "bold red"), result,
                                    (f" ({dt:.1f} s)", "dim")))
    total = time.perf_counter() - t_start
    write_json(out / "demo_summary.json", {"command": command, "seconds": round(total, 1), "cpus": os.cpu_count(),
                                           "load_average": os.getloadavg(), "machine": machine(),
                                           "digests": digests(d), "stages": rows})
    table = Table(title=f"dhs demo: {total:.0f} s in all")
    for col in ("stage", "", "time"):
        table.add_column(col, justify="right" if col == "time" else "left")
    for r in rows:
        table.add_row(Text(r["stage"]), Text("ok", "green") if r["ok"] else Text("UNEXPECTED", "bold red"),
                      f"{r['seconds']:.1f} s")
    console.print(table)
    for line in S.headline(d):
        console.print(Text(line), highlight=False)
    console.print(Text("open:", style="bold"))
    for path, what in S.to_open(d, out):
        console.print(Text.assemble(f"  {path}", (f"  {what}", "dim")))
    m = machine()
    console.print(Text(f"Same seed, same machine: the same figures. Another CPU (here {m['torch_cpu_capability']}, "
                       f"{m['torch_threads']} torch thread(s)) rounds training's floats differently, so counts such as "
                       "the look-alikes above the threshold move (digests: demo_summary.json).", style="dim"))
    problems = [f"{r['stage']}: {r['result']}" for r in rows if not r["ok"]]
    if problems:
        console.print(Text.assemble(("demo failed", "bold red"), ": " + "; ".join(problems)))
        return 1
    console.print(Text(f"grade its best candidates by eye: {grade_command(d.scores, out)}"))
    return 0


def grade_command(scores: Path, out: Path) -> str:
    """The one command that opens the demo's scored candidates in the grading web app (docs/grading.md)."""
    return f"dhs grade serve {scores} --db {out / 'grades.sqlite'} --top {GRADE_TOP}"


def machine() -> dict:
    """What makes one seed train to other figures on another machine: the CPU's vector unit (torch and numpy
    choose their kernels by it, and each rounds differently), torch's threads, and the library versions."""
    import platform

    import numpy as np
    import torch

    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as features
    return {"arch": platform.machine(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "numpy_simd": [k for k in ("AVX512F", "AVX2", "FMA3", "ASIMD") if features.get(k)],
            "torch": torch.__version__, "numpy": np.__version__}


def digests(d: S.Demo) -> dict[str, str]:
    """sha256 of the demo tier's parquet files and of the trained weights: two machines' summaries show
    whether the data or the training differed (absent when the stage did not run)."""
    import hashlib

    out = {}
    files = sorted(d.good.rglob("*.parquet")) if d.good.is_dir() else []
    if files:
        h = hashlib.sha256()
        for p in files:
            h.update(p.relative_to(d.good).as_posix().encode() + b"\0" + p.read_bytes())
        out["demo tier"] = h.hexdigest()
    if (d.run_dir / "best.pt").is_file():
        import torch

        state = torch.load(d.run_dir / "best.pt", map_location="cpu", weights_only=True).get("model") or {}
        h = hashlib.sha256()
        for k, v in state.items():
            h.update(k.encode() + b"\0" + v.detach().cpu().contiguous().numpy().tobytes())
        out["model weights"] = h.hexdigest()
    return out
