"""Cost of the zip-bomb bound (issue 14 item 20) behind benchmarks/RESULTS.md (section `hostile`).

    python benchmarks/bench_inflate_bound.py --stamps 2000 --repeat 7

Inflates the three band members of `--stamps` deflate npz stamps (tests/tierfactory.fake_stamp) with
the codec's bounded `_member_bytes` (declared size checked, output capped at one band + header) and with
an unbounded `zlib.decompress`, interleaved, best of `--repeat`; prints stamps/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from darkhaloscope.stamps.codec import _member_bytes, _zip_members, encode_stamp  # noqa: E402
from tierfactory import fake_stamp  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stamps", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    members = []
    for i in range(args.stamps):
        blob = encode_stamp(fake_stamp(rng, lens=i % 2 == 0))
        m = _zip_members(blob)
        members += [(blob, m[f"image_{b}"]) for b in "grz"]

    def unbounded(blob, info):
        _method, off, csize, usize = info
        return zlib.decompress(memoryview(blob)[off:off + csize], -15, max(usize, 1))

    best = {"bounded": float("inf"), "unbounded": float("inf")}
    for _ in range(args.repeat):  # interleaved: both see the same machine load
        for name, fn in (("bounded", _member_bytes), ("unbounded", unbounded)):
            t0 = time.perf_counter()
            for blob, info in members:
                fn(blob, info)
            best[name] = min(best[name], time.perf_counter() - t0)
    rates = {k: round(args.stamps / v) for k, v in best.items()}
    print(f"stamps/s (3 members each): bounded {rates['bounded']}, unbounded {rates['unbounded']}; "
          f"bounded/unbounded speed {best['unbounded'] / best['bounded']:.3f}")


if __name__ == "__main__":
    main()
