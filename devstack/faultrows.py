"""The rows of the fault table (issue 10): each sets up its fault, runs one deploy, returns the
Outcome. `ROWS` maps a row's name to (what it does, how it runs, whether its world has the breaker).

Timings are chosen so the suite stays short: a refused or frozen AWS lasts a little longer than the
delegate's own timeouts (botocore's 30 s read timeout for the freeze), not the issue's minutes.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from devstack.faultcases import Case, Outcome, after, kill
from devstack.procs import wait_until

REFUSE_S = 15.0
FREEZE_S = 33.0  # longer than the delegate's 30 s read timeout: UpdateService times out
THROTTLES = 6
RESTART_AFTER_S = 2.0


def fault_free(case: Case) -> Outcome:
    case.delegate()
    started = time.monotonic()
    return case.outcome(case.submit(), started)


def kill_with_a_survivor(case: Case) -> Outcome:
    """Two delegates in the group; the one that sent UpdateService is SIGKILLed right after it."""
    first, second = case.delegate(0), case.delegate(1)
    case.proxies[0].on_call("UpdateService", kill(first))
    case.proxies[1].on_call("UpdateService", kill(second))
    started = time.monotonic()
    return case.outcome(case.submit(), started)


def sigterm_and_restart(case: Case) -> Outcome:
    """Graceful stop mid-deploy (a 1 s drain budget: the task is handed back), restarted on the
    same work dir."""
    env = {"DELEGATE_SHUTDOWN_BUDGET_S": "1"}
    proc = case.delegate(0, **env)
    case.proxies[0].on_call("UpdateService", kill(proc, signal.SIGTERM))
    started = time.monotonic()
    task_id = case.submit()
    wait_until(lambda: not proc.alive(), 60, "the delegate to stop")
    case.delegate(0, **env)
    return case.outcome(task_id, started)


def rollback_while_dead(case: Case) -> Outcome:
    """The new image never starts; the breaker rolls back while the delegate is dead; it comes back."""
    proc = case.delegate(0)
    case.proxies[0].on_call("UpdateService", kill(proc))
    started = time.monotonic()
    task_id = case.submit("app:broken", env={"DEVSTACK_FAIL": "start"})
    wait_until(lambda: not proc.alive(), 60, "the delegate to die")
    wait_until(lambda: case.deployments() == ["COMPLETED"] and _image(case) == "app:1", 60,
               "ECS to roll back")
    case.delegate(0)
    return case.outcome(task_id, started)


def refused_while_following(case: Case) -> Outcome:
    proc = case.delegate(0)
    proxy = case.proxies[0]

    def refuse() -> None:
        proxy.refuse()
        after(REFUSE_S, proxy.accept)

    proxy.on_call("UpdateService", refuse)
    del proc
    started = time.monotonic()
    return case.outcome(case.submit(), started)


def throttled_while_following(case: Case) -> Outcome:
    case.delegate(0)
    proxy = case.proxies[0]
    proxy.on_call("UpdateService", lambda: proxy.throttle("DescribeServices", THROTTLES))
    started = time.monotonic()
    return case.outcome(case.submit(), started)


def frozen_during_update(case: Case) -> Outcome:
    """UpdateService (forceNewDeployment, same image) reaches ECS, then AWS freezes: no answer."""
    case.delegate(0)
    proxy = case.proxies[0]

    def freeze() -> None:
        proxy.freeze()
        after(FREEZE_S, proxy.thaw)

    proxy.on_call("UpdateService", freeze)
    started = time.monotonic()
    return case.outcome(case.submit("app:1", forceNewDeployment=True), started)


def two_deploys_together(case: Case) -> Outcome:
    """Two deploys of one service submitted together (two delegates, one each); the outcome is the
    first submitted, `others` the second."""
    case.delegate(0)
    case.delegate(1)
    started = time.monotonic()
    first, second = case.submit("app:2"), case.submit("app:3")
    return case.outcome(first, started, [second])


def two_deploys_one_waits(case: Case) -> Outcome:
    """As `two_deploys_together`, but each may wait for the other (concurrentDeployWaitS): both
    roll out, one after the other."""
    case.delegate(0)
    case.delegate(1)
    started = time.monotonic()
    first = case.submit("app:2", concurrentDeployWaitS=90)
    second = case.submit("app:3", concurrentDeployWaitS=90)
    return case.outcome(first, started, [second])


def kill_after_update_and_restart(case: Case) -> Outcome:
    """SIGKILL right after UpdateService passes (as the deploy record that follows it reaches AWS,
    so the delegate has logged the update but most likely not shipped the line yet: its task
    journal must bring it back); the same delegate restarts 2 s later."""
    proc = case.delegate(0)
    proxy = case.proxies[0]
    proxy.on_call("UpdateService", lambda: proxy.on_call("TagResource", kill(proc)))
    started = time.monotonic()
    task_id = case.submit()
    wait_until(lambda: not proc.alive(), 60, "the delegate to die")
    time.sleep(RESTART_AFTER_S)
    case.delegate(0)
    return case.outcome(task_id, started)


def restart_manager_while_following(case: Case, port: int) -> tuple[Outcome, float]:
    """The case's own manager, listening on `port` and reached through a fault proxy (its public
    URL), is stopped and started again on the same data dir and port right after UpdateService
    passes. Returns the outcome and the seconds from the manager answering again to the delegate's
    stream reconnecting."""
    proc = case.delegate(0)
    proc.wait_event("stream.connected", timeout=60)
    stopped: list[float] = []
    answering: list[float] = []

    def restart() -> None:
        stopped.append(datetime.now(UTC).timestamp())
        case.manager.port = port  # its env names the proxy's port; it listens on its own
        case.manager.restart()  # returns once the manager is ready (it answers again)
        answering.append(datetime.now(UTC).timestamp())

    case.proxies[0].on_call("UpdateService", lambda: after(0, restart))
    started = time.monotonic()
    task_id = case.submit()
    wait_until(lambda: answering, 90, "the manager to be restarted")
    reconnected = wait_until(
        lambda: [e for e in proc.find("stream.connected")
                 if datetime.fromisoformat(str(e["timestamp"])).timestamp() > stopped[0]],
        60, "the delegate's stream to reconnect")
    at = datetime.fromisoformat(str(reconnected[0]["timestamp"])).timestamp()
    return case.outcome(task_id, started), at - answering[0]


def _image(case: Case) -> str:
    service = case.ecs.describe_services(cluster=case.cluster, services=["web"])["services"][0]
    td = case.ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    return str(td["containerDefinitions"][0]["image"])


@dataclass(frozen=True)
class Row:
    what: str
    run: Callable[[Case], Outcome]
    breaker: bool = False


ROWS: dict[str, Row] = {
    "fault-free": Row("no fault (the floor)", fault_free),
    "kill-survivor": Row("2 delegates; the deploying one SIGKILLed after UpdateService",
                         kill_with_a_survivor),
    "sigterm-restart": Row("SIGTERM mid-deploy (drain 1 s), restarted on the same work dir",
                           sigterm_and_restart),
    "rollback-while-dead": Row("breaker rolls back while the delegate is dead; it comes back",
                               rollback_while_dead, breaker=True),
    "refused": Row(f"AWS refuses connections {REFUSE_S:g} s while following", refused_while_following),
    "throttled": Row(f"DescribeServices throttled {THROTTLES} times in a row while following",
                     throttled_while_following),
    "frozen-update": Row(f"AWS freezes {FREEZE_S:g} s with UpdateService (force) in flight",
                         frozen_during_update),
    "two-deploys": Row("two deploys of one service submitted together", two_deploys_together),
    "two-deploys-wait": Row("the same, each willing to wait for the other (concurrentDeployWaitS)",
                            two_deploys_one_waits),
    "kill-restart": Row(f"SIGKILL after UpdateService (its record), restart {RESTART_AFTER_S:g} s later",
                        kill_after_update_and_restart),
}
