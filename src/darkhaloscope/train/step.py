"""One optimizer step and its ingredients, shared by the loop (`dhs train`) and `dhs bench train`.

BCEWithLogits on (B,) logits; AdamW with decoupled weight decay on conv/linear weights only (biases and
batch-norm parameters are not decayed); linear warmup then cosine decay, stepped per optimizer step;
autocast in bf16 (no scaler needed) or fp16 (with a GradScaler); gradient clipping on the global norm.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from darkhaloscope.errors import UsageError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # autocast dtypes; fp32 = no autocast


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 on a CUDA device that supports it, else fp32. fp16 needs CUDA."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("precision=fp16 needs a CUDA device (its gradient scaler is CUDA-only); use bf16 or fp32 on CPU")
    return precision


def autocast(device: torch.device, precision: str):
    if precision not in AMP_DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[precision])


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.is_cuda for p in decay + no_decay) and bool(decay)
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


def make_scheduler(optimizer, total_steps: int, warmup_frac: float, min_lr_frac: float):
    """LambdaLR: linear warmup over warmup_frac x total_steps, then cosine down to min_lr_frac x lr."""
    warmup = int(round(warmup_frac * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_frac + (1 - min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_step(model, x, y, optimizer, scheduler, scaler, *, device, precision: str,
               grad_clip_norm: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Forward, BCEWithLogits (per-row `weight`: the weighted mean sum(w l) / sum(w)), backward, clip, step.
    Returns the detached loss (no host sync)."""
    with autocast(device, precision):
        logits = model(x)
    if weight is None:
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
    else:
        per_row = nn.functional.binary_cross_entropy_with_logits(logits.float(), y, reduction="none")
        loss = (per_row * weight).sum() / weight.sum()
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip_norm > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss.detach()


class Stepper:
    """The optimizer, schedule and gradient scaler of a run, bundled: `step(x, y) -> loss` is one training
    step as `dhs train` takes it (AdamW, warmup + cosine, clipping). Used by `dhs review`'s sanity checks."""

    def __init__(self, model, *, lr: float, weight_decay: float, total_steps: int, device, precision: str = "fp32",
                 warmup_frac: float = 0.0, min_lr_frac: float = 1.0, grad_clip_norm: float = 1.0):
        self.model, self.device, self.precision, self.grad_clip_norm = model, device, precision, grad_clip_norm
        self.optimizer = make_optimizer(model, lr, weight_decay)
        self.scheduler = make_scheduler(self.optimizer, total_steps, warmup_frac, min_lr_frac)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def __call__(self, x, y) -> torch.Tensor:
        return train_step(self.model, x, y, self.optimizer, self.scheduler, self.scaler, device=self.device,
                          precision=self.precision, grad_clip_norm=self.grad_clip_norm)


@torch.no_grad()
def predict_logits(model, x, *, device, precision: str) -> torch.Tensor:
    """Forward only, float32 logits (B,)."""
    with autocast(device, precision):
        return model(x).float()
