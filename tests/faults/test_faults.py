"""Issue 10's fault table, one test per row: every deploy runs once and is judged right through
kills, races, rollbacks and AWS blips (real manager and delegate processes, the local ECS behind a
fault proxy; `devstack/faultrows.py` says how each fault is made).

Each test checks the final status and message, the calls that change a service (UpdateService,
RegisterTaskDefinition, CreateService: one rollout per task), the service's final task definition
and desired count, its auto scaling (resumed: no target left suspended, the policy still there),
and that no tag is left on the service but the record of the last deploy.
"""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from devstack.faultcases import ORPHAN_S, Outcome

pytestmark = pytest.mark.timeout(400)
Outcomes = dict[str, Future[Outcome]]


def judge(o: Outcome, status: str, image: str, *, updates: int = 1, registrations: int = 1) -> None:
    assert o.status == status, f"{o.case}: {o.status} {o.message}\n{o.log}"
    assert (o.calls["UpdateService"], o.calls["RegisterTaskDefinition"], o.calls["CreateService"]) == (
        updates, registrations, 0), f"{o.case}: one rollout per task ({dict(o.calls)})\n{o.log}"
    assert o.image == image
    assert o.service["desiredCount"] == 4
    assert o.scaling == [(1, 6, False)], f"{o.case}: scaling resumed: {o.scaling}\n{o.log}"
    assert o.policies == ["cpu"]
    leftover = {k for k in o.tags if k != "harness-delegate-deploy"}
    assert not leftover, f"{o.case}: tags left on the service: {leftover}"
    record = o.tags.get("harness-delegate-deploy", "")
    assert "until=0 " in record, f"{o.case}: the lease is released: {record}"


def test_fault_free_deploy(outcomes: Outcomes) -> None:
    o = outcomes["fault-free"].result()
    judge(o, "SUCCEEDED", "app:2")
    assert o.result["updated"] is True
    assert o.images_registered == ["app:1", "app:2"]


def test_the_survivor_finishes_a_deploy_whose_delegate_was_killed(outcomes: Outcomes) -> None:
    o = outcomes["kill-survivor"].result()
    judge(o, "SUCCEEDED", "app:2")
    assert o.result["updated"] is True, "the first delivery updated the service"
    assert "an earlier delivery of this task updated service web" in o.log
    assert o.requeue_reasons, "re-queued after its delegate was lost"


def test_a_gracefully_stopped_delegate_hands_back_and_its_restart_finishes(outcomes: Outcomes) -> None:
    o = outcomes["sigterm-restart"].result()
    judge(o, "SUCCEEDED", "app:2")
    assert o.result["updated"] is True
    assert "RETRY_ON_OTHER_DELEGATE" in o.requeue_reasons, "handed back, not left to expire"
    assert "an earlier delivery of this task updated service web" in o.log


def test_a_rollback_while_the_delegate_was_dead_is_reported_not_redeployed(outcomes: Outcomes) -> None:
    o = outcomes["rollback-while-dead"].result()
    judge(o, "FAILED", "app:1")
    assert "rolled back by ECS" in o.message, o.message
    assert "deployment failed: tasks failed to start" in o.message, o.message
    assert o.result["updated"] is True
    assert "not deploying again" in o.log


def test_refused_connections_while_following_do_not_fail_a_deploy_ecs_completes(
        outcomes: Outcomes) -> None:
    o = outcomes["refused"].result()
    judge(o, "SUCCEEDED", "app:2")
    told = [line for line in o.log.splitlines() if "retrying with backoff" in line]
    assert len(told) == 1 and "unreachable" in told[0], f"told once: {told}"


def test_throttling_while_following_does_not_fail_a_deploy_ecs_completes(outcomes: Outcomes) -> None:
    o = outcomes["throttled"].result()
    judge(o, "SUCCEEDED", "app:2")
    told = [line for line in o.log.splitlines() if "retrying with backoff" in line]
    assert len(told) == 1 and "ThrottlingException" in told[0], f"told once: {told}"


def test_an_update_in_flight_when_aws_freezes_is_read_back_not_resent(outcomes: Outcomes) -> None:
    o = outcomes["frozen-update"].result()
    judge(o, "SUCCEEDED", "app:1", registrations=0)
    assert "the update reached ECS" in o.log, o.log
    assert o.result["updated"] is True


def test_two_deploys_of_one_service_one_fails_at_once_naming_the_other(outcomes: Outcomes) -> None:
    o = outcomes["two-deploys"].result()
    first, second = o.task, o.others[0]
    won, lost = (first, second) if first["status"] == "SUCCEEDED" else (second, first)
    assert (won["status"], lost["status"]) == ("SUCCEEDED", "FAILED"), (first, second)
    assert f"service web is being deployed by task {won['taskId']}" in lost["errorMessage"], lost
    image = "app:2" if won is first else "app:3"
    assert (o.calls["UpdateService"], o.calls["RegisterTaskDefinition"]) == (1, 1), dict(o.calls)
    assert o.image == image
    assert o.images_registered == ["app:1", image], "the loser registered nothing"
    assert o.scaling == [(1, 6, False)]
    assert not {k for k in o.tags if k != "harness-delegate-deploy"}


def test_two_deploys_of_one_service_that_may_wait_run_one_after_the_other(outcomes: Outcomes) -> None:
    o = outcomes["two-deploys-wait"].result()
    first, second = o.task, o.others[0]
    assert (first["status"], second["status"]) == ("SUCCEEDED", "SUCCEEDED"), (first, second)
    waited = [t for t in (first, second) if "is being deployed by task" in
              "\n".join(str(line.get("message")) for line in t.get("logLines") or [])]
    assert len(waited) == 1, "one waited for the other"
    assert (o.calls["UpdateService"], o.calls["RegisterTaskDefinition"]) == (2, 2), dict(o.calls)
    assert o.image == ("app:3" if waited[0] is second else "app:2"), "the one that waited went last"
    assert o.scaling == [(1, 6, False)]
    assert not {k for k in o.tags if k != "harness-delegate-deploy"}


def test_a_kill_right_after_the_update_is_redelivered_at_once_and_tells_the_whole_story(
        outcomes: Outcomes) -> None:
    o = outcomes["kill-restart"].result()
    judge(o, "SUCCEEDED", "app:2")
    assert o.result["updated"] is True, "the first delivery updated the service"
    assert "updated service web to" in o.log, "the killed delivery's update line, from its journal"
    assert "an earlier delivery of this task updated service web" in o.log
    assert o.requeue_reasons == ["RETRY_ON_OTHER_DELEGATE"], "handed back by the restart, not orphaned"
    assert o.elapsed_s < ORPHAN_S + 10
