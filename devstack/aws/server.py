"""The local AWS in-process: moto's threaded server plus the ECS scheduler beside it.

    with LocalAws(port=0) as aws:
        ecs = boto3.client("ecs", endpoint_url=aws.endpoint_url, region_name="us-east-1", ...)

Every request is served under `ecs_model.LOCK` (see `_Serialized`), the same lock the scheduler
ticks under, so clients see each change whole.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from devstack.aws import ecs_model
from devstack.aws.containers import ContainerRunner
from devstack.aws.faults import Faults
from devstack.aws.scheduler import Scheduler
from devstack.aws.timing import Timing

DEFAULT_HOST = "127.0.0.1"
REGION = "us-east-1"

# moto keeps its state in module globals: two servers in one process would share it (and two
# schedulers would drive the same tasks), so only one LocalAws may run per process.
_running: LocalAws | None = None
_running_lock = threading.Lock()


class _Serialized:
    """WSGI middleware: one request at a time, the scheduler's tick excluded meanwhile."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with ecs_model.LOCK:
            return list(self._app(environ, start_response))


class _Server(ThreadedMotoServer):
    """moto's threaded server with every request under the lock, and a bind error reported
    (moto's own would wait forever for a server that failed to bind)."""

    _bind_error: OSError | None = None
    faults: Faults | None = None

    def _server_entry(self) -> None:
        app: Callable[..., Iterable[bytes]] = _Serialized(DomainDispatcherApplication(create_backend_app))
        if self.faults is not None:
            app = self.faults.wrap(app)
        try:
            self._server = make_server(self._ip_address, self._port, app, threaded=True)
        except OSError as exc:
            self._bind_error = exc
            self._server_ready_event.set()
            return
        self._server_ready_event.set()
        self._server.serve_forever()

    def start(self) -> None:
        super().start()
        if self._bind_error is not None:
            raise self._bind_error


class LocalAws:
    """moto's server on `host:port` (0 picks a free port) with the ECS scheduler running."""

    def __init__(
        self, port: int = 0, host: str = DEFAULT_HOST, timing: Timing | None = None,
        containers: ContainerRunner | None = None, **timing_overrides: float
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port={port}: give 0 (any free port) or 1-65535")
        self.timing = timing or Timing(**timing_overrides)
        self._server = _Server(ip_address=host, port=port, verbose=False)
        #: injected faults and the count of API calls answered (devstack/aws/faults.py)
        self.faults = self._server.faults = Faults()
        #: opt-in: run the tasks' containers with podman (devstack/aws/containers.py)
        self.containers = containers
        self.scheduler = Scheduler(self.timing, containers)
        self.host, self.port = host, port
        self._started = False

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalAws:
        global _running
        with _running_lock:
            if _running is not None:
                raise RuntimeError(
                    f"a LocalAws already runs in this process at {_running.endpoint_url}; "
                    "moto's state is per process, so share that one (or start `devstack aws` as a process)"
                )
            _running = self
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per request
        try:
            self._server.start()
        except OSError:
            with _running_lock:
                _running = None
            raise
        self.host, self.port = self._server.get_host_and_port()
        self.scheduler.start()
        self._started = True
        return self

    def stop(self) -> None:
        if not self._started:
            return
        global _running
        self._started = False
        self.scheduler.stop()
        if self.containers is not None:
            self.containers.close()
        self._server.stop()
        with _running_lock:
            _running = None

    def reset(self) -> None:
        """Forget every resource (moto's own reset); the scheduler carries on."""
        url = f"{self.endpoint_url}/moto-api/reset"  # always http://127.0.0.1-ish, never file:
        request = urllib.request.Request(url, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for boto3.client(...) with dummy credentials."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": REGION,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running_or_new() -> Iterator[LocalAws]:
    """The local AWS already running in this process (moto allows one per process), or a new one on
    a free port that stops when the block ends, so that another can start later."""
    if _running is not None:
        yield _running
        return
    with LocalAws(port=0) as aws:
        yield aws
