"""Settings of `dhs score` and `dhs evaluate`: the defaults are below (override with `--key=value`, e.g.
`dhs evaluate SCORES --out REP --split=val --n_boot=200`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from darkhaloscope.errors import UsageError

SCORE_CHOICES = ("auto", "raw", "calibrated")  # which probability `dhs evaluate` thresholds (auto: calibrated if present)


@dataclass
class EvaluateConfig:
    split: str = "auto"  # rows to evaluate: auto (test if present, else all), all, or a split name
    score: str = "auto"  # probability thresholded: raw, calibrated (temperature from dhs train), auto (calibrated if present)
    threshold: float = 0.5  # operating point when threshold_fpr is None: score (probability) >= threshold is "lens"
    threshold_fpr: float | None = 1e-3  # operating point: highest TPR with FPR <= this on the controls (headline)
    fpr_targets: list[float] = field(default_factory=lambda: [1e-2, 1e-3, 1e-4])  # TPR reported at these FPRs
    tpr_targets: list[float] = field(default_factory=lambda: [0.5, 0.8, 0.9])  # FPR reported at these TPRs
    prevalences: list[float] = field(default_factory=lambda: [1e-2, 1e-3, 1e-4])  # lenses per galaxy, realistic ~1e-4
    n_boot: int = 1000  # bootstrap replicates for the 95% intervals
    bootstrap_bins: int = 10_000  # score bins of the bootstrap (exact when fewer distinct scores)
    seed: int = 0  # bootstrap, baseline subsample, random gallery
    reliability_bins: int = 15  # equal-width probability bins of the reliability diagram
    selection_bins: int = 8  # quantile bins per selection-function variable
    map_bins: int = 6  # quantile bins per axis of the theta_E x arc S/N map
    gallery_size: int = 8  # stamps per gallery (needs --data or the data URI recorded by dhs score)
    baselines: bool = True  # fit the logistic-regression shortcut baselines
    baseline_rows: int = 100_000  # rows subsampled for the baselines (5-fold cross-validated)
    probe_rows: int = 2000  # stamps (half lenses, half controls where possible) for the model probes
    core_radius_pix: float = 4.0  # radius of the core replaced by noise in the core-masked probe (~1.0")
    host_scales: list[float] = field(default_factory=lambda: [0.5, 2.0, 4.0])  # host-light probe: each probe
    #   stamp's smooth host light x these and scored again (evaluate.hostscale); empty = no probe
    host_probe_rows: int = 800  # stamps of the host-light probe (half lenses, half controls), drawn from probe_rows'
    occlusion_patch_pix: int = 8  # side of the occluding square of the occlusion maps
    occlusion_stride_pix: int = 8  # step of the occluding square
    known_lens_fprs: list[float] = field(default_factory=lambda: [1e-2, 1e-3])  # --known-lenses: recall at these
    #   FPRs, each threshold set on the evaluated controls
    known_lens_gallery: int = 24  # --known-lenses: real lenses shown, highest score first
    noise_match_fprs: list[float] = field(default_factory=lambda: [1e-2, 1e-1])  # --known-lenses with --checkpoint:
    #   recall at these FPRs of the controls brought to each lens's own sky noise (docs/real-lenses.md)
    noise_match_bins: int = 4  # quantile bins of the lenses' noise; the controls are re-noised once per bin
    noise_match_min_per_bin: int = 20  # fewer bins when there are fewer lenses than this per bin (6 lenses: 1)
    noise_match_controls: int = 2000  # controls re-noised per bin at most (a seeded sample when there are more)
    noise_match_sim_lenses: int = 400  # simulated lenses of the evaluated data brought to each bin too: the recall
    #   to expect at the real lenses' depths (evaluate/simdepth.py; 0: off)

    def validate(self) -> None:
        if self.score not in SCORE_CHOICES:
            raise UsageError(f"score={self.score!r}: choose auto, raw or calibrated")
        if not 0 <= self.threshold <= 1:
            raise UsageError(f"threshold must be a probability in [0, 1], got {self.threshold}")
        for name in ("fpr_targets", "tpr_targets", "prevalences", "known_lens_fprs", "noise_match_fprs"):
            bad = [v for v in getattr(self, name) if not 0 < v < 1]
            if bad:
                raise UsageError(f"{name} must lie strictly between 0 and 1, got {bad}")
        if self.threshold_fpr is not None and not 0 < self.threshold_fpr < 1:
            raise UsageError(f"threshold_fpr must lie strictly between 0 and 1, got {self.threshold_fpr}")
        if self.noise_match_sim_lenses < 0:
            raise UsageError(f"noise_match_sim_lenses={self.noise_match_sim_lenses}: must be >= 0 (0: off)")
        if self.noise_match_bins < 1 or self.noise_match_controls < 10 or self.noise_match_min_per_bin < 1:
            raise UsageError(f"noise_match_bins and noise_match_min_per_bin must be >= 1 and noise_match_controls "
                             f">= 10, got {self.noise_match_bins}, {self.noise_match_min_per_bin} and "
                             f"{self.noise_match_controls}")
        if any(not 0 < k <= 100 for k in self.host_scales) or self.host_probe_rows < 2:
            raise UsageError(f"host_scales must lie in (0, 100] (x the host's light) and host_probe_rows must be >= 2, "
                             f"got {self.host_scales} and {self.host_probe_rows}")
        if self.n_boot < 10:
            raise UsageError(f"n_boot must be >= 10 for a 95% interval, got {self.n_boot}")
