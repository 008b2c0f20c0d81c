"""Helpers shared by the training tests."""

from __future__ import annotations

from darkhaloscope.common.jsonio import read_jsonl  # noqa: F401 - the one jsonl reader, for the tests

# small_cnn on CPU, no loader workers, per-step loss logging: each run takes a second or two
FAST = ["--model=small_cnn", "--device=cpu", "--precision=fp32", "--channels_last=false", "--num_workers=0",
        "--batch_size=16", "--lr=3e-3", "--log_every_steps=1", "--progress=false", "--val_batch_size=64"]

