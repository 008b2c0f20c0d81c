"""Confuser controls: unlensed light a lens finder could take for an arc, added to control stamps.

    dhs simulate --out data --tier hard --rows 4000 --seed 1 --confusers 0.3
    dhs simulate ... --confusers 0.5 --set confuser_kinds=ring,spiral
    dhs simulate ... --confusers 0.5 --set confuser_kinds=ring,spiral:3,companion:2,disk,tidal

A fraction `confusers` of the controls carries one of these kinds (recorded in `confuser_kind`, null
for plain controls, and the variant drawn in `confuser_variant`, e.g. `ring` `full round`; metadata, never
a model input), so a report can say which variants pass a finder, not only which kinds:

- `ring`: a star-forming ring (resonance / collisional ring) around the host, radius 0.8-3", inclined
  (axis ratio 0.5-1, minor semi-axis >= 0.7"), full or partial (120-360 deg), with 3-10 blue star-forming knots on it. No light
  at its centre beyond the host. Variants `full round` (axis ratio >= 0.8: an Einstein ring's shape),
  `full inclined`, `partial`.
- `spiral`: two logarithmic arms (pitch 12-30 deg) from 0.4-0.8" out to 2-4", inclined, with blue knots,
  plus a faint exponential disk (variant `two-arm`).
- `companion`: blue compact galaxies at 1-4": one round, one elongated along the tangent (an arc-like
  straight streak), or two on opposite sides (a double-image look-alike). Variants `round`, `tangential`,
  `opposite pair`.
- `disk`: an edge-on / disky blue galaxy (axis ratio 0.1-0.3), through the centre or beside it (1-3").
  Variants `through centre`, `beside`.
- `tidal`: merger / tidal-tail light: one or two curved tails that leave the host's edge on circles NOT
  centred on the host, plus a faint companion at a tail's root. Variants `one tail`, `two tails`.

Brightness and colour overlap the injected arcs' by construction: each confuser draws a "shadow" arc with
exactly the injections' recipe (`render.draw_arc`: lens, source, magnitude, colours) and takes its peak
per-pixel r S/N after the PSF and its g-r, r-z colours. Neither colour nor flux alone tells them apart;
morphology must. Everything is rendered pre-PSF in nanomaggies per pixel and convolved with the stamp's
own PSF, on the same hosts and noise as the injections.

Exercised by `dhs simulate --confusers F` and tests/sim/test_confusers.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from darkhaloscope.errors import UsageError
from darkhaloscope.sim.inject import render_sersic
from darkhaloscope.stamps.schema import PIXEL_SCALE_ARCSEC, STAMP_SIZE

DEPOSIT_SS = 2  # sub-pixels per pixel side of the grid that curves and knots are deposited on
KNOT_SIGMA_ARCSEC = (0.08, 0.18)  # Gaussian sigma of a star-forming knot (unresolved to barely resolved)
KNOT_BLUEING_MAG = (0.0, 0.4)  # knots are bluer in g-r than the body by this much (clipped to src_g_r)
ROUND_RING_Q = 0.8  # a full ring at least this round (axis ratio) is variant `full round`: an Einstein ring's shape


class Layers:
    """Pre-PSF confuser light in two colour layers, (S, S) each, nanomaggies per pixel (relative scale):
    `body` takes the shadow arc's colours, `knots` bluer ones."""

    def __init__(self, size: int = STAMP_SIZE):
        self.size = size
        self.body = np.zeros((size, size))
        self.knots = np.zeros((size, size))

    def _tube(self, x, y, w, sigma_arcsec: float) -> np.ndarray:
        """Points (x, y) arcsec (0, 0 = stamp centre pixel) of weights w, each a Gaussian of `sigma_arcsec`:
        bilinear deposit on a DEPOSIT_SS-times finer grid, Gaussian smoothing, binning to pixels."""
        n = self.size * DEPOSIT_SS
        grid = np.zeros((n, n))
        step = PIXEL_SCALE_ARCSEC / DEPOSIT_SS
        centre = (self.size // 2 + 0.5) * DEPOSIT_SS - 0.5  # fine-grid index of the centre pixel's centre
        px, py = np.asarray(x) / step + centre, np.asarray(y) / step + centre
        x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
        fx, fy = px - x0, py - y0
        w = np.broadcast_to(np.asarray(w, float), px.shape)
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                xi, yi = x0 + dx, y0 + dy
                ok = (xi >= 0) & (xi < n) & (yi >= 0) & (yi < n)
                np.add.at(grid, (yi[ok], xi[ok]), (w * wy * wx)[ok])
        sm = gaussian_filter(grid, sigma_arcsec / step, mode="constant", truncate=5.0)
        return sm.reshape(self.size, DEPOSIT_SS, self.size, DEPOSIT_SS).sum(axis=(1, 3))

    def curve(self, x, y, w, sigma_arcsec: float, flux: float = 1.0) -> None:
        """A tube of light of total `flux` along densely sampled points (x, y) arcsec, relative weights w
        per point, Gaussian cross-section `sigma_arcsec` (body colours)."""
        w = np.asarray(w, float)
        self.body += self._tube(x, y, flux * w / w.sum(), sigma_arcsec)

    def add_knots(self, x, y, flux, sigma_arcsec: float) -> None:
        """Star-forming knots (bluer layer): Gaussians of `sigma_arcsec` with fluxes `flux` at (x, y)."""
        self.knots += self._tube(x, y, flux, sigma_arcsec)


def _incline(x, y, q: float, pa: float):
    """Project a face-on pattern: compress y by axis ratio q, then rotate by position angle pa."""
    y = y * q
    c, s = math.cos(pa), math.sin(pa)
    return c * x - s * y, s * x + c * y


def _knots_along(rng, lay: Layers, x, y, n_knots: int, weight_total: float) -> None:
    idx = rng.choice(len(x), size=min(n_knots, len(x)), replace=False)
    w = rng.uniform(0.5, 1.5, len(idx))
    lay.add_knots(x[idx] + rng.normal(0, 0.05, len(idx)), y[idx] + rng.normal(0, 0.05, len(idx)),
              weight_total * w / w.sum(), rng.uniform(*KNOT_SIGMA_ARCSEC))


def _sersic_blob(lay: Layers, flux: float, reff: float, n: float, q: float, pa: float, x: float, y: float) -> None:
    e = (1 - q) / (1 + q)
    lay.body += render_sersic(flux, reff, n, e * math.cos(2 * pa), e * math.sin(2 * pa), x, y, ss=4, centre_ss=4)


@dataclass(frozen=True)
class ConfuserKind:
    """One kind of look-alike: its painter and the variants it draws (named in `confuser_variant`)."""

    paint: Callable[[np.random.Generator, Layers], int]  # paints pre-PSF light; returns the index of the variant
    variants: tuple[str, ...]


# The registry: a kind of look-alike is declared in one place, `@confuser(NAME, variants)` on its painter.
# `confuser_kinds=all` (SimConfig's default) draws every kind here, in this order; checks and tests read it too.
CONFUSER_KINDS: dict[str, ConfuserKind] = {}


def confuser(name: str, variants: tuple[str, ...]):
    def register(paint):
        if name in CONFUSER_KINDS:
            raise ValueError(f"confuser kind {name!r} registered twice")
        CONFUSER_KINDS[name] = ConfuserKind(paint, tuple(variants))
        return paint
    return register


@confuser("ring", variants=("full round", "full inclined", "partial"))
def ring(rng: np.random.Generator, lay: Layers) -> int:
    radius = rng.uniform(0.8, 3.0)
    q = rng.uniform(max(0.5, 0.7 / radius), 1.0)  # minor semi-axis >= 0.7"
    width = rng.uniform(0.08, min(0.25, radius * q / 4))  # keeps the ring's own light off its centre
    span = 2 * math.pi if rng.uniform() < 0.5 else rng.uniform(2 * math.pi / 3, 2 * math.pi)
    t0 = rng.uniform(0, 2 * math.pi)
    t = t0 + np.linspace(0, span, 720, endpoint=False)
    x, y = _incline(radius * np.cos(t), radius * np.sin(t), q, rng.uniform(0, math.pi))
    lay.curve(x, y, rng.uniform(0.7, 1.3, len(t)), width)
    _knots_along(rng, lay, x, y, int(rng.integers(3, 11)), rng.uniform(0.3, 1.0) * span / (2 * math.pi))
    return 2 if span < 2 * math.pi else 0 if q >= ROUND_RING_Q else 1  # partial / full round / full inclined


@confuser("spiral", variants=("two-arm",))
def spiral(rng: np.random.Generator, lay: Layers) -> int:
    pitch = math.radians(rng.uniform(12, 30))
    r0, r1 = rng.uniform(0.4, 0.8), rng.uniform(2.0, 4.0)
    t = np.linspace(0, math.log(r1 / r0) / math.tan(pitch), 400)
    r = r0 * np.exp(math.tan(pitch) * t)
    q, pa, phase = rng.uniform(0.45, 1.0), rng.uniform(0, math.pi), rng.uniform(0, 2 * math.pi)
    xs, ys = [], []
    for arm in (0.0, math.pi):
        x, y = _incline(r * np.cos(t + phase + arm), r * np.sin(t + phase + arm), q, pa)
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    # points are uniform in angle, so r x exp(-r / r1) per point is a slowly fading arm per unit length
    lay.curve(x, y, np.tile(r * np.exp(-r / r1), 2), rng.uniform(0.12, 0.3))
    _knots_along(rng, lay, x, y, int(rng.integers(4, 12)), rng.uniform(0.3, 0.8))
    _sersic_blob(lay, rng.uniform(0.1, 0.4), rng.uniform(1.0, 2.0), 1.0, q, pa, 0.0, 0.0)
    return 0


@confuser("companion", variants=("round", "tangential", "opposite pair"))
def companion(rng: np.random.Generator, lay: Layers) -> int:
    variant = int(rng.integers(3))  # 0: one round, 1: one elongated along the tangent, 2: an opposite pair
    phi = rng.uniform(0, 2 * math.pi)
    positions = [(rng.uniform(1.0, 4.0), phi)]
    if variant == 2:
        positions.append((rng.uniform(1.0, 4.0), phi + math.pi + rng.normal(0, 0.25)))
    for k, (d, a) in enumerate(positions):
        q = rng.uniform(0.2, 0.45) if variant == 1 else rng.uniform(0.6, 1.0)
        pa = a + math.pi / 2 if variant == 1 else rng.uniform(0, math.pi)  # major axis along the tangent
        flux = 1.0 if k == 0 else rng.uniform(0.4, 1.0)
        _sersic_blob(lay, flux, rng.uniform(0.15, 0.6), rng.uniform(0.5, 1.5), q, pa, d * math.cos(a), d * math.sin(a))
    if rng.uniform() < 0.5:  # a star-forming knot on a companion
        d, a = positions[0]
        lay.add_knots(np.array([d * math.cos(a)]), np.array([d * math.sin(a)]), np.array([rng.uniform(0.1, 0.4)]),
                  rng.uniform(*KNOT_SIGMA_ARCSEC))
    return variant


@confuser("disk", variants=("through centre", "beside"))
def disk(rng: np.random.Generator, lay: Layers) -> int:
    through = rng.uniform() < 0.5
    d, a = (0.0, 0.0) if through else (rng.uniform(1.0, 3.0), rng.uniform(0, 2 * math.pi))
    pa = rng.uniform(0, math.pi)
    reff = rng.uniform(0.6, 2.0)
    _sersic_blob(lay, 1.0, reff, rng.uniform(0.6, 1.2), rng.uniform(0.1, 0.3), pa, d * math.cos(a), d * math.sin(a))
    if rng.uniform() < 0.6:  # HII regions along the disk plane
        s = rng.uniform(-1.5, 1.5, int(rng.integers(2, 6))) * reff
        lay.add_knots(d * math.cos(a) + s * math.cos(pa), d * math.sin(a) + s * math.sin(pa),
                  rng.uniform(0.05, 0.15, len(s)), rng.uniform(*KNOT_SIGMA_ARCSEC))
    return 0 if through else 1


@confuser("tidal", variants=("one tail", "two tails"))
def tidal(rng: np.random.Generator, lay: Layers) -> int:
    start = rng.uniform(0, 2 * math.pi)
    n_tails = 1 if rng.uniform() < 0.5 else 2
    for k in range(n_tails):
        a0 = start + k * math.pi
        r_root = rng.uniform(0.6, 1.5)
        root = np.array([r_root * math.cos(a0), r_root * math.sin(a0)])
        curv_r = rng.uniform(1.5, 5.0)  # radius of curvature of the tail, arcsec
        side = rng.choice([-1.0, 1.0])
        # leaves the root 20-60 deg off the outward direction and keeps bending that way (sweeping around)
        a_dir = a0 + side * rng.uniform(math.radians(20), math.radians(60))
        d = np.array([math.cos(a_dir), math.sin(a_dir)])
        centre = root + curv_r * np.array([-d[1], d[0]]) * side
        t0 = math.atan2(root[1] - centre[1], root[0] - centre[0])
        sgn = 1.0 if -math.sin(t0) * d[0] + math.cos(t0) * d[1] > 0 else -1.0
        length = rng.uniform(2.0, 5.0)
        t = t0 + sgn * np.linspace(0, min(length / curv_r, math.pi), 300)
        x, y = centre[0] + curv_r * np.cos(t), centre[1] + curv_r * np.sin(t)
        lay.curve(x, y, np.exp(-np.linspace(0, rng.uniform(0.5, 2.0), len(t))), rng.uniform(0.15, 0.4),
                  flux=1.0 if k == 0 else rng.uniform(0.4, 1.0))
        if k == 0 and rng.uniform() < 0.5:
            _sersic_blob(lay, rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.5), 1.0, rng.uniform(0.5, 1.0),
                         rng.uniform(0, math.pi), *root)
        if rng.uniform() < 0.5:
            _knots_along(rng, lay, x, y, int(rng.integers(1, 4)), rng.uniform(0.05, 0.2))
    return n_tails - 1


MAX_KIND_WEIGHT = 100  # `ring,spiral:3`: a kind's share of the look-alikes, relative to the others'


def parse_kind_weights(text: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """'ring,spiral:3' -> (('ring', 'spiral'), (1, 3)): the kinds and their whole-number shares (default 1);
    'all' -> every registered kind, each share 1; UsageError naming an unknown kind or a bad share."""
    if str(text).strip() == "all":
        return tuple(CONFUSER_KINDS), (1,) * len(CONFUSER_KINDS)
    items = [k.strip() for k in str(text).split(",") if k.strip()]
    if not items:
        raise UsageError(f"--confuser_kinds={text!r}: give at least one of {', '.join(CONFUSER_KINDS)}")
    kinds, weights = [], []
    for item in items:
        name, sep, w = (p.strip() for p in item.partition(":"))
        if sep and not (w.isascii() and w.isdigit() and 1 <= int(w) <= MAX_KIND_WEIGHT):  # not '³': int() refuses it
            raise UsageError(f"--confuser_kinds: {item!r}: a kind's share is a whole number from 1 to "
                             f"{MAX_KIND_WEIGHT} (e.g. spiral:3 draws three spirals per ring of ring,spiral:3)")
        kinds.append(name)
        weights.append(int(w) if sep else 1)
    bad = [k for k in kinds if k not in CONFUSER_KINDS]
    if bad:
        raise UsageError(f"--confuser_kinds: unknown kind(s) {', '.join(map(repr, bad))}; known: "
                         f"{', '.join(CONFUSER_KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise UsageError(f"--confuser_kinds={text}: a kind is repeated (give it a share instead, e.g. spiral:2)")
    return tuple(kinds), tuple(weights)


def parse_kinds(text: str) -> tuple[str, ...]:
    """'ring,spiral:3' -> ('ring', 'spiral'); 'all' -> every registered kind (see `parse_kind_weights`)."""
    return parse_kind_weights(text)[0]


def kind_cycle(text: str) -> np.ndarray:
    """Kind indices in the proportions of `text`'s shares, one cycle: 'ring,spiral:3' -> [0, 1, 1, 1]. The n
    look-alikes of a split (or batch) take `cycle[arange(n) % len(cycle)]`, shuffled: equal shares are
    `arange(n_kinds)`."""
    _, weights = parse_kind_weights(text)
    return np.repeat(np.arange(len(weights), dtype=np.int8), weights)


def render_confuser(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Pre-PSF (body, knots) images of one confuser of `kind`, (S, S) each, total flux normalised to 1, and
    the variant drawn (`confuser_variant`)."""
    lay = Layers()
    k = CONFUSER_KINDS[kind]
    variant = k.variants[k.paint(rng, lay)]
    body, knots = lay.body, lay.knots
    total = body.sum() + knots.sum()
    return body / total, knots / total, variant


def knot_colour(rng: np.random.Generator, g_r: float, src_g_r: tuple[float, float]) -> float:
    """g-r of star-forming knots: bluer than the body, kept inside the sources' g-r range."""
    return float(np.clip(g_r - rng.uniform(*KNOT_BLUEING_MAG), *src_g_r))
