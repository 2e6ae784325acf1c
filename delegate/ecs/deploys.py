"""Who deploys a service, and what each task's deploy did, recorded on the service itself.

One tag, `harness-delegate-deploy`, on the ECS service:

    task=<task id> deployment=<id or -> until=<epoch s> at=<epoch s> before=<ids joined by +>

- **A lease.** A deploy claims the service before it registers anything; while `until` is in the
  future (renewed as the deploy is followed) another task's deploy of that service waits up to its
  `concurrentDeployWaitS` or fails at once with "service S is being deployed by task T". A delegate
  that dies stops renewing, so its lease expires after `LEASE_S`. At the end the lease is released
  (`until=0`) and the tag stays as the record of the last deploy.
- **A record for redelivery.** `deployment` is the deployment this task started (`-` until
  UpdateService answered); `before` lists the deployments there were when the task claimed the
  service. A re-delivered task reads them back and never rolls out a second time (`rolling.py`).

Tags are written last-writer-wins, so a claim is read back after `SETTLE_S`: of two deploys
claiming together, the one that reads back its own claim goes on, the other sees the winner.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any

from delegate.ecs.aws import Aws
from delegate.ecs.watch import Deadline, describe_service, rolled_back_reason
from delegate.errors import PermanentError
from delegate.tasks.registry import TaskLog

TAG = "harness-delegate-deploy"
LEASE_S = 60.0  # a lease not renewed for this long has expired: its delegate is gone
RENEW_S = 15.0  # renewed this often while a deploy is followed
SETTLE_S = 1.0  # a claim is read back after this long
_WAIT_POLL_S = 2.0


class ServiceBusy(PermanentError):
    """Another task's deploy holds the service."""


@dataclass
class Record:
    task: str
    deployment: str | None = None
    op: str = "-"  # create | update | follow: what the task did to the service
    until: float = 0.0
    at: float = 0.0
    before: list[str] = field(default_factory=list)

    def value(self) -> str:
        return (f"task={self.task} op={self.op} deployment={self.deployment or '-'} until={int(self.until)} "
                f"at={int(self.at)} before={'+'.join(self.before[:5]) or '-'}")

    @classmethod
    def parse(cls, text: str) -> Record | None:
        parts = dict(p.split("=", 1) for p in text.split() if "=" in p)
        if not parts.get("task"):
            return None
        try:
            return cls(parts["task"], None if parts.get("deployment", "-") == "-" else parts["deployment"],
                       parts.get("op", "-"), float(parts.get("until", 0)), float(parts.get("at", 0)),
                       [b for b in parts.get("before", "-").split("+") if b and b != "-"])
        except ValueError:
            return None

    def held(self) -> bool:
        return self.until > time.time()


def read(service: dict[str, Any]) -> Record | None:
    for tag in service.get("tags") or []:
        if tag.get("key") == TAG:
            return Record.parse(str(tag.get("value", "")))
    return None


class Lease:
    """This task's claim on a service; `earlier` is what an earlier delivery of it recorded."""

    def __init__(self, aws: Aws, service_arn: str, record: Record, earlier: Record | None) -> None:
        self._aws, self._arn, self.record, self.earlier = aws, service_arn, record, earlier
        self._renewed = time.monotonic()

    async def _write(self, record: Record) -> None:
        await self._aws.call("ecs", "tag_resource", resourceArn=self._arn,
                             tags=[{"key": TAG, "value": record.value()}])
        self.record = record

    async def started(self, deployment_id: str, op: str) -> None:
        """Record the deployment this task started or follows (right after UpdateService answered)."""
        await self._write(replace(self.record, deployment=deployment_id, op=op))

    async def renew(self) -> None:
        if time.monotonic() - self._renewed >= RENEW_S:
            self._renewed = time.monotonic()
            await self._write(replace(self.record, until=time.time() + LEASE_S))

    async def release(self) -> None:
        await self._write(replace(self.record, until=0.0))


async def claim(aws: Aws, cluster: str, current: dict[str, Any], task_id: str, deadline: Deadline,
                wait_s: float, log: TaskLog) -> tuple[Lease, dict[str, Any]]:
    """Claim the service for this task (waiting up to `wait_s` for another task's deploy); returns
    the lease and the service as described after the claim."""
    name = str(current["serviceName"])
    waited_from = time.monotonic()
    told = False
    while True:
        found = read(current)
        if found is not None and found.task != task_id and found.held():
            waited = time.monotonic() - waited_from
            if waited >= wait_s or deadline.left() <= 0:
                raise ServiceBusy(
                    f"service {name} is being deployed by task {found.task} (its lease runs "
                    f"{max(found.until - time.time(), 0):.0f} s more); waited {waited:.0f} s of the "
                    f"{wait_s:g} s allowed (concurrentDeployWaitS). Run the deploys one after another.")
            if not told:
                log.info(f"service {name} is being deployed by task {found.task}; waiting up to "
                         f"{wait_s:g} s for it to finish")
                told = True
            await asyncio.sleep(min(_WAIT_POLL_S, max(wait_s - waited, 0.1)))
            current = await _describe(aws, cluster, name)
            continue
        earlier = found if found is not None and found.task == task_id else None
        now = time.time()
        ids = [str(d.get("id")) for d in current.get("deployments") or []]
        record = Record(task_id, earlier.deployment if earlier else None, earlier.op if earlier else "-",
                        now + LEASE_S,
                        earlier.at if earlier else now, earlier.before if earlier else ids)
        lease = Lease(aws, str(current["serviceArn"]), record, earlier)
        await lease._write(record)
        await asyncio.sleep(SETTLE_S)
        current = await _describe(aws, cluster, name)
        after = read(current)
        if after is not None and after.task == task_id:
            return lease, current


async def _describe(aws: Aws, cluster: str, name: str) -> dict[str, Any]:
    service = await describe_service(aws, cluster, name)
    if service is None:
        raise ServiceBusy(f"service {name} was deleted from cluster {cluster} while this deploy "
                          "waited to claim it")
    return service


def landed(service: dict[str, Any], td_arn: str, before: list[str],
           since: float) -> tuple[str | None, str | None]:
    """Did an UpdateService of `td_arn` sent after `before` reach ECS? (its deployment id or None,
    and the reason when ECS has already rolled it back or something replaced it)."""
    new = [d for d in service.get("deployments") or [] if str(d.get("id")) not in before]
    mine = [d for d in new if d.get("taskDefinition") == td_arn]
    if mine:
        return str(mine[-1]["id"]), None
    if new:
        return None, rolled_back_reason(service, None, since) or (
            f"deployment {new[0].get('id')} replaced it ({new[0].get('rolloutStateReason') or ''})")
    return None, None
