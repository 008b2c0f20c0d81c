"""`dhs review` on deliberately broken inputs (planted shortcut, a run with a one-class val split, an S3
checkpoint mirror), the review's arithmetic against hand-computed values, and its usage errors."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from reviewhelpers import brighten_injection_centres, copy_tier

from darkhaloscope.cli import main
from darkhaloscope.config import load_config
from darkhaloscope.errors import UsageError
from darkhaloscope.review.config import ReviewConfig
from darkhaloscope.review.report import fmt_duration
from darkhaloscope.review.resources import saved_activation_bytes
from darkhaloscope.review.sanity import null_auroc_sigma
from darkhaloscope.review.throughput import GPU_TARGETS, gpu_rows, load_gpu_benches


def _review(path):
    doc = json.loads(path.with_suffix(".json").read_text())
    return doc, {c["check"]: c for s in doc["sections"] for c in s["checks"]}


@pytest.mark.slow
def test_planted_central_brightness_shortcut_is_reported(demo_dir, tmp_path):
    bad = copy_tier(demo_dir / "data" / "demo", tmp_path / "shortcut", brighten_injection_centres)
    out = tmp_path / "r.md"
    rc = main(["review", "--data", str(bad), "--out", str(out), "--quick", "--set", "sections=data"])
    doc, _ = _review(out)
    shortcut = [w for w in doc["warnings"] if w["check"] == "shortcut"]
    assert shortcut, doc["warnings"]
    assert "centre_flux_r_nmgy AUROC 0.9" in shortcut[0]["message"] and shortcut[0]["command"].startswith(f"dhs audit {bad} --full")
    assert rc == 0 and doc["verdict"] == "GO"  # a warning: listed apart, never blocking
    assert "## Warnings" in out.read_text() and "shortcut" in out.read_text()


@pytest.mark.slow
def test_run_with_single_class_val_is_no_go(demo_dir, tmp_path):
    """The users' smoke test: AUROC nan at every epoch while the loss fell to 1e-4."""
    run = tmp_path / "smoke_run"
    shutil.copytree(demo_dir / "run", run)
    rows = [{"epoch": e, "step": 7 * (e + 1), "train_loss": loss, "val_loss": loss / 2, "val_auroc": None,
             "val_ap": None, "val_n": 96} for e, loss in enumerate([0.1561, 0.0037, 0.0001])]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    info = json.loads((run / "run.json").read_text())
    info["class_counts"]["val"] = {"0": 0, "1": 96}
    (run / "run.json").write_text(json.dumps(info))
    out = tmp_path / "r.md"
    rc = main(["review", "--data", str(demo_dir / "data" / "demo"), "--run", str(run), "--out", str(out),
               "--quick", "--set", "sections=run"])
    assert rc == 3
    doc, checks = _review(out)
    assert doc["verdict"] == "NO-GO" and [b["check"] for b in doc["blocking"]] == ["val AUROC defined"]
    msg = checks["val AUROC defined"]["message"]
    assert "none of the 3 validation(s)" in msg and "96 injections, 0 controls" in msg
    assert "| 2 | 21 | 0.0001 | 0.0001 | undefined |" in out.read_text()


@pytest.mark.slow
def test_checkpoint_mirror_round_trip_on_s3(demo_dir, tmp_path, s3_bucket):
    endpoint, bucket = s3_bucket
    cfg = tmp_path / "train.yaml"
    cfg.write_text((demo_dir / "run" / "config.yaml").read_text() + f"\ncheckpoint_uri: s3://{bucket}/mirror\n")
    out = tmp_path / "r.md"
    rc = main(["review", "--data", str(demo_dir / "data" / "demo"), "--config", str(cfg), "--out", str(out),
               "--quick", "--set", "sections=checkpoint", "--s3-endpoint-url", endpoint])
    doc, checks = _review(out)
    assert rc == 0, doc["blocking"]
    assert checks["checkpoint mirror"]["severity"] == "pass"
    assert "byte-identical" in checks["checkpoint mirror"]["message"]


def test_null_auroc_sigma_by_hand():
    # Mann-Whitney under H0: var(AUROC) = (n1 + n0 + 1) / (12 n1 n0); 45+45 -> sqrt(91 / 24300)
    assert null_auroc_sigma(45, 45) == pytest.approx(math.sqrt(91 / 24300)) == pytest.approx(0.061195, abs=1e-6)


def test_saved_activation_bytes_by_hand():
    # conv keeps its input (2x3x64x64 float32) and ReLU its output (2x8x64x64 float32); weights are not counted
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
    assert saved_activation_bytes(net, 2) == 2 * 3 * 64 * 64 * 4 + 2 * 8 * 64 * 64 * 4


def test_gpu_rows_estimate_and_measured(tmp_path):
    bench = {"loader": {"stamps_per_s": 1000.0}, "train": {"model": "resnet18"}}
    rcfg = ReviewConfig()
    rows = {r["target"]: r for r in gpu_rows(bench, 50_000.0, rcfg, 4.44)}
    t4 = rows["T4"]
    # 35% x 65e12 / (3 x 4.44e9) stamps/s; 2 cores x 1000/s decode; 100 MB/s / 50 kB
    assert t4["step_per_s"] == pytest.approx(0.35 * 65e12 / (3 * 4.44e9))
    assert t4["npz_decode_per_s"] == 2000.0 and t4["s3_per_s"] == pytest.approx(2000.0)
    assert t4["source"].startswith("estimate: 35% of 65 TFLOP/s")
    f = tmp_path / "a100.json"
    f.write_text(json.dumps({"device": "NVIDIA A100-SXM4-40GB", "model": "resnet18", "batch_size": 256,
                             "synthetic_samples_per_s": 4321.0}))
    rows = {r["target"]: r for r in gpu_rows(bench, 50_000.0, ReviewConfig(gpu_bench=[str(f)]), 4.44)}
    assert rows["A100"]["step_per_s"] == 4321.0 and rows["A100"]["source"].startswith("measured")
    assert rows["H100"]["source"].startswith("estimate") and set(rows) == set(GPU_TARGETS)


def test_gpu_bench_file_that_is_not_a_bench_is_refused(tmp_path):
    f = tmp_path / "x.json"
    f.write_text(json.dumps({"device": "cpu (2 threads)"}))
    with pytest.raises(UsageError, match="none of T4, A100, H100"):
        load_gpu_benches([str(f)])


def test_fmt_duration():
    assert [fmt_duration(s) for s in (42, 1020, 3.2 * 3600, 4.1 * 86400, None)] == ["42 s", "17 min", "3.2 h",
                                                                                     "4.1 d", "n/a"]


@pytest.mark.parametrize("argv, msg", [
    (["--data", "does/not/exist", "--out", "r.md"], "does not exist"),
    (["--data", ".", "--out", "r.txt"], "name a Markdown file"),
    (["--data", ".", "--out", "r.md", "--set", "no_such_key=1"], "no_such_key"),
    (["--data", ".", "--out", "r.md", "--set", "sections=data,gpu"], "choose among"),
    (["--data", ".", "--out", "r.md", "--run", "no/run"], "is not a folder"),
])
def test_usage_errors_exit_2(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["review", *argv]) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()


def test_review_config_rejects_bad_values():
    with pytest.raises(UsageError, match="checkpoint_steps"):
        load_config(ReviewConfig, None, {"checkpoint_steps": 2})


def test_unreadable_tier_is_no_go_not_a_crash(tmp_path, capsys):
    bad = tmp_path / "tier" / "region_split=train"
    bad.mkdir(parents=True)
    (bad / "part-00000.parquet").write_bytes(b"not a parquet file at all")
    out = tmp_path / "r.md"
    rc = main(["review", "--data", str(tmp_path / "tier"), "--out", str(out), "--quick", "--set", "sections=data,sanity"])
    assert rc == 3
    said = capsys.readouterr().out  # issue #25 4.11: the review.html it wrote is named
    assert f"{out.with_suffix('.html')} (open the .html in a browser)" in said and out.with_suffix(".html").is_file()
    doc, _ = _review(out)
    assert doc["verdict"] == "NO-GO" and doc["blocking"]
    assert any("part-00000.parquet" in b["message"] for b in doc["blocking"]), doc["blocking"]
    assert all(b["command"] for b in doc["blocking"])


def test_the_run_section_names_the_folder_as_a_folder():
    """Issue #25 4.11: a run folder called `run` was titled "Trained run run"."""
    from darkhaloscope.review.runcheck import run_title

    assert run_title("run") == "The trained run in folder run"


def test_the_review_times_the_batch_the_run_will_train_at(monkeypatch, tiny_tier):
    """Issue #25 4.4: on CPU the review timed batch 16 while the cpu-demo preset trains at 64 (its epoch-time
    forecast was 2.2x the run's); it times the planned batch unless bench_batch_size says otherwise."""
    import darkhaloscope.train.bench as tb
    import darkhaloscope.train.loader_bench as lb
    from darkhaloscope.review.throughput import bench_here
    from darkhaloscope.train.config import TrainConfig

    seen = []
    monkeypatch.setattr(lb, "bench_loader", lambda *a, **k: {})
    monkeypatch.setattr(tb, "bench_train", lambda **k: seen.append(k["batch_size"]) or {})
    cpu = torch.device("cpu")
    assert bench_here(str(tiny_tier), TrainConfig(batch_size=64), ReviewConfig(), cpu)["batch_size"] == 64
    assert bench_here(str(tiny_tier), TrainConfig(batch_size=64), ReviewConfig(bench_batch_size=8), cpu)["batch_size"] == 8
    assert seen == [64, 8]
