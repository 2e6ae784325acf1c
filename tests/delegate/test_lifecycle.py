"""A delegate's life against the real local manager: register, stay connected, leave cleanly."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import Manager, Process, http_get, wait_until

pytestmark = pytest.mark.timeout(60)

Start = Callable[..., Process]


def health_url(proc: Process) -> str:
    port = proc.wait_event("health.listening")["port"]
    return f"http://127.0.0.1:{port}/health"


def connected(manager: Manager, delegate_id: str) -> bool:
    d = manager.delegate(delegateId=delegate_id)
    return d is not None and d["status"] == "CONNECTED"


def test_registers_and_shows_connected_in_its_group(manager: Manager, delegates: Start) -> None:
    proc = delegates("d1", DELEGATE_GROUP_NAME="ecs-group", DELEGATE_TAGS="blue,east")
    delegate_id = proc.wait_event("manager.registered")["delegate_id"]
    wait_until(lambda: connected(manager, delegate_id), 10, "CONNECTED")
    groups = manager.api("GET", f"/api/setup/delegates?accountId={manager.account_id}")["groups"]
    group = next(g for g in groups if g["groupName"] == "ecs-group")
    member = next(d for d in group["delegates"] if d["delegateId"] == delegate_id)
    assert member["hostName"] == "Harness-ECS-Delegate_0"
    assert member["tags"] == ["blue", "east"]
    # /health turns 200 once a heartbeat has been acknowledged
    url = health_url(proc)
    wait_until(lambda: http_get(url)[0] == 200, 10, "/health 200")
    status, body = http_get(url.replace("/health", "/metrics"))
    assert status == 200 and "delegate_connected 1.0" in body
    assert "delegate_heartbeats_sent_total" in body
    # every line says which process wrote it (the watcher and two delegates share one stdout)
    stamps = {(e.get("pid"), e.get("version"), e.get("instance_id")) for e in proc.events}
    assert len(stamps) == 1 and None not in next(iter(stamps)), stamps
    assert next(iter(stamps))[0] == proc.pid
    assert all(line.startswith("{") for line in proc.lines if line), proc.lines  # all JSON


def test_polling_mode_registers_and_heartbeats(manager: Manager, delegates: Start) -> None:
    proc = delegates("p1", POLL_FOR_TASKS="true")
    delegate_id = proc.wait_event("manager.registered")["delegate_id"]
    wait_until(lambda: connected(manager, delegate_id), 10, "CONNECTED")
    assert manager.delegate(delegateId=delegate_id)["pollingModeEnabled"] is True
    url = health_url(proc)
    wait_until(lambda: http_get(url)[0] == 200, 10, "/health 200")
    assert not proc.find("stream.connected")


def test_wrong_token_is_refused_clearly_and_backs_off(manager: Manager, delegates: Start) -> None:
    proc = delegates("bad", DELEGATE_TOKEN="f" * 32)
    attempts = wait_until(lambda: (found := proc.find("manager.auth_rejected")) and
                          len(found) >= 3 and found, 30, "three refused attempts")
    # backing off, not a spin: the attempts (by the delegate's own timestamps) are spread out
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in attempts[:3]]
    assert (stamps[2] - stamps[0]).total_seconds() >= 1.0, stamps
    assert "DELEGATE_TOKEN" in attempts[0]["error"]
    assert not proc.find("retry.scheduled", what="register")  # each rejection logged once
    status, body = http_get(health_url(proc))
    assert status == 503 and "not registered" in body
    assert proc.alive()


def test_survives_manager_restart_as_the_same_delegate(manager: Manager, delegates: Start) -> None:
    proc = delegates("d1")
    delegate_id = proc.wait_event("manager.registered")["delegate_id"]
    wait_until(lambda: connected(manager, delegate_id), 10, "CONNECTED")
    manager.stop()
    proc.wait_event("stream.lost", timeout=10)
    # down long enough for an uncapped exponential backoff to pass 1 s several times over
    wait_until(lambda: len(proc.find("retry.scheduled", what="stream.connect")) >= 6, 20,
               "reconnect attempts while the manager is down")
    manager.start()
    wait_until(lambda: len(proc.find("stream.connected")) >= 2, 20, "stream reconnected")
    wait_until(lambda: connected(manager, delegate_id), 10, "CONNECTED again")
    assert {e["delegate_id"] for e in proc.find("manager.registered")} == {delegate_id}
    assert proc.find("stream.connected", reconnect=True)
    # the promise behind "back within about a second": no wait between attempts exceeds 1 s
    waits = [e["wait_s"] for e in proc.find("retry.scheduled", what="stream.connect")]
    assert waits and max(waits) <= 1.0, waits


def test_three_ecs_delegates_get_sequence_numbers(manager: Manager, delegates: Start,
                                                 tmp_path: Path) -> None:
    procs = [delegates(f"e{i}") for i in range(3)]
    seqs = sorted(int(p.wait_event("manager.registered")["sequence_num"]) for p in procs)
    assert seqs == [0, 1, 2]
    hosts = sorted(d["hostName"] for d in manager.delegates())
    assert hosts == [f"Harness-ECS-Delegate_{i}" for i in range(3)]
    for i in range(3):
        text = (tmp_path / f"e{i}" / "delegate_sequence_config").read_text()
        assert text.startswith("[TOKEN]") and "[SEQ]" in text


def test_restart_with_sequence_file_keeps_the_slot(manager: Manager, delegates: Start) -> None:
    first = delegates("e0")
    event = first.wait_event("manager.registered")
    delegates("e1").wait_event("manager.registered")
    first.send(signal.SIGKILL)
    first.wait()
    again = delegates("e0")  # same work dir, so the same sequence file
    event2 = again.wait_event("manager.registered")
    assert event2["sequence_num"] == event["sequence_num"]
    assert event2["delegate_id"] == event["delegate_id"]


def test_dead_delegates_slot_is_reused_once_stale(manager: Manager, delegates: Start) -> None:
    # the manager fixture treats a slot as stale after 3 s without a keep-alive
    dead = delegates("e0", DELEGATE_TAGS="copied-tag")
    dead_event = dead.wait_event("manager.registered")
    delegates("e1").wait_event("manager.registered")
    dead.send(signal.SIGKILL)
    dead.wait()
    dead_id = dead_event["delegate_id"]
    wait_until(lambda: time.time() * 1000 - manager.delegate(delegateId=dead_id)["lastHeartBeat"]
               > 3_500, 15, "the dead delegate's slot stale (3 s without a keep-alive)")
    fresh = delegates("e2", DELEGATE_TAGS="")  # a new container: new work dir, no sequence file
    event = fresh.wait_event("manager.registered")
    assert event["sequence_num"] == dead_event["sequence_num"]
    assert event["delegate_id"] != dead_event["delegate_id"]
    member = manager.delegate(delegateId=event["delegate_id"])
    assert member is not None and member["tags"] == ["copied-tag"]


def test_sigterm_unregisters_and_exits_0(manager: Manager, delegates: Start) -> None:
    proc = delegates("d1")
    delegate_id = proc.wait_event("manager.registered")["delegate_id"]
    wait_until(lambda: connected(manager, delegate_id), 10, "CONNECTED")
    t0 = time.monotonic()
    proc.send(signal.SIGTERM)
    assert proc.wait(10) == 0
    # well inside ECS's stopTimeout (30 s), after which it would be SIGKILLed without unregistering
    assert time.monotonic() - t0 < 25
    assert proc.find("manager.unregistered")
    assert manager.delegate(delegateId=delegate_id)["status"] == "DISCONNECTED"


@pytest.mark.parametrize("polling", ["false", "true"])
def test_deleted_delegate_self_destructs_and_stays_gone(manager: Manager, delegates: Start,
                                                       polling: str) -> None:
    # no keep-alive in the window: the stream or the heartbeat loop itself must honour it
    proc = delegates("d1", POLL_FOR_TASKS=polling, DELEGATE_KEEPALIVE_INTERVAL_S="600")
    delegate_id = proc.wait_event("manager.registered")["delegate_id"]
    wait_until(lambda: connected(manager, delegate_id), 10, "CONNECTED")
    manager.api("DELETE", f"/api/setup/delegates/{delegate_id}")
    assert proc.wait(10) == 4  # the "do not restart me" exit code
    assert proc.find("delegate.self_destruct")
    assert manager.delegate(delegateId=delegate_id) is None
    again = delegates("d1", POLL_FOR_TASKS=polling)  # same work dir: same ECS token, same identity
    assert again.wait(15) == 4
    assert not again.find("manager.registered")


def test_no_secret_in_any_output(manager: Manager, delegates: Start, tmp_path: Path) -> None:
    proc = delegates("d1", POLL_FOR_TASKS="false", LOG_LEVEL="DEBUG")
    delegate_id = proc.wait_event("manager.registered")["delegate_id"]
    wait_until(lambda: connected(manager, delegate_id), 10, "CONNECTED")
    bad = delegates("d2", DELEGATE_TOKEN="e" * 32, LOG_LEVEL="DEBUG")
    bad.wait_event("manager.auth_rejected")
    manager.stop()
    proc.wait_event("stream.lost")
    manager.start()
    wait_until(lambda: len(proc.find("stream.connected")) >= 2, 20, "reconnected")
    proc.stop()
    bad.stop()
    manager.stop()
    secrets = [manager.env["DELEGATE_TOKEN"], manager.env["DEVSTACK_API_KEY"], "e" * 32]
    outputs = {"delegate": proc.lines, "bad delegate": bad.lines,
               "manager": manager.process.lines if manager.process else []}
    assert sum(len(v) for v in outputs.values()) > 10
    for name, lines in outputs.items():
        for line in lines:
            for secret in secrets:
                assert secret not in line, f"{name} printed a secret: {line[:120]}"
            assert "Delegate ey" not in line, f"{name} printed a JWE: {line[:120]}"


def test_a_url_that_is_not_a_manager_gets_a_hint(delegates: Start) -> None:
    class NotAManager(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = b"<html><body>Internal Server Error</body></html>"
            self.send_response(500)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotAManager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        proc = delegates("d1", MANAGER_HOST_AND_PORT=url)
        error = proc.wait_event("retry.scheduled", what="register")["error"]
        assert "answered 500" in error and f"MANAGER_HOST_AND_PORT={url}" in error
        assert "not a manager's JSON envelope" in error
    finally:
        server.shutdown()
        server.server_close()
