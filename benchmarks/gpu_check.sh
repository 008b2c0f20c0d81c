#!/usr/bin/env bash
# gpu_check.sh: every registered model on one CUDA GPU (bf16, channels_last, batch 256) with the real input
# pipeline, and a short real `dhs train` of the default model.
# Measures: train-step samples/s on synthetic tensors and with the loader (packed tier), which one limits,
# forward-only (scoring) samples/s, and the wall time of a short real `dhs train` run. Goal (issue 5):
# >= 10,000 samples/s on one H100 with the loader not the bottleneck. Takes < 5 min on an H100.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]                     # on the GPU machine, from the repo root
#   DHS_GPU_CHECK_ALLOW_CPU=1 DHS_GPU_CHECK_ROWS=300 DHS_GPU_CHECK_STEPS=2 DHS_GPU_CHECK_MODELS=small_cnn \
#     bash benchmarks/gpu_check.sh /tmp/gpuchk                  # CPU dry run: proves the script, not the speed
#
# Knobs (env): DHS_GPU_CHECK_ROWS (simulated rows, 12000), DHS_GPU_CHECK_STEPS (timed steps, 60),
# DHS_GPU_CHECK_BATCH (256), DHS_GPU_CHECK_WORKERS (loader workers, cores - 2), DHS_GPU_CHECK_EPOCHS (2),
# DHS_GPU_CHECK_MODELS (default: every registered model, `dhs bench train --model all`; timm:NAME models too
# where timm is installed: pip install -e '.[cuda]'),
# DHS_GPU_CHECK_TRAIN_MODEL (resnet18: the model of the short real training run).
# DHS_GPU_CHECK_CONFUSERS=1 also runs the issue-10 confuser benchmark at GPU scale (about 3-5 min more):
# benchmarks/bench_confusers.py --arms after on DHS_GPU_CHECK_CONFUSER_ROWS (40000) rows, model
# DHS_GPU_CHECK_CONFUSER_MODEL (polar_fourier, the CPU demo's net, docs/models.md "Where the lens is"; e.g. resnet18_s2 with
# DHS_GPU_CHECK_CONFUSER_SET="coords=r pooling=radial" for a large Cartesian net that knows the centre),
# DHS_GPU_CHECK_CONFUSER_EPOCHS (10) epochs, preset gpu, plus the TrainConfig overrides DHS_GPU_CHECK_CONFUSER_SET;
# its table goes to OUT_DIR/confusers.txt and the end of summary.txt.
# The injection engines (issue 23: `dhs bench simulate --engine torch --device cuda`, DHS_GPU_CHECK_SIM_STAMPS rows,
# 1024) are compared next, then on-the-fly training (`dhs bench train --inject synthetic`, render vs model per step,
# DHS_GPU_CHECK_OTF_STEPS 20); their lines are appended to summary.txt.
# Installs nothing heavy: uses the machine's torch (pip-installs torch only when it is missing), and this
# package with --no-deps. Results: OUT_DIR/summary.txt and the JSON files beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp}/dhs_gpu_check}
ROWS=${DHS_GPU_CHECK_ROWS:-12000}
STEPS=${DHS_GPU_CHECK_STEPS:-60}
BATCH=${DHS_GPU_CHECK_BATCH:-256}
CORES=$(nproc)
WORKERS=${DHS_GPU_CHECK_WORKERS:-$(( CORES > 3 ? CORES - 2 : 1 ))}
EPOCHS=${DHS_GPU_CHECK_EPOCHS:-2}
FIRST=${DHS_GPU_CHECK_TRAIN_MODEL:-resnet18}
mkdir -p "$OUT"
T0=$(date +%s)
log() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*"; }

probe='import torch; print(int(torch.cuda.is_available()))'
CUDA=$(python -c "$probe" 2>/dev/null) || { log "torch missing: pip install torch (CUDA build)"; pip install -q torch; CUDA=$(python -c "$probe"); }
if [[ "$CUDA" == 1 ]]; then
  DEV=cuda; PREC=bf16
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" || true
elif [[ "${DHS_GPU_CHECK_ALLOW_CPU:-0}" == 1 ]]; then
  DEV=cpu; PREC=fp32; log "no CUDA: CPU dry run (DHS_GPU_CHECK_ALLOW_CPU=1), fp32; figures are NOT GPU figures"
  echo "cpu dry run" > "$OUT/gpu.txt"
else
  echo "gpu_check: torch.cuda.is_available() is False; run on a CUDA machine or set DHS_GPU_CHECK_ALLOW_CPU=1" >&2
  exit 1
fi
python - <<'PY' || { log "installing the missing runtime dependencies"; pip install -q numpy pyarrow fsspec s3fs pyyaml rich scikit-learn scipy lenstronomy; }
import pyarrow, yaml, rich, sklearn, scipy, fsspec, lenstronomy  # noqa: F401
PY
python -c "import darkhaloscope" 2>/dev/null || pip install -q -e . --no-deps

python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
MODELS=${DHS_GPU_CHECK_MODELS:-$(python -c "from darkhaloscope.models import list_models; print(' '.join(list_models()))")}
log "models: $MODELS"

log "simulate $ROWS rows"
rm -rf "$OUT/sim" "$OUT/packed" "$OUT/run"
dhs simulate --out "$OUT/sim" --tier gpu --rows "$ROWS" --seed 0 --workers "$CORES" -q
DATA="$OUT/sim/gpu"
if dhs pack --help >/dev/null 2>&1; then
  log "pack to float16 shards"
  dhs pack "$DATA" "$OUT/packed" --workers "$CORES" --json > "$OUT/pack.json"
  DATA="$OUT/packed"
else
  log "dhs pack not available: benchmarking the npz tier"
fi

for MODEL in $MODELS; do
  log "bench train $MODEL ($DEV, $PREC, channels_last, batch $BATCH, $WORKERS workers)"
  dhs bench train --model "$MODEL" --device "$DEV" --precision "$PREC" --channels-last --batch-size "$BATCH" \
    --steps "$STEPS" --warmup-steps 5 --data "$DATA" --num-workers "$WORKERS" --json > "$OUT/bench_${MODEL//:/_}.json"
done

log "real training run: $FIRST, $EPOCHS epoch(s)"
TR0=$(date +%s.%N)
dhs train --data "$DATA" --out "$OUT/run" --preset gpu --model="$FIRST" --device="$DEV" --precision="$PREC" \
  --epochs="$EPOCHS" --batch_size="$BATCH" --num_workers="$WORKERS" --progress=false --val_batch_size=1024
TR1=$(date +%s.%N)

python - "$OUT" "$TR0" "$TR1" "$FIRST" <<'PY' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
out, t0, t1, first = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print("gpu_check summary:", " | ".join((out / "gpu.txt").read_text().split("\n")).strip(" |"))
for f in sorted(out.glob("bench_*.json")):
    r = json.loads(f.read_text())
    print(f"{r['model']:<16} {r['fwd_gflops_per_stamp']:>6} GFLOPs batch {r['batch_size']} {r['precision']} channels_last={r['channels_last']}: "
          f"train step synthetic {r['synthetic_samples_per_s']:>9,.0f}/s | loader alone {r['loader_samples_per_s']:>9,.0f}/s "
          f"({'packed' if r['packed'] else 'npz'}, {r['num_workers']} workers) | train with loader "
          f"{r['pipeline_train_samples_per_s']:>9,.0f}/s | forward only {r['forward_only_samples_per_s']:>9,.0f}/s "
          f"| limited by {r['limit']}")
rows = [json.loads(l) for l in (out / "run" / "metrics.jsonl").read_text().splitlines()]
summ = json.loads((out / "run" / "summary.json").read_text())
print(f"dhs train {first}: {len(rows)} epoch(s), {summ['steps']} steps in {t1 - t0:.1f} s wall "
      f"(incl. start-up and validation); epoch samples/s {[r['samples_per_s'] for r in rows]}; "
      f"val AUROC {[round(r['val_auroc'], 4) for r in rows]}")
bench_first = out / f"bench_{first.replace(':', '_')}.json"
if not bench_first.is_file():
    sys.exit(0)  # the trained model was not among DHS_GPU_CHECK_MODELS: no goal line
r = json.loads(bench_first.read_text())
goal = r["pipeline_train_samples_per_s"] >= 10_000 and r["limit"] == "model step"
print(f"goal ({first}) >= 10,000 samples/s with the loader not the bottleneck: {'MET' if goal else 'NOT MET'}")
PY
# injection engines (issue 23): the torch engine on this device against the numpy one, same plan and seed; goal on
# one H100: >= 50,000 injected stamps/s. DHS_GPU_CHECK_SIM_STAMPS rows each (1024); numpy's pass takes ~1 min.
SIM_STAMPS=${DHS_GPU_CHECK_SIM_STAMPS:-1024}
log "injection engines: torch on $DEV against numpy, $SIM_STAMPS rows each"
dhs bench simulate --engine torch --device "$DEV" --stamps "$SIM_STAMPS" --tier-rows 0 --json > "$OUT/simulate_engines.json"
python - "$OUT/simulate_engines.json" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
r = json.loads(open(sys.argv[1]).read())
print(f"injection ({r['device']}, {r['rows_timed']} rows, steady state): torch {r['torch_rows_per_s']:,.0f} rows/s wall "
      f"({r['torch_rows_per_cpu_s']:,.0f} per CPU s) | numpy {r['numpy_rows_per_s']:,.0f} rows/s | torch/numpy wall "
      f"{r['torch_over_numpy_wall']:.1f}x, per CPU s {r['torch_over_numpy_per_core']:.1f}x (rendering alone "
      f"{r['torch_over_numpy_render_per_core']:.1f}x; npz encoding {r['npz_encode_cpu_ms_per_row']:.1f} ms CPU per row)")
if r["device"] == "cuda":
    goal = r["torch_rows_per_s"] >= 50_000
    print(f"goal >= 50,000 injected stamps/s on the GPU (whole rows incl. npz encoding): {'MET' if goal else 'NOT MET'}")
PY
# on-the-fly training (issue 23: dhs train --inject): each step renders its batch on the device (sim device), then
# steps $FIRST; render and model seconds per step. DHS_GPU_CHECK_OTF_STEPS timed steps (20).
OTF_STEPS=${DHS_GPU_CHECK_OTF_STEPS:-20}
log "on-the-fly training: render on $DEV + $FIRST step, batch $BATCH, $OTF_STEPS steps"
dhs bench train --inject synthetic --sim.device="$DEV" --sim.confusers=0.5 --model "$FIRST" --device "$DEV" \
  --precision "$PREC" --channels-last --batch-size "$BATCH" --steps "$OTF_STEPS" --warmup-steps 3 --json > "$OUT/onthefly.json"
python - "$OUT/onthefly.json" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
r = json.loads(open(sys.argv[1]).read())
print(f"on-the-fly training ({r['model']}, {r['device']}, batch {r['batch_size']}, {r['engine']}): render "
      f"{r['render_ms_per_step']:,.1f} ms + model {r['model_ms_per_step']:,.1f} ms per step, rendering "
      f"{100 * r['render_frac_wall']:.0f}% of the step; {r['onthefly_samples_per_s']:,.0f} samples/s "
      f"(stored-tensor step alone {r['synthetic_samples_per_s']:,.0f}/s)")
PY
if [[ "${DHS_GPU_CHECK_CONFUSERS:-0}" == 1 ]]; then
  CM=${DHS_GPU_CHECK_CONFUSER_MODEL:-polar_fourier}
  log "confuser benchmark: $CM, ${DHS_GPU_CHECK_CONFUSER_ROWS:-40000} rows, ${DHS_GPU_CHECK_CONFUSER_EPOCHS:-10} epochs"
  python benchmarks/bench_confusers.py --out "$OUT/confusers" --arms after --workers "$CORES" \
    --rows "${DHS_GPU_CHECK_CONFUSER_ROWS:-40000}" --epochs "${DHS_GPU_CHECK_CONFUSER_EPOCHS:-10}" --preset gpu \
    --model "$CM" --train-set device="$DEV" precision="$PREC" num_workers="$WORKERS" \
    ${DHS_GPU_CHECK_CONFUSER_SET:-} | tee "$OUT/confusers.txt"
  { echo "confusers ($CM ${DHS_GPU_CHECK_CONFUSER_SET:-}, bench_confusers.py --arms after):"; grep '^|' "$OUT/confusers.txt"; } >> "$OUT/summary.txt"
fi
log "done: $OUT/summary.txt"
