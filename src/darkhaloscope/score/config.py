"""Settings of `dhs score`: the defaults are below (override with `--key=value`, e.g.
`dhs score --checkpoint CKPT --data DATA --out s.parquet --batch_size=256`)."""

from __future__ import annotations

from dataclasses import dataclass

from darkhaloscope.errors import UsageError


@dataclass
class ScoreConfig:
    batch_size: int = 512  # stamps per forward pass
    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:1
    amp: bool = True  # bfloat16/float16 autocast on GPU (ignored on CPU)
    decode_threads: int = 2  # zlib threads decoding npz stamps
    image_stats: bool = True  # write the img_* columns used by the image-statistics baseline
    cutout_ok_only: bool = False  # drop rows with cutout_ok = 0 (default: score them, flag kept as a column)

    def validate(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {self.batch_size}")
