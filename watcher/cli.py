"""`harness-watcher`: the container entrypoint. Starts the delegate, keeps it alive, upgrades it.

Configuration comes only from the environment (see docs/watcher.md). A bad environment exits with
code 3 and one message naming every bad variable. `--version` prints the version and exits (a new
watcher artifact is checked with it before the running watcher hands over to it).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import watcher
from watcher import settings as config
from watcher.log import log


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--version":
        print(watcher.__version__)
        return 0
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if args:
        print(f"harness-watcher: unknown argument {args[0]!r}; try --help", file=sys.stderr)
        return 2
    try:
        settings = config.load()
    except config.ConfigError as exc:
        print(f"harness-watcher: {exc}", file=sys.stderr)
        return config.EXIT_CONFIG
    log.configure(settings.log_level, settings.log_format)
    try:
        settings.work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"harness-watcher: cannot create the work dir {settings.work_dir}: {exc}; "
              "set WATCHER_WORK_DIR (or DELEGATE_WORK_DIR) to a writable directory", file=sys.stderr)
        return config.EXIT_CONFIG

    from watcher.supervisor import Watcher

    return asyncio.run(Watcher(settings).run())


if __name__ == "__main__":
    sys.exit(main())
