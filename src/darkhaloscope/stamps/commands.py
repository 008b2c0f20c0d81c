"""Subcommands of the stamp layer: `dhs pack TIER OUT`."""

from __future__ import annotations

import json

from darkhaloscope.stamps.fs import add_s3_arguments, s3_options_from_args


def register(sub, bench_sub) -> None:
    p = sub.add_parser("pack", help="convert an npz tier into fast float16 training shards (once)",
                       description="Convert a Phase 4c npz tier (local folder or s3://) into packed float16 "
                                   "shards with the same split layout. Rows that fail to decode are skipped "
                                   "and counted; pixels beyond the float16 range are refused unless --clip.")
    p.add_argument("tier", metavar="TIER", help="npz tier: local folder, parquet file or s3://bucket/prefix")
    p.add_argument("out", metavar="OUT", help="local folder to create (must be missing or empty)")
    p.add_argument("--clip", action="store_true", help="clip |pixel| > 65504 nmgy to the float16 max (counted)")
    p.add_argument("--compression", default="none", metavar="none|zstd",
                   help="none (default, fastest reads) or zstd level 1 (smaller)")
    p.add_argument("--row-group-rows", type=int, default=1024, help="rows per output row group (default 1024)")
    p.add_argument("--workers", type=int, default=2, help="source files converted in parallel (default 2)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a table")
    add_s3_arguments(p)
    p.set_defaults(func=cmd_pack)



def cmd_pack(args) -> int:
    from darkhaloscope.common.progress import Progress
    from darkhaloscope.config import run_info
    from darkhaloscope.stamps.pack import PackOptions, pack_tier
    from darkhaloscope.stamps.tier import open_tier

    s3 = s3_options_from_args(args)
    tier = open_tier(args.tier, s3)
    opts = PackOptions(clip=args.clip, compression=args.compression, row_group_rows=args.row_group_rows,
                       workers=args.workers)
    with Progress(tier.num_rows, "pack", unit="rows", transient=True) as bar:
        manifest = pack_tier(tier, args.out, opts, advance=bar.advance, run=run_info(_pack_argv(args)))
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    _print_pack_summary(manifest, args.out)
    return 0


def _pack_argv(args) -> list[str]:
    """The pack command line as resolved (main(argv) callers leave sys.argv unrelated)."""
    argv = ["pack", args.tier, args.out, "--compression", args.compression,
            "--row-group-rows", str(args.row_group_rows), "--workers", str(args.workers)]
    return argv + (["--clip"] if args.clip else [])


def _print_pack_summary(m: dict, out: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from darkhaloscope.stamps.pack import MANIFEST_NAME

    console = Console()
    t = Table(title=f"dhs pack -> {escape(out)}", title_justify="left")
    for c in ("split", "controls", "injections"):
        t.add_column(c, justify="right" if c != "split" else "left")
    for s, c in m["rows"].items():
        t.add_row(escape(s), str(c["0"]), str(c["1"]))  # split names are data
    console.print(t)
    r = Table(title="float16 dynamic range (nanomaggies)", title_justify="left")
    for c in ("band", "max |x|", "max abs err", "max rel err", "subnormal", "underflow", "clipped"):
        r.add_column(c, justify="right")
    for b, d in m["float16"]["bands"].items():
        r.add_row(b, f"{d['max_abs_nmgy']:.3g}", f"{d['max_abs_err_nmgy']:.2g}", f"{d['max_rel_err']:.2g}",
                  f"{d['subnormal_frac']:.2%}", f"{d['underflow_frac']:.2%}", f"{d['clipped_frac']:.2%}")
    console.print(r)
    sk = m["skipped"]
    rate = m["source_rows"] / m["seconds"] if m["seconds"] else 0.0
    console.print(f"wrote {m['rows_written']} rows in {len(m['shards'])} shard(s) + {MANIFEST_NAME} "
                  f"in {m['seconds']:.1f} s ({rate:.0f} rows/s)", soft_wrap=True)
    if sk["rows"]:
        console.print(f"[yellow]skipped {sk['rows']} row(s) that failed to decode; first: {escape(sk['first'])}[/]",
                      soft_wrap=True)
    if m["float16"]["clipped_pixels"]:
        console.print(f"[yellow]clipped {m['float16']['clipped_pixels']} pixel(s) to +-65504; first: "
                      f"{escape(str(m['float16']['first_clipped']))}[/]", soft_wrap=True)
