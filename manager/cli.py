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
from pydantic import ValidationError

from manager import task_cli, token_cli
from manager.app import ManagerServer
from manager.db import DatabaseUnavailable
from manager.settings import ManagerSettings

EXIT_FAILED_TO_START = 2
EXIT_BAD_CONFIG = 3
EXIT_JOB_DIED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option defaults to its MANAGER_* environment variable (see `manager/settings.py`)."""
    parser.add_argument("--port", type=int, help="TCP port; 0 picks a free one (MANAGER_PORT)")
    parser.add_argument("--data-dir", type=Path,
                        help="where the SQLite database and delegate.env live (MANAGER_DATA_DIR)")
    parser.add_argument("--database-url", help="postgresql://user:password@host:port/db: PostgreSQL "
                        "instead of SQLite, for several replicas (MANAGER_DATABASE_URL)")
    parser.add_argument("--host", help="address to listen on (MANAGER_HOST, default 127.0.0.1)")
    parser.add_argument("--public-url", help="the URL delegates reach this manager at; goes into "
                        "every download (MANAGER_PUBLIC_URL)")
    parser.add_argument("--key-file", type=Path, help="the key that encrypts delegate tokens at "
                        "rest; replicas share one (MANAGER_KEY_FILE, default DATA_DIR/manager.key)")
    parser.add_argument("--delegate-image", help="the image task spec downloads name by default: "
                        "REGISTRY/REPO:TAG (MANAGER_DELEGATE_IMAGE)")
    parser.add_argument("--tls-cert", dest="tls_cert_file", type=Path,
                        help="PEM certificate chain: serve https (MANAGER_TLS_CERT_FILE)")
    parser.add_argument("--tls-key", dest="tls_key_file", type=Path,
                        help="PEM private key of --tls-cert (MANAGER_TLS_KEY_FILE)")
    parser.add_argument("--trust-forwarded-headers", action="store_const", const=True,
                        help="behind a TLS-terminating load balancer: trust X-Forwarded-Proto/-For "
                        "(MANAGER_TRUST_FORWARDED_HEADERS)")
    parser.add_argument("--disconnect-after-s", type=float,
                        help="DISCONNECTED after this long without register/heartbeat (300)")
    parser.add_argument("--ecs-stale-slot-s", type=float,
                        help="an ECS slot untouched this long may be reused (100)")
    parser.add_argument("--task-orphan-s", type=float,
                        help="re-queue a STARTED task its delegate stopped listing this long (30)")
    parser.add_argument("--rebroadcast-s", type=float,
                        help="broadcast QUEUED tasks again this often (5)")
    parser.add_argument("--tick-s", type=float, help=argparse.SUPPRESS)
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


_SETTING_ARGS = ("port", "data_dir", "database_url", "host", "public_url", "key_file",
                 "delegate_image",
                 "tls_cert_file",
                 "tls_key_file", "trust_forwarded_headers", "disconnect_after_s", "ecs_stale_slot_s",
                 "task_orphan_s", "rebroadcast_s", "tick_s")


class BadSettings(Exception):
    """The configuration cannot run; the message names the setting."""


def settings_from(args: argparse.Namespace) -> ManagerSettings:
    given = {name: getattr(args, name) for name in _SETTING_ARGS if getattr(args, name, None) is not None}
    try:
        settings = ManagerSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"MANAGER_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        raise BadSettings(problems) from None
    problem = settings.transport_problem()
    if problem is not None:
        raise BadSettings(problem)
    return settings.model_copy(update={"data_dir": settings.data_dir.resolve()})


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
    except (OSError, DatabaseUnavailable) as exc:
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
    try:
        settings = settings_from(args)
    except BadSettings as exc:
        structlog.get_logger("manager").error("manager.bad_config", error=str(exc))
        print(f"harness-manager: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return asyncio.run(serve(settings))


def main(argv: Sequence[str] | None = None) -> int:
    """`harness-manager serve ...` | `task ...` | `token ...` | `key ...`."""
    parser = argparse.ArgumentParser(prog="harness-manager", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub.add_parser("serve", help="run the manager", description=__doc__))
    task_cli.add_arguments(sub.add_parser("task", help="submit and follow tasks",
                                          description=task_cli.__doc__))
    token_cli.add_arguments(sub.add_parser(
        "token", help="list, create, revoke and rotate delegate tokens",
        description=token_cli.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    token_cli.add_key_arguments(sub.add_parser(
        "key", help="list, create and revoke API keys (roles viewer, deployer, admin)",
        description=token_cli.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    if args.command == "key":
        return token_cli.run_key(args)
    if args.command == "task":
        return task_cli.run(args)
    if args.command == "token":
        return token_cli.run(args)
    return run(args)
