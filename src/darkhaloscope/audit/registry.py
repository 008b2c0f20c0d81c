"""The registry of audit checks: each is a plain function `check(ctx) -> list[Finding]`, registered by name.

    @register_check("balance")
    def check_balance(ctx: AuditContext) -> list[Finding]: ...

`run_audit` runs every registered check in registration order (the order of the issue: schema, balance,
usability, split, leakage, shortcut, paired). A check that needs decoded pixels reads `ctx.pixels`
(None when the tier has no stamp column).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from darkhaloscope.audit.config import AuditConfig
from darkhaloscope.audit.pixels import PixelSample
from darkhaloscope.common.report import Finding
from darkhaloscope.audit.scan import TierScan
from darkhaloscope.stamps.tier import Tier


@dataclass
class AuditContext:
    tier: Tier
    config: AuditConfig
    scan: TierScan
    pixels: PixelSample | None  # None: no stamp column to decode


CheckFn = Callable[[AuditContext], list[Finding]]
CHECKS: dict[str, CheckFn] = {}
PIXEL_FREE: set[str] = set()  # checks that never read ctx.pixels: a selection of only these skips the pixel pass


def register_check(name: str, pixels: bool = True) -> Callable[[CheckFn], CheckFn]:
    def deco(fn: CheckFn) -> CheckFn:
        if name in CHECKS:
            raise ValueError(f"audit check {name!r} registered twice")
        CHECKS[name] = fn
        if not pixels:
            PIXEL_FREE.add(name)
        return fn
    return deco


def first_examples(items, n: int = 3) -> str:
    """'a, b, c (+4 more)' for a message."""
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(str(x) for x in items[:n]) + more
