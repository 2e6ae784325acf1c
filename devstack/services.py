"""Throw-away PostgreSQL clusters and HAProxy balancers on loopback, for the tests and benchmarks.

Both are the real programs from Debian's packages; `scripts/install-services` installs them when
they are missing (the first use here calls it). PostgreSQL refuses to run as root, so as root the
cluster belongs to the `postgres` system user (made when missing) in a temporary directory of its
own; as anyone else it runs as that user. Nothing is left behind: `stop()` / `close()` end the
process and remove the directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from devstack.procs import REPO, free_port, wait_until

PG_USER = "postgres"
#: settings for a cluster that is thrown away: no fsync (tests), small, quick to start
FAST_PG = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


def ensure_installed(*services: str) -> None:
    """Install the named Debian packages (postgresql, haproxy) unless they are there."""
    subprocess.run([str(REPO / "scripts" / "install-services"), *services], check=True)


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found; run scripts/install-services postgresql")
    return path


def _run_as() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as: `postgres` when we are root (made if missing), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", PG_USER], check=True)
        return pwd.getpwnam(PG_USER)


class Postgres:
    """One cluster: `start()` (initdb on first start), `stop()` (fast shutdown, data kept),
    `start()` again on the same data and port, `close()` (stop and delete)."""

    def __init__(self, *, fast: bool = True, max_connections: int = 200) -> None:
        ensure_installed("postgresql")
        self.user = _run_as()
        self.dir = Path(tempfile.mkdtemp(prefix="pg-"))
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.data = self.dir / "data"
        self.port = free_port()
        self.extra = [*(FAST_PG if fast else ()), "-c", f"max_connections={max_connections}"]
        self.process: subprocess.Popen[bytes] | None = None
        self._log = self.dir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def _popen(self, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        ids: dict[str, object] = {}
        if self.user is not None:
            ids = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            args, cwd=self.dir, env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"},
            **ids, **kwargs)
        return proc

    def _initdb(self) -> None:
        proc = self._popen([_pg_bin("initdb"), "-D", str(self.data), "-U", PG_USER,
                            "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed: {out.decode(errors='replace')[-2000:]}")

    def start(self, timeout: float = 60.0) -> Postgres:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        log = open(self._log, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.process = self._popen(
                [_pg_bin("postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                 *self.extra],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        wait_until(self._accepting, timeout, f"postgres on port {self.port} ({self.log_tail()})",
                   every=0.1)
        return self

    def _accepting(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"postgres exited {self.process.returncode}: {self.log_tail()}")
        proc = subprocess.run([_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", PG_USER, "-t", "1"], capture_output=True)
        return proc.returncode == 0

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self._log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, the data stays for `start()`."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()


HAPROXY_CONFIG = """\
global
    maxconn {maxconn}
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    retries 2
    option redispatch
frontend managers_in
    bind 127.0.0.1:{port}
    default_backend managers
backend managers
    balance leastconn
    default-server check inter 300ms fall 2 rise 1 on-marked-down shutdown-sessions
{servers}
"""


class HAProxy:
    """HAProxy in front of manager replicas on loopback (HTTP mode, websockets tunnelled, a TCP
    check every 300 ms: a dead replica is out of the pool within about a second)."""

    def __init__(self, backends: list[int], *, maxconn: int = 8000) -> None:
        ensure_installed("haproxy")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="haproxy-"))
        self.config = self.dir / "haproxy.cfg"
        servers = "\n".join(f"    server m{i} 127.0.0.1:{p}" for i, p in enumerate(backends))
        self.config.write_text(HAPROXY_CONFIG.format(maxconn=maxconn, port=self.port,
                                                     servers=servers))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> HAProxy:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        check = subprocess.run([binary, "-c", "-q", "-f", str(self.config)], capture_output=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy config invalid: {check.stderr.decode()[-2000:]}")
        with open(self.dir / "haproxy.log", "ab") as log:
            self.process = subprocess.Popen([binary, "-db", "-f", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_until(self._listening, timeout, f"haproxy on port {self.port}")
        return self

    def _listening(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.dir / "haproxy.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"haproxy exited {self.process.returncode}: {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False

    def close(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

