"""The real-lens section of `dhs evaluate SCORES --known-lenses KNOWN`: gathers the inputs (scores KNOWN
when it is data, reads a cutout folder's pixel scale, size and survey, fetches the lens and control
stamps for the noise-matched operating points), then renders `evaluate.knownlenses.KnownLensMetrics` through
the report model: one table with both operating points labelled (at the evaluated controls; noise-matched,
at the controls brought to each lens's own sky noise), the noise bins, a headline line, metrics.json
`known_lenses`, and a gallery of the real lenses by score. Manual: docs/real-lenses.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from darkhaloscope.common.report import Code
from darkhaloscope.evaluate import plots
from darkhaloscope.evaluate.knownfolder import scan_cutout_folder
from darkhaloscope.evaluate.knownlenses import (MAX_LISTED, KnownLensMetrics, check_known_lenses, graded_export_data,
                                                 is_graded_export, is_scores_file, known_lens_metrics, lens_ids,
                                                 to_display)
from darkhaloscope.score.scoresfile import read_provenance

BANDS = ("g", "r", "z")


def check_known_input(known: str, checkpoint: str | None) -> None:
    """Everything refused before any work: a missing KNOWN, data without --checkpoint, a cutout folder mixing
    pixel scales or sizes."""
    if check_known_lenses(known, checkpoint):
        return
    if Path(known).is_dir():
        scan_cutout_folder(known)
    elif Path(known).is_file() and Path(known).suffix == ".parquet":
        from darkhaloscope.stamps.tier import open_tier

        open_tier(known)  # an empty or truncated file: its one error line now, before the report's folders


def _known_scores(known: str, checkpoint: str | None, out_dir: Path, s3, log) -> Path:
    if check_known_lenses(known, checkpoint):
        return Path(known)
    from darkhaloscope.config import load_config
    from darkhaloscope.score.config import ScoreConfig
    from darkhaloscope.score.infer import score_data

    path = out_dir / "known_lenses_scores.parquet"
    score_data(checkpoint, known, path, load_config(ScoreConfig), s3=s3, progress=False)
    log(f"scored the known lenses in {known} -> {path}")
    return path


def gather(known: str, scores, cfg, *, checkpoint: str | None, out_dir: Path, source=None, s3=None,
           log=print) -> tuple[KnownLensMetrics | None, object, str | None]:
    """(metrics, the known scores table, the known data) with the noise-matched figures attached when the model
    and the control stamps are there: everything the section states, and what `dhs demo` and the benchmarks
    print."""
    path = _known_scores(known, checkpoint, out_dir, s3, log)
    t = pq.read_table(path)
    info = read_provenance(pq.read_schema(path), path)
    data = known if not is_scores_file(known) else (graded_export_data(t) if is_graded_export(t) else info.get("data"))
    folder = data if data and "://" not in data and Path(data).is_dir() else None
    infos = scan_cutout_folder(folder) if folder and not (Path(folder) / "manifest.json").exists() else []
    m = known_lens_metrics(t, scores, cfg, source=known, scores_file=str(path), provenance=info,
                           surveys={i.file: i.survey for i in infos if i.survey})
    if m is not None:
        _noise_match(m, t, data, scores, cfg, checkpoint, source, s3, log)
    return m, t, data


def measure_known_lenses(known: str, scores_path: str | Path, cfg, *, checkpoint: str, data: str | None,
                         out_dir: Path, s3=None, log=print) -> KnownLensMetrics | None:
    """The real-lens figures of `known` against the controls of SCORES (its `cfg.split`), without a report:
    for `dhs demo` and benchmarks/bench_confusers.py."""
    from darkhaloscope.score.scoresfile import read_scores
    from darkhaloscope.score.sources import open_source

    check_known_input(known, checkpoint)
    scores = read_scores(scores_path, cfg.split, cfg.score)
    source = open_source(data or scores.info["data"], s3)
    return gather(known, scores, cfg, checkpoint=checkpoint, out_dir=out_dir, source=source, s3=s3, log=log)[0]


def summary_line(m: KnownLensMetrics, name: str) -> str:
    """One line of the figures (the report's headline line)."""
    return _headline(m, name)


def known_lens_section(known: str, scores, cfg, ev, fig_dir: Path, *, checkpoint: str | None, out_dir: Path,
                       source=None, s3=None, log=print) -> KnownLensMetrics | None:
    """Add the real-lens section, headline line and metrics (see the module docstring). `source`: the
    evaluated data (the control stamps), None when not reachable (no noise-matched figures then)."""
    m, t, data = gather(known, scores, cfg, checkpoint=checkpoint, out_dir=out_dir, source=source, s3=s3, log=log)
    if m is None:
        why = "no real lens with a score or no controls in the evaluated scores"
        ev.add_section("known_lenses", "Real lenses").text(f"Not measured: {why} ({known}).")
        ev.metrics["known_lenses"] = {"source": known, "n": 0, "note": why}
        return None
    render(m, scores, ev, known)
    notes: list[str] = []
    for caption, fig in _gallery(t, data, m, to_display(scores), cfg, fig_dir, notes):
        ev.sections[-1].figure(fig, caption)
    for line in notes:
        ev.sections[-1].text(line)
    return m


def _noise_match(m: KnownLensMetrics, t, data, scores, cfg, checkpoint, source, s3, log) -> None:
    """Attach the noise-matched figures, or say in `m.noise_note` why there are none."""
    from darkhaloscope.evaluate.noisematch import noise_matched, sky_sigma
    from darkhaloscope.score.sources import open_source

    if not checkpoint:
        m.noise_note = "needs the model: pass --checkpoint (and the evaluated data, --data) to re-score the controls"
        return
    if source is None:
        m.noise_note = "needs the control stamps: the evaluated data is not reachable (pass --data)"
        return
    if not data or "source_file" not in t.column_names or ("://" not in data and not Path(data).exists()):
        m.noise_note = f"needs the real lenses' stamps to measure their noise: {data or 'no data recorded'} not here"
        return
    files, rows = t["source_file"].to_pylist(), t["source_row"].to_pylist()
    lens_images = open_source(data, s3).fetch([files[i] for i in m.rows], [int(rows[i]) for i in m.rows])
    ctrl = np.flatnonzero(scores.labels == 0)
    rng = np.random.default_rng(cfg.seed)
    if len(ctrl) > cfg.noise_match_controls:
        ctrl = np.sort(rng.choice(ctrl, cfg.noise_match_controls, replace=False))
    ctrl_images = source.fetch(*scores.locate(ctrl))
    from darkhaloscope.evaluate.probes import _model_scorer
    from darkhaloscope.common.calibration import sigmoid

    logits = _model_scorer(checkpoint, s3)
    score_fn = logits if m.value == "logit" else (lambda x: sigmoid(logits(x)))
    nm = noise_matched(m.values, sky_sigma(lens_images), ctrl_images, score_fn, cfg.noise_match_fprs,
                       n_bins=cfg.noise_match_bins, min_per_bin=cfg.noise_match_min_per_bin, seed=cfg.seed)
    m.attach_noise(nm)
    log(f"noise-matched operating points: {len(ctrl)} controls re-noised to {len(nm.bins.target)} noise level(s)")
    _sim_at_depth(m, nm, scores, source, score_fn, cfg, rng, log)


def _sim_at_depth(m: KnownLensMetrics, nm, scores, source, score_fn, cfg, rng, log) -> None:
    """Attach the evaluated data's simulated lenses at the real lenses' depths (`evaluate.simdepth`): only
    positives that carry injection metadata (theta_e_arcsec) count as simulated."""
    from darkhaloscope.evaluate.simdepth import sim_lenses_at_depth

    theta = scores.columns.get("theta_e_arcsec")
    if cfg.noise_match_sim_lenses == 0 or theta is None or not nm.measured.any():
        return
    idx = np.flatnonzero((scores.labels == 1) & np.isfinite(theta))
    if len(idx) == 0:
        return
    if len(idx) > cfg.noise_match_sim_lenses:
        idx = np.sort(rng.choice(idx, cfg.noise_match_sim_lenses, replace=False))
    snr = scores.columns.get("arc_snr")
    m.sim_depth = sim_lenses_at_depth(nm, source.fetch(*scores.locate(idx)), score_fn,
                                      None if snr is None else snr[idx])
    log(f"simulated lenses at the real lenses' depths: {len(idx)} re-noised to {len(nm.bins.target)} noise level(s)")


def _sig(x) -> str:
    return "/".join(f"{v:.2g}" for v in x)


def render(m: KnownLensMetrics, scores, ev, known: str) -> None:
    """The section, headline line and metrics of `m` (numbers only from `m`)."""
    prob = to_display(scores)
    sec = ev.add_section("known_lenses", "Real lenses")
    ops_text = ", ".join(f"{f:g} (score > {prob(thr):.4g}, achieved {a:.2g})" for f, (thr, a) in m.ops.items())
    sec.text(f"{m.n} real lens(es) from ", Code(Path(known).name), " (positives, never controls), scored by the "
             f"same model; thresholds are on the {m.score_label}. At the evaluated controls: thresholds set on the "
             f"{m.n_controls} controls of this report at FPR {ops_text}.")
    if m.graded_export:
        sec.text("These are the candidates people graded A or B (a dhs grade export), with the scores recorded when "
                 "they were scored for grading: compare them only with scores of that checkpoint (to score them with "
                 "another, export them with --lenses-folder and pass the folder with --checkpoint).")
    if m.merged_note:
        sec.text(m.merged_note)
    if m.unscored:
        sec.text(f"{m.unscored} more lens file(s) could not be scored (the file did not decode) and are not counted: "
                 "their reasons are in the decode_error column of ", Code(Path(m.scores_file).name), ".")
    unresolved = [f"{f:g}" for f, ok in m.resolvable.items() if not ok]
    if unresolved:
        sec.text(f"Only {m.n_controls} controls: FPR {', '.join(unresolved)} not resolvable (FPR f needs >= 1/f "
                 "controls), so no recall is quoted there; evaluate more controls.")
    nm = m.noise
    if nm is not None:
        sec.text(f"Noise-matched (found at that FPR of controls at the lens's own depth): each real lens's sky noise "
                 f"per band (robust sigma of the pixels >= 20 px from the centre) puts it in one of "
                 f"{len(nm.bins.target)} noise bins; {nm.n_controls} controls are brought to each bin's noise by "
                 f"correlated Gaussian noise (seed {nm.seed}) and re-scored, and the thresholds are set on them.")
    elif m.noise_note:
        sec.text(f"Noise-matched figures not made: {m.noise_note}.")
    keys = [f"{f:g}" for f in m.ops]
    nkeys = [f"{f:g}" for f in nm.fprs] if nm is not None else []
    header = ["lenses", "N"] + [f"at FPR {k} of the evaluated controls" for k in keys] + \
        [f"noise-matched, FPR {k}" for k in nkeys]
    rows = [[g, int(m.groups[g].sum())] + [m.recall[g][k].text() for k in keys]
            + [m.noise_recall[g][k].text() for k in nkeys] for g in m.groups]
    if m.vs_plain:
        rows.append([f"all, thresholds on the {m.n_plain} plain controls (no look-alike)", m.n]
                    + [m.vs_plain[k].text() for k in keys] + [""] * len(nkeys))
        sec.text(f"{m.n_controls - m.n_plain} of the {m.n_controls} controls carry a look-alike (confuser_kind): the "
                 "last row sets the thresholds on the plain controls alone, as the confuser section does.")
    sec.table(header, rows, caption="recall k/n [Wilson 95% interval]")
    if m.host is not None:
        sec.text(m.host.note(m.value))
    if nm is not None:
        _noise_table(sec, m, prob)
    if m.sim_depth is not None:
        from darkhaloscope.evaluate.simdepth import render_sim_at_depth

        render_sim_at_depth(sec, m.sim_depth, m.noise_recall["all"], ev.warnings, int(nm.measured.sum()))
    _fpr_to_find(sec, m)
    ev.headline.append(_headline(m, Path(known).name))
    ev.metrics["known_lenses"] = m.as_dict()


def _noise_table(sec, m: KnownLensMetrics, prob) -> None:
    nm = m.noise
    rows = []
    for k, target in enumerate(nm.bins.target):
        sel = nm.bins.bin == k
        r = nm.bins.ratio[sel]
        thr = "; ".join(f"FPR {f:g}: {prob(nm.threshold[f][sel][0]):.4g}" for f in nm.fprs)
        rows.append([k, int(sel.sum()), f"{r.min():.2g}-{r.max():.2g}", _sig(target), _sig(nm.achieved_sigma[k]), thr])
    sec.text(f"Noise bins (sky sigma per band g/r/z in nanomaggies per pixel; the controls' own: "
             f"{_sig(nm.bins.control_sigma)}):")
    sec.table(["bin", "lenses", "noise / controls'", "target sigma", "re-noised controls' sigma", "thresholds"], rows)
    below = nm.bins.below()
    if below:
        sec.text("Below the controls' own noise (cannot be matched by adding noise; the controls are used as they "
                 "are there): " + ", ".join(f"bin {k} band {BANDS[b] if b < len(BANDS) else b}" for k, b in below)
                 + ".")
    if m.unmeasured:
        sec.text(f"Sky noise not measurable (too few finite sky pixels, or a flat band), left out of the "
                 f"noise-matched figures: {', '.join(m.unmeasured[:MAX_LISTED])}"
                 + (f" (+{len(m.unmeasured) - MAX_LISTED} more)" if len(m.unmeasured) > MAX_LISTED else "") + ".")


def _fpr_to_find(sec, m: KnownLensMetrics) -> None:
    sec.text(f"The FPR at which each real lens would be found (the share of the {m.n_controls} controls scoring at "
             f"least as high), lowest first: {_shown(m)}.")
    if m.n_look is not None:  # what comes with each real lens found: the look-alikes scoring at least as high
        firsts = sorted(r["look_alikes_to_find"] for r in m.per_lens)[:MAX_LISTED]
        sec.text(f"Look-alikes that come with them: to find k of the {m.n} real lenses, the share of the "
                 f"{m.n_look} look-alike controls scoring at least as high as the k-th best, k = 1, 2, ...: "
                 + ", ".join(f"{x:.2g}" for x in firsts) + ".")


def _shown(m: KnownLensMetrics) -> str:
    shown = ", ".join(f"{r['fpr_to_find']:.2g}" for r in m.per_lens[:MAX_LISTED])
    return shown + (f" (+{len(m.per_lens) - MAX_LISTED} more)" if len(m.per_lens) > MAX_LISTED else "")


def _headline(m: KnownLensMetrics, name: str) -> str:
    def cells(row: dict) -> list[str]:
        return [f"{c.found}/{c.n} ({c.recall:.0%}) at FPR {k}" for k, c in row.items() if c.resolvable]

    at = cells(m.recall["all"])
    unres = [k for k, c in m.recall["all"].items() if not c.resolvable]
    line = "Real lenses: recall " + (", ".join(at) if at else "none resolvable") + \
        f" of the evaluated controls ({name}, {m.n} lenses)" + \
        (f" (FPR {', '.join(unres)} not resolvable on {m.n_controls} controls)" if unres else "")
    if m.noise is not None:
        nat = cells(m.noise_recall["all"])
        line += "; noise-matched (controls at the lens's own depth): " + (", ".join(nat) if nat else "none resolvable")
    if m.sim_depth is not None:
        line += "; simulated lenses at their depths: " + m.sim_depth.summary()
    plain = [f"{c.found}/{c.n} at FPR {k}" for k, c in m.vs_plain.items() if c.resolvable]
    if plain:
        line += "; at the plain-control thresholds: " + ", ".join(plain)
    if m.host is not None and m.host.outside:
        h = m.host
        line += (f"; hosts outside the controls' 5-95% brightness range: {int(h.brighter.sum())} brighter, "
                 f"{int(h.fainter.sum())} fainter" + (f" (on the controls, {m.value} vs host brightness: Spearman "
                                                      f"{h.rho:+.2f})" if h.rho is not None else ""))
    if m.merged:
        line += f"; {m.merged} duplicate(s) merged"
    if m.unscored:
        line += f"; {m.unscored} not scored (undecodable files: decode_error)"
    return line + f"; FPR to find each: {_shown(m)}"


def _gallery(t, data, m: KnownLensMetrics, prob, cfg, fig_dir: Path, lines: list[str]):
    """The real lenses, highest score first (needs the scored stamps: the data recorded in the scores file)."""
    from darkhaloscope.score.sources import open_source

    if not data or "source_file" not in t.column_names:
        lines.append("Gallery not made: the scores file records no data to read the stamps from.")
        return []
    if "://" not in data and not Path(data).exists():
        lines.append(f"Gallery not made: the scored data {data} is not here.")
        return []
    order = np.argsort(-m.values, kind="stable")[: cfg.known_lens_gallery]
    idx = m.rows[order]
    files, rows = t["source_file"].to_pylist(), t["source_row"].to_pylist()
    images = open_source(data).fetch([files[i] for i in idx], [int(rows[i]) for i in idx])
    ids = lens_ids(t)
    grade = t["grade"].to_pylist() if "grade" in t.column_names else [None] * t.num_rows
    p = [prob(v) if m.value == "logit" else float(v) for v in m.values[order]]
    captions = [f"p={q:.3g} {grade[i] or 'ungraded'}\n{str(ids[i])[-28:]}" for q, i in zip(p, idx)]  # verbatim, no mathtext
    return [("real lenses, highest score first", plots.gallery(images, captions, "Real lenses by score",
                                                               fig_dir / "known_lenses.png"))]
