"""Validated inputs of the ECS task types (pydantic only: no boto3 here, so the registry can list
the types without loading it). Field names follow Harness's camelCase; docs/ecs-tasks.md."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from delegate.tasks.registry import TaskInput

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
#: a manifest: JSON or YAML text, or the object itself
Manifest = str | dict[str, Any]
ManifestList = str | list[dict[str, Any]]


class AwsAccess(TaskInput):
    """Where and as whom: the delegate's own role (default chain), keys sent with the task, and
    optionally a role assumed from either. Keys are secrets: never logged, returned or echoed."""

    region: str
    cluster: str = Field(min_length=1, max_length=255)
    access_key_id: SecretStr | None = Field(default=None, alias="accessKeyId")
    secret_access_key: SecretStr | None = Field(default=None, alias="secretAccessKey")
    session_token: SecretStr | None = Field(default=None, alias="sessionToken")
    role_arn: str | None = Field(default=None, alias="roleArn")
    external_id: SecretStr | None = Field(default=None, alias="externalId")
    credentials_ref: str | None = Field(default=None, alias="credentialsRef")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION.match(value):
            raise ValueError(f"{value!r} is not an AWS region name such as us-east-1")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^arn:aws[\w-]*:iam::\d{12}:role/.+", value):
            raise ValueError("give an IAM role ARN like arn:aws:iam::123456789012:role/deployer")
        return value

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> AwsAccess:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("accessKeyId and secretAccessKey go together: give both or neither")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("sessionToken needs accessKeyId and secretAccessKey")
        if self.external_id is not None and self.role_arn is None:
            raise ValueError("externalId is used only with roleArn")
        if self.credentials_ref is not None:
            if self.access_key_id is not None:
                raise ValueError("credentialsRef names the keys: give it or accessKeyId, not both")
            ref = self.credentials_ref
            if not (ref.startswith(("secretsmanager:", "ssm:"))
                    or (ref.startswith("arn:") and (":secretsmanager:" in ref or ":parameter/" in ref))):
                raise ValueError("credentialsRef: give secretsmanager:NAME, ssm:/PARAMETER, or the "
                                 "secret's or parameter's ARN")
        return self


class EcsTaskInput(TaskInput):
    infrastructure: AwsAccess
    poll_interval_s: float = Field(default=2.0, ge=0.1, le=60, alias="pollIntervalS")


class RollingDeployInput(EcsTaskInput):
    task_definition: Manifest = Field(alias="taskDefinition")
    service_definition: Manifest = Field(alias="serviceDefinition")
    scalable_targets: ManifestList = Field(default_factory=list, alias="scalableTargets")
    scaling_policies: ManifestList = Field(default_factory=list, alias="scalingPolicies")
    same_as_already_running: bool = Field(default=True, alias="sameAsAlreadyRunningInstances")
    desired_count: int | None = Field(default=None, ge=0, alias="desiredCount")
    force_new_deployment: bool = Field(default=False, alias="forceNewDeployment")
    failed_tasks_limit: int = Field(default=10, ge=0, le=1000, alias="failedTasksLimit")
    dry_run: bool = Field(default=False, alias="dryRun")
    keep_revisions: int | None = Field(default=None, ge=1, le=1000, alias="keepRevisions")
    verify_after_completion_s: float | None = Field(default=None, ge=0, le=3600,
                                                    alias="verifyAfterCompletionS")
    concurrent_deploy_wait_s: float = Field(default=0.0, ge=0, le=3600, alias="concurrentDeployWaitS")


class PrepareRollbackInput(EcsTaskInput):
    service_definition: Manifest = Field(alias="serviceDefinition")


class RollingRollbackInput(EcsTaskInput):
    rollback_data: dict[str, Any] = Field(alias="rollbackData")


class CanaryDeployInput(EcsTaskInput):
    task_definition: Manifest = Field(alias="taskDefinition")
    service_definition: Manifest = Field(alias="serviceDefinition")
    desired_count: int = Field(default=1, ge=0, le=1000, alias="desiredCountOverride")
    suffix: str = Field(default="Canary", pattern=r"^[A-Za-z0-9_-]{1,32}$", alias="serviceNameSuffix")
    scalable_targets: ManifestList = Field(default_factory=list, alias="scalableTargets")
    scaling_policies: ManifestList = Field(default_factory=list, alias="scalingPolicies")


class CanaryDeleteInput(EcsTaskInput):
    canary_service_name: str = Field(min_length=1, alias="canaryServiceName")


class LoadBalancerConfig(TaskInput):
    """The listeners (and optional rules) that send traffic to the blue and the green service."""

    prod_listener_arn: str = Field(alias="prodListenerArn")
    prod_listener_rule_arn: str | None = Field(default=None, alias="prodListenerRuleArn")
    stage_listener_arn: str = Field(alias="stageListenerArn")
    stage_listener_rule_arn: str | None = Field(default=None, alias="stageListenerRuleArn")


class BlueGreenCreateInput(EcsTaskInput):
    task_definition: Manifest = Field(alias="taskDefinition")
    service_definition: Manifest = Field(alias="serviceDefinition")
    load_balancer: LoadBalancerConfig = Field(alias="loadBalancer")
    scalable_targets: ManifestList = Field(default_factory=list, alias="scalableTargets")
    scaling_policies: ManifestList = Field(default_factory=list, alias="scalingPolicies")
    same_as_already_running: bool = Field(default=True, alias="sameAsAlreadyRunningInstances")


class BlueGreenSwapInput(EcsTaskInput):
    load_balancer: LoadBalancerConfig = Field(alias="loadBalancer")
    green_service_name: str = Field(alias="greenServiceName")
    blue_service_name: str | None = Field(default=None, alias="blueServiceName")
    prod_target_group_arn: str = Field(alias="prodTargetGroupArn")
    stage_target_group_arn: str = Field(alias="stageTargetGroupArn")
    downsize_old_service: bool = Field(default=False, alias="downsizeOldService")
    downsize_delay_s: float = Field(default=0.0, ge=0, le=3600, alias="downsizeOldServiceDelayS")


class BlueGreenRollbackInput(EcsTaskInput):
    load_balancer: LoadBalancerConfig = Field(alias="loadBalancer")
    green_service_name: str = Field(alias="greenServiceName")
    blue_service_name: str | None = Field(default=None, alias="blueServiceName")
    prod_target_group_arn: str = Field(alias="prodTargetGroupArn")
    stage_target_group_arn: str = Field(alias="stageTargetGroupArn")
    rollback_data: dict[str, Any] | None = Field(default=None, alias="rollbackData")


class BlueGreenPrepareRollbackInput(EcsTaskInput):
    load_balancer: LoadBalancerConfig = Field(alias="loadBalancer")
    service_definition: Manifest = Field(alias="serviceDefinition")


class RunTaskInput(EcsTaskInput):
    task_definition: Manifest = Field(alias="taskDefinition")
    run_task_request: Manifest = Field(default_factory=dict, alias="runTaskRequest")
    wait_for_stop: bool = Field(default=True, alias="waitForStop")
