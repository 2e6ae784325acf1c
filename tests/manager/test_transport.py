"""Transport: TLS on loopback, no plain http beyond loopback, the public URL in downloads (never the
Host header), files holding secrets owner-only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from manager.app import ManagerServer
from protocol import taskspec
from tests.manager.conftest import Agent, ServerFactory
from tests.support import REPO, Manager, python_env, start_delegate, wait_until

pytestmark = pytest.mark.timeout(30)


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`harness-manager serve` that must refuse to start (it never binds: exit 3 comes first)."""
    return subprocess.run(
        [sys.executable, "-m", "manager", "serve", "--port", "0", "--data-dir",
         str(tmp_path / "data"), *args], cwd=REPO, env=python_env(**env), capture_output=True,
        text=True, timeout=20)


def test_plain_http_beyond_loopback_refuses_to_start_naming_the_settings(tmp_path: Path) -> None:
    for done in (serve(tmp_path, "--host", "0.0.0.0"),
                 serve(tmp_path, MANAGER_HOST="0.0.0.0")):
        assert done.returncode == 3, done.stderr
        assert "MANAGER_TLS_CERT_FILE" in done.stderr
        assert "MANAGER_TRUST_FORWARDED_HEADERS" in done.stderr
    assert not (tmp_path / "data" / "delegate.env").exists()


def test_tls_beyond_loopback_still_needs_the_public_url(tmp_path: Path, tls_files: object) -> None:
    cert, key = tls_files.cert, tls_files.key  # type: ignore[attr-defined]
    done = serve(tmp_path, "--host", "0.0.0.0", "--tls-cert", str(cert), "--tls-key", str(key))
    assert done.returncode == 3 and "MANAGER_PUBLIC_URL" in done.stderr
    half = serve(tmp_path, "--tls-cert", str(cert))
    assert half.returncode == 3 and "MANAGER_TLS_KEY_FILE" in half.stderr
    bad = serve(tmp_path, "--public-url", "manager.example.com")
    assert bad.returncode == 3 and "MANAGER_PUBLIC_URL" in bad.stderr


async def test_the_manager_speaks_only_tls_and_only_with_a_trusted_certificate(
        server: ManagerServer, agent: object) -> None:
    assert server.url.startswith("https://127.0.0.1:")
    plain = server.url.replace("https://", "http://")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await s.get(f"{server.url}/api/setup/delegates")  # the system CAs do not know it
        with pytest.raises(aiohttp.ClientError):  # plain http to the TLS port gets nothing
            await s.get(f"{plain}/api/setup/delegates")
    a: Agent = agent()  # type: ignore[operator]
    assert (await a.register())["delegateId"]  # over TLS with the trusted certificate


async def test_download_uses_the_public_url_not_the_host_header(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    image = "registry.example.com/harness-delegate:1.0.0"  # the manager's configured default
    server = await start_server(public_url="https://harness.example.com/", delegate_image=image)
    headers = {"Authorization": f"Bearer {server.account.api_key}", "Host": "evil.example"}
    async with session.get(f"{server.url}/api/setup/delegates/ecs-task-spec?delegateGroupName=g"
                           "&storage=true", headers=headers) as resp:
        assert resp.status == 200
        spec = taskspec.load_spec(await resp.read(), "download")
    env = taskspec.env_of(spec)
    assert spec["containerDefinitions"][0]["image"] == image
    assert env["MANAGER_HOST_AND_PORT"] == "https://harness.example.com"
    assert env["DELEGATE_STORAGE_URL"] == "https://harness.example.com/storage"
    assert "evil" not in str(env)
    written = (server.settings.env_path).read_text()
    assert "MANAGER_HOST_AND_PORT=https://harness.example.com\n" in written


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the SQLite file itself
async def test_files_holding_secrets_are_owner_only(start_server: ServerFactory,
                                                    tmp_path: Path) -> None:
    data = tmp_path / "old"
    data.mkdir()
    (data / "manager.sqlite3").touch(mode=0o644)  # made by an older version
    os.chmod(data / "manager.sqlite3", 0o644)
    server = await start_server(data_dir=data)
    for name in ("manager.sqlite3", "delegate.env"):
        mode = stat.S_IMODE((data / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    fresh = await start_server(data_dir=tmp_path / "fresh" / "data")
    assert stat.S_IMODE(fresh.settings.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(fresh.settings.db_path.stat().st_mode) == 0o600
    assert server.port != fresh.port


def test_the_real_delegate_works_with_the_manager_over_tls(tmp_path: Path) -> None:
    with Manager(tmp_path / "m", "--tick-s", "0.2", tls=True) as manager:
        assert manager.url.startswith("https://127.0.0.1:")
        delegate = start_delegate(manager, tmp_path / "d")
        try:
            wait_until(lambda: manager.delegate(status="CONNECTED", streaming=True), 30,
                       f"delegate streaming over TLS ({delegate.tail()})")
            task = manager.wait_task(manager.submit("SHELL_SCRIPT", {"script": "echo over-tls"}))
            assert task["status"] == "SUCCEEDED", task
        finally:
            delegate.stop()
        assert not any(e.get("event") == "agent.insecure_manager_url" for e in delegate.events)
