"""`harness-manager`: run the manager (agent API, stream, setup API and pages on one port, state in
SQLite) with `serve`; submit and follow tasks with `task`.

`serve` writes DATA_DIR/delegate.env (ACCOUNT_ID, DELEGATE_TOKEN, MANAGER_HOST_AND_PORT, DEVSTACK_API_KEY)
once it listens; `--port 0` picks a free port. SIGTERM / SIGINT stop it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from manager import task_cli
from manager.app import ManagerServer
from manager.settings import ManagerSettings

EXIT_FAILED_TO_START = 2
EXIT_JOB_DIED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="where the SQLite database and delegate.env live")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--disconnect-after-s", type=float, default=300.0,
                        help="DISCONNECTED after this long without register/heartbeat")
    parser.add_argument("--ecs-stale-slot-s", type=float, default=100.0,
                        help="an ECS slot untouched this long may be reused")
    parser.add_argument("--task-orphan-s", type=float, default=30.0,
                        help="re-queue a STARTED task its delegate stopped listing this long")
    parser.add_argument("--rebroadcast-s", type=float, default=5.0,
                        help="broadcast QUEUED tasks again this often")
    parser.add_argument("--tick-s", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])


def configure_logging(level: str) -> None:
    """JSON lines unless stderr is a terminal, where key=value pairs read better."""
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level)
    renderer: structlog.typing.Processor = (
        structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"])
        if sys.stderr.isatty() else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def settings_from(args: argparse.Namespace) -> ManagerSettings:
    for name in ("disconnect_after_s", "ecs_stale_slot_s", "task_orphan_s", "rebroadcast_s",
                 "tick_s"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be greater than 0")
    if not 0 <= args.port <= 65535:
        raise SystemExit("--port must be between 0 and 65535")
    return ManagerSettings(
        data_dir=args.data_dir.resolve(), host=args.host, port=args.port,
        disconnect_after_s=args.disconnect_after_s, ecs_stale_slot_s=args.ecs_stale_slot_s,
        task_orphan_s=args.task_orphan_s, rebroadcast_s=args.rebroadcast_s, tick_s=args.tick_s)


async def serve(settings: ManagerSettings) -> int:
    log = structlog.get_logger("manager")
    server = ManagerServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # the handler only sets a flag
    problem = None
    try:
        await server.start()
    except OSError as exc:
        problem = str(exc)
    if problem is not None:
        log.error("manager.failed_to_start", error=problem, port=settings.port)
        await server.stop()
        return EXIT_FAILED_TO_START
    stopped = asyncio.create_task(stop.wait(), name="manager.wait_signal")
    failed = asyncio.create_task(server.failed.wait(), name="manager.wait_failed")
    await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    for task in (stopped, failed):
        task.cancel()
    code = EXIT_JOB_DIED if server.failed.is_set() else 0
    await server.stop()
    return code


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    return asyncio.run(serve(settings_from(args)))


def main(argv: Sequence[str] | None = None) -> int:
    """`harness-manager serve ...` | `harness-manager task ...`."""
    parser = argparse.ArgumentParser(prog="harness-manager", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub.add_parser("serve", help="run the manager", description=__doc__))
    task_cli.add_arguments(sub.add_parser("task", help="submit and follow tasks",
                                          description=task_cli.__doc__))
    args = parser.parse_args(argv)
    if args.command == "task":
        return task_cli.run(args)
    return run(args)
