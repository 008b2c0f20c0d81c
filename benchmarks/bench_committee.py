"""Committee and calibration benchmark (results: benchmarks/RESULTS.md, section "committees and calibration").

    # the demo tier and three small_cnn members (seeds 0, 1, 2), as `dhs demo` trains its one run:
    dhs simulate --out B/sim --tier demo --rows 12000 --seed 1 --confusers=0.5 --engine torch   # the full demo's tier (demo.stages.SIZES)
    for s in 0 1 2; do dhs train --data B/sim/demo --out B/run_s$s --preset cpu-demo --epochs=8 --seed=$s; done
    python benchmarks/bench_committee.py --data B/sim/demo --runs B/run_s0 B/run_s1 B/run_s2 --out B/committee

Scores the test split with the committee (`dhs score --checkpoint ... x3`, mean logit, then mean rank),
evaluates each
(`dhs evaluate`: the committee's FPR at the best member's recall against that member, paired bootstrap
95% interval of the difference), and for every member the test-split ECE of the raw score sigmoid(logit)
and of the calibrated sigmoid(logit / T) (T fitted on val by `dhs train`), with a bootstrap 95% interval
of the change. Prints one JSON document (also written to OUT/bench_committee.json).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def ece_change(labels: np.ndarray, z: np.ndarray, t: float, n_boot: int, seed: int = 0) -> dict:
    """Test ECE before / after dividing the logits by t, with a bootstrap interval of after - before."""
    from darkhaloscope.common.calibration import ece, sigmoid

    rng = np.random.default_rng(seed)
    before, after = ece(labels, sigmoid(z)), ece(labels, sigmoid(z / t))
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, len(z), len(z))
        diffs[i] = ece(labels[idx], sigmoid(z[idx] / t)) - ece(labels[idx], sigmoid(z[idx]))
    return {"temperature": t, "ece_raw": before, "ece_calibrated": after, "change": after - before,
            "change_ci95": [float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the tier the members were trained on (test split scored)")
    ap.add_argument("--runs", nargs="+", required=True, help="run folders of the members (best.pt each)")
    ap.add_argument("--out", required=True, help="folder for the scores file, the report and the JSON")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    args = ap.parse_args(argv)

    import pyarrow.parquet as pq

    from darkhaloscope.cli import main as dhs

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpts = [str(Path(r) / "best.pt") for r in args.runs]
    committees, seconds = {}, {}
    for combine in ("logit", "rank"):
        scores = out / f"committee_{combine}_test.parquet"
        t0 = time.perf_counter()
        assert dhs(["score", *[a for c in ckpts for a in ("--checkpoint", c)], "--data", args.data, "--split", "test",
                    "--combine", combine, "--out", str(scores), "--quiet"]) == 0
        seconds[combine] = round(time.perf_counter() - t0, 1)
        rep = out / f"report_{combine}"
        assert dhs(["evaluate", str(scores), "--out", str(rep), "--no-data", f"--n_boot={args.n_boot}",
                    "--baselines=false"]) == 0
        committees[combine] = json.loads((rep / "metrics.json").read_text())
    m = committees["logit"]
    scores = out / "committee_logit_test.parquet"
    t = pq.read_table(scores)
    y = t["label"].to_numpy().astype(np.int8)
    info = json.loads(pq.ParquetFile(scores).schema_arrow.metadata[b"darkhaloscope.scores"])
    calib = {}
    for i, mem in enumerate(info["committee"]["members"]):
        z = t[f"logit_m{i}"].to_numpy().astype(np.float64)
        calib[f"seed {mem['seed']}"] = ece_change(y, z, mem["temperature"], args.n_boot)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average": os.getloadavg(),
              "test_rows": int(len(y)), "score_seconds": seconds, "committee": m["committee"],
              "committee_rank": committees["rank"]["committee"],
              "ece_test": calib, "evaluate_ece": m.get("calibration")}
    (out / "bench_committee.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
