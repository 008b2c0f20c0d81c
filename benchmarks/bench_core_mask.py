"""Core-masked AUROC by Einstein radius: is a drop under `dhs review`'s core-masked probe a central-brightness
shortcut, or a net thrown by a galaxy without a core?

    python benchmarks/bench_core_mask.py --data TIER --split val --runs RUN_A RUN_B ...

For each run's best.pt: AUROC on the split's stamps as they are and with r < 4 px replaced by sky noise (the
probe's `evaluate.probes.mask_core`, seed 0), for all lenses and per theta_E bin (each bin's lenses against
all controls), and the mean logit of controls and lenses before / after. A shortcut on the core would hurt
most where the arc lies outside the mask (large theta_E keeps its whole signal, so it should not drop); a
drop that grows with theta_E means the masked stamps are simply unlike anything in training.
Results: benchmarks/RESULTS.md, section confusers (session 4).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

BINS = ((0.0, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 9.0))  # theta_E, arcsec
CORE_RADIUS_PIX = 4.0  # as review.runcheck


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--runs", nargs="+", required=True)
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from darkhaloscope.common.ranking import auroc
    from darkhaloscope.evaluate.probes import mask_core
    from darkhaloscope.score.infer import infer
    from darkhaloscope.stamps.codec import decode_batch
    from darkhaloscope.stamps.tier import open_tier
    from darkhaloscope.runtime.loading import load_for_inference

    files = open_tier(args.data).files_for(args.split)  # a local hive-partitioned tier
    t = pa.concat_tables([pq.read_table(f.path, columns=["stamp_npz", "is_control", "theta_e_arcsec"]) for f in files])
    images = decode_batch(t["stamp_npz"], where=[args.data] * len(t), on_error="raise").images.astype(np.float32)
    y = 1 - t["is_control"].to_numpy()
    theta = t["theta_e_arcsec"].to_numpy(zero_copy_only=False).astype(float)
    masked = mask_core(images, CORE_RADIUS_PIX, np.random.default_rng(0))
    cpu = torch.device("cpu")
    out = []
    for run in args.runs:
        model, pre, _ = load_for_inference(f"{run}/best.pt", cpu)
        a, b = infer(model, pre, images, cpu), infer(model, pre, masked, cpu)
        row = {"run": run, "all": [auroc(y, a).value, auroc(y, b).value],
               "mean_logit_controls": [float(a[y == 0].mean()), float(b[y == 0].mean())],
               "mean_logit_lenses": [float(a[y == 1].mean()), float(b[y == 1].mean())]}
        for lo, hi in BINS:
            sel = (y == 0) | ((theta >= lo) & (theta < hi))
            row[f"theta_e {lo:g}-{hi:g}"] = [auroc(y[sel], a[sel]).value, auroc(y[sel], b[sel]).value,
                                           int(((theta >= lo) & (theta < hi)).sum())]
        out.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
