"""Device-side preprocessing: robust normalisation + dihedral augmentation, as batched tensor ops.

`prepare_batch(x, cfg, train=...)` is THE one function that turns stamps in nanomaggies into network
input. Training, validation, scoring and probes all call it, so they can never normalise differently.
It runs after the host->device transfer (decode stays on the CPU loader workers):

    x = batch["image"].to(device, non_blocking=True)            # (B, 3, 64, 64) float16/32, nanomaggies
    x = prepare_batch(x, cfg, train=True, generator=gen)         # float32, channels_last

Normalisation (`cfg.norm`, a registry: `NORMALISATIONS`):
- `annulus` (default): per stamp (and per band), subtract the median and divide by 1.4826 x MAD of the
  pixels at r_in <= r < r_out px from the stamp centre (pixel size//2, where the host sits). An injected
  arc lies at the Einstein radius (<= ~3" = 11 px), well inside r_in = 20 px (5.2"), so its flux never
  enters the statistics. Whole-stamp statistics (`stamp`) do see the arc: a brighter arc raises the
  median and MAD, which changes the normalised sky and host of injections but not of controls, a
  shortcut the users measured. `stamp` is kept for that comparison only.
- `none`: only the float32 cast (and augmentation).
Normalised pixels are then clipped to [-clip_sigma, clip_sigma] (0 = no clip), or with `stretch` = 'asinh'
mapped to clip_sigma x asinh(z / clip_sigma) (linear below clip_sigma, logarithmic above: no plateau). A stamp whose MAD is 0
(constant pixels) is only median-subtracted. Medians are torch's lower median (no interpolation).

Augmentation (train=True): one of the 8 elements of the dihedral group (flips x rot90) per stamp,
drawn from `generator`, applied as a single gather: exact pixel permutations, no interpolation. They turn
about the host pixel (size//2, the centre of every aperture and of the polar nets' grid), not about the array
centre half a pixel away: pixel offsets from the host are negated / swapped modulo the size, so the host stays
on its pixel and only the outermost row and column (32 px out, r >= 32 px: outside the annulus) wrap onto
themselves. Turned about the array centre, 7 of 8 elements moved the host 1 px off the polar grid's pole in
training but never at test time (a quarter turn moved polar_fourier's features by 12-21%; about the host, by
1e-7, tested). On tiers whose scenes sit off the centre pixel as survey cutouts do (`dhs simulate`'s
`centre_offset_px`), polar_fourier reaches lens vs look-alike AUROC 0.934 turning about the host pixel vs
0.919 about the array centre (seed 1; benchmarks/RESULTS.md, section confusers, session 6).

Depth augmentation (train=True, `depth_jitter_mag` > 0): each stamp made shallower by U(0, M) mag before
it is normalised (models.depth).

Host-light augmentation (train=True, `host_scale_mag` > 0): each stamp's smooth host light scaled by
10^(-0.4 u), u ~ U(-M, M) mag, before it is normalised (models.hostaug).

Host-light view (`host_light` = 'subtract', at training AND scoring time: a checkpoint's config carries it):
each stamp minus a smooth elliptical model of its host (`stamps.hostlight.host_models`: adaptive moments for
the shape on the band-summed S/N, median profiles in elliptical annuli per band), after the depth augmentation
and before the normalisation, so the net sees arcs on a flat background instead of on the galaxy's wings. The
fit is numpy on the CPU, vectorised over the batch (~1 ms per stamp on this 2-core box; a GPU batch makes a
round trip to the host), deterministic.

Settings: `stamps.normalise.PreprocessConfig` (torch-free). Exercised by `dhs train`, `dhs bench train` and `benchmarks/bench_pipeline.py`.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch

from darkhaloscope.errors import UsageError
from darkhaloscope.models.hostaug import host_light_model, rescale_host_light
from darkhaloscope.stamps.normalise import HOST_LIGHT_CHOICES, STRETCH_CHOICES, PreprocessConfig
from darkhaloscope.stamps.schema import pixel_radius

MAD_TO_SIGMA = 1.4826  # sigma of a Gaussian = 1.4826 x its median absolute deviation
N_DIHEDRAL = 8  # 4 rotations x (no flip, flip)


def _radius_px(size: int) -> torch.Tensor:
    """Distance (pixels) of each pixel from the stamp centre, as everywhere else (`schema.pixel_radius`)."""
    return torch.from_numpy(pixel_radius(size))


@functools.lru_cache(maxsize=32)
def _annulus_index(r_in_px: float, r_out_px: float, size: int, device: str) -> torch.Tensor:
    r = _radius_px(size).flatten()
    idx = torch.nonzero((r >= r_in_px) & (r < r_out_px)).flatten()
    if idx.numel() < 8:
        raise UsageError(f"the annulus {r_in_px} <= r < {r_out_px} px holds only {idx.numel()} pixels of a "
                         f"{size}x{size} stamp; widen it (defaults 20-32 px)")
    return idx.to(device)


def _annulus_pixels(cfg: PreprocessConfig, size: int, device: torch.device) -> torch.Tensor:
    return _annulus_index(float(cfg.annulus_r_in_px), float(cfg.annulus_r_out_px), size, str(device))


def _all_pixels(cfg: PreprocessConfig, size: int, device: torch.device) -> None:
    return None


# name -> which flattened pixels the statistics use (None = all of them); 'none' = no normalisation.
NORMALISATIONS: dict[str, Callable[[PreprocessConfig, int, torch.device], torch.Tensor | None] | None] = {
    "annulus": _annulus_pixels,
    "stamp": _all_pixels,
    "none": None,
}


def robust_stats(x: torch.Tensor, pixels: torch.Tensor | None, per_band: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Median and 1.4826 x MAD (float32) of the chosen pixels of each stamp: shapes (B, C or 1, 1, 1).

    Medians are lower medians (the same element on every device). A zero MAD (constant stamp) gives
    scale 1 so that nothing divides by zero.
    """
    b = x.shape[0]
    v = _select_pixels(x.flatten(2), pixels).to(torch.float32)
    if not per_band:
        v = v.reshape(b, 1, -1)
    med = _lower_median(v)
    mad = _lower_median((v - med).abs_()) * MAD_TO_SIGMA  # not in place: v may be a view of x
    scale = torch.where(mad > 0, mad, torch.ones_like(mad))
    return med[..., None], scale[..., None]


def _select_pixels(v: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
    if pixels is None:
        return v
    if v.device.type == "cpu":  # numpy's take is ~7x torch's index_select here
        return torch.from_numpy(np.take(v.detach().numpy(), pixels.numpy(), axis=2))
    return v.index_select(2, pixels)


def _lower_median(v: torch.Tensor) -> torch.Tensor:
    """Lower median along the last axis, keepdim. On the CPU numpy's single-pivot SIMD partition is ~10x
    torch.median; both pick the same element, so CPU and GPU normalise identically."""
    if v.device.type != "cpu":
        return v.median(dim=-1, keepdim=True).values
    k = (v.shape[-1] - 1) // 2
    return torch.from_numpy(np.partition(v.detach().numpy(), k, axis=-1)[..., k:k + 1].copy())


@functools.lru_cache(maxsize=16)
def _array_dihedral_index(size: int, device: str) -> torch.Tensor:
    """(8, size*size) flat source index of every output pixel for each dihedral element e about the array's
    centre: e // 4 = horizontal flip first, e % 4 = number of 90-degree rotations."""
    base = torch.arange(size * size).view(size, size)
    maps = []
    for e in range(N_DIHEDRAL):
        m = base.flip(-1) if e >= 4 else base
        maps.append(torch.rot90(m, e % 4, dims=(0, 1)).flatten())
    return torch.stack(maps).to(device)


@functools.lru_cache(maxsize=16)
def _dihedral_index(size: int, device: str) -> torch.Tensor:
    """The same 8 elements about pixel size//2 (the host) instead: each array-centre element, then the roll
    (modulo size) that brings the host pixel back to size//2, so it is a fixed point of every element."""
    c = size // 2
    maps = _array_dihedral_index(size, "cpu").view(N_DIHEDRAL, size, size)
    out = []
    for m in maps:  # out[p] = in[m[p]]: the host lands where m holds its index
        y, x = divmod(int(torch.nonzero(m.flatten() == c * size + c)[0, 0]), size)
        out.append(m.roll((c - y, c - x), dims=(0, 1)).flatten())
    return torch.stack(out).to(device)


DIHEDRAL_CENTRES = ("host", "array")  # host: about pixel size//2 (stamps); array: about the array's centre (maps)


def dihedral(x: torch.Tensor, element: torch.Tensor, centre: str = "host") -> torch.Tensor:
    """Apply dihedral element element[i] (0..7) to stamp i of x (B, C, S, S) about `centre`: one gather over
    pixels, done in the (B, S*S, C) view so that a channels_last input gives a channels_last output without
    another copy."""
    b, c, h, w = x.shape
    if h != w:
        raise UsageError(f"dihedral augmentation needs square stamps; got {h}x{w}")
    if centre not in DIHEDRAL_CENTRES:
        raise UsageError(f"dihedral centre {centre!r}: choose one of {', '.join(DIHEDRAL_CENTRES)}")
    table = _dihedral_index if centre == "host" else _array_dihedral_index
    index = table(h, str(x.device))[element.to(x.device)]  # (B, S*S)
    pixels_last = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view when x is channels_last
    out = pixels_last.gather(1, index[:, :, None].expand(b, h * w, c))
    return out.view(b, h, w, c).permute(0, 3, 1, 2)


def random_dihedral_elements(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n elements drawn uniformly from 0..7 with `generator` (on its device; CPU default RNG if None)."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(0, N_DIHEDRAL, (n,), generator=generator, device=device)


def subtract_host_light(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) stamps minus their smooth elliptical host models (stamps.hostlight), float32 on x's device.
    `sigma` (B, C, 1, 1): each band's sky noise, which weighs the bands in the host's shape."""
    return x.to(torch.float32) - host_light_model(x, sigma)


def prepare_batch(x: torch.Tensor, cfg: PreprocessConfig, *, train: bool,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """THE network-input transform: (B, 3, S, S) float16/32 nanomaggies on any device -> float32 normalised
    (+ a random dihedral element per stamp when `train`), contiguous in channels_last memory format.

    Deterministic for train=False. With train=True the elements come from `generator` (seeded by the
    loop and saved in its checkpoint), so a resumed run draws the same augmentations.
    """
    if x.ndim != 4:
        raise UsageError(f"prepare_batch expects (B, C, H, W) stamps; got shape {tuple(x.shape)}")
    if cfg.norm not in NORMALISATIONS or cfg.host_light not in HOST_LIGHT_CHOICES or cfg.stretch not in STRETCH_CHOICES:
        cfg.validate()  # raises UsageError naming the valid choices
    stats_pixels = NORMALISATIONS[cfg.norm]
    if train and cfg.depth_jitter_mag > 0 and x.shape[0] > 0:  # models.depth: shallower by U(0, M) mag
        from darkhaloscope.models.depth import shallower

        pixels = stats_pixels(cfg, x.shape[-1], x.device) if stats_pixels is not None else None
        x = shallower(x, robust_stats(x, pixels, True)[1], cfg.depth_jitter_mag, generator)[0]
    if train and cfg.host_scale_mag > 0 and x.shape[0] > 0:  # models.hostaug: host light x 10^(-0.4 U(-M, M))
        pixels = stats_pixels(cfg, x.shape[-1], x.device) if stats_pixels is not None else None
        x = rescale_host_light(x, robust_stats(x, pixels, True)[1], cfg.host_scale_mag, generator)[0]
    if cfg.host_light == "subtract" and x.shape[0] > 0:
        pixels = stats_pixels(cfg, x.shape[-1], x.device) if stats_pixels is not None else None
        x = subtract_host_light(x, robust_stats(x, pixels, True)[1])
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device, memory_format=torch.channels_last)
    if stats_pixels is None or x.shape[0] == 0:
        out.copy_(x)
    else:  # one pass: float16 -> float32 cast, median subtraction, channels_last layout
        med, scale = robust_stats(x, stats_pixels(cfg, x.shape[-1], x.device), cfg.per_band)
        torch.sub(x, med, out=out).div_(scale)
        if cfg.clip_sigma > 0 and cfg.stretch == "asinh":
            out.div_(cfg.clip_sigma).asinh_().mul_(cfg.clip_sigma)
        elif cfg.clip_sigma > 0:
            out.clamp_(-cfg.clip_sigma, cfg.clip_sigma)
    if train and x.shape[0] > 0:
        out = dihedral(out, random_dihedral_elements(x.shape[0], generator))
    return out
