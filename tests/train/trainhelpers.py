"""Helpers shared by the training tests."""

from __future__ import annotations

import json
from pathlib import Path

# small_cnn on CPU, no loader workers, per-step loss logging: each run takes a second or two
FAST = ["--model=small_cnn", "--device=cpu", "--precision=fp32", "--channels_last=false", "--num_workers=0",
        "--batch_size=16", "--lr=3e-3", "--log_every_steps=1", "--progress=false", "--val_batch_size=64"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]
