"""`python -m bench [suite ...]`: run benchmark suites and print their tables."""

from __future__ import annotations

import importlib
import sys

SUITES = ["startup", "tasks", "ecs", "watcher", "manager"]


def main(argv: list[str]) -> int:
    chosen = argv or SUITES
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        print(f"unknown suite(s) {unknown}; choose from {SUITES}", file=sys.stderr)
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
