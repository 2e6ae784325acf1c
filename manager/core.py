"""The manager's state and the rules that span parts: one `Manager` per process.

Handlers reach it as `request.app[MANAGER]`. It owns the SQLite connection, the delegate registry,
the task store, the websocket hub and the dispatcher, and runs the periodic job (`tick`).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, cast

import structlog
from aiohttp import web

from manager import db, replicas, store
from manager.auth import DEFAULT_TOKEN_NAME, AgentAuth
from manager.delegates import DelegateRecord, Delegates
from manager.dispatch import Dispatcher, matches
from manager.hub import StreamHub
from manager.identity import Connections, ConnectionStore
from manager.people import People, PeopleStore, digest
from manager.pgstore import PgConnection
from manager.settings import ManagerSettings
from manager.tasks import NewTask, TaskStore, target
from manager.tokens import DelegateTokens, TokenStore, load_or_create_key
from protocol.wire import (
    DelegateParams,
    DelegateTaskAbortEvent,
    DelegateTaskEvent,
    TaskStatus,
)

log = structlog.get_logger("manager")


class Manager:
    def __init__(self, settings: ManagerSettings) -> None:
        self.settings = settings
        self.conn: sqlite3.Connection = store.open_database(settings)
        #: replicas on PostgreSQL: events travel through the database, one replica leads the job
        self.shared = settings.database_url is not None
        self.fanout: replicas.Fanout | None = None
        self.leader: replicas.Leader | None = None
        if settings.database_url is not None:
            pg = cast(PgConnection, self.conn)
            self.fanout = replicas.Fanout(settings.database_url.get_secret_value(), pg)
            self.leader = replicas.Leader(pg)
        account = db.load_or_create_account(self.conn)
        self.tokens = DelegateTokens(TokenStore(self.conn, load_or_create_key(settings.key_path)))
        if account.delegate_token:  # the account's first token becomes `default`, encrypted
            self.tokens.ensure_default(DEFAULT_TOKEN_NAME, account.delegate_token, db.now_ms())
            self.conn.execute("UPDATE account SET delegate_token=''")
        default = self.tokens.by_name.get(DEFAULT_TOKEN_NAME)
        self.people = People(PeopleStore(self.conn))
        self.account = db.Account(account.account_id, default.secret if default else "",
                                  self._bootstrap_key(account.api_key))
        self.auth = AgentAuth(self.account, self.tokens, audience=lambda: self.public_url)
        self.connections = Connections(ConnectionStore(self.conn), shared=self.shared)
        self.delegates = Delegates(self.conn, disconnect_after_s=settings.disconnect_after_s,
                                   ecs_stale_slot_s=settings.ecs_stale_slot_s,
                                   shared=self.shared)
        self.tasks = TaskStore(self.conn, validation_timeout_s=settings.validation_timeout_s)
        self.hub = StreamHub()
        self.dispatcher = Dispatcher(self.delegates, self.hub, fanout=settings.broadcast_fanout)
        self._rebroadcast_ms = int(settings.rebroadcast_s * 1000)
        self._orphan_ms = int(settings.task_orphan_s * 1000)
        #: a manager that was down cannot tell a lost delegate from one that could not reach it:
        #: it judges heartbeats only once it has been up for the whole threshold
        self.started_ms = db.now_ms()
        #: where delegates and people reach this manager (downloads use it, never a Host header);
        #: `ManagerServer.start` sets it once the port is bound
        self.public_url = settings.url_for(settings.port)

    def _bootstrap_key(self, first: str) -> str:
        """The first admin API key: its hash in the store, its value in DATA_DIR/admin-api-key
        (0600) for the operator and the local harness; '' once that file is gone."""
        path = self.settings.data_dir / "admin-api-key"
        if first and not self.people.store.list_keys():
            self.people.store.add_key("bootstrap", "admin", digest(first), db.now_ms())
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(first + "\n")
        if first:
            self.conn.execute("UPDATE account SET api_key=''")
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        self.conn.close()

    # --- delegates -----------------------------------------------------------------------------

    def heartbeat(self, params: DelegateParams) -> DelegateRecord:
        now = db.now_ms()
        rec = self.delegates.heartbeat(params, now)
        self.tasks.touch_listed(rec.delegate_id, params.currently_executing_delegate_tasks, now)
        return rec

    def pending_events(self, rec: DelegateRecord, limit: int = 100) -> list[dict[str, Any]]:
        """Task events for QUEUED tasks this delegate may take, then abort events for its tasks."""
        now = db.now_ms()
        events: list[dict[str, Any]] = []
        for row in self.tasks.queued():
            t = target(row)
            if matches(rec, t):
                events.append(DelegateTaskEvent(
                    account_id=t.account_id, delegate_task_id=t.task_id, sync=t.sync,
                    task_type=t.task_type).dump())
                if len(events) >= limit:
                    break
        for task_id in self.tasks.abort_events_for(rec.delegate_id, now):
            events.append(DelegateTaskAbortEvent(account_id=rec.account_id,
                                                 delegate_task_id=task_id).dump())
        return events

    # --- tasks ---------------------------------------------------------------------------------

    async def submit(self, new: NewTask) -> str:
        now = db.now_ms()
        row = self.tasks.submit(new, now)
        await self._broadcast(row, now)
        return str(row["task_id"])

    async def _broadcast(self, row: sqlite3.Row, now: int) -> None:
        round_no = int(row["broadcast_round"])
        if self.fanout is not None:  # every replica offers it to the streams it holds
            self.tasks.mark_broadcast(row["task_id"], round_no + 1, now + self._rebroadcast_ms)
            self.fanout.publish({"kind": "task", "taskId": row["task_id"], "round": round_no})
            return
        await self.dispatcher.broadcast(target(row), round_no, now)
        self.tasks.mark_broadcast(row["task_id"], round_no + 1, now + self._rebroadcast_ms)

    async def on_replica_event(self, event: dict[str, Any]) -> None:
        """An event published by a replica (this one too): pass it to the streams held here."""
        if event.get("kind") == "task":
            row = self.tasks.get(str(event["taskId"]))
            if row is not None and row["status"] in (TaskStatus.QUEUED, TaskStatus.VALIDATING):
                await self.dispatcher.broadcast(target(row), int(event["round"]), db.now_ms())
        elif event.get("kind") == "abort" and self.hub.has(str(event["delegateId"])):
            await self.hub.send(str(event["delegateId"]), DelegateTaskAbortEvent(
                account_id=str(event["accountId"]),
                delegate_task_id=str(event["taskId"])).dump())

    async def abort(self, task_id: str) -> None:
        now = db.now_ms()
        before = self.tasks.abort(task_id, now)
        delegate_id = before["delegate_id"]
        if delegate_id and before["acquired_at"] is not None:
            if self.fanout is not None:
                self.fanout.publish({"kind": "abort", "taskId": task_id,
                                     "delegateId": delegate_id,
                                     "accountId": before["account_id"]})
                return
            event = DelegateTaskAbortEvent(account_id=before["account_id"],
                                           delegate_task_id=task_id).dump()
            await self.hub.send(delegate_id, event)

    async def requeued(self, task_id: str) -> None:
        row = self.tasks.get(task_id)
        if row is not None:
            await self._broadcast(row, db.now_ms())

    # --- delegate tokens -----------------------------------------------------------------------

    async def revoke_token(self, name: str) -> list[str]:
        """Revoke: its delegates are told `REVOKED_TOKEN` and disconnected, what they ran is handed
        back to the queue. Returns their ids."""
        now = db.now_ms()
        self.tokens.revoke(name, now)
        self.auth.forget()
        told = sorted(self.connections.delegates_of_token(name))
        for delegate_id in told:
            await self.hub.send_text(delegate_id, "REVOKED_TOKEN")
            await self.hub.close(delegate_id, "delegate token revoked")
            for row in self.tasks.running_on(delegate_id):
                if row["requeue_on_loss"] and self.tasks.requeue(row["task_id"], row["timeout_ms"],
                                                                 now):
                    log.info("task.requeued", task_id=row["task_id"], reason="token revoked")
                    await self.requeued(row["task_id"])
            rec = self.delegates.get(delegate_id)
            if rec is not None:
                self.delegates.unregister(delegate_id)
        return told

    def rotate_token(self, name: str, grace_s: int) -> str:
        t = self.tokens.rotate(name, db.now_ms(), grace_s)
        self.auth.forget()
        return t.secret

    # --- the periodic job ----------------------------------------------------------------------

    async def tick(self) -> None:
        """Token changes (every replica); then disconnect marking, expiry, re-queueing lost tasks,
        rebroadcasting: among replicas, by the leader only. Called every ~1 s."""
        before = {t.name: (t.status, t.secret) for t in self.tokens.by_name.values()}
        self.tokens.reload()  # revocations made through another replica
        if before != {t.name: (t.status, t.secret) for t in self.tokens.by_name.values()}:
            self.auth.forget()
        # streams this replica held that closed and did not come back (every replica: its own)
        self.delegates.mark_streams_gone(db.now_ms(), int(self.settings.stream_gone_after_s * 1000),
                                         self.hub.has)
        if self.leader is not None and not self.leader.is_leader():
            return
        now = db.now_ms()
        up_ms = now - self.started_ms
        if self.leader is not None:  # nor after the database was away: heartbeats were refused
            up_ms = min(up_ms, now - self.leader.up_since_ms)
        if up_ms > self.settings.disconnect_after_s * 1000:
            self.delegates.mark_disconnected(now)
        self._expire(now)
        if up_ms > self._orphan_ms:
            self._requeue_orphans(now)
        for row in self.tasks.due_broadcasts(now):
            await self._broadcast(row, now)

    def _expire(self, now: int) -> None:
        for row in self.tasks.due(now):
            status = row["status"]
            if status == TaskStatus.QUEUED:
                reason = self.dispatcher.reason(target(row), now)
                self.tasks.finish(row["task_id"], status, TaskStatus.EXPIRED,
                                  f"not acquired within {row['timeout_ms']} ms: {reason}", now)
            elif status == TaskStatus.VALIDATING:
                reasons = db.from_json(row["capability_failures"], []) or [
                    "no delegate reported passing capability checks"]
                self.tasks.finish(row["task_id"], status, TaskStatus.FAILED,
                                  "capability checks failed: " + "; ".join(reasons), now)
            else:
                self.tasks.finish(
                    row["task_id"], status, TaskStatus.EXPIRED,
                    f"delegate {row['delegate_id']} sent no result within timeoutMs "
                    f"({row['timeout_ms']} ms) + 60 s", now)

    def _requeue_orphans(self, now: int) -> None:
        cutoff = now - self._orphan_ms
        for row in self.tasks.started_before(cutoff):
            rec = self.delegates.get(row["delegate_id"])
            if rec is None or not self.delegates.is_connected(rec, now):
                why = f"delegate {row['delegate_id']} is disconnected"
            elif (row["last_seen_at"] or 0) < cutoff:
                why = (f"delegate {row['delegate_id']} has not listed it in its heartbeats for "
                       f"{self.settings.task_orphan_s:g} s")
            else:
                continue
            if row["requeue_on_loss"]:
                if self.tasks.requeue(row["task_id"], row["timeout_ms"], now):
                    log.info("task.requeued", task_id=row["task_id"], reason=why)
            else:
                self.tasks.finish(row["task_id"], TaskStatus.STARTED.value, TaskStatus.FAILED,
                                  f"delegate lost: {why}", now)


MANAGER = web.AppKey("manager", Manager)
