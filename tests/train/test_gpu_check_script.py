"""benchmarks/gpu_check.sh: valid bash, and it refuses to run without CUDA unless the CPU dry run is asked for."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def test_gpu_check_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


@pytest.mark.slow  # a dhs subprocess: ~2.5 s (fast tier < 2 min, issue #25 4.13; runs in CI's full run)
@pytest.mark.skipif(shutil.which("dhs") is None, reason="the dhs entry point is not installed")
def test_gpu_check_refuses_cpu_without_the_flag(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    env = {k: v for k, v in os.environ.items() if k != "DHS_GPU_CHECK_ALLOW_CPU"}
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 1 and "DHS_GPU_CHECK_ALLOW_CPU=1" in proc.stderr
    assert not (tmp_path / "out" / "sim").exists()
