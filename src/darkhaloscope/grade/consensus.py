"""From grades to numbers: the consensus per candidate, agreement between graders, purity of the top of the
ranked list, score against grade and the false positives by tag. Plain functions of the store's rows (no
rendering: grade.report turns them into the report, grade.export into the graded table).

Scale (SuGOHI / HOLISMOKES): A = 3 sure lens, B = 2 probable, C = 1 possible, N = 0 not a lens; a skip (S)
carries no value. The consensus grade is the letter of the mean: A >= 2.5, B >= 1.5, C >= 0.5, else N
(HOLISMOKES' cut for A and B); "lens" means consensus A or B.

    cons = consensus(store.latest_grades())                 # {candidate_id: Consensus}
    kappa = fleiss_kappa(count_matrix(store.latest_grades()))

Exercised by `dhs grade export` and `dhs grade report`; tests/grade/test_consensus.py checks the numbers
against hand-computed ones (Fleiss' kappa: the textbook 10-subject, 14-rater table).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from darkhaloscope.common.ranking import wilson_interval
from darkhaloscope.grade.store import GRADE_VALUE, TAGS
from darkhaloscope.stamps.schema import GRADED_LENS_GRADES

LETTERS = ("A", "B", "C", "N")  # the graded categories, best first (S is no grade)
CUTS = ((2.5, "A"), (1.5, "B"), (0.5, "C"))  # mean grade -> consensus letter; below the last: N
LENS = GRADED_LENS_GRADES  # consensus letters that count as a lens (purity, positives, known lenses)
TOP_NS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)  # top-N by score at which purity is given


@dataclass
class Consensus:
    """The grades of one candidate: counts per letter (skips apart), mean on the A=3..N=0 scale, its letter."""

    counts: dict[str, int]  # {'A': n, 'B': n, 'C': n, 'N': n}
    skips: int
    tags: dict[str, int] = field(default_factory=dict)  # tag -> graders who gave it
    graders: tuple[str, ...] = ()  # graders with a standing A/B/C/N grade, sorted

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    @property
    def mean(self) -> float | None:
        return sum(GRADE_VALUE[g] * k for g, k in self.counts.items()) / self.n if self.n else None

    @property
    def grade(self) -> str | None:
        return letter(self.mean)

    @property
    def tag(self) -> str | None:
        """The tag most graders gave (ties: TAGS order); None when none was given."""
        if not self.tags:
            return None
        return max(self.tags, key=lambda t: (self.tags[t], -TAGS.index(t)))


def letter(mean: float | None) -> str | None:
    if mean is None:
        return None
    return next((g for cut, g in CUTS if mean >= cut), "N")


def consensus(latest: list[dict]) -> dict[str, Consensus]:
    """{candidate_id: Consensus} from the standing grades (GradeStore.latest_grades rows); candidates with only
    skips are included with n = 0."""
    out: dict[str, Consensus] = {}
    for r in latest:
        c = out.setdefault(r["candidate_id"], Consensus({g: 0 for g in LETTERS}, 0))
        if r["grade"] == "S":
            c.skips += 1
            continue
        c.counts[r["grade"]] += 1
        c.graders = tuple(sorted(c.graders + (r["grader"],)))
        if r.get("tag"):
            c.tags[r["tag"]] = c.tags.get(r["tag"], 0) + 1
    return out


def count_matrix(latest: list[dict]) -> list[list[int]]:
    """Rows: candidates with >= 2 standing A/B/C/N grades; columns: how many graders gave A, B, C, N."""
    return [[c.counts[g] for g in LETTERS] for c in consensus(latest).values() if c.n >= 2]


def fleiss_kappa(counts: list[list[int]]) -> float | None:
    """Fleiss' kappa of a subjects x categories count table (each row: raters per category). Rows may have
    different numbers of raters (>= 2; the per-row agreement is then averaged as in Fleiss 1971 generalised);
    None when undefined (no row, or every rating in one category)."""
    rows = [r for r in counts if sum(r) >= 2]
    if not rows:
        return None
    total = sum(sum(r) for r in rows)
    p_j = [sum(r[j] for r in rows) / total for j in range(len(rows[0]))]
    p_bar = sum((sum(x * x for x in r) - sum(r)) / (sum(r) * (sum(r) - 1)) for r in rows) / len(rows)
    p_e = sum(p * p for p in p_j)
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1 - p_e)


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of k / n (common.ranking.wilson_interval); (nan, nan) when n == 0."""
    lo, hi = wilson_interval(k, n)
    return float(lo), float(hi)


def grader_vs_consensus(latest: list[dict]) -> dict[str, dict]:
    """Each grader against the others' consensus (leave-one-out, candidates with >= 1 other grade): candidates
    compared, exact agreement of the letter, agreement on lens (A/B) or not, mean (own value - others' mean)."""
    by_cand: dict[str, dict[str, str]] = {}
    for r in latest:
        if r["grade"] != "S":
            by_cand.setdefault(r["candidate_id"], {})[r["grader"]] = r["grade"]
    stats: dict[str, dict] = {}
    for grades in by_cand.values():
        for grader, g in grades.items():
            others = [GRADE_VALUE[v] for k, v in grades.items() if k != grader]
            if not others:
                continue
            m = sum(others) / len(others)
            s = stats.setdefault(grader, {"n": 0, "exact": 0, "lens_call": 0, "bias": 0.0})
            s["n"] += 1
            s["exact"] += g == letter(m)
            s["lens_call"] += (g in LENS) == (letter(m) in LENS)
            s["bias"] += GRADE_VALUE[g] - m
    return {k: {"n": s["n"], "exact": s["exact"] / s["n"], "lens_call": s["lens_call"] / s["n"],
                "bias": s["bias"] / s["n"]} for k, s in sorted(stats.items())}


def purity_at_top(scores: dict[str, float | None], cons: dict[str, Consensus], tops=TOP_NS) -> list[dict]:
    """Purity (consensus A or B among the graded) of the top-N candidates by score, with Wilson 95% intervals:
    one row per N in `tops` up to the number of candidates, and one for all of them."""
    ranked = sorted((c for c, s in scores.items() if s is not None), key=lambda c: (-scores[c], c))
    ns = [n for n in tops if n < len(ranked)] + [len(ranked)]
    rows = []
    for n in ns:
        graded = [cons[c] for c in ranked[:n] if c in cons and cons[c].n]
        k = sum(c.grade in LENS for c in graded)
        lo, hi = wilson(k, len(graded))
        rows.append({"top": n, "graded": len(graded), "lenses": k,
                     "purity": k / len(graded) if graded else math.nan, "low": lo, "high": hi,
                     "min_score": scores[ranked[n - 1]] if n else math.nan})
    return rows


def score_by_grade(scores: dict[str, float | None], cons: dict[str, Consensus]) -> list[dict]:
    """Per consensus letter: candidates, and the median / min / max of their scores."""
    rows = []
    for g in LETTERS:
        s = sorted(scores[c] for c, v in cons.items() if v.grade == g and scores.get(c) is not None)
        rows.append({"grade": g, "n": len(s), "median": _median(s), "min": s[0] if s else math.nan,
                     "max": s[-1] if s else math.nan})
    return rows


def false_positives_by_tag(scores: dict[str, float | None], cons: dict[str, Consensus]) -> list[dict]:
    """Candidates whose consensus is N (the model's false positives) by their majority tag ('untagged' when
    none): count, share of the N's, median score; most frequent first."""
    fp = [c for c, v in cons.items() if v.grade == "N"]
    tags = Counter(cons[c].tag or "untagged" for c in fp)
    return [{"tag": t, "n": k, "share": k / len(fp),
             "median_score": _median(sorted(scores[c] for c in fp if (cons[c].tag or "untagged") == t
                                            and scores.get(c) is not None))}
            for t, k in sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))]


def _median(s: list[float]) -> float:
    if not s:
        return math.nan
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2
