"""One way to print numbers in every report and terminal line: counts with thousands separators (99,990,
never 9.999e+04), rates with 4 significant digits, durations in s / min / h / d, and a word for 'no value'.
Exercise: any report (`dhs evaluate`, `dhs review`, `dhs audit`)."""

from __future__ import annotations

import math


def fmt_num(x, digits: int = 4, none: str = "undefined") -> str:
    """Integers (and floats >= 1000) with thousands separators; other floats with `digits` significant
    digits in plain notation down to 1e-4 (scientific below); None / NaN -> `none`; +-inf -> 'inf'."""
    if x is None:
        return none
    if hasattr(x, "item"):
        x = x.item()
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    x = float(x)
    if math.isnan(x):
        return none
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x == 0:
        return "0"
    if abs(x) < 1e-4:
        return f"{x:.{max(digits - 1, 0)}e}"
    s = f"{x:.{digits}g}"
    return f"{float(s):f}".rstrip("0").rstrip(".") if "e" in s else s


def fmt_rate(x, none: str = "undefined") -> str:
    """A fraction / rate such as TPR, FPR, AUROC: 4 significant digits (1e-3 stays 0.001)."""
    return fmt_num(x, 4, none)


def fmt_duration(seconds: float | None) -> str:
    """'42 s', '17 min', '3.2 h', '4.1 d'; under a second '0.35 s' (never a bare '0 s')."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds < 1:
        return f"{seconds:.2g} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
