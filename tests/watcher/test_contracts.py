"""The parts of the watcher that are contracts rather than processes: the check file, settings,
and the channel's line format (the delegate keeps its own copy of it)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from delegate import config
from delegate.channel import ChannelSettings, WatcherChannel
from delegate.identity import Registration
from tests.support import REPO
from watcher import channel as wch
from watcher import settings
from watcher.machine import TRANSITIONS, Event, State
from watcher.upgrade import UpgradeError, parse_check, version_key

SHA = "a" * 64


def test_check_file_is_version_path_sha() -> None:
    p = parse_check(f"2.1.0 delegate/2.1.0/delegate.pyz {SHA.upper()}\n", "delegateprod.txt")
    assert (p.version, p.path, p.sha256) == ("2.1.0", "delegate/2.1.0/delegate.pyz", SHA)


@pytest.mark.parametrize(("text", "says"), [
    ("2.1.0 delegate.pyz", "got 2 field"),
    (f"2.1.0 ../etc/passwd {SHA}", "relative"),
    (f"2.1.0 https://elsewhere/x.pyz {SHA}", "relative"),
    ("2.1.0 delegate.pyz abc", "sha256"),
    (f"2/1 delegate.pyz {SHA}", "version"),
])
def test_bad_check_files_are_refused_naming_the_file(text: str, says: str) -> None:
    with pytest.raises(UpgradeError, match=says) as info:
        parse_check(text, "http://s/delegateprod.txt")
    assert "http://s/delegateprod.txt" in str(info.value)


def test_settings_defaults_and_units(tmp_path: Path) -> None:
    s = settings.load({"DELEGATE_WORK_DIR": str(tmp_path)})
    assert s.heartbeat_timeout_s == 60 and s.drain_budget_s < 30
    assert 1200 <= s.upgrade_check_interval_s <= 1800 and s.upgrade_check_jitter_s > 0
    assert s.channel_dir == tmp_path / "msg" and s.delegate_storage_url is None


def test_settings_name_every_bad_variable() -> None:
    with pytest.raises(settings.ConfigError) as info:
        settings.load({"DELEGATE_STORAGE_URL": "ftp:/x", "WATCHER_HEARTBEAT_INTERVAL_S": "40",
                       "WATCHER_START_RETRIES": "0", "WATCHER_STORAGE_URL": "http://storage.example.com/w",
                       "WATCHER_DRAIN_BUDGET_S": "inf", "WATCHER_READY_TIMEOUT_S": "nan",
                       "WATCHER_START_TIMEOUT_S": "1e-9", "WATCHER_TRUSTED_KEYS": "not-a-key",
                       "LOG_LEVEL": "loud"})
    text = str(info.value)
    for name in ("DELEGATE_STORAGE_URL", "WATCHER_HEARTBEAT_TIMEOUT_S", "WATCHER_START_RETRIES",
                 "WATCHER_STORAGE_URL: must be https", "WATCHER_DRAIN_BUDGET_S: 'inf' is out of range",
                 "WATCHER_READY_TIMEOUT_S", "WATCHER_START_TIMEOUT_S: '1e-9' is out of range",
                 "WATCHER_TRUSTED_KEYS: 'not-a-key' is not base64", "LOG_LEVEL: got 'loud'"):
        assert name in text


def test_storage_urls_https_or_loopback_and_keys_from_the_setting() -> None:
    key = "A" * 43 + "="
    s = settings.load({"DELEGATE_STORAGE_URL": "http://u:p@127.0.0.1:8/storage/",
                       "WATCHER_STORAGE_URL": "https://cdn.example.com/w", "WATCHER_TRUSTED_KEYS": key})
    assert s.delegate_storage_url == "http://u:p@127.0.0.1:8/storage"
    assert s.trusted_keys == (bytes(32),)


def test_versions_order_numerically() -> None:
    assert version_key("1.9.0") < version_key("1.10.0") < version_key("2.0.0")
    assert version_key("0.9.0") < version_key("1.0.0")


def test_every_state_is_reachable_and_every_event_used() -> None:
    reached = {State.STOPPED} | set(TRANSITIONS.values())
    assert reached == set(State)
    assert {event for _, event in TRANSITIONS} == set(Event)


def test_docs_name_every_variable_and_event_and_the_code_has_each_event() -> None:
    """docs/watcher.md stays true: its variables are the settings, its events are in the code as
    constant strings (so `grep upgrade.delegate_checksum_mismatch` finds the place)."""
    doc = (REPO / "docs" / "watcher.md").read_text()
    for name in settings.VARIABLES:
        assert f"`{name}`" in doc, f"{name} is not documented in docs/watcher.md"
    # the watcher's code, and the delegate's side of the channel (watcher.gone / watcher.back)
    sources = [*(REPO / "watcher").glob("*.py"), *(REPO / "delegate").rglob("*.py")]
    code = "\n".join(p.read_text() for p in sources)
    events = set(re.findall(r"`((?:delegate|upgrade|watcher)\.[a-z_]+)`", doc))
    assert "upgrade.delegate_checksum_mismatch" in events and len(events) > 20
    for event in events:
        assert f'"{event}"' in code, f"docs/watcher.md names {event}, which nothing logs"


class _Runner:
    def __init__(self) -> None:
        self.accepting = True
        self.drained: list[float] = []

    def stop_acquiring(self) -> None:
        self.accepting = False

    def resume(self) -> None:
        self.accepting = True

    def executing(self) -> list[str]:
        return []

    async def drain(self, budget_s: float) -> bool:
        self.drained.append(budget_s)
        return True


async def test_delegate_side_speaks_the_watchers_format(tmp_path: Path) -> None:
    """The delegate's channel against the watcher's own reader and writer, over real files."""
    watcher_side = wch.Channel(tmp_path / "msg")
    # the delegate reads the watcher's variables through its one settings object, as in production
    base = {"ACCOUNT_ID": "acct", "DELEGATE_TOKEN": "0" * 32,
            "MANAGER_HOST_AND_PORT": "http://127.0.0.1:1"}
    conf = ChannelSettings.from_settings(config.load(
        {**base, wch.ENV_DIR: str(tmp_path / "msg"), wch.ENV_HEARTBEAT: "0.05", wch.ENV_GONE: "7"}))
    assert conf is not None and ChannelSettings.from_settings(config.load(base)) is None
    assert (conf.root, conf.heartbeat_interval_s, conf.watcher_gone_after_s) == (
        tmp_path / "msg", 0.05, 7.0)
    runner = _Runner()
    stops: list[str] = []
    registration = Registration()
    registration.confirm("d-1")
    delegate_side = WatcherChannel(conf, runner, healthy=lambda: (True, "ok"),
                                   registration=registration, request_stop=stops.append)
    task = asyncio.create_task(delegate_side.run(), name="test.channel")
    try:
        pid = delegate_side.pid
        got: list[str] = []
        for _ in range(200):  # up to 10 s: a loaded machine is slow
            got += [name for name, _ in watcher_side.receive(pid)]
            if wch.DELEGATE_READY in got:
                break
            await asyncio.sleep(0.05)
        assert got[:3] == [wch.NEW_DELEGATE, wch.DELEGATE_STARTED, wch.DELEGATE_READY]
        assert (watcher_side.state(pid) or {}).get("delegateId") == "d-1"
        watcher_side.send(pid, wch.STOP_ACQUIRING)
        for _ in range(200):  # up to 10 s: a loaded machine is slow
            if not runner.accepting:
                break
            await asyncio.sleep(0.05)
        assert not runner.accepting and not stops  # no exit asked: only paused
        watcher_side.send(pid, wch.RESUME)
        watcher_side.send(pid, wch.STOP_ACQUIRING, exitWhenDrainedS=5, handover=True)
        for _ in range(200):  # up to 10 s: a loaded machine is slow
            if stops:
                break
            await asyncio.sleep(0.05)
        assert stops and runner.drained == [5] and delegate_side.handed_over
        state = json.loads((tmp_path / "msg" / "data" / f"delegate.{pid}.json").read_text())
        assert state["shutdownPending"] is True and state["accepting"] is False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_log_lines_carry_pid_version_instance_and_keep_tracebacks() -> None:
    import io
    import os

    import watcher
    from watcher.log import Logger

    out = io.StringIO()
    logger = Logger()
    logger.configure("info", "json", out)
    try:
        {}["missing"]
    except KeyError:
        logger.error("upgrade.delegate_check_crashed", exc_info=True)
    logger.info("delegate.spawned", delegate_pid=123)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "upgrade.delegate_check_crashed"
    assert "Traceback" in first["exception"] and "KeyError: 'missing'" in first["exception"]
    for record in (first, second):
        assert record["pid"] == os.getpid() and record["version"] == watcher.__version__
        assert len(record["instance"]) == 12 and record["instance"] == first["instance"]
    assert second["delegate_pid"] == 123


def test_the_retry_policy_is_capped_jittered_and_gives_up() -> None:
    from watcher.backoff import RetryPolicy, jittered

    policy = RetryPolicy(initial_s=0.2, max_s=30.0, max_attempts=5)
    firsts = {policy.delay(1) for _ in range(200)}
    assert min(firsts) >= 0.18 and max(firsts) <= 0.22 and len(firsts) > 100  # +-10 %, spread
    assert 0.36 <= policy.delay(2) <= 0.44  # doubles per failure in a row
    assert all(policy.delay(n) <= 30.0 for n in range(1, 2000))  # never past the cap
    assert not policy.exhausted(5) and policy.exhausted(6)
    assert all(7 <= jittered(10, 3) <= 13 for _ in range(100)) and jittered(1, 5) >= 0


def test_proxy_settings_are_the_delegates_and_bad_ones_are_named_without_secrets() -> None:
    s = settings.load({"PROXY_HOST": "proxy.corp", "PROXY_PORT": "3128", "PROXY_USER": "me@corp",
                       "PROXY_PASSWORD": "pa%40ss", "NO_PROXY": "10.0.0.0/8,.corp"})
    assert s.proxy.for_url("https://storage.example.com/x") == "http://me%40corp:pa%40ss@proxy.corp:3128"
    assert s.proxy.for_url("https://10.1.2.3/x") is None and s.proxy.for_url("https://s.corp/x") is None
    assert "pa%40ss" not in repr(s)
    assert settings.load({"https_proxy": "http://p:1"}).proxy.for_url("https://x/") == "http://p:1"
    with pytest.raises(settings.ConfigError) as info:
        settings.load({"PROXY_HOST": "p", "PROXY_PORT": "99999", "PROXY_SCHEME": "socks5",
                       "PROXY_USER": "u", "PROXY_PASSWORD": "Secr3tValue"})
    text = str(info.value)
    assert "PROXY_PORT: got '99999'" in text and "PROXY_SCHEME: got 'socks5'" in text
    assert "Secr3tValue" not in text
