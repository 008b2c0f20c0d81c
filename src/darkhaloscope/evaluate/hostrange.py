"""Do the controls cover the real lenses' hosts? The host-brightness check of the real-lens section.

A threshold set on controls says how often a galaxy *like those controls* scores that high. A real lens on a
host brighter (or fainter) than nearly every control is judged against galaxies unlike its own, and when the
model's score rises with host brightness on the controls themselves, part of such a lens's score may be its
host, not its arc. Measured on the 144 Pan-STARRS lenses and the demo's model (2026-12-07): the lenses' hosts
span r ~16.4-22 mag against the simulated controls' ~19-20.6, the model's logit rises with host brightness on
the plain controls (Spearman 0.35), and 12 of its 14 best-scored lenses are brighter than r = 19.

    hr = host_range(lens_flux, control_flux, control_values)   # None: no host statistic in both files
    hr.brighter, hr.fainter     # (n,) lenses outside the controls' 5-95% range of central r flux
    hr.groups()                 # extra rows of the recall tables (only when some lens lies outside)
    hr.rho                      # rank correlation of the model's value with host brightness on the controls

The statistic is `img_core_flux_r` (flux within 4 px of the centre, sky subtracted; `score.imagestats`), which
`dhs score` writes beside every score, for lenses and controls alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOST_STAT = "img_core_flux_r"  # the host's central r flux [nmgy], r < 4 px (score.imagestats)
RANGE_PCT = (5.0, 95.0)  # the controls' range a lens's host should lie in
INSIDE_HOSTS = "hosts inside the controls' 5-95% range"  # the like-for-like row of the recall tables
RHO_NOTE = 0.1  # Spearman of value vs host brightness on the controls from which the section says so


def _ranks(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Rank correlation of finite pairs (ties ranked in order: the values here are continuous); None below 10."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10:
        return None
    ra, rb = _ranks(a[ok]), _ranks(b[ok])
    c = np.corrcoef(ra, rb)[0, 1]
    return None if not np.isfinite(c) else float(c)


@dataclass
class HostRange:
    low: float  # the controls' 5th percentile of HOST_STAT [nmgy]
    high: float  # their 95th percentile
    n_controls: int  # controls with a finite host statistic
    flux: np.ndarray  # (n,) the lenses' HOST_STAT (nan: not measured)
    rho: float | None  # Spearman of the model's value vs HOST_STAT on the controls

    @property
    def brighter(self) -> np.ndarray:
        return self.flux > self.high

    @property
    def fainter(self) -> np.ndarray:
        return self.flux < self.low

    @property
    def outside(self) -> bool:
        return bool(self.brighter.any() or self.fainter.any())

    def groups(self) -> dict[str, np.ndarray]:
        """Recall-table rows by host brightness against the controls (empty when every host is inside)."""
        if not self.outside:
            return {}
        inside = np.isfinite(self.flux) & ~self.brighter & ~self.fainter
        rows = {INSIDE_HOSTS: inside}
        if self.brighter.any():
            rows["hosts brighter than 95% of the controls"] = self.brighter
        if self.fainter.any():
            rows["hosts fainter than 95% of the controls"] = self.fainter
        return rows

    def place(self, i: int) -> str | None:
        if not np.isfinite(self.flux[i]):
            return None
        return "brighter" if self.brighter[i] else "fainter" if self.fainter[i] else "inside"

    def note(self, value: str) -> str:
        """The section's sentence: the range, how many lenses lie outside it, and the score's dependence."""
        n = len(self.flux)
        s = (f"Host brightness (central r flux within 4 px, {HOST_STAT}): the {self.n_controls} controls' 5-95% "
             f"range is {self.low:.3g}-{self.high:.3g} nmgy (r {_mag(self.high):.1f}-{_mag(self.low):.1f} mag); "
             f"{int(self.brighter.sum())} of the {n} real lenses have brighter hosts, {int(self.fainter.sum())} "
             "fainter.")
        if self.rho is not None:
            s += f" On the controls, the model's {value} against host brightness: Spearman {self.rho:+.2f}."
        if self.outside:
            s += " Lenses outside the controls' range are judged against galaxies unlike their hosts"
            if self.rho is not None and abs(self.rho) >= RHO_NOTE:  # which side the host's light pushes
                up, down = ("brighter", "fainter") if self.rho > 0 else ("fainter", "brighter")
                s += (f" (the score rises with host {'brightness' if self.rho > 0 else 'faintness'}: "
                      f"{up} hosts may owe part of their score to the host, {down} ones be held back by it)")
            s += (": the row of hosts inside the range is the like-for-like figure; for the others, evaluate "
                  "controls that cover the lenses' hosts.")
        return s

    def as_dict(self) -> dict:
        return {"statistic": HOST_STAT, "control_range_nmgy": [self.low, self.high],
                "range_percentiles": list(RANGE_PCT), "n_controls": self.n_controls,
                "n_brighter": int(self.brighter.sum()), "n_fainter": int(self.fainter.sum()),
                "spearman_value_vs_host_on_controls": self.rho}


def _mag(f: float) -> float:
    return 22.5 - 2.5 * np.log10(max(f, 1e-4))


def host_range(lens_flux, control_flux, control_values) -> HostRange | None:
    """The check, or None when either side lacks the statistic (older scores files, image_stats off)."""
    if lens_flux is None or control_flux is None:
        return None
    lens_flux = np.asarray(lens_flux, np.float64)
    control_flux = np.asarray(control_flux, np.float64)
    ok = np.isfinite(control_flux)
    if ok.sum() < 20 or not np.isfinite(lens_flux).any():
        return None
    low, high = np.percentile(control_flux[ok], RANGE_PCT)
    return HostRange(float(low), float(high), int(ok.sum()), lens_flux,
                     spearman(np.asarray(control_values, np.float64), control_flux))
