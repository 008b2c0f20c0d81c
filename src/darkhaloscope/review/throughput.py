"""Throughput and epoch time (section 3 of `dhs review`): `dhs bench loader` and `dhs bench train` on this
machine, the limiting stage, one epoch of the full tier and the planned run (rows x epochs) here and on
the target GPUs, and bytes per epoch streamed from S3 versus a local packed cache.

GPU figures are *measured* when a `dhs bench train --json` file from that GPU is given
(`--set gpu_bench=t4.json,a100.json`); otherwise they are labelled *estimate*, with their assumption:
model step = `gpu_mfu` x peak tensor FLOP/s / (3 x forward FLOPs per stamp); input = the decode rate
per core measured here x the host cores assumed; S3 streaming = `s3_mb_per_s` / bytes per row.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darkhaloscope.errors import UsageError
from darkhaloscope.review.config import ReviewConfig
from darkhaloscope.stamps.fs import is_s3
from darkhaloscope.common.report import Code, Section, fmt_duration
from darkhaloscope.stamps.schema import BANDS, STAMP_SIZE
from darkhaloscope.train.config import TrainConfig


@dataclass(frozen=True)
class GpuSpec:
    peak_tflops: float  # dense tensor-core peak, TFLOP/s, at the precision below (vendor data sheets)
    precision: str  # the mixed precision a run uses there
    host_cores: int  # CPU cores assumed to feed the loader
    note: str


GPU_TARGETS: dict[str, GpuSpec] = {
    "T4": GpuSpec(65.0, "fp16", 2, "Colab T4: 65 TFLOP/s fp16 tensor peak, 2 vCPUs"),
    "A100": GpuSpec(312.0, "bf16", 8, "A100: 312 TFLOP/s bf16 dense, 8 loader cores"),
    "H100": GpuSpec(989.0, "bf16", 16, "H100 SXM: 989 TFLOP/s bf16 dense, 16 loader cores"),
}
USERS_T4_NAIVE_SAMPLES_PER_S = 140.0  # the users' Phase 5 smoke test on a Colab T4 (naive pipeline), measured
PACKED_BYTES_PER_ROW = len(BANDS) * STAMP_SIZE * STAMP_SIZE * 2  # float16 stamp_f16 (+ a few bytes of labels)
COLAB_SESSION_S = 12 * 3600  # a Colab session ends after ~12 h (Pro: up to 24 h): long runs must resume


def split_bytes(tier, split: str) -> tuple[int, int]:
    """(rows, bytes on disk) of the files of one split (from the footers / listing; nothing decoded)."""
    files = tier.files_for(split)
    return sum(f.num_rows for f in files), sum(f.size_bytes for f in files)


def f16_rate_per_core(n: int = 512) -> float:
    """Stamps/s of turning packed float16 bytes into float32 arrays on one core (the packed loader's work)."""
    raw = np.random.default_rng(0).normal(size=(n, len(BANDS), STAMP_SIZE, STAMP_SIZE)).astype(np.float16).tobytes()
    t = time.perf_counter()
    np.frombuffer(raw, np.float16).reshape(n, len(BANDS), STAMP_SIZE, STAMP_SIZE).astype(np.float32)
    return n / max(time.perf_counter() - t, 1e-9)


def load_gpu_benches(paths: list[str]) -> dict[str, dict]:
    """{target name: bench dict} from `dhs bench train --json` files whose device names a target GPU."""
    out = {}
    for p in paths:
        try:
            d = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UsageError(f"gpu_bench file {p}: {type(e).__name__}: {e}; give the output of "
                             "`dhs bench train --json > FILE` run on that GPU") from None
        name = next((t for t in GPU_TARGETS if t in str(d.get("device", ""))), None)
        if name is None or "synthetic_samples_per_s" not in d:
            raise UsageError(f"gpu_bench file {p}: device {d.get('device')!r} is none of {', '.join(GPU_TARGETS)} "
                             "or the file is not `dhs bench train --json` output")
        out[name] = d | {"file": str(p)}
    return out


def bench_here(data: str, tcfg: TrainConfig, rcfg: ReviewConfig, device, s3=None) -> dict:
    """Run `bench loader` and `bench train --data` here; return both results and the batch used."""
    from darkhaloscope.train.loader_bench import bench_loader
    from darkhaloscope.train.bench import bench_train

    loader = bench_loader(data, s3, rows=rcfg.loader_rows, threads=1, norm="none", naive=True)
    batch = rcfg.bench_batch_size or tcfg.batch_size  # the batch that will run: per-stamp speed depends on it
    workers = min(tcfg.num_workers, os.cpu_count() or 1)
    if device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)
    train = bench_train(model=tcfg.model, batch_size=batch, precision=tcfg.precision,
                        channels_last=tcfg.channels_last and device.type == "cuda", steps=rcfg.bench_steps,
                        warmup_steps=1, device=str(device), data=data, num_workers=workers, s3=s3,
                        split=tcfg.train_split)
    out = {"loader": loader, "train": train, "batch_size": batch}
    if device.type == "cuda":
        out["gpu_peak_bytes"] = int(torch.cuda.max_memory_allocated(device))  # at this batch size
    return out


def gpu_rows(bench: dict, bytes_per_row: float, rcfg: ReviewConfig, fwd_gflops: float, remote: bool = True) -> list[dict]:
    """One row per target GPU: step, input and (remote=True: the tier is on S3) S3 rates, measured or
    estimated, and what limits streaming the npz tier."""
    measured = load_gpu_benches(rcfg.gpu_bench)
    per_core = bench["loader"]["stamps_per_s"]
    f16 = f16_rate_per_core()
    rows = []
    for name, spec in GPU_TARGETS.items():
        m = measured.get(name)
        if m and m.get("model") == bench["train"]["model"]:
            step, source = m["synthetic_samples_per_s"], f"measured ({m['file']}, batch {m['batch_size']})"
        else:
            step = rcfg.gpu_mfu * spec.peak_tflops * 1e12 / (3 * fwd_gflops * 1e9)
            source = (f"estimate: {rcfg.gpu_mfu:.0%} of {spec.peak_tflops:g} TFLOP/s {spec.precision} / "
                      f"(3 x {fwd_gflops:g} GFLOP per stamp)")
        npz = per_core * spec.host_cores
        s3rate = rcfg.s3_mb_per_s * 1e6 / max(bytes_per_row, 1.0) if remote else float("inf")
        stream = min(step, npz, s3rate)
        packed = min(step, f16 * spec.host_cores)
        limit = min((("model step", step), ("npz decode", npz), ("S3 bandwidth", s3rate)), key=lambda kv: kv[1])[0]
        rows.append({"target": name, "source": source, "step_per_s": step, "npz_decode_per_s": npz,
                     "s3_per_s": s3rate, "stream_per_s": stream, "packed_per_s": packed, "limit_streaming": limit,
                     "note": spec.note + f"; decode {per_core:,.0f} stamps/s per core measured here"})
    return rows


def inject_throughput_section(data: str, tcfg: TrainConfig, rcfg: ReviewConfig, device, s3=None) -> Section:
    """An on-the-fly run (dhs train --inject): each step renders its batch, then trains on it; measured here as
    that run does it (its simulate config, hosts and model), split into rendering and the model step."""
    from darkhaloscope.train.bench import bench_train

    sec = Section("throughput", "Throughput and epoch time")
    t0 = time.perf_counter()
    batch = rcfg.bench_batch_size or tcfg.batch_size
    tr = bench_train(model=tcfg.model, batch_size=batch, precision=tcfg.precision,
                     channels_last=tcfg.channels_last and device.type == "cuda", steps=rcfg.bench_steps, warmup_steps=1,
                     device=str(device), data=data, s3=s3, inject=tcfg.inject, inject_cfg=tcfg)
    step_s = (tr["render_ms_per_step"] + tr["model_ms_per_step"]) / 1e3
    epoch_s = step_s * tcfg.inject_steps_per_epoch
    frac = tr["render_frac_wall"]
    sec.data.update(bench={"train": tr, "batch_size": batch}, epochs=tcfg.epochs, epoch_s_here=epoch_s,
                    planned_run_s_here=epoch_s * tcfg.epochs, render_frac=frac)
    slow = frac > 0.5
    sec.add("bench train --inject", "warning" if slow else "pass",
            f"{tr['model']} batch {batch} on {tr['device']}, {tr['engine']} engine, {tr['rendered_rows_per_batch']} "
            f"rows rendered per batch: rendering {tr['render_ms_per_step']:,.0f} ms + model step "
            f"{tr['model_ms_per_step']:,.0f} ms per step ({frac:.0%} rendering)" + (
                ": rendering limits the run; render on the GPU (--sim.device=cuda) or in loader workers "
                "(--num_workers=N)" if slow else ""),
            f"dhs bench train --inject {tcfg.inject} --model {tcfg.model} --batch-size {batch}" if slow else None)
    sec.add("epoch time here", "info", f"{tcfg.inject_steps_per_epoch:,} steps of {batch} per epoch: "
            f"{fmt_duration(epoch_s)} per epoch, {fmt_duration(epoch_s * tcfg.epochs)} for {tcfg.epochs} epochs on "
            "this machine (validation on the stored val split not included)")
    sec.text("An on-the-fly run reads no training tier: its input cost is the rendering above (no bytes per epoch, "
             "no packed cache); ", Code("dhs bench train --inject HOSTS"), " on the GPU gives the figures there.")
    sec.seconds = time.perf_counter() - t0
    return sec


def throughput_section(tier, data: str, tcfg: TrainConfig, rcfg: ReviewConfig, device, s3=None) -> Section:
    if tcfg.inject:
        return inject_throughput_section(data, tcfg, rcfg, device, s3)
    sec = Section("throughput", "Throughput and epoch time")
    t0 = time.perf_counter()
    rows_train, bytes_train = split_bytes(tier, tcfg.train_split)
    if rows_train == 0:
        sec.add("benchmarks", "info", f"not run: split '{tcfg.train_split}' has no rows")
        sec.seconds = time.perf_counter() - t0
        return sec
    planned = rcfg.planned_rows or rows_train
    bench = bench_here(data, tcfg, rcfg, device, s3)
    ld, tr = bench["loader"], bench["train"]
    here = tr["pipeline_train_samples_per_s"]
    bytes_per_row = bytes_train / rows_train if bytes_train else 0.0
    epoch_here, run_here = planned / here, planned * tcfg.epochs / here
    sec.data.update(bench=bench, planned_rows=planned, epochs=tcfg.epochs, train_rows=rows_train,
                       train_bytes=bytes_train, bytes_per_row=bytes_per_row, epoch_s_here=epoch_here,
                       planned_run_s_here=run_here)
    sec.add("bench loader", "pass", f"decode {ld['stamps_per_s']:,.0f} stamps/s on one core ({ld['mb_per_s']:.0f} MB/s, "
            f"{ld['format']}) vs the naive per-row loop {ld.get('naive_stamps_per_s', 0):,.0f} stamps/s "
            f"({ld.get('ratio') or 0:.1f}x)")
    sec.add("bench train", "pass", f"{tr['model']} batch {bench['batch_size']} on {tr['device']}: model step "
            f"{tr['synthetic_samples_per_s']:,.0f}/s, loader ({tr['num_workers']} workers) {tr['loader_samples_per_s']:,.0f}/s, "
            f"together {here:,.0f}/s; limited by the {tr['limit']}")
    other = (f"; timed at batch {bench['batch_size']}, the run trains at {tcfg.batch_size}: per-stamp speed differs "
             "with the batch (bench_batch_size=0 times the run's)" if bench["batch_size"] != tcfg.batch_size else "")
    sec.add("epoch time here", "info", f"{planned:,} rows: {fmt_duration(epoch_here)} per "
            f"epoch, {fmt_duration(run_here)} for {tcfg.epochs} epochs on this machine at batch "
            f"{bench['batch_size']}{other}")
    remote = is_s3(data)
    gpus = gpu_rows(bench, bytes_per_row or PACKED_BYTES_PER_ROW, rcfg, tr["fwd_gflops_per_stamp"], remote)
    src = "stream npz from S3" if remote else "read the local npz tier"
    sec.data["gpus"] = gpus
    header = ["where", f"stamps/s, {src}", "stamps/s, local packed cache", "limit (npz)",
              f"epoch ({planned:,} rows), npz / packed", f"{tcfg.epochs} epochs, packed", "source"]
    rows = [[f"this machine ({tr['device']})", f"{here:,.0f}", "n/a", tr["limit"], fmt_duration(epoch_here),
             fmt_duration(run_here), "measured"]]
    for g in gpus:
        rows.append([g["target"], f"{g['stream_per_s']:,.0f}", f"{g['packed_per_s']:,.0f}", g["limit_streaming"],
                     f"{fmt_duration(planned / g['stream_per_s'])} / {fmt_duration(planned / g['packed_per_s'])}",
                     fmt_duration(planned * tcfg.epochs / g["packed_per_s"]), f"{g['source']}; {g['note']}"])
    users = USERS_T4_NAIVE_SAMPLES_PER_S
    rows.append(["T4, the users' Phase 5 loop", f"{users:.0f}", "n/a", "naive per-row decode",
                 fmt_duration(planned / users), fmt_duration(planned * tcfg.epochs / users), "measured by the users"])
    sec.table(header, rows)
    gb = 1e9
    reads = (f"streaming the npz tier from S3 reads {planned * bytes_per_row / gb:,.2f} GB every epoch" if remote else
             f"the local npz tier is {planned * bytes_per_row / gb:,.2f} GB per epoch")
    sec.text(f"Bytes per epoch: {reads} ({bytes_per_row / 1e3:.1f} kB/row on disk, "
             f"{tcfg.epochs * planned * bytes_per_row / gb:,.2f} GB for {tcfg.epochs} epochs); a local packed float16 "
             f"cache (dhs pack) holds {planned * PACKED_BYTES_PER_ROW / gb:,.2f} GB. GPU figures are estimates at "
             f"{rcfg.gpu_mfu:.0%} of peak FLOP/s" + (f" and {rcfg.s3_mb_per_s:g} MB/s from S3" if remote else "") +
             "; replace them with dhs bench train --json files from the GPU (--set gpu_bench=FILE).")
    t4 = next(g for g in gpus if g["target"] == "T4")
    t4_run = planned * tcfg.epochs / t4["packed_per_s"]
    if t4_run > COLAB_SESSION_S and not tcfg.checkpoint_uri:
        sec.add("planned run vs a Colab session", "warning", f"{fmt_duration(t4_run)} on a T4 (estimate) is longer than a "
                "Colab session (~12 h) and no checkpoint_uri is set: a disconnect loses the run",
                f"dhs train --data {data} --out RUN --checkpoint_uri s3://BUCKET/runs/NAME --resume auto")
    if remote and t4["limit_streaming"] != "model step" and bytes_per_row:
        sec.add("streaming on a T4", "warning", f"streaming npz from S3 on a T4 is limited by {t4['limit_streaming']} "
                f"({t4['stream_per_s']:,.0f} stamps/s vs a {t4['step_per_s']:,.0f}/s model step): pack to local disk",
                f"dhs pack {data} /content/packed")
    sec.seconds = time.perf_counter() - t0
    return sec
