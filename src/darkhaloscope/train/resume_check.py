"""The kill -9 / resume round trip, in one place: `dhs review`'s checkpoint check and tests/train/test_resume.py.

    r = resume_check(scratch_config("TIER", steps_per_epoch=12), Path("scratch"))
    r.ok, r.killed_at, r.same_losses, r.same_weights

Run 1 (in this process): the configured run, uninterrupted. Run 2 (a child process,
`python -m darkhaloscope.train.resume_check CONFIG.yaml OUT STEP`): the same run, SIGKILLed by the
operating system right after its mid-epoch last.pt of step STEP lands (through `train(on_save=...)`).
Run 3 (this process): `--resume auto` on run 2's folder. On CPU with the same thread count, run 3's
per-step losses and learning rates (steps.jsonl) and final weights must equal run 1's exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from darkhaloscope.config import load_config, save_config
from darkhaloscope.common.jsonio import read_jsonl
from darkhaloscope.train.config import TrainConfig


@dataclasses.dataclass
class ResumeCheck:
    ok: bool  # killed mid-epoch, resumed, and identical to the uninterrupted run
    killed: bool  # the child ended by SIGKILL
    killed_at: dict  # step, epoch, batches_done of the last.pt the resumed run started from
    same_losses: bool  # steps.jsonl rows (step, epoch, loss, lr) equal, step for step
    same_weights: bool  # every tensor of the final last.pt equal
    steps: int  # optimizer steps of the uninterrupted run
    why: str = ""  # what failed, in words ('' when ok)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def scratch_config(data: str, train_split: str = "train", val_split: str = "val", steps_per_epoch: int = 12,
                   batch_size: int = 4) -> TrainConfig:
    """A 2-epoch small_cnn run on real rows of DATA, checkpointed in mid-epoch: fast on one CPU core."""
    return load_config(TrainConfig, None, {
        "data": data, "train_split": train_split, "val_split": val_split, "model": "small_cnn", "device": "cpu",
        "precision": "fp32", "channels_last": False, "num_workers": 0, "batch_size": batch_size,
        "max_train_rows": batch_size * steps_per_epoch, "max_val_rows": 64, "epochs": 2,
        "checkpoint_every_steps": max(1, steps_per_epoch // 2), "log_every_steps": 1, "progress": False})


def _kill_after(step: int):
    def on_save(path: Path, at_step: int) -> None:
        if path.name == "last.pt" and at_step >= step:
            os.kill(os.getpid(), signal.SIGKILL)  # the operating system ends the run right after the save
    return on_save


def resume_check(cfg: TrainConfig, scratch: Path, *, kill_after_step: int | None = None, quiet: bool = True,
                 timeout_s: float = 600) -> ResumeCheck:
    """Uninterrupted run vs SIGKILL right after the first last.pt at or after `kill_after_step` (default: the
    first mid-epoch checkpoint) + `--resume auto`. `cfg` needs checkpoint_every_steps > 0 and fp32 on CPU."""
    from darkhaloscope.train.loop import train

    kill_at = kill_after_step or cfg.checkpoint_every_steps
    if kill_at < 1:
        raise ValueError("resume_check needs kill_after_step or checkpoint_every_steps > 0")
    cfg = dataclasses.replace(cfg, progress=False, torch_threads=cfg.torch_threads or torch.get_num_threads())
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    ref, run = scratch / "uninterrupted", scratch / "killed"
    quiet_ctx = _quiet if quiet else contextlib.nullcontext
    with quiet_ctx():
        summary = train(cfg, ref)
    save_config(cfg, scratch / "killed.yaml")
    proc = subprocess.run([sys.executable, "-m", "darkhaloscope.train.resume_check", str(scratch / "killed.yaml"),
                           str(run), str(kill_at)], capture_output=True, text=True, timeout=timeout_s,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    killed = proc.returncode == -signal.SIGKILL
    ck = torch.load(run / "last.pt", weights_only=True) if (run / "last.pt").is_file() else {}
    at = {"step": ck.get("step"), "epoch": ck.get("epoch"), "batches_done": ck.get("cursor", {}).get("batches_done")}
    result = ResumeCheck(False, killed, at, False, False, int(summary["steps"]))
    if not killed:
        result.why = f"the child run was not killed (exit {proc.returncode}): {proc.stderr[-300:]}"
        return result
    with quiet_ctx():
        train(cfg, run, resume="auto")
    result.same_losses = _losses(run) == _losses(ref)
    a = torch.load(run / "last.pt", weights_only=True)["model"]
    b = torch.load(ref / "last.pt", weights_only=True)["model"]
    result.same_weights = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
    mid_epoch = bool(at["batches_done"])
    result.ok = result.same_losses and result.same_weights and mid_epoch
    result.why = ", ".join(w for w, bad in (("same losses", not result.same_losses),
                                            ("same weights", not result.same_weights),
                                            ("a mid-epoch kill", not mid_epoch)) if bad)
    return result


def _losses(run: Path) -> list[dict]:
    """steps.jsonl's (step, epoch, loss, lr) rows (an on-the-fly run's step seconds differ from run to run)."""
    return [{k: r.get(k) for k in ("step", "epoch", "loss", "lr")} for r in read_jsonl(run / "steps.jsonl")]


@contextlib.contextmanager
def _quiet():
    """The scratch runs' own logs would drown the caller's."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _child(argv: list[str]) -> int:
    from darkhaloscope.train.loop import train

    config, out, step = argv
    cfg = load_config(TrainConfig, config, {})
    train(cfg, Path(out), on_save=_kill_after(int(step)))
    return 0  # only reached when no checkpoint at or after `step` was written


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
