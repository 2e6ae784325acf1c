"""Named delegate tokens (`token`) and API keys (`key`) of a running manager.

  harness-manager token list --data-dir DIR
  harness-manager token create NAME --data-dir DIR [--valid-for-s N]   # prints the value once
  harness-manager token revoke NAME --data-dir DIR
  harness-manager token rotate NAME --data-dir DIR [--grace-s N]       # prints the new value
  harness-manager key list --data-dir DIR
  harness-manager key create NAME --role viewer|deployer|admin --data-dir DIR   # prints it once
  harness-manager key revoke NAME --data-dir DIR

Reads the manager's address and API key from DIR/delegate.env (a private CA: SSL_CERT_FILE).
Exit 0 done, 2 when the manager could not be asked or refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from manager.task_cli import EXIT_TROUBLE, CliError, call, read_env

BASE = "/api/setup/delegate-tokens"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="token_command", required=True)
    for name, help_text in (("list", "list the tokens (never their values)"),
                            ("create", "make a token; prints its value, this once"),
                            ("revoke", "revoke: its delegates stop, their tasks are re-queued"),
                            ("rotate", "a new value under the same name; prints it")):
        p = sub.add_parser(name, help=help_text)
        if name != "list":
            p.add_argument("name")
        p.add_argument("--data-dir", type=Path, required=True)
        if name == "create":
            p.add_argument("--valid-for-s", type=int, default=None,
                           help="the token expires after this long (default: never)")
        if name == "rotate":
            p.add_argument("--grace-s", type=int, default=0,
                           help="the old value keeps working this long (default 0)")


def run(args: argparse.Namespace) -> int:
    try:
        env = read_env(args.data_dir)
        command = args.token_command
        if command == "list":
            for t in call(env, "GET", BASE)["tokens"]:
                print(f"{t['name']:24} {t['status']:8} delegates={t['delegates']}")
        elif command == "create":
            body = {"name": args.name, "validForS": args.valid_for_s}
            print(call(env, "POST", BASE, body)["value"])
        elif command == "revoke":
            told = call(env, "POST", f"{BASE}/{args.name}/revoke", {})["delegatesTold"]
            print(f"revoked {args.name}; delegates told: {len(told)}")
        else:
            print(call(env, "POST", f"{BASE}/{args.name}/rotate", {"graceS": args.grace_s})["value"])
    except CliError as exc:
        print(f"harness-manager token: {exc}", file=sys.stderr)
        return EXIT_TROUBLE
    return 0


KEYS = "/api/setup/api-keys"


def add_key_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="key_command", required=True)
    for name, help_text in (("list", "list the API keys (never their values)"),
                            ("create", "make a key with a role; prints its value, this once"),
                            ("revoke", "revoke a key; its page sessions end")):
        p = sub.add_parser(name, help=help_text)
        if name != "list":
            p.add_argument("name")
        p.add_argument("--data-dir", type=Path, required=True)
        if name == "create":
            p.add_argument("--role", required=True, choices=["viewer", "deployer", "admin"])


def run_key(args: argparse.Namespace) -> int:
    try:
        env = read_env(args.data_dir)
        if args.key_command == "list":
            for k in call(env, "GET", KEYS)["keys"]:
                state = "revoked" if k["revokedAt"] else "live"
                print(f"{k['name']:24} {k['role']:9} {state}")
        elif args.key_command == "create":
            print(call(env, "POST", KEYS, {"name": args.name, "role": args.role})["value"])
        else:
            call(env, "POST", f"{KEYS}/{args.name}/revoke", {})
            print(f"revoked {args.name}")
    except CliError as exc:
        print(f"harness-manager key: {exc}", file=sys.stderr)
        return EXIT_TROUBLE
    return 0
