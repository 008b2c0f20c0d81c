"""`dhs audit s3://...` against a local S3 endpoint (moto on 127.0.0.1): same findings as the local tier."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest
from brokentier import mutate
from s3util import upload_folder

from darkhaloscope.audit import run_audit
from darkhaloscope.cli import main
from darkhaloscope.stamps.fs import S3Options



@pytest.mark.slow
def test_audit_s3_tier_matches_local(sim_tier, s3_bucket, tmp_path):
    endpoint, bucket = s3_bucket
    uri = upload_folder(endpoint, bucket, sim_tier, "stamps/fair")
    js = tmp_path / "s3.json"
    assert main(["audit", uri, "--s3-endpoint-url", endpoint, "--json", str(js), "-q"]) == 0
    remote = json.loads(js.read_text())
    local = run_audit(str(sim_tier)).to_dict()
    assert remote["verdict"] == local["verdict"] == "GO"

    def by_check(doc):
        return sorted((f["check"], f["severity"], f["message"]) for f in doc["findings"])
    assert by_check(remote) == by_check(local)


@pytest.mark.slow
def test_audit_s3_one_class_tier_is_no_go(sim_tier, s3_bucket, tmp_path):
    endpoint, bucket = s3_bucket
    bad = mutate(sim_tier, tmp_path / "bad", lambda t, rel: t.filter(pc.equal(t["is_control"], 0)))
    uri = upload_folder(endpoint, bucket, bad, "stamps/debug")
    r = run_audit(uri, s3=S3Options(endpoint_url=endpoint))
    assert r.verdict == "NO-GO"
    assert "split 'val' has 18 injection(s) (is_control=0) and 0 control(s)" in \
        " ".join(f.message for f in r.find("balance", "error"))
    # an empty prefix is a missing input: exit 2 like every command (docs/reliability.md)
    assert main(["audit", f"s3://{bucket}/stamps/nothing-here", "--s3-endpoint-url", endpoint, "-q"]) == 2
