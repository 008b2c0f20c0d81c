"""Memory and checkpointing (sections 4 and 5 of `dhs review`).

Memory: peak host RAM of this process (and its children) after the benchmarks, the loader's share for the
planned run (decoded stamps in each worker's shuffle window), and GPU memory at the planned batch size:
`torch.cuda.max_memory_allocated` of a real step on CUDA, otherwise an estimate from the parameters
(weights, gradients, two AdamW moments) plus the activations autograd saves, counted on a 2-stamp batch
and scaled to the batch size.

Checkpointing: a scratch run (small_cnn, 2 epochs on real rows of DATA) is SIGKILLed by the operating
system right after its mid-epoch last.pt lands (a subprocess that kills itself after the save); resuming
with `--resume auto` must give exactly the losses and weights of an uninterrupted run. With a
`checkpoint_uri`, last.pt is also uploaded to a scratch key under it, fetched back and compared byte
for byte, and removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from darkhaloscope.models import count_params, create_model
from darkhaloscope.review.config import ReviewConfig
from darkhaloscope.review.report import Section
from darkhaloscope.stamps.schema import BANDS, STAMP_SIZE
from darkhaloscope.train.config import TrainConfig

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
    sec.figures.update(peak_host_rss_bytes=rss, loader_bytes_per_worker=per_worker, loader_bytes=loader)
    sec.add("peak host RAM (measured)", "pass", f"{rss / GIB:.2f} GiB for this review (benchmarks at batch "
            f"{(bench or {}).get('batch_size', '-')}, {os.cpu_count()} cores)")
    status = "warn" if loader > 10 * GIB else "pass"
    sec.add("loader RAM, planned run", status, f"{tcfg.num_workers} worker(s) x (shuffle_buffer {tcfg.shuffle_buffer} + "
            f"{tcfg.prefetch_factor + 1} batches of {tcfg.batch_size}) decoded stamps = {loader / GIB:.2f} GiB "
            "(streamed one row group at a time: never a whole file or tier)" + (
                "; more than a 12.7 GiB Colab VM can spare" if status == "warn" else ""),
            "dhs train ... --shuffle_buffer=1024 --num_workers=2" if status == "warn" else None)
    batch = tcfg.batch_size
    if device.type == "cuda" and bench is not None and bench.get("batch_size") == batch:
        peak = bench.get("gpu_peak_bytes", 0)
        sec.add("GPU memory (measured)", "pass", f"{peak / GIB:.2f} GiB peak allocated at batch {batch} on "
                f"{torch.cuda.get_device_name(device)}", peak_bytes=peak)
        need = peak
    else:
        est = gpu_memory_estimate(tcfg.model, batch, tcfg.precision)
        need = est["estimate_bytes"]
        sec.figures["gpu_estimate"] = est
        sec.add("GPU memory (estimate)", "info", f"{need / GIB:.1f} GiB at batch {batch} for {tcfg.model} (estimate: "
                f"{est['params'] / 1e6:.2f} M params x 16 B + {est['activation_bytes_per_stamp_fp32'] / 2**20:.1f} MiB "
                f"saved activations per stamp in fp32, halved in bf16/fp16, + 0.5 GiB context)")
    too_small = [g for g, gib in GPU_TARGET_GIB.items() if need > 0.9 * gib * GIB]
    if too_small:
        sec.add("batch fits the GPU", "warn", f"{need / GIB:.1f} GiB does not fit comfortably on "
                f"{', '.join(too_small)} ({', '.join(f'{GPU_TARGET_GIB[g]:g} GiB' for g in too_small)})",
                f"dhs train ... --batch_size={max(8, batch // 2)}")
    sec.seconds = time.perf_counter() - t0
    return sec


_KILLER = """
import os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[2]))  # as in the parent: CPU float results depend on the thread count
from darkhaloscope.train import checkpoint as ckp
_save = ckp.save_checkpoint
def save(state, path):
    out = _save(state, path)
    if Path(path).name == "last.pt" and state["step"] >= int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)  # the operating system ends the run right after the save
    return out
ckp.save_checkpoint = save
from darkhaloscope.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _steps(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "steps.jsonl").read_text().splitlines()]


def kill_resume_round_trip(data: str, tcfg: TrainConfig, steps_per_epoch: int, scratch: Path) -> dict:
    """Uninterrupted run vs SIGKILL mid-epoch + `--resume auto`; returns what was compared."""
    from darkhaloscope.cli import main

    batch = 4
    kill_at = steps_per_epoch // 2
    args = ["train", "--data", data, f"--train_split={tcfg.train_split}", f"--val_split={tcfg.val_split}",
            "--model=small_cnn", "--device=cpu", "--precision=fp32", "--channels_last=false", "--num_workers=0",
            f"--batch_size={batch}", f"--max_train_rows={batch * steps_per_epoch}", "--max_val_rows=64",
            "--epochs=2", f"--checkpoint_every_steps={kill_at}", "--log_every_steps=1", "--progress=false"]
    ref, run = scratch / "uninterrupted", scratch / "killed"

    def quiet_train(*extra: str) -> int:  # the scratch runs' own logs would drown the review's
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return main([*extra])

    if quiet_train(*args[:1], "--out", str(ref), *args[1:]) != 0:
        return {"ok": False, "why": "the uninterrupted scratch run failed"}
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(kill_at), str(torch.get_num_threads()), *args[:1], "--out", str(run), *args[1:]],
                          capture_output=True, text=True, env=env, timeout=600)
    killed = proc.returncode == -signal.SIGKILL
    ck = torch.load(run / "last.pt", weights_only=True) if (run / "last.pt").is_file() else {}
    at = {"step": ck.get("step"), "epoch": ck.get("epoch"), "batches_done": ck.get("cursor", {}).get("batches_done")}
    if quiet_train(*args[:1], "--out", str(run), *args[1:], "--resume", "auto") != 0:
        return {"ok": False, "why": "the resumed run failed", "killed": killed, "killed_at": at}
    same_steps = _steps(run) == _steps(ref)
    a = torch.load(run / "last.pt", weights_only=True)["model"]
    b = torch.load(ref / "last.pt", weights_only=True)["model"]
    same_weights = all(torch.equal(a[k], b[k]) for k in b)
    return {"ok": killed and same_steps and same_weights, "killed": killed, "killed_at": at, "same_losses": same_steps,
            "same_weights": same_weights, "steps": 2 * steps_per_epoch, "stderr_tail": proc.stderr[-300:] if not killed else ""}


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
    if not (c[0] and c[1] and v[0] and v[1]) or c[0] + c[1] < 4 * rcfg.checkpoint_steps:
        sec.add("save / kill / resume", "info", "not run: train and val need both classes and at least "
                f"{4 * rcfg.checkpoint_steps} train rows (the scratch run trains on real rows)")
        sec.seconds = time.perf_counter() - t0
        return sec
    with tempfile.TemporaryDirectory(prefix="dhs-review-ckpt-") as tmp:
        try:
            r = kill_resume_round_trip(data, tcfg, rcfg.checkpoint_steps, Path(tmp))
        except DHSError as e:
            r = {"ok": False, "why": str(e)}
        sec.figures["round_trip"] = r
        at = r.get("killed_at", {})
        if r["ok"]:
            sec.add("save / kill / resume", "pass", f"SIGKILL right after last.pt at step {at['step']} (epoch "
                    f"{at['epoch']}, batch {at['batches_done']}), then --resume auto: all {r['steps']} losses and the "
                    "final weights equal those of an uninterrupted run (exact, CPU)", **r)
        else:
            why = r.get("why") or ", ".join(k for k in ("killed", "same_losses", "same_weights") if not r.get(k))
            sec.add("save / kill / resume", "fail", f"the resumed run differs from the uninterrupted one ({why} "
                    "failed)", "python -m pytest -q tests/train/test_resume.py", **r)
        if tcfg.checkpoint_uri:
            try:
                m = mirror_round_trip(tcfg.checkpoint_uri, Path(tmp) / "uninterrupted" / "last.pt", s3)
            except DHSError as e:
                m = {"ok": False, "why": str(e)}
            sec.figures["mirror"] = m
            sec.add("checkpoint mirror", "pass" if m["ok"] else "fail",
                    f"{tcfg.checkpoint_uri}: uploaded, fetched back and byte-identical ({m['bytes']:,} B in "
                    f"{m['seconds']:.2f} s)" if m["ok"] else f"{tcfg.checkpoint_uri}: {m.get('why', 'copy differs')}",
                    None if m["ok"] else f"dhs train --data {data} --out RUN --checkpoint_uri {tcfg.checkpoint_uri} "
                    "--epochs=1 --max_train_rows=64")
        else:
            sec.add("checkpoint mirror", "info", "no checkpoint_uri configured: checkpoints stay on local disk "
                    "(a Colab disconnect loses them)")
    params = count_params(create_model(tcfg.model))
    size = params * 4 * 3  # weights + two AdamW moments, float32
    sec.add("checkpoint size and cadence", "info", f"{tcfg.model}: ~{size / 2**20:.0f} MiB per last.pt, written every "
            f"{tcfg.checkpoint_every_minutes:g} min / {tcfg.checkpoint_every_steps or 'no'} steps and each epoch, "
            "atomically (temp file + rename)", checkpoint_bytes=size)
    sec.seconds = time.perf_counter() - t0
    return sec
