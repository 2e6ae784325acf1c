"""Who a task acts as: boto3 sessions per credential source, and assumed roles cached until shortly
before they expire.

Three sources, per task: the delegate's own role (boto3's default chain: the ECS task role in ECS),
keys sent with the task, and a role assumed from either. A source is identified by a digest of its
key material, so caches never hold a secret in their keys and no log line can show one.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from delegate import log
from delegate.ecs.inputs import AwsAccess
from delegate.proxy import ProxyRules

#: re-assume a role this long before its credentials expire
REFRESH_BEFORE_S = 300.0
ASSUME_DURATION_S = 3600


@dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def digest(self) -> str:
        material = f"{self.access_key_id}\0{self.secret_access_key}\0{self.session_token or ''}"
        return hashlib.sha256(material.encode()).hexdigest()[:24]


def keys_of(access: AwsAccess) -> Keys | None:
    if access.access_key_id is None or access.secret_access_key is None:
        return None
    keys = Keys(
        access.access_key_id.get_secret_value(),
        access.secret_access_key.get_secret_value(),
        access.session_token.get_secret_value() if access.session_token else None,
    )
    for secret in (keys.access_key_id, keys.secret_access_key, keys.session_token):
        log.register_secret(secret)  # last line of defence; nothing here logs them
    return keys


def base_key(keys: Keys | None) -> str:
    return "default-chain" if keys is None else f"keys:{keys.digest()}"


def role_key(base: str, role_arn: str, external_id: str | None) -> str:
    material = f"{base}\0{role_arn}\0{external_id or ''}"
    return "role:" + hashlib.sha256(material.encode()).hexdigest()[:24]


class SessionCache:
    """boto3 sessions by source key. boto3 sessions are not thread-safe to create clients from
    concurrently, so clients are made under one lock and cached; clients themselves are."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, Any] = {}
        self._clients: dict[tuple[str, str, str, ProxyRules | None], Any] = {}
        self._assumed: dict[str, tuple[Keys, float]] = {}

    def client(self, source: str, keys: Keys | None, service: str, region: str, config: Any,
               proxy: ProxyRules | None = None, variant: str = "") -> Any:
        """`variant` names a client made with a different `config` (one without SDK retries)."""
        with self._lock:
            client = self._clients.get((source, region, service + variant, proxy))
            if client is None:
                session = self._sessions.get(source)
                if session is None:
                    session = (
                        boto3.session.Session()
                        if keys is None
                        else boto3.session.Session(
                            aws_access_key_id=keys.access_key_id,
                            aws_secret_access_key=keys.secret_access_key,
                            aws_session_token=keys.session_token,
                        )
                    )
                    self._sessions[source] = session
                client = session.client(service, region_name=region, config=config)
                if proxy is not None:  # the proxy (or none: {} keeps botocore off the environment's)
                    url = proxy.for_url(client.meta.endpoint_url)
                    proxied = config.merge(Config(proxies={"http": url, "https": url} if url else {}))
                    client = session.client(service, region_name=region, config=proxied)
                self._clients[(source, region, service + variant, proxy)] = client
            return client

    def assumed(self, source: str) -> Keys | None:
        with self._lock:
            entry = self._assumed.get(source)
        if entry is None or entry[1] - time.time() < REFRESH_BEFORE_S:
            return None
        return entry[0]

    def remember_assumed(self, source: str, keys: Keys, expires_at: float) -> None:
        log.register_secret(keys.secret_access_key)
        log.register_secret(keys.session_token)
        with self._lock:
            stale = self._assumed.get(source)
            self._assumed[source] = (keys, expires_at)
            if stale is not None and stale[0] != keys:  # new keys: clients of the old ones go
                self._sessions.pop(source, None)
                for key in [k for k in self._clients if k[0] == source]:
                    del self._clients[key]
