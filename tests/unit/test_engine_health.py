"""engine.health: the healthcheck rules (settings, State.Health transitions, scheduling, Go
durations) and the prober against a fake shim; plus the restart-policy decisions of
engine.monitor and engine.restore, which are as pure."""

from __future__ import annotations

import binascii
import json
import threading
import time

import pytest

from bosun.engine import health as H
from bosun.engine.container import Container, new_state

MS = 1_000_000
S = 1_000_000_000


def entry(code: int, output: str = "") -> dict:
    return {"Start": "s", "End": "e", "ExitCode": code, "Output": output}


# -- Settings ---------------------------------------------------------------------------------

def test_settings_cmd_shell_and_defaults():
    s = H.Settings.of({"Healthcheck": {"Test": ["CMD-SHELL", "curl -f localhost"]}})
    assert s.command == ("/bin/sh", "-c", "curl -f localhost")
    assert (s.interval, s.timeout, s.start_period, s.start_interval, s.retries) == (
        30 * S, 30 * S, 0, 5 * S, 3)
    s = H.Settings.of({"Healthcheck": {"Test": ["CMD", "true", "x"], "Interval": 200 * MS,
                                       "Timeout": 300 * MS, "Retries": 0}})
    assert s.command == ("true", "x") and s.interval == 200 * MS and s.timeout == 300 * MS
    assert s.retries == 3  # 0 means the default
    s = H.Settings.of({"Shell": ["/bin/bash", "-ec"],
                       "Healthcheck": {"Test": ["CMD-SHELL", "exit 0"], "Retries": 5}})
    assert s.command == ("/bin/bash", "-ec", "exit 0") and s.retries == 5


@pytest.mark.parametrize("config", [
    {}, {"Healthcheck": None}, {"Healthcheck": {}}, {"Healthcheck": {"Test": []}},
    {"Healthcheck": {"Test": ["NONE"]}}, {"Healthcheck": {"Test": ["CMD"]}},
    {"Healthcheck": {"Test": ["WHAT", "x"]}}])
def test_settings_none_when_no_probe(config):
    assert H.Settings.of(config) is None


# -- State.Health transitions -------------------------------------------------------------------

def test_first_success_makes_healthy_and_reports_the_change():
    h = H.new_health()
    s = H.Settings(("true",))
    assert H.record(h, entry(0, "ok"), s, 1.0) == "healthy"
    assert h == {"Status": "healthy", "FailingStreak": 0, "Log": [entry(0, "ok")]}
    assert H.record(h, entry(0), s, 2.0) is None  # no change, no event


def test_unhealthy_after_retries_failures_in_a_row_and_success_resets():
    h = H.new_health()
    s = H.Settings(("false",), retries=3)
    assert H.record(h, entry(1), s, 1.0) is None
    assert H.record(h, entry(1), s, 2.0) is None
    assert (h["Status"], h["FailingStreak"]) == ("starting", 2)
    assert H.record(h, entry(1), s, 3.0) == "unhealthy"
    assert H.record(h, entry(1), s, 4.0) is None and h["FailingStreak"] == 4
    assert H.record(h, entry(0), s, 5.0) == "healthy" and h["FailingStreak"] == 0
    assert H.record(h, entry(2), s, 6.0) is None and h["Status"] == "healthy"  # retries first


def test_failures_inside_the_start_period_do_not_count_while_starting():
    h = H.new_health()
    s = H.Settings(("false",), retries=1, start_period=10 * S)
    assert H.record(h, entry(1), s, 9.9) is None
    assert (h["Status"], h["FailingStreak"]) == ("starting", 0)
    assert H.record(h, entry(1), s, 10.0) == "unhealthy"  # the period is over
    # once healthy, the start period no longer shields a failure
    h = H.new_health()
    H.record(h, entry(0), s, 1.0)
    assert H.record(h, entry(1), s, 2.0) == "unhealthy"


def test_log_keeps_the_last_five():
    h = H.new_health()
    s = H.Settings(("x",))
    for i in range(8):
        H.record(h, entry(i % 2, str(i)), s, float(i))
    assert [e["Output"] for e in h["Log"]] == ["3", "4", "5", "6", "7"]


def test_unset_status_reads_as_unhealthy():
    h = {"Status": "", "FailingStreak": 0, "Log": None}
    assert H.record(h, entry(0), H.Settings(("x",)), 0.0) == "healthy"


def test_next_delay_uses_start_interval_only_while_starting_in_the_period():
    s = H.Settings(("x",), interval=30 * S, start_period=60 * S, start_interval=2 * S)
    assert H.next_delay(s, 1.0, "starting") == 2.0
    assert H.next_delay(s, 1.0, "healthy") == 30.0
    assert H.next_delay(s, 61.0, "starting") == 30.0
    assert H.next_delay(H.Settings(("x",), interval=200 * MS), 0.0, "starting") == 0.2


@pytest.mark.parametrize("ns,text", [
    (0, "0s"), (300 * MS, "300ms"), (1_500_000, "1.5ms"), (2_000, "2µs"), (7, "7ns"),
    (30 * S, "30s"), (1_500 * MS, "1.5s"), (90 * S, "1m30s"), (3600 * S, "1h0m0s"),
    (3605 * S + 250 * MS, "1h0m5.25s"), (-300 * MS, "-300ms")])
def test_go_duration(ns, text):
    assert H.go_duration(ns) == text


def test_timeout_output_and_decoded_capture():
    s = H.Settings(("x",), timeout=300 * MS)
    assert H.timeout_output(s, "") == "Health check exceeded timeout (300ms)"
    assert H.timeout_output(s, "slow\n") == "Health check exceeded timeout (300ms): slow\n"
    b64 = binascii.b2a_base64(b"ab\xffc", newline=False).decode()
    assert H.decode_output({"output": b64}) == "ab\ufffdc"
    assert H.decode_output({"output": b64, "truncated": True}) == "ab\ufffdc..."
    assert H.decode_output({}) == ""


# -- the prober, against a fake shim --------------------------------------------------------

class FakeMonitor:
    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.reply: dict = {"ok": True, "pid": 42}

    def request(self, c, msg, fds=(), timeout=60):
        self.sent.append(msg)
        return self.reply


class FakeEngine:
    def __init__(self, bundle: str) -> None:
        self.bundle = bundle
        self.monitor = FakeMonitor()
        self.events: list[str] = []
        self.saves = 0

    def bundle_dir(self, cid: str) -> str:
        return self.bundle

    def emit(self, c, action: str, **extra) -> None:
        self.events.append(action)

    def save(self, c) -> None:
        self.saves += 1


def container(healthcheck: dict) -> Container:
    doc = {"Id": "c" * 64, "Name": "/probed", "State": new_state(), "HostConfig": {},
           "Config": {"Image": "busybox", "Healthcheck": healthcheck}}
    c = Container(doc, {})
    with c.lock:
        c.set_running(1234)
    return c


@pytest.fixture
def prober(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"process": {"args": ["sleep", "60"], "cwd": "/w", "env": ["A=1"],
                     "terminal": True, "consoleSize": {"height": 1, "width": 1}}}))
    engine = FakeEngine(str(tmp_path))
    p = H.Prober(engine)
    yield p, engine
    p.close()


def wait_for(what, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not (value := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)
    return value


def sent(engine, op: str) -> list[dict]:
    return [m for m in engine.monitor.sent if m["op"] == op]


def test_prober_runs_the_probe_in_the_container_and_turns_healthy(prober):
    p, engine = prober
    c = container({"Test": ["CMD-SHELL", "echo ok"], "Interval": 10 * MS})
    c.state["Health"] = {"Status": "unhealthy", "FailingStreak": 7, "Log": [entry(1)]}
    p.start(c, fresh=True)
    assert (c.state["Health"]["Status"], c.state["Health"]["FailingStreak"]) == ("starting", 0)
    msg = wait_for(lambda: sent(engine, "exec"))[0]
    assert msg["process"]["args"] == ["/bin/sh", "-c", "echo ok"]
    assert msg["process"]["terminal"] is False and "consoleSize" not in msg["process"]
    assert msg["process"]["cwd"] == "/w" and msg["capture"] == 4096 and msg["stdin"] is False
    out = binascii.b2a_base64(b"ok\n", newline=False).decode()
    assert p.exec_exited({"event": "exec-exit", "exec_id": msg["exec_id"], "exit_code": 0,
                          "output": out, "truncated": False})
    wait_for(lambda: c.state["Health"]["Status"] == "healthy")
    last = c.state["Health"]["Log"][-1]
    assert (last["ExitCode"], last["Output"]) == (0, "ok\n") and last["Start"] <= last["End"]
    assert len(c.state["Health"]["Log"]) == 2  # the old entry is kept, as Docker
    wait_for(lambda: "health_status: healthy" in engine.events)
    assert engine.saves >= 1
    assert engine.events[:3] == ["exec_create: /bin/sh -c echo ok",
                                 "exec_start: /bin/sh -c echo ok", "exec_die"]
    # a user's exec is not the prober's
    assert p.exec_exited({"event": "exec-exit", "exec_id": "someone-else", "exit_code": 0}) \
        is False


def test_prober_kills_a_probe_past_its_timeout_and_counts_a_failure(prober):
    p, engine = prober
    c = container({"Test": ["CMD", "sleep", "5"], "Interval": 10 * MS, "Timeout": 50 * MS,
                   "Retries": 1})
    p.start(c, fresh=True)
    msg = wait_for(lambda: sent(engine, "exec"))[0]
    kill = wait_for(lambda: sent(engine, "kill_exec"))[0]
    assert kill == {"op": "kill_exec", "exec_id": msg["exec_id"], "signal": 9}
    assert c.state["Health"]["Log"] == []  # the result waits for the killed probe's exit
    out = binascii.b2a_base64(b"zz", newline=False).decode()
    p.exec_exited({"event": "exec-exit", "exec_id": msg["exec_id"], "exit_code": 137,
                   "output": out})
    wait_for(lambda: c.state["Health"]["Status"] == "unhealthy")
    first = c.state["Health"]["Log"][0]
    assert first["ExitCode"] == -1
    assert first["Output"] == "Health check exceeded timeout (50ms): zz"


def test_prober_exec_that_cannot_start_is_a_failure(prober):
    p, engine = prober
    engine.monitor.reply = {"error": 'exec: "nope": executable file not found in $PATH'}
    c = container({"Test": ["CMD", "nope"], "Interval": 10 * MS, "Retries": 2})
    p.start(c, fresh=True)
    wait_for(lambda: c.state["Health"]["Status"] == "unhealthy")
    first = c.state["Health"]["Log"][0]
    assert first["ExitCode"] == -1 and "executable file not found" in first["Output"]
    assert first["Output"].startswith("OCI runtime exec failed")


def test_prober_stops_with_the_container_and_skips_a_paused_one(prober):
    p, engine = prober
    c = container({"Test": ["CMD", "true"], "Interval": 10 * MS})
    p.start(c, fresh=True)
    msg = wait_for(lambda: sent(engine, "exec"))[0]
    p.stop(c)
    assert p.exec_exited({"event": "exec-exit", "exec_id": msg["exec_id"],
                          "exit_code": 0}) is False  # no longer ours: dropped
    n = len(engine.monitor.sent)
    time.sleep(0.05)
    assert len(engine.monitor.sent) == n and c.state["Health"]["Log"] == []
    c2 = container({"Test": ["CMD", "true"], "Interval": 10 * MS})
    with c2.lock:
        c2.set_paused(True)
    p.start(c2, fresh=True)
    time.sleep(0.05)
    assert len(engine.monitor.sent) == n  # frozen: not probed
    with c2.lock:
        c2.set_paused(False)
    p.start(c2, fresh=False)  # as unpause does
    wait_for(lambda: len(engine.monitor.sent) > n)


def test_prober_pause_kills_the_probe_in_flight_and_unpause_resumes(prober):
    p, engine = prober
    c = container({"Test": ["CMD", "true"], "Interval": 10 * MS, "Timeout": 30 * MS})
    c.state["Health"] = {"Status": "healthy", "FailingStreak": 0, "Log": [entry(0)]}
    p.start(c, fresh=False)
    msg = wait_for(lambda: sent(engine, "exec"))[0]
    with c.lock:
        c.set_paused(True)
        p.pause(c)
    assert sent(engine, "kill_exec") == [{"op": "kill_exec", "exec_id": msg["exec_id"],
                                          "signal": 9}]
    time.sleep(0.1)  # past the probe's timeout and several intervals
    assert len(sent(engine, "exec")) == 1 and len(sent(engine, "kill_exec")) == 1
    with c.lock:
        c.set_paused(False)
    p.start(c, fresh=False)
    # the killed probe's exit comes back after the unpause: its exec_die is sent, and its
    # result (killed: it would read as a timeout) is not recorded
    assert p.exec_exited({"event": "exec-exit", "exec_id": msg["exec_id"], "exit_code": 137})
    wait_for(lambda: "exec_die" in engine.events)
    probe = wait_for(lambda: sent(engine, "exec")[1:])[0]
    assert p.exec_exited({"event": "exec-exit", "exec_id": probe["exec_id"], "exit_code": 0})
    wait_for(lambda: len(c.state["Health"]["Log"]) == 2)
    assert [e["ExitCode"] for e in c.state["Health"]["Log"]] == [0, 0]
    assert c.state["Health"]["Status"] == "healthy" and c.state["Health"]["FailingStreak"] == 0


def test_prober_readopted_container_keeps_its_status(prober):
    p, _ = prober
    c = container({"Test": ["CMD", "true"]})
    c.state["Health"] = {"Status": "healthy", "FailingStreak": 0, "Log": [entry(0)]}
    p.start(c, fresh=False)
    assert c.state["Health"]["Status"] == "healthy"
    c2 = container({"Test": ["NONE"]})
    p.start(c2, fresh=True)
    assert "Health" not in c2.state


# -- restart policies (engine.monitor / engine.restore) -----------------------------------------

def policy_container(name: str, retries: int = 0, count: int = 0, exit_code: int = 0,
                     manual: bool = False) -> Container:
    doc = {"Id": "r" * 64, "Name": "/r", "State": new_state(), "Config": {},
           "RestartCount": count,
           "HostConfig": {"RestartPolicy": {"Name": name, "MaximumRetryCount": retries}}}
    c = Container(doc, {"manual_stop": manual})
    c.state.update(Status="exited", ExitCode=exit_code)
    return c


def test_restart_decision_policies():
    from bosun.engine.monitor import _restart_decision as decide

    assert decide(policy_container("no"), 1, 0)[0] is False
    assert decide(policy_container("always"), 0, 0)[0] is True
    assert decide(policy_container("unless-stopped"), 0, 0)[0] is True
    assert decide(policy_container("always", manual=True), 0, 0)[0] is False
    assert decide(policy_container("on-failure"), 0, 0)[0] is False
    assert decide(policy_container("on-failure", count=50), 1, 0)[0] is True  # no limit
    assert decide(policy_container("on-failure", retries=2, count=1), 1, 0)[0] is True
    assert decide(policy_container("on-failure", retries=2, count=2), 1, 0)[0] is False


def test_restart_backoff_doubles_to_a_minute_and_resets_after_ten_seconds():
    from bosun.engine.monitor import _restart_decision as decide

    c = policy_container("always")
    delays = [decide(c, 1, 0.5)[1] for _ in range(12)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 60.0 and max(delays) == 60.0
    assert decide(c, 1, 10.0)[1] == 0.1  # it ran 10 s: back to the start
    assert decide(c, 1, 0.1)[1] == 0.2


def test_restart_at_daemon_start():
    from bosun.engine.restore import restart_at_boot

    assert restart_at_boot(policy_container("always", manual=True))
    assert restart_at_boot(policy_container("unless-stopped"))
    assert not restart_at_boot(policy_container("unless-stopped", manual=True))
    assert not restart_at_boot(policy_container("no", exit_code=1))
    assert restart_at_boot(policy_container("on-failure", exit_code=137, manual=True))
    assert not restart_at_boot(policy_container("on-failure", exit_code=0))
    assert not restart_at_boot(policy_container("on-failure", retries=2, count=2,
                                                exit_code=1))


def test_prober_is_one_thread(prober):
    p, _ = prober
    before = threading.active_count()
    for i in range(5):
        c = container({"Test": ["CMD", "true"], "Interval": 10 * S})
        c.doc["Id"] = str(i) * 64
        p.start(c, fresh=True)
    assert threading.active_count() - before <= 1
