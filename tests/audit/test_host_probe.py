"""The paired-host probe of `dhs audit`: plain controls against the injections' own hosts (ctrl_stamp_npz),
g band included. A tier whose controls come from redder hosts than its injections is NO-GO; a fair one passes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from darkhaloscope.audit import AuditConfig, run_audit
from darkhaloscope.cli import main


def test_fair_paired_tier_passes_the_host_probe(sim_tier):
    r = run_audit(str(sim_tier))
    found = r.find("paired_hosts", "info")
    assert found and not r.find("paired_hosts", "error"), r.to_markdown()
    d = found[0].details
    assert d["probe_auroc"] < AuditConfig().host_probe_auroc and d["hosts"] > 100
    assert d["controls"] < 120  # confuser controls (default 30%) are left out: their light is not the host's


def _tier(out: Path, name: str, host_g_r: str, seed: int) -> Path:
    assert main(["simulate", "--out", str(out), "--tier", name, "--rows", "240", "--seed", str(seed), "--pair",
                 "--workers", "1", "-q", "--supersample", "1", "--confusers", "0", "--set",
                 f"host_g_r={host_g_r}"]) == 0
    return out / name


@pytest.mark.slow
def test_controls_from_redder_hosts_than_the_injections_are_no_go(tmp_path):
    """Controls from g-r 1.6-1.9 hosts, injections (paired) from g-r 1.3-1.6 hosts, merged per split: the
    shortcut probe (r, z only) does not see it; the paired-host probe does."""
    red, blue = _tier(tmp_path, "red", "1.6,1.9", 1), _tier(tmp_path, "blue", "1.3,1.6", 2)
    merged = tmp_path / "merged"
    for split in ("train", "val", "test"):
        ctrl = pa.concat_tables([pq.read_table(p) for p in sorted((red / f"region_split={split}").glob("*.parquet"))])
        inj = pa.concat_tables([pq.read_table(p) for p in sorted((blue / f"region_split={split}").glob("*.parquet"))])
        table = pa.concat_tables([ctrl.filter(pc.equal(ctrl["is_control"], 1)),
                                  inj.filter(pc.equal(inj["is_control"], 0))])
        (merged / f"region_split={split}").mkdir(parents=True)
        pq.write_table(table, merged / f"region_split={split}" / "part-0.parquet")
    r = run_audit(str(merged))
    assert r.verdict == "NO-GO"
    err = r.find("paired_hosts", "error")
    assert err and "differ from the injections' own hosts" in err[0].message
    d = err[0].details
    assert d["probe_auroc"] > 0.9 and d["feature_auroc"]["centre_colour_g_r_mag"] > 0.9
