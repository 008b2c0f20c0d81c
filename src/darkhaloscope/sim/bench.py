"""`dhs bench simulate`: injection speed against the straightforward lenstronomy recipe, and scaling.

Measures, on the same draws of lens, source and PSF:
1. baseline: one `lenstronomy ImageModel.image(...)` call per band (SIE + shear, Sersic source, pixel
   PSF kernel of the band, supersampling_factor = S everywhere), as a user would write it;
2. darkhaloscope: `render_lensed_source` (lensed light rendered once, adaptive supersampling S) +
   `convolve_bands` (three PSFs in one FFT call) + per-band colour scaling;
3. whole rows: `render_row` (host, noise, arc) + npz encoding, stamps/s on one core;
4. `simulate_tier` end to end with 1 and W workers (parallel scaling).

    dhs bench simulate --stamps 200 --workers 2
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
import warnings

import numpy as np

from darkhaloscope.sim.build import SimContext, encode_row_stamp, make_plan, simulate_tier
from darkhaloscope.sim.hosts import colour_scale
from darkhaloscope.sim.inject import lens_kwargs, render_lensed_source, sersic_kwargs
from darkhaloscope.sim.observing import draw_conditions, psf_kernel
from darkhaloscope.sim.params import draw_lens, draw_sersic_source, grid_points, parse_snr_dist, parse_theta_e_dist
from darkhaloscope.sim.render import convolve_bands, psf_stack, render_row
from darkhaloscope.sim.simconfig import SimConfig
from darkhaloscope.stamps.schema import BANDS, PIXEL_SCALE_ARCSEC, STAMP_SIZE


def _draws(n: int, cfg: SimConfig, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    theta_e = parse_theta_e_dist(cfg.theta_e_dist, cfg.theta_e_arcsec)[0]
    out = []
    for _ in range(n):  # (one Sersic, no knots: both methods render the same profile)
        cond = draw_conditions(rng, BANDS)
        lens = draw_lens(rng, cfg, {}, 0.0, theta_e)
        out.append((cond, lens, draw_sersic_source(rng, cfg, {}, lens.theta_e_arcsec)))
    return out


def bench_baseline(draws, cfg: SimConfig) -> float:
    """Stamps/s of three per-band ImageModel.image calls (models built once per PSF, not timed)."""
    with warnings.catch_warnings():  # lenstronomy's convolution triggers numpy 2 DeprecationWarnings
        warnings.simplefilter("ignore", DeprecationWarning)
        return _bench_baseline(draws, cfg)


def _bench_baseline(draws, cfg: SimConfig) -> float:
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util.simulation_util import data_configure_simple

    data = ImageData(**data_configure_simple(STAMP_SIZE, PIXEL_SCALE_ARCSEC, 1.0, 1.0))
    lens_model, light = LensModel(["SIE", "SHEAR"]), LightModel(["SERSIC_ELLIPSE"])
    models = {}
    for cond, _, _ in draws:
        for f in cond.fwhm_arcsec:
            if (f, cond.beta) not in models:
                psf = PSF(psf_type="PIXEL", kernel_point_source=np.array(psf_kernel(f, cond.beta, cfg.psf)))
                models[(f, cond.beta)] = ImageModel(data, psf, lens_model_class=lens_model, source_model_class=light,
                                                    kwargs_numerics={"supersampling_factor": cfg.supersample})
    t0 = time.perf_counter()
    for cond, lens, src in draws:
        kl = lens_kwargs(lens)
        for f, scale in zip(cond.fwhm_arcsec, colour_scale(0.3, 0.1)):
            ks = sersic_kwargs(float(scale), src.reff_arcsec, src.n_sersic, src.e1, src.e2, src.x_arcsec,
                               src.y_arcsec)
            models[(f, cond.beta)].image(kwargs_lens=kl, kwargs_source=ks)
    return len(draws) / (time.perf_counter() - t0)


def bench_ours(draws, cfg: SimConfig) -> float:
    for cond, _, _ in draws:  # warm the PSF cache as the baseline's models are prebuilt
        psf_stack(cond, cfg.psf)
    t0 = time.perf_counter()
    for cond, lens, src in draws:
        unit = render_lensed_source(lens, src, ss=cfg.supersample)
        convolve_bands(unit, psf_stack(cond, cfg.psf)) * colour_scale(0.3, 0.1)[:, None, None]
    return len(draws) / (time.perf_counter() - t0)


def bench_rows(n: int, cfg: SimConfig, seed: int = 0) -> float:
    ctx = SimContext(cfg, seed, make_plan(max(n, 6), seed, cfg), None, grid_points({}),
                     parse_snr_dist(cfg.arc_snr_dist))
    t0 = time.perf_counter()
    for i in range(n):
        encode_row_stamp(render_row(ctx, i).image, cfg)
    return n / (time.perf_counter() - t0)


def _cpu_s() -> float:
    """CPU seconds used by this process and its finished children (workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_tier(rows: int, workers: int, cfg: SimConfig) -> tuple[float, float]:
    """(rows per wall second, rows per CPU second) of an end-to-end build with `workers` processes."""
    with tempfile.TemporaryDirectory() as tmp:
        c0 = _cpu_s()
        m = simulate_tier(tmp, "bench", rows, 0, cfg, workers=workers)
        cpu = _cpu_s() - c0
    return rows / m["elapsed_s"], rows / cpu


def run_bench(stamps: int, workers: int, tier_rows: int, cfg: SimConfig) -> dict:
    draws = _draws(stamps, cfg)
    bench_ours(draws[:5], cfg)  # warm-up (lenstronomy caches, FFT plans)
    c0 = time.process_time()
    base = bench_baseline(draws, cfg)
    c1 = time.process_time()
    ours = bench_ours(draws, cfg)
    c2 = time.process_time()
    out = {"supersample": cfg.supersample, "baseline_stamps_per_s": base, "ours_stamps_per_s": ours,
           "baseline_stamps_per_cpu_s": len(draws) / (c1 - c0), "ours_stamps_per_cpu_s": len(draws) / (c2 - c1),
           "rows_per_s_1core": bench_rows(stamps, cfg)}
    out["speedup"] = out["ours_stamps_per_s"] / out["baseline_stamps_per_s"]
    if tier_rows:
        tier_cfg = SimConfig(**{**cfg.__dict__, "rows_per_file": max(1, tier_rows // (4 * max(workers, 1)))})
        out["tier_rows"] = tier_rows
        out["tier_1_worker_rows_per_s"], out["tier_1_worker_rows_per_cpu_s"] = bench_tier(tier_rows, 1, tier_cfg)
        wall, cpu = bench_tier(tier_rows, workers, tier_cfg)
        out[f"tier_{workers}_workers_rows_per_s"], out[f"tier_{workers}_workers_rows_per_cpu_s"] = wall, cpu
        out["scaling_wall"] = wall / out["tier_1_worker_rows_per_s"]  # ~W on an otherwise idle machine
        out["parallel_cpu_efficiency"] = cpu / out["tier_1_worker_rows_per_cpu_s"]  # 1.0: no parallel overhead
        out["load_average_1min"] = os.getloadavg()[0]  # > cores: other jobs compete, wall figures drop
    return out
