"""Checkpoints: atomic under kill -9 during the write, weights_only loading, clear errors, RNG round trip,
mirror to a local S3 server (moto) and resume from it on a fresh machine (an empty run folder)."""

import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from darkhaloscope.cli import main
from darkhaloscope.errors import DataError, MissingInputError
from darkhaloscope.fileio import clean_temps
from darkhaloscope.runtime.loading import load_for_inference
from darkhaloscope.stamps.fs import S3Options
from darkhaloscope.train import checkpoint as ckp
from darkhaloscope.train import loop
from trainhelpers import FAST, read_jsonl


@pytest.mark.slow  # a killed training subprocess: ~2.5 s (fast tier < 2 min, issue #25 4.13; runs in CI's full run)
def test_kill_during_write_leaves_previous_last_whole(tmp_path):
    last = tmp_path / "last.pt"
    ckp.save_checkpoint({"step": 5, "w": torch.arange(10)}, last)
    script = textwrap.dedent(f"""
        import os, signal, torch
        from darkhaloscope.train import checkpoint as ckp
        def save_then_die(obj, f):
            with open(f, "wb") as fh:          # half a checkpoint reaches the disk ...
                fh.write(b"PK\\x03\\x04" + b"x" * 1000)
                fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)   # ... and the process is killed mid-write
        torch.save = save_then_die
        ckp.save_checkpoint({{"step": 6, "w": torch.zeros(10)}}, {str(last)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    temps = list(tmp_path.glob(".last.pt.*.tmp"))
    assert len(temps) == 1  # the half-written temp file, never the real name
    ck = ckp.load_checkpoint(last)
    assert ck["step"] == 5 and torch.equal(ck["w"], torch.arange(10))
    assert clean_temps(tmp_path) == temps and not temps[0].exists()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04" + b"x" * 1000)  # what a non-atomic writer would have left
    with pytest.raises(DataError, match="bad.pt is not a readable darkhaloscope checkpoint"):
        ckp.load_checkpoint(bad)


def test_foreign_or_missing_checkpoint_errors(tmp_path):
    torch.save({"model": {}}, tmp_path / "plain.pt")
    with pytest.raises(DataError, match="expected darkhaloscope-checkpoint/1"):
        ckp.load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(MissingInputError, match="does not exist"):
        ckp.load_checkpoint(tmp_path / "nope.pt")


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(1), np.random.seed(2), random.seed(4)
    ckp.save_checkpoint({"rng": [ckp.rng_state(gen)]}, tmp_path / "c.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    torch.manual_seed(9), np.random.seed(9), random.seed(9), gen.manual_seed(9)
    ckp.set_rng_state(ckp.load_checkpoint(tmp_path / "c.pt")["rng"][0], gen)
    got = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2] and torch.equal(got[3], expected[3])


@pytest.mark.slow
def test_mirror_to_local_s3_and_resume_on_a_fresh_machine(train_tier, tmp_path, s3_bucket, capsys, monkeypatch):
    endpoint, bucket = s3_bucket
    uri = f"s3://{bucket}/runs/demo"
    small = ["--data", str(train_tier), *FAST, "--epochs=2", "--max_train_rows=64", "--max_val_rows=32"]  # 4 steps/epoch
    args = [*small, f"--checkpoint_uri={uri}", "--s3-endpoint-url", endpoint, "--checkpoint_every_steps=3"]
    ref = tmp_path / "ref"
    assert main(["train", "--out", str(ref), *small]) == 0
    # session 1 dies in step 8 (the Colab runtime goes away): the mirror holds last.pt of step 6 (mid-epoch)
    real_step, calls = loop.train_step, {"n": 0}

    def step_then_disconnect(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real_step(*a, **kw)

    monkeypatch.setattr(loop, "train_step", step_then_disconnect)
    assert main(["train", "--out", str(tmp_path / "colab1"), *args]) == 130
    monkeypatch.setattr(loop, "train_step", real_step)
    s3 = S3Options.resolve(endpoint)
    remote = ckp.load_checkpoint(f"{uri}/last.pt", s3)  # readable straight from S3
    assert remote["step"] == 6 and remote["cursor"]["batches_done"] == 2
    assert ckp.load_checkpoint(f"{uri}/best.pt", s3)["step"] == 4
    # session 2: a fresh machine, empty run folder, same mirror -> continues at step 6
    fresh = tmp_path / "colab2"
    assert main(["train", "--out", str(fresh), *args, "--resume", "auto"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert (fresh / "best.pt").is_file() and ckp.load_checkpoint(f"{uri}/last.pt", s3)["step"] == 8
    steps = read_jsonl(fresh / "steps.jsonl")
    assert [s["step"] for s in steps] == [7, 8]
    assert steps == read_jsonl(ref / "steps.jsonl")[6:]  # same losses as an uninterrupted run
    model, pcfg, meta = load_for_inference(f"{uri}/best.pt", s3=s3)
    assert meta["model"] == "small_cnn" and pcfg.norm == "annulus"


def test_mirror_upload_failure_is_retried_then_reported(tmp_path):
    ckp.save_checkpoint({"step": 1}, tmp_path / "last.pt")
    (tmp_path / "blocker").write_text("a file where the mirror folder should be")
    m = ckp.Mirror(str(tmp_path / "blocker" / "mirror"), tries=3, backoff_s=0.01)
    with pytest.raises(DataError, match="failed after 3 attempts"):
        m.upload(tmp_path / "last.pt")


def test_local_mirror_round_trip(tmp_path):
    ckp.save_checkpoint({"step": 3}, tmp_path / "run" / "last.pt")
    m = ckp.Mirror(str(tmp_path / "mirror"))
    assert m.upload(tmp_path / "run" / "last.pt").endswith("mirror/last.pt")
    assert ckp.find_resume(tmp_path / "new", "auto", m) == tmp_path / "new" / "last.pt"
    assert ckp.load_checkpoint(tmp_path / "new" / "last.pt")["step"] == 3
    assert ckp.find_resume(tmp_path / "other", "auto", ckp.Mirror(str(tmp_path / "empty"))) is None


def test_time_based_checkpoints(train_tier, tmp_path, monkeypatch):
    """checkpoint_every_minutes: last.pt is saved at the next loss sync once the interval has passed."""
    saves = []
    real_save = loop._Trainer._save
    monkeypatch.setattr(loop._Trainer, "_save", lambda self, names: (saves.append((self.state.step, names)),
                                                                       real_save(self, names)))
    assert main(["train", "--data", str(train_tier), "--out", str(tmp_path / "r"), *FAST, "--epochs=1",
                 "--max_train_rows=64", "--checkpoint_every_minutes=1e-9", "--max_val_rows=16"]) == 0
    # 4 steps: a time-based save after steps 1-3 (the interval is always over), then the epoch-end save
    assert saves == [(1, ("last.pt",)), (2, ("last.pt",)), (3, ("last.pt",)), (4, ("best.pt", "last.pt"))]


@pytest.mark.parametrize("key, value", [("coords", "polar"), ("pooling", ["radial"])])
def test_checkpoint_with_unknown_position_settings_is_one_line(tmp_path, key, value):
    """A checkpoint naming position planes or a pooling this version does not know (a newer version, or edited)."""
    from darkhaloscope.models import create_model

    path = tmp_path / "ck.pt"
    cfg = {"model": "small_cnn", "preprocess": {}, key: value}
    ckp.save_checkpoint({"model": create_model("small_cnn").state_dict(), "config": cfg}, path)
    with pytest.raises(DataError, match=f"{key}=.* is not known to this version"):
        load_for_inference(path)


def test_arch_defaults_are_the_train_config_defaults():
    """An old checkpoint (no coords / pooling keys) is rebuilt as TrainConfig's defaults build a net."""
    from darkhaloscope.train.config import TrainConfig

    assert ckp.ARCH_DEFAULTS == {k: getattr(TrainConfig(), k) for k in ckp.ARCH_DEFAULTS}
