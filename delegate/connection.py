"""Staying connected: register, then keep the delegate visible to the manager until cancelled.

The roles live in their own modules: `registration.py` (register, re-register, ECS keep-alive),
`stream.py` (POLL_FOR_TASKS=false: the websocket) and `polling.py` (POLL_FOR_TASKS=true: HTTP
heartbeats and task-event polling). This module only picks and runs them; any of them raising
(SelfDestruct, or a retry policy giving up) ends the connection, and with it the agent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from delegate.config import Settings
from delegate.registration import Registrar


class Link(Protocol):
    """The stream or the poller: its named loops, all of which run while connected."""

    def loops(self) -> dict[str, Coroutine[Any, Any, None]]: ...


class Connection:
    def __init__(self, settings: Settings, registrar: Registrar, link: Link) -> None:
        self._s = settings
        self._registrar = registrar
        self._link = link

    async def run(self) -> None:
        """Register, then stay connected until cancelled. Raises SelfDestruct if told to go."""
        await self._registrar.ensure()
        loops = self._link.loops()
        if self._s.is_ecs:
            loops["keep_alive"] = self._registrar.keep_alive()
        async with asyncio.TaskGroup() as group:
            for name, loop in loops.items():
                group.create_task(loop, name=f"connection.{name}")
