"""`devstack`: one command, a subcommand per part of the local stack.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`;
this file only routes, so adding a part means adding one line to `_COMMANDS`.
"""

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
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    runners = {}
    for name, (module_name, help_text) in _COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a part not built yet
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
        runners[name] = module.run
    args = parser.parse_args(argv)
    return int(runners[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
