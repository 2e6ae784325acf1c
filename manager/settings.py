"""The manager's one settings object: the environment (`MANAGER_*`), overridden by the command line
(`harness-manager serve --...`) or by a test's keyword arguments. Built once and passed down.

Transport rules (`transport_problem`): listening beyond loopback needs TLS (`MANAGER_TLS_CERT_FILE`
+ `MANAGER_TLS_KEY_FILE`) or a TLS-terminating load balancer in front whose forwarded headers are
trusted (`MANAGER_TRUST_FORWARDED_HEADERS=true`), and a public URL (`MANAGER_PUBLIC_URL`), which goes
into every download instead of whatever Host header a caller sent.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol.images import check_image


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ManagerSettings(BaseSettings):
    """Knobs of the manager; every duration carries its unit in its name."""

    model_config = SettingsConfigDict(env_prefix="MANAGER_", frozen=True, extra="forbid")

    data_dir: Path
    #: postgresql://user:password@host:port/db: PostgreSQL instead of SQLite in the data dir, so that
    #: several manager processes (replicas behind a load balancer) can share one database
    database_url: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: the OS picks; `delegate.env` holds the real one
    #: the URL delegates and people reach this manager at (scheme://host[:port]); goes into downloads
    public_url: str | None = None
    #: the 32-byte key that encrypts delegate tokens at rest (made at first start, 0600); replicas
    #: on one database must share it. Default DATA_DIR/manager.key
    key_file: Path | None = None
    #: the image downloads name by default (REGISTRY/REPO:TAG where scripts/build-image pushed it)
    delegate_image: str | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: behind a TLS-terminating load balancer: take the scheme and client address from
    #: X-Forwarded-Proto / X-Forwarded-For (only ever set this when nothing else can reach the port)
    trust_forwarded_headers: bool = False
    #: a delegate without register / keep-alive / heartbeat for this long is DISCONNECTED
    disconnect_after_s: float = Field(default=300.0, gt=0)
    #: a streaming delegate whose websocket closed and did not come back within this is DISCONNECTED
    stream_gone_after_s: float = Field(default=3.0, gt=0)
    #: an ECS slot untouched for this long may be taken by a new ECS task of the same hostname
    ecs_stale_slot_s: float = Field(default=100.0, gt=0)
    #: a STARTED task its delegate's heartbeats have not listed for this long is re-queued
    task_orphan_s: float = Field(default=30.0, gt=0)
    #: QUEUED tasks are broadcast again this often (10 delegates per round)
    rebroadcast_s: float = Field(default=5.0, gt=0)
    #: a VALIDATING task without a delegate whose capability checks pass fails after this long
    validation_timeout_s: float = Field(default=120.0, gt=0)
    #: how often the periodic job runs (expiry, re-queue, rebroadcast, disconnect marking)
    tick_s: float = Field(default=1.0, gt=0)
    #: delegates told about one task per broadcast round
    broadcast_fanout: int = Field(default=10, gt=0)

    @field_validator("delegate_image")
    @classmethod
    def _delegate_image(cls, value: str | None) -> str | None:
        return None if value is None else check_image(value)  # ImageError is a ValueError

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("expected https://host[:port] (or http:// for loopback)")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
                ("postgresql://", "postgres://")):
            raise ValueError("expected postgresql://user:password@host:port/database")
        return value

    @property
    def db_path(self) -> Path:
        return self.data_dir / "manager.sqlite3"

    @property
    def key_path(self) -> Path:
        """The manager key: encrypts delegate tokens at rest. Back it up with the database;
        replicas on one database share one (MANAGER_KEY_FILE)."""
        return self.key_file or self.data_dir / "manager.key"

    @property
    def env_path(self) -> Path:
        return self.data_dir / "delegate.env"

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None and self.tls_key_file is not None

    def transport_problem(self) -> str | None:
        """Why this configuration must not start, naming the setting; None when it may."""
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            return ("MANAGER_TLS_CERT_FILE and MANAGER_TLS_KEY_FILE (--tls-cert, --tls-key) go "
                    "together: set both or neither")
        if self.tls and self.trust_forwarded_headers:
            return ("MANAGER_TRUST_FORWARDED_HEADERS is for a manager behind a TLS-terminating load "
                    "balancer; with MANAGER_TLS_CERT_FILE it would let callers spoof their scheme")
        if is_loopback(self.host):
            return None
        if not (self.tls or self.trust_forwarded_headers):
            return (f"MANAGER_HOST={self.host} listens beyond loopback in plain http: set "
                    "MANAGER_TLS_CERT_FILE and MANAGER_TLS_KEY_FILE (--tls-cert, --tls-key), or "
                    "MANAGER_TRUST_FORWARDED_HEADERS=true behind a TLS-terminating load balancer")
        if not self.public_url:
            return (f"MANAGER_PUBLIC_URL (--public-url) is required when MANAGER_HOST={self.host}: "
                    "the URL delegates reach this manager at, e.g. https://harness.example.com")
        return None

    def url_for(self, port: int) -> str:
        """The public URL, or this process's own loopback URL when none is configured."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls else "http"
        host = self.host if is_loopback(self.host) and self.host != "localhost" else "127.0.0.1"
        return f"{scheme}://{host}:{port}"
