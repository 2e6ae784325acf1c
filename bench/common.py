"""Helpers shared by the benchmark suites: tables, percentiles, process memory."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path


def rss_mib(pid: int) -> float:
    """Resident set size of a process, MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pss_mib(pid: int) -> float:
    """Proportional set size (shared pages divided among their users), MiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss for pid {pid}")


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(title: str, rows: list[tuple[str, str, str]]) -> str:
    """rows: (measure, value, note) -> a fixed-width table."""
    head = ("measure", "value", "target / note")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [f"\n{title}", line,
           " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    out += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out.append(line)
    return "\n".join(out)
