"""The ECS delegate_sequence_config file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from delegate.sequence import SequenceFile


def test_fresh_file_gets_a_token_and_no_sequence(tmp_path: Path) -> None:
    f = SequenceFile(tmp_path / "delegate_sequence_config")
    first = f.load_or_create()
    assert first.random_token and first.sequence_num is None
    assert f.load_or_create() == first
    assert f.path.read_text() == f"[TOKEN]{first.random_token}[SEQ]"


def test_update_keeps_what_the_manager_did_not_send(tmp_path: Path) -> None:
    f = SequenceFile(tmp_path / "delegate_sequence_config")
    token = f.load_or_create().random_token
    assert f.update(None, "2").sequence_num == "2"
    assert f.update("tok-2", None).random_token == "tok-2"
    assert f.path.read_text() == "[TOKEN]tok-2[SEQ]2"
    assert token != "tok-2"


def test_torn_content_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "delegate_sequence_config"
    path.write_text("[TOKEN][SEQ]zz")
    assert SequenceFile(path).load_or_create().random_token


def _writer(path: str, n: int) -> None:
    f = SequenceFile(Path(path))
    for i in range(200):
        f.update(f"token-{n}", str(i))
        # read outside the lock, as a process that only reads would: never a torn file
        if f._read() is None:
            raise SystemExit(f"writer {n}: torn or empty file after write {i}")


def test_concurrent_writers_never_tear_the_file(tmp_path: Path) -> None:
    path = tmp_path / "delegate_sequence_config"
    procs = [multiprocessing.Process(target=_writer, args=(str(path), n)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]  # a writer that saw a torn file exits 1
    loaded = SequenceFile(path)._read()
    assert loaded is not None and loaded.random_token.startswith("token-")
