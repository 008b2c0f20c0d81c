"""`dhs bench train`: samples/s of the training step on this device, with synthetic tensors and with the
real input pipeline, and which of the two limits the rate.

    dhs bench train --model resnet18 --batch-size 256 --precision bf16 --steps 30 [--data TIER] [--json]

Synthetic: a fixed (B, 3, 64, 64) batch already on the device -> `prepare_batch` (normalisation +
augmentation, as in training) -> forward/backward/AdamW step: the most the model can consume. Also the
forward-only rate (scoring). With --data: the loader alone (decode, shuffle, batch; no model), then the
loader + host->device copy + the same step. The slower of loader and synthetic step is the limit.
Timings synchronise CUDA before reading the clock; warm-up steps are not timed.
"""

from __future__ import annotations

import os
import time

import torch

from darkhaloscope.models import count_params, create_model, forward_flops
from darkhaloscope.runtime.distributed import resolve_device
from darkhaloscope.models.preprocess import PreprocessConfig, prepare_batch
from darkhaloscope.train.step import (make_optimizer, make_scheduler, predict_logits, resolve_precision,
                                      train_step)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, n: int, warmup: int, device: torch.device) -> float:
    """Seconds for n calls of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return time.perf_counter() - t


def bench_train(*, model: str = "resnet18", batch_size: int = 256, precision: str = "auto",
                channels_last: bool = True, compile: bool = False, steps: int = 20, warmup_steps: int = 3,
                device: str = "auto", data: str | None = None, num_workers: int = 2, s3=None,
                split: str = "train") -> dict:
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    torch.manual_seed(0)
    mf = torch.channels_last if channels_last else torch.preserve_format
    net = create_model(model)
    info = {"model": model, "params": count_params(net), "fwd_gflops_per_stamp": round(forward_flops(net) / 1e9, 3),
            "batch_size": batch_size, "precision": prec, "channels_last": channels_last, "compile": compile,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads, "
            f"{os.cpu_count()} cores)", "torch": torch.__version__, "steps": steps}
    net = net.to(dev, memory_format=mf)
    run = torch.compile(net) if compile else net
    opt = make_optimizer(net, 3e-4, 0.01)
    sched = make_scheduler(opt, 10 ** 9, 0.0, 0.0)
    scaler = torch.amp.GradScaler(dev.type, enabled=prec == "fp16")
    pcfg = PreprocessConfig()
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)
    x_raw = (0.01 * torch.randn(batch_size, 3, 64, 64, generator=torch.Generator().manual_seed(0))).to(dev)
    y = (torch.arange(batch_size, device=dev) % 2).float()

    def step(x=x_raw, y=y):
        return train_step(run, prepare_batch(x, pcfg, train=True, generator=gen), y, opt, sched, scaler,
                          device=dev, precision=prec, grad_clip_norm=1.0)

    t = _timed(step, steps, warmup_steps, dev)
    info["synthetic_samples_per_s"] = round(steps * batch_size / t, 1)
    run.eval()
    t = _timed(lambda: predict_logits(run, prepare_batch(x_raw, pcfg, train=False), device=dev, precision=prec),
               steps, warmup_steps, dev)
    info["forward_only_samples_per_s"] = round(steps * batch_size / t, 1)
    run.train()
    if data:
        info.update(_bench_pipeline(data, split, batch_size, num_workers, s3, dev, steps, warmup_steps, step))
        info["limit"] = ("input pipeline" if info["loader_samples_per_s"] < info["synthetic_samples_per_s"]
                         else "model step")
    return info


def _bench_pipeline(data, split, batch_size, num_workers, s3, dev, steps, warmup, step) -> dict:
    from darkhaloscope.train.data import StampStream, make_loader

    stream = StampStream(data, split, batch_size, shuffle=True, s3=s3, rank=0, world_size=1)
    n_avail = len(stream)
    loader = make_loader(stream, num_workers=num_workers, pin_memory=dev.type == "cuda")

    def rate(consume) -> tuple[float, int]:
        n, epoch, t, count = 0, 0, None, 0
        while count < warmup + steps:
            stream.set_epoch(epoch)
            for batch in loader:
                if count == warmup:
                    _sync(dev)
                    t, n = time.perf_counter(), 0
                consume(batch)
                count += 1
                n += len(batch["label"]) if count > warmup else 0
                if count >= warmup + steps:
                    break
            epoch += 1
        _sync(dev)
        return n / (time.perf_counter() - t), n

    loader_rate, n = rate(lambda b: None)
    full_rate, _ = rate(lambda b: step(b["image"].to(dev, non_blocking=True), b["label"].to(dev, non_blocking=True)))
    return {"data": str(data), "num_workers": num_workers, "batches_per_epoch": n_avail,
            "packed": stream.packed, "loader_samples_per_s": round(loader_rate, 1),
            "pipeline_train_samples_per_s": round(full_rate, 1)}


def format_report(r: dict) -> str:
    lines = [f"dhs bench train: {r['model']} ({r['params'] / 1e6:.2f} M params, {r['fwd_gflops_per_stamp']} GFLOPs/stamp), "
             f"batch {r['batch_size']}, {r['precision']}, channels_last={r['channels_last']}, compile={r['compile']}",
             f"device: {r['device']}, torch {r['torch']}",
             f"  train step, synthetic tensors : {r['synthetic_samples_per_s']:>10,.0f} samples/s",
             f"  forward only (scoring)        : {r['forward_only_samples_per_s']:>10,.0f} samples/s"]
    if "loader_samples_per_s" in r:
        lines += [f"  input pipeline alone          : {r['loader_samples_per_s']:>10,.0f} samples/s "
                  f"({'packed' if r['packed'] else 'npz'}, {r['num_workers']} workers)",
                  f"  train step with the pipeline  : {r['pipeline_train_samples_per_s']:>10,.0f} samples/s",
                  f"  limited by: {r['limit']}"]
    return "\n".join(lines)
