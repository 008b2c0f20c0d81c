"""`dhs review`: the GO/NO-GO the users asked for, answered from measurements on their data.

    rv = run_review("s3://bucket/stamps/train_tier/", run="runs/r1", tcfg=load_config(TrainConfig))
    rv.verdict, rv.blocking, rv.write("review.md")

Sections, in order: data (the audit's findings; for an on-the-fly run, `dhs train --inject`, also its rendered
batches through the same audit gate), training-code sanity (sanity.py: on rendered batches for an on-the-fly
run), throughput (throughput.py: rendering + model step for an on-the-fly run), memory and checkpointing
(resources.py: the on-the-fly cursor's kill -9 resume), and with a run its curves and probes (runcheck.py).
A section that cannot run (unreadable tier, ...) becomes a blocking check with the error's one-line message
instead of stopping the review. Exercised by `dhs review` and `dhs demo`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from darkhaloscope.errors import DHSError
from darkhaloscope.review.config import ReviewConfig
from darkhaloscope.common.report import Code, Section
from darkhaloscope.review.report import Review
from darkhaloscope.stamps.fs import S3Options
from darkhaloscope.train.config import TrainConfig

# audit check -> extra `dhs audit` flags of the command that investigates its findings
AUDIT_FLAGS: dict[str, str] = {"usability": " --full", "shortcut": " --full", "paired": " --full"}


def data_section(data: str, rcfg: ReviewConfig, s3: S3Options | None) -> tuple[Section, object]:
    """The audit's findings as checks; returns (section, AuditReport)."""
    from darkhaloscope.audit import AuditConfig, run_audit

    sec = Section("data", "Data")
    t0 = time.perf_counter()
    report = run_audit(data, AuditConfig(sample_rows=rcfg.audit_sample_rows), s3)
    for f in report.sorted_findings():
        cmd = f"dhs audit {data}{AUDIT_FLAGS.get(f.check, '')} --markdown audit.md" if f.at_least("warning") else None
        sec.add(f.check, f.severity, f.message, cmd)
    sec.data.update(audit_verdict=report.verdict, audit_counts=report.counts(), audit_summary=report.summary)
    if report.verdict == "GO":
        sec.text(f"The audit says GO: {report.counts_line()}.")
    sec.seconds = time.perf_counter() - t0
    return sec, report


def inject_section(tcfg: TrainConfig, rcfg: ReviewConfig, s3: S3Options | None) -> Section:
    """An on-the-fly run's training batches (dhs train --inject): rendered as that run renders them, through the
    audit gate `dhs train --inject` runs before its first step (shortcut, paired controls, paired hosts)."""
    from darkhaloscope.audit import AuditConfig
    from darkhaloscope.train.onthefly_audit import audit_rendered
    from darkhaloscope.train.onthefly_source import InjectSource

    sec = Section("inject", "On-the-fly training batches")
    t0 = time.perf_counter()
    source = InjectSource(tcfg, tcfg.batch_size, s3)
    report = audit_rendered(source, tcfg.inject_audit_stamps or 512, AuditConfig(sample_rows=rcfg.audit_sample_rows))
    sec.text(f"{source.describe()}. The audit gate of ", Code("dhs train --inject"), f" on {report.uri}.")
    if report.verdict == "GO":
        sec.add("on the fly: audit gate", "pass", f"GO on {report.uri} ({report.counts_line()})")
    for f in report.sorted_findings():
        sec.add(f"on the fly: {f.check}", f.severity, f.message,
                f"dhs train --data {tcfg.data} --out RUN --inject {tcfg.inject} --sim.KEY=VALUE" if f.at_least("warning")
                else None)
    sec.data.update(audit_verdict=report.verdict, audit_counts=report.counts(), audit_summary=report.summary)
    sec.seconds = time.perf_counter() - t0
    return sec


def _guarded(key: str, title: str, fn: Callable[[], Section], command: str) -> Section:
    """Run a section; a DHSError becomes one blocking check saying the section could not run."""
    t0 = time.perf_counter()
    try:
        return fn()
    except DHSError as e:
        sec = Section(key, title, seconds=time.perf_counter() - t0)
        sec.add("could not run", "error", str(e), command)
        return sec


def run_review(data: str, run: str | Path | None = None, tcfg: TrainConfig | None = None,
               rcfg: ReviewConfig | None = None, *, s3: S3Options | None = None, out: str | Path | None = None,
               info: dict | None = None, say: Callable[[str], None] = print) -> Review:
    """Measure everything and return the Review (written to `out` as .md/.json/.html when given)."""
    from darkhaloscope.review.resources import checkpoint_section, memory_section
    from darkhaloscope.review.runcheck import run_section, run_title
    from darkhaloscope.review.sanity import sanity_section
    from darkhaloscope.review.throughput import throughput_section
    from darkhaloscope.stamps.counts import class_counts
    from darkhaloscope.stamps.tier import open_tier
    from darkhaloscope.runtime.distributed import resolve_device

    tcfg = tcfg or TrainConfig()
    rcfg = rcfg or ReviewConfig()
    tcfg.data = str(data)
    device = resolve_device(rcfg.device)
    out_dir = Path(out).parent if out else Path(".")
    rv = Review(data=str(data), run=str(run) if run else None, info=info or {})

    if "data" in rcfg.sections:
        say("review: data (audit) ...")
        rv.sections.append(data_section(str(data), rcfg, s3)[0])
        if tcfg.inject:
            say("review: on-the-fly batches (audit gate) ...")
            rv.sections.append(_guarded("inject", "On-the-fly training batches", lambda: inject_section(tcfg, rcfg, s3),
                                        f"dhs train --data {data} --out RUN --inject {tcfg.inject}"))
    try:
        tier = open_tier(str(data), s3)
        counts = class_counts(tier)
    except DHSError as e:
        rv.sections.append(Section("sanity", "Training code sanity"))
        rv.sections[-1].add("could not run", "error", f"the tier cannot be read: {e}", f"dhs audit {data}")
        return _finish(rv, out)
    inspect = f"dhs audit {data} --markdown audit.md"
    steps: list[tuple[str, str, Callable[[], Section], str]] = [
        ("sanity", "Training code sanity", lambda: sanity_section(str(data), counts, tcfg, rcfg, device, s3), inspect),
        ("throughput", "Throughput and epoch time", lambda: throughput_section(tier, str(data), tcfg, rcfg, device, s3),
         f"dhs bench train --data {data} --model {tcfg.model}"),
        ("memory", "Memory", lambda: memory_section(tcfg, rcfg, device, _bench(rv)), f"dhs bench train --model {tcfg.model}"),
        ("checkpoint", "Checkpointing", lambda: checkpoint_section(str(data), tcfg, rcfg, counts, s3),
         f"dhs review --data {data} --out review.md --set sections=checkpoint"),
    ]
    if run and "run" in rcfg.sections:
        steps.append(("run", run_title(run), lambda: run_section(Path(run), str(data), tcfg.val_split, rcfg,
                                                                         device, out_dir, s3), f"ls {run}"))
    for key, title, fn, cmd in steps:
        if key not in rcfg.sections:
            continue
        say(f"review: {title.lower()} ...")
        rv.sections.append(_guarded(key, title, fn, cmd))
    return _finish(rv, out)


def _bench(rv: Review) -> dict | None:
    sec = rv.section("throughput")
    return sec.data.get("bench") if sec else None


def _finish(rv: Review, out) -> Review:
    if out:
        rv.write(out)
    return rv
