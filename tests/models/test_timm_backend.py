"""The optional timm backend (`--model timm:NAME`), with a fake timm module injected into sys.modules: the
stem adapter per family, the output contract, the one-line refusals, and timm never imported otherwise."""

import importlib.abc
import json
import sys

import pytest
import torch

import faketimm
from darkhaloscope.cli import main
from darkhaloscope.errors import UsageError
from darkhaloscope.models import create_model, list_models, load_init
from darkhaloscope.models.timm_backend import TimmClassifier

X = torch.randn(2, 3, 64, 64)


@pytest.mark.parametrize("name, before, after, stem", [
    ("fake_efficientnet", 32, 64, "conv_stem stride 1"),
    ("fake_resnet", 16, 64, "conv1 stride 1, maxpool removed"),
    ("fake_convnext", 16, 32, "patchify stem 4x4 stride 4 -> stride 2, padding 1"),
])
def test_timm_name_built_by_timm_with_its_stem_adapted(monkeypatch, name, before, after, stem):
    calls = faketimm.install(monkeypatch)
    assert faketimm.FAMILIES[name](3, 1).forward_stem(X).shape[-1] == before  # timm's stem: 2x or 4x down
    torch.manual_seed(0)
    model = create_model(f"timm:{name}")
    assert calls == [{"name": name, "pretrained": False, "in_chans": 3, "num_classes": 1}]
    assert isinstance(model, TimmClassifier) and model.stem == stem
    assert model.backbone.forward_stem(X).shape[-1] == after  # no 4x early downsampling
    model = model.to(memory_format=torch.channels_last)
    y = model(X.contiguous(memory_format=torch.channels_last))
    assert y.shape == (2,) and torch.isfinite(y).all()
    torch.nn.functional.binary_cross_entropy_with_logits(y, torch.tensor([0.0, 1.0])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(X).shape == (2,)
    with pytest.raises(UsageError, match="takes no metadata"):
        model(X, torch.zeros(2, 1))


def test_refusals_of_timm_names(monkeypatch, capsys):
    faketimm.install(monkeypatch)
    with pytest.raises(UsageError, match=r"model timm:fake_vit does not run on 64x64 stamps \(AssertionError: "
                                         r"Input height \(64\) doesn't match model \(224\)\.\); choose a convolutional"):
        create_model("timm:fake_vit")
    assert "warning: timm:fake_vit: no known stem to adapt" in capsys.readouterr().err
    with pytest.raises(UsageError, match=r"timm:nope: Unknown model \(nope\); timm\.list_models\(\) names"):
        create_model("timm:nope")
    for bad in ("timm:", "timm:hf-hub:org/net"):
        with pytest.raises(UsageError, match="name one timm architecture"):
            create_model(bad)
    with pytest.raises(UsageError, match="timm models take no meta_columns"):
        create_model("timm:fake_resnet", meta_columns=["psfdepth_r"])
    with pytest.raises(UsageError, match=r"unknown model 'vgg'.*small_cnn, or timm:NAME for a timm architecture"):
        create_model("vgg")


class _RaisingFinder(importlib.abc.MetaPathFinder):
    """`import timm` fails as it does beside the CPU torch build (torchvision's compiled ops do not load)."""

    def find_spec(self, name, path=None, target=None):
        if name == "timm":
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


@pytest.mark.parametrize("broken", ["missing", "torchvision"])
def test_without_timm_one_error_line_exit_2(monkeypatch, capsys, broken):
    if broken == "missing":
        monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
        why = "(ModuleNotFoundError: import of timm halted; None in sys.modules)"
    else:
        monkeypatch.delitem(sys.modules, "timm", raising=False)
        monkeypatch.setattr(sys, "meta_path", [_RaisingFinder(), *sys.meta_path])
        why = "(RuntimeError: operator torchvision::nms does not exist)"
    assert main(["bench", "train", "--model", "timm:efficientnetv2_rw_s", "--steps", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == (
        f"error: timm models need timm, which does not import here {why}; on a CUDA machine install it with "
        f"pip install 'darkhaloscope[cuda]', or use a built-in model: {', '.join(list_models())}")


class _Recorder(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.asked = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("timm", "torchvision"):
            self.asked.append(name)
        return None


def test_builtin_models_and_help_never_import_timm(monkeypatch, capsys):
    rec = _Recorder()
    monkeypatch.delitem(sys.modules, "timm", raising=False)
    monkeypatch.setattr(sys, "meta_path", [rec, *sys.meta_path])
    for name in list_models():
        create_model(name)
    with pytest.raises(SystemExit):
        main(["--help"])
    with pytest.raises(SystemExit):
        main(["bench", "train", "--help"])
    assert "timm:NAME" in capsys.readouterr().out
    assert rec.asked == []


def test_bench_train_and_init_take_timm_names(monkeypatch, capsys, tmp_path):
    faketimm.install(monkeypatch)
    assert main(["bench", "train", "--model", "timm:fake_resnet", "--batch-size", "2", "--steps", "1",
                 "--warmup-steps", "0", "--device", "cpu", "--precision", "fp32", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["model"] == "timm:fake_resnet" and r["synthetic_samples_per_s"] > 0
    # --init with timm's own state dict (no `backbone.` prefix): loaded into the wrapped net
    torch.manual_seed(1)
    src = create_model("timm:fake_resnet")
    torch.save(src.backbone.state_dict(), tmp_path / "timm_sd.pt")
    dst = create_model("timm:fake_resnet")
    assert load_init(dst, tmp_path / "timm_sd.pt") == "backbone"
    assert torch.equal(dst.backbone.conv1.weight, src.backbone.conv1.weight)
