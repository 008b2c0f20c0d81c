"""benchmarks/bench_depth.py: recall per Einstein-radius / arc-S/N bin, and run names that become file names."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_depth.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_depth", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_binned_recall_counts_each_lens_once_in_its_bin(bench):
    scores = np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.95])
    meta = {"theta_e_arcsec": np.array([1.0, 1.1, 1.3, 1.7, 2.5, 12.0]),
            "arc_snr": np.array([4.0, 5.0, 8.0, 15.0, 30.0, np.nan])}
    got = bench.binned_recall(scores, 0.5, meta)
    assert [(c["lo"], c["k"], c["n"]) for c in got["theta_e_arcsec"]] == [(0.0, 1, 2), (1.2, 1, 1), (1.6, 1, 1),
                                                                          (2.0, 0, 1)]  # 12" is outside every bin
    assert [(c["k"], c["n"]) for c in got["arc_snr"]] == [(1, 2), (1, 1), (1, 1), (0, 1)]  # NaN (no arc): no bin
    assert bench.binned_recall(scores, 0.5, {"theta_e_arcsec": np.full(6, np.nan), "arc_snr": np.full(6, np.nan)}) == {}


@pytest.mark.parametrize("runs", [["a=x", "a=y"], ["../up=x"], ["noequals"]])
def test_run_names_must_be_distinct_and_safe_file_names(bench, tmp_path, runs, capsys):
    argv = ["--out", str(tmp_path / "o")] + [a for r in runs for a in ("--run", r)]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --run") and err.count("\n") == 1 and "distinct names" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra,code,words", [(["--steps", "x,1"], 2, "comma-separated numbers"),
                                              (["--steps", "1e308"], 2, "in [0, 5] mag"),
                                              (["--tier", "nosuch"], 2, "not a tier"),
                                              ([], 2, "no best.pt there")])
def test_bad_arguments_are_one_line_before_any_output(bench, tmp_path, capsys, extra, code, words):
    """(ValueError / OverflowError / MissingInputError tracebacks before, after making --out.)"""
    assert bench.main(["--out", str(tmp_path / "o"), "--run", "a=nosuch", *extra]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "o").exists()
