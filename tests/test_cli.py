"""The `dhs` entry point: every subcommand listed, version, and `--key=value` config overrides everywhere."""

import pytest

from darkhaloscope import __version__
from darkhaloscope.cli import main

COMMANDS = ("pack", "simulate", "audit", "train", "score", "evaluate", "review", "demo", "bench")
BENCHES = ("loader", "simulate", "audit", "train", "evaluate", "score")


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(c in out for c in COMMANDS)
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert all(b in out for b in BENCHES)


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out


def test_key_value_is_a_config_override(tiny_tier):
    # the random-stamp tier audits GO with warnings; failing on warnings turns it NO-GO, by either spelling
    assert main(["audit", str(tiny_tier), "-q"]) == 0
    assert main(["audit", str(tiny_tier), "-q", "--fail_on=warning"]) == 3
    assert main(["audit", str(tiny_tier), "-q", "--set", "fail_on=warning"]) == 3


def _usage_error(argv, capsys) -> str:
    """Run `dhs ARGV`, expect exit 2 and exactly one `error:` line on stderr; return it."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_unknown_key_and_unknown_flag_are_usage_errors(tiny_tier, capsys):
    line = _usage_error(["audit", str(tiny_tier), "--no_such_key=1"], capsys)
    assert "unknown config key 'no_such_key' for AuditConfig" in line and "valid keys: fail_on," in line
    assert main(["audit", str(tiny_tier), "--set", "no_such_key=1"]) == 2
    assert "unknown config key 'no_such_key'" in capsys.readouterr().err
    _usage_error(["audit", str(tiny_tier), "--no-such-flag"], capsys)
    with pytest.raises(SystemExit) as e:
        main(["pack", str(tiny_tier), "out", "--rows=3"])  # pack has no config: not an override
    assert e.value.code == 2


def test_prefix_abbreviations_are_refused_with_a_suggestion(capsys):
    line = _usage_error(["train", "--out", "r", "--epoch=2"], capsys)  # not taken as --epochs
    assert "unknown config key 'epoch'" in line and "did you mean epochs?" in line
    assert "did you mean train?" in _usage_error(["trian"], capsys)


def test_a_key_the_command_spells_its_own_way_names_that_flag(capsys):
    line = _usage_error(["cutouts", "t.csv", "--out", "o", "--rate_limit_per_s=3"], capsys)
    assert "config key 'rate_limit_per_s' is set with this command's own flag --rate-limit" in line
    line = _usage_error(["catalog", "--out", "c.parquet", "--negatives", "n", "--exclude_radius_arcsec=3"], capsys)
    assert "own flag --exclude-radius" in line


@pytest.mark.parametrize("argv, says", [
    (["train", "--out", "r", "--data", "d", "--lr=nan"], "'lr': 'nan' is not a finite number"),
    (["train", "--out", "r", "--data", "d", "--weight_decay=inf"], "'weight_decay': 'inf' is not a finite number"),
    (["train", "--out", "r", "--data", "d", "--set", "seed=-1"], "seed -1 must be in 0.."),
    (["evaluate", "s.parquet", "--out", "r", "--threshold=nan"], "'threshold': 'nan' is not a finite number"),
    (["audit", "d", "--config", "no-such-preset"], "not a preset of dhs audit"),
])
def test_bad_values_are_one_error_line_before_any_work(argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and says in err[-1] and not any("Traceback" in x for x in err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, says", [
    (["simulate", "--out", "o", "--tier", "t", "--rows", "99999999999999999999", "--seed", "1"], "--rows: 9999"),
    (["simulate", "--out", "o", "--tier", "t", "--rows", "10", "--seed", "-1"], "--seed: -1 is out of range 0.."),
])
def test_out_of_range_integers_are_usage_errors(argv, says, capsys):
    assert says in _usage_error(argv, capsys)


def test_set_is_an_alias_of_key_value_in_every_command_with_settings(capsys):
    from darkhaloscope.cli import build_parser, parse_args
    from darkhaloscope.configargs import config_from_args

    parser = build_parser()
    a = parse_args(parser, ["train", "--out", "r", "--set", "epochs=1", "--batch-size", "8", "--preset", "gpu"])
    cfg = config_from_args(a)
    assert (cfg.epochs, cfg.batch_size, cfg.num_workers) == (1, 8, 8)  # the gpu preset's workers kept
    a = parse_args(parser, ["evaluate", "s.parquet", "--out", "r", "--split=val", "--set", "n_boot=50"])
    assert (config_from_args(a).split, config_from_args(a).n_boot) == ("val", 50)


def test_help_shows_every_key_with_its_default_and_unit(capsys):
    from darkhaloscope.config import config_keys
    from darkhaloscope.train.config import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for key in config_keys(TrainConfig):
        assert f"--{key} V" in out or f"--{key} [V]" in out, key
    assert "AdamW peak learning rate (reached after warmup) [default: 0.0003]" in out
    assert "pixels from the stamp centre (5.2\") [default: 20.0]" in out
    assert "presets: cpu-demo, gpu" in out
    assert out.split("--s3-anonymous]")[1].lstrip().startswith("Train a lens finder on a tier")  # not a docstring


@pytest.mark.parametrize("command", [["simulate", "--tier", "t", "--rows", "12", "--seed", "1", "-q", "--out"],
                                     ["pack", "{tier}"]])
def test_a_path_that_cannot_be_is_a_usage_error(command, tiny_tier, tmp_path, capsys):
    """A file where OUT's parent folder must be: exit 2 (it was 4, a fault of the machine)."""
    (tmp_path / "afile").write_text("x")
    argv = [a.format(tier=tiny_tier) for a in command] + [str(tmp_path / "afile" / "sub")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "give another path" in err
