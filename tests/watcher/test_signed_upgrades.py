"""Forged upgrades never run and never stop the delegate: an unsigned artifact, one signed by a key the
watcher does not trust, an expired signature, an older version (rollback), and an installed artifact
overwritten after it was verified. The watcher refuses each with a clear line, keeps the running
delegate, and never goes FATAL. Real manager, real watcher, real delegates."""

from __future__ import annotations

import json
import os
import signal
import zipapp
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devstack import publish
from tests.support import Manager, wait_until
from tests.watcher.conftest import WatcherProc, pid_alive, storage_url, wait_registered

Start = Callable[..., WatcherProc]


def marker_artifact(tmp_path: Path, marker: Path) -> Path:
    """A zipapp that would prove it ran (it writes `marker`), then idles."""
    src = tmp_path / "evil-src"
    src.mkdir()
    (src / "__main__.py").write_text(
        f"import pathlib, time\npathlib.Path({str(marker)!r}).write_text('ran')\ntime.sleep(600)\n")
    out = tmp_path / "evil.pyz"
    zipapp.create_archive(src, out)
    return out


def refused(w: WatcherProc, version: str, says: str) -> dict[str, object]:
    return wait_until(lambda: next((e for e in w.find("upgrade.delegate_refused")
                                    if version in str(e["error"]) and says in str(e["error"])), None),
                      20, f"upgrade.delegate_refused for {version} ({says})")  # type: ignore[no-any-return]


@pytest.mark.timeout(120)
def test_unsigned_wrongly_signed_expired_and_older_versions_are_refused(
        manager: Manager, watchers: Start, tmp_path: Path) -> None:
    # credentials in the storage URL: sent to the server, never written to a log line
    url = storage_url(manager).replace("://", "://uploader:s3cr3t-pw@")
    w = watchers(DELEGATE_STORAGE_URL=url)
    pid = w.current_pid()
    marker = tmp_path / "ran"
    evil = marker_artifact(tmp_path, marker)
    storage = manager.data_dir / "storage"

    publish.publish_artifact(storage, "delegate", "2.0.0", evil, keys=[])  # unsigned
    refused(w, "2.0.0", "there is no signature file")
    (storage / "delegate/2.0.0/delegate.pyz.sig").write_text(json.dumps(
        publish.signature("delegate", "2.0.0", evil.read_bytes(), [])))  # a file with no signature
    refused(w, "2.0.0", "unsigned")

    stranger = Ed25519PrivateKey.generate()
    publish.publish_artifact(storage, "delegate", "2.0.1", evil, keys=[stranger])
    refused(w, "2.0.1", "not a trusted key")

    dev = publish.dev_key(manager.data_dir)
    publish.publish_artifact(storage, "delegate", "2.0.2", evil, keys=[dev], expires_days=-1)
    refused(w, "2.0.2", "expired")

    publish.publish_artifact(storage, "delegate", "0.9.0", evil, keys=[dev])
    refused(w, "0.9.0", "older than the running 1.0.0")

    # a signature for the watcher's artifact does not pass for the delegate's
    (storage / "delegate/2.0.3").mkdir(parents=True)
    (storage / "delegate/2.0.3/delegate.pyz").write_bytes(evil.read_bytes())
    (storage / "delegate/2.0.3/delegate.pyz.sig").write_text(json.dumps(
        publish.signature("watcher", "2.0.3", evil.read_bytes(), [dev])))
    (storage / "delegateprod.txt").write_text(
        f"2.0.3 delegate/2.0.3/delegate.pyz {publish.sha256_of(evil)}\n")
    refused(w, "2.0.3", "signed for watcher 2.0.3")

    assert not marker.exists()
    assert not w.find("upgrade.starting") and not w.find("delegate.state", to="FATAL")
    assert w.alive() and pid_alive(pid) and w.delegate_pids() == [pid]
    task = manager.submit("SHELL_SCRIPT", {"script": "echo still working"})
    assert manager.wait_task(task)["status"] == "SUCCEEDED"
    text = "\n".join(w.lines)
    assert "s3cr3t-pw" not in text and "uploader" not in text
    assert "***@127.0.0.1" in text  # the URL is still named, without its credentials


@pytest.mark.timeout(120)
def test_an_installed_version_overwritten_after_install_is_refused_at_the_next_start(
        manager: Manager, watchers: Start, tmp_path: Path) -> None:
    w = watchers(DELEGATE_STORAGE_URL=storage_url(manager))
    w.current_pid()
    publish.publish(manager.data_dir, "delegate", "2.0.0")
    done = w.wait_event("upgrade.completed", timeout=60, version="2.0.0")
    wait_registered(manager, version="2.0.0")
    # a same-uid task script rewrites the installed file (the versions dir is in the work dir)
    marker = tmp_path / "ran"
    installed = w.work_dir / "versions" / "delegate" / "2.0.0" / "delegate.pyz"
    installed.write_bytes(marker_artifact(tmp_path, marker).read_bytes())
    # the running 2.0.0 runs from its sealed copy: the rewrite does not reach it; now it dies
    new_pid = int(done["delegate_pid"])
    w.wait_event("delegate.exited", timeout=60, delegate_pid=int(done["old_pid"]))
    os.kill(new_pid, signal.SIGKILL)
    bad = w.wait_event("upgrade.installed_refused", timeout=30, version="2.0.0")
    assert "sha256" in str(bad["error"])
    rolled = w.wait_event("upgrade.rolled_back", timeout=10, version="2.0.0")
    assert rolled["to"] == "image"
    wait_registered(manager, version="1.0.0", timeout=30)  # the image's delegate took over
    assert not marker.exists()
    assert not w.find("delegate.state", to="FATAL") and w.alive()
    assert json.loads((w.work_dir / "versions/delegate/failed.json").read_text()) == ["2.0.0"]
    task = manager.submit("SHELL_SCRIPT", {"script": "echo after the refusal"})
    assert manager.wait_task(task)["status"] == "SUCCEEDED"
