"""The fault proxy in front of the manager: the manager is restarted (same data dir and port) while
a deploy is followed; the deploy is not disturbed and the stream comes back at once."""

from __future__ import annotations

from pathlib import Path

from devstack.aws.server import LocalAws
from devstack.faultcases import MANAGER_ARGS, Case
from devstack.faultproxy import FaultProxy
from devstack.faultrows import restart_manager_while_following
from tests.support import Manager, free_port


def test_a_manager_restart_mid_deploy_changes_nothing_and_the_stream_is_back_at_once(
        fault_aws: LocalAws, tmp_path: Path) -> None:
    port = free_port()
    with FaultProxy(f"http://127.0.0.1:{port}") as front:
        manager = Manager(tmp_path / "manager", *MANAGER_ARGS, "--public-url", front.url)
        manager.port = port
        with manager:
            assert manager.url == front.url, "delegates reach the manager through the proxy"
            case = Case("manager-restart", fault_aws, manager, tmp_path)
            try:
                o, reconnect_s = restart_manager_while_following(case, port)
            finally:
                case.close()
    assert o.status == "SUCCEEDED", f"{o.message}\n{o.log}"
    assert o.calls["UpdateService"] == 1, dict(o.calls)
    assert o.image == "app:2"
    assert "updated service web to" in o.log
    assert front.calls, "the delegate's calls went through the proxy in front of the manager"
    assert reconnect_s < 5.0, f"the stream came back {reconnect_s:.1f} s after the manager answered"
