"""A non-editable install carries the presets (and the grading page): the wheel holds them and an installed copy finds them from
any folder (what `pip install . && dhs demo --quick` needs). Builds a wheel: slow."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_the_presets_and_an_installed_copy_resolves_them(tmp_path):
    src = tmp_path / "src_copy"  # build from a copy: the checkout gets no build/ folder
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(src)], check=True, capture_output=True)
    (wheel,) = wheels.glob("darkhaloscope-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n for n in names if n.startswith("darkhaloscope/presets/"))
    assert "darkhaloscope/presets/train/cpu-demo.yaml" in shipped and "darkhaloscope/presets/train/gpu.yaml" in shipped
    for page in ("page.html", "page.js", "page.css"):  # `dhs grade serve` reads its page from the package
        assert f"darkhaloscope/grade/static/{page}" in names, page
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)  # a wheel is installed by unpacking it
    probe = ("import darkhaloscope.configargs as c; from darkhaloscope.train.config import TrainConfig; "
             "from darkhaloscope.config import load_config; "
             "print(c.PRESET_DIR, load_config(TrainConfig, c.config_source('train', 'cpu-demo')).model)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(target),
                         "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True).stdout
    assert out.startswith(str(target)) and out.split()[-1] == "polar_fourier"
