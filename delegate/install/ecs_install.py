"""The install guide's steps 2 and 3 with boto3: register the task definition, create or update the
service, wait until the delegate's tasks run. Safe to repeat: an unchanged task definition is not
registered again, an unchanged service is not updated.

This runs on a person's machine (a CLI, not the delegate's event loop), so plain synchronous boto3
is right here. Progress goes to the `progress` callback, one line per step; no secret is ever in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from delegate.ecs.manifests import same_task_definition
from delegate.tasks.registry import TaskLog
from protocol.taskspec import FAMILY, SpecError

Progress = Callable[[str], None]

class InstallError(Exception):
    """An install step failed; the message says which, with what, and what to do."""


@dataclass(frozen=True)
class ServicePlan:
    cluster: str
    service_name: str
    desired_count: int = 1
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: bool = False
    wait_timeout_s: float = 600.0
    poll_s: float = 5.0


@dataclass(frozen=True)
class Outcome:
    task_definition_arn: str
    registered: bool  # False: the current revision already matched
    service_action: str  # "created", "updated" or "unchanged"
    running_count: int


class _ProgressLog(TaskLog):
    """The task-log interface `follow` writes to, printed as install progress."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def info(self, message: str) -> None:
        self._progress(message)

    def warn(self, message: str) -> None:
        self._progress(f"warning: {message}")

    def error(self, message: str) -> None:
        self._progress(f"error: {message}")


class EcsInstaller:
    """Steps 2 and 3 of the guide against one region, through boto3 clients made by the caller."""

    def __init__(self, ecs: Any, progress: Progress, region: str) -> None:
        self.ecs = ecs
        self.progress = progress
        self.region = region

    def _call(self, operation: str, what: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return getattr(self.ecs, operation)(**kwargs)
        except NoCredentialsError as exc:
            raise InstallError("no AWS credentials: run 'aws configure' or set AWS_PROFILE / "
                               "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from exc
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise InstallError(f"{what} failed: {err.get('Code', 'Error')}: "
                               f"{err.get('Message', '')}".rstrip(": ")) from exc
        except BotoCoreError as exc:
            raise InstallError(f"{what} failed: {exc}") from exc

    def check_cluster(self, cluster: str) -> None:
        answer = self._call("describe_clusters", f"looking up cluster {cluster!r}",
                            clusters=[cluster])
        active = [c for c in answer.get("clusters", []) if c.get("status") == "ACTIVE"]
        if not active:
            raise InstallError(f"cluster {cluster!r} not found (or not ACTIVE) in this region; "
                               "create it first or pass the right --cluster / --region")
        self.progress(f"cluster {cluster}: ACTIVE, "
                      f"{active[0].get('registeredContainerInstancesCount', 0)} container instance(s)")

    def register(self, spec: dict[str, Any]) -> tuple[str, bool]:
        family = str(spec.get("family") or FAMILY)
        from botocore.exceptions import ClientError

        try:
            current = self.ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        except ClientError:
            current = None
        if current is not None and same_task_definition(current, spec):
            arn = str(current["taskDefinitionArn"])
            self.progress(f"task definition {family}:{current['revision']} is current: not registered again")
            return arn, False
        answer = self._call("register_task_definition", f"registering task definition {family}",
                            **spec)
        td = answer["taskDefinition"]
        self.progress(f"registered task definition {family}:{td['revision']}")
        return str(td["taskDefinitionArn"]), True

    def ensure_service(self, plan: ServicePlan, td_arn: str, awsvpc: bool) -> str:
        answer = self._call("describe_services", f"looking up service {plan.service_name!r}",
                            cluster=plan.cluster, services=[plan.service_name])
        live = [s for s in answer.get("services", []) if s.get("status") == "ACTIVE"]
        network = None
        if awsvpc:
            if not plan.subnets:
                raise InstallError("AWS VPC mode needs --subnets (and --security-groups): the "
                                   "subnets the delegate's tasks run in")
            network = {"awsvpcConfiguration": {
                "subnets": list(plan.subnets), "securityGroups": list(plan.security_groups),
                "assignPublicIp": "ENABLED" if plan.assign_public_ip else "DISABLED"}}
        if live:
            service = live[0]
            if (service.get("taskDefinition") == td_arn
                    and service.get("desiredCount") == plan.desired_count):
                self.progress(f"service {plan.service_name}: already runs {td_arn.rsplit('/', 1)[-1]} "
                              f"x{plan.desired_count}: unchanged")
                return "unchanged"
            kwargs: dict[str, Any] = {"cluster": plan.cluster, "service": plan.service_name,
                                      "taskDefinition": td_arn, "desiredCount": plan.desired_count}
            if network is not None:
                kwargs["networkConfiguration"] = network
            self._call("update_service", f"updating service {plan.service_name!r}", **kwargs)
            self.progress(f"service {plan.service_name}: updated to {td_arn.rsplit('/', 1)[-1]} "
                          f"x{plan.desired_count}")
            return "updated"
        kwargs = {"cluster": plan.cluster, "serviceName": plan.service_name,
                  "taskDefinition": td_arn, "desiredCount": plan.desired_count,
                  "deploymentConfiguration": {
                      "maximumPercent": 200, "minimumHealthyPercent": 100,
                      "deploymentCircuitBreaker": {"enable": True, "rollback": True}}}
        if network is not None:
            kwargs.update(launchType="FARGATE", networkConfiguration=network)
        self._call("create_service", f"creating service {plan.service_name!r} in {plan.cluster!r}",
                   **kwargs)
        self.progress(f"service {plan.service_name}: created in {plan.cluster} "
                      f"with {plan.desired_count} task(s)")
        return "created"

    def wait_running(self, plan: ServicePlan, td_arn: str) -> int:
        """Until the service's current deployment completes, judged exactly as the delegate judges
        its own deploys (`delegate.ecs.watch.follow`: rollout state, circuit breaker, events)."""
        answer = self._call("describe_services", f"looking up service {plan.service_name!r}",
                            cluster=plan.cluster, services=[plan.service_name])
        deployments = (answer.get("services") or [{}])[0].get("deployments") or []
        primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
        if primary is None or primary.get("taskDefinition") != td_arn:
            raise InstallError(f"service {plan.service_name} has no deployment of {td_arn}; "
                               "check the service's events in the ECS console")
        verdict = asyncio.run(self._follow(plan, str(primary["id"])))
        if not verdict.ok:
            raise InstallError(f"{verdict.message}; the service carries on. Check the cluster has "
                               "room (memory) and the service's events in the ECS console")
        running = int(verdict.deployment.get("runningCount") or 0)
        self.progress(f"service {plan.service_name}: {running} delegate task(s) running")
        return running

    async def _follow(self, plan: ServicePlan, deployment_id: str) -> Any:
        from delegate.ecs.aws import Aws
        from delegate.ecs.inputs import AwsAccess
        from delegate.ecs.watch import Deadline, follow

        aws = Aws(AwsAccess(region=self.region, cluster=plan.cluster))  # the default chain, as here
        return await follow(aws, plan.cluster, plan.service_name, deployment_id,
                            _ProgressLog(self.progress), Deadline.after(plan.wait_timeout_s),
                            plan.poll_s)

    def install(self, spec: dict[str, Any], plan: ServicePlan, wait: bool = True) -> Outcome:
        if plan.desired_count < 0:
            raise SpecError("--desired-count must be 0 or more")
        self.check_cluster(plan.cluster)
        awsvpc = spec.get("networkMode") == "awsvpc"
        td_arn, registered = self.register(spec)
        action = self.ensure_service(plan, td_arn, awsvpc)
        running = self.wait_running(plan, td_arn) if wait else 0
        return Outcome(td_arn, registered, action, running)
