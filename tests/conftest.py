"""Shared fixtures: a tiny Phase 4c tier made from random stamps, a local S3 server (moto), and one small
simulated tier with a briefly trained small_cnn (`demo`, session-scoped: shared by the score, committee, probe and
report tests) plus a second checkpoint of it (other weights) for committees.

The tests run torch, OpenBLAS and OpenMP with one thread (`OMP_NUM_THREADS=1`, inherited by the `dhs`
subprocesses; an explicit value in the environment wins): their tensors and fits are tiny, and on the
2-core dev box a second thread only spins (tests/train: 60 s CPU and 63 s wall with two threads, 27 s and
30 s with one, 2026-12-01 at load ~3)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / torch load their thread pools

import shutil  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from darkhaloscope.cli import main  # noqa: E402
from shareddata import DR10_DIR  # noqa: E402
from tierfactory import make_tier  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def one_cli_parser():
    """`cli.main` parses with one parser built per session: building it (every command's flags, one per config
    key) is ~35 ms CPU, paid by each of the several hundred in-process `main([...])` calls of the tests. argparse
    leaves a parser unchanged by parsing (and copies `append` lists), so each call parses as a fresh `dhs`
    would; tests of the parser itself call `build_parser()` and get their own."""
    import darkhaloscope.cli as cli

    build = cli.build_parser
    parser = build()
    cli.build_parser = lambda: parser
    try:
        yield parser
    finally:
        cli.build_parser = build


@pytest.fixture(scope="session")
def tiny_tier_template(tmp_path_factory) -> Path:
    """`tiny_tier`'s content, made once per session (never handed to a test: tests may change their tier)."""
    return make_tier(tmp_path_factory.mktemp("tinytier") / "tier", rows_per_split=24, files_per_split=2,
                     row_group_size=8)


@pytest.fixture
def tiny_tier(tmp_path, tiny_tier_template) -> Path:
    """A hive-partitioned tier: 3 splits x 24 rows, half controls, 2 files per split, 8-row row groups. A copy
    of the session's template in the test's own folder (~5 ms; making it, 72 stamps encoded, was ~0.2 s CPU in
    each of ~70 fast tests)."""
    return Path(shutil.copytree(tiny_tier_template, tmp_path / "tier"))


@pytest.fixture
def dr10_dir() -> Path:
    if not DR10_DIR.is_dir():
        pytest.skip(f"real DR10 cutouts not found at {DR10_DIR} (the ../shared folder is missing)")
    return DR10_DIR


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 endpoint on 127.0.0.1 (moto). Yields its URL; sets dummy credentials in the env."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    try:
        yield url
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on the local S3 server; yields (endpoint_url, bucket_name)."""
    import uuid

    import boto3

    name = f"dhs-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=name)
    return s3_server, name


TRAIN_FAST = ["--model=small_cnn", "--device=cpu", "--precision=fp32", "--channels_last=false", "--num_workers=0",
              "--batch_size=32", "--lr=3e-3", "--progress=false", "--val_batch_size=64", "--epochs=1"]


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> dict[str, Path]:
    """{'tier', 'checkpoint', 'scores'}: `dhs simulate --pair` (120 rows) -> `dhs train` -> `dhs score`.
    The subjects here are scoring, reports and probes, not the arcs' fine structure: the simulator's
    costliest realism is off (sub-pixel sampling, Poisson noise of the added light, knots) and the batched
    torch engine draws the rows (the numpy reference's plan and draws; tests/inject compares the two)."""
    root = tmp_path_factory.mktemp("evaldemo")
    assert main(["simulate", "--out", str(root), "--tier", "t", "--rows", "120", "--seed", "3", "--pair",
                 "--workers", "1", "--rows-per-file", "40", "-q", "--supersample=1", "--photon_noise=false",
                 "--src_knots=0,0", "--engine=torch"]) == 0
    tier = root / "t"
    assert main(["train", "--data", str(tier), "--out", str(root / "run"), *TRAIN_FAST]) == 0
    ckpt = root / "run" / "best.pt"
    scores = root / "scores.parquet"
    assert main(["score", "--checkpoint", str(ckpt), "--data", str(tier), "--out", str(scores), "--quiet"]) == 0
    return {"tier": tier, "checkpoint": ckpt, "scores": scores, "root": root}


@pytest.fixture(scope="session")
def second(demo, tmp_path_factory):
    """A second committee member: the demo checkpoint with other weights (seed 7), other temperature."""
    import torch

    from darkhaloscope.models import create_model
    from darkhaloscope.train.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(demo["checkpoint"])
    torch.manual_seed(7)
    ck["model"] = create_model("small_cnn").state_dict()
    ck["calibration"] = {**ck["calibration"], "temperature": 2.0}
    path = tmp_path_factory.mktemp("member") / "best.pt"
    save_checkpoint({k: v for k, v in ck.items() if k not in ("format", "version")}, path)
    return path
