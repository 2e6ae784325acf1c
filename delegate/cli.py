"""`harness-delegate`: run the delegate (the default), or one of its helper commands.

Configuration comes only from the environment (the ECS task spec). A bad environment exits with
code 3 and one message naming every bad variable, before anything else happens.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from delegate import __version__, config, log
from delegate.errors import ConfigError
from delegate.identity import Registration

#: set by the watcher (or by a first run) so that INIT_SCRIPT runs once per container
INIT_DONE_ENV = "HARNESS_INIT_SCRIPT_DONE"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "install-ecs":
        import importlib  # the installer (and boto3) is loaded only when asked for

        install = importlib.import_module("delegate.install.cli")
        return int(install.main(args[1:]))
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if args and args[0] != "run":
        print(f"harness-delegate: unknown command {args[0]!r}; commands: run, install-ecs",
              file=sys.stderr)
        return 2
    return run()


def run() -> int:
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
    settings.delegate_work_dir.mkdir(parents=True, exist_ok=True)

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
    result = await run_script(
        script, timeout_s=600, on_stdout=lambda line: logger.info("init_script.out", line=line),
        on_stderr=lambda line: logger.warning("init_script.err", line=line),
    )
    logger.info("init_script.done", exit_code=result.exit_code, timed_out=result.timed_out)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
