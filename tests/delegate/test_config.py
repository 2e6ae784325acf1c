"""The task spec environment: good values parse, bad ones exit 3 naming each variable, no secret leaks."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from pathlib import Path

import pytest

from delegate import config
from delegate.errors import ConfigError
from tests.support import REPO, python_env

TOKEN = "0123456789abcdef0123456789abcdef"
BASE = {"ACCOUNT_ID": "acc1", "DELEGATE_TOKEN": TOKEN, "MANAGER_HOST_AND_PORT": "https://m:443/"}


def test_task_spec_environment_parses() -> None:
    s = config.load({
        **BASE, "DELEGATE_TYPE": "ecs", "POLL_FOR_TASKS": "true", "DELEGATE_GROUP_NAME": "g",
        "DELEGATE_TAGS": "a, b,,c", "DELEGATE_TASK_CAPACITY": "4", "DEPLOY_MODE": "KUBERNETES",
        "HOSTNAME": "Harness-ECS-Delegate", "DELEGATE_RESOURCE_THRESHOLD": "70",
        "DELEGATE_CHECK_LOCATION": "delegateprod.txt", "INIT_SCRIPT": "echo hi",
    })
    assert s.is_ecs and s.poll_for_tasks and s.delegate_task_capacity == 4
    assert s.delegate_tags == ["a", "b", "c"]
    assert s.hostname == "Harness-ECS-Delegate"
    assert s.manager_host_and_port == "https://m:443"
    assert s.api_base == "https://m:443/api"
    assert s.token_hex == TOKEN
    assert TOKEN not in repr(s)


def test_delegate_hostname_wins_over_the_container_hostname() -> None:
    both = config.load({**BASE, "HOSTNAME": "container", "DELEGATE_HOSTNAME": "chosen"})
    assert both.hostname == "chosen"
    assert config.load({**BASE, "HOSTNAME": "container"}).hostname == "container"


def test_only_the_given_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELEGATE_GROUP_NAME", "from-the-process")
    assert config.load(BASE).delegate_group_name is None


def test_account_secret_wins_and_base64_is_accepted() -> None:
    other = "f" * 32
    s = config.load({**BASE, "ACCOUNT_SECRET": base64.b64encode(other.encode()).decode()})
    assert s.token_hex == other


def test_proxy_url_and_no_proxy() -> None:
    s = config.load({**BASE, "PROXY_HOST": "proxy", "PROXY_PORT": "3128", "PROXY_USER": "u",
                     "PROXY_PASSWORD": "p%40ss", "NO_PROXY": ".internal,m"})
    assert s.proxy_url == "http://u:p%40ss@proxy:3128"
    assert s.proxy_for("https://m:443") is None
    assert s.proxy_for("https://x.internal") is None
    assert s.proxy_for("https://elsewhere") == "http://u:p%40ss@proxy:3128"


def test_every_bad_variable_is_named_without_its_value() -> None:
    bad_token = "not-a-token-" + "9" * 20
    with pytest.raises(ConfigError) as info:
        config.load({"DELEGATE_TOKEN": bad_token, "MANAGER_HOST_AND_PORT": "ftp://m",
                     "DELEGATE_TASK_CAPACITY": "many", "POLL_FOR_TASKS": "sometimes"})
    message = str(info.value)
    for name in ("ACCOUNT_ID", "DELEGATE_TOKEN", "MANAGER_HOST_AND_PORT",
                 "DELEGATE_TASK_CAPACITY", "POLL_FOR_TASKS"):
        assert name in message
    assert bad_token not in message
    assert "32 hexadecimal" in message


def test_missing_token_is_named() -> None:
    with pytest.raises(ConfigError, match="DELEGATE_TOKEN"):
        config.load({"ACCOUNT_ID": "a", "MANAGER_HOST_AND_PORT": "http://m"})


def test_an_empty_environment_names_every_variable_in_one_message() -> None:
    with pytest.raises(ConfigError) as info:
        config.load({})
    for name in ("ACCOUNT_ID", "MANAGER_HOST_AND_PORT", "DELEGATE_TOKEN"):
        assert name in str(info.value)


def test_bad_plain_values_are_quoted_and_unknown_delegate_types_refused() -> None:
    with pytest.raises(ConfigError) as info:
        config.load({**BASE, "POLL_FOR_TASKS": "maybe", "DELEGATE_TYPE": "K8S"})
    message = str(info.value)
    assert "POLL_FOR_TASKS: expected true or false (got 'maybe')" in message
    assert "DELEGATE_TYPE" in message and "'K8S'" in message and "SHELL_SCRIPT" in message
    assert config.load({**BASE, "DELEGATE_TYPE": "shell_script"}).is_ecs is False


@pytest.mark.timeout(30)
def test_process_exits_3_with_one_message() -> None:
    secret = "s3cr3t-" + "a" * 30
    env = python_env(ACCOUNT_ID="a", DELEGATE_TOKEN=secret, MANAGER_HOST_AND_PORT="m:80")
    done = subprocess.run([sys.executable, "-m", "delegate"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=25)
    assert done.returncode == 3
    assert "DELEGATE_TOKEN" in done.stderr and "MANAGER_HOST_AND_PORT" in done.stderr
    assert secret not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1


def test_deploy_mode_onprem_forces_polling() -> None:
    assert config.load({**BASE, "DEPLOY_MODE": "ONPREM", "POLL_FOR_TASKS": "false"}).poll_for_tasks
    assert not config.load({**BASE, "DEPLOY_MODE": "KUBERNETES"}).poll_for_tasks


def test_unused_real_variables_are_listed_and_a_misspelt_own_one_is_named() -> None:
    ignored, unknown = config.environment_report({
        **BASE, "USE_CDN": "true", "JRE_VERSION": "17", "DELEGATE_ORG_IDENTIFIER": "org",
        "DELEGATE_TAGZ": "a", "POLL_FOR_TASK": "true", "PATH": "/usr/bin", "DEPLOY_MODE": "AWS"})
    assert ignored == ["DELEGATE_ORG_IDENTIFIER", "JRE_VERSION", "USE_CDN"]
    assert unknown == [("DELEGATE_TAGZ", "DELEGATE_TAGS"), ("POLL_FOR_TASK", "POLL_FOR_TASKS")]


def test_the_delegate_names_ignored_and_unknown_variables_at_start(tmp_path: Path) -> None:
    env = python_env(**{**BASE, "MANAGER_HOST_AND_PORT": "http://127.0.0.1:9"},  # it retries
                     USE_CDN="true", DELEGATE_TAGZ="x", DELEGATE_WORK_DIR=str(tmp_path),
                     DELEGATE_HEALTH_PORT="0", LOG_FORMAT="json")
    proc = subprocess.Popen([sys.executable, "-m", "delegate"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = ""
        deadline = time.monotonic() + 30
        while "config.unknown_variable" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline() if proc.stdout else ""
        assert '"config.ignored_variables"' in seen and "USE_CDN" in seen
        assert '"name": "DELEGATE_TAGZ"' in seen and '"did_you_mean": "DELEGATE_TAGS"' in seen
    finally:
        proc.kill()
        proc.wait(10)
