"""`dhs train --init FILE`: the run starts from the given weights; a mismatched file exits 2 naming keys."""

import pytest
import torch

from trainhelpers import FAST
from darkhaloscope.cli import main
from darkhaloscope.models import create_model
from darkhaloscope.train.checkpoint import load_checkpoint


@pytest.mark.slow
def test_train_from_init_and_refuse_mismatch(train_tier, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["train", "--data", str(train_tier), "--out", str(first), *FAST, "--epochs=1"]) == 0
    trained = load_checkpoint(first / "last.pt")["model"]
    torch.save(trained, tmp_path / "init.pt")
    second = tmp_path / "second"
    assert main(["train", "--data", str(train_tier), "--out", str(second), *FAST, "--epochs=1", "--lr=1e-9",
                 f"--init={tmp_path / 'init.pt'}"]) == 0
    assert "init: model weights from" in capsys.readouterr().out
    after = load_checkpoint(second / "last.pt")["model"]
    # lr 1e-9: the weights are those of the init file (batch-norm running stats move; parameters barely)
    assert torch.allclose(after["head.weight"], trained["head.weight"], atol=1e-5)
    torch.save(create_model("resnet18_s2").state_dict(), tmp_path / "other.pt")
    rc = main(["train", "--data", str(train_tier), "--out", str(tmp_path / "third"), *FAST, "--epochs=1",
               f"--init={tmp_path / 'other.pt'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "keys do not match" in err and "backbone.stem" in err
    assert not (tmp_path / "third").exists()
