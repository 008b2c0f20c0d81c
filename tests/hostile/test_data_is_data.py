"""Data strings are data: split values never become paths outside OUT, never rich markup; symlinks in a
tier are not followed; secrets in URLs are redacted; what held before (yaml.safe_load, pickle refused,
XSS escaped) still holds. Issue #14 items 2, 3, 4, 20 and the 'also' line."""

from __future__ import annotations

import functools
import io
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from hostilehelpers import dhs, files_under, flat_tier, rewrite_column
from darkhaloscope.config import run_info
from darkhaloscope.stamps.codec import decode_batch


def test_split_value_with_dots_never_leaves_out(tmp_path, capsys):
    src = flat_tier(tmp_path / "in")
    rewrite_column(src, "region_split", lambda v, rel: ["../../../X" if s == "val" else s for s in v])
    before = files_under(tmp_path)
    rc, _, err = dhs(capsys, "pack", src, tmp_path / "a" / "b" / "OUT")
    assert rc == 1 and "'../../../X' is not a plain split name" in err and "part-val-00000.parquet row" in err
    assert files_under(tmp_path) == before  # nothing written anywhere, OUT included


@pytest.mark.parametrize("value", ["[/bold]", "[red]x", "[link=file:///etc/passwd]y[/link]"])
def test_markup_in_split_value_is_printed_as_text(tmp_path, capsys, value):
    src = flat_tier(tmp_path / "in")
    rewrite_column(src, "region_split", lambda v, rel: [value if s == "val" else s for s in v])
    rc, out, err = dhs(capsys, "audit", src)
    assert rc in (0, 3) and "MarkupError" not in err
    rc, _, err = dhs(capsys, "pack", src, tmp_path / "OUT")
    assert rc == 1 and "is not a plain split name" in err  # a path-unsafe split is refused, not crashed on


def test_symlink_loop_and_escape_are_not_followed(tier, tmp_path, capsys):
    outside = flat_tier(tmp_path / "outside")
    (tier / "region_split=train" / "loop").symlink_to("..")  # a loop: 41x the rows before
    (tier / "escape").symlink_to(outside)  # a link out of the tier
    rc, out, err = dhs(capsys, "audit", tier, "--json", tmp_path / "audit.json")
    assert err.count("symlink(s) inside the tier not followed") == 1
    import json

    report = json.loads((tmp_path / "audit.json").read_text())
    assert report["summary"]["rows"] == 48 and report["summary"]["files"] == 3
    rc, _, err = dhs(capsys, "pack", tier, tmp_path / "OUT")
    assert rc == 0
    assert sum(pq.read_metadata(p).num_rows for p in (tmp_path / "OUT").rglob("*.parquet")) == 48


def test_url_credentials_are_redacted_and_refused(tmp_path, capsys):
    rc, _, err = dhs(capsys, "audit", "s3://b/tier", "--s3-endpoint-url", "http://user:hunter2@127.0.0.1:9")
    assert rc == 2 and "hunter2" not in err and "http://***@127.0.0.1:9" in err
    cmd = run_info(["audit", "x", "--s3-endpoint-url", "http://user:hunter2@host:9000"])["command"]
    assert "hunter2" not in cmd and "http://***@host:9000" in cmd


@functools.lru_cache(maxsize=None)
def _bomb(declared_small: bool) -> bytes:
    """An npz whose image_g inflates to 64 MB (a zip bomb); optionally lying about its size. Made once per
    run (deflating 64 MB of zeros is ~0.3 s; the bytes are immutable)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for b in "grz":
            a = np.zeros((4096, 4096) if b == "g" else (64, 64), np.float32)
            npy = io.BytesIO()
            np.save(npy, a)
            z.writestr(f"image_{b}.npy", npy.getvalue())
    blob = bytearray(buf.getvalue())
    if declared_small:  # patch the central directory entry of image_g: uncompressed size 16512
        cd = blob.index(b"PK\x01\x02")
        blob[cd + 24:cd + 28] = (16512).to_bytes(4, "little")
    return bytes(blob)


@pytest.mark.parametrize("lying", [False, True])
def test_zip_bomb_is_refused_before_inflating(lying):
    res = decode_batch([_bomb(lying)], on_error="mask")
    assert not res.valid[0] and "refused" in res.errors[0]


def test_zip_bomb_row_in_a_tier_is_skipped_by_pack(tier, tmp_path, capsys):
    rewrite_column(tier, "stamp_npz", lambda v, rel: [_bomb(False)] + v[1:] if "train" in rel else v)
    rc, out, err = dhs(capsys, "pack", tier, tmp_path / "OUT", "--json")
    assert rc == 0 and '"rows_written": 47' in out and "refused" in out


def test_yaml_config_cannot_run_code(tmp_path, capsys):
    cfg = tmp_path / "evil.yaml"
    marker = tmp_path / "pwned"
    cfg.write_text(f"lr: !!python/object/apply:os.system ['touch {marker}']\n")
    rc, _, err = dhs(capsys, "train", "--data", tmp_path, "--out", tmp_path / "run", "--config", cfg)
    assert rc == 2 and not marker.exists()


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_pickle_checkpoint_is_refused(tier, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "darkhaloscope-checkpoint/1", "model": _Evil()}, tmp_path / "evil.pt")
    rc, _, err = dhs(capsys, "score", "--checkpoint", tmp_path / "evil.pt", "--data", tier, "--out",
                     tmp_path / "s.parquet")
    assert rc == 1 and "evil.pt" in err and not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_script_in_ids_is_escaped_in_the_html_report(tier, checkpoint, tmp_path, capsys):
    """`<script>` stamp ids, scored, then shown by `dhs candidates`: escaped in candidates.html. (This ran
    `dhs evaluate --no-data` on synthetic scores, whose report shows no id at all: it could not fail.)"""
    rewrite_column(tier, "stamp_id", lambda v, rel: [f"<script>alert({i})</script>{x}" for i, x in enumerate(v)])
    rc, _, _ = dhs(capsys, "score", "--checkpoint", checkpoint, "--data", tier, "--out", tmp_path / "s.parquet",
                   "--quiet")
    assert rc == 0
    rc, _, _ = dhs(capsys, "candidates", tmp_path / "s.parquet", "--top", "6", "--out", tmp_path / "c")
    assert rc == 0
    html = (tmp_path / "c" / "candidates.html").read_text()
    assert "<script>alert(" not in html and html.count("&lt;script&gt;alert(") >= 6  # shown, as text


def test_zip_bomb_row_is_refused_by_audit_and_score(tier, checkpoint, tmp_path, capsys):
    rewrite_column(tier, "stamp_npz", lambda v, rel: [_bomb(False)] + v[1:] if "train" in rel else v)
    rc, out, err = dhs(capsys, "audit", tier, "--full")
    assert "refused" in out.replace("\n", " ").replace("│", "")
    rc, out, err = dhs(capsys, "score", "--checkpoint", checkpoint, "--data", tier, "--out", tmp_path / "s.parquet")
    assert rc == 0 and "(1 failed to decode" in out
