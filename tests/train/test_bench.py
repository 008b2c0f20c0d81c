"""`dhs bench train`: synthetic step rate, forward-only rate, and with --data the loader rate and the limit."""

import json

from darkhaloscope.cli import main


def test_bench_train_json_with_data(train_tier, capsys):
    rc = main(["bench", "train", "--model", "small_cnn", "--batch-size", "8", "--steps", "2", "--warmup-steps", "1",
               "--device", "cpu", "--precision", "fp32", "--data", str(train_tier), "--num-workers", "0", "--json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r["model"] == "small_cnn" and r["precision"] == "fp32" and r["params"] > 0
    for k in ("synthetic_samples_per_s", "forward_only_samples_per_s", "loader_samples_per_s",
              "pipeline_train_samples_per_s"):
        assert r[k] > 0, k
    expected = "input pipeline" if r["loader_samples_per_s"] < r["synthetic_samples_per_s"] else "model step"
    assert r["limit"] == expected and r["batches_per_epoch"] == 12


def test_bench_train_table_without_data(capsys):
    assert main(["bench", "train", "--model", "small_cnn", "--batch-size", "4", "--steps", "1", "--warmup-steps", "0",
                 "--device", "cpu", "--precision", "bf16"]) == 0
    out = capsys.readouterr().out
    assert "synthetic tensors" in out and "bf16" in out and "limited by" not in out


def test_bench_train_fp16_on_cpu_is_a_usage_error(capsys):
    assert main(["bench", "train", "--model", "small_cnn", "--device", "cpu", "--precision", "fp16"]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err
