"""Several manager processes on one PostgreSQL database (replicas behind a load balancer).

What one process did alone, the replicas share through the database:

- **Events.** A delegate's stream is held by whichever replica it connected to. Task offers and
  abort events are published with `NOTIFY manager_events` (`Fanout.publish`); every replica
  LISTENs on a connection of its own (`Fanout.run`) and hands each event to the streams it holds.
  The replica that published hears its own notification like the others do.
- **Decisions made once.** The periodic job (disconnect marking, expiry, re-queueing, rebroadcasts)
  runs on one replica at a time: the holder of a session-level advisory lock (`Leader`). When the
  holder dies its database session ends, the lock is free, and the next replica to tick takes
  it over. Every decision is a conditional UPDATE anyway, so an overlap changes nothing twice.
- **Acquisition** needs nothing more: it is one conditional UPDATE (`... WHERE status='QUEUED'`),
  which PostgreSQL applies once whichever replica asks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import structlog

from manager.db import DatabaseUnavailable
from manager.pgstore import PgConnection

log = structlog.get_logger("manager")

CHANNEL = "manager_events"
LEADER_LOCK = 0x6D616E62  # the periodic job's lock ("manb")
RECONNECT_S = 0.5

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class Fanout:
    def __init__(self, url: str, conn: PgConnection) -> None:
        self._url = url
        self._conn = conn
        self.listening = asyncio.Event()

    def publish(self, event: dict[str, Any]) -> None:
        """Tell every replica (this one included); 503 when the database is away."""
        self._conn.execute("SELECT pg_notify(?, ?)",
                           (CHANNEL, json.dumps(event, separators=(",", ":"))))

    async def run(self, handle: Handler) -> None:
        """LISTEN until cancelled, reconnecting through outages."""
        lost = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self._url, autocommit=True, connect_timeout=2) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if lost:
                        log.info("replicas.listening_again")
                        lost = False
                    async for note in conn.notifies():
                        try:
                            await handle(json.loads(note.payload))
                        except DatabaseUnavailable:
                            pass  # the event's task could not be read: the rebroadcast retries
                        except Exception:
                            log.exception("replicas.event_failed", payload=note.payload[:200])
            except psycopg.OperationalError as exc:
                self.listening.clear()
                if not lost:
                    log.warning("replicas.listen_lost", error=str(exc).splitlines()[0][:200]
                                if str(exc) else type(exc).__name__)
                lost = True
                await asyncio.sleep(RECONNECT_S)


class Leader:
    """Whether this replica runs the periodic job: it holds the advisory lock on its store
    connection (a new connection after an outage must win it again)."""

    def __init__(self, conn: PgConnection) -> None:
        self._conn = conn
        self._held_on = -1  # the store connection's generation the lock was taken on
        #: since when this replica has led without a break in its database connection
        self.up_since_ms = 0

    def is_leader(self) -> bool:
        if self._held_on == self._conn.generation:
            return True
        row = self._conn.execute("SELECT pg_try_advisory_lock(?) AS won",
                                 (LEADER_LOCK,)).fetchone()
        if row is not None and row["won"]:
            self._held_on = self._conn.generation
            self.up_since_ms = self._conn.connected_at_ms
            log.info("replicas.leader", generation=self._held_on)
            return True
        return False
