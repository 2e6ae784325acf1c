"""Run the local AWS: moto's server on 127.0.0.1 with ECS services that roll out like ECS.

Prints `local AWS ready at http://HOST:PORT` once serving; stops on SIGTERM or SIGINT (exit 0).
Point clients at it with AWS_ENDPOINT_URL=http://HOST:PORT, dummy credentials, region us-east-1.
Markers and timings: docs/local-ecs.md.

Environment read: moto's own (MOTO_*; MOTO_IAM_LOAD_MANAGED_POLICIES defaults to true here).

Examples:
  devstack aws --port 4566
  AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x \
      aws --region us-east-1 ecs list-clusters

Exit codes: 0 stopped by SIGTERM or SIGINT, 2 bad command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
from dataclasses import fields
from types import FrameType

import structlog

from devstack.aws.timing import Timing

EXIT_OK = 0
EXIT_FAILED_TO_START = 3
EXIT_SCHEDULER_DIED = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    real = parser.add_argument_group("real containers (opt-in; docs/local-ecs.md)")
    real.add_argument("--run-containers", action="store_true",
                      help="run the tasks' containers with podman (host networking)")
    real.add_argument("--podman", default="podman", metavar="COMMAND",
                      help="the podman command with its storage options (default: podman); "
                           "e.g. the output of scripts/build-image --print-podman")
    real.add_argument("--podman-run-options", default="", metavar="OPTIONS",
                      help="extra 'podman run' options, e.g. '--runtime runc'")
    real.add_argument("--container-port-env", default=None, metavar="NAME",
                      help="give each task a free port in this variable (host networking shares "
                           "ports), e.g. DELEGATE_HEALTH_PORT")
    defaults = Timing()
    for f in fields(Timing):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=float,
            default=getattr(defaults, f.name),
            metavar="SECONDS",
            help=f"timing: {f.name} (default %(default)s)",
        )


def _configure_logging(level: str) -> None:
    """Log lines go to stderr (stdout carries only the ready line): JSON unless on a terminal."""
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if sys.stderr.isatty()
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")


def run(args: argparse.Namespace) -> int:
    try:
        timing = Timing(**{f.name: getattr(args, f.name) for f in fields(Timing)})
    except ValueError as exc:
        print(f"devstack aws: {exc}", file=sys.stderr)
        return EXIT_FAILED_TO_START
    _configure_logging(args.log_level)
    os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    from devstack.aws.containers import ContainerRunner
    from devstack.aws.server import LocalAws  # imports moto, which reads the environment

    containers = None
    if args.run_containers:
        containers = ContainerRunner(shlex.split(args.podman), shlex.split(args.podman_run_options),
                                     port_env=args.container_port_env)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        aws = LocalAws(port=args.port, host=args.host, timing=timing, containers=containers).start()
    except (OSError, ValueError) as exc:
        print(f"devstack aws: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_FAILED_TO_START
    print(f"local AWS ready at {aws.endpoint_url}", flush=True)
    try:
        while not stop.wait(0.5):
            if not aws.scheduler.alive:
                print(f"devstack aws: the ECS scheduler died: {aws.scheduler.error!r}", file=sys.stderr)
                return EXIT_SCHEDULER_DIED
    finally:
        aws.stop()
    return EXIT_OK
