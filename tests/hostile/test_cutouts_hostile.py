"""`dhs cutouts` against hostile replies of the loopback cutout service (issue #26 items 3, 7, 10, 15, 17):
bounded reply size and time, lying FITS headers, a target list's own region_split, runs where every cutout
fails, and secrets in `--service-url`. Each case ends as rows with `cutout_ok=0` and a reason, or one
`error:` line, never a traceback or a hang."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.survey.config import CutoutConfig
from darkhaloscope.survey.fakeservice import FakeCutoutService
from hostilehelpers import dhs

FAST = ["--rate-limit", "0", "--backoff_s=0.01", "--max_tries=2", "--timeout_s=2", "-q"]


def targets(path, n: int, **extra) -> str:
    split = np.asarray(["train", "val", "test"])[np.arange(n) % 3]
    pq.write_table(pa.table({"target_id": [f"t{i:03d}" for i in range(n)], "ra": 150 + 0.01 * np.arange(n),
                             "dec": np.full(n, 2.0), "label": (np.arange(n) % 2).astype(np.int8),
                             "split": split.tolist(), **extra}), path)
    return str(path)


def ra_key(ra: float) -> str:
    return CutoutConfig().url(ra, 0).split("ra=")[1].split("&")[0]


def rows(out) -> dict:
    t = pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("region_split=*/*.parquet"))])
    return {r["stamp_id"]: r for r in t.to_pylist()}


@pytest.mark.slow  # ~4 s idle, 12 s on this loaded 2-core box (two 1 s deadlines, astropy import)
def test_huge_endless_and_dripping_replies_end_as_rows_in_bounded_time(tmp_path, capsys):
    t = targets(tmp_path / "t.parquet", 4)
    with FakeCutoutService(huge_bytes=64 << 20, drip_s=0.2) as svc:
        svc.fault_for = {ra_key(150.01): "huge", ra_key(150.02): "endless", ra_key(150.03): "drip"}
        svc.cube("0", "0", 64, "grz")  # imports astropy now: the first reply is not late on a loaded machine
        t0 = time.monotonic()
        rc, _, err = dhs(capsys, "cutouts", t, "--out", tmp_path / "tier", "--service-url", svc.url, *FAST,
                         "--max_reply_mb=1", "--request_deadline_s=1")
        elapsed = time.monotonic() - t0
    assert rc == 0, err
    assert elapsed < 10  # drip: 2 tries x 1 s deadline; huge / endless: cut at 1 MiB
    r = rows(tmp_path / "tier")
    assert r["t000"]["cutout_ok"] == 1
    assert "larger than max_reply_mb=1 MiB" in r["t001"]["cutout_reason"] and r["t001"]["cutout_ok"] == 0
    assert "larger than max_reply_mb=1 MiB" in r["t002"]["cutout_reason"] and r["t002"]["cutout_ok"] == 0
    assert "no whole reply within request_deadline_s=1 s" in r["t003"]["cutout_reason"]
    cached = sorted(p.stat().st_size for p in (tmp_path / "tier" / "_cache").rglob("*") if p.is_file())
    assert len(cached) == 1 and cached[0] < 100_000  # only the good reply; nothing over the limit stored


def test_a_larger_max_reply_mb_refetches_only_the_refused_replies(tmp_path, capsys):
    t = targets(tmp_path / "t.parquet", 3)
    out = tmp_path / "tier"
    with FakeCutoutService(huge_bytes=2 << 20) as svc:
        svc.fault_for = {ra_key(150.01): "huge"}
        assert dhs(capsys, "cutouts", t, "--out", out, "--service-url", svc.url, *FAST, "--max_reply_mb=1")[0] == 0
        assert "larger than max_reply_mb=1 MiB" in rows(out)["t001"]["cutout_reason"]
        before = dict(svc.requests)
        assert dhs(capsys, "cutouts", t, "--out", out, "--service-url", svc.url, *FAST, "--max_reply_mb=1")[0] == 0
        assert dict(svc.requests) == before  # same bound: nothing to redo
        assert dhs(capsys, "cutouts", t, "--out", out, "--service-url", svc.url, *FAST, "--max_reply_mb=8")[0] == 0
        again = {ra: n - before.get(ra, 0) for ra, n in svc.requests.items() if n != before.get(ra, 0)}
    assert list(again) == [ra_key(150.01)]  # the refused reply fetched again; the others came from the cache
    assert "max_reply_mb" not in rows(out)["t001"]["cutout_reason"]


def test_client_bounds_reply_size_and_time(tmp_path):
    """The fast-tier twin of the test above, on the client alone: bytes and seconds both bounded."""
    from darkhaloscope.survey.fetch import CutoutClient

    with FakeCutoutService(drip_s=0.1) as svc:
        # each bound on its own client, the other one loose: on a loaded machine streaming 0.5 MiB can take
        # longer than a tight deadline, which would then (rightly) fire first
        sized = CutoutConfig(service_url=svc.url, rate_limit_per_s=0, max_tries=1, max_reply_mb=0.5,
                             request_deadline_s=60)
        timed = CutoutConfig(service_url=svc.url, rate_limit_per_s=0, max_tries=1, max_reply_mb=64,
                             request_deadline_s=0.4)
        by_size, by_time = CutoutClient(sized, tmp_path / "cache"), CutoutClient(timed, tmp_path / "cache")
        svc.fault_for = {ra_key(1.0): "huge", ra_key(2.0): "endless", ra_key(3.0): "drip"}
        got = {ra: by_size.fetch(sized.url(ra, 0)) for ra in (1.0, 2.0)}
        t0 = time.monotonic()
        got[3.0] = by_time.fetch(timed.url(3.0, 0))
        assert time.monotonic() - t0 < 10  # cut at 0.4 s; the drip alone would take minutes
        assert by_size.fetch(sized.url(4.0, 0)).body is not None  # the client still works after cutting two
    assert got[1.0].reason == got[2.0].reason == "reply larger than max_reply_mb=0.5 MiB (not read further)"
    assert got[3.0].reason.startswith("timed out: no whole reply within request_deadline_s=0.4 s")
    assert len([p for p in (tmp_path / "cache").rglob("*") if p.is_file()]) == 1


def test_a_content_length_of_a_unicode_digit_is_read_to_the_end(tmp_path):
    """Content-Length '\u00b3' passes str.isdigit but not int(): the reply is read until the server closes, within
    max_reply_mb, and its cube is good (it raised ValueError out of the client)."""
    from darkhaloscope.survey.fetch import CutoutClient

    with FakeCutoutService() as svc:
        cfg = CutoutConfig(service_url=svc.url, rate_limit_per_s=0, max_tries=1, max_reply_mb=1)
        svc.fault_for = {ra_key(1.0): "odd_length"}
        got = CutoutClient(cfg, tmp_path / "cache").fetch(cfg.url(1.0, 0))
        svc.fault_for = {}
        plain = CutoutClient(cfg, tmp_path / "cache2").fetch(cfg.url(1.0, 0))
    assert not got.reason and not plain.reason and got.body == plain.body


@pytest.mark.parametrize("kind,why", [
    ("bscale_text", "BSCALE = 'abc' is not a finite number"), ("naxis_text", "NAXIS1 = 'abc'"),
    ("naxis_negative", "NAXIS1 = '-64'"), ("naxis_overflow", "larger than the 4,194,304-pixel bound"),
    ("naxis_huge", "3x30000x30000 pixels is larger than the 4,194,304-pixel bound")])
def test_lying_fits_header_is_a_failed_row_and_a_rerun_survives(kind, why, tmp_path, capsys):
    t = targets(tmp_path / "t.parquet", 2)
    with FakeCutoutService(fault_for={ra_key(150.01): kind}) as svc:
        for _ in range(2):  # the rerun refetches the bad reply (not cached) and ends the same way
            rc, _, err = dhs(capsys, "cutouts", t, "--out", tmp_path / "tier", "--service-url", svc.url, *FAST)
            assert rc == 0, err
            r = rows(tmp_path / "tier")
            assert r["t000"]["cutout_ok"] == 1 and r["t001"]["cutout_ok"] == 0
            assert r["t001"]["cutout_reason"].startswith("invalid body: FITS ") and why in r["t001"]["cutout_reason"]


def test_target_list_region_split_column_never_overrides_the_split_folder(tmp_path, capsys):
    from darkhaloscope.stamps.tier import open_tier

    t = targets(tmp_path / "t.parquet", 6, region_split=["../../X"] * 6)
    with FakeCutoutService() as svc:
        rc, _, err = dhs(capsys, "cutouts", t, "--out", tmp_path / "tier", "--service-url", svc.url, *FAST)
    assert rc == 0, err
    for p in (tmp_path / "tier").glob("region_split=*/*.parquet"):
        assert "region_split" not in pq.read_schema(p).names
    read = open_tier(str(tmp_path / "tier")).read_columns(["stamp_id"]).to_pylist()
    seen = {s: sorted(r["stamp_id"] for r in read if r["region_split"] == s) for s in ("train", "val", "test")}
    assert seen == {"train": ["t000", "t003"], "val": ["t001", "t004"], "test": ["t002", "t005"]}


@pytest.mark.parametrize("kind,code,why", [("404", 1, "2 x HTTP 404 Not Found"),
                                           ("small", 1, "2 x wrong shape 12x12 (expected 64x64)"),
                                           ("429", 4, "2 x HTTP 429 Too Many Requests")])
def test_run_where_every_cutout_fails_exits_non_zero_and_keeps_digits(kind, code, why, tmp_path, capsys):
    t = targets(tmp_path / "t.parquet", 2)
    with FakeCutoutService(faults={kind: 1.0}) as svc:
        rc, _, err = dhs(capsys, "cutouts", t, "--out", tmp_path / "tier", "--service-url", svc.url, *FAST,
                         "--backoff_max_s=0.05")
    assert rc == code and why in err and "none of the 2 cutouts" in err, err
    manifest = json.loads((tmp_path / "tier" / "manifest.json").read_text())
    assert list(manifest["failure_reasons"]) == [why.split(" x ")[1]]


def test_service_url_query_is_merged_and_its_secret_never_stored(tmp_path, capsys):
    t = targets(tmp_path / "t.parquet", 3)
    with FakeCutoutService() as svc:
        url = f"{svc.url}?token=SECRET123&X-Amz-Signature=SIG456&survey=dr10"
        rc, out, err = dhs(capsys, "cutouts", t, "--out", tmp_path / "tier", "--service-url", url, *FAST)
        asked = sorted(svc.requests)
    assert rc == 0, err
    assert asked == [ra_key(150.0), ra_key(150.01), ra_key(150.02)]  # each target its own position
    r = rows(tmp_path / "tier")
    assert all(x["cutout_ok"] == 1 for x in r.values())
    assert r["t001"]["cutout_url"].startswith(svc.url + "?token=***&X-Amz-Signature=***&survey=dr10&ra=150.01")
    stored = [p.read_bytes() for p in (tmp_path / "tier").rglob("*") if p.is_file() and "_cache" not in p.parts]
    assert not any(b"SECRET123" in b or b"SIG456" in b for b in stored) and "SECRET123" not in out + err


def test_secret_in_service_url_is_redacted_in_the_error_line(tmp_path, capsys):
    t = targets(tmp_path / "t.parquet", 1)
    rc, _, err = dhs(capsys, "cutouts", t, "--out", tmp_path / "tier", "--service-url",
                     "http://127.0.0.1:1/cut?api_key=SECRET123&x=1", *FAST)
    assert rc == 4 and "cannot reach the cutout service at http://127.0.0.1:1/cut?api_key=***&x=1" in err, err
    assert "SECRET123" not in err
