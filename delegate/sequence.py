"""The ECS `delegate_sequence_config` file: `[TOKEN]<uuid>[SEQ]<n>`.

All ECS tasks of one task definition share a hostname, so the manager tells them apart by a sequence
number bound to a random token. The file keeps both across process restarts in the same container
(a fresh container starts with a new token and no sequence). Written atomically (temp file + rename)
under an exclusive lock, so a watcher-started new version and the old one never tear it; 0600, since
the token and sequence are what lets a process take this slot.
"""

from __future__ import annotations

import fcntl
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from delegate import files

_FORMAT = re.compile(r"^\[TOKEN\](?P<token>[^\[\]\s]*)\[SEQ\](?P<seq>-?\d*)\s*$")


@dataclass(frozen=True)
class SequenceConfig:
    random_token: str
    sequence_num: str | None  # None until the manager has given one


class SequenceFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")

    def load_or_create(self) -> SequenceConfig:
        """The stored token and sequence, or a new random token with no sequence."""
        with self._locked():
            current = self._read()
            if current is None:
                current = SequenceConfig(random_token=str(uuid.uuid4()), sequence_num=None)
                self._write(current)
            return current

    def update(self, random_token: str | None, sequence_num: str | None) -> SequenceConfig:
        """Store what the manager answered; fields it did not send are kept."""
        with self._locked():
            current = self._read() or SequenceConfig(str(uuid.uuid4()), None)
            new = SequenceConfig(
                random_token=random_token or current.random_token,
                sequence_num=sequence_num if sequence_num is not None else current.sequence_num,
            )
            if new != current:
                self._write(new)
            return new

    def _read(self) -> SequenceConfig | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        match = _FORMAT.match(text.strip())
        if not match or not match["token"]:
            return None  # torn or foreign content: start afresh rather than send garbage
        return SequenceConfig(match["token"], match["seq"] or None)

    def _write(self, config: SequenceConfig) -> None:
        files.write_private(
            self.path, f"[TOKEN]{config.random_token}[SEQ]{config.sequence_num or ''}")

    class _Lock:
        def __init__(self, path: Path) -> None:
            self._path = path
            self._fd = -1

        def __enter__(self) -> None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)

        def __exit__(self, *_: object) -> None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)

    def _locked(self) -> SequenceFile._Lock:
        return SequenceFile._Lock(self._lock_path)
