"""The watcher's downloads go through the delegate's proxy settings (PROXY_* / HTTPS_PROXY), and
NO_PROXY (the delegate's matcher: CIDR, suffixes) keeps them direct.

A real watcher process checks a real manager's storage; the proxy is a small forwarding proxy on
loopback, written here, that counts what passes through it. The published version's checksum is
wrong on purpose, so each run reads the check file, the signature and the artifact, then refuses it.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devstack import publish
from tests.support import REPO, Manager
from tests.watcher.conftest import WatcherProc, pid_alive, storage_url, watcher_env

Start = Callable[..., WatcherProc]
PASSWORD = "Pr0xy-Passw0rd"


class CountingProxy(ThreadingHTTPServer):
    """Forwards absolute-form GETs (what a client sends a proxy for http:// URLs) and tunnels
    CONNECTs (https:// URLs), recording each request line's target and its Proxy-Authorization."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.seen: list[tuple[str, str]] = []  # (url, Proxy-Authorization)
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Forward(BaseHTTPRequestHandler):
    server: CountingProxy

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.path, self.headers.get("Proxy-Authorization", "")))
        target = urlsplit(self.path)
        conn = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-authorization"}
            conn.request("GET", target.path + (f"?{target.query}" if target.query else ""), headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.path, self.headers.get("Proxy-Authorization", "")))
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=30)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        client = self.connection

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(1 << 16):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join(30)
        upstream.close()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[CountingProxy]:
    server = CountingProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def publish_wrong_checksum(manager: Manager) -> None:
    line = publish.publish(manager.data_dir, "delegate", "2.0.0")
    version, path, _sha = line.split()
    (manager.data_dir / "storage" / "delegateprod.txt").write_text(f"{version} {path} {'0' * 64}\n")


def check_and_download(manager: Manager, watchers: Start, storage: str, **env: str) -> WatcherProc:
    """Publish a version whose checksum is wrong; the watcher reads it all and refuses it."""
    publish_wrong_checksum(manager)
    # PROXY_MANAGER=false: the delegate it starts reaches the manager directly (the watcher has no
    # manager connection: its downloads follow PROXY_* and NO_PROXY alone)
    w = watchers(DELEGATE_STORAGE_URL=storage, PROXY_MANAGER="false", **env)
    refused = w.wait_event("upgrade.delegate_checksum_mismatch", timeout=40)
    assert "sha256" in refused["error"]
    return w


@pytest.mark.timeout(90)
def test_downloads_go_through_the_proxy_with_its_credentials_never_logged(
        manager: Manager, watchers: Start, proxy: CountingProxy) -> None:
    w = check_and_download(manager, watchers, storage_url(manager), PROXY_HOST="127.0.0.1",
                           PROXY_PORT=str(proxy.port), PROXY_USER="watcher", PROXY_PASSWORD=PASSWORD,
                           NO_PROXY="example.com,10.0.0.0/8,127.0.0.1:1")
    urls = [url for url, _ in proxy.seen]
    assert any(u.endswith("/storage/delegateprod.txt") for u in urls), urls
    assert any(u.endswith("/delegate.pyz.sig") for u in urls), urls
    assert any(u.endswith("/delegate.pyz") for u in urls), urls
    expected = "Basic " + base64.b64encode(f"watcher:{PASSWORD}".encode()).decode()
    assert {auth for _, auth in proxy.seen} == {expected}
    assert PASSWORD not in "\n".join(w.lines)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("no_proxy", ["10.0.0.0/8, 127.0.0.0/8", ".localhost"])
def test_no_proxy_cidr_or_suffix_keeps_downloads_direct(
        manager: Manager, watchers: Start, proxy: CountingProxy, no_proxy: str) -> None:
    storage = storage_url(manager)
    if not no_proxy[0].isdigit():  # the suffix form needs a name: the same storage as localhost
        parts = urlsplit(storage)
        storage = storage.replace(f"//{parts.hostname}:", "//localhost:", 1)
    check_and_download(manager, watchers, storage, HTTPS_PROXY=f"http://127.0.0.1:{proxy.port}",
                       NO_PROXY=no_proxy)
    assert proxy.seen == []


@pytest.mark.timeout(90)
def test_https_downloads_tunnel_through_the_proxy(tmp_path: Path, proxy: CountingProxy) -> None:
    with Manager(tmp_path / "manager", tls=True) as manager:
        assert storage_url(manager).startswith("https://")
        publish_wrong_checksum(manager)
        work = tmp_path / "w"
        work.mkdir()
        env = watcher_env(manager, work, DELEGATE_STORAGE_URL=storage_url(manager), PROXY_MANAGER="false",
                          PROXY_HOST="127.0.0.1", PROXY_PORT=str(proxy.port), PROXY_USER="watcher",
                          PROXY_PASSWORD=PASSWORD)
        w = WatcherProc([sys.executable, "-m", "watcher"], env, REPO, work)
        w.start()
        try:
            w.wait_event("upgrade.delegate_checksum_mismatch", timeout=40)
            pids = w.delegate_pids()
        finally:
            w.stop(timeout=20)
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    expected = "Basic " + base64.b64encode(f"watcher:{PASSWORD}".encode()).decode()
    # check file, signature, artifact: each a tunnel to the manager, each with the proxy's credentials
    assert proxy.seen.count((f"127.0.0.1:{manager.port}", expected)) >= 3, proxy.seen
    assert PASSWORD not in "\n".join(w.lines)
