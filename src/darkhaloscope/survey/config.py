"""Settings of `dhs catalog` and `dhs cutouts`: typed dataclasses with units; the only defaults.

    cfg = load_config(CatalogConfig, None, ["--neg_per_pos=50"])
"""

from __future__ import annotations

from dataclasses import dataclass

from darkhaloscope.errors import UsageError
from darkhaloscope.stamps.schema import MAX_DECODED_PIXELS, PIXEL_SCALE_ARCSEC, SPLITS


def parse_fractions(text: str, what: str) -> dict[str, float]:
    """'train=0.7,val=0.15,test=0.15' -> {'train': 0.7, ...}; UsageError naming `what` on anything else."""
    out: dict[str, float] = {}
    for item in text.split(","):
        name, sep, frac = item.partition("=")
        try:
            f = float(frac)
        except ValueError:
            f = -1.0
        if not sep or name.strip() not in SPLITS or f <= 0 or name.strip() in out:
            raise UsageError(f"{what} {text!r}: expected name=fraction,... with names from {', '.join(SPLITS)} "
                             "and fractions > 0, e.g. train=0.7,val=0.15,test=0.15")
        out[name.strip()] = f
    return out


@dataclass
class CatalogConfig:
    neg_per_pos: float = 100.0  # negatives per positive, in every split
    exclude_radius_arcsec: float = 5.0  # no negative within this distance of any known lens or candidate
    dedupe_radius_arcsec: float = 1.0  # positives closer than this are one lens listed twice: the first is kept
    nside: int = 128  # HEALPix nside of the sky split (128: 0.21 deg^2 pixels, 27.5' across)
    splits: str = "train=0.7,val=0.15,test=0.15"  # fraction of HEALPix pixels per split (seeded hash)
    confuser_frac: float = 0.15  # fraction of negatives from the hard-confuser pool (Tractor criteria)
    nobs_z_edges: tuple[int, ...] = (3, 5, 10)  # NOBS_Z stratum edges: <3, 3-4, 5-9, >=10 exposures
    positives_in_footprint: bool = True  # keep only positives in a HEALPix pixel that holds negatives
    # --- hard-confuser criteria (a negative meeting any one is a confuser)
    confuser_sersic_min: float = 4.0  # ring-like: SERSIC >= this (Tractor SER) ...
    confuser_sersic_mag_r: float = 19.5  # ... and brighter than this r magnitude, AB
    confuser_ellipticity_min: float = 0.5  # edge-on: |e| = hypot(SHAPE_E1, SHAPE_E2) >= this
    confuser_blue_g_r: float = 0.4  # blue: g - r < this, mag ...
    confuser_blue_mag_r: float = 20.0  # ... and brighter than this r magnitude, AB
    confuser_shape_r_arcsec: float = 2.0  # large: SHAPE_R >= this, arcsec

    def validate(self) -> None:
        if not self.neg_per_pos > 0:
            raise UsageError(f"--neg-per-pos={self.neg_per_pos}: must be > 0")
        if self.dedupe_radius_arcsec < 0:
            raise UsageError(f"dedupe_radius_arcsec={self.dedupe_radius_arcsec}: must be >= 0 arcsec")
        if self.exclude_radius_arcsec < 0:
            raise UsageError(f"--exclude-radius={self.exclude_radius_arcsec}: must be >= 0 arcsec")
        if self.nside < 1 or self.nside & (self.nside - 1):
            raise UsageError(f"--nside={self.nside}: must be a power of 2 (e.g. 64, 128, 256)")
        if not 0 <= self.confuser_frac <= 1:
            raise UsageError(f"confuser_frac={self.confuser_frac}: must be in [0, 1]")
        if list(self.nobs_z_edges) != sorted(set(self.nobs_z_edges)):
            raise UsageError(f"nobs_z_edges={self.nobs_z_edges}: must be increasing")
        parse_fractions(self.splits, "--splits")


_OUR_PARAMS = ("ra", "dec", "layer", "pixscale", "bands", "size")  # query parameters CutoutConfig.url sets


@dataclass
class CutoutConfig:
    service_url: str = "https://www.legacysurvey.org/viewer/fits-cutout"  # Legacy Surveys FITS cutout endpoint
    layer: str = "ls-dr10"  # survey layer of the cutout service
    bands: str = "grz"  # bands requested, in stamp order
    size: int = 64  # cutout side, pixels
    pixscale: float = PIXEL_SCALE_ARCSEC  # arcsec / pixel (native DECam / Legacy Surveys)
    concurrency: int = 8  # requests in flight
    # requests per second, all threads together; None: remote_rate_limit_per_s for a remote service and no limit
    # on a loopback one (127.0.0.1 / localhost: the offline stand-in, fakeservice.py); 0: no limit
    rate_limit_per_s: float | None = None
    remote_rate_limit_per_s: float = 10.0  # the unset limit for a remote (public) service: be polite to it
    max_tries: int = 6  # attempts per cutout (429 / 5xx / timeouts / dropped or truncated replies)
    backoff_s: float = 1.0  # first retry delay, s; doubles per attempt (with jitter); a Retry-After overrides
    backoff_max_s: float = 60.0  # longest single wait, s
    timeout_s: float = 30.0  # connect / read timeout per request, s
    request_deadline_s: float = 120.0  # whole reply (headers + body) must arrive within this, s; else a timeout
    max_reply_mb: float = 16.0  # a reply body larger than this (MiB) is refused unread, never cached (64x64x3: 50 KB)
    max_nan_frac: float = 0.02  # a band with more non-finite pixels is invalid (cutout_ok=0); fewer are set to 0
    rows_per_file: int = 500  # targets per tier file (region_split=<s>/part-<k>.parquet)
    compress: bool = True  # deflate stamp_npz (smaller tier, ~1 ms CPU more per cutout)
    user_agent: str = "darkhaloscope-cutouts"  # HTTP User-Agent

    def validate(self) -> None:
        if self.concurrency < 1:
            raise UsageError(f"--concurrency={self.concurrency}: must be >= 1")
        if not (self.request_deadline_s > 0 and self.max_reply_mb > 0 and self.timeout_s > 0):
            raise UsageError("timeout_s, request_deadline_s and max_reply_mb must be > 0 (bounds of every request)")
        if self.max_tries < 1 or self.rows_per_file < 1 or self.size < 8:
            raise UsageError("max_tries and rows_per_file must be >= 1, size >= 8")
        if not self.service_url.startswith(("http://", "https://")):
            raise UsageError(f"--service-url {self.service_url!r}: must be an http:// or https:// URL")
        if (self.rate_limit_per_s or 0) < 0 or self.remote_rate_limit_per_s < 0:
            raise UsageError(f"--rate-limit={self.rate_limit_per_s}: must be >= 0 (0: no limit)")
        if not self.bands or any(b not in "grz" for b in self.bands) or len(set(self.bands)) != len(self.bands):
            raise UsageError(f"bands={self.bands!r}: use letters from grz, each once, e.g. grz")
        if len(self.bands) * self.size ** 2 > MAX_DECODED_PIXELS:
            raise UsageError(f"--size={self.size}: {len(self.bands)} x {self.size}^2 pixels is more than a cutout may "
                             f"hold ({MAX_DECODED_PIXELS:,}); stamps are 64 px (101 px for the shared cutouts)")
        if not 0.01 <= self.pixscale <= 10:
            raise UsageError(f"--pixscale={self.pixscale}: must be in [0.01, 10] arcsec per pixel (Legacy Surveys: "
                             "0.262)")

    def requests_per_s(self) -> float:
        """The rate limit in force (0: none): rate_limit_per_s when set, else by where the service is."""
        from urllib.parse import urlsplit

        if self.rate_limit_per_s is not None:
            return self.rate_limit_per_s
        loopback = (urlsplit(self.service_url).hostname or "") in ("127.0.0.1", "localhost", "::1")
        return 0.0 if loopback else self.remote_rate_limit_per_s

    def url(self, ra: float, dec: float) -> str:
        """The request URL: the query of `service_url` (e.g. `?token=...`, kept) merged with ours (ours win)."""
        from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

        ours = (f"ra={ra:.7f}&dec={dec:.7f}&layer={quote(self.layer)}&pixscale={self.pixscale:g}"
                f"&bands={self.bands}&size={self.size}")
        parts = urlsplit(self.service_url)
        theirs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in _OUR_PARAMS]
        query = f"{urlencode(theirs)}&{ours}" if theirs else ours
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
