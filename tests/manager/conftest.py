"""The manager in-process on 127.0.0.1:0 over TLS (a throw-away certificate the clients trust), and
a small HTTP/websocket agent to talk to it.

`Agent` is not a fake of the delegate: it is the test's own client, speaking the wire models of
`protocol.wire` over real HTTP and websockets, so each test can control exactly what is sent.
"""

from __future__ import annotations

import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from devstack.services import Postgres
from devstack.tlscert import TlsFiles, make_cert
from manager.app import ManagerServer
from manager.settings import ManagerSettings
from protocol.auth import TokenProvider

FAST = {"tick_s": 0.05, "rebroadcast_s": 0.5}


class Setup:
    """The setup API with the API key."""

    def __init__(self, session: aiohttp.ClientSession, server: ManagerServer) -> None:
        self.session, self.server = session, server
        self.headers = {"Authorization": f"Bearer {server.account.api_key}"}

    async def call(self, method: str, path: str, body: Any = None,
                   expect: int = 200) -> Any:
        async with self.session.request(method, self.server.url + path, json=body,
                                        headers=self.headers) as resp:
            data = await resp.json()
            assert resp.status == expect, (resp.status, data)
            return data["resource"]

    async def submit(self, task_type: str = "SHELL_SCRIPT", data: Any = None, **extra: Any) -> str:
        body = {"taskType": task_type, "data": data or {"script": "true"}, **extra}
        return str((await self.call("POST", "/api/setup/tasks", body))["taskId"])

    async def task(self, task_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/api/setup/tasks/{task_id}")  # type: ignore[no-any-return]

    async def delegates(self) -> list[dict[str, Any]]:
        groups = (await self.call("GET", "/api/setup/delegates"))["groups"]
        return [d for g in groups for d in g["delegates"]]


class Agent:
    """One delegate's side of the agent API."""

    def __init__(self, session: aiohttp.ClientSession, server: ManagerServer, *,
                 host_name: str = "Harness-ECS-Delegate", delegate_type: str = "ECS",
                 token_hex: str | None = None, **params: Any) -> None:
        self.session, self.server = session, server
        self.account_id = server.account.account_id
        self.tokens = TokenProvider(token_hex=token_hex or server.account.delegate_token,
                                    account_id=self.account_id, host_name=host_name,
                                    audience=server.url)
        self.params: dict[str, Any] = {
            "accountId": self.account_id, "hostName": host_name, "version": "1.0.0",
            "delegateType": delegate_type, "delegateInstanceId": uuid.uuid4().hex, **params,
        }
        if delegate_type == "ECS":
            self.params.setdefault("delegateRandomToken", uuid.uuid4().hex)
        self.delegate_id: str | None = None
        self.connection_id: str | None = None  # from registration: this delegate's credential

    @property
    def instance_id(self) -> str:
        return str(self.params["delegateInstanceId"])

    def headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Delegate {self.tokens.get()}", "accountId": self.account_id}
        if self.connection_id:
            headers["delegateConnectionId"] = self.connection_id
        return headers

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        sep = "&" if "?" in path else "?"
        url = f"{self.server.url}{path}{sep}accountId={self.account_id}"
        async with self.session.request(method, url, json=body, headers=self.headers()) as resp:
            return resp.status, await resp.json()

    async def register(self, **changes: Any) -> dict[str, Any]:
        self.params.update(changes)
        status, body = await self.call("POST", "/api/agent/delegates/register", self.params)
        assert status == 200, body
        res: dict[str, Any] = body["resource"]
        self.delegate_id = res["delegateId"]
        self.connection_id = res.get("delegateConnectionId")
        self.params["delegateId"] = self.delegate_id
        if res.get("sequenceNum") is not None:
            self.params["sequenceNum"] = res["sequenceNum"]
        return res

    async def heartbeat(self, running: list[str] | None = None) -> tuple[int, dict[str, Any]]:
        body = {**self.params, "currentlyExecutingDelegateTasks": running or []}
        return await self.call("POST", "/api/agent/delegates/heartbeat-with-polling", body)

    async def acquire(self, task_id: str) -> tuple[int, dict[str, Any]]:
        return await self.call(
            "PUT", f"/api/agent/delegates/{self.delegate_id}/tasks/{task_id}/acquire"
                   f"?delegateInstanceId={self.instance_id}")

    async def result(self, task_id: str, status: str = "SUCCEEDED", code: str = "OK",
                     **response: Any) -> tuple[int, dict[str, Any]]:
        body = {"accountId": self.account_id, "responseCode": code,
                "response": {"status": status, **response},
                "delegateInstanceId": self.instance_id}
        return await self.call("POST", f"/api/agent/v2/tasks/{task_id}/delegates/"
                                       f"{self.delegate_id}", body)

    async def events(self) -> list[dict[str, Any]]:
        status, body = await self.call(
            "GET", f"/api/agent/delegates/{self.delegate_id}/task-events")
        assert status == 200, body
        return body["resource"]["delegateTaskEvents"]  # type: ignore[no-any-return]

    async def stream(self) -> aiohttp.ClientWebSocketResponse:
        url = (f"{self.server.url}/stream/delegate/{self.account_id}?delegateId="
               f"{self.delegate_id}&version=1.0.0")
        return await self.session.ws_connect(url, headers=self.headers())


ServerFactory = Callable[..., Awaitable[ManagerServer]]


async def login(session: aiohttp.ClientSession, server: ManagerServer,
                key: str | None = None) -> aiohttp.ClientResponse:
    """Log in through the pages' form (CSRF cookie and field included); the session's cookie jar
    then holds the session."""
    async with session.get(f"{server.url}/ui/login") as resp:
        page = await resp.text()
    csrf = page.split("name='csrf' value='", 1)[1].split("'", 1)[0]
    async with session.post(f"{server.url}/ui/login", allow_redirects=False,
                            data={"csrf": csrf, "key": key or server.account.api_key}) as resp:
        await resp.read()
        return resp


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def client_ssl(tls_files: TlsFiles) -> ssl.SSLContext:
    """A client context that trusts the throw-away certificate (and nothing else)."""
    return ssl.create_default_context(cafile=tls_files.cert)


@pytest.fixture
async def session(client_ssl: ssl.SSLContext) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=client_ssl)
    # unsafe=True: keep cookies of an IP address (127.0.0.1), as a browser does
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), connector=connector,
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One throw-away PostgreSQL cluster for the session (started on first use); each test gets a
    database of its own (`database_url`)."""
    with Postgres() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Every test that starts a manager runs on both stores: None (SQLite in the data dir), then a
    fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    pg: Postgres = request.getfixturevalue("postgres")
    name = "test_" + uuid.uuid4().hex[:16]
    with psycopg.connect(pg.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield pg.url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg.url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def start_server(tmp_path: Path, tls_files: TlsFiles,
                       database_url: str | None) -> AsyncIterator[ServerFactory]:
    """Factory: `await start_server(**settings)`; every server started is stopped afterwards.
    TLS unless a test passes `tls_cert_file=None, tls_key_file=None`. A second server started in
    one test shares the first one's database (a restart sees the same state)."""
    started: list[ManagerServer] = []
    tls: dict[str, Any] = {"tls_cert_file": tls_files.cert, "tls_key_file": tls_files.key}
    if database_url is not None:
        tls["database_url"] = database_url
        tls["key_file"] = tmp_path / "manager.key"  # replicas on one database share the key

    async def start(data_dir: Path | None = None, **overrides: Any) -> ManagerServer:
        settings = ManagerSettings(data_dir=data_dir or tmp_path / "data",
                                   **{**FAST, **tls, **overrides})
        server = ManagerServer(settings)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def server(start_server: ServerFactory) -> ManagerServer:
    return await start_server()


@pytest.fixture
def setup(session: aiohttp.ClientSession, server: ManagerServer) -> Setup:
    return Setup(session, server)


@pytest.fixture
def agent(session: aiohttp.ClientSession, server: ManagerServer) -> Callable[..., Agent]:
    def make(**kwargs: Any) -> Agent:
        return Agent(session, server, **kwargs)

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
