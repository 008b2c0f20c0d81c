"""Sky geometry for `dhs catalog`: HEALPix pixels, seeded split assignment by pixel, and a spherical match.

    pix = healpix_index(ra, dec, nside=128)               # nested order, ICRS
    split = split_of_pixels(pix, seed=1, fractions={"train": .7, "val": .15, "test": .15})
    near = SkyMatcher(lens_ra, lens_dec).within(ra, dec, radius_arcsec=5.0)   # bool per row

The split of a row depends only on (seed, nside, pixel), so every row of one pixel lands in one split, in
every file and every shard. The match is exact on the sphere: a KD-tree on unit vectors queried with the
chord length of the radius.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays: a well-mixed, platform-independent hash."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def unit_hash(seed: int, *parts: np.ndarray | int) -> np.ndarray:
    """Uniform floats in [0, 1) from (seed, parts...): the same inputs always give the same numbers."""
    with np.errstate(over="ignore"):
        h = splitmix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF))
        for p in parts:
            h = splitmix64(h ^ np.asarray(p, dtype=np.int64).astype(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def healpix_index(ra_deg: np.ndarray, dec_deg: np.ndarray, nside: int) -> np.ndarray:
    """HEALPix pixel (nested order) of each position (ICRS degrees)."""
    import astropy.units as u
    from astropy_healpix import lonlat_to_healpix

    return np.asarray(lonlat_to_healpix(np.asarray(ra_deg, float) * u.deg, np.asarray(dec_deg, float) * u.deg,
                                        nside, order="nested"), dtype=np.int64)


def split_of_pixels(pixels: np.ndarray, seed: int, fractions: dict[str, float]) -> np.ndarray:
    """Split name of each pixel by a seeded hash of the pixel number: (N,) array of str."""
    names = list(fractions)
    edges = np.cumsum([fractions[s] for s in names]) / sum(fractions.values())
    u = unit_hash(seed, 0x5B11, pixels)
    idx = np.minimum(np.searchsorted(edges, u, side="right"), len(names) - 1)
    return np.asarray(names, dtype=object)[idx]


def seed_filling_splits(pixels: np.ndarray, seed: int, fractions: dict[str, float], tries: int = 1000) -> int | None:
    """The first seed after `seed` whose `split_of_pixels` puts at least one of `pixels` in every split of
    `fractions` (None if none of the next `tries` does): the fix to offer when a split would get no positives."""
    for s in range(seed + 1, seed + 1 + tries):
        if len(set(split_of_pixels(pixels, s, fractions).tolist())) == len(fractions):
            return s
    return None


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
    c = np.cos(dec)
    return np.stack([c * np.cos(ra), c * np.sin(ra), np.sin(dec)], axis=1)


def near_duplicates(ra_deg, dec_deg, radius_arcsec: float) -> np.ndarray:
    """(N,) int: for each position, the index of the earlier kept position within `radius_arcsec` that
    absorbs it, or -1 (kept). An entry absorbed itself absorbs nothing; NaN positions are always kept."""
    ra, dec = np.asarray(ra_deg, float), np.asarray(dec_deg, float)
    into = np.full(len(ra), -1, np.int64)
    ok = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    if len(ok) < 2 or radius_arcsec <= 0:
        return into
    from scipy.spatial import cKDTree

    chord = 2 * np.sin(np.radians(radius_arcsec / 3600.0) / 2)
    pairs = cKDTree(unit_vectors(ra[ok], dec[ok])).query_pairs(chord, output_type="ndarray")
    for i, j in sorted(map(tuple, ok[pairs] if len(pairs) else [])):  # i < j: the earlier absorbs the later
        if into[i] < 0 and into[j] < 0:
            into[j] = i
    return into


class SkyMatcher:
    """Positions to match against (e.g. every known lens); `within` flags rows closer than a radius."""

    def __init__(self, ra_deg: np.ndarray, dec_deg: np.ndarray):
        from scipy.spatial import cKDTree

        self.n = len(ra_deg)
        self._tree = cKDTree(unit_vectors(ra_deg, dec_deg)) if self.n else None

    def nearest_arcsec(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
        """Angular distance (arcsec) from each position to the nearest reference position (inf if none)."""
        if self._tree is None or len(ra_deg) == 0:
            return np.full(len(ra_deg), np.inf)
        chord, _ = self._tree.query(unit_vectors(ra_deg, dec_deg), k=1)
        return np.degrees(2 * np.arcsin(np.clip(chord / 2, 0, 1))) * 3600.0

    def within(self, ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcsec: float) -> np.ndarray:
        if self._tree is None or len(ra_deg) == 0:
            return np.zeros(len(ra_deg), dtype=bool)
        chord = 2 * np.sin(np.radians(radius_arcsec / 3600.0) / 2)
        d, _ = self._tree.query(unit_vectors(ra_deg, dec_deg), k=1, distance_upper_bound=chord)
        return np.isfinite(d)
