"""`simulate(out, tier, rows, seed, cfg)`: build a tier with the engine `cfg.engine` names (numpy | torch).

    from darkhaloscope.inject.build import simulate
    simulate("data", "demo", rows=4000, seed=1, config=SimConfig(engine="torch"), workers=2)

The numpy engine (sim/, the reference) renders row by row; the torch engine (`TorchEngine`, inject/engine.py)
renders each chunk in batches on `cfg.device`. Everything else (the plan, chunks and files, the fingerprint that
`--resume` checks, sharding, the manifest) is `sim.build.simulate_tier`'s, and the engine and device are part
of the config it records. Bad input (unknown engine, `--device cuda` without a CUDA device torch can use) is
refused before anything is written. On CUDA the build runs in one process (`--workers` is ignored: forked
workers cannot share a CUDA context; the batch is the parallelism there).

Exercised by `dhs simulate --engine torch` (inject/commands.py) and tests/inject/test_tier_torch.py.
"""

from __future__ import annotations

from darkhaloscope.errors import EnvironmentFault
from darkhaloscope.sim.build import simulate_tier
from darkhaloscope.sim.simconfig import SimConfig


def make_renderer(cfg: SimConfig):
    """The batch renderer of `cfg.engine` (None: the numpy engine's row-by-row `render_row`). Validates the
    config first, so a bad engine or device is refused before torch is even imported."""
    cfg.validate()
    if cfg.engine == "numpy":
        return None
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise EnvironmentFault(f"--device cuda: torch {torch.__version__} sees no CUDA device on this machine; "
                               "use --device cpu, or run where a GPU and a CUDA build of torch are installed")
    from darkhaloscope.inject.engine import TorchEngine

    return TorchEngine(cfg.device)


def simulate(out, tier: str, rows: int, seed: int, config: SimConfig | None = None, *, workers: int = 1,
             **kwargs) -> dict:
    """`sim.build.simulate_tier` with the engine of `config` (same arguments, same manifest)."""
    cfg = config or SimConfig()
    renderer = make_renderer(cfg)
    if cfg.device == "cuda":
        workers = 1
    return simulate_tier(out, tier, rows, seed, cfg, workers=workers, renderer=renderer, **kwargs)
