"""DELEGATE_RESOURCE_THRESHOLD: refuse new work while this container's CPU or memory is above it.

Inside a container the figures are the container's own, from its cgroup: memory use (less the page
cache the kernel can drop) against its memory limit, and CPU time used against its CPU quota (or the
machine's CPUs when it has none). cgroup v2 first, v1 as the fallback, per resource; the host's
figures (psutil) only where no cgroup can be read, i.e. outside a container. So a busy neighbour on a
shared host never makes this delegate refuse work; only its own load does.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

_UNLIMITED = 1 << 60
_MIN_WINDOW_S = 0.5  # what "no limit" looks like in cgroup v1 files (about 2**63, page-rounded)


@dataclass(frozen=True)
class Cgroup:
    """Where this process's cgroup files are: `root` is the cgroup mount (/sys/fs/cgroup)."""

    root: Path
    v2: Path | None  # the process's v2 directory, if any
    v1: dict[str, Path]  # controller -> the process's v1 directory

    @classmethod
    def find(cls, root: Path = Path("/sys/fs/cgroup"),
             proc_cgroup: Path = Path("/proc/self/cgroup")) -> Cgroup | None:
        try:
            lines = proc_cgroup.read_text().splitlines()
        except OSError:
            return None
        v2: Path | None = None
        v1: dict[str, Path] = {}
        for line in lines:
            _, controllers, path = ([*line.split(":", 2), "", ""])[:3]
            rel = path.lstrip("/")
            if controllers == "":
                for base in (root, root / "unified"):
                    v2 = v2 or _existing(base / rel, base)
            else:
                for name in controllers.split(","):
                    found = _existing(root / controllers / rel, root / controllers)
                    if found is None:
                        found = _existing(root / name / rel, root / name)
                    if found is not None:
                        v1[name] = found
        if v2 is None and not v1:
            return None
        return cls(root, v2, v1)

    def memory_percent(self) -> float | None:
        if self.v2 is not None:
            limit, used = _read_int(self.v2 / "memory.max"), _read_int(self.v2 / "memory.current")
            if used is not None:
                cache = _stat(self.v2 / "memory.stat", "inactive_file")
                return _percent(used - cache, limit or psutil.virtual_memory().total)
        mem = self.v1.get("memory")
        if mem is not None:
            limit = _read_int(mem / "memory.limit_in_bytes")
            used = _read_int(mem / "memory.usage_in_bytes")
            if used is not None:
                cache = _stat(mem / "memory.stat", "total_inactive_file")
                if limit is None or limit >= _UNLIMITED:
                    limit = psutil.virtual_memory().total
                return _percent(used - cache, limit)
        return None

    def cpu(self) -> tuple[float, float] | None:
        """(CPU seconds used so far, CPUs allowed), or None."""
        if self.v2 is not None:
            used_us = _stat(self.v2 / "cpu.stat", "usage_usec", default=-1)
            if used_us >= 0:
                quota = [*(_read_text(self.v2 / "cpu.max") or "max").split(), "100000"]
                cpus = _cpus(quota[0], quota[1])
                return used_us / 1e6, cpus
        acct = self.v1.get("cpuacct")
        used_ns = _read_int(acct / "cpuacct.usage") if acct is not None else None
        if used_ns is not None:
            cpu = self.v1.get("cpu")
            quota_us = _read_int(cpu / "cpu.cfs_quota_us") if cpu is not None else None
            period = _read_int(cpu / "cpu.cfs_period_us") if cpu is not None else None
            return used_ns / 1e9, _cpus(str(quota_us or -1), str(period or 100000))
        return None


class ResourceGuard:
    def __init__(self, threshold_percent: float, sample_every_s: float = 1.0, *,
                 cgroup_root: Path = Path("/sys/fs/cgroup"),
                 proc_cgroup: Path = Path("/proc/self/cgroup")) -> None:
        self.threshold = threshold_percent
        self._every = sample_every_s
        self._at = 0.0
        self._verdict: str | None = None
        self.cgroup = Cgroup.find(cgroup_root, proc_cgroup)
        self._cpu_mark: tuple[float, float] | None = None  # (monotonic, CPU seconds)
        self._cpu = 0.0
        self._sample_cpu()
        psutil.cpu_percent(None)  # prime the host counter: its first call always says 0.0

    def _sample_cpu(self) -> float | None:
        """CPU % since the last mark, over at least `_MIN_WINDOW_S` (a shorter window is noise:
        the last figure stands until then). 0 to 100: 100 is all the CPU the container may use."""
        figures = self.cgroup.cpu() if self.cgroup is not None else None
        if figures is None:
            return None
        now, (used, cpus) = time.monotonic(), figures
        mark = self._cpu_mark
        if mark is None or now - mark[0] >= _MIN_WINDOW_S:
            self._cpu_mark = (now, used)
            if mark is not None and now > mark[0]:
                self._cpu = min(100.0 * (used - mark[1]) / (now - mark[0]) / cpus, 100.0)
        return self._cpu

    def sample(self) -> tuple[float, float]:
        """(CPU %, memory %) of the container, or of the host outside a container."""
        cpu = self._sample_cpu()
        mem = self.cgroup.memory_percent() if self.cgroup is not None else None
        if cpu is None:
            cpu = psutil.cpu_percent(None)
        if mem is None:
            mem = psutil.virtual_memory().percent
        return cpu, mem

    def over(self) -> str | None:
        """A reason while above the threshold, else None. Samples at most once per interval."""
        now = time.monotonic()
        if now - self._at >= self._every:
            self._at = now
            cpu, mem = self.sample()
            where = "container" if self.cgroup is not None else "host"
            if cpu > self.threshold:
                self._verdict = f"{where} CPU at {cpu:.0f}% > {self.threshold:.0f}%"
            elif mem > self.threshold:
                self._verdict = f"{where} memory at {mem:.0f}% > {self.threshold:.0f}%"
            else:
                self._verdict = None
        return self._verdict


def _existing(path: Path, mount: Path) -> Path | None:
    """`path` if it is a cgroup directory; the mount itself when the process sees a cgroup
    namespace (its path is then not under the mount as written)."""
    for candidate in (path, mount):
        if (candidate / "cgroup.procs").exists():
            return candidate
    return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path) or ""
    return int(text) if text.lstrip("-").isdigit() else None


def _stat(path: Path, key: str, default: int = 0) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return default


def _cpus(quota: str, period: str) -> float:
    host = float(os.cpu_count() or 1)
    try:
        q, p = float(quota), float(period)
    except ValueError:
        return host  # "max": no quota
    return min(q / p, host) if q > 0 and p > 0 else host


def _percent(used: float, limit: float) -> float:
    return 100.0 * max(used, 0.0) / limit if limit > 0 else 0.0
