"""Restart policies and healthchecks of `bosun daemon`, driven by the real docker CLI."""

from __future__ import annotations

import itertools
import os
import signal
import time

import pytest

from bosun.testing.daemon import inspect_container as inspect
from bosun.testing.daemon import wait_for
from bosun.testing.dockerd import DOCKER

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(DOCKER is None, reason="no docker CLI")]


def status(daemon, name: str) -> tuple[str, int]:
    text = daemon.docker("inspect", "--format", "{{.State.Status}} {{.RestartCount}}",
                         name).stdout.decode().split()
    return text[0], int(text[1])


def health(daemon, name: str) -> str:
    return daemon.docker("inspect", "--format", "{{.State.Health.Status}}",
                         name).stdout.decode().strip()


def log_times(daemon, name: str) -> list[float]:
    """When each line of the container's log was written (docker logs -t)."""
    from bosun.engine.container import parse_rfc3339

    lines = daemon.docker("logs", "-t", name).stdout.decode().splitlines()
    return [parse_rfc3339(line.split()[0]) for line in lines]


# -- restart policies ----------------------------------------------------------------------

def test_on_failure_limit_runs_exactly_n_plus_one_times(daemon):
    daemon.docker("run", "-d", "--name", "onfail", "--restart", "on-failure:2", "busybox",
                  "sh", "-c", "echo run; exit 3")
    wait_for(lambda: status(daemon, "onfail") == ("exited", 2))
    time.sleep(0.5)  # past the next back-off: no fourth run
    doc = inspect(daemon, "onfail")
    assert doc["RestartCount"] == 2 and doc["State"]["Status"] == "exited"
    assert doc["State"]["ExitCode"] == 3 and doc["State"]["Restarting"] is False
    assert daemon.docker("logs", "onfail").stdout.decode().split() == ["run"] * 3
    daemon.docker("rm", "onfail")


def test_always_backs_off_and_stop_or_rm_while_restarting(daemon):
    daemon.docker("run", "-d", "--name", "always", "--restart", "always", "busybox",
                  "sh", "-c", "echo run; exit 1")
    wait_for(lambda: status(daemon, "always")[1] >= 5)  # counted at each exit: 5 runs
    times = log_times(daemon, "always")[:5]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # each restart waits its back-off (100 ms, doubling) on top of the start-up cost
    assert all(gap >= delay for gap, delay in zip(gaps, (0.1, 0.2, 0.4, 0.8))), gaps
    # stopped while waiting out its back-off: exited at once, and stays so
    wait_for(lambda: status(daemon, "always")[0] == "restarting")
    daemon.docker("stop", "always")
    st, count = status(daemon, "always")
    assert st == "exited"
    time.sleep(2.0)  # longer than the back-off that was pending
    assert status(daemon, "always") == ("exited", count)
    assert inspect(daemon, "always")["State"]["ExitCode"] == 1
    # a start by the user begins a fresh policy: the count starts again from 0
    daemon.docker("start", "always")
    assert status(daemon, "always")[1] < count
    wait_for(lambda: status(daemon, "always")[1] >= 3
             and status(daemon, "always")[0] == "restarting")
    daemon.docker("rm", "-f", "always")
    assert daemon.docker("ps", "-aq", "--filter", "name=always").stdout == b""
    time.sleep(1.0)  # the pending restart must not bring anything back
    assert daemon.docker("ps", "-aq", "--filter", "name=always").stdout == b""


def test_killed_by_the_user_is_not_restarted(daemon):
    daemon.docker("run", "-d", "--name", "killme", "--restart", "always", "busybox",
                  "sleep", "60")
    daemon.docker("kill", "killme")
    time.sleep(0.6)  # several back-off periods
    doc = inspect(daemon, "killme")
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 137
    assert doc["RestartCount"] == 0
    daemon.docker("rm", "killme")


def test_daemon_restart_applies_policies_and_resumes_probes(daemon):
    for name, policy in (("boot-always", "always"), ("boot-unless", "unless-stopped"),
                         ("boot-live", "unless-stopped")):
        daemon.docker("run", "-d", "--name", name, "--restart", policy, "busybox",
                      "sleep", "60")
    daemon.docker("run", "-d", "--name", "boot-hc", "--health-cmd", "true",
                  "--health-interval", "200ms", "busybox", "sleep", "60")
    daemon.docker("stop", "-t", "0", "boot-always", "boot-unless")
    wait_for(lambda: health(daemon, "boot-hc") == "healthy")
    live_pid = inspect(daemon, "boot-live")["State"]["Pid"]
    daemon.stop(signal.SIGKILL)
    daemon.start()
    wait_for(lambda: status(daemon, "boot-always")[0] == "running")
    assert status(daemon, "boot-unless")[0] == "exited"  # stopped by the user: stays so
    live = inspect(daemon, "boot-live")["State"]
    assert live["Status"] == "running" and live["Pid"] == live_pid  # re-adopted, not restarted
    # the re-adopted container keeps its health and is probed again
    hc = inspect(daemon, "boot-hc")["State"]["Health"]
    assert hc["Status"] == "healthy"
    last = hc["Log"][-1]["End"]
    wait_for(lambda: inspect(daemon, "boot-hc")["State"]["Health"]["Log"][-1]["End"] > last)
    daemon.docker("rm", "-f", "boot-always", "boot-unless", "boot-live", "boot-hc")


# -- healthchecks ---------------------------------------------------------------------------

def test_healthy_unhealthy_log_events_and_stop(daemon):
    since = str(int(time.time()) - 1)
    daemon.docker("run", "-d", "--name", "hc-ok", "--health-cmd", "echo hi",
                  "--health-interval", "200ms", "busybox", "sleep", "60")
    daemon.docker("run", "-d", "--name", "hc-bad", "--health-cmd", "echo bad >&2; exit 1",
                  "--health-interval", "200ms", "--health-retries", "2", "busybox",
                  "sleep", "60")
    wait_for(lambda: health(daemon, "hc-ok") == "healthy")
    wait_for(lambda: health(daemon, "hc-bad") == "unhealthy")
    ps = daemon.docker("ps", "--format", "{{.Names}} {{.Status}}").stdout.decode()
    assert any(l.startswith("hc-ok Up") and l.endswith("(healthy)") for l in ps.splitlines())
    assert any(l.startswith("hc-bad Up") and l.endswith("(unhealthy)")
               for l in ps.splitlines())

    ok = inspect(daemon, "hc-ok")["State"]["Health"]
    assert ok["FailingStreak"] == 0
    assert ok["Log"][-1]["ExitCode"] == 0 and ok["Log"][-1]["Output"] == "hi\n"
    assert ok["Log"][-1]["Start"] <= ok["Log"][-1]["End"]

    def six_failures() -> dict | None:
        h = inspect(daemon, "hc-bad")["State"]["Health"]
        return h if h["FailingStreak"] >= 6 else None

    bad = wait_for(six_failures)
    assert len(bad["Log"]) == 5  # the last five results only
    assert bad["Status"] == "unhealthy"
    assert all(e["ExitCode"] == 1 and e["Output"] == "bad\n" for e in bad["Log"])

    # probes stop with the container; a new start probes again from "starting"
    daemon.docker("stop", "-t", "0", "hc-ok")
    stopped = inspect(daemon, "hc-ok")["State"]["Health"]
    assert stopped["Status"] == "unhealthy"
    time.sleep(0.6)
    assert inspect(daemon, "hc-ok")["State"]["Health"]["Log"] == stopped["Log"]
    daemon.docker("start", "hc-ok")
    wait_for(lambda: health(daemon, "hc-ok") == "healthy")

    events = daemon.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                           "--filter", "event=health_status", "--format",
                           "{{.Actor.Attributes.name}} {{.Action}}").stdout.decode()
    lines = events.splitlines()
    assert lines.count("hc-ok health_status: healthy") == 2, lines
    assert lines.count("hc-bad health_status: unhealthy") == 1, lines
    assert not [l for l in lines if not l.startswith(("hc-ok ", "hc-bad "))], lines
    daemon.docker("rm", "-f", "hc-ok", "hc-bad")


def test_probe_past_its_timeout_fails(daemon):
    daemon.docker("run", "-d", "--name", "hc-slow", "--health-cmd", "sleep 5",
                  "--health-timeout", "300ms", "--health-interval", "200ms",
                  "--health-retries", "1", "busybox", "sleep", "60")
    wait_for(lambda: health(daemon, "hc-slow") == "unhealthy", timeout=15)
    first = inspect(daemon, "hc-slow")["State"]["Health"]["Log"][0]
    assert first["ExitCode"] == -1
    assert first["Output"].startswith("Health check exceeded timeout (300ms)")
    from bosun.engine.container import parse_rfc3339

    took = parse_rfc3339(first["End"]) - parse_rfc3339(first["Start"])
    assert 0.3 <= took < 4.5  # killed, not waited out
    daemon.docker("rm", "-f", "hc-slow")
