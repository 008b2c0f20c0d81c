"""`SimConfig`: every setting of `dhs simulate`, with units; the defaults are only here (`dhs simulate --help`).

    cfg = load_config(SimConfig, None, ["--controls=0.4", "--psf=gaussian"])

`validate()` rejects impossible values (negative Einstein radius, empty grid, unknown band, ...) with a
UsageError before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from darkhaloscope.errors import UsageError
from darkhaloscope.sim.observing import PSF_PROFILES, check_bands
from darkhaloscope.stamps.schema import SPLITS


ENGINES = ("numpy", "torch")  # renderers of `dhs simulate` (the numpy one is the reference)
DEVICES = ("cpu", "cuda")  # where the torch engine runs


@dataclass
class SimConfig:
    # --- tier layout
    controls: float = 0.5  # fraction of rows in EVERY split that are controls (0 < f < 1)
    splits: str = "train=0.7,val=0.15,test=0.15"  # row (and host) fraction per region_split
    bands: tuple[str, ...] = ("g", "r", "z")  # bands written into stamp_npz (simulation always uses g,r,z)
    rows_per_file: int = 500  # rows per chunk; chunk c writes region_split=<s>/part-<c>.parquet
    row_group_rows: int = 128  # parquet row-group size
    pair: bool = False  # injections also carry their host without the arc in ctrl_stamp_npz
    npz_deflate: bool = False  # deflate every stamp_npz member, in snappy Parquet (the Phase 4c tiers' layout, and
    # this tool's before 2026-12-07: ~2 ms of zlib per row). Off: stored members in zstd Parquet, the same size on
    # disk, ~5x cheaper to write
    # --- confuser controls (sim/confusers.py)
    confusers: float = 0.3  # fraction of each split's controls carrying unlensed arc-like light, [0, 1)
    confuser_kinds: str = "all"  # all (sim/confusers.py's kinds, equal shares), or e.g. ring,spiral; spiral:3 = 3 shares
    # --- observing model
    psf: str = "moffat"  # PSF profile: moffat (beta 2.5-4.5) or gaussian
    supersample: int = 4  # sub-pixels per pixel side where the lensed light is (adaptive)
    noise_corr_lag1: tuple[float, float] = (0.23, 0.31)  # noise kernel lag-1 correlation along x, y: measured
    # by observing.noise_lag1 as 0.19 (x), 0.27 (y), the medians of the real DR10 cutouts with that estimator
    photon_noise: bool = True  # added light (arc, confuser, synthetic host) carries its own Poisson noise
    # --- engine (docs/injection.md)
    engine: str = "numpy"  # numpy: the reference, row by row (sim/); torch: batched, float32 (inject/), same draws
    device: str = "cpu"  # the torch engine's device: cpu | cuda
    # --- hosts
    hosts: str = ""  # "" = synthetic LRG-like hosts; else a folder of npz cutouts or a tier (its controls)
    host_reuse: int = 1  # rows per synthetic host (all uses of a host stay in one split)
    host_limit: int = 5000  # max real hosts read from a tier (memory: 48 KiB each)
    host_mag_r: tuple[float, float] = (17.0, 20.5)  # synthetic host total r magnitude, AB
    host_count_slope: float = 0.4  # host magnitudes drawn with dN/dm ~ 10^(slope m): mostly faint hosts
    host_g_r: tuple[float, float] = (1.3, 1.9)  # synthetic host g-r colour, mag (red, LRG-like)
    host_r_z: tuple[float, float] = (0.9, 1.5)  # synthetic host r-z colour, mag (LRGs at z ~0.3-0.7)
    host_grad_dex: tuple[float, float] = (0.02, 0.06)  # log10 R_eff(g)/R_eff(r) = log10 R_eff(r)/R_eff(z):
    # bluer outskirts, grad(g-r) about -0.05 to -0.17 mag/dex at R_eff (LRGs: about -0.1, La Barbera+ 2010)
    neighbours_mean: float = 1.0  # Poisson mean number of neighbour galaxies per synthetic stamp
    stars_mean: float = 0.3  # Poisson mean number of stars per synthetic stamp
    centre_offset_px: float = 0.5  # synthetic scenes sit off the centre pixel by up to this, per axis, pixels
    # (uniform): a survey cutout centred on a catalogue position puts the galaxy anywhere within its centre pixel
    # --- lens (SIE + external shear)
    theta_e_arcsec: tuple[float, float] = (0.6, 3.0)  # Einstein radius range (truncation), arcsec
    theta_e_dist: str = "lognormal:1.5:0.3"  # uniform | lognormal:MEDIAN_ARCSEC:SIGMA_LN: 87% in 1-2.5"
    lens_q: tuple[float, float] = (0.5, 1.0)  # SIE axis ratio range
    shear_max: float = 0.1  # external shear strength drawn uniformly in [0, shear_max]
    # --- source (Sersic)
    src_mag_r: tuple[float, float] = (22.0, 25.5)  # unlensed source r magnitude range, AB (independent of host)
    src_count_slope: float = 0.33  # source mags drawn from galaxy counts dN/dm ~ 10^(slope m), r 22-25.5
    arc_snr_min: float = 3.0  # detection: arcs of peak r S/N below this never enter the sample (redrawn) ...
    arc_snr_full: float = 10.0  # ... above this always; between, with probability linear in log S/N
    src_reff_arcsec: tuple[float, float] = (0.1, 0.5)  # source half-light radius, arcsec
    src_n_sersic: tuple[float, float] = (0.7, 2.5)  # source Sersic index
    src_e_max: float = 0.35  # max source ellipticity |e|
    src_g_r: tuple[float, float] = (0.0, 0.6)  # source g-r colour, mag (blue star-forming)
    src_r_z: tuple[float, float] = (-0.1, 0.4)  # source r-z colour, mag
    src_beta_frac: float = 0.6  # source offset <= this x theta_E: strongly lensed (arcs, rings)
    src_knots: tuple[int, int] = (1, 5)  # number of star-forming knots per source (uniform integer range)
    src_knot_frac: tuple[float, float] = (0.1, 0.4)  # fraction of the source flux in its knots
    src_knot_sigma_arcsec: tuple[float, float] = (0.02, 0.08)  # knot Gaussian sigma, arcsec (0.2-0.7 kpc at z~1.5)
    src_second_prob: float = 0.1  # probability of a second Sersic source behind the same lens
    arc_snr_dist: str = "none"  # none (brightness from counts) | loguniform:LO:HI | uniform:LO:HI peak arc S/N
    grid: str = ""  # e.g. "theta_e=0.75,1.0,1.5,2.0 src_dmag=1,2": injections cycle over the product

    def split_fractions(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for item in self.splits.split(","):
            if "=" not in item:
                raise UsageError(f"--splits {self.splits!r}: expected name=fraction,... e.g. "
                                 "train=0.7,val=0.15,test=0.15")
            name, frac = item.split("=", 1)
            try:
                f = float(frac)
            except ValueError:
                raise UsageError(f"--splits: fraction of {name!r} is not a number: {frac!r}") from None
            if not f > 0 or name in out or not name.strip():
                raise UsageError(f"--splits: {name}={frac} must be a new split name with a fraction > 0")
            out[name.strip()] = f
        unknown = [s for s in out if s not in SPLITS]
        if unknown:
            raise UsageError(f"--splits: unknown split(s) {', '.join(unknown)}; use {', '.join(SPLITS)}")
        return out

    def validate(self) -> None:
        if not 0 < self.controls < 1:
            raise UsageError(f"--controls={self.controls}: must be strictly between 0 and 1, so that every "
                             "split has both controls and injections (a one-class tier cannot be trained)")
        self.split_fractions()
        if not 0 <= self.confusers < 1:
            raise UsageError(f"--confusers={self.confusers}: must be in [0, 1) (a fraction of the controls; "
                             "some plain controls must remain to set operating points)")
        # (these import lenstronomy: not at module import, so `dhs simulate --help` stays fast)
        from darkhaloscope.sim.confusers import parse_kinds
        from darkhaloscope.sim.params import check_range, parse_grid, parse_snr_dist, parse_theta_e_dist

        parse_kinds(self.confuser_kinds)
        if self.engine not in ENGINES:
            raise UsageError(f"--engine={self.engine!r}: unknown engine; choose one of {', '.join(ENGINES)}")
        if self.device not in DEVICES:
            raise UsageError(f"--device={self.device!r}: choose one of {', '.join(DEVICES)}")
        if self.device != "cpu" and self.engine == "numpy":
            raise UsageError(f"--device={self.device}: the numpy engine runs on the CPU only; add --engine torch")
        check_bands(self.bands)
        if self.psf not in PSF_PROFILES:
            raise UsageError(f"--psf={self.psf}: unknown PSF; choose one of {', '.join(PSF_PROFILES)}")
        for name, value, lo in (("supersample", self.supersample, 1), ("rows_per_file", self.rows_per_file, 1),
                                ("row_group_rows", self.row_group_rows, 1), ("host_reuse", self.host_reuse, 1),
                                ("host_limit", self.host_limit, 1)):
            if value < lo:
                raise UsageError(f"--{name}={value}: must be >= {lo}")
        if not 0 <= self.centre_offset_px <= 2:
            raise UsageError(f"--centre_offset_px={self.centre_offset_px}: must be in [0, 2] pixels")
        if self.supersample > 16:
            raise UsageError(f"--supersample={self.supersample}: at most 16")
        check_range("theta_e_arcsec", self.theta_e_arcsec, 1e-3, 6.0)
        parse_theta_e_dist(self.theta_e_dist, self.theta_e_arcsec)
        check_range("host_grad_dex", self.host_grad_dex, 0.0, 0.3)
        check_range("src_knots", self.src_knots, 0, 20)
        check_range("src_knot_frac", self.src_knot_frac, 0.0, 0.95)
        check_range("src_knot_sigma_arcsec", self.src_knot_sigma_arcsec, 0.005, 1.0)
        if not 0 <= self.src_second_prob <= 1 or not 0 <= self.src_count_slope <= 1 \
                or not 0 <= self.arc_snr_min < self.arc_snr_full:
            raise UsageError("src_second_prob must be in [0, 1], src_count_slope in [0, 1], "
                             "0 <= arc_snr_min < arc_snr_full")
        check_range("lens_q", self.lens_q, 0.05, 1.0)
        check_range("src_mag_r", self.src_mag_r, 10.0, 35.0)
        check_range("src_reff_arcsec", self.src_reff_arcsec, 0.01, 5.0)
        check_range("src_n_sersic", self.src_n_sersic, 0.3, 8.0)
        check_range("host_mag_r", self.host_mag_r, 10.0, 30.0)
        for name in ("host_g_r", "host_r_z", "src_g_r", "src_r_z"):
            check_range(name, getattr(self, name), -3.0, 4.0)
        if not 0 <= self.shear_max < 0.5 or not 0 <= self.src_e_max < 0.9:
            raise UsageError("shear_max must be in [0, 0.5) and src_e_max in [0, 0.9)")
        if not 0 < self.src_beta_frac <= 1.5:
            raise UsageError(f"--src_beta_frac={self.src_beta_frac}: must be in (0, 1.5] (x theta_E)")
        if len(self.noise_corr_lag1) != 2 or not all(0 <= r <= 0.6 for r in self.noise_corr_lag1):
            raise UsageError(f"--noise_corr_lag1={list(self.noise_corr_lag1)}: give X,Y each in [0, 0.6] (0: white)")
        if not 0 <= self.host_count_slope <= 1:
            raise UsageError(f"--host_count_slope={self.host_count_slope}: must be in [0, 1]")
        if self.neighbours_mean < 0 or self.stars_mean < 0:
            raise UsageError("neighbours_mean and stars_mean must be >= 0")
        grid = parse_grid(self.grid)
        snr = parse_snr_dist(self.arc_snr_dist)
        if snr is not None and ("src_dmag" in grid or "src_mag_r" in grid):
            raise UsageError("--grid fixes the source brightness (src_dmag/src_mag_r) and --arc-snr-dist "
                             "reshapes it: use one of them (add --arc-snr-dist=none)")
