"""`--init FILE`: whole-model, backbone-only and checkpoint state dicts load; mismatches name the keys."""

import pytest
import torch

from darkhaloscope.errors import DataError, UsageError
from darkhaloscope.models import create_model, load_init


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_whole_model_backbone_only_and_checkpoint(tmp_path):
    torch.manual_seed(1)
    src = create_model("small_cnn")
    torch.save(src.state_dict(), tmp_path / "full.pt")
    torch.save(src.backbone.state_dict(), tmp_path / "backbone.pt")
    torch.save({"format": "x", "model": src.state_dict(), "step": 3}, tmp_path / "ckpt.pt")
    for name, scope in (("full.pt", "model"), ("ckpt.pt", "model")):
        torch.manual_seed(2)
        dst = create_model("small_cnn")
        assert not _same(src, dst)
        assert load_init(dst, tmp_path / name) == scope
        assert _same(src, dst)
    torch.manual_seed(2)
    dst = create_model("small_cnn")
    head_before = dst.head.weight.clone()
    assert load_init(dst, tmp_path / "backbone.pt") == "backbone"
    assert _same(src.backbone, dst.backbone) and torch.equal(dst.head.weight, head_before)


def test_mismatched_keys_are_named(tmp_path):
    torch.save(create_model("resnet18_s2").state_dict(), tmp_path / "r18.pt")
    with pytest.raises(UsageError, match=r"--init .*r18.pt: keys do not match.*missing: backbone\.features.*"
                                         r"unexpected: backbone\.stem.*\(\+\d+ more\).*same --model"):
        load_init(create_model("small_cnn"), tmp_path / "r18.pt")
    wide = create_model("small_cnn", width=8).state_dict()
    torch.save(wide, tmp_path / "narrow.pt")
    with pytest.raises(UsageError, match=r"of another shape \(file vs model\): backbone\.features\.0\.0\.weight "
                                         r"\(8, 3, 3, 3\) vs \(16, 3, 3, 3\)"):
        load_init(create_model("small_cnn"), tmp_path / "narrow.pt")


def test_missing_or_foreign_file(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_init(create_model("small_cnn"), tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="junk.pt: not a readable state dict"):
        load_init(create_model("small_cnn"), tmp_path / "junk.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(DataError, match="expected a dict of parameter name -> tensor, got list"):
        load_init(create_model("small_cnn"), tmp_path / "list.pt")
