"""Jinja2 filters of the web monitor: times, ages and sizes shown the same way on every page."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def when(ts: float | None) -> str:
    """UTC time of a UNIX timestamp, or a dash."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def ago(ts: float | None) -> str:
    if not ts:
        return "never"
    s = max(time.time() - ts, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{int(s // size)} {unit} ago"
    return f"{int(s)} s ago"


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


FILTERS: dict[str, Callable[[Any], str]] = {"when": when, "ago": ago, "size": size, "pct": pct}
