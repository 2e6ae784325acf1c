"""`scripts/bench [suite ...]` (`python -m bench`): run benchmark suites and print their tables.

Each suite starts what it measures on the local stack (manager, delegates, local ECS) and prints
one table: our figure beside a floor measured in the same run, and their ratio. With no suite
named, all run (several minutes on a small machine).

Environment read: none of its own (the processes it starts get theirs from the suite).

Examples:
  scripts/bench                  # every suite
  scripts/bench startup tasks    # just these two

Exit codes: 0 every chosen suite ran, 1 a suite failed (its traceback is printed), 2 an unknown
suite name or option.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUITES = ["startup", "tasks", "ecs", "watcher", "manager", "faults", "hostile"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="*", metavar="suite",
                        help=f"one of {', '.join(SUITES)} (default: all)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code in (0, None) else 2
    chosen = args.suites or SUITES
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        print(f"scripts/bench: unknown suite(s) {unknown}; choose from {SUITES}", file=sys.stderr)
        return 2
    for name in chosen:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"\n[{name}] not built yet")
                continue
            raise
        print(f"\n[{name}] running...", flush=True)
        print(module.run(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
