"""Issue 5: ECS deploys on the local ECS.

1. One delegate running 100 rolling deploys at once: heartbeat delay p99 and event-loop lag p99
   during the run (from the delegate's own /metrics histograms, counted over the run only), peak
   resident memory (VmHWM), and how many deploys succeeded.
2. One deploy of the same change (a new image for a 2-task service) by the delegate (through the
   manager) and by fabfuel's `ecs-deploy` CLI (`scripts/tools`), against the same local ECS, side by
   side: wall time and AWS API calls, both counted by the local AWS itself.
3. One deploy per strategy (ROLLING, BLUE_GREEN, LINEAR, CANARY), delegate and ecs-deploy side by
   side: API calls, and the delay from ECS's SUCCESSFUL to the reported result (bench/ecs_strategies.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3

from bench import ecs_strategies
from bench.common import table
from devstack import ecs_demo
from devstack.procs import REPO, Manager, Process, delegate_env, wait_until

DEPLOYS = 100
POLL_S = 1.0  # the delegate's poll interval; ecs-deploy's --sleep-time default is 1 s as well
ECS_DEPLOY = REPO / ".tools" / "ecs-deploy" / "bin" / "ecs"


def run() -> str:
    from devstack.aws.server import LocalAws

    ecs_demo.quiet_local_aws()
    with tempfile.TemporaryDirectory(prefix="bench-ecs-") as tmp, LocalAws(port=0) as aws:
        base = Path(tmp)
        with Manager(base / "manager") as manager:
            delegate = _start_delegate(manager, base / "delegate", aws)
            try:
                rows = _concurrent(manager, delegate, aws)
                rows += _side_by_side(manager, aws)
                rows += ecs_strategies.rows(manager, aws, POLL_S)
            finally:
                delegate.stop()
    return table("ECS deploys on the local ECS", rows)


def _start_delegate(manager: Manager, work: Path, aws: Any) -> Process:
    work.mkdir(parents=True)
    env = delegate_env(manager, work, **ecs_demo.delegate_aws_env(aws),
                       DELEGATE_HEARTBEAT_INTERVAL_S="1", DELEGATE_TASK_CAPACITY=str(DEPLOYS + 10))
    proc = Process([sys.executable, "-m", "delegate"], env, REPO).start()
    proc.wait_event("manager.registered", timeout=30)
    return proc


class World:
    def __init__(self, aws: Any, cluster: str) -> None:
        kwargs = aws.client_kwargs()
        self.ecs = boto3.client("ecs", **kwargs)
        ec2 = boto3.client("ec2", **kwargs)
        self.cluster = cluster
        self.ecs.create_cluster(clusterName=cluster)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/18")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName=cluster, Description="b", VpcId=vpc)["GroupId"]
        self.network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}

    def task_definition(self, family: str, image: str) -> dict[str, Any]:
        return {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
                "cpu": "256", "memory": "512",
                "containerDefinitions": [{"name": "app", "image": image, "essential": True}]}

    def service_definition(self, name: str, desired: int) -> dict[str, Any]:
        return {"serviceName": name, "desiredCount": desired, "launchType": "FARGATE",
                "networkConfiguration": self.network,
                "deploymentConfiguration": {"minimumHealthyPercent": 100, "maximumPercent": 200,
                                            "deploymentCircuitBreaker": {"enable": True, "rollback": True}}}

    def create(self, name: str, desired: int) -> None:
        arn = self.ecs.register_task_definition(**self.task_definition(name, "app:1"))[
            "taskDefinition"]["taskDefinitionArn"]
        self.ecs.create_service(**self.service_definition(name, desired), cluster=self.cluster,
                                taskDefinition=arn)

    def steady(self, names: list[str]) -> bool:
        for i in range(0, len(names), 10):
            for s in self.ecs.describe_services(cluster=self.cluster, services=names[i:i + 10])["services"]:
                d = s["deployments"]
                if len(d) != 1 or d[0]["rolloutState"] != "COMPLETED":
                    return False
        return True

    def deploy_data(self, name: str, desired: int, image: str) -> dict[str, Any]:
        return {"infrastructure": {"region": ecs_demo.REGION, "cluster": self.cluster},
                "taskDefinition": self.task_definition(name, image),
                "serviceDefinition": self.service_definition(name, desired), "pollIntervalS": POLL_S,
                # ecs-deploy does not watch after completion; compare like with like
                "verifyAfterCompletionS": 0}


def _histogram(port: int, name: str) -> dict[float, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return buckets


def _p99(before: dict[float, float], after: dict[float, float]) -> str:
    delta = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return "no samples"
    for le, count in delta.items():
        if count >= 0.99 * total:
            return f"<= {le * 1000:.0f} ms" if le != float("inf") else "> 5 s"
    return "?"


def _vm(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _concurrent(manager: Manager, delegate: Process, aws: Any) -> list[tuple[str, str, str]]:
    world = World(aws, "bench100")
    names = [f"svc{i:03d}" for i in range(DEPLOYS)]
    for name in names:
        world.create(name, 1)
    wait_until(lambda: world.steady(names), 120, "100 services steady", every=1.0)
    port = int(delegate.wait_event("health.listening")["port"])
    hb0 = _histogram(port, "delegate_heartbeat_delay_seconds")
    lag0 = _histogram(port, "delegate_event_loop_lag_seconds")
    rss0 = _vm(delegate.pid, "VmRSS")
    t0 = time.perf_counter()
    ids = [manager.submit("ECS_ROLLING_DEPLOY", world.deploy_data(n, 1, "app:2"), timeoutMs=600_000)
           for n in names]
    finals = [manager.wait_task(i, timeout=600) for i in ids]
    wall = time.perf_counter() - t0
    ok = sum(1 for t in finals if t["status"] == "SUCCEEDED")
    hb = _p99(hb0, _histogram(port, "delegate_heartbeat_delay_seconds"))
    lag = _p99(lag0, _histogram(port, "delegate_event_loop_lag_seconds"))
    return [
        (f"{DEPLOYS} concurrent rolling deploys: succeeded", f"{ok}/{DEPLOYS} in {wall:.1f} s",
         "one delegate, local ECS"),
        ("  heartbeat delay p99 during the run", hb, "target < 1 s (histogram bucket bound)"),
        ("  event-loop lag p99 during the run", lag, "target < 100 ms (histogram bucket bound)"),
        ("  peak resident memory (VmHWM)", f"{_vm(delegate.pid, 'VmHWM'):.1f} MiB",
         f"target < 150 MiB; {rss0:.1f} MiB before the run"),
    ]


def _side_by_side(manager: Manager, aws: Any) -> list[tuple[str, str, str]]:
    world = World(aws, "benchcmp")
    world.create("bydelegate", 2)
    world.create("byecsdeploy", 2)
    wait_until(lambda: world.steady(["bydelegate", "byecsdeploy"]), 60, "services steady")
    time.sleep(1.0)  # nothing else in flight while counting
    calls0 = aws.faults.total()
    t0 = time.perf_counter()
    task = manager.wait_task(manager.submit("ECS_ROLLING_DEPLOY", world.deploy_data(
        "bydelegate", 2, "app:2"), timeoutMs=120_000), timeout=130)
    d_wall, d_calls = time.perf_counter() - t0, aws.faults.total() - calls0
    rows = [("one deploy by the delegate (submit -> result)",
             f"{d_wall:.2f} s, {d_calls} API calls", f"{task['status']}")]
    if not ECS_DEPLOY.exists():
        return [*rows, ("one deploy by ecs-deploy", "not installed", "run scripts/tools")]
    env = {**os.environ, **ecs_demo.delegate_aws_env(aws)}
    calls0 = aws.faults.total()
    t0 = time.perf_counter()
    done = subprocess.run([str(ECS_DEPLOY), "deploy", world.cluster, "byecsdeploy", "--image", "app",
                           "app:2", "--timeout", "120"], env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    e_wall, e_calls = time.perf_counter() - t0, aws.faults.total() - calls0
    rows.append(("one deploy by ecs-deploy 1.17.0 (process wall)", f"{e_wall:.2f} s, {e_calls} API calls",
                 f"exit {done.returncode}"))
    rows.append(("delegate vs ecs-deploy", f"{d_wall / e_wall:.2f}x time, {d_calls}/{e_calls} calls",
                 "target: fewer calls, < 0.5x time"))
    return rows
