"""The delegate's one settings object, read once from the environment of its ECS task spec.

Variable names are those of the Harness task spec (ACCOUNT_ID, DELEGATE_TOKEN, ...). Tuning knobs
that the real delegate hard-codes are exposed with a `DELEGATE_` prefix and their unit in the name.
`load()` turns every problem into one `ConfigError` that names each bad variable and the form it
expects, and never repeats a secret's value.
"""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import SplitResult, quote, urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from delegate import proxy
from delegate.config_messages import NO_TOKEN, describe, env_name, unused_and_unknown
from delegate.errors import ConfigError
from protocol.auth import InvalidDelegateToken, normalize_token
from protocol.limits import Version

#: exit code for "bad configuration: do not restart me until someone changes the environment"
EXIT_CONFIG = 3


class DelegateType(enum.StrEnum):
    """What this delegate registers as. ECS: a sequence number and token shared through
    `delegate_sequence_config`, and keep-alives; SHELL_SCRIPT: identified by its host name."""

    ECS = "ECS"
    SHELL_SCRIPT = "SHELL_SCRIPT"


class LogFormat(enum.StrEnum):
    AUTO = "auto"  # JSON unless stdout is a terminal
    JSON = "json"
    CONSOLE = "console"


#: every duration setting: finite, and within what makes sense (not a busy loop, not never)
Seconds = Annotated[float, Field(ge=0.05, le=86_400.0, allow_inf_nan=False)]


def _port_ok(parts: SplitResult) -> bool:
    try:
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return False
    return True


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything the delegate reads from its environment. Built once in `main`, passed down."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # --- identity (task spec) ---
    account_id: str = Field(min_length=1, description="ACCOUNT_ID")
    delegate_token: SecretStr | None = Field(default=None, description="DELEGATE_TOKEN")
    account_secret: SecretStr | None = Field(
        default=None, description="ACCOUNT_SECRET: the older name; wins over DELEGATE_TOKEN"
    )
    manager_host_and_port: str = Field(description="MANAGER_HOST_AND_PORT, e.g. https://host:443")
    delegate_name: str | None = None
    delegate_group_name: str | None = None
    delegate_group_id: str | None = None
    delegate_profile: str | None = None
    delegate_type: DelegateType = DelegateType.ECS
    delegate_tags: Annotated[list[str], NoDecode] = Field(default_factory=list)
    delegate_description: str | None = None
    hostname: str = Field(
        default_factory=socket.gethostname,
        validation_alias=AliasChoices("DELEGATE_HOSTNAME", "HOSTNAME"),
        description="ECS sets the container hostname (Harness-ECS-Delegate); DELEGATE_HOSTNAME wins",
    )

    # --- work ---
    poll_for_tasks: bool = False
    #: tasks at once; 20 fits the smallest Fargate task (0.25 vCPU, 512 MiB): docs/operations.md
    delegate_task_capacity: int = Field(default=20, ge=1, le=10_000)
    delegate_resource_threshold: float = Field(default=80.0, gt=0, le=100, allow_inf_nan=False)
    init_script: str | None = None

    # --- upgrades (read by the watcher; kept here so one object documents the task spec) ---
    delegate_storage_url: str | None = None
    delegate_check_location: str = "delegateprod.txt"
    watcher_storage_url: str | None = None
    watcher_check_location: str = "watcherprod.txt"

    # --- proxy ---
    proxy_host: str | None = None
    proxy_port: int | None = Field(default=None, ge=1, le=65535)
    proxy_scheme: str = Field(default="http", pattern="^(http|https)$")
    proxy_user: str | None = None
    proxy_password: SecretStr | None = Field(default=None, description="URL-encoded")
    proxy_manager: bool = True
    no_proxy: str | None = Field(default=None, validation_alias=AliasChoices("NO_PROXY", "no_proxy"))
    https_proxy: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("HTTPS_PROXY", "https_proxy")
    )

    # --- tuning (not in the Harness spec; units in the names) ---
    delegate_health_port: int = Field(default=8080, ge=0, le=65535)
    delegate_work_dir: Path = Field(default_factory=Path.cwd)
    delegate_heartbeat_interval_s: Seconds = 10.0
    delegate_keepalive_interval_s: Seconds = 20.0
    delegate_poll_interval_s: Seconds = 2.0
    delegate_heartbeat_stale_s: Seconds = Field(
        default=60.0, description="/health turns 503 after this long without an ack"
    )
    delegate_request_timeout_s: Seconds = 15.0
    delegate_shutdown_budget_s: Seconds = 4.0
    #: the manager refusing the token (401 INVALID_TOKEN) this long without a break: self-destruct
    delegate_auth_failure_limit_s: Seconds = 600.0
    delegate_profile_interval_s: Seconds = 180.0
    # --- set by the watcher for the process it starts (docs/watcher.md); unset without a watcher ---
    harness_watcher_channel_dir: Path | None = None
    harness_watcher_heartbeat_interval_s: Seconds = 10.0
    harness_watcher_gone_after_s: Seconds = 60.0
    harness_watcher_version: Version | None = None  # sent to the manager as watcherVersion

    log_format: LogFormat = LogFormat.AUTO
    log_level: str = Field(default="INFO", pattern="(?i)^(DEBUG|INFO|WARNING|ERROR)$")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what `load()` hands over: the environment it was given, nothing read behind it."""
        return (init_settings,)

    @field_validator("delegate_tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("manager_host_and_port")
    @classmethod
    def _manager_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or not _port_ok(parts):
            raise ValueError("expected an http(s) URL such as https://manager.example.com:443")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials (user:password@): the delegate "
                             "authenticates with DELEGATE_TOKEN; remove them")
        if parts.query or parts.fragment:
            raise ValueError("must be a base URL without a query or fragment")
        return value.strip().rstrip("/")

    @field_validator("delegate_token", "account_secret")
    @classmethod
    def _token_form(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        try:
            return SecretStr(normalize_token(value.get_secret_value()))
        except InvalidDelegateToken as exc:
            raise ValueError(str(exc)) from None

    @field_validator("delegate_type", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _need_a_token(self) -> Settings:
        if self.account_secret is None and self.delegate_token is None:
            raise ValueError(NO_TOKEN)
        return self

    # --- derived -------------------------------------------------------------------------------

    @property
    def token_hex(self) -> str:
        """ACCOUNT_SECRET wins if both are set, as in the real delegate."""
        secret = self.account_secret or self.delegate_token
        assert secret is not None  # guaranteed by _need_a_token
        return secret.get_secret_value()

    @property
    def is_ecs(self) -> bool:
        return self.delegate_type == DelegateType.ECS

    @property
    def api_base(self) -> str:
        return f"{self.manager_host_and_port}/api"

    @property
    def proxy_url(self) -> str | None:
        """The proxy to use for the manager, or None. Carries credentials: never log it."""
        if self.proxy_host:
            auth = ""
            if self.proxy_user:
                password = self.proxy_password.get_secret_value() if self.proxy_password else ""
                auth = f"{quote(self.proxy_user, safe='')}:{password}@"
            port = f":{self.proxy_port}" if self.proxy_port else ""
            return f"{self.proxy_scheme}://{auth}{self.proxy_host}{port}"
        if self.https_proxy is not None:
            return self.https_proxy.get_secret_value() or None
        return None

    def proxy_for(self, url: str) -> str | None:
        """The proxy for `url`, honouring PROXY_MANAGER and NO_PROXY."""
        if not self.proxy_manager:
            return None
        if proxy.bypassed(url, self.no_proxy):
            return None
        return self.proxy_url

    def proxy_rules(self) -> proxy.ProxyRules:
        """The proxy for AWS calls: the same proxy and NO_PROXY, whatever PROXY_MANAGER says."""
        return proxy.ProxyRules(self.proxy_url, self.no_proxy)

    @property
    def sequence_file(self) -> Path:
        return self.delegate_work_dir / "delegate_sequence_config"


class _GivenEnvironment(EnvSettingsSource):
    """pydantic-settings' environment source, over the mapping `load()` was given rather than
    `os.environ` (so tests pass their own), with the library's own name matching and parsing."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._given = dict(environ)
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._given.items()}


def environment_report(environ: Mapping[str, str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(unused variables of the real spec that are set, [(unknown name, closest known name)])."""
    return unused_and_unknown(environ, {env_name(f) for f in Settings.model_fields})


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from `environ` (default: the process environment) or raise ConfigError.
    DEPLOY_MODE=ONPREM forces polling, as in the real delegate."""
    environ = os.environ if environ is None else environ
    values = _GivenEnvironment(environ)()
    if str(environ.get("DEPLOY_MODE", "")).strip().upper() == "ONPREM":
        values["poll_for_tasks"] = True
    try:
        return Settings(**values)
    except ValidationError as exc:
        missing_token = not any(_token_given(values.get(k)) for k in ("delegate_token",
                                                                      "account_secret"))
        raise ConfigError(describe(exc, missing_token=missing_token)) from None


def _token_given(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
