"""The resource check reads the container's own cgroup (v2, v1 as fallback), not the host.

A real cgroup limit cannot be set on every machine that runs these tests (cgroup v1 or v2, with or
without delegation), so the cgroup files are laid out in a directory as the kernel shows them, and
the guard is pointed at it; the same code reads /sys/fs/cgroup in production."""

from __future__ import annotations

from pathlib import Path

import psutil

from delegate.tasks.resources import ResourceGuard

MiB = 1024 * 1024


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def v2(tmp_path: Path, *, max_: str, current: int, inactive: int = 0,
       cpu_max: str = "max 100000", usage_usec: int = 0) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("0::/ecs/task-1/delegate\n")
    write(root / "ecs" / "task-1" / "delegate", {
        "cgroup.procs": "", "memory.max": max_, "memory.current": str(current),
        "memory.stat": f"anon 1\ninactive_file {inactive}\n", "cpu.max": cpu_max,
        "cpu.stat": f"usage_usec {usage_usec}\nuser_usec 0\n"})
    write(root, {"cgroup.controllers": "cpu memory", "cgroup.procs": ""})
    return root, proc


def test_v2_memory_is_the_containers_use_against_its_limit(tmp_path: Path) -> None:
    root, proc = v2(tmp_path, max_=str(512 * MiB), current=460 * MiB, inactive=60 * MiB)
    guard = ResourceGuard(70, sample_every_s=0, cgroup_root=root, proc_cgroup=proc)
    _, mem = guard.sample()
    assert round(mem) == round(100 * 400 / 512)
    assert guard.over() == f"container memory at {100 * 400 / 512:.0f}% > 70%"


def test_v2_without_a_memory_limit_counts_against_the_machine(tmp_path: Path) -> None:
    root, proc = v2(tmp_path, max_="max", current=100 * MiB)
    _, mem = ResourceGuard(90, cgroup_root=root, proc_cgroup=proc).sample()
    assert abs(mem - 100 * 100 * MiB / psutil.virtual_memory().total) < 0.01


def test_v2_cpu_is_the_containers_time_against_its_quota(tmp_path: Path) -> None:
    root, proc = v2(tmp_path, max_="max", current=0, cpu_max="50000 100000", usage_usec=0)
    guard = ResourceGuard(80, sample_every_s=0, cgroup_root=root, proc_cgroup=proc)
    assert guard.cgroup is not None
    # ten seconds later (the test moves the mark back instead of sleeping) the container has used
    # 8 s of CPU: 160% of its half CPU
    mark = guard._cpu_mark
    assert mark is not None
    guard._cpu_mark = (mark[0] - 10.0, mark[1])
    write(root / "ecs" / "task-1" / "delegate", {"cpu.stat": "usage_usec 8000000\n"})
    verdict = guard.over() or ""
    assert verdict == "container CPU at 100% > 80%", verdict  # 145% to 160%, capped at 100%


def test_v1_is_the_fallback(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    write(root / "memory" / "docker" / "abc", {
        "cgroup.procs": "", "memory.limit_in_bytes": str(256 * MiB),
        "memory.usage_in_bytes": str(200 * MiB), "memory.stat": f"total_inactive_file {8 * MiB}\n"})
    write(root / "cpu,cpuacct" / "docker" / "abc", {
        "cgroup.procs": "", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000",
        "cpuacct.usage": "0"})
    guard = ResourceGuard(70, sample_every_s=0, cgroup_root=root, proc_cgroup=proc)
    assert guard.cgroup is not None and guard.cgroup.v2 is None
    _, mem = guard.sample()
    assert round(mem) == round(100 * 192 / 256)
    assert "container memory" in (guard.over() or "")


def test_a_cgroup_namespace_reads_the_mount_itself(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("0::/\n")
    write(root, {"cgroup.controllers": "memory", "cgroup.procs": "",
                 "memory.max": str(100 * MiB), "memory.current": str(50 * MiB)})
    _, mem = ResourceGuard(90, cgroup_root=root, proc_cgroup=proc).sample()
    assert round(mem) == 50


def test_outside_a_container_the_host_figures_are_used(tmp_path: Path) -> None:
    guard = ResourceGuard(90, cgroup_root=tmp_path / "none", proc_cgroup=tmp_path / "none")
    assert guard.cgroup is None
    cpu, mem = guard.sample()
    assert 0 <= cpu <= 100 and 0 < mem <= 100
