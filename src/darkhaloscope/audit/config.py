"""Settings of `dhs audit`: thresholds and sample sizes; the defaults are below, overrides on the command line.

    dhs audit DATA --max_class_ratio=2 --sample_rows=5000      # or --config FILE.yaml, --set KEY=VALUE

Every threshold is documented here with its unit and the reason for its default.
"""

from __future__ import annotations

from dataclasses import dataclass

from darkhaloscope.errors import UsageError
from darkhaloscope.stamps.schema import BANDS

SEVERITIES: tuple[str, ...] = ("info", "warning", "error")  # in increasing order of gravity


@dataclass
class AuditConfig:
    # --- verdict ---
    fail_on: str = "error"  # NO-GO when any finding is at least this severe: 'error' or 'warning' (strict CI)
    # --- schema / splits ---
    required_splits: tuple[str, ...] = ("train", "val")  # missing -> error: nothing to train or select on
    expected_splits: tuple[str, ...] = ("train", "val", "test")  # missing or unknown names -> warning
    # --- class balance (label / split / cutout_ok columns or parquet statistics only, never stamps) ---
    max_class_ratio: float = 3.0  # majority/minority class count per split above this -> warning
    # --- usability ---
    min_cutout_ok_frac: float = 0.8  # fraction of rows with cutout_ok=1 per split below this -> warning
    sample_rows: int = 2000  # stamps decoded by the pixel checks (seeded random row groups); --full: all
    min_sample_rows_per_split: int = 200  # each split gets at least this many sampled rows when it has them
    seed: int = 0  # seeds the row-group sample, the leakage sample and the probe's cross-validation
    # --- split integrity ---
    max_eval_to_train_ratio: float = 1.0  # val (or test) rows / train rows above this -> warning (inverted?)
    min_train_frac: float = 0.5  # train rows / all rows below this -> warning
    # --- metadata leakage ---
    leak_auroc: float = 0.7  # max(AUROC, 1-AUROC) of one column alone at or above this -> leaking
    leak_null_frac_diff: float = 0.1  # |null fraction(injections) - null fraction(controls)| >= this -> leaking
    leakage_max_rows: int = 5_000  # metadata rows for leakage AUROCs (std. error <= 0.01, ample for a 0.7
    # threshold); files are sampled (seeded) above it, so a 10M-row tier's metadata is mostly never read
    # --- pixel shortcut probe (the users' real failure: separable without looking at arcs) ---
    shortcut_auroc_warn: float = 0.8  # one image statistic alone at or above this -> warning (a fair
    # simulated tier: strongest single statistic 0.68-0.74 on 400-2000 stamps; a doctored bright centre: ~1.0)
    shortcut_combo_auroc_warn: float = 0.85  # 5-fold logistic regression on all statistics at/above -> warning
    # (fair simulated tier: 0.72-0.73)
    centre_radius_pix: float = 4.0  # central aperture radius in pixels (4 px = 1.05"), inside most arcs
    background_radius_pix: float = 24.0  # pixels at r >= this (6.3") measure the background MAD
    probe_bands: tuple[str, ...] = ("r", "z")  # fluxes/colours from these bands: the host dominates them;
    # in g a blue arc is much of the central light (a fair simulated tier gave centre g-r colour AUROC 0.86)
    probe_min_per_class: int = 20  # fewer sampled rows of a class than this -> probe skipped (info)
    probe_max_rows: int = 20_000  # rows of image statistics kept for the probe (bounded memory with --full)
    # --- paired controls (ctrl_stamp_npz) ---
    paired_far_radius_pix: float = 20.0  # outer region r >= this (5.2"): mostly far from any arc
    paired_far_tol_sigma: float = 0.1  # median |injection - control| there, in units of the control's noise
    # sigma (1.4826 MAD): a different host, shift or noise realisation gives ~1; arc wings give < 0.03
    paired_neg_tol_sigma: float = 3.0  # injection - control below -this x sigma anywhere -> violation (arcs add flux)
    paired_flux_ratio_tol: float = 1.5  # r-band (injection - control) flux / arc_flux_r_nmgy outside
    # [1/this, this] -> violation (a flux units bug); fair simulated tier: 0.9998-1.0000
    host_probe_auroc: float = 0.75  # plain controls vs the injections' own hosts (ctrl_stamp_npz), g included:
    # probe or single-statistic AUROC at/above -> error (one host population gives ~0.5; controls with
    # g-r 1.6-1.9 vs injection hosts 1.3-1.6 give ~0.99)
    # --- reading ---
    threads: int = 8  # files read in parallel by the cheap passes (I/O bound: more helps on s3://)
    decode_threads: int = 2  # zlib inflation threads for the sampled stamps

    def validate(self) -> None:
        if self.fail_on not in ("error", "warning"):
            raise UsageError(f"fail_on must be 'error' or 'warning', got {self.fail_on!r}")
        for name in ("max_class_ratio", "max_eval_to_train_ratio"):
            if getattr(self, name) < 1.0:
                raise UsageError(f"{name} must be >= 1 (a ratio of larger to smaller), got {getattr(self, name)}")
        for name in ("leak_auroc", "shortcut_auroc_warn", "shortcut_combo_auroc_warn", "host_probe_auroc"):
            if not 0.5 <= getattr(self, name) <= 1.0:
                raise UsageError(f"{name} is an AUROC threshold in [0.5, 1], got {getattr(self, name)}")
        for name in ("min_cutout_ok_frac", "leak_null_frac_diff", "min_train_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"{name} is a fraction in [0, 1], got {getattr(self, name)}")
        for name in ("sample_rows", "leakage_max_rows", "probe_max_rows", "threads", "decode_threads"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.probe_bands or any(b not in BANDS for b in self.probe_bands):
            raise UsageError(f"probe_bands must be a non-empty subset of {','.join(BANDS)}, got {self.probe_bands}")
        if self.paired_flux_ratio_tol <= 1.0:
            raise UsageError(f"paired_flux_ratio_tol must be > 1, got {self.paired_flux_ratio_tol}")
        if not 0 < self.centre_radius_pix < self.background_radius_pix:
            raise UsageError("need 0 < centre_radius_pix < background_radius_pix (pixels)")
