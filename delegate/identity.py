"""Who this delegate is, as a value: `Identity(delegate_id, instance_id)`.

The instance id is made once per process; the delegate id is given by the manager at registration
(and kept across re-registrations). `Registration` holds the identity the manager last confirmed.
Only the registrar (`registration.Registrar`) confirms or forgets it; everyone else reads it, and
passes `identity.delegate_id` explicitly to each manager call that needs one.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    delegate_id: str
    instance_id: str


class Registration:
    """The confirmed identity, or None before the first registration."""

    def __init__(self, instance_id: str | None = None) -> None:
        self.instance_id = instance_id or str(uuid.uuid4())
        self._identity: Identity | None = None
        self._confirmed = asyncio.Event()

    @property
    def identity(self) -> Identity | None:
        return self._identity

    @property
    def delegate_id(self) -> str | None:
        return None if self._identity is None else self._identity.delegate_id

    def is_registered(self) -> bool:
        return self._confirmed.is_set()

    async def wait(self) -> Identity:
        """The identity, once the manager has confirmed one."""
        await self._confirmed.wait()
        assert self._identity is not None
        return self._identity

    def confirm(self, delegate_id: str) -> Identity:
        self._identity = Identity(delegate_id, self.instance_id)
        self._confirmed.set()
        return self._identity

    def withdraw(self) -> None:
        """Unregistered: readers wait again; the id is kept so that a re-registration reuses it."""
        self._confirmed.clear()
