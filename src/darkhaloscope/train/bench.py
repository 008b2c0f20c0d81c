"""`dhs bench train`: samples/s of the training step on this device, with synthetic tensors and with the
real input pipeline, and which of the two limits the rate.

    dhs bench train --model resnet18 --batch-size 256 --precision bf16 --steps 30 [--data TIER] [--json]
    dhs bench train --model polar_fourier --batch-size 64 --precision fp32 --inject synthetic --sim.confusers=0.5

Synthetic: a fixed (B, 3, 64, 64) batch already on the device -> `prepare_batch` (normalisation +
augmentation, as in training) -> forward/backward/AdamW step: the most the model can consume. Also the
forward-only rate (scoring). With --data: the loader alone (decode, shuffle, batch; no model), then the
loader + host->device copy + the same step. The slower of loader and synthetic step is the limit.
With --inject HOSTS: on-the-fly training (train/onthefly.py) in one process, each step rendering its batch and
then stepping on it; wall and CPU seconds of the two parts, and rendering's share of the step.
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
                split: str = "train", inject: str | None = None, sim: dict | None = None,
                inject_cfg=None) -> dict:
    """Train-step samples/s on synthetic tensors and forward-only; with `data` the input pipeline too; with
    `inject` on-the-fly rendering + step (`inject_cfg`: a resolved TrainConfig to render with, e.g. a planned run's,
    instead of one made from `inject` and the `sim` overrides)."""
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
    info["synthetic_samples_per_s"] = round(steps * batch_size / t, 3)
    run.eval()
    t = _timed(lambda: predict_logits(run, prepare_batch(x_raw, pcfg, train=False), device=dev, precision=prec),
               steps, warmup_steps, dev)
    info["forward_only_samples_per_s"] = round(steps * batch_size / t, 3)
    run.train()
    if inject:
        info.update(_bench_inject(inject, data, sim or {}, batch_size, dev, steps, warmup_steps, step, s3, inject_cfg))
    elif data:
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


def _bench_inject(hosts, data, sim: dict, batch_size, dev, steps, warmup, step, s3, cfg=None) -> dict:
    """Render batch g, then one training step on it, `steps` times (after `warmup`): mean wall / CPU seconds."""
    from darkhaloscope.config import load_config
    from darkhaloscope.train.config import TrainConfig
    from darkhaloscope.train.onthefly_source import InjectSource

    cfg = cfg or load_config(TrainConfig, None, {"inject": hosts, "data": data or "", "batch_size": batch_size,
                                                 **{f"sim.{k}": v for k, v in sim.items()}})
    source = InjectSource(cfg, batch_size, s3)
    wall = {"render": 0.0, "model": 0.0}
    cpu = dict(wall)
    for g in range(warmup + steps):
        t, c = time.perf_counter(), time.process_time()
        b = source.render(g)
        t1, c1 = time.perf_counter(), time.process_time()
        step(torch.from_numpy(b.images).to(dev), torch.from_numpy(b.labels).to(dev))
        _sync(dev)
        if g >= warmup:
            wall["render"] += t1 - t
            cpu["render"] += c1 - c
            wall["model"] += time.perf_counter() - t1
            cpu["model"] += time.process_time() - c1
    lenses, look, _, plain = source.counts
    out = {"inject": str(hosts), "sim": sim, "engine": f"{cfg.sim.engine} ({cfg.sim.device})",
           "rendered_rows_per_batch": lenses + look + plain, "torch_threads_model": torch.get_num_threads()}
    for k in ("render", "model"):
        out[f"{k}_ms_per_step"] = round(1e3 * wall[k] / steps, 1)
        out[f"{k}_cpu_ms_per_step"] = round(1e3 * cpu[k] / steps, 1)
    out["render_frac_wall"] = round(wall["render"] / (wall["render"] + wall["model"]), 3)
    out["render_frac_cpu"] = round(cpu["render"] / (cpu["render"] + cpu["model"]), 3)
    out["onthefly_samples_per_s"] = round(steps * batch_size / (wall["render"] + wall["model"]), 1)
    return out


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
    if "render_ms_per_step" in r:
        lines += [f"  on the fly ({r['inject']}, {r['engine']}, {r['rendered_rows_per_batch']} rows rendered "
                  f"per batch): {r['onthefly_samples_per_s']:,.0f} samples/s",
                  f"    render {r['render_ms_per_step']:.0f} ms ({r['render_cpu_ms_per_step']:.0f} CPU-ms), model "
                  f"{r['model_ms_per_step']:.0f} ms ({r['model_cpu_ms_per_step']:.0f} CPU-ms) per step: rendering is "
                  f"{r['render_frac_wall']:.0%} of the step ({r['render_frac_cpu']:.0%} of its CPU time)"]
    return "\n".join(lines)
