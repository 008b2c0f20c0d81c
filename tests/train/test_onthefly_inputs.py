"""`dhs train --inject`: every bad input is one `error:` line before any work, nothing written; and the audit
gate rules rendered batches as `dhs audit` rules a stored tier (NO-GO: exit 3)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.train import onthefly_source
from darkhaloscope.train.onthefly_audit import audit_batches
from darkhaloscope.train.onthefly_source import InjectSource
from tierfactory import make_tier
from trainhelpers import FAST

OTF = [*FAST, "--batch_size=8", "--inject_steps_per_epoch=2", "--inject_audit_stamps=16"]


def _refused(argv, out, capsys) -> tuple[int, str]:
    rc = main(["train", "--out", str(out), *OTF, *argv])  # (argv last: it wins)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert not out.exists(), "nothing may be written"
    return rc, err[0]


def test_inject_needs_a_stored_val_tier(train_tier, tmp_path, capsys):
    rc, err = _refused(["--inject", "synthetic"], tmp_path / "r", capsys)
    assert rc == 2 and "validates on a stored tier" in err
    no_val = make_tier(tmp_path / "trainonly", rows_per_split=16, splits=("train",))
    rc, err = _refused(["--data", str(no_val), "--inject", "synthetic"], tmp_path / "r", capsys)
    assert rc == 2 and "has no 'val' split" in err


@pytest.mark.parametrize("flag, code, words", [
    ("--sim.engine=jax", 2, "unknown engine"),
    ("--sim.theta_e_arcsec=3,1", 2, "theta_e_arcsec"),
    ("--sim.theta_e_dist=lognormal:9:0.3", 2, "theta_e_dist"),
    ("--sim.controls=1.5", 2, "controls"),
    ("--sim.hosts=somewhere", 2, "drop sim.hosts"),
    ("--sim.splits=train=1", 2, "no meaning for batches rendered on the fly"),
    ("--batch_size=1", 2, "at least 2 stamps"),
])
def test_bad_simulate_config_is_refused(train_tier, tmp_path, capsys, flag, code, words):
    rc, err = _refused(["--data", str(train_tier), "--inject", "synthetic", flag], tmp_path / "r", capsys)
    assert rc == code and words in err


def test_cuda_without_cuda_is_an_environment_error(train_tier, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, err = _refused(["--data", str(train_tier), "--inject", "synthetic", "--sim.device=cuda"], tmp_path / "r", capsys)
    assert rc == 4 and "sees no CUDA device" in err


def test_bad_hosts_are_refused(train_tier, tmp_path, capsys):
    rc, err = _refused(["--data", str(train_tier), "--inject", str(tmp_path / "nowhere")], tmp_path / "r", capsys)
    assert rc == 2 and "no such file or folder" in err
    (tmp_path / "empty").mkdir()
    rc, err = _refused(["--data", str(train_tier), "--inject", str(tmp_path / "empty")], tmp_path / "r", capsys)
    assert rc == 1 and "no .npz files" in err
    bare = tmp_path / "bare" / "region_split=train"
    bare.mkdir(parents=True)
    pq.write_table(pa.table({"stamp_npz": pa.array([b"x"], pa.binary()), "host_id": ["h"]}), bare / "part-0.parquet")
    rc, err = _refused(["--data", str(train_tier), "--inject", str(tmp_path / "bare")], tmp_path / "r", capsys)
    assert rc == 2 and "has no is_control column" in err
    valonly = make_tier(tmp_path / "valonly", rows_per_split=16, splits=("val",))
    rc, err = _refused(["--data", str(train_tier), "--inject", str(valonly)], tmp_path / "r", capsys)
    assert rc == 2 and "has no 'train' split" in err
    half = make_tier(tmp_path / "half", rows_per_split=16)
    for f in half.rglob("*.parquet"):  # every is_control 0.5: no label (read as 0 before: 'no control rows')
        t = pq.read_table(f)
        pq.write_table(t.set_column(t.column_names.index("is_control"), "is_control",
                                    pa.array([0.5] * t.num_rows, pa.float64())), f)
    rc, err = _refused(["--data", str(train_tier), "--inject", str(half)], tmp_path / "r", capsys)
    assert rc == 1 and f"--inject {half}" in err and "is_control must be 0 or 1" in err and "--hosts" not in err


def test_real_hosts_need_host_ids_in_data(tmp_path, capsys):
    import pyarrow.parquet as pq

    data = make_tier(tmp_path / "data", rows_per_split=16)
    for f in data.rglob("*.parquet"):
        pq.write_table(pq.read_table(f).drop_columns(["host_id"]), f)
    rc, err = _refused(["--data", str(data), "--inject", str(data)], tmp_path / "r", capsys)
    assert rc == 2 and "no host id column" in err


def _doctor(b):
    """Lenses on a brighter sky than their own host: injection - control no longer vanishes far from the arc."""
    b.images[b.labels == 1] += np.float32(0.05)
    return b


def test_audit_gate_passes_fair_batches_and_refuses_doctored_ones(train_tier):
    from darkhaloscope.config import load_config
    from darkhaloscope.train.config import TrainConfig

    source = InjectSource(load_config(TrainConfig, None, [f"--data={train_tier}", "--inject=synthetic", *OTF]), 8)
    fair = [source.render(g) for g in range(2)]
    assert audit_batches(fair).verdict == "GO"
    report = audit_batches([_doctor(b) for b in fair])
    assert report.verdict == "NO-GO" and [f.check for f in report.by_severity("error")] == ["paired"]


@pytest.mark.slow
def test_train_refuses_a_no_go_audit_with_exit_3(train_tier, tmp_path, capsys, monkeypatch):
    real_render = InjectSource.render
    monkeypatch.setattr(InjectSource, "render", lambda self, g, tag=onthefly_source.TRAIN_STREAM:
                        _doctor(real_render(self, g, tag)))
    rc, err = _refused(["--data", str(train_tier), "--inject", "synthetic"], tmp_path / "r", capsys)
    assert rc == 3 and "NO-GO" in err and "[paired]" in err
