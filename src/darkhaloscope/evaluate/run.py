"""`evaluate_scores`: everything `dhs evaluate` does, as one function of a scores file (used by the CLI and
by `dhs demo`). Exercise: `dhs evaluate SCORES --out DIR [--checkpoint CKPT] [--data DATA]`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from darkhaloscope.evaluate.config import EvaluateConfig
from darkhaloscope.evaluate.report import Evaluation
from darkhaloscope.fileio import remove_stale


def evaluate_scores(scores_path: str | Path, out: str | Path, cfg: EvaluateConfig, *, data: str | None = None,
                    use_recorded_data: bool = True, checkpoint: str | None = None, s3=None,
                    known_lenses: str | None = None, before_mining: str | None = None, run: dict | None = None,
                    log: Callable[[str], None] | None = None) -> tuple[Evaluation, dict[str, Path]]:
    """Read SCORES, compute every analysis (galleries when the stamps are reachable, probes with a
    checkpoint, the recall of known lenses with `known_lenses`, the held-out FPR before hard-negative mining
    with `before_mining`) and write OUT/report.md, report.html, metrics.json. Returns (evaluation, paths)."""
    from darkhaloscope.evaluate.analysis import analyse
    from darkhaloscope.evaluate.probes import resolve_source, run_data_sections
    from darkhaloscope.evaluate.report import write_report
    from darkhaloscope.score.scoresfile import read_scores

    say = log or (lambda m: None)
    started = time.time()
    if known_lenses:
        from darkhaloscope.evaluate.knownlenses_report import check_known_input

        check_known_input(known_lenses, checkpoint)  # a usage / data error before the analysis, not after it
    scores = read_scores(scores_path, cfg.split, cfg.score)
    out = Path(out)
    source, reason = resolve_source(scores, data, use_recorded_data, s3, checkpoint)
    say(f"evaluate: {scores.split_note}")
    ev, ranked, thr = analyse(scores, cfg, out / "figures", log=lambda m: say(f"  {m}"))
    t1 = time.perf_counter()
    run_data_sections(scores, ranked, thr, cfg, ev, out / "figures", source=source, reason=reason,
                      checkpoint=checkpoint, s3=s3)
    if source is not None:
        say(f"  galleries{' and model probes' if checkpoint else ''}: {time.perf_counter() - t1:.1f} s")
    if known_lenses:
        from darkhaloscope.evaluate.knownlenses_report import known_lens_section

        known_lens_section(known_lenses, scores, cfg, ev, out / "figures", checkpoint=checkpoint, out_dir=out,
                           source=source, s3=s3, log=lambda m: say(f"  {m}"))
    if before_mining:
        from darkhaloscope.evaluate.mining_report import before_after_section

        before_after_section(before_mining, scores, cfg, ev)
    paths = write_report(ev, out, run or {})
    remove_stale(out / "figures", "*.png", since=started)  # a rerun into the same --out: figures it no longer makes
    return ev, paths
