"""Memory and checkpointing (sections 4 and 5 of `dhs review`).

Memory: peak host RAM of this process (and its children) after the benchmarks, the loader's share for the
planned run (decoded stamps in each worker's shuffle window), and GPU memory at the planned batch size:
`torch.cuda.max_memory_allocated` of a real step on CUDA, otherwise an estimate from the parameters
(weights, gradients, two AdamW moments) plus the activations autograd saves, counted on a 2-stamp batch
and scaled to the batch size.

Checkpointing: `darkhaloscope.train.resume_check` on a scratch run (small_cnn, 2 epochs on real rows of
DATA): SIGKILLed right after its mid-epoch last.pt lands, then resumed with `--resume auto`, it must give
exactly the losses and weights of an uninterrupted run. With a
`checkpoint_uri`, last.pt is also uploaded to a scratch key under it, fetched back and compared byte
for byte, and removed.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import tempfile
import time
from pathlib import Path

import torch

from darkhaloscope.models import count_params, create_model
from darkhaloscope.review.config import ReviewConfig
from darkhaloscope.common.report import Section
from darkhaloscope.stamps.schema import BANDS, STAMP_SIZE
from darkhaloscope.train.config import TrainConfig
from darkhaloscope.train.resume_check import resume_check, scratch_config

GIB = 2 ** 30
STAMP_F32_BYTES = len(BANDS) * STAMP_SIZE * STAMP_SIZE * 4  # one decoded stamp in a loader worker
CUDA_CONTEXT_BYTES = 0.5 * GIB  # CUDA context + cuDNN workspace, assumed for the GPU estimate
GPU_TARGET_GIB = {"T4": 16.0, "A100": 40.0, "H100": 80.0}  # the smallest memory of each target card


def peak_host_rss_bytes() -> int:
    """Peak resident memory of this process and of its largest waited-for child (Linux: ru_maxrss in KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(max(own, kids) * 1024)


def saved_activation_bytes(model: torch.nn.Module, batch: int = 2) -> int:
    """Bytes of the tensors autograd keeps for backward during one forward pass on `batch` stamps (fp32)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        except RuntimeError:
            pass
        return t

    model.train()
    x = torch.zeros(batch, len(BANDS), STAMP_SIZE, STAMP_SIZE)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in seen.items() if ptr not in params)


def gpu_memory_estimate(model_name: str, batch: int, precision: str) -> dict:
    """Training memory at `batch` (bytes): params x 16 (weights, grads, 2 AdamW moments) + activations + context."""
    model = create_model(model_name)
    params = count_params(model)
    per_stamp = saved_activation_bytes(model, 2) / 2
    act = per_stamp * batch * (0.5 if precision in ("bf16", "fp16", "auto") else 1.0)
    total = params * 16 + act + CUDA_CONTEXT_BYTES
    return {"params": params, "activation_bytes_per_stamp_fp32": per_stamp, "estimate_bytes": total}


def memory_section(tcfg: TrainConfig, rcfg: ReviewConfig, device, bench: dict | None) -> Section:
    sec = Section("memory", "Memory")
    t0 = time.perf_counter()
    rss = peak_host_rss_bytes()
    per_worker = (tcfg.shuffle_buffer + tcfg.batch_size * (tcfg.prefetch_factor + 1)) * STAMP_F32_BYTES
    loader = per_worker * max(1, tcfg.num_workers)
    sec.data.update(peak_host_rss_bytes=rss, loader_bytes_per_worker=per_worker, loader_bytes=loader)
    sec.add("peak host RAM (measured)", "pass", f"{rss / GIB:.2f} GiB for this review (benchmarks at batch "
            f"{(bench or {}).get('batch_size', '-')}, {os.cpu_count()} cores)")
    status = "warning" if loader > 10 * GIB else "pass"
    who = (f"{tcfg.num_workers} worker(s) x" if tcfg.num_workers else "the training process (num_workers 0) holds")
    sec.add("loader RAM, planned run", status, f"{who} (shuffle_buffer {tcfg.shuffle_buffer} + "
            f"{tcfg.prefetch_factor + 1} batches of {tcfg.batch_size}) decoded stamps = {loader / GIB:.2f} GiB "
            "(streamed one row group at a time: never a whole file or tier)" + (
                "; more than a 12.7 GiB Colab VM can spare" if status == "warning" else ""),
            "dhs train ... --shuffle_buffer=1024 --num_workers=2" if status == "warning" else None)
    batch = tcfg.batch_size
    if device.type == "cuda" and bench is not None and bench.get("batch_size") == batch:
        peak = bench.get("gpu_peak_bytes", 0)
        sec.add("GPU memory (measured)", "pass", f"{peak / GIB:.2f} GiB peak allocated at batch {batch} on "
                f"{torch.cuda.get_device_name(device)}", peak_bytes=peak)
        need = peak
    else:
        est = gpu_memory_estimate(tcfg.model, batch, tcfg.precision)
        need = est["estimate_bytes"]
        sec.data["gpu_estimate"] = est
        sec.add("GPU memory (estimate)", "info", f"{need / GIB:.1f} GiB at batch {batch} for {tcfg.model} (estimate: "
                f"{est['params'] / 1e6:.2f} M params x 16 B + {est['activation_bytes_per_stamp_fp32'] / 2**20:.1f} MiB "
                f"saved activations per stamp in fp32, halved in bf16/fp16, + 0.5 GiB context)")
    too_small = [g for g, gib in GPU_TARGET_GIB.items() if need > 0.9 * gib * GIB]
    if too_small:
        sec.add("batch fits the GPU", "warning", f"{need / GIB:.1f} GiB does not fit comfortably on "
                f"{', '.join(too_small)} ({', '.join(f'{GPU_TARGET_GIB[g]:g} GiB' for g in too_small)})",
                f"dhs train ... --batch_size={max(8, batch // 2)}")
    sec.seconds = time.perf_counter() - t0
    return sec


def mirror_round_trip(uri: str, local: Path, s3=None) -> dict:
    """Upload `local` under URI/_dhs_review_<pid>/, download it, compare bytes, remove it."""
    from darkhaloscope.stamps.fs import fsspec_filesystem
    from darkhaloscope.train.checkpoint import Mirror

    scratch = f"{uri.rstrip('/')}/_dhs_review_{os.getpid()}"
    m = Mirror(scratch, s3, tries=2, backoff_s=0.5)
    t = time.perf_counter()
    remote = m.upload(local)
    back = local.with_name("mirrored.pt")
    found = m.download(local.name, back)
    seconds = time.perf_counter() - t
    same = found and back.read_bytes() == local.read_bytes()
    fs, root = fsspec_filesystem(scratch, s3)
    try:
        fs.rm(root, recursive=True)
    except (FileNotFoundError, OSError):
        pass
    return {"ok": same, "remote": remote, "bytes": local.stat().st_size, "seconds": seconds}


def checkpoint_section(data: str, tcfg: TrainConfig, rcfg: ReviewConfig, counts: dict, s3=None) -> Section:
    from darkhaloscope.errors import DHSError

    sec = Section("checkpoint", "Checkpointing")
    t0 = time.perf_counter()
    c = counts.get(tcfg.train_split, {0: 0, 1: 0})
    v = counts.get(tcfg.val_split, {0: 0, 1: 0})
    if tcfg.inject:  # on the fly: the training batches are rendered (both classes), the stored tier only validates
        c = {0: 2 * rcfg.checkpoint_steps, 1: 2 * rcfg.checkpoint_steps}
    if not (c[0] and c[1] and v[0] and v[1]) or c[0] + c[1] < 4 * rcfg.checkpoint_steps:
        sec.add("save / kill / resume", "info", "not run: train and val need both classes and at least "
                f"{4 * rcfg.checkpoint_steps} train rows (the scratch run trains on real rows)")
        sec.seconds = time.perf_counter() - t0
        return sec
    rerun = f"dhs review --data {data} --out review.md --set sections=checkpoint"
    with tempfile.TemporaryDirectory(prefix="dhs-review-ckpt-") as tmp:
        try:
            cfg = scratch_config(data, tcfg.train_split, tcfg.val_split, rcfg.checkpoint_steps)
            if tcfg.inject:  # the planned run's renderer, hosts and simulate config: its cursor must resume exactly
                cfg = dataclasses.replace(cfg, inject=tcfg.inject, sim=tcfg.sim, inject_audit_stamps=0,
                                          inject_steps_per_epoch=rcfg.checkpoint_steps)
                cfg.validate()
            rc = resume_check(cfg, Path(tmp))
            r = rc.to_dict()
        except DHSError as e:
            r = {"ok": False, "why": str(e)}
        sec.data["round_trip"] = r
        at = r.get("killed_at", {})
        if r["ok"]:
            sec.add("save / kill / resume", "pass", f"SIGKILL right after last.pt at step {at['step']} (epoch "
                    f"{at['epoch']}, batch {at['batches_done']}), then --resume auto: all {r['steps']} losses and the "
                    "final weights equal those of an uninterrupted run (exact, CPU)", **r)
        else:
            sec.add("save / kill / resume", "error", f"the resumed run differs from the uninterrupted one ({r['why']} "
                    "failed)", rerun, **r)
        if tcfg.checkpoint_uri:
            try:
                m = mirror_round_trip(tcfg.checkpoint_uri, Path(tmp) / "uninterrupted" / "last.pt", s3)
            except DHSError as e:
                m = {"ok": False, "why": str(e)}
            sec.data["mirror"] = m
            sec.add("checkpoint mirror", "pass" if m["ok"] else "error",
                    f"{tcfg.checkpoint_uri}: uploaded, fetched back and byte-identical ({m['bytes']:,} B in "
                    f"{m['seconds']:.2f} s)" if m["ok"] else f"{tcfg.checkpoint_uri}: {m.get('why', 'copy differs')}",
                    None if m["ok"] else f"dhs train --data {data} --out RUN --checkpoint_uri {tcfg.checkpoint_uri} "
                    "--epochs=1 --max_train_rows=64")
        else:
            sec.add("checkpoint mirror", "info", "no checkpoint_uri configured: checkpoints stay on local disk "
                    "(a Colab disconnect loses them)")
    params = count_params(create_model(tcfg.model, coords=tcfg.coords, pooling=tcfg.pooling))
    size = params * 4 * 3  # weights + two AdamW moments, float32
    sec.add("checkpoint size and cadence", "info", f"{tcfg.model}: ~{size / 2**20:.0f} MiB per last.pt, written every "
            f"{tcfg.checkpoint_every_minutes:g} min / {tcfg.checkpoint_every_steps or 'no'} steps and each epoch, "
            "atomically (temp file + rename)", checkpoint_bytes=size)
    sec.seconds = time.perf_counter() - t0
    return sec
