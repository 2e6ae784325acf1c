"""Prometheus metrics of one delegate process (served at /metrics by `health.py`)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.process_collector import ProcessCollector

from delegate import __version__

#: the `aws_calls` counter of the delegate running the current task, bound by its task runner in
#: the task's own context (like the task id in the logs), so that several delegates in one process
#: each count their own calls; unset (None) outside a task
AWS_CALLS: ContextVar[Any] = ContextVar("delegate_aws_calls", default=None)


class Metrics:
    """A registry of its own, so that tests can run several delegates in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.build = Info("delegate_build", "Delegate build information", registry=r)
        self.build.info({"version": __version__})
        self.connected = Gauge(
            "delegate_connected", "1 while registered with a fresh heartbeat ack", registry=r
        )
        self.heartbeats_sent = Counter(
            "delegate_heartbeats_sent", "Heartbeats sent to the manager", registry=r
        )
        self.heartbeats_failed = Counter(
            "delegate_heartbeats_failed", "Heartbeats that failed or went unanswered", registry=r
        )
        self.reconnects = Counter(
            "delegate_reconnects", "Stream reconnections after a loss", registry=r
        )
        self.registrations = Counter(
            "delegate_registrations", "Successful registrations and keep-alives", registry=r
        )
        self.tasks_running = Gauge("delegate_tasks_running", "Tasks executing now", registry=r)
        self.tasks_finished = Counter(
            "delegate_tasks_finished", "Tasks finished, by final status", ["status"], registry=r
        )
        self.tasks_refused = Counter(
            "delegate_tasks_refused", "Task offers not taken, by reason", ["reason"], registry=r
        )
        lag_buckets = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5,
                       1, 2.5, 5)
        self.heartbeat_delay = Histogram(
            "delegate_heartbeat_delay_seconds",
            "How late each heartbeat left against its schedule", registry=r, buckets=lag_buckets,
        )
        self.loop_lag = Histogram(
            "delegate_event_loop_lag_seconds",
            "Event-loop lag: how late a 100 ms timer fires", registry=r, buckets=lag_buckets,
        )
        self.aws_calls = Counter(
            "delegate_aws_calls", "AWS API calls made, by service and operation",
            ["service", "operation"], registry=r,
        )
        self.task_seconds = Histogram(
            "delegate_task_seconds", "Task run time", ["task_type"], registry=r,
            buckets=(0.05, 0.25, 1, 5, 30, 120, 600, 3600),
        )
