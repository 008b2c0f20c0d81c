"""`dhs simulate` refuses impossible input with one clear line, before any file is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main


def _run(tmp_path, *extra, rows="12"):
    return main(["simulate", "--out", str(tmp_path / "out"), "--tier", "t", "--rows", rows, "--seed", "1",
                 "-q", "--workers", "1", "--supersample", "1", *extra])


@pytest.mark.parametrize("extra, code, words", [
    (["--set", "theta_e_arcsec=-1,2"], 2, "theta_e_arcsec"),
    (["--grid", "theta_e=-0.5,1.0"], 2, "Einstein radius"),
    (["--grid", "theta_e="], 2, "empty list"),
    (["--grid", "bogus=1,2"], 2, "unknown parameter 'bogus'"),
    (["--grid", "theta_e=1,x"], 2, "must be numbers"),
    (["--bands", "g,r,i"], 2, "unknown band 'i'"),
    (["--controls", "0"], 2, "strictly between 0 and 1"),
    (["--controls", "1"], 2, "strictly between 0 and 1"),
    (["--shard", "3/3"], 2, "0 <= K < N"),
    (["--shard", "a/b"], 2, "K/N"),
    (["--arc-snr-dist", "gauss:1:2"], 2, "loguniform"),
    (["--arc-snr-dist", "loguniform:5:2"], 2, "0 < LO < HI"),
    (["--arc-snr-dist", "uniform:1:inf"], 2, "both finite"),  # (an OverflowError traceback before)
    (["--grid", "src_reff=1e-320"], 2, "[0.01, 5] arcsec"),  # (a ZeroDivisionError)
    (["--grid", "src_dmag=-1e308"], 2, "[-20, 25] mag"),  # (NaN stamps, exit 0)
    (["--grid", "src_mag_r=1,-1e308"], 2, "[10, 35] mag"),
    (["--splits", "train=0.5,holdout=0.5"], 2, "unknown split"),
    (["--set", "no_such_key=1"], 2, "unknown config key"),
    (["--hosts", "/nonexistent/hosts"], 2, "no such file or folder"),
    (["--preview", "grid.jpg"], 2, ".png"),
    (["--confusers", "1"], 2, "[0, 1)"),
    (["--confusers", "-0.1"], 2, "[0, 1)"),
    (["--set", "confuser_kinds=ring,halo"], 2, "unknown kind(s) 'halo'"),
    (["--set", "confuser_kinds=ring,spiral:0"], 2, "whole number from 1"),
    (["--grid", "src_dmag=1", "--arc-snr-dist", "loguniform:2:50"], 2, "use one of them"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, code, words):
    assert _run(tmp_path, *extra) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and words in err, err
    assert not (tmp_path / "out").exists()


def test_too_few_rows_for_both_classes_in_every_split(tmp_path, capsys):
    assert _run(tmp_path, rows="5") == 2
    assert "at least 6 rows" in capsys.readouterr().err


def _host_folder(tmp_path, n_good: int, **bad) -> str:
    """A folder of n_good noisy DR10-layout cutouts plus `name=array_or_bytes` bad files."""
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    rng = np.random.default_rng(0)
    for k in range(n_good):
        np.savez(hosts / f"h{k}.npz", cutout=rng.normal(0, 0.003, (101, 101, 3)).astype(np.float32))
    for name, content in bad.items():
        if isinstance(content, bytes):
            (hosts / f"{name}.npz").write_bytes(content)
        else:
            np.savez(hosts / f"{name}.npz", cutout=content)
    return str(hosts)


@pytest.mark.parametrize("name, content, code, words", [
    ("h3", b"this is not an npz file", 1, "h3.npz"),
    ("blank", np.zeros((101, 101, 3), np.float32), 1, "host blank has no sky noise"),
    ("nanhost", np.where(np.arange(3) == 1, np.nan, 0.003 * np.ones((101, 101, 3))).astype(np.float32), 1,
     "nanhost.npz"),
])
def test_bad_host_file_is_named_and_nothing_written(tmp_path, capsys, name, content, code, words):
    assert _run(tmp_path, "--hosts", _host_folder(tmp_path, 3, **{name: content})) == code
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err, err
    assert not (tmp_path / "out").exists()


def test_too_few_real_hosts_for_the_splits(tmp_path, capsys):
    assert _run(tmp_path, "--hosts", _host_folder(tmp_path, 2)) == 2
    assert "cannot fill 3 splits" in capsys.readouterr().err


def test_output_must_be_a_writable_local_folder(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc = main(["simulate", "--out", str(blocker), "--tier", "t", "--rows", "12", "--seed", "1", "-q"])
    assert rc == 2 and "not a writable folder" in capsys.readouterr().err
    rc = main(["simulate", "--out", "s3://bucket/tiers", "--tier", "t", "--rows", "12", "--seed", "1", "-q"])
    assert rc == 2 and "local or shared filesystem" in capsys.readouterr().err


def test_a_host_tier_with_text_is_control_is_refused_naming_the_file(tmp_path, capsys):
    from tierfactory import make_tier

    src = make_tier(tmp_path / "text_labels", rows_per_split=6, files_per_split=1)
    for f in src.rglob("*.parquet"):
        t = pq.read_table(f)
        i = t.column_names.index("is_control")
        pq.write_table(t.set_column(i, "is_control", t["is_control"].cast(pa.string())), f)
    assert _run(tmp_path, "--hosts", str(src)) == 3  # (ArrowNotImplementedError before)
    err = capsys.readouterr().err
    assert err.startswith("error: --hosts") and "part-" in err and "text column" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tier", ["e\x1b[31mred", "a b", "x\u202eyz", "t\n", "x" * 101])
def test_a_tier_name_is_a_plain_folder_name(tmp_path, capsys, tier):
    rc = main(["simulate", "--out", str(tmp_path / "out"), "--tier", tier, "--rows", "12", "--seed", "1", "-q"])
    assert rc == 2 and "plain folder name" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_hosts_that_hold_or_are_the_tier_being_built_are_refused(tmp_path, capsys):
    """A sharded build reading its own folder took the other shard's rows as hosts (hosts in two splits)."""
    (tmp_path / "out").mkdir()
    for hosts in (tmp_path / "out", tmp_path / "out" / "t", tmp_path / "out" / "t" / "region_split=train"):
        assert _run(tmp_path, "--hosts", str(hosts)) == 2
        assert "would read what it writes" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []


def test_tier_without_controls_cannot_give_hosts(tmp_path, capsys):
    from tierfactory import make_tier  # tests/ is on sys.path (conftest)

    src = make_tier(tmp_path / "only_injections", rows_per_split=6, files_per_split=1, control_frac=0)
    assert _run(tmp_path, "--hosts", str(src)) == 1
    assert "no control rows" in capsys.readouterr().err


def test_host_folder_is_listed_as_score_lists_cutouts(tmp_path, capsys):
    """`--hosts FOLDER` reads subfolders and skips symlinks (a link out of the folder is not read), as `dhs score`
    and tiers do; the hosts are named by file."""
    from darkhaloscope.sim.hosts import load_real_hosts

    hosts = Path(_host_folder(tmp_path, 3))
    (hosts / "more").mkdir()
    (hosts / "h1.npz").rename(hosts / "more" / "h1.npz")
    outside = tmp_path / "outside.npz"
    (hosts / "h0.npz").rename(outside)
    (hosts / "link.npz").symlink_to(outside)
    real = load_real_hosts(str(hosts))
    assert sorted(real.ids) == ["h1", "h2"]
    assert "1 symlink(s)" in capsys.readouterr().err
