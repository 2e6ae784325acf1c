"""`devstack`: the local stack for tests and the demo, one subcommand per part.

`devstack <command> --help` says what each reads from the environment, with examples and exit codes.
"""

# Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`;
# this file only routes, so adding a part means adding one line to `_COMMANDS`.

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "manager": ("manager.cli", "run the manager (the same as `harness-manager serve`)"),
    "aws": ("devstack.aws.cli", "run the local AWS (moto) with an ECS scheduler beside it"),
    "task": ("manager.task_cli", "submit and follow tasks (the same as `harness-manager task`)"),
    "publish": ("devstack.publish", "publish a delegate or watcher version for upgrades"),
    "registry": ("devstack.registry", "run a container registry (docker-registry) on loopback"),
}


_EPILOG = """\
examples:
  devstack manager --data-dir data                 # a manager on loopback; prints its URL
  devstack task submit --data-dir data --type SHELL_SCRIPT --data '{"script": "echo hi"}'
  devstack task show <task id> --data-dir data --follow
  devstack aws                                     # moto + the ECS scheduler on loopback
  scripts/demo --serve                             # all of it, with a delegate, until Ctrl-C

exit codes: those of the subcommand; 2 for a wrong command line"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    runners = {}
    for name, (module_name, help_text) in _COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a part not built yet
        p = sub.add_parser(name, help=help_text, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        runners[name] = module.run
    args = parser.parse_args(argv)
    return int(runners[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
