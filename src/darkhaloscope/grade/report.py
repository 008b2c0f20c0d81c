"""`dhs grade report`: what the graders found, through the project's one report model (grade.md / .html /
.json, every string from the database escaped by the writer): progress per grader, agreement (Fleiss' kappa,
each grader against the others), purity of the top-N by score with Wilson 95% intervals, score against grade,
the false positives by tag, and the graded lenses; figures/purity.png draws the purity against N.

    dhs grade report --db grades.sqlite --out grade_report/
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from darkhaloscope.common.report import Code, Report, Section, fmt_num, fmt_rate, write_report
from darkhaloscope.grade import consensus as C
from darkhaloscope.grade.store import GradeStore

LENS_ROWS = 200  # graded lenses listed in the report (best mean grade first)


def build_report(store: GradeStore, out: Path, run: dict | None = None) -> Report:
    latest = store.latest_grades()
    cons = C.consensus(latest)
    cands = store.candidates()
    scores = {k["candidate_id"]: k["score"] for k in cands}
    prog = store.progress()
    total = prog.pop("total")
    graded = {c: v for c, v in cons.items() if v.n}
    letters = {g: sum(v.grade == g for v in graded.values()) for g in C.LETTERS}
    kappa = C.fleiss_kappa(C.count_matrix(latest))
    multi = sum(v.n >= 2 for v in graded.values())
    vs = C.grader_vs_consensus(latest)
    purity = C.purity_at_top(scores, cons)
    by_grade = C.score_by_grade(scores, cons)
    fps = C.false_positives_by_tag(scores, cons)
    doc = {"db": str(store.path), "candidates": total, "graded": len(graded), "progress": prog,
           "consensus_counts": letters, "fleiss_kappa": kappa, "candidates_with_2_or_more_graders": multi,
           "grader_vs_consensus": vs, "purity_at_top": purity, "score_by_grade": by_grade,
           "false_positives_by_tag": fps}

    head = [f"{len(graded):,} of {total:,} candidates graded by {len(prog)} grader(s): "
            + ", ".join(f"{letters[g]:,} {g}" for g in C.LETTERS) + " (consensus)"]
    p_all = purity[-1] if purity else None
    if p_all and p_all["graded"]:
        head.append(f"Purity (A or B) of the graded candidates: {fmt_rate(p_all['purity'])} "
                    f"[{fmt_rate(p_all['low'])}, {fmt_rate(p_all['high'])}] ({p_all['lenses']:,} of {p_all['graded']:,})")
    if kappa is not None:
        head.append(f"Agreement between graders: Fleiss' kappa {fmt_num(kappa, 3)} over {multi:,} candidates")

    s_prog = Section("progress", "Progress per grader")
    s_prog.text("Candidates with a standing A/B/C/N grade (skips and undone grades not counted).")
    s_prog.table(["grader", "graded", "share of candidates"],
                 [[g, f"{n:,}", fmt_rate(n / total if total else float("nan"))] for g, n in prog.items()])

    s_agree = Section("agreement", "Agreement between graders")
    s_agree.text("Fleiss' kappa over the candidates graded by two or more graders (categories A, B, C, N; 1 is "
                 "perfect agreement, 0 what chance gives): ", Code(fmt_num(kappa, 3)), f" over {multi:,} candidates. "
                 "Each grader against the mean of the others' grades on the same candidates: the share with the "
                 "same letter, the share with the same lens call (A or B against C or N) and the mean difference "
                 "on the A=3 .. N=0 scale (positive: more generous than the others).")
    s_agree.table(["grader", "candidates compared", "same letter", "same lens call", "mean difference"],
                  [[g, f"{v['n']:,}", fmt_rate(v["exact"]), fmt_rate(v["lens_call"]), fmt_num(v["bias"], 3)]
                   for g, v in vs.items()])

    s_pur = Section("purity", "Purity of the top of the ranked list")
    s_pur.text("Share of the graded candidates among the N best scores whose consensus is A or B, with Wilson "
               "95% intervals. Graders who worked through the queue by score see the top first; the random queue "
               "gives an unbiased sample of the whole list.")
    s_pur.table(["top N", "lowest score", "graded", "lenses (A/B)", "purity", "95% interval"],
                [[f"{r['top']:,}", fmt_num(r["min_score"]), f"{r['graded']:,}", f"{r['lenses']:,}",
                  fmt_rate(r["purity"]), f"[{fmt_rate(r['low'])}, {fmt_rate(r['high'])}]"] for r in purity])
    png = purity_figure(scores, cons, out / "figures" / "purity.png")
    if png is not None:
        s_pur.figure(png, "purity of the top N by score, with its Wilson 95% band")

    s_score = Section("score_vs_grade", "Score against grade")
    s_score.table(["consensus", "candidates", "median score", "lowest", "highest"],
                  [[r["grade"], f"{r['n']:,}", fmt_num(r["median"]), fmt_num(r["min"]), fmt_num(r["max"])]
                   for r in by_grade])

    s_fp = Section("false_positives", "False positives by tag")
    s_fp.text("Candidates whose consensus is N (not a lens), by the tag most of their graders gave: what the "
              "model confuses with a lens. They are hard negatives for retraining (docs/grading.md, The loop).")
    s_fp.table(["tag", "candidates", "share of the N's", "median score"],
               [[r["tag"], f"{r['n']:,}", fmt_rate(r["share"]), fmt_num(r["median_score"])] for r in fps])

    lenses = sorted((c for c, v in graded.items() if v.grade in C.LENS), key=lambda c: (-cons[c].mean, c))
    s_lens = Section("lenses", "Graded lenses (consensus A or B)")
    s_lens.table(["candidate", "consensus", "mean", "A/B/C/N", "score", "graders"],
                 [[Code(c), cons[c].grade, fmt_num(cons[c].mean, 3), "/".join(str(cons[c].counts[g]) for g in C.LETTERS),
                   fmt_num(scores.get(c)), ", ".join(cons[c].graders)] for c in lenses[:LENS_ROWS]],
                 caption=f"{len(lenses):,} lens(es){f'; the first {LENS_ROWS} shown' if len(lenses) > LENS_ROWS else ''}")
    return Report(f"Grades: {store.path.name}", headline=head,
                  sections=[s_prog, s_agree, s_pur, s_score, s_fp, s_lens], data=doc, run=run or {})


def purity_figure(scores: dict, cons: dict, path: Path) -> Path | None:
    """Purity (A or B among the graded) of the top N by score against N, with its Wilson 95% band; None when
    nothing is graded."""
    from matplotlib.figure import Figure

    from darkhaloscope.common.ranking import wilson_interval
    from darkhaloscope.fileio import atomic_path

    ranked = sorted((c for c, s in scores.items() if s is not None), key=lambda c: (-scores[c], c))
    graded = [c in cons and cons[c].n > 0 for c in ranked]
    lens = [g and cons[c].grade in C.LENS for c, g in zip(ranked, graded)]
    n_graded, n_lens = np.cumsum(graded), np.cumsum(lens)
    keep = n_graded > 0
    if not keep.any():
        return None
    top = np.arange(1, len(ranked) + 1)[keep]
    purity = n_lens[keep] / n_graded[keep]
    lo, hi = wilson_interval(n_lens[keep], n_graded[keep])
    fig = Figure(figsize=(6.0, 4.0), dpi=100)  # fixed margins: constrained layout cost more than the plot
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.8 / 6.0, right=1 - 0.2 / 6.0, bottom=0.6 / 4.0, top=1 - 0.2 / 4.0)
    ax.fill_between(top, lo, hi, color="tab:orange", alpha=0.25, linewidth=0, label="Wilson 95%")
    ax.plot(top, purity, color="tab:orange", label="purity (consensus A or B)")
    ax.set_xscale("log" if top[-1] >= 20 else "linear")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("top N candidates by score")
    ax.set_ylabel("purity among the graded")
    ax.legend(loc="lower left")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def write_grade_report(store: GradeStore, out: str | Path, argv: list[str] | None = None) -> dict[str, Path]:
    from darkhaloscope.config import run_info

    out = Path(out)
    return write_report(build_report(store, out, run_info(argv)), out, "grade")
