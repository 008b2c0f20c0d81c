"""`dhs bench train`: synthetic step rate, forward-only rate, and with --data the loader rate and the limit."""

import json

import pytest

from darkhaloscope.cli import main
from darkhaloscope.models import list_models
from darkhaloscope.train import bench
from modelparams import every_model


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


@pytest.mark.slow  # (~10 s: the simulator and its lens model are loaded)
def test_bench_train_inject_splits_the_step_into_render_and_model(capsys):
    assert main(["bench", "train", "--model", "small_cnn", "--batch-size", "8", "--steps", "2", "--warmup-steps", "0",
                 "--device", "cpu", "--precision", "fp32", "--inject", "synthetic", "--sim.confusers=0.5",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["inject"] == "synthetic" and r["sim"] == {"confusers": "0.5"} and r["rendered_rows_per_batch"] == 6
    assert r["render_ms_per_step"] > 0 and r["model_ms_per_step"] > 0 and 0 < r["render_frac_wall"] < 1
    assert "loader_samples_per_s" not in r


def test_bench_train_fp16_on_cpu_is_a_usage_error(capsys):
    assert main(["bench", "train", "--model", "small_cnn", "--device", "cpu", "--precision", "fp16"]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "efficientnet_b0" else n
                                  for n in every_model()])  # efficientnet_b0: ~2.5 s, in CI's full run
def test_bench_train_covers_every_registered_model(name, capsys):
    assert main(["bench", "train", "--model", name, "--batch-size", "2", "--steps", "1", "--warmup-steps", "0",
                 "--device", "cpu", "--precision", "bf16", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["model"] == name and r["synthetic_samples_per_s"] > 0 and r["forward_only_samples_per_s"] > 0


def test_bench_train_all_and_unknown_model(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "bench_train", lambda **kw: seen.append(kw["model"]) or {"model": kw["model"]})
    assert main(["bench", "train", "--model", "all", "--json"]) == 0
    assert seen == list_models() and [r["model"] for r in json.loads(capsys.readouterr().out)] == seen
    monkeypatch.undo()
    assert main(["bench", "train", "--model", "resnet101", "--steps", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet101'" in err and "efficientnetv2_s" in err and "convnext_nano" in err


def test_bench_train_old_sim_spelling_is_a_usage_error_naming_the_new_one(capsys):
    assert main(["bench", "train", "--model", "small_cnn", "--inject", "synthetic", "--sim", "confusers=0.5"]) == 2
    assert "--sim.confusers=0.5" in capsys.readouterr().err


def test_bench_train_takes_sim_keys_as_dhs_train_does():
    from darkhaloscope.cli import build_parser
    from darkhaloscope.configargs import given_overrides

    args = build_parser().parse_args(["bench", "train", "--inject", "synthetic", "--sim.confusers=0.5",
                                      "--sim.theta_e_arcsec=1,2"])
    assert given_overrides(args) == {"sim.confusers": "0.5", "sim.theta_e_arcsec": "1,2"}
