"""CLI of the audit package: `dhs audit DATA` (the data gate) and `dhs bench audit DATA`.

    dhs audit s3://bucket/stamps/debug_tier/ --json audit.json --markdown audit.md
    dhs audit data/demo --full --fail-on warning          # strict CI: warnings are NO-GO too
    dhs bench audit data/demo                             # cheap passes vs a naive whole-file read

Exit status: 0 GO, 3 NO-GO, 2 usage error (1 only for an internal data error outside the audit's scope).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from darkhaloscope.common.report.render import printable
from darkhaloscope.audit.config import AuditConfig
from darkhaloscope.config import run_info
from darkhaloscope.configargs import add_config_arguments, config_from_args, given_argv
from darkhaloscope.fileio import atomic_write_text
from darkhaloscope.errors import MissingInputError
from darkhaloscope.stamps.fs import add_s3_arguments, is_s3, s3_options_from_args


def audit_config(args):
    """AuditConfig: defaults < --config/--preset < --set KEY=VALUE < --KEY=VALUE (e.g. --fail-on=warning)."""
    return config_from_args(args)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="tier: folder, parquet file or s3://bucket/prefix/")
    add_config_arguments(p, AuditConfig, "audit")
    add_s3_arguments(p)


def register(subparsers, bench_subparsers) -> None:
    p = subparsers.add_parser("audit", help="check a tier before training: GO / NO-GO",
                              description="Schema, class balance, usability, split integrity, metadata leakage, "
                              "pixel shortcuts and paired controls of a tier. Exit 0 GO, 3 NO-GO, 2 usage error.")
    _add_common(p)
    p.add_argument("--json", metavar="FILE", default=None, help="write the full report as JSON")
    p.add_argument("--markdown", metavar="FILE", default=None, help="write the report as Markdown")
    p.add_argument("--full", action="store_true", help="decode every usable stamp (default: a seeded sample)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no table: the verdict line only")
    p.set_defaults(func=run_audit_command)

    b = bench_subparsers.add_parser("audit", help="time the cheap audit passes against a naive whole-file read")
    _add_common(b)
    b.add_argument("--json", metavar="FILE", default=None, help="write the figures as JSON")
    b.add_argument("--repeats", type=int, default=3, help="timings are the median of this many runs")
    b.set_defaults(func=run_bench_audit)


def run_audit_command(args) -> int:
    from darkhaloscope.audit.run import run_audit

    cfg = audit_config(args)
    if not is_s3(args.data) and not Path(args.data).exists():
        raise MissingInputError(f"DATA {args.data} does not exist; give a tier folder, a parquet file or an s3:// prefix")
    report = run_audit(args.data, cfg, s3_options_from_args(args), full=args.full,
                       progress=not args.quiet, run_info=run_info(_argv(args)))
    if args.json:
        atomic_write_text(args.json, report.to_json())
    if args.markdown:
        atomic_write_text(args.markdown, report.to_markdown(Path(args.markdown).parent))
    if args.quiet:
        print(printable(report.headline(), keep="\n"))
    else:
        report.render()
    return report.exit_code


def _argv(args) -> list[str]:
    """The audit command line, rebuilt from the parsed arguments (main(argv) does not keep argv)."""
    argv = ["audit", args.data]
    for flag in ("json", "markdown", "s3_endpoint_url", "s3_region"):
        if getattr(args, flag, None):
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return argv + ["--full"] * bool(args.full) + given_argv(args)


def _cheap_passes(args, cfg) -> tuple[float, float, object]:
    """Seconds of (open_tier + schema/balance/leakage passes: label, split, cutout_ok, metadata columns or
    statistics) and of the host-id split pass (every row's host id), neither touching a stamp."""
    from darkhaloscope.audit.registry import CHECKS, AuditContext
    from darkhaloscope.audit.run import run_audit  # noqa: F401 - registers the checks
    from darkhaloscope.audit.scan import scan_tier
    from darkhaloscope.stamps.tier import open_tier

    t0 = time.perf_counter()
    tier = open_tier(args.data, s3_options_from_args(args), threads=cfg.threads)
    scan = scan_tier(tier, leakage_max_rows=cfg.leakage_max_rows, seed=cfg.seed, threads=cfg.threads, host_ids=False)
    ctx = AuditContext(tier, cfg, scan, None)
    for name in ("schema", "balance", "leakage"):
        CHECKS[name](ctx)
    t_cheap = time.perf_counter() - t0
    t0 = time.perf_counter()
    ctx.scan = scan_tier(tier, leakage_max_rows=0, seed=cfg.seed, threads=cfg.threads)
    CHECKS["split"](ctx)
    return t_cheap, time.perf_counter() - t0, tier


def _naive_read(tier) -> tuple[float, int]:
    """Seconds to read every file whole (all columns), one after the other: what a naive check does."""
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    nbytes = 0
    for f in tier.files:
        with tier.fs.open_input_file(f.path) as fh:
            nbytes += pq.read_table(fh).nbytes
    return time.perf_counter() - t0, nbytes


def run_bench_audit(args) -> int:
    """Cheap passes vs a naive whole-file read, same tier, one run (median of --repeats); then a default audit."""
    import resource
    import statistics

    from darkhaloscope.audit.run import run_audit

    cfg = audit_config(args)
    cheap, hosts, naive = [], [], []
    for _ in range(args.repeats):  # interleaved, so both see the same page cache and machine load
        t, th, tier = _cheap_passes(args, cfg)
        cheap.append(t)
        hosts.append(th)
        t, nbytes = _naive_read(tier)
        naive.append(t)
    t_cheap, t_hosts, t_naive = statistics.median(cheap), statistics.median(hosts), statistics.median(naive)
    t0 = time.perf_counter()
    report = run_audit(args.data, cfg, s3_options_from_args(args))
    t_default = time.perf_counter() - t0
    tier_mib = round(sum(f.size_bytes for f in tier.files) / 2**20, 1)
    figures = {"files": len(tier.files), "rows": tier.num_rows, "tier_mib": tier_mib,
               "naive_read_s": round(t_naive, 3), "naive_read_arrow_mib": round(nbytes / 2**20, 1),
               "cheap_passes_s": round(t_cheap, 3), "cheap_fraction_of_naive": round(t_cheap / t_naive, 4),
               "host_id_pass_s": round(t_hosts, 3), "host_id_fraction_of_naive": round(t_hosts / t_naive, 4),
               "default_audit_s": round(t_default, 3), "rows_decoded": report.summary.get("rows_decoded"),
               "verdict": report.verdict, "repeats": args.repeats,
               "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    print(json.dumps(figures, indent=1))
    if args.json:
        atomic_write_text(args.json, json.dumps(figures, indent=1) + "\n")
    print(f"schema/balance/leakage passes {t_cheap:.3f} s = {100 * t_cheap / t_naive:.1f}% of a naive read of every "
          f"file whole ({t_naive:.2f} s, {figures['tier_mib']:.0f} MiB; goal <= 5%); host-id split pass "
          f"{t_hosts:.3f} s = {100 * t_hosts / t_naive:.1f}%")
    return 0
