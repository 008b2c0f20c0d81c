"""Injection parameters: distributions, `--grid` parsing, and the arc S/N target distribution.

- `parse_grid("theta_e=0.75,1.0,1.5 src_dmag=1,2")` -> ordered {name: values}; injection k uses grid point
  k mod (grid size) of the Cartesian product (like the users' `grid_small` tiers); unknown names,
  empty value lists and impossible values are a UsageError before anything is written.
- `parse_snr_dist("loguniform:5:100")` -> a sampler of target peak arc S/N (`none` keeps the source
  magnitude distribution as drawn). See `build.render_row` for how a target is met.
- `parse_theta_e_dist("lognormal:1.5:0.3", (0.6, 3.0))` -> (sampler, CDF) of the Einstein radius.
- `draw_lens` / `draw_source`: SIE + shear and clumpy-source (Sersic + knots, sometimes two Sersics)
  draws from the settings in `SimConfig`.

Exercised by `dhs simulate --grid ... --arc-snr-dist ...` and tests/sim/test_bad_input.py.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np

from darkhaloscope.errors import UsageError
from darkhaloscope.sim.inject import Knot, LensParams, SourceParams


def _axis_ratio(name: str, v: float) -> None:
    if not 0 < v <= 1:
        raise UsageError(f"--grid {name}={v}: an axis ratio must be in (0, 1]")


def _shear(name: str, v: float) -> None:
    if not 0 <= v < 0.5:
        raise UsageError(f"--grid {name}={v}: shear must be in [0, 0.5)")


def _within(lo: float, hi: float, unit: str) -> Callable[[str, float], None]:
    """A grid value inside [lo, hi] (the config's own range of the drawn quantity)."""
    def check(name: str, v: float) -> None:
        if not lo <= v <= hi:
            raise UsageError(f"--grid {name}={v}: must be in [{lo:g}, {hi:g}] {unit}")
    return check


def _theta_e(name: str, v: float) -> None:
    if not 0 < v <= 6:
        raise UsageError(f"--grid {name}={v}: Einstein radius must be in (0, 6] arcsec (a 64-pixel stamp "
                         "is 16.8\" wide)")


# Registry: grid parameter name -> validator. The value overrides the drawn one for that row.
GRID_PARAMS: dict[str, Callable[[str, float], None]] = {
    "theta_e": _theta_e,  # Einstein radius, arcsec
    "src_dmag": _within(-20.0, 25.0, "mag"),  # source r magnitude minus host r magnitude (the users' definition):
    # src_mag_r's range less host_mag_r's
    "src_mag_r": _within(10.0, 35.0, "mag (AB)"),  # unlensed source r magnitude, AB (as config src_mag_r)
    "src_reff": _within(0.01, 5.0, "arcsec"),  # source half-light radius (as config src_reff_arcsec)
    "lens_q": _axis_ratio,  # SIE axis ratio
    "shear_gamma": _shear,  # external shear strength
}


def parse_grid(text: str | None) -> dict[str, list[float]]:
    """Parse `name=v1,v2 name=v3,...` (space or ';' separated) into an ordered {name: [values]}."""
    out: dict[str, list[float]] = {}
    if not text or not text.strip():
        return out
    for item in text.replace(";", " ").split():
        if "=" not in item:
            raise UsageError(f"--grid item {item!r} must look like name=v1,v2,... (names: "
                             f"{', '.join(GRID_PARAMS)})")
        name, vals = item.split("=", 1)
        if name not in GRID_PARAMS:
            raise UsageError(f"--grid: unknown parameter {name!r}; known: {', '.join(GRID_PARAMS)}")
        if name in out:
            raise UsageError(f"--grid: parameter {name!r} given twice")
        parts = [v for v in vals.split(",") if v.strip()]
        if not parts:
            raise UsageError(f"--grid {name}=: empty list of values; give at least one, e.g. {name}=1.0,1.5")
        try:
            values = [float(v) for v in parts]
        except ValueError:
            raise UsageError(f"--grid {name}={vals}: values must be numbers") from None
        for v in values:
            GRID_PARAMS[name](name, v)
        out[name] = values
    if "src_dmag" in out and "src_mag_r" in out:
        raise UsageError("--grid: give src_dmag or src_mag_r, not both (src_dmag = src_mag_r - host_mag_r)")
    return out


def grid_points(grid: dict[str, list[float]]) -> list[dict[str, float]]:
    """The Cartesian product of the grid, in a fixed order ([{}] for an empty grid)."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def _loguniform(lo: float, hi: float):
    return lambda rng: float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _uniform(lo: float, hi: float):
    return lambda rng: float(rng.uniform(lo, hi))


SNR_DISTS = {"loguniform": _loguniform, "uniform": _uniform}  # registry: name -> (lo, hi) -> sampler


def parse_snr_dist(text: str | None):
    """`none` -> None; `loguniform:LO:HI` / `uniform:LO:HI` -> sampler(rng) -> target peak arc S/N."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    parts = text.strip().split(":")
    if parts[0] not in SNR_DISTS or len(parts) != 3:
        raise UsageError(f"--arc-snr-dist {text!r}: expected none or NAME:LO:HI with NAME in "
                         f"{', '.join(SNR_DISTS)} (e.g. loguniform:2:50)")
    try:
        lo, hi = float(parts[1]), float(parts[2])
    except ValueError:
        raise UsageError(f"--arc-snr-dist {text!r}: LO and HI must be numbers") from None
    if not 0 < lo < hi < math.inf:
        raise UsageError(f"--arc-snr-dist {text!r}: need 0 < LO < HI, both finite")
    return SNR_DISTS[parts[0]](lo, hi)


def check_range(name: str, rng_pair, lo: float | None = None, hi: float | None = None) -> None:
    """UsageError unless rng_pair is (min, max) with min <= max inside [lo, hi]."""
    if len(rng_pair) != 2 or not rng_pair[0] <= rng_pair[1]:
        raise UsageError(f"config {name}={list(rng_pair)}: expected MIN,MAX with MIN <= MAX")
    if lo is not None and rng_pair[0] < lo or hi is not None and rng_pair[1] > hi:
        raise UsageError(f"config {name}={list(rng_pair)}: values must lie in [{lo}, {hi}]")


def _lognormal_theta_e(median: float, sigma_ln: float, lo: float, hi: float):
    """Sampler and CDF of a log-normal (median, sigma of ln) truncated to [lo, hi] (inverse-CDF draws)."""
    from scipy.special import ndtr, ndtri  # = scipy.stats.norm.cdf / .ppf, without their per-call overhead

    a, b = ndtr((math.log(lo) - math.log(median)) / sigma_ln), ndtr((math.log(hi) - math.log(median)) / sigma_ln)

    def cdf(x):
        z = (np.log(np.clip(x, lo, hi)) - math.log(median)) / sigma_ln
        return (ndtr(z) - a) / (b - a)

    return (lambda rng: float(median * math.exp(sigma_ln * ndtri(a + rng.uniform() * (b - a))))), cdf


def parse_theta_e_dist(text: str, lo_hi: tuple[float, float]):
    """`uniform` or `lognormal:MEDIAN:SIGMA_LN` (arcsec; truncated to `theta_e_arcsec`) -> (sampler(rng), cdf)."""
    lo, hi = lo_hi
    parts = str(text).strip().split(":")
    if parts == ["uniform"]:
        return (lambda rng: float(rng.uniform(lo, hi))), (lambda x: (np.clip(x, lo, hi) - lo) / (hi - lo))
    try:
        if parts[0] != "lognormal" or len(parts) != 3:
            raise ValueError
        median, sigma = float(parts[1]), float(parts[2])
    except ValueError:
        raise UsageError(f"--theta_e_dist={text!r}: expected uniform or lognormal:MEDIAN:SIGMA_LN "
                         "(e.g. lognormal:1.5:0.3)") from None
    if not (0 < sigma <= 3 and lo < median < hi):
        raise UsageError(f"--theta_e_dist={text!r}: need 0 < SIGMA_LN <= 3 and the median inside "
                         f"theta_e_arcsec {lo}-{hi}")
    return _lognormal_theta_e(median, sigma, lo, hi)


def draw_lens(rng: np.random.Generator, cfg, point: dict[str, float], host_phi_rad: float,
              theta_e_sampler) -> LensParams:
    """SIE aligned with the host light within +-20 deg, plus external shear."""
    theta_e = point["theta_e"] if "theta_e" in point else theta_e_sampler(rng)
    q = point.get("lens_q", rng.uniform(*cfg.lens_q))
    phi = host_phi_rad + rng.normal(0.0, math.radians(20.0))
    gamma = point.get("shear_gamma", rng.uniform(0.0, cfg.shear_max))
    return LensParams(float(theta_e), float(q), float(phi), float(gamma), float(rng.uniform(0, math.pi)))


def draw_sersic_source(rng, cfg, point, theta_e_arcsec: float) -> SourceParams:
    beta = cfg.src_beta_frac * theta_e_arcsec * math.sqrt(rng.uniform())
    ang = rng.uniform(0.0, 2 * math.pi)
    reff = point.get("src_reff", rng.uniform(*cfg.src_reff_arcsec))
    e = rng.uniform(0.0, cfg.src_e_max)
    pa = rng.uniform(0.0, math.pi)
    return SourceParams(float(beta * math.cos(ang)), float(beta * math.sin(ang)), float(reff),
                        float(rng.uniform(*cfg.src_n_sersic)), float(e * math.cos(2 * pa)),
                        float(e * math.sin(2 * pa)))


def draw_source(rng: np.random.Generator, cfg, point: dict[str, float], theta_e_arcsec: float):
    """A clumpy source: ([(Sersic, flux fraction)], knots). The main Sersic is placed uniformly (in area)
    within `src_beta_frac` x theta_E of the lens axis, so that its images form arcs or a ring; with
    probability `src_second_prob` a second Sersic (0.2-1x the first's flux) lies elsewhere in that region;
    `src_knots` Gaussian star-forming knots (sigma `src_knot_sigma_arcsec`) around the main Sersic within
    its half-light radius carry `src_knot_frac` of the flux."""
    main = draw_sersic_source(rng, cfg, point, theta_e_arcsec)
    parts = [(main, 1.0)]
    if rng.uniform() < cfg.src_second_prob:
        parts.append((draw_sersic_source(rng, cfg, point, theta_e_arcsec), float(rng.uniform(0.2, 1.0))))
    n_knots = int(rng.integers(cfg.src_knots[0], cfg.src_knots[1] + 1))
    knot_frac = float(rng.uniform(*cfg.src_knot_frac)) if n_knots else 0.0
    w = rng.uniform(0.5, 1.5, n_knots)
    knots = tuple(Knot(float(main.x_arcsec + main.reff_arcsec * r * math.cos(a)),
                       float(main.y_arcsec + main.reff_arcsec * r * math.sin(a)),
                       float(rng.uniform(*cfg.src_knot_sigma_arcsec)), float(knot_frac * wk / w.sum()))
                  for r, a, wk in zip(np.sqrt(rng.uniform(0, 1, n_knots)), rng.uniform(0, 2 * math.pi, n_knots), w))
    total = sum(f for _, f in parts)
    return [(s, (1.0 - knot_frac) * f / total) for s, f in parts], knots
