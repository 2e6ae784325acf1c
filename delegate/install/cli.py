"""`harness-delegate install-ecs`: the install guide's steps 2 and 3 in one command.

    harness-delegate install-ecs --cluster C --service-name S [--desired-count N]
        [--spec ecs-task-spec.json | harness-delegate-ecs.tar.gz]
        [--awsvpc --subnets subnet-a,subnet-b --security-groups sg-1 [--assign-public-ip]]
        [--image REGISTRY/REPO:TAG] [--task-role-arn ARN] [--execution-role-arn ARN] [--create-roles]
        [--wait-connected [--manager-url URL]]     (API key in HARNESS_API_KEY)

What the delegate needs comes from the downloaded spec (`--spec`), or else from the environment the
manager gave you (ACCOUNT_ID, DELEGATE_TOKEN, MANAGER_HOST_AND_PORT; `--account-id` and
`--manager-url` override the first and last). The token is read only from the environment or the
spec, never from a flag (a flag would land in shell history and `ps`), and is never printed.
AWS credentials and region come from the usual places (aws configure, AWS_PROFILE, AWS_REGION...).

With --wait-connected it waits until the delegates show Connected on the manager (the URL from the
spec unless --manager-url; the API key from HARNESS_API_KEY, never a flag); otherwise it says that it
only waited for the ECS tasks to run.

Environment read: ACCOUNT_ID, DELEGATE_TOKEN (or ACCOUNT_SECRET), MANAGER_HOST_AND_PORT (unless
--spec gives them); HARNESS_API_KEY (--wait-connected); AWS_PROFILE, AWS_REGION /
AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and the rest of
boto3's usual variables.

Examples:
    harness-delegate install-ecs --cluster prod --service-name harness-delegate \
        --spec ecs-task-spec.json --region eu-west-1
    harness-delegate install-ecs --cluster prod --service-name harness-delegate --awsvpc \
        --subnets subnet-a,subnet-b --security-groups sg-1 --spec harness-delegate-ecs.tar.gz \
        --create-roles
    HARNESS_API_KEY=... harness-delegate install-ecs --cluster prod --service-name harness-delegate \
        --image 123456789012.dkr.ecr.us-east-1.amazonaws.com/harness-delegate:1.0.0 --wait-connected

Exit codes: 0 installed, 1 an AWS step failed (or the delegates did not connect), 2 bad usage,
3 missing or bad settings: the delegate's (ACCOUNT_ID, DELEGATE_TOKEN, MANAGER_HOST_AND_PORT, the
spec file, a refused image) or the AWS region.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from delegate.install import checks
from delegate.install.ecs_install import EcsInstaller, InstallError, ServicePlan
from protocol import taskspec
from protocol.images import ImageError, check_image

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 3


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="harness-delegate install-ecs", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster", required=True, help="the ECS cluster to run the delegate in")
    p.add_argument("--service-name", required=True, help="the ECS service to create or update")
    p.add_argument("--desired-count", type=int, default=1, help="delegate tasks to run (default 1)")
    p.add_argument("--spec", type=Path,
                   help="the downloaded ecs-task-spec.json or harness-delegate-ecs.tar.gz")
    p.add_argument("--account-id", default=None, help="ACCOUNT_ID (default: from the environment)")
    p.add_argument("--manager-url", default=None,
                   help="MANAGER_HOST_AND_PORT (default: from the environment)")
    p.add_argument("--delegate-group-name", default=None)
    p.add_argument("--profile", default=None, help="the delegate profile id")
    p.add_argument("--hostname", default=None, help="bridge mode only (default Harness-ECS-Delegate)")
    p.add_argument("--image", default=None,
                   help="REGISTRY/REPO:TAG where scripts/build-image --push put the image (needed "
                        "without --spec; never Docker Hub's harness/delegate, never latest)")
    p.add_argument("--awsvpc", action="store_true",
                   help="AWS VPC mode on Fargate (needs --subnets and --security-groups)")
    p.add_argument("--subnets", type=_csv, default=(), help="comma-separated subnet ids (awsvpc)")
    p.add_argument("--security-groups", type=_csv, default=(),
                   help="comma-separated security group ids (awsvpc)")
    p.add_argument("--assign-public-ip", action="store_true",
                   help="awsvpc: give tasks a public IP (only in public subnets without NAT)")
    p.add_argument("--execution-role-arn", default=None,
                   help="pulls the image, writes logs, reads secrets (awsvpc default: "
                        "arn:aws:iam::<your account>:role/ecsTaskExecutionRole)")
    p.add_argument("--task-role-arn", default=None,
                   help="the role the delegate's AWS calls run as (with the HarnessECS policy)")
    p.add_argument("--create-roles", action="store_true",
                   help=f"create {checks.TASK_ROLE} (HarnessECS policy) and "
                        f"{checks.EXECUTION_ROLE} if missing, and use them")
    p.add_argument("--wait-connected", action="store_true",
                   help="also wait until the delegates show Connected on the manager "
                        "(API key in HARNESS_API_KEY)")
    p.add_argument("--region", default=None, help="AWS region (default: your AWS configuration)")
    p.add_argument("--wait-timeout-s", type=float, default=600.0,
                   help="how long to wait for the tasks to run (default 600)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the tasks to run")
    return p


def _say(line: str) -> None:
    print(f"install-ecs: {line}", flush=True)


def _session(region: str | None) -> Any:
    import boto3

    session = boto3.session.Session(region_name=region)
    if not session.region_name:
        raise taskspec.SpecError("no AWS region: pass --region or set AWS_REGION "
                                 "(or a region in 'aws configure')")
    return session


def _aws_account(session: Any) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(session.client("sts").get_caller_identity()["Account"])
    except (BotoCoreError, ClientError) as exc:
        raise InstallError(f"could not read your AWS account id (sts get-caller-identity): {exc}; "
                           "pass --execution-role-arn") from exc


def build_spec(args: argparse.Namespace, session: Any) -> dict[str, Any]:
    if args.spec is not None:
        try:
            data = args.spec.read_bytes()
        except OSError as exc:
            raise taskspec.SpecError(f"--spec {args.spec}: cannot read it ({exc.strerror}); give the "
                                     "downloaded ecs-task-spec.json or harness-delegate-ecs.tar.gz") from None
        spec = taskspec.load_spec(data, f"--spec {args.spec}")
        for container in spec["containerDefinitions"]:
            if container.get("name") == taskspec.CONTAINER:
                try:
                    container["image"] = check_image(args.image or str(container.get("image", "")))
                except ImageError as exc:
                    raise taskspec.SpecError(f"{exc} (--image)") from None
        role = str(spec.get("executionRoleArn", ""))
        if args.task_role_arn:
            spec["taskRoleArn"] = args.task_role_arn
        if args.execution_role_arn:
            spec["executionRoleArn"] = args.execution_role_arn
        elif f"::{taskspec.AWS_ACCOUNT_PLACEHOLDER}:" in role:
            account = _aws_account(session)
            spec["executionRoleArn"] = role.replace(taskspec.AWS_ACCOUNT_PLACEHOLDER, account)
            _say(f"execution role: {spec['executionRoleArn']}")
        return spec
    env = os.environ
    missing = [name for name, value in (
        ("ACCOUNT_ID", args.account_id or env.get("ACCOUNT_ID")),
        ("DELEGATE_TOKEN", env.get("DELEGATE_TOKEN") or env.get("ACCOUNT_SECRET")),
        ("MANAGER_HOST_AND_PORT", args.manager_url or env.get("MANAGER_HOST_AND_PORT")),
    ) if not value]
    if missing:
        raise taskspec.SpecError(
            f"{', '.join(missing)} not set: export them from the manager (Install Delegate), or "
            "pass --spec with the downloaded ecs-task-spec.json")
    if not args.image:
        raise taskspec.SpecError("--image: none given; push the image with `scripts/build-image "
                                 "--push REGISTRY/REPO:TAG` and pass --image REGISTRY/REPO:TAG")
    aws_account = None
    if args.awsvpc and not args.execution_role_arn:
        aws_account = _aws_account(session)
    inputs = taskspec.SpecInputs(
        account_id=args.account_id or env["ACCOUNT_ID"],
        delegate_token=env.get("ACCOUNT_SECRET") or env["DELEGATE_TOKEN"],
        manager_host_and_port=args.manager_url or env["MANAGER_HOST_AND_PORT"],
        delegate_group_name=args.delegate_group_name, profile_id=args.profile,
        hostname=args.hostname, awsvpc=args.awsvpc, image=args.image,
        region=session.region_name, aws_account_id=aws_account,
        execution_role_arn=args.execution_role_arn, task_role_arn=args.task_role_arn,
    )
    return taskspec.task_spec(inputs)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse has printed the usage and the problem
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if args.desired_count < 0:
        print("install-ecs: --desired-count must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    try:
        session = _session(args.region)
        spec = build_spec(args, session)
    except taskspec.SpecError as exc:
        print(f"install-ecs: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except InstallError as exc:
        print(f"install-ecs: {exc}", file=sys.stderr)
        return EXIT_FAILED
    awsvpc = spec.get("networkMode") == "awsvpc"
    if awsvpc and not args.subnets:
        print("install-ecs: this spec is in AWS VPC mode: pass --subnets (and --security-groups)",
              file=sys.stderr)
        return EXIT_USAGE
    plan = ServicePlan(cluster=args.cluster, service_name=args.service_name,
                       desired_count=args.desired_count, subnets=args.subnets,
                       security_groups=args.security_groups,
                       assign_public_ip=args.assign_public_ip, wait_timeout_s=args.wait_timeout_s,
                       poll_s=min(5.0, max(0.2, args.wait_timeout_s / 100)))
    mode = "awsvpc (Fargate)" if awsvpc else "bridge (EC2)"
    api_key = os.environ.get("HARNESS_API_KEY", "")
    if args.wait_connected and not api_key:
        print("install-ecs: --wait-connected needs the manager's API key in HARNESS_API_KEY",
              file=sys.stderr)
        return EXIT_USAGE
    _say(f"installing the delegate as service {plan.service_name} in cluster {plan.cluster} "
         f"({session.region_name}, {mode})")
    ecs = session.client("ecs")
    env = taskspec.env_of(spec)
    try:
        _before(args, session, ecs, spec, awsvpc)
        outcome = EcsInstaller(ecs, _say, session.region_name).install(spec, plan,
                                                                       wait=not args.no_wait)
    except (InstallError, checks.CheckError) as exc:
        print(f"install-ecs: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        failure = _pull_failure(ecs, plan)
        if failure:
            print(f"install-ecs: warning: a delegate task could not pull its image: {failure}",
                  file=sys.stderr)
    done = (f"done: {outcome.task_definition_arn.rsplit('/', 1)[-1]}, "
            f"service {outcome.service_action}")
    if args.no_wait:
        _say(f"{done}. Not waited for: the tasks and the delegates (--no-wait).")
        return EXIT_OK
    if not args.wait_connected:
        _say(f"{done}, {outcome.running_count} task(s) running. Only the ECS tasks were waited "
             "for; whether the delegates connected, see the manager's Delegates page (or pass "
             "--wait-connected with HARNESS_API_KEY).")
        return EXIT_OK
    manager_url = args.manager_url or env.get("MANAGER_HOST_AND_PORT", "")
    try:
        found = checks.wait_connected(manager_url, api_key, env.get("ACCOUNT_ID", ""),
                                      env.get("DELEGATE_GROUP_NAME"), plan.desired_count,
                                      args.wait_timeout_s, _say)
    except checks.CheckError as exc:
        print(f"install-ecs: {exc}", file=sys.stderr)
        return EXIT_FAILED
    names = ", ".join(sorted(d.get("hostName", "?") for d in found))
    _say(f"{done}, {outcome.running_count} task(s) running; Connected on the manager: {names}")
    return EXIT_OK


def _before(args: argparse.Namespace, session: Any, ecs: Any, spec: dict[str, Any],
            awsvpc: bool) -> None:
    """Roles first (the task definition names them), then the warnings."""
    if args.create_roles:
        from delegate.install import iam

        task_role, execution_role = checks.ensure_roles(
            session.client("iam"), json.loads(iam.render()), _say)
        spec.setdefault("taskRoleArn", task_role)
        if awsvpc or "executionRoleArn" in spec:
            spec["executionRoleArn"] = execution_role
    warning = checks.loopback_manager(taskspec.env_of(spec).get("MANAGER_HOST_AND_PORT", ""))
    if warning:
        print(f"install-ecs: warning: {warning}", file=sys.stderr)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        clusters = ecs.describe_clusters(clusters=[args.cluster]).get("clusters", [])
    except (BotoCoreError, ClientError):
        return  # the installer's own cluster check reports it
    warning = checks.empty_bridge_cluster(clusters[0], awsvpc) if clusters else None
    if warning:
        print(f"install-ecs: warning: {warning}", file=sys.stderr)


def _pull_failure(ecs: Any, plan: ServicePlan) -> str | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return checks.pull_failure(ecs, plan.cluster, plan.service_name)
    except (BotoCoreError, ClientError):
        return None
