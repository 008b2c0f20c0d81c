"""Faults are named errors with one exit code per fault in every command (docs/reliability.md):
duplicated stamp_id, missing inputs, text / null labels, malformed checkpoints, outputs that exist,
S3 endpoints that are down, silent, bucket-less or credential-less. Issue #14 items 5, 13-15, 19, 21."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest
import torch

from hostilehelpers import TRAIN_FAST, dhs, dhs_subprocess, rewrite_column


def test_duplicated_stamp_id_is_named_by_audit_and_train(tier, tmp_path, capsys):
    rewrite_column(tier, "stamp_id", lambda v, rel: ["val-000016"] + v[1:] if "train" in rel else v)
    rc, out, err = dhs(capsys, "audit", tier)
    assert rc == 3 and "stamp_id 'val-000016' appears 2 times" in out.replace("\n", " ").replace("│", "")
    rc, _, err = dhs(capsys, "train", "--data", tier, "--out", tmp_path / "run", *TRAIN_FAST)
    assert rc == 1 and "stamp_id 'val-000016' appears 2 times" in err and "region_split=train" in err
    assert "bug in the input pipeline" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv", [
    ["audit", "{x}"], ["pack", "{x}", "{t}/OUT"], ["train", "--data", "{x}", "--out", "{t}/run"],
    ["score", "--checkpoint", "{ck}", "--data", "{x}", "--out", "{t}/s.parquet"],
    ["score", "--checkpoint", "{x}.pt", "--data", "{tier}", "--out", "{t}/s.parquet"],
    ["evaluate", "{x}.parquet", "--out", "{t}/r"],
    ["simulate", "--out", "{t}/sim", "--tier", "demo", "--rows=8", "--seed=1", "--hosts", "{x}"],
])
def test_missing_input_is_exit_2_everywhere(argv, tier, checkpoint, tmp_path, capsys):
    args = [a.format(x=tmp_path / "missing", t=tmp_path, ck=checkpoint, tier=tier) for a in argv]
    rc, _, err = dhs(capsys, *args)
    assert rc == 2 and "missing" in err


def test_text_is_control_is_refused_everywhere(tier, tmp_path, checkpoint, capsys):
    rewrite_column(tier, "is_control", lambda v, rel: pa.array([str(x) for x in v], pa.string()))
    rc, out, _ = dhs(capsys, "audit", tier)
    assert rc == 3 and "is_control is string" in out.replace("\n", " ").replace("│", "")
    for argv in (["train", "--data", tier, "--out", tmp_path / "run", *TRAIN_FAST],
                 ["score", "--checkpoint", checkpoint, "--data", tier, "--out", tmp_path / "s.parquet"],
                 ["pack", tier, tmp_path / "OUT"]):
        rc, _, err = dhs(capsys, *argv)
        assert rc == 3 and "is_control is a text column" in err and "parquet" in err, argv
    assert not (tmp_path / "s.parquet").exists() and not any((tmp_path / "OUT").glob("*/*.parquet"))


def test_null_label_names_file_and_row(tier, tmp_path, checkpoint, capsys):
    rewrite_column(tier, "is_control", lambda v, rel: pa.array(v[:5] + [None] + v[6:], pa.int32())
                   if "train" in rel else pa.array(v, pa.int32()))
    rc, _, err = dhs(capsys, "train", "--data", tier, "--out", tmp_path / "run", *TRAIN_FAST)
    assert rc == 1 and "region_split=train/part-train-00000.parquet row 5: is_control is None" in err
    rc, _, err = dhs(capsys, "score", "--checkpoint", checkpoint, "--data", tier, "--out", tmp_path / "s.parquet")
    assert rc == 1 and "part-train-00000.parquet row 5" in err


def _variant(checkpoint, tmp_path, name, edit):
    ck = torch.load(checkpoint, weights_only=True)
    edit(ck)
    path = tmp_path / f"{name}.pt"
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("name,edit,expect", [
    ("noconfig", lambda c: c.pop("config"), "has no model config"),
    ("otherarch", lambda c: c["config"].update(model="resnet18"), "do not fit model 'resnet18'"),
    ("extrakey", lambda c: c["config"]["preprocess"].update(bogus=1), "preprocess settings bogus"),
    ("empty", None, "is empty (0 bytes"),
])
def test_malformed_checkpoint_names_the_file(name, edit, expect, checkpoint, tier, tmp_path, capsys):
    if edit is None:
        path = tmp_path / f"{name}.pt"
        path.write_bytes(b"")
    else:
        path = _variant(checkpoint, tmp_path, name, edit)
    rc, _, err = dhs(capsys, "score", "--checkpoint", path, "--data", tier, "--out", tmp_path / "s.parquet")
    assert rc == 1 and f"{name}.pt" in err and expect in err


def test_existing_outputs_are_refused_before_any_work(tier, checkpoint, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    t0 = time.perf_counter()
    rc, _, err = dhs(capsys, "score", "--checkpoint", checkpoint, "--data", tier, "--out", tmp_path / "folder")
    assert rc == 2 and "is a folder" in err and time.perf_counter() - t0 < 5
    (tmp_path / "file").write_text("keep me")
    rc, _, err = dhs(capsys, "evaluate", tmp_path / "nope.parquet", "--out", tmp_path / "file")
    assert rc == 2 and "is a file" in err and (tmp_path / "file").read_text() == "keep me"


@pytest.mark.slow
def test_s3_checkpoint_faults_end_in_one_line_in_bounded_time(tier, tmp_path, silent_endpoint, s3_bucket):
    endpoint, bucket = s3_bucket
    env = {"DHS_S3_READ_TIMEOUT_S": "1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    cases = [("http://127.0.0.1:1", f"s3://{bucket}/best.pt", env, 4, "unreachable or not answering"),
             (silent_endpoint, f"s3://{bucket}/best.pt", env, 4, "unreachable or not answering"),
             (endpoint, "s3://no-such-bucket-dhs/best.pt", env, 2, "does not exist"),
             (endpoint, f"s3://{bucket}/best.pt", {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
                                                    "HOME": str(tmp_path), "AWS_CONFIG_FILE": str(tmp_path / "n"),
                                                    "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "n")},
              4, "no credentials")]
    for url, ck, e, code, expect in cases:
        t0 = time.perf_counter()
        p = dhs_subprocess("score", "--checkpoint", ck, "--data", tier, "--out", tmp_path / "s.parquet",
                           "--s3-endpoint-url", url, env=e, timeout=120)
        assert p.returncode == code and expect in p.stderr and p.stderr.count("error:") == 1, (url, p.stderr)
        assert time.perf_counter() - t0 < 90
