"""`harness-watcher`: the container entrypoint. Starts the delegate, keeps it alive, upgrades it.

usage: harness-watcher [--version | --help]

Configuration comes only from the environment (docs/watcher.md lists every variable):
  DELEGATE_STORAGE_URL, WATCHER_STORAGE_URL   where published versions live (https; http only to
                                              loopback); unset: no upgrades
  WATCHER_TRUSTED_KEYS                        base64 Ed25519 public keys whose signatures are
                                              accepted (default: the keys baked into the image)
  WATCHER_WORK_DIR (else DELEGATE_WORK_DIR)   channel (msg/) and installed versions (versions/)
  WATCHER_*_S, WATCHER_START_RETRIES, ...     timings and limits, with their unit in the name
The delegate's own variables (ACCOUNT_ID, DELEGATE_TOKEN, ...) are passed on to it.

Exit codes: 0 stopped (SIGTERM, or the delegate exited 0 by itself); 1 the delegate kept failing
to start (FATAL); 3 bad configuration (the watcher's, named in one message, or the delegate's);
4 the manager removed this delegate (self-destruct).

Example: DELEGATE_STORAGE_URL=https://storage.example.com/delegates harness-watcher
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import watcher
from watcher import process, selfupgrade
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
    selfupgrade.keep_own_artifact_private()
    failed = process.harden()  # before anything reads a secret: non-dumpable, child subreaper
    try:
        settings = config.load()
    except config.ConfigError as exc:
        print(f"harness-watcher: {exc}", file=sys.stderr)
        return config.EXIT_CONFIG
    log.configure(settings.log_level, settings.log_format)
    if failed:
        log.warning("watcher.harden_failed", failed=failed,
                    note="orphans may stay zombies, or /proc/<pid>/environ may be readable")
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
