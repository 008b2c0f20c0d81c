"""s3:// tiers served by a real local S3 endpoint (moto on 127.0.0.1), read through the same code path."""

import json
import socket
import time

import numpy as np
import pytest

from darkhaloscope.cli import main
from darkhaloscope.errors import DataError, MissingInputError
from darkhaloscope.stamps.batch import decode_tier_batch
from darkhaloscope.stamps.fs import S3Options, redact
from darkhaloscope.stamps.tier import open_tier
from s3util import upload_folder


def _images(tier, split):
    return np.concatenate([decode_tier_batch(b).images for b in tier.iter_batches(["stamp_npz"], split=split)])


def test_s3_tier_reads_like_the_local_one(tiny_tier, s3_bucket):
    endpoint, bucket = s3_bucket
    uri = upload_folder(endpoint, bucket, tiny_tier, "phase4c/stamps/debug")
    remote, local = open_tier(uri, S3Options(endpoint_url=endpoint)), open_tier(str(tiny_tier))
    assert remote.splits() == local.splits() == ["test", "train", "val"]
    assert [f.relpath for f in remote.files] == [f.relpath for f in local.files]
    assert remote.num_rows == 72
    assert np.array_equal(_images(remote, "val"), _images(local, "val"))


def test_bench_loader_on_s3_with_flag_and_with_env(tiny_tier, s3_bucket, capsys, monkeypatch):
    endpoint, bucket = s3_bucket
    uri = upload_folder(endpoint, bucket, tiny_tier, "tier")
    assert main(["bench", "loader", uri, "--s3-endpoint-url", endpoint, "--rows", "16", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["stamps"] >= 16 and res["naive_stamps"] >= 16
    assert res["stamps_per_s"] > 0 and res["naive_stamps_per_s"] > 0 and res["ratio"] > 0
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)  # the standard variable, no flag
    assert main(["bench", "loader", uri, "--rows", "8", "--no-naive", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stamps"] >= 8


def test_pack_reads_s3_input(tiny_tier, s3_bucket, tmp_path, capsys):
    endpoint, bucket = s3_bucket
    uri = upload_folder(endpoint, bucket, tiny_tier, "tier")
    assert main(["pack", uri, str(tmp_path / "packed"), "--s3-endpoint-url", endpoint, "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["source"] == uri and manifest["rows_written"] == 72
    assert open_tier(str(tmp_path / "packed")).is_packed


def test_missing_bucket_prefix_is_refused(s3_bucket):
    endpoint, bucket = s3_bucket
    with pytest.raises((DataError, MissingInputError), match="no parquet files|does not exist"):
        open_tier(f"s3://{bucket}/nothing/here", S3Options(endpoint_url=endpoint))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with ends: connections are refused


def test_unreachable_endpoint_fails_fast_in_one_line_without_credentials(monkeypatch, capsys):
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    code = main(["bench", "loader", "s3://bucket/tier", "--s3-endpoint-url", endpoint])
    elapsed = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert code == 4 and elapsed < 30  # an environment fault (docs/reliability.md, exit codes)
    assert err.startswith("error: s3://bucket/tier: S3 endpoint") and len(err.strip().splitlines()) == 1
    assert "unreachable or not answering" in err and "--s3-endpoint-url" in err
    assert secret not in out + err and "AKIAIOSFODNN7EXAMPLE" not in out + err


def test_s3_options_hold_and_print_no_credentials(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-123")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    opts = S3Options.resolve()
    assert (opts.endpoint_url, opts.region, opts.anonymous) == ("http://127.0.0.1:9", "eu-west-1", False)
    assert S3Options.resolve(endpoint_url="http://x:1").endpoint_url == "http://x:1"  # the flag wins
    assert "s3cr3t" not in repr(opts) and "s3cr3t" not in str(opts.fsspec_kwargs())
    assert redact("denied for key s3cr3t-value-123 at ...") == "denied for key *** at ..."


def test_fsspec_filesystem_reaches_the_same_endpoint(tiny_tier, s3_bucket):
    from darkhaloscope.stamps.fs import fsspec_filesystem

    endpoint, bucket = s3_bucket
    uri = upload_folder(endpoint, bucket, tiny_tier, "mirror")
    fs, path = fsspec_filesystem(uri, S3Options(endpoint_url=endpoint))
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path)) == ["region_split=test", "region_split=train",
                                                                 "region_split=val"]
