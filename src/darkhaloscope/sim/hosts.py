"""Host galaxies for injection: synthetic LRG-like hosts, or real hosts read from files.

- Synthetic (`render_synthetic_host`): an elliptical Sersic (n 3-5) of r 17-20.5 (counts rising to the
  faint end), red LRG colours (r-z 0.9-1.5) with a colour gradient (R_eff(g) > R_eff(r) > R_eff(z)), half-light radius ~3" at r = 19 growing with brightness (central r pixel
  0.03-0.3 nmgy, like the real DR10 cutouts' 0.03-0.19), plus random neighbour galaxies and stars; returned pre-PSF, per band.
  A host is fully determined by (seed, host index), so every use of a host shows the same galaxy.
- Real (`load_real_hosts`): a folder of `.npz` files (DR10 cutout layout `cutout` (H, W, 3), or the
  Phase 4c `image_g/r/z` layout; listed as `dhs score` lists a cutout folder: subfolders included, symlinks
  not followed), or a Phase 4c tier (local or s3://), whose CONTROL rows become hosts.
  Their noise and PSF are real: only the arc is added, convolved with the host's own PSF size when its
  metadata carries one (npz `meta_psfsize_{g,r,z}` / `psfsize_{g,r,z}`, tier columns `psfsize_{g,r,z}` or
  `psf_fwhm_used_{g,r,z}`, FWHM in arcsec), else with drawn conditions.
- `assign_host_splits`: every host goes to exactly one split, so all uses of a host stay in one split.
- `aperture_mag_r`: the host magnitude used in `src_dmag` (r-band flux within 3" of the centre).

Exercised by `dhs simulate [--hosts PATH]` and tests/sim/test_hosts.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darkhaloscope.errors import DataError, MissingInputError, UsageError
from darkhaloscope.sim.inject import add_point_source, render_sersic
from darkhaloscope.sim.observing import mag_to_nmgy, nmgy_to_mag
from darkhaloscope.stamps.robust import median_sigma
from darkhaloscope.stamps.schema import BANDS, HOST_ID_COLUMNS, PIXEL_SCALE_ARCSEC, STAMP_SIZE

HOST_APERTURE_ARCSEC = 3.0  # radius of the aperture that defines host_mag_r (and so src_dmag)
HALF_STAMP_ARCSEC = STAMP_SIZE / 2 * PIXEL_SCALE_ARCSEC


@dataclass
class RealHosts:
    """Real host stamps (M, 3, 64, 64) float32 nanomaggies with one id per host."""

    images: np.ndarray
    ids: list[str]
    source: str  # the path they came from, for the manifest
    sigma_nmgy: np.ndarray | None = None  # (M, 3) robust per-pixel sky sigma per band, set by `checked`
    psf_fwhm_arcsec: np.ndarray | None = None  # (M, 3) the hosts' own PSF FWHM per band (nan: unknown), arcsec

    def checked(self, option: str = "--hosts") -> "RealHosts":
        """Measure each host's sky noise; DataError naming the host if a band has none (not a real cutout).
        `option`: the command-line option that named the hosts, in messages."""
        self.sigma_nmgy = np.stack([robust_sigma(img) for img in self.images])
        bad = np.flatnonzero(~(self.sigma_nmgy > 0).all(axis=1))
        if bad.size:
            h = int(bad[0])
            raise DataError(f"{option} {self.source}: host {self.ids[h]} has no sky noise in band(s) "
                            f"{', '.join(b for b, s in zip(BANDS, self.sigma_nmgy[h]) if not s > 0)} (blank or "
                            "noiseless image); real hosts must be observed cutouts: drop that file")
        return self


def colour_scale(g_minus_r: float, r_minus_z: float) -> np.ndarray:
    """Flux ratio to r of each band in BANDS order for the given colours (g-r, r-z in mag)."""
    return np.array([10 ** (-0.4 * g_minus_r), 1.0, 10 ** (0.4 * r_minus_z)])


def _random_offset(rng: np.random.Generator, r_min_arcsec: float) -> tuple[float, float]:
    while True:
        x, y = rng.uniform(-HALF_STAMP_ARCSEC, HALF_STAMP_ARCSEC, 2)
        if math.hypot(x, y) >= r_min_arcsec:
            return float(x), float(y)


def draw_counts_mag(rng: np.random.Generator, lo: float, hi: float, slope: float) -> float:
    """Magnitude in [lo, hi] with number counts dN/dm ~ 10^(slope m) (slope 0: uniform)."""
    u = rng.uniform()
    if slope == 0:
        return float(lo + u * (hi - lo))
    a, b = 10 ** (slope * (lo - hi)), 1.0  # scaled by 10^(-slope hi) for numerical range
    return float(hi + math.log10(a + u * (b - a)) / slope)


@dataclass(frozen=True)
class SyntheticHost:
    """Every draw of a synthetic host (pre-PSF light, nanomaggies): the galaxy, its neighbours and stars."""

    mag_r: float  # total r magnitude, AB
    reff_arcsec: float  # r-band half-light radius (g: x 10^grad, z: x 10^-grad)
    n_sersic: float
    q: float
    phi_rad: float
    g_r: float
    r_z: float
    grad_dex: float  # log10 R_eff(g)/R_eff(r) = log10 R_eff(r)/R_eff(z)
    neighbours: tuple  # ((flux_r_nmgy, reff_arcsec, n, e1, e2, x_arcsec, y_arcsec, g_r, r_z), ...)
    stars: tuple  # ((flux_r_nmgy, x_arcsec, y_arcsec, g_r, r_z), ...)

    @property
    def e1e2(self) -> tuple[float, float]:
        e = (1 - self.q) / (1 + self.q)
        return e * math.cos(2 * self.phi_rad), e * math.sin(2 * self.phi_rad)


def draw_synthetic_host(rng: np.random.Generator, cfg) -> SyntheticHost:
    """The draws of `render_synthetic_host`, in its order (both engines paint the same host from them)."""
    mag_r = draw_counts_mag(rng, *cfg.host_mag_r, cfg.host_count_slope)
    reff = float(np.clip(10 ** rng.normal(math.log10(3.0) - 0.2 * (mag_r - 19.0), 0.1), 0.5, 8.0))
    n = rng.uniform(3.0, 5.0)
    q = rng.uniform(0.5, 1.0)
    phi = rng.uniform(0.0, math.pi)
    gr, rz = rng.uniform(*cfg.host_g_r), rng.uniform(*cfg.host_r_z)
    grad = rng.uniform(*cfg.host_grad_dex)  # colour gradient: R_eff grows to the blue, g > r > z
    neighbours = []
    for _ in range(min(rng.poisson(cfg.neighbours_mean), 4)):
        x, y = _random_offset(rng, 2.5)
        flux, nb_reff, nb_n = float(mag_to_nmgy(rng.uniform(20.0, 23.5))), rng.uniform(0.2, 0.8), rng.uniform(0.8, 2.0)
        e1, e2 = rng.uniform(-0.3, 0.3, 2)
        neighbours.append((flux, float(nb_reff), float(nb_n), float(e1), float(e2), x, y,
                           float(rng.uniform(0.3, 1.6)), float(rng.uniform(0.2, 1.0))))
    stars = []
    for _ in range(min(rng.poisson(cfg.stars_mean), 3)):
        x, y = _random_offset(rng, 3.0)
        flux = float(mag_to_nmgy(rng.uniform(17.5, 22.0)))
        stars.append((flux, x, y, float(rng.uniform(0.3, 1.4)), float(rng.uniform(0.0, 0.6))))
    return SyntheticHost(float(mag_r), reff, float(n), float(q), float(phi), float(gr), float(rz), float(grad),
                         tuple(neighbours), tuple(stars))


def paint_synthetic_host(h: SyntheticHost) -> np.ndarray:
    """Pre-PSF (3, 64, 64) light of a drawn host, nanomaggies."""
    e1, e2 = h.e1e2
    shapes = np.stack([render_sersic(1.0, h.reff_arcsec * 10 ** (h.grad_dex * k), h.n_sersic, e1, e2)
                       for k in (1, 0, -1)])
    model = (float(mag_to_nmgy(h.mag_r)) * colour_scale(h.g_r, h.r_z))[:, None, None] * shapes
    for flux, reff, n, ne1, ne2, x, y, gr, rz in h.neighbours:
        nb = render_sersic(flux, reff, n, ne1, ne2, x, y, ss=4, centre_ss=4)
        model += colour_scale(gr, rz)[:, None, None] * nb[None]
    for flux, x, y, gr, rz in h.stars:
        star = np.zeros((STAMP_SIZE, STAMP_SIZE))
        add_point_source(star, flux, x, y)
        model += colour_scale(gr, rz)[:, None, None] * star[None]
    return model


def render_synthetic_host(rng: np.random.Generator, cfg) -> tuple[np.ndarray, dict]:
    """Pre-PSF (3, 64, 64) host + neighbours + stars in nanomaggies, and the host's true parameters."""
    h = draw_synthetic_host(rng, cfg)
    return paint_synthetic_host(h), {"mag_r": h.mag_r, "reff_arcsec": h.reff_arcsec, "n_sersic": h.n_sersic,
                                     "q": h.q, "phi_rad": h.phi_rad}


def aperture_mag_r(image: np.ndarray) -> float:
    """r-band AB magnitude within HOST_APERTURE_ARCSEC of the stamp centre (image (3, S, S), nmgy)."""
    size = image.shape[-1]
    idx = (np.arange(size) - size // 2) * PIXEL_SCALE_ARCSEC
    inside = idx[:, None] ** 2 + idx[None, :] ** 2 <= HOST_APERTURE_ARCSEC ** 2
    return float(nmgy_to_mag(float(image[BANDS.index("r")][inside].sum())))


def robust_sigma(image: np.ndarray) -> np.ndarray:
    """Per-band robust sigma (1.4826 MAD) of the outer pixels (> 5" from the centre), nanomaggies."""
    size = image.shape[-1]
    idx = (np.arange(size) - size // 2) * PIXEL_SCALE_ARCSEC
    outer = idx[:, None] ** 2 + idx[None, :] ** 2 > 5.0 ** 2
    return median_sigma(image[:, outer], axis=1)[1]


def assign_host_splits(n_hosts: int, fractions: dict[str, float], rng: np.random.Generator) -> list[str]:
    """Split name for each host: counts follow `fractions` (largest remainder), at least one per split."""
    names = list(fractions)
    if n_hosts < len(names):
        raise UsageError(f"{n_hosts} host(s) cannot fill {len(names)} splits ({', '.join(names)}) without "
                         "putting one host in two splits; give more hosts or fewer splits (--splits)")
    counts = exact_counts(n_hosts, fractions, minimum=1)
    labels = [s for s in names for _ in range(counts[s])]
    order = rng.permutation(n_hosts)
    out = [""] * n_hosts
    for pos, h in enumerate(order):
        out[h] = labels[pos]
    return out


def exact_counts(n: int, fractions: dict[str, float], minimum: int = 0) -> dict[str, int]:
    """Integer counts summing to n, proportional to fractions (largest remainder), each >= minimum."""
    total = sum(fractions.values())
    raw = {k: n * v / total for k, v in fractions.items()}
    counts = {k: max(minimum, int(math.floor(v))) for k, v in raw.items()}
    while sum(counts.values()) < n:
        k = max(raw, key=lambda s: (raw[s] - counts[s], raw[s]))
        counts[k] += 1
    while sum(counts.values()) > n:
        k = max((s for s in counts if counts[s] > minimum), key=lambda s: (counts[s] - raw[s], counts[s]))
        counts[k] -= 1
    return counts


def _load_npz_files(files: list[Path], source: Path, option: str) -> RealHosts:
    from darkhaloscope.stamps.codec import decode_batch

    if not files:
        raise DataError(f"{option} {source}: no .npz files and no parquet tier here; expected DR10 cutouts "
                        "(`cutout` (H, W, 3)) or Phase 4c npz (`image_g/r/z`) files")
    blobs = []
    for f in files:
        try:
            blobs.append(f.read_bytes())
        except OSError as e:
            raise DataError(f"{option} {f}: cannot read ({e.strerror}); check permissions") from None
    res = decode_batch(blobs, where=[str(f) for f in files], on_error="raise")
    return RealHosts(res.images, [f.stem for f in files], str(source), psf_fwhm_arcsec=_npz_psf(blobs))


PSF_META_KEYS = tuple((f"meta_psfsize_{b}", f"psfsize_{b}") for b in BANDS)  # npz keys of a host's PSF FWHM
PSF_COLUMNS = tuple((f"psfsize_{b}", f"psf_fwhm_used_{b}") for b in BANDS)  # tier columns of it


def _npz_psf(blobs: list[bytes]) -> np.ndarray | None:
    """(M, 3) PSF FWHM (arcsec) from each npz's metadata, nan where absent; None when no file has any."""
    from darkhaloscope.stamps.codec import npz_scalar

    out = np.full((len(blobs), len(BANDS)), np.nan)
    for i, blob in enumerate(blobs):
        for j, keys in enumerate(PSF_META_KEYS):
            value = next((v for v in (npz_scalar(blob, k) for k in keys) if v is not None), None)
            if isinstance(value, (int, float)):
                out[i, j] = float(value)
    return None if np.isnan(out).all() else out


def _load_tier_controls(uri: str, s3, limit: int, split: str | None, option: str) -> RealHosts:
    from darkhaloscope.errors import RefusedError
    from darkhaloscope.stamps.batch import decode_tier_batch
    from darkhaloscope.stamps.schema import CUTOUT_OK_COLUMN, LABEL_SOURCE_COLUMN, STAMP_COLUMN, label_from_is_control
    from darkhaloscope.stamps.tier import open_tier

    tier = open_tier(uri, s3)
    id_col = next((c for c in HOST_ID_COLUMNS if c in tier.columns), None)
    psf_cols = [next((c for c in keys if c in tier.columns), None) for keys in PSF_COLUMNS]
    psf_cols = psf_cols if all(psf_cols) else []
    cols = [STAMP_COLUMN, LABEL_SOURCE_COLUMN] + ([id_col] if id_col else []) + psf_cols
    images, ids, psfs = [], [], []
    for b in tier.iter_batches(cols, split=split, cutout_ok_only=CUTOUT_OK_COLUMN in tier.columns):
        try:  # 0/1 integers only: a text or null is_control is refused as everywhere else, naming file and row
            keep = label_from_is_control(b.table[LABEL_SOURCE_COLUMN]) == 0
        except (DataError, RefusedError) as e:
            where = b.where(e.row) if getattr(e, "row", None) is not None else b.file.relpath
            raise type(e)(f"{option} {uri}: {where}: {e}") from None
        if not keep.any():
            continue
        b.table, b.row_index = b.table.filter(keep), b.row_index[keep]
        sb = decode_tier_batch(b)
        images.append(sb.images)
        ids += [str(v) for v in b.table[id_col].to_pylist()] if id_col else b.row_ids()
        if psf_cols:
            psfs.append(np.stack([np.asarray(b.table[c].to_numpy(zero_copy_only=False), np.float64) for c in psf_cols],
                                 axis=1))
        if len(ids) >= limit:
            break
    if not ids:
        where = f" in split '{split}'" if split else ""
        raise DataError(f"{option} {uri}: the tier has no control rows (is_control=1){where} to use as hosts")
    psf = np.concatenate(psfs)[:limit] if psfs else None
    return RealHosts(np.concatenate(images)[:limit], ids[:limit], uri, psf_fwhm_arcsec=psf)


def load_real_hosts(path: str, s3=None, limit: int = 5000, split: str | None = None,
                    option: str = "--hosts") -> RealHosts:
    """Hosts from a folder of npz files, or from the controls of a tier (folder/file/s3:// of parquet);
    `split`: a tier's controls of that region_split only (a folder of npz files has no splits); `option`: the
    command-line option that named them (`dhs simulate --hosts`, `dhs train --inject`), in every refusal."""
    from darkhaloscope.stamps.fs import is_s3

    if is_s3(path):
        return _load_tier_controls(path, s3, limit, split, option).checked(option)
    p = Path(path)
    if not p.exists():
        raise MissingInputError(f"{option} {p}: no such file or folder; give a folder of DR10 .npz cutouts or a tier")
    if p.is_file() and p.suffix == ".npz":
        return _load_npz_files([p], p, option).checked(option)
    from darkhaloscope.stamps.tier import cutout_files, is_local_tier

    if is_local_tier(p):
        return _load_tier_controls(str(p), s3, limit, split, option).checked(option)
    return _load_npz_files(cutout_files(p, (".npz",)), p, option).checked(option)
