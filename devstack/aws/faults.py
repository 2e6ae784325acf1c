"""AWS-side faults on demand, and a count of every API call the local AWS answers.

    aws.faults.add("UpdateService", "ThrottlingException", times=2)   # the next 2 UpdateService calls
    aws.faults.add(None, "AccessDeniedException", access_key="AKIADENIED0000000000")  # every call
                                                                        # signed with that key
    aws.faults.clear()
    aws.calls[("ecs", "UpdateService")]       # how many were answered (faulted ones included)

A fault answers like AWS would (JSON `__type` for JSON-protocol services such as ECS and Application
Auto Scaling, an XML ErrorResponse for query-protocol ones such as ELBv2 and STS), so clients take
their normal paths: botocore retries ThrottlingException with its retry mode, AccessDenied is final.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape


@dataclass
class Fault:
    operation: str | None  # e.g. "UpdateService"; None: any
    code: str
    times: int | None  # None: until cleared
    access_key: str | None
    status: int
    message: str


def identify(environ: dict[str, Any]) -> tuple[str, str, str]:
    """(service, operation, access key id) of a request; the body is put back for the app."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    key, service = "", ""
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        key = scope[0]
        service = scope[3] if len(scope) > 3 else ""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return service, target.rsplit(".", 1)[-1], key
    operation = urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).get("Action", [""])[0]
    if not operation and environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        operation = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
    return service, operation, key


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.calls: Counter[tuple[str, str]] = Counter()

    def add(self, operation: str | None, code: str, *, times: int | None = 1,
            access_key: str | None = None, status: int = 400, message: str | None = None) -> None:
        with self._lock:
            self._faults.append(Fault(operation, code, times, access_key, status,
                                      message or f"devstack fault: {code}"))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def _take(self, operation: str, key: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation not in (None, operation) or fault.access_key not in (None, key):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def wrap(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO", "").startswith("/moto-api"):
                return app(environ, start_response)
            service, operation, key = identify(environ)
            with self._lock:
                self.calls[(service, operation)] += 1
            fault = self._take(operation, key)
            if fault is None:
                return app(environ, start_response)
            return _answer(fault, json_protocol=bool(environ.get("HTTP_X_AMZ_TARGET")),
                           start_response=start_response)

        return middleware


def _answer(fault: Fault, *, json_protocol: bool, start_response: Callable[..., Any]) -> list[bytes]:
    request_id = str(uuid.uuid4())
    if json_protocol:
        body = json.dumps({"__type": fault.code, "message": fault.message}).encode()
        kind = "application/x-amz-json-1.1"
    else:
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{escape(fault.code)}</Code>"
                f"<Message>{escape(fault.message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        kind = "text/xml"
    start_response(f"{fault.status} Fault", [("Content-Type", kind), ("Content-Length", str(len(body))),
                                             ("x-amzn-RequestId", request_id)])
    return [body]
