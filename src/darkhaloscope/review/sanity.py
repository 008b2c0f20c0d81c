"""Training-code sanity, measured on real batches of DATA (section 2 of `dhs review`).

- initial loss: an untrained classifier must output p ~ 0.5, i.e. BCE ~ ln 2 = 0.693 nats; far off means
  unnormalised inputs (flux units, normalisation) or a bad initialisation.
- single-batch overfit: one real batch, no augmentation, a few hundred AdamW steps must drive its BCE to
  ~0; if not, the model / loss / optimizer / label wiring is broken (the users' smoke test "loss -> 0.0001"
  proved nothing: it had one class).
- batch composition: the injection share of each training batch must scatter as random draws do (binomial);
  class-sorted batches (a loader that reads one class after the other) scatter ~batch-size times more.
- shuffled labels: train briefly with the labels of all the batches read permuted among them, then score val.
  Its AUROC is reported, but a net that learnt nothing still ranks by random image features (injections are
  brighter), so measured on this data it lands anywhere in 0.3-0.8; the bound is on its val BCE, which must
  stay at ~ln 2 (no confidence). A BCE well below ln 2 means the true label reached the model through something
  else than the shuffled labels: a leaking row order, labels read from other rows. (Labels permuted only within
  each batch keep each batch's injection share, which a net that sees bright arcs learns to predict from the
  arcs on easy tiers: measured on `dhs demo --quick`, val BCE 0.55 after 30 steps of 16. Permuting across
  batches removes that signal; class-sorted batches are the composition check's.)
- val has both classes: otherwise the model-selection metric (val AUROC) is undefined (AUROC nan).
Every check runs train's own pieces (`train.data.iter_batches`, `models.preprocess.prepare_batch`, `train.step.Stepper`),
the code `dhs train` runs: review has no training loop of its own.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from darkhaloscope.common.calibration import bce_with_logits
from darkhaloscope.common.ranking import auroc
from darkhaloscope.models import create_model
from darkhaloscope.models.preprocess import prepare_batch
from darkhaloscope.review.config import ReviewConfig
from darkhaloscope.common.report import Code, Section
from darkhaloscope.train.config import TrainConfig
from darkhaloscope.train.data import iter_batches as batches
from darkhaloscope.train.guards import LN2
from darkhaloscope.train.step import Stepper, predict_logits

CPU_SANITY_MODEL = "small_cnn"  # what `sanity_model: auto` trains on a CPU when the planned net is too slow there
CPU_SIZED = ("small_cnn", "polar_cnn", "polar_fourier")  # nets whose training steps take milliseconds on CPU: trained as planned


def null_auroc_sigma(n_pos: int, n_neg: int) -> float:
    """Standard deviation of the AUROC of scores independent of the labels (Mann-Whitney U under H0)."""
    return math.sqrt((n_pos + n_neg + 1) / (12.0 * n_pos * n_neg))


def _model(name: str, tcfg: TrainConfig, seed: int, device: torch.device):
    """`name` with the planned run's position planes and pooling (they change the net and its first loss)."""
    torch.manual_seed(seed)
    return create_model(name, coords=tcfg.coords, pooling=tcfg.pooling).to(device)


def initial_loss(name: str, batch: dict, tcfg: TrainConfig, device: torch.device) -> float:
    """Mean BCE (nats) of a freshly initialised `name` on one real batch, in training mode like step 1."""
    model = _model(name, tcfg, tcfg.seed, device)
    x = prepare_batch(batch["image"].to(device), tcfg.preprocess, train=False)
    with torch.no_grad():
        logits = model(x).float().cpu().numpy()
    return float(bce_with_logits(batch["label"].numpy(), logits).mean())


def overfit_one_batch(name: str, batch: dict, tcfg: TrainConfig, rcfg: ReviewConfig, device) -> tuple[float, int]:
    """Train on one batch until its BCE < overfit_max_loss or overfit_steps; returns (loss, steps)."""
    model = _model(name, tcfg, tcfg.seed, device)
    step_fn = Stepper(model, lr=rcfg.overfit_lr, weight_decay=0.0, total_steps=rcfg.overfit_steps, device=device,
                      grad_clip_norm=tcfg.grad_clip_norm)  # constant learning rate, fp32
    x = prepare_batch(batch["image"].to(device), tcfg.preprocess, train=False)
    y = batch["label"].to(device)
    loss = float("nan")
    for step in range(1, rcfg.overfit_steps + 1):
        out = step_fn(x, y)
        if step % 10 == 0 or step == rcfg.overfit_steps:
            loss = float(out)
            if loss < rcfg.overfit_max_loss:
                return loss, step
    return loss, rcfg.overfit_steps


def train_batches(data: str, tcfg: TrainConfig, batch_size: int, n: int, s3=None):
    """`n` training batches of `batch_size` as the planned run gets them: read from DATA's train split, or for an
    on-the-fly run (`inject`, dhs train --inject) rendered the way that run renders them."""
    if not tcfg.inject:
        yield from batches(data, tcfg.train_split, batch_size, n, s3=s3, seed=tcfg.seed)
        return
    from darkhaloscope.train.onthefly_source import InjectSource

    source = InjectSource(tcfg, batch_size, s3)
    for g in range(n):
        b = source.render(g)
        yield {"image": torch.from_numpy(b.images), "label": torch.from_numpy(b.labels)}


def shuffled_label_auroc(name: str, data: str, tcfg: TrainConfig, rcfg: ReviewConfig, device, s3=None, *,
                         shuffle: bool = True):
    """Train `shuffled_steps` steps with the labels of all the batches read permuted among them, each batch keeping
    its images (shuffle=False: the true labels, for comparison); return (val AUROC Metric, val BCE in nats against
    the true labels, the batches' injection shares)."""
    model = _model(name, tcfg, tcfg.seed + 1, device)
    step_fn = Stepper(model, lr=rcfg.overfit_lr, weight_decay=tcfg.weight_decay, total_steps=rcfg.shuffled_steps,
                      device=device, grad_clip_norm=tcfg.grad_clip_norm)
    gen = torch.Generator().manual_seed(tcfg.seed)
    aug = torch.Generator(device=device).manual_seed(tcfg.seed)
    read = list(train_batches(data, tcfg, rcfg.sanity_batch_size, rcfg.shuffled_steps, s3))
    shares = [float(b["label"].float().mean()) for b in read]
    labels = torch.cat([b["label"] for b in read])
    labels = labels[torch.randperm(len(labels), generator=gen)] if shuffle else labels
    for b, y in zip(read, torch.split(labels, [len(b["label"]) for b in read])):
        x = prepare_batch(b["image"].to(device), tcfg.preprocess, train=True, generator=aug)
        step_fn(x, y.to(device))
    model.eval()
    labels, logits = [], []
    for b in batches(data, tcfg.val_split, 256, s3=s3, shuffle=False, max_rows=rcfg.shuffled_val_rows):
        x = prepare_batch(b["image"].to(device), tcfg.preprocess, train=False)
        logits.append(predict_logits(model, x, device=device, precision="fp32").cpu())
        labels.append(b["label"])
    y, z = torch.cat(labels).numpy().astype(np.int8), torch.cat(logits).numpy()
    return auroc(y, z), float(bce_with_logits(y, z).mean()), shares


def composition_dispersion(shares: list[float], batch_size: int) -> float:
    """Variance of the batches' injection shares over the binomial variance p(1-p)/n of random batches: ~1 for
    a shuffled loader (sd ~ sqrt(2 / batches)), ~n for class-sorted batches; nan with one class or one batch."""
    m = np.asarray(shares, dtype=np.float64)
    p = float(m.mean()) if len(m) else float("nan")
    if len(m) < 2 or not 0 < p < 1:
        return float("nan")
    return float(m.var(ddof=1) / (p * (1 - p) / batch_size))


def sanity_section(data: str, counts: dict, tcfg: TrainConfig, rcfg: ReviewConfig, device: torch.device,
                   s3=None) -> Section:
    sec = Section("sanity", "Training code sanity")
    t0 = time.perf_counter()
    tr, va = tcfg.train_split, tcfg.val_split
    audit_cmd = f"dhs audit {data} --markdown audit.md"
    val = counts.get(va, {0: 0, 1: 0})
    if val[0] and val[1]:
        sec.add("val has both classes", "pass", f"split '{va}': {val[1]} injections, {val[0]} controls: val AUROC "
                "(the model-selection metric) is defined", counts=val)
    else:
        sec.add("val has both classes", "error", f"split '{va}' has {val[1]} injection(s) and {val[0]} control(s): "
                "val AUROC is undefined (nan), so no checkpoint can be selected; rebuild the tier with controls and "
                "injections in every split", audit_cmd, counts=val)
    trc = counts.get(tr, {0: 0, 1: 0})
    if not tcfg.inject and not (trc[0] and trc[1]):  # on the fly: both classes are rendered into every batch
        sec.add("training checks", "error", f"not run: split '{tr}' has {trc[1]} injection(s) and {trc[0]} "
                "control(s); a one-class split trains to loss ~0 while learning nothing", audit_cmd, counts=trc)
        sec.seconds = time.perf_counter() - t0
        return sec
    cpu_ok = device.type == "cuda" or tcfg.model in CPU_SIZED
    name = rcfg.sanity_model if rcfg.sanity_model != "auto" else (tcfg.model if cpu_ok else CPU_SANITY_MODEL)
    batch = next(train_batches(data, tcfg, rcfg.sanity_batch_size, 1, s3))
    n_pos = int(batch["label"].sum())
    what = ["on-the-fly (", Code(f"--inject {tcfg.inject}"), ")"] if tcfg.inject else ["real ", Code(tr)]
    sec.text("Measured on ", *what, f" batches of {len(batch['label'])} stamps ({n_pos} injections) on "
             f"{device}; trained model: ", Code(name), *([" (the planned ", Code(tcfg.model), " is too slow to train "
                                                          "here; its initial loss is measured)"] if name != tcfg.model else []), ".")
    models = [tcfg.model] + ([name] if name != tcfg.model else [])
    for m in models:
        loss = initial_loss(m, batch, tcfg, device)
        ok = abs(loss - LN2) <= rcfg.initial_loss_tolerance
        sec.add(f"initial loss ({m})", "pass" if ok else "error",
                f"{loss:.4f} nats vs ln 2 = {LN2:.4f} (tolerance {rcfg.initial_loss_tolerance})" + (
                    "" if ok else ": unnormalised inputs (flux units?) or a bad initialisation"),
                None if ok else f"dhs bench loader {data} --norm prepare_batch --no-naive", loss=loss, model=m)
    loss, steps = overfit_one_batch(name, batch, tcfg, rcfg, device)
    ok = loss < rcfg.overfit_max_loss
    sec.add("single-batch overfit", "pass" if ok else "error",
            f"BCE {loss:.4f} after {steps} steps on one batch of {len(batch['label'])} (bound < {rcfg.overfit_max_loss} "
            f"within {rcfg.overfit_steps})" + ("" if ok else ": the model cannot memorise one batch; the loss, "
                                               "labels or optimizer are wired wrong"),
            None if ok else f"dhs train --data {data} --out overfit_probe --model={name} --max_train_rows="
            f"{len(batch['label'])} --batch_size={len(batch['label'])} --epochs=300 --warmup_frac=0 --lr={rcfg.overfit_lr}",
            loss=loss, steps=steps, model=name)
    val_ok = val[0] and val[1]
    if not val_ok:
        sec.add("shuffled labels", "info", f"not measurable: split '{va}' lacks a class")
    else:
        a, bce, shares = shuffled_label_auroc(name, data, tcfg, rcfg, device, s3)
        sigma = null_auroc_sigma(a.n_pos, a.n_neg)
        ratio = composition_dispersion(shares, rcfg.sanity_batch_size)
        sorted_ = bool(ratio > rcfg.max_batch_dispersion)
        sec.add("batch composition", "error" if sorted_ else "pass",
                f"injection share of {len(shares)} training batches of {rcfg.sanity_batch_size} scatters "
                f"{ratio:.2f}x as random batches would (bound <= {rcfg.max_batch_dispersion:g})" + (
                    ": batches are sorted by class (the loader reads one class after the other); shuffle rows "
                    "across files and row groups" if sorted_ else ""),
                None if not sorted_ else f"dhs bench loader {data}", dispersion=ratio, batches=len(shares))
        ok = bce >= LN2 - rcfg.shuffled_bce_margin
        sec.add("shuffled labels", "pass" if ok else "error",
                f"after {rcfg.shuffled_steps} steps on shuffled labels: val BCE {bce:.4f} nats (bound >= "
                f"ln 2 - {rcfg.shuffled_bce_margin:g} = {LN2 - rcfg.shuffled_bce_margin:.4f}), val AUROC {a.value:.3f} "
                f"({a.n_pos}+{a.n_neg} stamps, null sigma {sigma:.3f})" + (
                    "" if ok else ": the model learnt the true labels from shuffled ones, so the label reaches it "
                    "by another route (row order, labels read from other rows)"),
                None if ok else f"dhs audit {data} --full --markdown audit.md",
                auroc=a.value, val_bce=bce, sigma=sigma, n_pos=a.n_pos, n_neg=a.n_neg)
        sec.text("Shuffled labels: a model that learnt nothing from its labels still ranks val stamps by "
                 "whatever image features its random weights respond to (injections are brighter), so its "
                 "AUROC can sit far from 0.5 in either direction; what it cannot have is confidence, so the "
                 "bound is on its val BCE.")
    sec.seconds = time.perf_counter() - t0
    return sec
