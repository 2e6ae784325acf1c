"""Delegate records: registration (non-ECS identity and ECS sequence-number rules), keep-alive,
heartbeats, unregistering, and connected/disconnected status.

Every record is held in memory (`Delegates.by_id`) and written through to SQLite, so dispatch and
status checks never query the table; the database is read once at start.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from manager.db import from_json, to_json
from manager.envelope import ApiError
from protocol.wire import DelegateParams, DelegateType

log = structlog.get_logger("manager")

_COLUMNS = (
    "delegate_id", "account_id", "host_name", "host_base", "seq", "random_token", "delegate_type",
    "delegate_name", "group_name", "group_id", "profile_id", "assigned_profile_id", "description",
    "version", "ip", "tags", "supported_task_types", "polling", "instance_id", "connected",
    "unregistered", "last_heartbeat", "registered_at", "watcher_version",
)
_UPSERT = (
    f"INSERT INTO delegates ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
    " ON CONFLICT(delegate_id) DO UPDATE SET "
    + ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS[1:])
)


@dataclass
class DelegateRecord:
    delegate_id: str
    account_id: str
    host_name: str
    host_base: str
    seq: int | None
    random_token: str | None
    delegate_type: str
    version: str
    last_heartbeat: int
    registered_at: int
    delegate_name: str | None = None
    group_name: str | None = None
    group_id: str | None = None
    profile_id: str | None = None
    assigned_profile_id: str | None = None
    description: str | None = None
    ip: str = ""
    tags: list[str] = field(default_factory=list)
    supported_task_types: list[str] = field(default_factory=list)
    polling: bool = False
    instance_id: str | None = None
    connected: bool = True
    unregistered: bool = False  # said goodbye: its ECS slot is free at once
    watcher_version: str | None = None  # None: run without a watcher
    #: when its last websocket closed (manager clock, ms); None while one is open or never was
    stream_closed_at: int | None = None

    @property
    def is_ecs(self) -> bool:
        return self.seq is not None

    @property
    def labels(self) -> set[str]:
        """What task selectors may name: tags, the delegate name and the group name."""
        names = set(self.tags)
        if self.delegate_name:
            names.add(self.delegate_name)
        if self.group_name:
            names.add(self.group_name)
        return names

    def row(self) -> tuple[object, ...]:
        return (
            self.delegate_id, self.account_id, self.host_name, self.host_base, self.seq,
            self.random_token, self.delegate_type, self.delegate_name, self.group_name,
            self.group_id, self.profile_id, self.assigned_profile_id, self.description,
            self.version, self.ip, to_json(self.tags), to_json(self.supported_task_types),
            int(self.polling), self.instance_id, int(self.connected), int(self.unregistered),
            self.last_heartbeat,
            self.registered_at, self.watcher_version,
        )

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> DelegateRecord:
        return cls(
            delegate_id=row["delegate_id"], account_id=row["account_id"],
            host_name=row["host_name"], host_base=row["host_base"], seq=row["seq"],
            random_token=row["random_token"], delegate_type=row["delegate_type"],
            version=row["version"], last_heartbeat=row["last_heartbeat"],
            registered_at=row["registered_at"], delegate_name=row["delegate_name"],
            group_name=row["group_name"], group_id=row["group_id"],
            profile_id=row["profile_id"], assigned_profile_id=row["assigned_profile_id"],
            description=row["description"], ip=row["ip"], tags=from_json(row["tags"], []),
            supported_task_types=from_json(row["supported_task_types"], []),
            polling=bool(row["polling"]), instance_id=row["instance_id"],
            connected=bool(row["connected"]), unregistered=bool(row["unregistered"]),
            watcher_version=row["watcher_version"],
        )

    def apply(self, params: DelegateParams, now: int) -> None:
        """Take what the delegate says about itself now; keep copied values it does not send."""
        self.delegate_type = params.delegate_type
        self.version = params.version
        self.watcher_version = params.watcher_version
        self.ip = params.ip
        self.delegate_name = params.delegate_name or self.delegate_name
        self.group_name = params.delegate_group_name or self.group_name
        self.group_id = params.delegate_group_id or self.group_id
        self.profile_id = params.delegate_profile_id or self.profile_id
        self.description = params.description or self.description
        if params.tags:
            self.tags = list(dict.fromkeys(params.tags))
        self.supported_task_types = list(params.supported_task_types)
        self.polling = params.polling_mode_enabled
        self.instance_id = params.delegate_instance_id or self.instance_id
        self.connected = True
        self.unregistered = False
        self.last_heartbeat = now


def _parse_seq(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        seq = int(value)
    except ValueError:
        return None
    return seq if seq >= 0 else None


class Delegates:
    """The registry of delegate records, in memory and in the database.

    `shared`: other manager processes write the same table (replicas on PostgreSQL), so a record
    is read again from the database whenever it is looked up, and the whole table before a
    decision over all of them; memory is then a cache of what this process last read."""

    def __init__(self, conn: sqlite3.Connection, *, disconnect_after_s: float,
                 ecs_stale_slot_s: float, shared: bool = False) -> None:
        self._conn = conn
        self.shared = shared
        self._disconnect_ms = int(disconnect_after_s * 1000)
        self._stale_ms = int(ecs_stale_slot_s * 1000)
        self.by_id: dict[str, DelegateRecord] = {
            row["delegate_id"]: DelegateRecord.from_row(row)
            for row in conn.execute("SELECT * FROM delegates")
        }

    # --- status --------------------------------------------------------------------------------

    def is_connected(self, rec: DelegateRecord, now: int) -> bool:
        return rec.connected and now - rec.last_heartbeat <= self._disconnect_ms

    def connected(self, now: int) -> list[DelegateRecord]:
        self.reload_all()
        return [r for r in self.by_id.values() if self.is_connected(r, now)]

    def reload_all(self) -> None:
        """Shared: read every record again (others may have registered or changed some)."""
        if self.shared:
            old = self.by_id
            self.by_id = {row["delegate_id"]: self._fresh(row, old)
                          for row in self._conn.execute("SELECT * FROM delegates")}

    @staticmethod
    def _fresh(row: sqlite3.Row, old: dict[str, DelegateRecord]) -> DelegateRecord:
        """A record read again; what only this process knows (its stream closed) is kept."""
        rec = DelegateRecord.from_row(row)
        prev = old.get(rec.delegate_id)
        if prev is not None:
            rec.stream_closed_at = prev.stream_closed_at
        return rec

    def _reload_host(self, account_id: str, host: str) -> None:
        """Shared: read again the records a registration from `host` decides among (its own by
        host name, the ECS slots of that base name); the rest of the table is not needed."""
        if self.shared:
            for row in self._conn.execute(
                    "SELECT * FROM delegates WHERE account_id=? AND (host_name=? OR host_base=?)",
                    (account_id, host, host)):
                self.by_id[row["delegate_id"]] = self._fresh(row, self.by_id)

    def _reload(self, delegate_id: str) -> DelegateRecord | None:
        row = self._conn.execute("SELECT * FROM delegates WHERE delegate_id=?",
                                 (delegate_id,)).fetchone()
        if row is None:
            self.by_id.pop(delegate_id, None)
            return None
        rec = self.by_id[delegate_id] = self._fresh(row, self.by_id)
        return rec

    def _is_stale(self, rec: DelegateRecord, now: int) -> bool:
        return rec.unregistered or now - rec.last_heartbeat > self._stale_ms

    def mark_disconnected(self, now: int) -> list[str]:
        """Flip records past the disconnect threshold, judged by the database's last heartbeat
        (one conditional UPDATE each, so replicas deciding together flip each once); returns
        their ids."""
        cutoff = now - self._disconnect_ms
        gone = []
        for row in self._conn.execute(
                "SELECT delegate_id, host_name FROM delegates WHERE connected=1"
                " AND last_heartbeat<?", (cutoff,)).fetchall():
            cur = self._conn.execute("UPDATE delegates SET connected=0 WHERE delegate_id=?"
                                     " AND connected=1 AND last_heartbeat<?",
                                     (row["delegate_id"], cutoff))
            rec = self.by_id.get(row["delegate_id"])
            if rec is not None and rec.last_heartbeat < cutoff:
                rec.connected = False
            if cur.rowcount == 1:
                gone.append(row["delegate_id"])
                log.info("delegate.disconnected", delegate_id=row["delegate_id"],
                         host_name=row["host_name"], reason="no heartbeat")
        return gone

    def mark_streams_gone(self, now: int, gone_after_ms: int, has_stream: Callable[[str], bool]
                          ) -> list[str]:
        """Streaming delegates whose socket closed `gone_after_ms` ago and did not come back."""
        gone = [r for r in self.by_id.values()
                if r.connected and r.stream_closed_at is not None and not r.polling
                and now - r.stream_closed_at > gone_after_ms and not has_stream(r.delegate_id)]
        flipped = []
        for rec in gone:
            closed_at, rec.stream_closed_at = rec.stream_closed_at, None
            # not if it came back meanwhile, here or through another replica (a newer heartbeat)
            cur = self._conn.execute("UPDATE delegates SET connected=0 WHERE delegate_id=?"
                                     " AND last_heartbeat<=?", (rec.delegate_id, closed_at))
            if cur.rowcount != 1:
                continue
            rec.connected = False
            flipped.append(rec.delegate_id)
            log.info("delegate.disconnected", delegate_id=rec.delegate_id,
                     host_name=rec.host_name, reason="its stream closed")
        return flipped

    def get(self, delegate_id: str | None) -> DelegateRecord | None:
        if not delegate_id:
            return None
        return self._reload(delegate_id) if self.shared else self.by_id.get(delegate_id)

    def require(self, delegate_id: str) -> DelegateRecord:
        rec = self.get(delegate_id)
        if rec is None:
            raise ApiError(404, "DELEGATE_NOT_FOUND",
                           f"delegate {delegate_id!r} is not registered; register again")
        return rec

    def save(self, rec: DelegateRecord) -> None:
        self._conn.execute(_UPSERT, rec.row())
        self.by_id[rec.delegate_id] = rec

    # --- register / keep-alive -----------------------------------------------------------------

    def register(self, params: DelegateParams, now: int) -> DelegateRecord:
        self._reload_host(params.account_id, params.host_name)
        if params.delegate_type == DelegateType.ECS:
            rec = self._register_ecs(params, now)
        else:
            rec = self._register_plain(params, now)
        self.save(rec)
        return rec

    def _new(self, params: DelegateParams, now: int, *, host_name: str, seq: int | None,
             token: str | None) -> DelegateRecord:
        rec = DelegateRecord(
            delegate_id=uuid.uuid4().hex[:22], account_id=params.account_id,
            host_name=host_name, host_base=params.host_name, seq=seq, random_token=token,
            delegate_type=params.delegate_type, version=params.version,
            last_heartbeat=now, registered_at=now,
        )
        rec.apply(params, now)
        return rec

    def _register_plain(self, params: DelegateParams, now: int) -> DelegateRecord:
        rec = self.get(params.delegate_id)
        if rec is None or rec.account_id != params.account_id:
            same_host = [r for r in self.by_id.values()
                         if r.account_id == params.account_id and r.host_name == params.host_name
                         and not r.is_ecs]
            rec = max(same_host, key=lambda r: r.last_heartbeat, default=None)
        if rec is None:
            rec = self._new(params, now, host_name=params.host_name, seq=None, token=None)
            log.info("delegate.registered", delegate_id=rec.delegate_id, host_name=rec.host_name)
            return rec
        rec.apply(params, now)
        return rec

    def _register_ecs(self, params: DelegateParams, now: int) -> DelegateRecord:
        token = (params.delegate_random_token or "").strip()
        if not token:
            raise ApiError(400, "INVALID_REQUEST",
                           "field 'delegateRandomToken' is required for delegateType ECS")
        slots = [r for r in self.by_id.values()
                 if r.account_id == params.account_id and r.host_base == params.host_name
                 and r.is_ecs]
        seq = _parse_seq(params.sequence_num)
        # 1. the same (seq, token): this task takes its slot back
        for rec in slots:
            if seq is not None and rec.seq == seq and rec.random_token == token:
                rec.apply(params, now)
                return rec
        # 2. a stale slot: the new task inherits its number, tags, profile and description
        stale = sorted((r for r in slots if self._is_stale(r, now)), key=lambda r: r.seq or 0)
        if stale:
            old = stale[0]
            rec = self._new(params, now, host_name=old.host_name, seq=old.seq, token=token)
            rec.tags = list(dict.fromkeys([*old.tags, *rec.tags]))
            rec.profile_id = rec.profile_id or old.profile_id
            rec.assigned_profile_id = old.assigned_profile_id
            rec.description = rec.description or old.description
            self._conn.execute("DELETE FROM delegates WHERE delegate_id=?", (old.delegate_id,))
            del self.by_id[old.delegate_id]
            log.info("delegate.ecs_slot_reused", delegate_id=rec.delegate_id,
                     old_delegate_id=old.delegate_id, host_name=rec.host_name)
            return rec
        # 3. the lowest free sequence number
        used = {r.seq for r in slots}
        free = next(n for n in range(len(used) + 1) if n not in used)
        rec = self._new(params, now, host_name=f"{params.host_name}_{free}", seq=free, token=token)
        log.info("delegate.registered", delegate_id=rec.delegate_id, host_name=rec.host_name)
        return rec

    # --- heartbeat / unregister ----------------------------------------------------------------

    def heartbeat(self, params: DelegateParams, now: int) -> DelegateRecord:
        if not params.delegate_id:
            raise ApiError(400, "INVALID_REQUEST", "field 'delegateId' is required; register first")
        rec = self.require(params.delegate_id)
        was_connected = self.is_connected(rec, now)
        rec.apply(params, now)
        self.save(rec)
        if not was_connected:
            log.info("delegate.connected", delegate_id=rec.delegate_id, host_name=rec.host_name)
        return rec

    def touch(self, rec: DelegateRecord, now: int) -> None:
        rec.connected = True
        rec.unregistered = False
        rec.last_heartbeat = now
        self._conn.execute(
            "UPDATE delegates SET connected=1, unregistered=0, last_heartbeat=?"
            " WHERE delegate_id=?",
            (now, rec.delegate_id))

    def unregister(self, delegate_id: str) -> DelegateRecord:
        rec = self.require(delegate_id)
        rec.connected = False
        rec.unregistered = True
        self._conn.execute("UPDATE delegates SET connected=0, unregistered=1 WHERE delegate_id=?",
                           (delegate_id,))
        log.info("delegate.unregistered", delegate_id=delegate_id, host_name=rec.host_name)
        return rec

    def delete(self, delegate_id: str, now: int) -> DelegateRecord:
        """Remove a delegate for good: its record goes, a tombstone stays so that the process (or
        a restart of it with the same identity) is told SELF_DESTRUCT when it comes back."""
        rec = self.require(delegate_id)
        self._conn.execute(
            "INSERT INTO deleted_delegates (delegate_id, random_token, deleted_at) VALUES (?,?,?)"
            " ON CONFLICT (delegate_id) DO UPDATE SET random_token=excluded.random_token,"
            " deleted_at=excluded.deleted_at", (rec.delegate_id, rec.random_token, now))
        self._conn.execute("DELETE FROM delegates WHERE delegate_id=?", (delegate_id,))
        del self.by_id[delegate_id]
        log.info("delegate.deleted", delegate_id=delegate_id, host_name=rec.host_name)
        return rec

    def is_deleted(self, params: DelegateParams) -> bool:
        """Was this delegate (by id, or for ECS by its random token) deleted by a person?"""
        row = self._conn.execute(
            "SELECT 1 FROM deleted_delegates WHERE delegate_id=? OR"
            " (random_token IS NOT NULL AND random_token=?)",
            (params.delegate_id or "", params.delegate_random_token or "")).fetchone()
        return row is not None

    def set_profile(self, delegate_id: str, profile_id: str | None) -> None:
        rec = self.require(delegate_id)
        rec.assigned_profile_id = profile_id
        self._conn.execute("UPDATE delegates SET assigned_profile_id=? WHERE delegate_id=?",
                           (profile_id, delegate_id))

    def save_profile_result(self, delegate_id: str, result_json: str) -> None:
        self._conn.execute("UPDATE delegates SET profile_result=? WHERE delegate_id=?",
                           (result_json, delegate_id))
