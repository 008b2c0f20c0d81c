"""Consensus, agreement and purity against values computed by hand."""

from __future__ import annotations

import math

import pytest

from darkhaloscope.grade.consensus import (consensus, count_matrix, false_positives_by_tag, fleiss_kappa,
                                           grader_vs_consensus, letter, purity_at_top, score_by_grade, wilson)

# Fleiss (1971) as tabulated in the textbook / Wikipedia example: 10 subjects, 14 raters, 5 categories.
# p_j = 0.143, 0.200, 0.279, 0.150, 0.229; P_bar = 0.378; P_e = 0.213; kappa = 0.210
FLEISS_TABLE = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def rows(*triples):
    return [{"candidate_id": c, "grader": g, "grade": v, "tag": t} for c, g, v, *rest in triples
            for t in [rest[0] if rest else None]]


def test_fleiss_kappa_textbook_example():
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.20993, abs=5e-5)
    # P_bar by hand for the 2 x 2 table [[2, 0], [0, 2]] is 1, P_e = 0.5: kappa 1 (perfect agreement)
    assert fleiss_kappa([[2, 0], [0, 2]]) == pytest.approx(1.0)
    # [[1, 1], [1, 1]]: P_bar = 0, P_e = 0.5: kappa = -1
    assert fleiss_kappa([[1, 1], [1, 1]]) == pytest.approx(-1.0)
    assert fleiss_kappa([[3, 0], [2, 0]]) is None and fleiss_kappa([]) is None


def test_wilson_interval_by_hand():
    lo, hi = wilson(8, 10)  # centre 0.99208 / 1.38416, half-width 1.96 sqrt(0.025604) / 1.38416
    assert (lo, hi) == (pytest.approx(0.49016, abs=1e-4), pytest.approx(0.94331, abs=1e-4))
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == 1.0
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_consensus_mean_letter_and_tags():
    latest = rows(("x", "a", "A"), ("x", "b", "A"), ("x", "c", "B"),
                  ("y", "a", "B"), ("y", "b", "C"), ("y", "c", "S"),
                  ("z", "a", "C", "spiral"), ("z", "b", "N", "ring"), ("z", "c", "N", "ring"),
                  ("w", "a", "S"))
    cons = consensus(latest)
    assert cons["x"].mean == pytest.approx(8 / 3) and cons["x"].grade == "A"
    assert cons["y"].mean == 1.5 and cons["y"].grade == "B" and cons["y"].skips == 1 and cons["y"].n == 2
    assert cons["z"].mean == pytest.approx(1 / 3) and cons["z"].grade == "N" and cons["z"].tag == "ring"
    assert cons["w"].n == 0 and cons["w"].grade is None
    assert [letter(v) for v in (3, 2.5, 2.49, 1.5, 0.5, 0.49, 0)] == ["A", "A", "B", "B", "C", "N", "N"]
    assert count_matrix(latest) == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 2]]
    assert fleiss_kappa(count_matrix(latest)) == pytest.approx(_kappa_by_hand())


def _kappa_by_hand() -> float:
    # rows [2,1,0,0] [0,1,1,0] [0,0,1,2]: P_i = (4+1-3)/6, (1+1-2)/2, (1+4-3)/6 = 1/3, 0, 1/3 -> P_bar = 2/9
    # p_j = 2/8, 2/8, 2/8, 2/8 -> P_e = 1/4; kappa = (2/9 - 1/4) / (3/4) = -1/27
    return -1 / 27


def test_each_grader_against_the_others():
    latest = rows(("x", "a", "A"), ("x", "b", "A"), ("x", "c", "N"), ("y", "a", "B"), ("y", "b", "C"))
    g = grader_vs_consensus(latest)
    # c on x: others' mean 3 (A), c said N: no exact, lens call differs, bias 0 - 3
    assert g["c"] == {"n": 1, "exact": 0.0, "lens_call": 0.0, "bias": -3.0}
    # a: x vs mean(A, N) = 1.5 (B): not exact, both lens -> lens call agrees, bias 3 - 1.5;
    #    y vs C: not exact, B is a lens, C not -> disagrees, bias 2 - 1
    assert g["a"] == {"n": 2, "exact": 0.0, "lens_call": 0.5, "bias": pytest.approx((1.5 + 1) / 2)}


def test_purity_score_and_false_positives():
    scores = {f"c{i}": 1 - i / 10 for i in range(10)}
    latest = rows(("c0", "a", "A"), ("c1", "a", "B"), ("c2", "a", "N", "spiral"), ("c3", "a", "A"),
                  ("c5", "a", "N", "ring"), ("c6", "a", "N", "spiral"), ("c7", "a", "N"))
    cons = consensus(latest)
    top = purity_at_top(scores, cons, tops=(2, 5))
    assert [r["top"] for r in top] == [2, 5, 10]
    assert (top[0]["graded"], top[0]["lenses"], top[0]["purity"]) == (2, 2, 1.0)
    assert (top[1]["graded"], top[1]["lenses"]) == (4, 3)  # c4 is not graded
    assert (top[1]["low"], top[1]["high"]) == wilson(3, 4)
    assert (top[2]["graded"], top[2]["lenses"], top[2]["min_score"]) == (7, 3, pytest.approx(0.1))
    by = {r["grade"]: r for r in score_by_grade(scores, cons)}
    assert by["A"]["n"] == 2 and by["A"]["median"] == pytest.approx((1.0 + 0.7) / 2) and by["C"]["n"] == 0
    fp = false_positives_by_tag(scores, cons)
    assert [(r["tag"], r["n"]) for r in fp] == [("spiral", 2), ("ring", 1), ("untagged", 1)]
    assert fp[0]["share"] == 0.5 and fp[0]["median_score"] == pytest.approx((0.8 + 0.4) / 2)
