"""Service deployments and ECS's own strategies on the local ECS, through plain boto3 over HTTP."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from devstack.aws.server import LocalAws
from tests.devstack.aws.native_world import NativeWorld
from tests.devstack.aws.world import EcsWorld, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def native_world(local_aws: LocalAws) -> NativeWorld:
    return NativeWorld(local_aws, f"n{uuid.uuid4().hex[:10]}")


def shifts(world: NativeWorld) -> list[str]:
    """The production traffic shifts the service's events tell, oldest first."""
    return [e["message"].split(" shifted ", 1)[1].split("%", 1)[0]
            for e in reversed(world.service()["events"]) if "% of production traffic" in e["message"]]


def test_rolling_deployments_are_service_deployments(ecs_world: EcsWorld) -> None:
    td1 = ecs_world.task_definition(image="app:1")
    ecs_world.create_service(td1, desired=2)
    ecs_world.wait_completed()
    td2 = ecs_world.task_definition(image="app:2")
    ecs_world.ecs.update_service(cluster=ecs_world.cluster, service="web", taskDefinition=td2)
    listed = ecs_world.ecs.list_service_deployments(cluster=ecs_world.cluster, service="web")
    newest, first = listed["serviceDeployments"]
    assert newest["status"] == "IN_PROGRESS"
    assert ":service-deployment/" + ecs_world.cluster + "/web/" in newest["serviceDeploymentArn"]
    assert first["status"] == "SUCCESSFUL"

    ecs_world.wait_completed()
    found = ecs_world.ecs.describe_service_deployments(
        serviceDeploymentArns=[newest["serviceDeploymentArn"], newest["serviceDeploymentArn"] + "x"])
    deployment = found["serviceDeployments"][0]
    assert deployment["status"] == "SUCCESSFUL"
    assert deployment["finishedAt"] >= deployment["createdAt"]
    assert deployment["targetServiceRevision"]["runningTaskCount"] == 2
    assert [f["reason"] for f in found["failures"]] == ["MISSING"]
    revision = ecs_world.ecs.describe_service_revisions(
        serviceRevisionArns=[deployment["targetServiceRevision"]["arn"]])["serviceRevisions"][0]
    assert revision["taskDefinition"] == td2
    assert deployment["sourceServiceRevisions"][0]["arn"] == first["targetServiceRevisionArn"]
    only_done = ecs_world.ecs.list_service_deployments(
        cluster=ecs_world.cluster, service="web", status=["IN_PROGRESS"])["serviceDeployments"]
    assert only_done == []


def test_a_breaker_rollback_and_a_stop_request_roll_a_rolling_deployment_back(ecs_world: EcsWorld) -> None:
    td1 = ecs_world.task_definition(image="app:1")
    ecs_world.create_service(td1, desired=2, breaker=True, rollback=True)
    ecs_world.wait_completed()
    bad = ecs_world.task_definition(image="app:bad", DEVSTACK_FAIL="start")
    ecs_world.ecs.update_service(cluster=ecs_world.cluster, service="web", taskDefinition=bad)
    arn = ecs_world.ecs.list_service_deployments(
        cluster=ecs_world.cluster, service="web")["serviceDeployments"][0]["serviceDeploymentArn"]

    def status() -> str:
        found = ecs_world.ecs.describe_service_deployments(serviceDeploymentArns=[arn])
        return str(found["serviceDeployments"][0]["status"])

    wait_for(lambda: status() == "ROLLBACK_SUCCESSFUL", "the breaker's rollback to finish")
    done = ecs_world.ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]
    assert "circuit breaker" in done["statusReason"]
    assert done["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    assert ecs_world.service()["taskDefinition"] == td1

    slow = ecs_world.task_definition(image="app:3")
    ecs_world.ecs.update_service(cluster=ecs_world.cluster, service="web", taskDefinition=slow)
    arn = ecs_world.ecs.list_service_deployments(
        cluster=ecs_world.cluster, service="web")["serviceDeployments"][0]["serviceDeploymentArn"]
    ecs_world.ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    wait_for(lambda: status() == "ROLLBACK_SUCCESSFUL", "the requested rollback to finish")
    ecs_world.wait_completed()
    assert ecs_world.service()["taskDefinition"] == td1
    with pytest.raises(ClientError) as raised:
        ecs_world.ecs.stop_service_deployment(serviceDeploymentArn=arn)
    assert raised.value.response["Error"]["Code"] == "ConflictException"


def test_blue_green_shifts_test_then_production_traffic_and_bakes(native_world: NativeWorld) -> None:
    w = native_world
    w.create_native_service(w.task_definition(image="app:1"), "BLUE_GREEN", bake=2)
    blue_tasks = {t["taskArn"] for t in w.running_tasks()}
    td2 = w.task_definition(image="app:2")
    w.ecs.update_service(cluster=w.cluster, service="web", taskDefinition=td2)
    arn = w.service_deployments()[0]["serviceDeploymentArn"]

    baking = w.wait_status(arn, ("IN_PROGRESS",))
    wait_for(lambda: w.describe(arn).get("lifecycleStage") == "BAKE_TIME", "the bake time")
    assert w.green_weight(w.test_rule) == 100
    assert w.green_weight() == 100
    assert blue_tasks <= {t["taskArn"] for t in w.running_tasks()}, "blue runs on through the bake"
    assert baking["alarms"]["status"] == "MONITORING"

    done = w.wait_status(arn, ("SUCCESSFUL",))
    assert done["targetServiceRevision"]["requestedProductionTrafficWeight"] == 100.0
    wait_for(lambda: not blue_tasks & {t["taskArn"] for t in w.running_tasks()}, "blue tasks stopped")
    assert shifts(w) == ["100"]
    assert w.service()["taskDefinition"] == td2
    assert w.service()["deployments"][0]["rolloutState"] == "COMPLETED"

    # The next deployment goes the other way: green is now production, the first group is the spare.
    w.ecs.update_service(cluster=w.cluster, service="web", taskDefinition=w.task_definition(image="app:3"))
    w.wait_status(w.service_deployments()[0]["serviceDeploymentArn"], ("SUCCESSFUL",))
    assert w.weights(w.prod_rule)[w.target_group] == 100


@pytest.mark.parametrize(("strategy", "config", "expected"), [
    ("LINEAR", {"linearConfiguration": {"stepPercent": 40.0, "stepBakeTimeInMinutes": 1}},
     ["40", "80", "100"]),
    ("CANARY", {"canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 1}}, ["10", "100"]),
])
def test_linear_and_canary_shift_in_steps(native_world: NativeWorld, strategy: str,
                                          config: dict[str, object], expected: list[str]) -> None:
    w = native_world
    w.create_native_service(w.task_definition(image="app:1"), strategy, **config)
    w.ecs.update_service(cluster=w.cluster, service="web", taskDefinition=w.task_definition(image="app:2"))
    arn = w.service_deployments()[0]["serviceDeploymentArn"]
    wait_for(lambda: 0 < w.green_weight() < 100, "a partial shift")
    assert w.describe(arn)["lifecycleStage"] == "PRODUCTION_TRAFFIC_SHIFT"
    w.wait_status(arn, ("SUCCESSFUL",))
    assert shifts(w) == expected


def test_an_alarm_during_the_bake_rolls_back(native_world: NativeWorld) -> None:
    w = native_world
    td1 = w.task_definition(image="app:1")
    w.create_native_service(td1, "CANARY", bake=50,
                            canaryConfiguration={"canaryPercent": 20.0, "canaryBakeTimeInMinutes": 0})
    w.ecs.update_service(cluster=w.cluster, service="web", taskDefinition=w.task_definition(image="app:2"))
    arn = w.service_deployments()[0]["serviceDeploymentArn"]
    wait_for(lambda: w.describe(arn).get("lifecycleStage") == "BAKE_TIME", "the bake time")
    w.set_alarm("ALARM")
    try:
        done = w.wait_status(arn, ("ROLLBACK_SUCCESSFUL",))
    finally:
        w.set_alarm("OK")
    assert done["alarms"]["triggeredAlarmNames"] == [w.alarm]
    assert done["alarms"]["status"] == "TRIGGERED"
    assert w.alarm in done["statusReason"]
    assert done["rollback"]["serviceRevisionArn"] == done["sourceServiceRevisions"][0]["arn"]
    assert w.green_weight() == 0 and w.green_weight(w.test_rule) == 0
    assert w.service()["taskDefinition"] == td1
    w.wait_completed()
    assert {t["taskDefinitionArn"] for t in w.running_tasks()} == {td1}


def test_pause_hooks_wait_for_continue_and_a_rollback_answer_rolls_back(native_world: NativeWorld) -> None:
    w = native_world
    td1 = w.task_definition(image="app:1")
    hooks = [{"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]},
             {"hookTargetArn": "arn:aws:lambda:us-east-1:123456789012:function:check",
              "roleArn": "arn:aws:iam::123456789012:role/hook", "lifecycleStages": ["POST_SCALE_UP"]}]
    w.create_native_service(td1, "BLUE_GREEN", lifecycleHooks=hooks)
    for answer, final in (("ROLLBACK", "ROLLBACK_SUCCESSFUL"), ("CONTINUE", "SUCCESSFUL")):
        w.ecs.update_service(cluster=w.cluster, service="web",
                             taskDefinition=w.task_definition(image=f"app:{answer}"))
        arn = w.service_deployments()[0]["serviceDeploymentArn"]
        paused = wait_for(lambda arn=arn: next((h for h in w.describe(arn)["lifecycleHookDetails"]
                                                if h["status"] == "AWAITING_ACTION"), None), "the pause")
        lam = w.describe(arn)["lifecycleHookDetails"][0]
        assert (lam["targetType"], lam["status"]) == ("AWS_LAMBDA", "SUCCEEDED"), "passed through"
        assert w.green_weight(w.test_rule) == 100 and w.green_weight() == 0
        w.ecs.continue_service_deployment(serviceDeploymentArn=arn, hookId=paused["hookId"], action=answer)
        done = w.wait_status(arn, (final,))
        expected = "SUCCEEDED" if answer == "CONTINUE" else "FAILED"
        assert done["lifecycleHookDetails"][-1]["status"] == expected
        assert w.service()["taskDefinition"].endswith(":1" if answer == "ROLLBACK" else ":3")


def test_a_stop_request_rolls_a_blue_green_deployment_back(native_world: NativeWorld) -> None:
    w = native_world
    td1 = w.task_definition(image="app:1")
    w.create_native_service(td1, "BLUE_GREEN", bake=50)
    w.ecs.update_service(cluster=w.cluster, service="web", taskDefinition=w.task_definition(image="app:2"))
    arn = w.service_deployments()[0]["serviceDeploymentArn"]
    wait_for(lambda: w.green_weight() == 100, "production traffic on green")
    w.ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    done = w.wait_status(arn, ("ROLLBACK_SUCCESSFUL",))
    assert "StopServiceDeployment" in done["statusReason"]
    assert w.green_weight() == 0
    assert w.service()["taskDefinition"] == td1
