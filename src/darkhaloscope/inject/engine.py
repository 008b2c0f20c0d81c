"""`TorchEngine.render_rows(ctx, rows)`: a batch of tier rows rendered at once in torch, with the numpy engine's
draws, so that the same seed gives the same lenses, sources, hosts, conditions and noise realisations.

Every row keeps its own numpy generator (`default_rng([seed, 0, i])`, the reference engine's), and the batch is
rendered in phases that consume each generator in the reference order:

1. conditions, host draws, host noise normals (per row: `sim.render.host_draws`, the `white_normals` values);
   then, for the batch, the hosts painted (inject/hosts.py), PSF-convolved, photon and sky noise added;
2. every arc's lens + source attempts: the reference's `arc_attempts` generators are driven in lockstep, each
   round's trial renders (1 sample per pixel, r band, after the PSF) done as one batch;
3. the accepted arcs' colours, their supersampled renders (inject/arcs.py) and PSF convolution of the body and
   knot layers with their colours in one FFT pass; look-alikes (confusers) take their pixels from the numpy
   painters of sim/confusers.py (the documented fallback) and are convolved here;
4. the arcs' and look-alikes' photon noise; the columns (`sim.render.arc_metadata`, `row_columns`).

Only the per-row parameter draws (scalars) and the look-alike painters run per row in Python/numpy; every pixel
operation is a tensor expression over the batch. Results are float32 throughout (the reference is float64):
docs/injection.md gives the measured agreement. Determinism: a row's draws depend on (seed, row) only, never on
the batch it is rendered in (its values agree to float32 rounding in any batch: vectorised math treats the last
few elements of an array apart); a tier's batches are fixed by `rows_per_file` and the device type, so the same
seed gives the same bytes whatever `--workers`, `--shard` or `--resume`. Where the CPU time goes:
docs/injection.md "Speed".
Exercised by `dhs simulate --engine torch` and tests/inject/.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch

from darkhaloscope.inject.arcs import render_lensed, source_batch
from darkhaloscope.inject.hosts import paint_hosts
from darkhaloscope.inject.profiles import lens_tensors
from darkhaloscope.inject.psf import PsfBank, convolve, convolve_bands
from darkhaloscope.sim.hosts import HOST_APERTURE_ARCSEC
from darkhaloscope.sim.observing import noise_kernel_weights, nmgy_to_mag, sky_pixel_nmgy
from darkhaloscope.sim.render import (R, RowResult, arc_attempts, arc_colours, arc_flux_scales, arc_metadata,
                                      confuser_layers, confuser_point, host_draws, row_columns)
from darkhaloscope.stamps.schema import BANDS, PIXEL_SCALE_ARCSEC, STAMP_SIZE

BATCH_ROWS = {"cpu": 128, "cuda": 1024}  # rows rendered together per device type (a chunk is split into batches)
SHAPE = (len(BANDS), STAMP_SIZE, STAMP_SIZE)


class TorchEngine:
    """The batched renderer on one device (float32). CPU: one intra-op thread while it works (parallelism is
    `--workers`; its small tensor ops ran 5-10x slower on 2 threads), the caller's thread count restored after:
    a `dhs demo` that rendered its tier in the main process then trained on one thread (2026-12-07)."""

    def __init__(self, device: str = "cpu", batch_rows: int | None = None):
        self.device = torch.device(device)
        batch_rows = batch_rows or BATCH_ROWS.get(self.device.type, BATCH_ROWS["cpu"])
        self.batch_rows = batch_rows
        with self._threads():
            self.psf = PsfBank(self.device)
            self._f_sky = torch.tensor([sky_pixel_nmgy(b) for b in BANDS], dtype=torch.float32,
                                       device=self.device).reshape(1, -1, 1, 1)
            idx = (torch.arange(STAMP_SIZE, dtype=torch.float64) - STAMP_SIZE // 2) * PIXEL_SCALE_ARCSEC
            self._aperture = (idx[:, None] ** 2 + idx[None, :] ** 2 <= HOST_APERTURE_ARCSEC ** 2).to(self.device)

    @contextmanager
    def _threads(self):
        """One intra-op thread on the CPU for the duration, then the caller's count again."""
        before = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def __call__(self, ctx, rows, keep_ctrl: bool = False) -> list[RowResult]:
        return self.render_rows(ctx, rows, keep_ctrl)

    def render_rows(self, ctx, rows, keep_ctrl: bool = False) -> list[RowResult]:
        """`sim.render.render_row(ctx, i, keep_ctrl)` for every i in `rows`, rendered in batches."""
        rows = list(rows)
        out: list[RowResult] = []
        with self._threads(), torch.no_grad():
            for k in range(0, len(rows), self.batch_rows):
                out += self._batch(ctx, rows[k:k + self.batch_rows], keep_ctrl)
        return out

    # --- noise
    def _tensor(self, arrays) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays)).to(self.device, torch.float32)

    def _smooth(self, w: torch.Tensor, lag1) -> torch.Tensor:
        """Unit-sigma correlated noise (B, 3, 64, 64) from white normals (B, 3, 66, 66), as
        `sim.observing.correlated_noise`."""
        ax, ay = noise_kernel_weights(lag1)
        w = w[:, :, 1:-1, :] + ay * (w[:, :, :-2, :] + w[:, :, 2:, :])
        w = w[:, :, :, 1:-1] + ax * (w[:, :, :, :-2] + w[:, :, :, 2:])
        return w / math.sqrt((1.0 + 2.0 * ax * ax) * (1.0 + 2.0 * ay * ay))

    def _normals(self, rngs) -> torch.Tensor:
        """(B, 3, 66, 66) `sim.observing.white_normals` of each row's generator, in the row's order: the same
        values as its `normal(0, 1, shape)`, drawn straight into one array (no per-row arrays to stack)."""
        out = np.empty((len(rngs), SHAPE[0], SHAPE[1] + 2, SHAPE[2] + 2))
        for j, rng in enumerate(rngs):
            rng.standard_normal(out=out[j])
        return torch.from_numpy(out).to(self.device, torch.float32)

    def _photon(self, ctx, light: torch.Tensor, normals: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Poisson noise of added light (sim.observing.photon_noise), from white normals (B, 3, 66, 66)."""
        unit = self._smooth(normals, ctx.cfg.noise_corr_lag1)
        return unit * sigma * torch.sqrt(torch.clamp(light, min=0.0) / self._f_sky)

    # --- phases
    def _hosts(self, ctx, rows, rngs, draws, spec, sigma) -> torch.Tensor:
        """(B, 3, 64, 64) observed hosts (phase 1)."""
        if ctx.real is not None:
            return self._tensor([ctx.real.images[h] for _, h, _, _ in draws])
        photon = self._normals(rngs) if ctx.cfg.photon_noise else None
        sky = self._normals(rngs)
        return self._observe_hosts(ctx, [d[1] for d in draws], photon, sky, spec, sigma)

    def _observe_hosts(self, ctx, hosts, photon, sky, spec, sigma) -> torch.Tensor:
        light = convolve_bands(paint_hosts(hosts, self.device), spec)
        img = light + self._photon(ctx, light, photon, sigma) if photon is not None else light
        return img + self._smooth(sky, ctx.cfg.noise_corr_lag1) * sigma

    def _trial_peaks(self, requests, spec_r: torch.Tensor) -> list[float]:
        """Peak r flux after the PSF of unit-flux geometries, 1 sample per pixel (the attempts' trials)."""
        lens = lens_tensors([r[0] for r in requests], self.device)
        body, knots = render_lensed(lens, source_batch(requests, self.device), ss=1)
        trial = convolve_bands((body + knots).unsqueeze(1), spec_r.unsqueeze(1))
        return trial.flatten(1).max(dim=1).values.double().cpu().tolist()

    def _choose_arcs(self, gens, spec_r: torch.Tensor) -> list:
        """Drive the attempt generators in lockstep (phase 2); the accepted `ArcChoice` of each."""
        requests = {k: next(g) for k, g in enumerate(gens)}
        choices: list = [None] * len(gens)
        while requests:
            ks = list(requests)
            peaks = self._trial_peaks([requests[k] for k in ks], spec_r[ks])
            for k, peak in zip(ks, peaks):
                try:
                    requests[k] = gens[k].send(peak)
                except StopIteration as done:
                    choices[k] = done.value
                    del requests[k]
        return choices

    def _render_arcs(self, ctx, choices, colours, spec):
        """(arcs (A, 3, 64, 64) after the PSF, magnification (A,)) of accepted arcs (phase 3)."""
        lens = lens_tensors([c.lens for c in choices], self.device)
        src = source_batch([(c.lens, c.sources, c.knots) for c in choices], self.device)
        body, knots = render_lensed(lens, src, ss=ctx.cfg.supersample)
        scales = [arc_flux_scales(c, col) for c, col in zip(choices, colours)]
        coef = torch.tensor(np.array(scales), dtype=torch.float32, device=self.device)  # (A, 2, 3)
        magnification = (body.double().sum(dim=(1, 2)) + knots.double().sum(dim=(1, 2))).cpu().tolist()
        return convolve(torch.stack([body, knots], dim=1), spec, coef), magnification

    def _batch(self, ctx, rows, keep_ctrl: bool) -> list[RowResult]:
        cfg, plan = ctx.cfg, ctx.plan
        rngs = [np.random.default_rng([ctx.seed, 0, i]) for i in rows]
        draws = [host_draws(ctx, i, rng) for i, rng in zip(rows, rngs)]
        conds = [d[0] for d in draws]
        offsets = [d[3] for d in draws]
        spec = self.psf.spectra([c.fwhm_arcsec for c in conds], [c.beta for c in conds], cfg.psf,
                                [o[0] for o in offsets], [o[1] for o in offsets])
        sigma = torch.tensor([c.sigma_nmgy for c in conds], dtype=torch.float32, device=self.device)[:, :, None, None]
        host = self._hosts(ctx, rows, rngs, draws, spec, sigma)
        flux_ap = (host[:, R].double() * self._aperture).sum(dim=(1, 2)).cpu().numpy()
        host_mag = [float(m) for m in nmgy_to_mag(flux_ap)]
        phis = [d[2] if d[2] is not None else d[1].phi_rad for d in draws]

        kinds = [plan.confuser_kind(i) if plan.is_control[i] else None for i in rows]
        arc_rows = [j for j, i in enumerate(rows) if not plan.is_control[i] or kinds[j] is not None]
        gens = []
        for j in arc_rows:
            i = rows[j]
            point = (ctx.grid_points[int(plan.inj_idx[i]) % len(ctx.grid_points)] if not plan.is_control[i]
                     else confuser_point(ctx, rngs[j]))
            gens.append(arc_attempts(ctx, point, rngs[j], conds[j].sigma_nmgy[R], phis[j], host_mag[j]))
        light = torch.zeros_like(host)
        metas: dict[int, dict] = {}
        variants: dict[int, str] = {}
        if gens:
            choices = self._choose_arcs(gens, spec[arc_rows, R])
            colours = [arc_colours(rngs[j], cfg) for j in arc_rows]
            arcs, magnification = self._render_arcs(ctx, choices, colours, spec[arc_rows])
            peak = arcs[:, R].flatten(1).max(dim=1).values
            in_arc = arcs[:, R] > 0.1 * peak[:, None, None]
            arc_sum = (arcs[:, R].double() * in_arc).sum(dim=(1, 2)).cpu().tolist()
            n_arc = in_arc.sum(dim=(1, 2)).cpu().tolist()
            peak_l = peak.double().cpu().tolist()
            for a, j in enumerate(arc_rows):
                metas[j] = arc_metadata(choices[a], colours[a], host_mag[j], magnification[a], peak_l[a], arc_sum[a],
                                        int(n_arc[a]), conds[j].sigma_nmgy[R])
            light[arc_rows] = arcs
            conf = [(a, j) for a, j in enumerate(arc_rows) if kinds[j] is not None]
            if conf:
                light[[j for _, j in conf]], names = self._confusers(rngs, kinds, metas, conf, peak, spec)
                variants = {j: v for (_, j), v in zip(conf, names)}
            noisy = light[arc_rows]
            if cfg.photon_noise:
                noisy = noisy + self._photon(ctx, noisy, self._normals([rngs[j] for j in arc_rows]), sigma[arc_rows])
            image = host.clone()
            image[arc_rows] = host[arc_rows] + noisy
        else:
            image = host
        hosts = host.cpu().numpy() if ctx.cfg.pair or keep_ctrl else None
        return self._results(ctx, rows, conds, host_mag, offsets, kinds, metas, variants, image, hosts)

    def _confusers(self, rngs, kinds, metas, conf, shadow_peak: torch.Tensor, spec) -> tuple[torch.Tensor, list]:
        """(C, 3, 64, 64) look-alike light after the PSF, scaled to the peak of each one's shadow arc, and the
        variants drawn."""
        layers, coefs, variants = [], [], []
        for _, j in conf:
            body, knots, body_scale, knot_scale, variant = confuser_layers(rngs[j], kinds[j], metas[j])
            layers.append(np.stack([body, knots]))
            coefs.append(np.stack([body_scale, knot_scale]))
            variants.append(variant)
        idx = [j for _, j in conf]
        light = convolve(self._tensor(layers), spec[idx], torch.tensor(np.array(coefs), dtype=torch.float32,
                                                                         device=self.device))
        peak = light[:, R].flatten(1).max(dim=1).values.double()
        scale = shadow_peak[[a for a, _ in conf]].double() / torch.clamp(peak, min=1e-30)
        return light * scale.to(light.dtype)[:, None, None, None], variants

    def _results(self, ctx, rows, conds, host_mag, offsets, kinds, metas, variants, image, hosts) -> list[RowResult]:
        images = image.cpu().numpy()
        out = []
        for j, i in enumerate(rows):
            is_control = int(ctx.plan.is_control[i])
            cols = row_columns(ctx, conds[j], host_mag[j], is_control, offsets[j][0], offsets[j][1])
            if is_control:
                cols["confuser_kind"], cols["confuser_variant"] = kinds[j], variants.get(j)
                out.append(RowResult(cols, images[j], None))
            else:
                cols.update(metas[j])
                out.append(RowResult(cols, images[j], hosts[j] if hosts is not None else None))
        return out
