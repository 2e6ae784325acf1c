"""`harness-delegate`: run the delegate (the default), or install it as an ECS service.

    harness-delegate [run]          run the delegate in the foreground until SIGTERM
    harness-delegate install-ecs    register the task definition and run it as an ECS service
                                    (`harness-delegate install-ecs --help` for its options)

The delegate is configured only by its environment (the ECS task spec sets it); the variables are
listed below. A bad environment exits 3 with one message naming every bad variable, before
anything else happens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from delegate import __version__, config, config_messages, files, log, secrecy
from delegate.errors import ConfigError, TaskError
from delegate.identity import Registration

#: set by the watcher (or by a first run) so that INIT_SCRIPT runs once per container
INIT_DONE_ENV = "HARNESS_INIT_SCRIPT_DONE"
EXIT_USAGE = 2

_EXAMPLES = """\
examples:
  ACCOUNT_ID=acct DELEGATE_TOKEN=<32 hex> MANAGER_HOST_AND_PORT=https://manager:443 \\
      harness-delegate run
  harness-delegate install-ecs --cluster prod --service-name harness-delegate --spec ecs-task-spec.json

exit codes: 0 stopped (SIGTERM, or drained for the watcher), 1 a part crashed or the manager
stayed unreachable for 15 minutes (restart me), 2 bad command line, 3 bad environment (restarting
will not help), 4 the manager deleted this delegate (do not restart)"""


def environment_help() -> str:
    """The variables the delegate reads, from the settings object itself (so it cannot drift)."""
    lines = ["environment (the ECS task spec's variables; names are case-insensitive):"]
    for name, field in config.Settings.model_fields.items():
        env = config_messages.env_name(name)
        if field.is_required():
            what = "required"
        elif field.default_factory is not None:
            what = "default: computed"
        else:
            default = field.default
            what = f"default: {getattr(default, 'value', default)!s}" if default is not None else "optional"
        description = (field.description or "").removeprefix(env).lstrip(":, ")
        note = f"; {description}" if description else ""
        lines.append(f"  {env:38} {what}{note}")
    lines.append("  DELEGATE_TOKEN or ACCOUNT_SECRET is required (32 hex characters)")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    epilog = f"{environment_help()}\n\n{_EXAMPLES}"
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="harness-delegate", description=__doc__, epilog=epilog,
                                formatter_class=fmt)
    p.add_argument("--version", action="version", version=f"harness-delegate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{run,install-ecs}")
    sub.add_parser("run", help="run the delegate (the default)", formatter_class=fmt,
                   description="Run the delegate in the foreground until SIGTERM.", epilog=epilog)
    sub.add_parser("install-ecs", help="install the delegate as an ECS service", add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "install-ecs":
        import importlib  # the installer (and boto3) is loaded only when asked for

        install = importlib.import_module("delegate.install.cli")
        return int(install.main(args[1:]))
    try:
        _parser().parse_args(args)
    except SystemExit as exc:  # --help / --version (0) or a usage error, already printed
        return 0 if exc.code in (0, None) else EXIT_USAGE
    return run()


def run() -> int:
    non_dumpable = secrecy.make_non_dumpable()  # first: the environment holds the token
    try:
        settings = config.load()
    except ConfigError as exc:
        print(f"harness-delegate: {exc}", file=sys.stderr)
        return config.EXIT_CONFIG
    registration = Registration()
    log.configure(settings.log_level, settings.log_format.value, stream=sys.stdout,
                  context={"pid": os.getpid(), "version": __version__,
                           "instance_id": registration.instance_id})
    for secret in (settings.token_hex, settings.proxy_url):
        log.register_secret(secret)
    if settings.proxy_password is not None:
        log.register_secret(settings.proxy_password.get_secret_value())
    for name in secrecy.ENV_SECRETS:
        log.register_secret(os.environ.get(name))
    try:
        files.private_dir(settings.delegate_work_dir)
    except OSError as exc:
        print(f"harness-delegate: invalid delegate configuration: DELEGATE_WORK_DIR: cannot be "
              f"made a private (0700) directory ({exc.strerror}); point it at a writable "
              "directory this user owns", file=sys.stderr)
        return config.EXIT_CONFIG
    if not non_dumpable:
        log.get("delegate.cli").warning("secrecy.dumpable", note="prctl unavailable")
    ignored, unknown = config.environment_report(os.environ)
    if ignored:
        log.get("delegate.cli").info("config.ignored_variables", names=ignored,
                                     note="set by the task spec, not used by this delegate")
    for name, guess in unknown:
        log.get("delegate.cli").warning("config.unknown_variable", name=name,
                                        did_you_mean=guess or None,
                                        note="not a variable of this delegate: it has no effect")

    from delegate.agent import Agent

    if settings.init_script and os.environ.get(INIT_DONE_ENV) != "1":
        code = asyncio.run(_init_script(settings.init_script))
        os.environ[INIT_DONE_ENV] = "1"
        if code != 0:
            log.get("delegate.cli").warning("init_script.failed", exit_code=code)
    return int(asyncio.run(Agent(settings, registration).run()))


async def _init_script(script: str) -> int | None:
    from delegate.tasks.process import run_script

    logger = log.get("delegate.init_script")
    logger.info("init_script.running")
    try:
        result = await run_script(
            script, timeout_s=600,
            on_stdout=lambda line: logger.info("init_script.out", line=line),
            on_stderr=lambda line: logger.warning("init_script.err", line=line),
        )
    except TaskError as exc:
        logger.warning("init_script.not_run", error=str(exc))
        return None
    logger.info("init_script.done", exit_code=result.exit_code, timed_out=result.timed_out)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
