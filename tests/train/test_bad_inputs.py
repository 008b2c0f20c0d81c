"""`dhs train` on bad input: one-line errors with the right exit status, and the run folder left alone."""

import pytest
import torch

from darkhaloscope.cli import main
from trainhelpers import FAST

SMALL = [*FAST, "--epochs=1", "--max_train_rows=16", "--max_val_rows=16"]


def test_no_data_is_a_usage_error(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), *SMALL]) == 2
    assert "pass --data TIER" in capsys.readouterr().err


def test_missing_tier_is_a_data_error(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_resume_from_a_missing_file(train_tier, tmp_path, capsys):
    rc = main(["train", "--data", str(train_tier), "--out", str(tmp_path / "r"), *SMALL, "--resume", "x/last.pt"])
    assert rc == 2 and "--resume x/last.pt: no such checkpoint file" in capsys.readouterr().err


def test_resume_from_a_corrupt_last_names_it_and_the_way_out(train_tier, tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "last.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    assert main(["train", "--data", str(train_tier), "--out", str(run), *SMALL, "--resume", "auto"]) == 1
    err = capsys.readouterr().err
    assert "last.pt is not a readable darkhaloscope checkpoint" in err and "best.pt" in err


def test_resume_with_another_model_is_refused_and_changes_nothing(train_tier, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--data", str(train_tier), "--out", str(run), *SMALL]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    rc = main(["train", "--data", str(train_tier), "--out", str(run), *SMALL, "--model=resnet18_s2", "--resume", "auto"])
    assert rc == 2 and "holds model 'small_cnn' but the config asks for 'resnet18_s2'" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


@pytest.mark.parametrize("bad", ["--batch_size=0", "--warmup_frac=1.5", "--on_error=ignore", "--preprocess.norm=zscore"])
def test_bad_values_exit_2_before_reading(tmp_path, bad, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), *SMALL, bad]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_load_for_inference_of_a_foreign_file(tmp_path):
    from darkhaloscope.errors import DataError
    from darkhaloscope.runtime.loading import load_for_inference

    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not written by this version of `dhs train`"):
        load_for_inference(tmp_path / "other.pt")
