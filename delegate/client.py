"""The manager client: every HTTP call of the agent API, the envelope, and error mapping.

One aiohttp session, one timeout per call, the JWE token on every request. Answers are decoded into
the models of `wire.py`; anything else is a `ProtocolViolation` naming the endpoint. Retrying is the
caller's business (through `retry.py`), because only the caller knows what a retry means.

Whatever the manager answers is one answer, never the delegate's end: bodies are read up to
`wire.MAX_ANSWER_BYTES` (a longer one is refused unread), decoded by `wire.parse_json` (no
RecursionError), and a redirect is an error naming its status, never followed (it would re-send the
token and the body to another origin). Ids are checked against `wire.ID_PATTERN` and
percent-encoded before they become part of a URL.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from delegate import __version__, guards, log
from delegate.config import Settings
from delegate.errors import (
    AuthRejected,
    ManagerRejected,
    ManagerUnavailable,
    ProtocolViolation,
    SelfDestruct,
    TokenRevoked,
)
from delegate.identity import Identity
from protocol import wire
from protocol.auth import TokenProvider

USER_AGENT = f"delegate/{__version__}"


class ManagerClient:
    """Talks to `<MANAGER_HOST_AND_PORT>/api/agent/...` and opens the stream."""

    def __init__(self, settings: Settings, tokens: TokenProvider) -> None:
        self._settings = settings
        self._tokens = tokens
        #: delegate id -> its connection credential (`delegateConnectionId`) from registration
        self._connections: dict[str, str] = {}
        #: when the manager started refusing the token (monotonic), None while it accepts it
        self._auth_failing_since: float | None = None
        self._base = settings.manager_host_and_port
        self._proxy = settings.proxy_for(self._base)
        self._timeout = aiohttp.ClientTimeout(total=settings.delegate_request_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ManagerClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            traces = aiohttp.TraceConfig()
            traces.on_request_redirect.append(guards.refuse_redirect)  # ws_connect cannot be told
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
                headers={"User-Agent": USER_AGENT},
                trace_configs=[traces],
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- plumbing ------------------------------------------------------------------------------

    def _headers(self, delegate_id: str | None) -> dict[str, str]:
        headers = {
            "Authorization": f"Delegate {self._tokens.get()}",
            "accountId": self._settings.account_id,
        }
        if delegate_id:
            headers["delegateId"] = delegate_id
            connection = self._connections.get(delegate_id)
            if connection:
                headers[wire.CONNECTION_HEADER] = connection
        return headers

    def _url(self, path: str, **query: str | None) -> str:
        params = {"accountId": self._settings.account_id}
        params.update({k: v for k, v in query.items() if v is not None})
        return f"{self._base}/api/agent/{path}?{urlencode(params)}"

    async def _call(
        self, method: str, path: str, *, delegate_id: str | None = None, body: Any = None,
        query: dict[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """One request; returns the decoded envelope or raises by meaning."""
        url = self._url(path, **(query or {}))
        endpoint = f"{method} {path.split('?')[0]}"
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = self._headers(delegate_id)
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method, url, data=data, headers=headers, proxy=self._proxy, allow_redirects=False
            ) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                body = b"" if 300 <= status < 400 else await guards.read_capped(endpoint, resp)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ManagerUnavailable(
                f"{endpoint}: manager at {self._base} unreachable ({type(exc).__name__}: {exc})"
            ) from exc
        if 300 <= status < 400:
            raise guards.redirect_error(endpoint, status)
        envelope = guards.decode_envelope(endpoint, status, body)
        hint = "" if envelope is not None else (
            f" (the answer is not a manager's JSON envelope: check that MANAGER_HOST_AND_PORT="
            f"{self._base} is the Harness manager, not a proxy, load balancer page or other service)")
        if status == 429 or status >= 500:
            raise ManagerUnavailable(
                f"{endpoint}: manager answered {status} {guards.error_message(envelope)}{hint}",
                retry_after_s=guards.float_or_none(retry_after),
            )
        if status != 401:
            self._auth_failing_since = None
        if status >= 400:
            code, message = guards.error_code(envelope), guards.error_message(envelope)
            if status == 401:
                self._token_refused(endpoint, code)
            if status in (401, 403):
                raise AuthRejected(
                    f"{endpoint}: manager refused the delegate token ({status} {code}). "
                    "Check that DELEGATE_TOKEN and ACCOUNT_ID match the account in the manager.",
                    status,
                    code,
                )
            raise ManagerRejected(f"{endpoint}: {status} {code}: {message}{hint}", status, code)
        if envelope is None:
            raise ProtocolViolation(f"{endpoint}: answer {status} is not a JSON envelope")
        return envelope

    def _token_refused(self, endpoint: str, code: str | None) -> None:
        """REVOKED_TOKEN / EXPIRED_TOKEN end the delegate (TokenRevoked); INVALID_TOKEN without a
        break for `delegate_auth_failure_limit_s` is a self-destruct, not a retry forever."""
        if code in ("REVOKED_TOKEN", "EXPIRED_TOKEN"):
            raise TokenRevoked(f"{endpoint}: the manager says {code}: install a new delegate "
                               "token (DELEGATE_TOKEN) and start a new task")
        now = time.monotonic()
        if self._auth_failing_since is None:
            self._auth_failing_since = now
        elif now - self._auth_failing_since > self._settings.delegate_auth_failure_limit_s:
            raise SelfDestruct(
                f"{endpoint}: the manager has refused the delegate token for "
                f"{now - self._auth_failing_since:.0f} s (DELEGATE_AUTH_FAILURE_LIMIT_S="
                f"{self._settings.delegate_auth_failure_limit_s:g}); check DELEGATE_TOKEN")

    # --- registration --------------------------------------------------------------------------

    async def register(self, params: wire.DelegateParams) -> wire.DelegateRegisterResponse:
        env = await self._call("POST", "delegates/register", delegate_id=params.delegate_id,
                               body=params.dump())
        answer = guards.resource("register", env, wire.DelegateRegisterResponse)
        if answer.delegate_connection_id:
            # the credential for every later call of this delegate (a header, never a URL)
            log.register_secret(answer.delegate_connection_id)
            self._connections[answer.delegate_id] = answer.delegate_connection_id
        return answer

    async def unregister(self, request: wire.DelegateUnregisterRequest) -> None:
        await self._call("POST", "delegates/unregister", delegate_id=request.delegate_id,
                         body=request.dump())

    async def heartbeat(self, params: wire.DelegateParams) -> wire.DelegateHeartbeatResponse:
        env = await self._call("POST", "delegates/heartbeat-with-polling",
                               delegate_id=params.delegate_id, body=params.dump())
        return guards.resource("heartbeat-with-polling", env, wire.DelegateHeartbeatResponse)

    # --- tasks ---------------------------------------------------------------------------------

    async def task_events(self, delegate_id: str) -> wire.TaskEventsResponse:
        env = await self._call("GET", f"delegates/{guards.delegate_part(delegate_id)}/task-events",
                               delegate_id=delegate_id)
        return guards.resource("task-events", env, wire.TaskEventsResponse)

    async def acquire(self, who: Identity, task_id: str) -> wire.DelegateTaskPackage:
        env = await self._call(
            "PUT",
            f"delegates/{guards.delegate_part(who.delegate_id)}/tasks/{guards.task_part(task_id)}/acquire",
            delegate_id=who.delegate_id,
            query={"delegateInstanceId": who.instance_id},
        )
        return guards.resource("acquire", env, wire.DelegateTaskPackage)

    async def report(
        self, delegate_id: str, task_id: str, report: wire.CapabilityReport
    ) -> wire.DelegateTaskPackage:
        env = await self._call(
            "POST", f"delegates/{guards.delegate_part(delegate_id)}/tasks/{guards.task_part(task_id)}/report",
            delegate_id=delegate_id,
            body=report.dump(),
        )
        return guards.resource("report", env, wire.DelegateTaskPackage)

    async def send_logs(self, delegate_id: str, task_id: str, batch: wire.LogBatch) -> None:
        await self._call(
            "POST", f"delegates/{guards.delegate_part(delegate_id)}/tasks/{guards.task_part(task_id)}/logs",
            delegate_id=delegate_id,
            body=batch.dump(),
        )

    async def send_result(
        self, delegate_id: str, task_id: str, result: wire.TaskResult
    ) -> dict[str, Any]:
        """Returns the envelope's metaData (the manager flags a duplicate there)."""
        env = await self._call(
            "POST", f"v2/tasks/{guards.task_part(task_id)}/delegates/{guards.delegate_part(delegate_id)}",
            delegate_id=delegate_id,
            body=result.dump(),
        )
        meta = env.get("metaData")
        return meta if isinstance(meta, dict) else {}

    # --- profiles ------------------------------------------------------------------------------

    async def profile(
        self, delegate_id: str, profile_id: str, last_updated_at: int
    ) -> wire.DelegateProfileParams | None:
        env = await self._call(
            "GET",
            f"delegates/{guards.delegate_part(delegate_id)}/profile",
            delegate_id=delegate_id,
            query={"profileId": profile_id, "lastUpdatedAt": str(last_updated_at)},
        )
        if env.get("resource") is None:
            return None
        return guards.resource("profile", env, wire.DelegateProfileParams)

    async def profile_result(self, delegate_id: str, result: wire.ProfileResult) -> None:
        await self._call(
            "POST", f"delegateFiles/{guards.delegate_part(delegate_id)}/profile-result",
            delegate_id=delegate_id, body=result.dump(),
        )

    # --- the stream ----------------------------------------------------------------------------

    async def open_stream(
        self, delegate_id: str, *, sequence_num: str | None, random_token: str | None,
        heartbeat_s: float,
    ) -> aiohttp.ClientWebSocketResponse:
        query = {
            "delegateId": delegate_id,
            "sequenceNum": sequence_num or "",
            "delegateToken": random_token or "",
            "version": __version__,
        }
        ws_base = self._base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        account = quote(self._settings.account_id, safe="")
        url = f"{ws_base}/stream/delegate/{account}?{urlencode(query)}"
        try:
            return await self.session.ws_connect(
                url,
                headers=self._headers(delegate_id),
                proxy=self._proxy,
                heartbeat=heartbeat_s,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                autoping=True,
                max_msg_size=wire.MAX_FRAME_BYTES,
            )
        except guards.Redirected as exc:
            raise guards.redirect_error("stream", exc.status) from None
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise AuthRejected(
                    f"stream: manager refused the delegate token ({exc.status}). Check "
                    "DELEGATE_TOKEN and ACCOUNT_ID.",
                    exc.status,
                    "INVALID_TOKEN",
                ) from None
            if 400 <= exc.status < 500 and exc.status != 429:
                raise ManagerRejected(
                    f"stream: handshake refused ({exc.status})", exc.status
                ) from None
            raise ManagerUnavailable(f"stream: handshake failed ({exc.status})") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ManagerUnavailable(
                f"stream: manager at {self._base} unreachable ({type(exc).__name__})"
            ) from exc
