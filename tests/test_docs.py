"""The docs keep the claims a reader acts on: the log event names they quote exist in the code, and
the exit codes they promise are the ones the processes use."""

from __future__ import annotations

import re
from pathlib import Path

from delegate.agent import ExitCode
from delegate.config import EXIT_CONFIG
from tests.support import REPO

DOCS = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
CODE = [p for d in ("delegate", "watcher", "manager") for p in (REPO / d).rglob("*.py")]
_LOG_CALL = re.compile(r"\.(?:debug|info|warning|error|exception|critical)\(\s*\"([a-z_]+\.[a-z_.]+)\"")
_LITERAL = re.compile(r"\"([a-z_]+\.[a-z_]+)\"")
_QUOTED = re.compile(r"`([a-z_]+\.[a-z_]+)`")
#: dotted names in the docs that are files or fields, not log events
_NOT_EVENTS = {"delegate.env", "delegate.state", "profile.result", "response.status",
               "rollback.reason"}


def _read(paths: list[Path]) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in paths)


def test_every_event_name_the_docs_quote_is_logged_by_the_code() -> None:
    code = _read(CODE)
    events = set(_LOG_CALL.findall(code))
    literals = set(_LITERAL.findall(code))
    namespaces = {name.split(".", 1)[0] for name in events}
    assert {"manager", "stream", "task", "heartbeat", "retry"} <= namespaces  # the scan works
    missing = []
    for doc in DOCS:
        for name in _QUOTED.findall(doc.read_text(encoding="utf-8")):
            if name.split(".", 1)[0] in namespaces and name not in _NOT_EVENTS \
                    and name not in literals and not list(REPO.rglob(name)):
                missing.append(f"{doc.name}: `{name}`")
    assert not missing, f"event names in the docs that no code logs: {sorted(set(missing))}"


def test_documented_exit_codes_are_the_codes_used() -> None:
    arch = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = re.search(r"exit codes \(([^)]*)\)", arch)
    assert listed is not None
    pairs = {int(k): v for k, v in re.findall(r"(\d) ([a-z-]+)", listed.group(1))}
    assert set(pairs) == {int(code) for code in ExitCode}, pairs  # every code, none invented
    for number, word in pairs.items():  # "4 self-destruct" is SELF_DESTRUCT, "5 token ..." TOKEN_...
        assert ExitCode(number).name.startswith(word.replace("-", "_").upper()), (number, word)
    assert ExitCode.CONFIG == EXIT_CONFIG
    text = _read(DOCS)
    # every "exits N" said of a self-destruct, and every "N is bad configuration"
    for number in re.findall(r"self.destruct\w*`? and exits \**(\d)", text, flags=re.I):
        assert int(number) == ExitCode.SELF_DESTRUCT, number
    for number in re.findall(r"\*\*(\d)\*\* is bad\s+configuration", text):
        assert int(number) == ExitCode.CONFIG, number
    assert "exits 0 without restart" not in text
