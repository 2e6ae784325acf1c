"""Task state in SQLite: submit, acquire, capability reports, logs, results, abort, expiry and
re-queueing. Each transition is one conditional UPDATE (`... WHERE status = <expected>`), so two
delegates racing for one task cannot both win, and a repeated call changes nothing.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

import structlog

from manager.db import from_json, to_json
from manager.dispatch import Target
from manager.envelope import ApiError
from protocol.wire import (
    CapabilityReport,
    DelegateTaskPackage,
    LogLine,
    ResponseCode,
    TaskResult,
    TaskStatus,
)

log = structlog.get_logger("manager")

FINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.ERRORED,
                   TaskStatus.EXPIRED, TaskStatus.ABORTED})
STARTED_GRACE_MS = 60_000
#: an `excluded` entry naming a delegate process (instance id) rather than a delegate
INSTANCE_PREFIX = "instance:"
ABORT_EVENT_TTL_MS = 10 * 60_000
_OK_STATUSES = {TaskStatus.SUCCEEDED, TaskStatus.FAILED}
_FAILED_STATUSES = {TaskStatus.ERRORED, TaskStatus.EXPIRED, TaskStatus.ABORTED, TaskStatus.FAILED}


@dataclass(frozen=True)
class NewTask:
    account_id: str
    task_type: str
    data: dict[str, Any]
    selectors: list[str]
    group_name: str | None
    timeout_ms: int
    capabilities: list[dict[str, Any]] | None
    requeue_on_loss: bool
    sync: bool = False


def target(row: sqlite3.Row) -> Target:
    return Target(
        task_id=row["task_id"], account_id=row["account_id"], task_type=row["task_type"],
        selectors=tuple(from_json(row["selectors"], [])), group_name=row["group_name"],
        excluded=frozenset(from_json(row["excluded"], [])), sync=bool(row["sync"]),
    )


def package(row: sqlite3.Row, *, with_instance: bool = True) -> dict[str, Any]:
    pkg = DelegateTaskPackage(
        delegate_task_id=row["task_id"], account_id=row["account_id"],
        task_type=row["task_type"], data=from_json(row["data"], {}), sync=bool(row["sync"]),
        timeout_ms=row["timeout_ms"], delegate_id=row["delegate_id"],
        delegate_instance_id=row["instance_id"] if with_instance else None,
        capabilities=from_json(row["capabilities"], []) or [],
    )
    return pkg.dump()


class TaskStore:
    def __init__(self, conn: sqlite3.Connection, *, validation_timeout_s: float) -> None:
        self._conn = conn
        self._validation_ms = int(validation_timeout_s * 1000)

    def get(self, task_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(
            "SELECT * FROM tasks WHERE task_id=?", (task_id,)).fetchone()
        return row

    def require(self, task_id: str) -> sqlite3.Row:
        row = self.get(task_id)
        if row is None:
            raise ApiError(404, "TASK_NOT_FOUND", f"task {task_id!r} does not exist")
        return row

    def submit(self, new: NewTask, now: int) -> sqlite3.Row:
        task_id = uuid.uuid4().hex
        self._conn.execute(
            "INSERT INTO tasks (task_id, account_id, task_type, data, sync, selectors, group_name,"
            " timeout_ms, capabilities, requeue_on_loss, status, created_at, expires_at,"
            " next_broadcast_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (task_id, new.account_id, new.task_type, to_json(new.data), int(new.sync),
             to_json(new.selectors), new.group_name, new.timeout_ms,
             to_json(new.capabilities) if new.capabilities else None, int(new.requeue_on_loss),
             TaskStatus.QUEUED.value, now, now + new.timeout_ms, now),
        )
        log.debug("task.submitted", task_id=task_id, task_type=new.task_type,
                 selectors=new.selectors)
        return self.require(task_id)

    # --- acquire and capability reports --------------------------------------------------------

    def acquire(self, row: sqlite3.Row, delegate_id: str, instance_id: str | None,
                now: int) -> dict[str, Any]:
        task_id = row["task_id"]
        if instance_id and f"{INSTANCE_PREFIX}{instance_id}" in from_json(row["excluded"], []):
            raise ApiError(409, "DELEGATE_NOT_ELIGIBLE",
                           f"task {task_id} was handed back by this delegate process; another one takes it")
        if row["capabilities"] is not None:
            cur = self._conn.execute(
                "UPDATE tasks SET status='VALIDATING', validating_since=coalesce(validating_since,"
                " ?), expires_at=CASE WHEN validating_since IS NULL THEN ? ELSE expires_at END"
                " WHERE task_id=? AND status IN ('QUEUED','VALIDATING')",
                (now, now + self._validation_ms, task_id))
            if cur.rowcount == 1:
                return package(row, with_instance=False)
        else:
            cur = self._conn.execute(
                "UPDATE tasks SET status='STARTED', delegate_id=?, instance_id=?, acquired_at=?,"
                " last_seen_at=?, expires_at=?+timeout_ms+? WHERE task_id=? AND status='QUEUED'",
                (delegate_id, instance_id, now, now, now, STARTED_GRACE_MS, task_id))
            if cur.rowcount == 1:
                log.debug("task.acquired", task_id=task_id, delegate_id=delegate_id)
                return package(self.require(task_id))
        current = self.require(task_id)
        if current["status"] == TaskStatus.STARTED and current["delegate_id"] == delegate_id \
                and current["instance_id"] == instance_id:
            return package(current)  # the same process asking again: its answer got lost
        self._refuse(current)

    def _refuse(self, row: sqlite3.Row) -> NoReturn:
        status = row["status"]
        if status in FINAL or status == TaskStatus.QUEUED:
            raise ApiError(410, "TASK_NOT_QUEUED", f"task {row['task_id']} is {status}")
        raise ApiError(409, "TASK_ALREADY_ACQUIRED",
                       f"task {row['task_id']} is assigned to another delegate")

    def report(self, row: sqlite3.Row, delegate_id: str, report: CapabilityReport,
               now: int) -> dict[str, Any]:
        task_id = row["task_id"]
        failed = [r for r in report.results if not r.ok]
        if failed:
            reasons = from_json(row["capability_failures"], [])
            reasons += [f"{delegate_id}: {r.capability_type}: {r.message}" for r in failed]
            excluded = sorted({*from_json(row["excluded"], []), delegate_id})
            self._conn.execute(
                "UPDATE tasks SET capability_failures=?, excluded=? WHERE task_id=?",
                (to_json(reasons[-50:]), to_json(excluded), task_id))
            raise ApiError(422, "CAPABILITY_FAILED",
                           "; ".join(f"{r.capability_type}: {r.message}" for r in failed))
        cur = self._conn.execute(
            "UPDATE tasks SET status='STARTED', delegate_id=?, instance_id=?, acquired_at=?,"
            " last_seen_at=?, expires_at=?+timeout_ms+? WHERE task_id=?"
            " AND status IN ('QUEUED','VALIDATING')",
            (delegate_id, report.delegate_instance_id, now, now, now, STARTED_GRACE_MS, task_id))
        current = self.require(task_id)
        if cur.rowcount == 1 or (current["status"] == TaskStatus.STARTED
                                 and current["delegate_id"] == delegate_id
                                 and current["instance_id"] == report.delegate_instance_id):
            return package(current)
        self._refuse(current)

    # --- logs and results ----------------------------------------------------------------------

    def add_logs(self, row: sqlite3.Row, delegate_id: str, lines: list[LogLine]) -> int:
        if row["delegate_id"] != delegate_id:
            raise ApiError(409, "TASK_ALREADY_ACQUIRED",
                           f"task {row['task_id']} is not assigned to delegate {delegate_id}")
        cur = self._conn.executemany(
            "INSERT OR IGNORE INTO task_logs (task_id, seq, ts, level, message) VALUES (?,?,?,?,?)",
            [(row["task_id"], ln.seq, ln.ts, ln.level, ln.message) for ln in lines])
        return cur.rowcount

    def apply_result(self, row: sqlite3.Row, delegate_id: str, result: TaskResult,
                     now: int) -> tuple[dict[str, Any], bool]:
        """Apply a result once. Returns (metaData, requeued)."""
        task_id, status = row["task_id"], row["status"]
        if row["delegate_id"] != delegate_id:
            raise ApiError(409, "TASK_ALREADY_ACQUIRED",
                           f"task {task_id} is assigned to another delegate")
        if status in FINAL:
            if row["result"] is not None:
                return {"duplicate": True, "status": status}, False
            # expired or aborted before the result came: keep it for people to read
            self._conn.execute("UPDATE tasks SET result=? WHERE task_id=? AND result IS NULL",
                               (to_json(result.response), task_id))
            return {"duplicate": False, "applied": False, "status": status}, False
        if result.response_code == ResponseCode.RETRY_ON_OTHER_DELEGATE and (
                status == TaskStatus.QUEUED or (result.delegate_instance_id and row["instance_id"]
                                                and result.delegate_instance_id != row["instance_id"])):
            # a repeat, or a hand-back by a process that no longer holds the task: already done
            return {"duplicate": True, "status": status}, False
        if result.response_code == ResponseCode.RETRY_ON_OTHER_DELEGATE:
            # A hand-back excludes the process that handed it back, not the delegate: the same
            # delegate restarted (a new instance) may take it again (docs/protocol.md).
            instance = result.delegate_instance_id or row["instance_id"]
            excluded = sorted({*from_json(row["excluded"], []),
                               f"{INSTANCE_PREFIX}{instance}" if instance else delegate_id})
            self.requeue(task_id, row["timeout_ms"], now, excluded=excluded, expect=status)
            log.info("task.requeued", task_id=task_id, delegate_id=delegate_id,
                     reason="RETRY_ON_OTHER_DELEGATE")
            return {"duplicate": False, "status": TaskStatus.QUEUED.value}, True
        final = _final_status(result)
        error = result.response.get("errorMessage")
        cur = self._conn.execute(
            "UPDATE tasks SET status=?, result=?, error_message=?, finished_at=?"
            " WHERE task_id=? AND status=? AND delegate_id=?",
            (final, to_json(result.response), str(error) if error is not None else None, now,
             task_id, status, delegate_id))
        if cur.rowcount != 1:  # cannot happen without an await in between; be safe anyway
            raise ApiError(409, "TASK_ALREADY_ACQUIRED", f"task {task_id} changed meanwhile")
        log.debug("task.finished", task_id=task_id, status=final, delegate_id=delegate_id)
        return {"duplicate": False, "status": final}, False

    # --- abort, expiry, orphans ----------------------------------------------------------------

    def abort(self, task_id: str, now: int) -> sqlite3.Row:
        row = self.require(task_id)
        if row["status"] in FINAL:
            raise ApiError(410, "TASK_NOT_QUEUED",
                           f"task {task_id} is already {row['status']}; nothing to abort")
        self._conn.execute(
            "UPDATE tasks SET status='ABORTED', aborted_at=?, finished_at=?,"
            " error_message='aborted through the setup API' WHERE task_id=? AND status=?",
            (now, now, task_id, row["status"]))
        log.info("task.aborted", task_id=task_id, delegate_id=row["delegate_id"])
        return row

    def abort_events_for(self, delegate_id: str, now: int) -> list[str]:
        rows = self._conn.execute(
            "SELECT task_id FROM tasks WHERE delegate_id=? AND status='ABORTED'"
            " AND acquired_at IS NOT NULL AND result IS NULL AND aborted_at>?",
            (delegate_id, now - ABORT_EVENT_TTL_MS))
        return [r["task_id"] for r in rows]

    def queued(self, limit: int = 1000) -> list[sqlite3.Row]:
        return self._conn.execute(
            "SELECT * FROM tasks WHERE status IN ('QUEUED','VALIDATING')"
            " ORDER BY created_at LIMIT ?", (limit,)).fetchall()

    def touch_listed(self, delegate_id: str, task_ids: list[str], now: int) -> None:
        """A heartbeat listed these tasks: they are alive (chunked under SQLite's variable cap)."""
        for start in range(0, len(task_ids), 500):
            chunk = task_ids[start:start + 500]
            marks = ",".join("?" for _ in chunk)
            self._conn.execute(
                f"UPDATE tasks SET last_seen_at=? WHERE delegate_id=? AND status='STARTED'"
                f" AND task_id IN ({marks})", (now, delegate_id, *chunk))

    def due(self, now: int) -> list[sqlite3.Row]:
        """Unfinished tasks past their expiry."""
        return self._conn.execute(
            "SELECT * FROM tasks WHERE status IN ('QUEUED','VALIDATING','STARTED')"
            " AND expires_at<=?", (now,)).fetchall()

    def finish(self, task_id: str, expect: str, status: TaskStatus, reason: str,
               now: int) -> bool:
        cur = self._conn.execute(
            "UPDATE tasks SET status=?, error_message=?, finished_at=? WHERE task_id=?"
            " AND status=?", (status.value, reason, now, task_id, expect))
        if cur.rowcount == 1:
            log.info("task.ended", task_id=task_id, status=status.value, reason=reason)
        return cur.rowcount == 1

    def started_before(self, cutoff: int) -> list[sqlite3.Row]:
        return self._conn.execute(
            "SELECT task_id, delegate_id, last_seen_at, requeue_on_loss, timeout_ms FROM tasks"
            " WHERE status='STARTED' AND acquired_at<?", (cutoff,)).fetchall()

    def requeue(self, task_id: str, timeout_ms: int, now: int, *,
                excluded: list[str] | None = None, expect: str = "STARTED") -> bool:
        cur = self._conn.execute(
            "UPDATE tasks SET status='QUEUED', instance_id=NULL, acquired_at=NULL,"
            " validating_since=NULL, expires_at=?, next_broadcast_at=?, broadcast_round=0,"
            " excluded=coalesce(?, excluded) WHERE task_id=? AND status=?",
            (now + timeout_ms, now, to_json(excluded) if excluded is not None else None,
             task_id, expect))
        return cur.rowcount == 1

    def running_on(self, delegate_id: str) -> list[sqlite3.Row]:
        return self._conn.execute(
            "SELECT * FROM tasks WHERE delegate_id=? AND status='STARTED'", (delegate_id,)
        ).fetchall()

    def due_broadcasts(self, now: int, limit: int = 500) -> list[sqlite3.Row]:
        return self._conn.execute(
            "SELECT * FROM tasks WHERE status IN ('QUEUED','VALIDATING')"
            " AND next_broadcast_at<=? ORDER BY next_broadcast_at LIMIT ?",
            (now, limit)).fetchall()

    def mark_broadcast(self, task_id: str, round_no: int, next_at: int) -> None:
        self._conn.execute(
            "UPDATE tasks SET broadcast_round=?, next_broadcast_at=? WHERE task_id=?",
            (round_no, next_at, task_id))

    # --- reading -------------------------------------------------------------------------------

    def logs(self, task_id: str, since_seq: int | None = None) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT seq, ts, level, message FROM task_logs WHERE task_id=? AND seq>?"
            " ORDER BY seq", (task_id, -1 if since_seq is None else since_seq))
        return [dict(r) for r in rows]

    def list(self, status: str | None, limit: int = 200) -> list[sqlite3.Row]:
        if status:
            return self._conn.execute(
                "SELECT * FROM tasks WHERE status=? ORDER BY created_at DESC LIMIT ?",
                (status, limit)).fetchall()
        return self._conn.execute(
            "SELECT * FROM tasks ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()


def _final_status(result: TaskResult) -> str:
    raw = result.response.get("status")
    if result.response_code == ResponseCode.OK:
        allowed, default = _OK_STATUSES, TaskStatus.SUCCEEDED
    else:
        allowed, default = _FAILED_STATUSES, TaskStatus.ERRORED
    if raw is None:
        return default.value
    if raw not in {s.value for s in allowed}:
        raise ApiError(400, "INVALID_REQUEST",
                       f"field 'response.status': {raw!r} is not allowed with responseCode "
                       f"{result.response_code.value}; use one of {sorted(s.value for s in allowed)}")
    return str(raw)
