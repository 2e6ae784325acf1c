"""The task path end to end: real manager, real delegate processes, real scripts and signals."""

from __future__ import annotations

import collections
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import FINAL_STATES, Manager, Process, wait_until

Start = Callable[..., Process]


def shell(script: str) -> dict[str, str]:
    return {"script": script}


def wait_all(manager: Manager, task_ids: list[str], timeout: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, object]] = {}
    while len(done) < len(task_ids):
        listed = manager.api("GET", "/api/setup/tasks?limit=10000")
        rows = listed["tasks"] if isinstance(listed, dict) else listed
        for row in rows:
            if row["taskId"] in task_ids and row["status"] in FINAL_STATES:
                done[row["taskId"]] = row
        if time.monotonic() > deadline:
            missing = [t for t in task_ids if t not in done][:5]
            raise AssertionError(f"{len(task_ids) - len(done)} tasks unfinished, e.g. {missing}")
        time.sleep(0.2)
    return [done[t] for t in task_ids]


def max_concurrency(log: Path) -> dict[str, int]:
    """From '+ who' / '- who' lines appended by the scripts: the most running at once, per who."""
    running: collections.Counter[str] = collections.Counter()
    peak: collections.Counter[str] = collections.Counter()
    for line in log.read_text().splitlines():
        sign, who = line.split(" ", 1)
        running[who] += 1 if sign == "+" else -1
        peak[who] = max(peak[who], running[who])
    return dict(peak)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("polling", [False, True], ids=["streaming", "polling"])
def test_many_tasks_run_exactly_once_within_capacity(
    manager: Manager, delegates: Start, tmp_path: Path, polling: bool
) -> None:
    count, capacity = (300, 4) if not polling else (120, 4)
    env = {"DELEGATE_TASK_CAPACITY": str(capacity), "POLL_FOR_TASKS": str(polling).lower(),
           "DELEGATE_GROUP_NAME": "trio", "DELEGATE_TYPE": "SHELL_SCRIPT"}
    procs = [delegates(f"d{i}", DELEGATE_HOSTNAME=f"host-{i}", **env) for i in range(3)]
    for p in procs:
        p.wait_event("manager.registered")
    ids_file, conc_file = tmp_path / "ids.txt", tmp_path / "running.txt"
    task_ids = [
        manager.submit("SHELL_SCRIPT", shell(
            f'echo "+ $DELEGATE_WORK_DIR" >> {conc_file}; echo {i} >> {ids_file}; sleep 0.02; '
            f'echo "- $DELEGATE_WORK_DIR" >> {conc_file}'),
            timeoutMs=60_000, delegateGroupName="trio")
        for i in range(count)
    ]
    rows = wait_all(manager, task_ids, timeout=100)
    assert collections.Counter(r["status"] for r in rows) == {"SUCCEEDED": count}
    written = ids_file.read_text().split()
    assert sorted(map(int, written)) == list(range(count))  # every id exactly once
    peaks = max_concurrency(conc_file)
    assert len(peaks) == 3, "all three delegates took work"
    assert max(peaks.values()) <= capacity
    for p in procs:
        assert p.alive()


@pytest.mark.timeout(90)
def test_killed_delegates_task_is_requeued_and_completed_by_another(
    manager: Manager, delegates: Start, tmp_path: Path
) -> None:
    first = delegates("a", DELEGATE_HOSTNAME="host-a", DELEGATE_TYPE="SHELL_SCRIPT")
    first_id = first.wait_event("manager.registered")["delegate_id"]
    marker = tmp_path / "ran.txt"
    task_id = manager.submit("SHELL_SCRIPT", shell(
        f'echo "$DELEGATE_WORK_DIR" >> {marker}; sleep 3; echo finished'), timeoutMs=60_000)
    wait_until(lambda: manager.task(task_id)["status"] == "STARTED", 10, "STARTED")
    assert manager.task(task_id)["delegateId"] == first_id
    second = delegates("b", DELEGATE_HOSTNAME="host-b", DELEGATE_TYPE="SHELL_SCRIPT")
    second_id = second.wait_event("manager.registered")["delegate_id"]
    first.send(signal.SIGKILL)
    task = manager.wait_task(task_id, timeout=60)
    assert task["status"] == "SUCCEEDED"
    assert task["delegateId"] == second_id
    runs = marker.read_text().split()
    assert runs[-1].endswith("/b")
    assert any(line["message"] == "finished" for line in task["logLines"])


@pytest.mark.timeout(120)
def test_results_survive_a_manager_outage(manager: Manager, delegates: Start,
                                          tmp_path: Path) -> None:
    proc = delegates("d1")
    proc.wait_event("manager.registered")
    out = tmp_path / "out.txt"
    task_ids = [manager.submit("SHELL_SCRIPT", shell(f"sleep 2; echo {i} >> {out}; echo done {i}"),
                               timeoutMs=120_000) for i in range(5)]
    wait_until(lambda: all(manager.task(t)["status"] == "STARTED" for t in task_ids), 15,
               "all STARTED")
    manager.stop()
    proc.wait_event("task.finished", timeout=15)
    # the sender keeps trying through the outage (several backoffs), and the delegate stays up
    wait_until(lambda: len(proc.find("retry.scheduled", what="task.result")) >= 10, 40,
               "result sending retried through the outage")
    assert proc.alive()
    manager.start()
    rows = [manager.wait_task(t, timeout=60) for t in task_ids]
    assert [r["status"] for r in rows] == ["SUCCEEDED"] * 5
    assert sorted(out.read_text().split()) == [str(i) for i in range(5)]  # each ran once
    for i, row in enumerate(rows):
        assert f"done {i}" in [line["message"] for line in row["logLines"]]
    assert not list((tmp_path / "d1" / "spool" / "results").glob("*.json"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose (its parent, the delegate's bash, is gone or reaps it)
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.timeout(60)
def test_abort_stops_a_running_script(manager: Manager, delegates: Start, tmp_path: Path) -> None:
    proc = delegates("d1")
    proc.wait_event("manager.registered")
    child_pid = tmp_path / "child.pid"
    # the script's own child outlives bash unless the whole process group is killed
    script = f"(echo $BASHPID > {child_pid}; exec sleep 60) & echo started; wait"
    task_id = manager.submit("SHELL_SCRIPT", shell(script), timeoutMs=60_000)
    wait_until(lambda: any(line["message"] == "started"
                           for line in manager.task(task_id)["logLines"]), 10, "script running")
    pid = int(wait_until(lambda: child_pid.exists() and child_pid.read_text().strip(), 10,
                         "child pid written"))
    assert pid_alive(pid)
    manager.api("POST", f"/api/setup/tasks/{task_id}/abort")
    assert manager.wait_task(task_id, timeout=15)["status"] == "ABORTED"
    proc.wait_event("task.finished", status="ABORTED", timeout=15)
    wait_until(lambda: not pid_alive(pid), 10, f"the script's child {pid} killed with its group")
    assert proc.alive()


@pytest.mark.timeout(60)
def test_task_for_no_matching_delegate_expires_with_a_reason(manager: Manager,
                                                             delegates: Start) -> None:
    delegates("d1", DELEGATE_TAGS="blue").wait_event("manager.registered")
    task_id = manager.submit("SHELL_SCRIPT", shell("true"), selectors=["green"], timeoutMs=2_000)
    task = manager.wait_task(task_id, timeout=15)
    assert task["status"] == "EXPIRED"
    assert "green" in task["errorMessage"]
    assert not task.get("delegateId")  # never taken by the blue delegate on the way


@pytest.mark.timeout(60)
def test_bad_tasks_fail_alone_and_the_delegate_carries_on(manager: Manager,
                                                          delegates: Start) -> None:
    proc = delegates("d1")
    proc.wait_event("manager.registered")
    unknown = manager.submit("NO_SUCH_TYPE", {"x": 1}, timeoutMs=5_000)
    invalid = manager.submit("SHELL_SCRIPT", {"scriptt": "typo"}, timeoutMs=10_000)
    relative = manager.submit("SHELL_SCRIPT", {"script": "true", "workingDirectory": "rel"},
                              timeoutMs=10_000)
    failing = manager.submit("SHELL_SCRIPT", shell("echo oops >&2; exit 7"), timeoutMs=10_000)
    good = manager.submit("SHELL_SCRIPT", shell("echo fine"), timeoutMs=10_000)
    # the delegate does not offer to run a type it does not support: the task expires, named
    assert manager.wait_task(unknown, timeout=20)["status"] == "EXPIRED"
    task = manager.wait_task(invalid)
    assert task["status"] == "ERRORED"
    assert "script" in task["errorMessage"]
    assert "scriptt" in task["errorMessage"]
    task = manager.wait_task(relative)
    assert task["status"] == "ERRORED"
    assert "workingDirectory" in task["errorMessage"]
    task = manager.wait_task(failing)
    assert task["status"] == "FAILED"
    assert task["result"]["exitCode"] == 7
    assert "ERROR: oops" in [line["message"] for line in task["logLines"]]
    assert manager.wait_task(good)["status"] == "SUCCEEDED"
    assert proc.alive()


@pytest.mark.timeout(60)
def test_script_timeout_expires_the_task(manager: Manager, delegates: Start) -> None:
    delegates("d1").wait_event("manager.registered")
    task_id = manager.submit("SHELL_SCRIPT", shell("sleep 30"), timeoutMs=2_000)
    task = manager.wait_task(task_id, timeout=20)
    assert task["status"] == "EXPIRED"
    assert "timed out" in task["errorMessage"]


@pytest.mark.timeout(60)
def test_capability_check_before_assignment(manager: Manager, delegates: Start) -> None:
    delegates("d1").wait_event("manager.registered")
    reachable = {"capabilityType": "HTTP", "params": {"url": manager.url + "/ui/delegates"}}
    task_id = manager.submit("SHELL_SCRIPT", shell("echo checked"), timeoutMs=20_000,
                             capabilities=[reachable])
    assert manager.wait_task(task_id)["status"] == "SUCCEEDED"


@pytest.mark.timeout(60)
def test_secrets_are_not_handed_to_scripts(manager: Manager, delegates: Start) -> None:
    delegates("d1").wait_event("manager.registered")
    task_id = manager.submit("SHELL_SCRIPT", shell('echo "token=[$DELEGATE_TOKEN]"'),
                             timeoutMs=10_000)
    task = manager.wait_task(task_id)
    assert [line["message"] for line in task["logLines"]] == ["token=[]"]


@pytest.mark.timeout(90)
def test_result_left_by_another_process_in_the_work_dir_is_adopted(
    manager: Manager, delegates: Start, tmp_path: Path
) -> None:
    # An upgrade runs two processes in one work dir; the old one may exit with a result unsent.
    old = delegates("w")
    old.wait_event("manager.registered")
    marker = tmp_path / "runs.txt"
    task_id = manager.submit("SHELL_SCRIPT", shell(f"sleep 3; echo run >> {marker}"),
                             timeoutMs=120_000)
    wait_until(lambda: manager.task(task_id)["status"] == "STARTED", 10, "STARTED")
    new = delegates("w")  # same work dir, same identity, started while the old one works
    new.wait_event("manager.registered")
    manager.stop()
    old.wait_event("task.finished", timeout=15)
    assert old.stop() == 0  # drains within its budget; the result stays in the spool
    assert list((tmp_path / "w" / "spool" / "results").glob("*.json"))
    new.wait_event("spool.adopted", timeout=15, task_id=task_id)
    manager.start()
    task = manager.wait_task(task_id, timeout=30)
    assert task["status"] == "SUCCEEDED"
    assert marker.read_text().split() == ["run"]  # ran once, reported by the other process


@pytest.mark.timeout(60)
def test_a_task_longer_than_the_orphan_window_is_kept_alive_by_heartbeats(
    manager: Manager, delegates: Start, tmp_path: Path
) -> None:
    # the manager fixture re-queues a STARTED task its delegate has not listed for 5 s
    delegates("d1").wait_event("manager.registered")
    marker = tmp_path / "runs.txt"
    task_id = manager.submit("SHELL_SCRIPT", shell(f"echo run >> {marker}; sleep 8"),
                             timeoutMs=60_000)
    assert manager.wait_task(task_id, timeout=30)["status"] == "SUCCEEDED"
    assert marker.read_text().split() == ["run"]


@pytest.mark.timeout(60)
def test_work_is_refused_above_the_resource_threshold(manager: Manager, delegates: Start) -> None:
    proc = delegates("d1", DELEGATE_RESOURCE_THRESHOLD="0.5")  # memory use is always above 0.5 %
    proc.wait_event("manager.registered")
    task_id = manager.submit("NOOP", {}, timeoutMs=3_000)
    proc.wait_event("task.refused_resources", timeout=10)
    assert manager.wait_task(task_id, timeout=20)["status"] == "EXPIRED"
    assert proc.alive()
