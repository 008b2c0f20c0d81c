"""The manual's table of registered models: params and forward FLOPs per 64x64 stamp, counted by torch.

    python -m darkhaloscope.models.table                          # print the table
    python -m darkhaloscope.models.table --page docs/models.md    # rewrite the table block in the manual

The table in docs/models.md is written by this module (between `<!-- models-table -->` markers), and
tests/models/test_models.py checks the numbers written there against `forward_flops` (within 5%), so a
change to a net that moves its FLOPs fails the tests until the table is regenerated.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from darkhaloscope.errors import DataError
from darkhaloscope.fileio import atomic_write_text
from darkhaloscope.models.registry import count_params, create_model, describe_models, forward_flops

BEGIN, END = "<!-- models-table -->", "<!-- /models-table -->"
HEADER = ["| model | architecture and stem | params | GFLOPs / stamp |", "|---|---|---|---|"]
ROW = re.compile(r"^\| `(\w+)` \| .* \| ([\d.]+) M \| ([\d.]+) \|$")


def model_rows() -> list[dict]:
    """[{name, description, params, gflops}] of every registered model (with the classification head)."""
    rows = []
    for name, desc in describe_models().items():
        m = create_model(name)
        rows.append({"name": name, "description": desc, "params": count_params(m), "gflops": forward_flops(m) / 1e9})
    return rows


TIMM_NOTE = ("Besides these, `--model timm:NAME` builds any timm architecture with its stem adapted to 64x64 "
             "(optional: `pip install 'darkhaloscope[cuda]'` on a CUDA machine; see below).")


def markdown_table(rows: list[dict] | None = None) -> str:
    """The registered models (params, FLOPs) and, after a blank line, the note on the timm route."""
    lines = list(HEADER)
    for r in rows if rows is not None else model_rows():
        p = r["params"] / 1e6
        lines.append(f"| `{r['name']}` | {r['description']} | {p:.3f} M | {r['gflops']:.3g} |" if p < 1 else
                     f"| `{r['name']}` | {r['description']} | {p:.2f} M | {r['gflops']:.3g} |")
    return "\n".join(lines + ["", TIMM_NOTE])


def _split(path: Path) -> tuple[str, str, str]:
    """(text before the block, the block, text after it) of a page with the table markers."""
    text = Path(path).read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise DataError(f"{path}: no {BEGIN} ... {END} block; add the markers where the models table goes")
    head, rest = text.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    return head, block, tail


def read_table(path: str | Path) -> dict[str, tuple[float, float]]:
    """{name: (params, GFLOPs)} as written in the models table of a page (docs/models.md)."""
    block = _split(Path(path))[1]
    out = {}
    for line in block.strip().splitlines():
        m = ROW.match(line.strip())
        if m:
            out[m.group(1)] = (float(m.group(2)) * 1e6, float(m.group(3)))
    return out


def write_table(path: str | Path) -> None:
    head, _, tail = _split(Path(path))
    atomic_write_text(path, f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--page", default=None,
                    help="rewrite the table block of this page (docs/models.md) instead of printing")
    args = ap.parse_args(argv)
    if args.page:
        write_table(args.page)
        print(f"wrote the models table into {args.page}")
    else:
        print(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
