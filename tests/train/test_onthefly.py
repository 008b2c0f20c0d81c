"""`dhs train --inject HOSTS`: fresh batches rendered from (seed, batch index), paired controls, the host split
against --data's held-out splits, the lens-metadata log, and a bit-exact resume (train/onthefly*.py)."""

import numpy as np
import pandas as pd
import pytest
import torch

from darkhaloscope.cli import main
from darkhaloscope.config import load_config
from darkhaloscope.stamps.codec import encode_stamp
from darkhaloscope.stamps.tier import open_tier
from darkhaloscope.train.config import TrainConfig
from darkhaloscope.train.onthefly import InjectionLog, InjectStream
from darkhaloscope.train.onthefly_source import InjectSource, batch_seed, composition
from darkhaloscope.train.resume_check import resume_check
from tierfactory import fake_stamp
from trainhelpers import FAST, read_jsonl

# tiny on-the-fly runs: batches of 8 (4 lenses, 3 paired controls, 1 look-alike), 3 per epoch, 64-stamp audit
OTF = [*FAST, "--batch_size=8", "--inject_steps_per_epoch=3", "--inject_audit_stamps=32", "--sim.confusers=0.3"]


def _cfg(data, *extra) -> TrainConfig:
    return load_config(TrainConfig, None, [f"--data={data}", "--inject=synthetic", *OTF, *extra])


@pytest.fixture(scope="module")
def source(train_tier) -> InjectSource:
    return InjectSource(_cfg(train_tier), 8)


def test_composition_sums_to_the_batch_and_keeps_a_plain_control():
    assert composition(64, 0.5, 0.5) == (32, 16, 16, 0)
    assert composition(8, 0.5, 0.3) == (4, 1, 3, 0)
    assert composition(10, 0.8, 0.0) == (2, 0, 2, 6)  # more plain controls than lenses: 6 on hosts of their own
    assert composition(2, 0.5, 0.9) == (1, 0, 1, 0)  # at least one plain control stays
    for b in (2, 7, 64):
        for c in (0.1, 0.5, 0.9):
            assert sum(composition(b, c, 0.4)) == b


def test_batch_is_a_pure_function_of_seed_and_index(source):
    a, b, c = source.render(5), source.render(5), source.render(6)
    assert np.array_equal(a.images, b.images) and a.columns == b.columns
    assert not np.array_equal(a.images, c.images)
    assert batch_seed(0, 5) != batch_seed(1, 5) != batch_seed(0, 6)
    assert a.kinds == ["lens"] * 4 + ["paired_control"] * 3 + ["lookalike"]
    assert a.labels.tolist() == [1] * 4 + [0] * 4 and a.images.shape == (8, 3, 64, 64)
    assert a.row_ids == [f"otf5-{j}" for j in range(8)]


def test_paired_control_is_the_lens_host_without_the_arc(source):
    b = source.render(0)
    for j in range(3):  # paired control j is lens j's host: same noise, no arc
        assert b.columns[4 + j]["pair_of"] == f"otf0-{j}" and b.columns[4 + j]["host_id"] == b.columns[j]["host_id"]
        assert np.array_equal(b.images[4 + j], b.ctrl[j])
        arc = b.images[j] - b.images[4 + j]
        assert arc.sum() > 0 and b.columns[4 + j]["theta_e_arcsec"] is None
    assert b.columns[0]["theta_e_arcsec"] > 0 and b.columns[0]["arc_snr"] > 0
    assert b.columns[7]["confuser_kind"] is not None and b.ctrl[7] is None


def test_look_alike_kinds_follow_their_shares(train_tier):
    """`--sim.confuser_kinds=ring,spiral:3`: the batches' look-alikes are spirals three times as often as rings
    (the plan only: nothing is rendered)."""
    src = InjectSource(_cfg(train_tier, "--sim.confusers=0.5", "--sim.confuser_kinds=ring,spiral:3"), 64)
    kinds = [src.kinds[k] for g in range(4) for k in src.plan(batch_seed(0, g), g).confuser_idx if k >= 0]
    assert kinds.count("spiral") == 3 * kinds.count("ring") and set(kinds) == {"ring", "spiral"}


def test_stream_order_and_cursor_do_not_depend_on_workers(source):
    s = InjectStream(source, 2)
    s.set_epoch(1)
    assert [b["row_id"][0] for b in s] == ["otf2-0", "otf3-0"]  # epoch 1 = global batches 2, 3
    s2 = InjectStream(source, 2)
    s2.load_state_dict({**s.state_dict(), "epoch": 1, "batches_done": 1})
    s2.set_epoch(1)
    assert [b["row_id"][0] for b in s2] == ["otf3-0"]
    ranks = [InjectStream(source, 2, rank=r, world_size=2) for r in (0, 1)]
    assert [next(iter(r))["row_id"][0] for r in ranks] == ["otf0-0", "otf1-0"]  # ranks render their own batches
    with pytest.raises(Exception, match="steps_per_epoch=2 \\(now 5\\)"):
        InjectStream(source, 5).load_state_dict(s.state_dict())


def test_loader_workers_deliver_the_same_batches_in_order(source):
    from darkhaloscope.train.data import make_loader

    s = InjectStream(source, 3)
    s.load_state_dict({**s.state_dict(), "batches_done": 1})
    s.set_epoch(0)
    got = [(b["row_id"][0], b["image"].sum().item()) for b in make_loader(s, num_workers=2)]
    assert [r for r, _ in got] == ["otf1-0", "otf2-0"] and s.state_dict()["batches_done"] == 3
    assert got[1][1] == InjectStream(source, 3).batch(2)["image"].sum().item()


def test_injection_log_truncates_to_the_checkpoint(tmp_path):
    log = InjectionLog(tmp_path, every_steps=3)
    for step in range(1, 8):
        log.add(step, 0, [{"row_id": f"otf{step}-0", "kind": "lens", "label": 1, "theta_e_arcsec": 1.0 + step,
                           "confuser_kind": None}])
    log.flush()
    assert sorted(p.name for p in (tmp_path / "injections").iterdir()) == [
        "part-000000001-000000003.parquet", "part-000000004-000000006.parquet", "part-000000007-000000007.parquet"]
    log.truncate(5)
    df = pd.read_parquet(tmp_path / "injections")
    assert sorted(df["step"]) == [1, 2, 3, 4, 5] and df["theta_e_arcsec"].max() == 6.0


def _npz_hosts(folder, names):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for n in names:
        img = fake_stamp(rng, lens=False)
        np.savez(folder / f"{n}.npz", **{f"image_{b}": img[i] for i, b in enumerate("grz")})


def test_real_hosts_never_include_held_out_hosts(train_tier, tmp_path):
    """--inject TIER: the train split's controls only; --inject FOLDER: every file whose id is a val/test host of
    --data is left out."""
    src = InjectSource(_cfg(train_tier, f"--inject={train_tier}"), 8)
    t = open_tier(str(train_tier)).read_columns(["host_id", "is_control"], split="train").to_pandas()
    assert set(src.real.ids) == set(t.loc[t.is_control == 1, "host_id"])
    used = {c["host_id"] for g in range(3) for c in src.render(g).columns}
    assert used and all(h.startswith("host-train-") for h in used)
    held = open_tier(str(train_tier)).read_columns(["host_id"], split="val")["host_id"].to_pylist()[:3]
    _npz_hosts(tmp_path / "npz", held + ["free-a", "free-b"])
    src = InjectSource(_cfg(train_tier, f"--inject={tmp_path / 'npz'}"), 8)
    assert sorted(src.real.ids) == ["free-a", "free-b"] and src.hosts_left_out == 3
    assert {c["host_id"] for c in src.render(0).columns} <= {"free-a", "free-b"}


@pytest.mark.slow
def test_train_inject_writes_run_with_step_times_and_lens_log(train_tier, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(train_tier), "--out", str(out), "--inject", "synthetic", *OTF,
                 "--epochs=1"]) == 0
    text = capsys.readouterr().out
    assert "audit of" in text and ": GO" in text and "rendering" in text
    steps = read_jsonl(out / "steps.jsonl")
    assert [r["step"] for r in steps] == [1, 2, 3] and all(r["render_s"] > 0 and r["model_s"] > 0 for r in steps)
    df = pd.read_parquet(out / "injections")
    assert len(df) == 24 and sorted(set(df["step"])) == [1, 2, 3]
    lenses = df[df.kind == "lens"]
    assert len(lenses) == 12 and lenses["theta_e_arcsec"].notna().all() and lenses["arc_snr"].notna().all()
    assert (out / "inject_audit.json").is_file()
    assert read_jsonl(out / "metrics.jsonl")[0]["val_n"] == 96  # validated on the stored val split


@pytest.mark.slow
def test_kill9_then_resume_is_bit_exact(train_tier, tmp_path):
    cfg = _cfg(train_tier, "--inject_steps_per_epoch=6", "--epochs=2", "--checkpoint_every_steps=4",
               "--torch_threads=1", "--inject_audit_stamps=0", "--inject_log_every_steps=5")
    r = resume_check(cfg, tmp_path, kill_after_step=4)
    assert r.killed and r.killed_at["step"] == 4 and r.killed_at["batches_done"] == 4
    assert r.same_losses and r.same_weights and r.ok, r.why
    logs = [pd.read_parquet(tmp_path / d / "injections").sort_values(["step", "row_id"]).reset_index(drop=True)
            for d in ("uninterrupted", "killed")]
    assert len(logs[0]) == 12 * 8 and logs[0].equals(logs[1])
    cursor = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["cursor"]
    assert cursor["fingerprint"]["steps_per_epoch"] == 6 and cursor["fingerprint"]["inject"] == "synthetic"
