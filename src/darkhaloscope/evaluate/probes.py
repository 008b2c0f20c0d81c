"""Report sections that need the stamps (galleries) or the model (probes): is the finder looking at arcs?

- Galleries: highest-scoring controls, lowest-scoring injections, random true positives (g/r/z composites).
- Re-scoring check: the probe stamps are scored again; a mismatch with the scores file means the
  checkpoint or preprocessing differs from the one that made the file.
- Core-masked evaluation: the central `core_radius_pix` replaced by sky noise; the AUROC drop measures how
  much the score depends on the lens core rather than the arcs.
- Paired controls (`ctrl_stamp_npz`): scores of injection, host alone and arc alone (injection - host,
  on fresh sky noise).
- Host-light probe (`evaluate.hostscale`): the probe stamps with their host's smooth light x 0.5, 2, 4.
- Occlusion maps over the gallery stamps: score drop when an 8x8 px square is replaced by sky noise.
Exercise: `dhs evaluate SCORES --out DIR --checkpoint CKPT --data DATA`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darkhaloscope.common.calibration import sigmoid
from darkhaloscope.errors import UsageError
from darkhaloscope.common import ranking as M
from darkhaloscope.evaluate import plots
from darkhaloscope.common.report import Code
from darkhaloscope.evaluate.confusers import confuser_gallery, plain_controls
from darkhaloscope.evaluate.hostscale import host_scale_probe, render_host_scale
from darkhaloscope.score.sources import open_source
from darkhaloscope.stamps.fs import is_s3
from darkhaloscope.stamps.robust import median_sigma
from darkhaloscope.stamps.schema import CTRL_STAMP_COLUMN, PIXEL_SCALE_ARCSEC, masked_pixels, pixel_radius

SKY_RADIUS_PIX = 28  # pixels at r >= this from the centre estimate the sky level and noise


def sky_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) sky median and robust sigma (1.4826 MAD) of each band from the stamp's outer pixels."""
    return median_sigma(masked_pixels(images, pixel_radius(images.shape[-1]) >= SKY_RADIUS_PIX))


def mask_core(images: np.ndarray, radius_pix: float, rng: np.random.Generator) -> np.ndarray:
    """Copy of `images` with r < radius_pix replaced by sky median + Gaussian noise of the sky sigma."""
    med, sigma = sky_stats(images)
    out = images.copy()
    core = pixel_radius(images.shape[-1]) < radius_pix
    noise = rng.normal(size=(len(images), images.shape[1], int(core.sum())))
    out[..., core] = (med[..., None] + sigma[..., None] * noise).astype(np.float32)
    return out


def occlusion_maps(score_fn, images: np.ndarray, patch: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """(N, H, W) mean drop of the probability when a patch x patch square covering the pixel is occluded."""
    n, _, h, w = images.shape
    med, sigma = sky_stats(images)
    base = sigmoid(score_fn(images))
    starts = [(y, x) for y in range(0, h - patch + 1, stride) for x in range(0, w - patch + 1, stride)]
    maps = np.zeros((n, h, w))
    cover = np.zeros((h, w))
    for y, x in starts:
        cover[y:y + patch, x:x + patch] += 1
    for i in range(n):
        batch = np.repeat(images[i:i + 1], len(starts), axis=0)
        for j, (y, x) in enumerate(starts):
            batch[j, :, y:y + patch, x:x + patch] = (med[i][:, None, None] + sigma[i][:, None, None]
                                                      * rng.normal(size=(3, patch, patch)))
        drop = base[i] - sigmoid(score_fn(batch))
        for j, (y, x) in enumerate(starts):
            maps[i, y:y + patch, x:x + patch] += drop[j]
    return maps / np.maximum(cover, 1)


def resolve_source(scores, data: str | None, use_recorded: bool, s3, checkpoint: str | None = None):
    """(source, '') for the data the scores came from, or (None, reason); UsageError when a checkpoint
    was given but the stamps cannot be reached (checked before any work is done)."""
    source, reason = _resolve(scores, data, use_recorded, s3)
    if source is None and checkpoint:
        raise UsageError(f"--checkpoint needs the stamps: {reason}")
    return source, reason


def _resolve(scores, data: str | None, use_recorded: bool, s3):
    uri = data or (scores.info.get("data") if use_recorded else None)
    if not uri:
        return None, "no --data given and none recorded in the scores file"
    if scores.source_file is None or scores.source_row is None:
        return None, "the scores file has no source_file/source_row columns (not written by `dhs score`)"
    if not is_s3(uri) and not Path(uri).exists():
        return None, f"the scored data {uri} is not here: pass --data"
    return open_source(uri, s3), ""


def gallery_rows(scores, values: np.ndarray, hit: np.ndarray, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    neg, pos = np.flatnonzero(scores.labels == 0), np.flatnonzero(scores.labels == 1)
    tp = np.flatnonzero((scores.labels == 1) & hit)
    return {"highest-scoring controls (false positives first)": neg[np.argsort(-values[neg], kind="stable")[:n]],
            "lowest-scoring injections (missed lenses)": pos[np.argsort(values[pos], kind="stable")[:n]],
            "random true positives": np.sort(rng.choice(tp, min(n, len(tp)), replace=False)) if len(tp) else tp}


def caption(scores, i: int) -> str:
    parts = [f"p={scores.scores[i]:.3g}"]
    for col, fmt in (("theta_e_arcsec", "thE={:.2f}\""), ("arc_snr", "S/N={:.0f}"), ("psf_fwhm_used_r", "psf={:.2f}\"")):
        v = scores.columns.get(col)
        if v is not None and np.isfinite(v[i]):
            parts.append(fmt.format(v[i]))
    return " ".join(parts) + "\n" + scores.row_id(i)[-28:]  # plots.gallery shows it verbatim (no mathtext)


def run_data_sections(scores, ranked, thr: float, cfg, ev, fig_dir: Path, *, source, reason: str,
                      checkpoint: str | None, s3) -> None:
    """Galleries when the stamps are reachable (`source`, else `reason`); the model probes with a checkpoint."""
    if source is None:
        ev.add_section("galleries", "Galleries").text(f"Not made: {reason}.")
        return
    hit = ranked.values >= thr
    rows = gallery_rows(scores, ranked.values, hit, cfg.gallery_size, cfg.seed)
    stamps = {name: source.fetch(*scores.locate(idx)) for name, idx in rows.items()}
    score_fn = None
    if checkpoint:
        score_fn = _model_scorer(checkpoint, s3)
    sec = ev.add_section("galleries", "Galleries")
    if score_fn:
        sec.text(f"Occlusion maps (beside each stamp): mean drop of the probability when an {cfg.occlusion_patch_pix}x"
                 f"{cfg.occlusion_patch_pix} px square covering the pixel is replaced by sky noise; {plots.OCCLUSION_LEGEND}.")
    for k, (name, idx) in enumerate(rows.items()):
        if not len(idx):
            continue
        overlays = None
        if score_fn is not None:
            overlays = occlusion_maps(score_fn, stamps[name], cfg.occlusion_patch_pix, cfg.occlusion_stride_pix,
                                      np.random.default_rng(cfg.seed))
        sec.figure(plots.gallery(stamps[name], [caption(scores, i) for i in idx], name.capitalize(),
                                 fig_dir / f"gallery_{k}.png", overlays, cols=4 if overlays is not None else 6), name)
    conf = confuser_gallery(scores, ranked.values, cfg.gallery_size, source, fig_dir)
    if conf is not None:
        sec.figure(conf[1], conf[0])
    if score_fn is not None:
        probe_section(scores, ranked, thr, cfg, ev, fig_dir, source, score_fn)


def _model_scorer(checkpoint: str | list[str], s3):
    """images -> logits of one checkpoint, or of a committee (a list: the mean member logit, as `dhs score`
    combines them by default; members checked as `dhs score` checks them)."""
    from darkhaloscope.score.infer import infer_many
    from darkhaloscope.score.committee import load_members
    from darkhaloscope.runtime.distributed import resolve_device

    device = resolve_device("auto")
    members, _ = load_members([checkpoint] if isinstance(checkpoint, str) else list(checkpoint), device, s3)
    models = [m.model for m in members]
    return lambda images: infer_many(models, members[0].preprocess, np.ascontiguousarray(images, dtype=np.float32),
                                     device).mean(axis=0)


def _probe_sample(scores, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = [rng.permutation(np.flatnonzero(scores.labels == c))[:n // 2] for c in (1, 0)]
    return np.sort(np.concatenate(parts))


def probe_section(scores, ranked, thr: float, cfg, ev, fig_dir: Path, source, score_fn) -> None:
    rng = np.random.default_rng(cfg.seed)
    idx = _probe_sample(scores, cfg.probe_rows, cfg.seed)
    images = source.fetch(*scores.locate(idx))
    y = scores.labels[idx]
    logits = score_fn(images)
    sec = ev.add_section("probes", "Model probes")
    out = {}
    if scores.model_logits() is not None:
        diff = float(np.max(np.abs(logits - scores.model_logits()[idx]))) if len(idx) else 0.0
        out["rescore_max_abs_logit_diff"] = diff
        sec.text(f"Re-scoring {len(idx):,} stamps: max |logit difference| from the scores file = {diff:.3g}.")
        if diff > 0.05:
            ev.warnings.append(f"re-scoring with this checkpoint differs from the scores file (max |dlogit| {diff:.3g}): "
                               "wrong checkpoint, or different preprocessing")
    masked = score_fn(mask_core(images, cfg.core_radius_pix, rng))
    a_full, a_mask = M.auroc(y, logits), M.auroc(y, masked)
    out["core_masked"] = {"radius_pix": cfg.core_radius_pix, "auroc_full": a_full.to_dict(), "auroc_masked": a_mask.to_dict()}
    if a_full.defined and a_mask.defined:
        drop = a_full.value - a_mask.value
        out["core_masked"]["auroc_drop"] = drop
        sec.text(f"Core-masked (r < {cfg.core_radius_pix:g} px = {cfg.core_radius_pix * PIXEL_SCALE_ARCSEC:.2f}\" replaced by sky "
                     f"noise): AUROC {a_full.value:.4f} -> {a_mask.value:.4f} (drop {drop:+.4f}) on {len(idx):,} stamps. "
                     "A large drop means the score depends on the lens core, not only the arcs.")
        if drop > 0.1:
            ev.warnings.append(f"masking the central {cfg.core_radius_pix:g} px drops AUROC by {drop:.3f}: "
                               "the model leans on the lens core")
    else:
        sec.text(f"Core-masked AUROC undefined: {a_full.reason}")
    paired = _paired(scores, idx, y, images, logits, source, ranked, thr, rng, score_fn)
    if paired:
        out["paired"] = paired
        names = list(paired)
        sec.table(["stamps", "n", "mean probability", "fraction scored lens (95% Wilson)"],
                  [[k, v["n"], f"{v['mean_prob']:.3f}", f"{v['frac_hit']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]"]
                   for k, v in paired.items()])
        sec.figure(plots.bar_scores(
            names, [paired[k]["frac_hit"] for k in names], [paired[k]["lo"] for k in names],
            [paired[k]["hi"] for k in names],
            f"Fraction scored lens (p >= {ranked.to_prob(thr):.3g}), paired stamps", "fraction scored lens",
            fig_dir / "paired.png"), "Scores of paired stamps")
    else:
        sec.text("Paired probe: the data have no ", Code(CTRL_STAMP_COLUMN), " column (host without the arc).")
    host = host_scale_probe(images, y, logits, score_fn, cfg.host_scales, cfg.host_probe_rows, cfg.seed,
                            plain_controls(scores.labels, scores.confuser_kind)[idx], SKY_RADIUS_PIX)
    render_host_scale(sec, host, ev.warnings)
    if host is not None:
        out["host_scale"] = host
    ev.metrics["probes"] = out


def _paired(scores, idx, y, images, logits, source, ranked, thr, rng, score_fn) -> dict:
    if not getattr(source, "has_ctrl", False):
        return {}
    lens = np.flatnonzero(y == 1)
    ctrl = source.fetch(*scores.locate(idx[lens]), column=CTRL_STAMP_COLUMN)
    ok = np.abs(ctrl).reshape(len(ctrl), -1).sum(1) > 0
    if not ok.any():
        return {}
    inj, ctrl = images[lens][ok], ctrl[ok]
    _, sigma = sky_stats(ctrl)
    arc = inj - ctrl + (sigma[..., None, None] * rng.normal(size=inj.shape)).astype(np.float32)
    res = {}
    t_prob = ranked.to_prob(thr)
    for name, lg in (("injection (host + arc)", logits[lens][ok]), ("host alone (paired control)", score_fn(ctrl)),
                     ("arc alone on sky noise", score_fn(arc)), ("controls (for reference)", logits[y == 0])):
        p = sigmoid(lg)
        k, n = int((p >= t_prob).sum()), len(p)
        lo, hi = M.wilson_interval(k, n)
        res[name] = {"n": n, "mean_prob": float(p.mean()) if n else 0.0, "frac_hit": k / n if n else 0.0,
                     "lo": float(lo), "hi": float(hi)}
    return res
