"""`dhs simulate --engine torch`: the numpy engine's schema and manifest, the same bytes for the same seed
(whatever the workers or shards), `--resume`, and bad input refused in one line before anything is written."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.errors import UsageError
from darkhaloscope.inject.build import simulate
from darkhaloscope.sim.build import simulate_tier
from darkhaloscope.sim.simconfig import SimConfig

TORCH = SimConfig(supersample=2, rows_per_file=12, engine="torch")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


@pytest.mark.slow  # (5-25 s: tier builds)
def test_torch_tier_has_the_numpy_schema_and_manifest(tmp_path):
    m_t = simulate(tmp_path / "t", "x", rows=24, seed=5, config=TORCH)
    m_n = simulate(tmp_path / "n", "x", rows=24, seed=5, config=replace(TORCH, engine="numpy"))
    for a, b in zip(sorted((tmp_path / "t").rglob("*.parquet")), sorted((tmp_path / "n").rglob("*.parquet"))):
        ta, tb = pq.read_table(a), pq.read_table(b)
        assert ta.schema == tb.schema and ta.num_rows == tb.num_rows
        assert ta["is_control"].to_pylist() == tb["is_control"].to_pylist()
        assert ta["theta_e_arcsec"].to_pylist() == tb["theta_e_arcsec"].to_pylist()  # the same draws
    assert m_t["config"]["engine"] == "torch" and m_n["config"]["engine"] == "numpy"
    assert {k: v for k, v in m_t.items() if k not in ("config", "elapsed_s", "command")} == \
        {k: v for k, v in m_n.items() if k not in ("config", "elapsed_s", "command")}


@pytest.mark.slow  # (5-25 s: tier builds)
def test_same_seed_same_bytes_with_workers_and_shards(tmp_path):
    simulate(tmp_path / "a", "t", rows=30, seed=7, config=TORCH)
    simulate(tmp_path / "b", "t", rows=30, seed=7, config=TORCH, workers=2)
    for k in range(2):
        simulate(tmp_path / "s", "t", rows=30, seed=7, config=TORCH, shard=f"{k}/2")
    simulate(tmp_path / "c", "t", rows=30, seed=8, config=TORCH)
    fa = _files(tmp_path / "a" / "t")
    assert fa == _files(tmp_path / "b" / "t") == _files(tmp_path / "s" / "t")
    assert fa != _files(tmp_path / "c" / "t")


@pytest.mark.slow  # (5-25 s: tier builds)
def test_resume_is_byte_identical_and_refuses_another_engine(tmp_path):
    simulate(tmp_path / "fresh", "t", rows=30, seed=3, config=TORCH)
    simulate(tmp_path / "cut", "t", rows=30, seed=3, config=TORCH)
    root = tmp_path / "cut" / "t"
    last = sorted(root.rglob("part-00002.parquet"))
    for p in last:  # as if killed inside the last chunk
        p.unlink()
    (root / "manifest.json").unlink()
    with pytest.raises(UsageError, match="config.engine"):
        simulate(tmp_path / "cut", "t", rows=30, seed=3, config=replace(TORCH, engine="numpy"), resume=True)
    m = simulate(tmp_path / "cut", "t", rows=30, seed=3, config=TORCH, resume=True)
    assert m["chunks_resumed"] == 2 and m["rows_rendered"] == 6
    assert _files(root) == _files(tmp_path / "fresh" / "t")


def test_a_rows_draws_do_not_depend_on_the_batch_it_is_rendered_in():
    import numpy as np

    from darkhaloscope.inject.bench import _context
    from darkhaloscope.inject.engine import TorchEngine

    ctx = _context(6, TORCH, 3)  # (a plan of 6 rows: 3 injections, 3 controls)
    whole, in_twos = TorchEngine("cpu")(ctx, range(6)), TorchEngine("cpu", batch_rows=2)(ctx, range(6))
    for a, b in zip(whole, in_twos):  # the same lens, source, host and noise: equal up to float32 rounding
        np.testing.assert_allclose(a.image, b.image, rtol=1e-5, atol=1e-7)
        assert a.columns.keys() == b.columns.keys()
        for k, v in a.columns.items():
            assert v == pytest.approx(b.columns[k], rel=1e-9) if isinstance(v, float) else v == b.columns[k]


def test_the_engine_renders_on_one_thread_and_gives_the_callers_back():
    """`dhs demo` rendered its tier in the main process and then trained on one thread (the engine had pinned
    torch's thread count for good): the count is 1 only while the engine works."""
    import torch

    from darkhaloscope.inject.bench import _context
    from darkhaloscope.inject.engine import TorchEngine

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        engine = TorchEngine("cpu")
        assert torch.get_num_threads() == 2
        real = engine._batch
        engine._batch = lambda *a: (seen.append(torch.get_num_threads()), real(*a))[1]
        engine(_context(2, TORCH, 3), range(2))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_torch_engine_needs_its_renderer():
    with pytest.raises(UsageError, match="inject.build.simulate"):
        simulate_tier("/nonexistent", "t", rows=4, seed=1, config=TORCH)


def _run(tmp_path, *extra):
    return main(["simulate", "--out", str(tmp_path / "out"), "--tier", "t", "--rows", "12", "--seed", "1", "-q",
                 "--workers", "1", "--supersample", "1", *extra])


@pytest.mark.parametrize("extra, code, words", [
    (["--engine", "jax"], 2, "unknown engine"),
    (["--device", "tpu"], 2, "--device"),
    (["--device", "cuda"], 2, "numpy engine runs on the CPU only"),
    (["--engine", "torch", "--theta_e_arcsec", "2,1"], 2, "theta_e_arcsec"),
    (["--engine", "torch", "--arc-snr-dist", "loguniform:5:2"], 2, "0 < LO < HI"),
])
def test_bad_engine_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, code, words):
    assert _run(tmp_path, *extra) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and words in err, err
    assert not (tmp_path / "out").exists()


def test_cuda_without_cuda_is_an_environment_error(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _run(tmp_path, "--engine", "torch", "--device", "cuda") == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --device cuda") and "\n" not in err, err
    assert not (tmp_path / "out").exists()


def test_cli_torch_build_prints_its_engine(tmp_path, capsys):
    assert _run(tmp_path, "--engine", "torch") == 0
    assert "torch on cpu engine" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "out" / "t" / "manifest.json").read_text())
    assert manifest["config"]["engine"] == "torch" and manifest["config"]["device"] == "cpu"


@pytest.mark.slow  # (~20 s: both engines, twice each)
def test_bench_compares_the_engines_in_one_run(capsys):
    assert main(["bench", "simulate", "--engine", "torch", "--stamps", "6", "--tier-rows", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["device"] == "cpu" and res["rows_timed"] == 6
    assert res["numpy_rows_per_cpu_s"] > 0 and res["torch_rows_per_cpu_s"] > 0
    assert res["torch_over_numpy_per_core"] == pytest.approx(res["torch_rows_per_cpu_s"] / res["numpy_rows_per_cpu_s"])
    # the rendering alone is faster than whole rows (which add the npz encoding both engines share)
    assert res["torch_render_rows_per_cpu_s"] > res["torch_rows_per_cpu_s"] and res["npz_encode_cpu_ms_per_row"] > 0


@pytest.mark.slow  # (~12 s: matplotlib)
def test_preview_of_a_torch_tier_shows_its_hosts(tmp_path):
    cfg = replace(TORCH, rows_per_file=8)
    m = simulate(tmp_path, "p", rows=8, seed=2, config=cfg, preview=str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000 and m["preview"].endswith("p.png")
