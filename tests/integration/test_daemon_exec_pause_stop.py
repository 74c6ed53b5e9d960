"""Docker behaviours at the edges of a container's life, through the docker CLI and SDK: execs
that outlive their container's process, healthchecks of a paused container, StartInterval by
API version, and `docker stop` of a container waiting to be restarted."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from bosun.testing.daemon import inspect_container as inspect
from bosun.testing.daemon import wait_for
from bosun.testing.dockerd import DOCKER

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(DOCKER is None, reason="no docker CLI")]

_S = 1_000_000_000


def events(daemon, name: str, since: float, kinds: str | None = None) -> list[str]:
    args = ["events", "--since", f"{since:.6f}", "--until", f"{time.time():.6f}",
            "--filter", f"container={name}", "--format", "{{.Action}}"]
    if kinds:
        args += ["--filter", f"event={kinds}"]
    return daemon.docker(*args).stdout.decode().splitlines()


# -- execs outliving the container's process ------------------------------------------------

@pytest.mark.parametrize("pid", ["private", "host"])
def test_execs_end_with_their_container_with_exit_code_137(daemon, pid):
    # with the host's PID namespace no kernel kills the execs with the container: the shim
    # must (as containerd's does)
    daemon.docker("run", "-d", "--name", "ex-die", *(["--pid", "host"] if pid == "host" else []),
                  "busybox", "sleep", "60")
    api = daemon.client().api
    detached = api.exec_create("ex-die", ["sleep", "60"])["Id"]
    api.exec_start(detached, detach=True)
    attached = subprocess.Popen([DOCKER, "exec", "ex-die", "sh", "-c", "echo up; sleep 60"],
                                env=daemon.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    try:
        assert attached.stdout.readline() == b"up\n"
        assert api.exec_inspect(detached)["Running"] is True
        since = time.time()
        daemon.docker("kill", "ex-die")
        # the attached `docker exec` ends, with the exec's exit code as its own
        assert attached.wait(timeout=15) == 137
    finally:
        attached.kill()
        attached.communicate()
    doc = api.exec_inspect(detached)
    assert doc["Running"] is False and doc["ExitCode"] == 137
    assert daemon.docker("wait", "ex-die").stdout.strip() == b"137"
    # each exec's exec_die (with its code) comes before the container's die
    actions = events(daemon, "ex-die", since)
    assert actions.count("exec_die") == 2 and actions.index("die") > 1, actions
    codes = daemon.docker("events", "--since", f"{since:.6f}", "--until", f"{time.time():.6f}",
                          "--filter", "container=ex-die", "--filter", "event=exec_die",
                          "--format", "{{.Actor.Attributes.exitCode}}").stdout.split()
    assert codes == [b"137", b"137"]
    daemon.docker("rm", "ex-die")


# -- healthchecks while paused ----------------------------------------------------------------

def test_pause_suspends_healthchecks_and_unpause_resumes_them(daemon):
    # the probe after /slow appears takes 5 s; the pause catches it in flight
    daemon.docker("run", "-d", "--name", "hc-pause", "--health-cmd",
                  "if [ -e /slow ]; then rm /slow; sleep 5; fi", "--health-interval", "100ms",
                  "--health-timeout", "2s", "--health-retries", "1", "busybox", "sleep", "60")
    wait_for(lambda: inspect(daemon, "hc-pause")["State"]["Health"]["Status"] == "healthy")
    daemon.docker("exec", "hc-pause", "touch", "/slow")
    wait_for(lambda: daemon.docker("exec", "hc-pause", "test", "-e", "/slow",
                                   check=False).returncode == 1)
    daemon.docker("pause", "hc-pause")
    paused = inspect(daemon, "hc-pause")["State"]["Health"]
    time.sleep(3.0)  # past the probe's timeout: a frozen probe must not count as timed out
    assert inspect(daemon, "hc-pause")["State"]["Health"] == paused  # no probe while paused
    assert paused["Status"] == "healthy"
    daemon.docker("unpause", "hc-pause")
    last = paused["Log"][-1]["End"]

    def two_new() -> list | None:
        log = inspect(daemon, "hc-pause")["State"]["Health"]["Log"]
        new = [e for e in log if e["End"] > last]
        return new if len(new) >= 2 else None

    new = wait_for(two_new)  # probing again
    assert all(e["ExitCode"] == 0 for e in new), new
    health = inspect(daemon, "hc-pause")["State"]["Health"]
    assert health["Status"] == "healthy" and health["FailingStreak"] == 0
    daemon.docker("rm", "-f", "hc-pause")


# -- StartInterval by API version -------------------------------------------------------------

@pytest.mark.parametrize("version,honoured", [("1.43", False), ("1.44", True)])
def test_start_interval_needs_api_1_44(daemon, version, honoured):
    import docker

    api = docker.APIClient(base_url=daemon.host, version=version, timeout=60)
    name = f"hc-si-{version.replace('.', '-')}"
    body = {"Image": "busybox", "Cmd": ["sleep", "60"],
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 3600 * _S,
                            "StartPeriod": 60 * _S, "StartInterval": 100_000_000}}
    # the SDK's Healthcheck type predates StartInterval: post the body as it is
    api._result(api._post_json(api._url("/containers/create"), data=body,
                               params={"name": name}), json=True)
    api.start(name)
    try:
        hc = api.inspect_container(name)["Config"]["Healthcheck"]
        if honoured:
            assert hc["StartInterval"] == 100_000_000
            wait_for(lambda: api.inspect_container(name)["State"]["Health"]["Status"]
                     == "healthy", timeout=5)
        else:
            assert not hc.get("StartInterval")  # cleared, as Docker does for API < 1.44
            time.sleep(1.0)  # ten start intervals: the hour's interval applies instead
            health = api.inspect_container(name)["State"]["Health"]
            assert health["Status"] == "starting" and not health["Log"]
    finally:
        api.remove_container(name, force=True)
        api.close()


# -- stop while restarting --------------------------------------------------------------------

def test_stop_while_restarting_is_final_and_emits_stop(daemon):
    daemon.docker("run", "-d", "--name", "rs-stop", "--restart", "always", "busybox",
                  "sh", "-c", "exit 3")

    def in_long_backoff() -> bool:
        """restarting, with a back-off of 1.6 s or more ahead"""
        st = inspect(daemon, "rs-stop")
        return st["State"]["Status"] == "restarting" and st["RestartCount"] >= 5

    wait_for(in_long_backoff, timeout=20)
    since = time.time()
    daemon.docker("stop", "rs-stop")
    doc = inspect(daemon, "rs-stop")
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 3
    assert doc["State"]["Restarting"] is False and doc["State"]["Running"] is False
    count = doc["RestartCount"]
    time.sleep(3.5)  # past the back-off that was pending
    doc = inspect(daemon, "rs-stop")
    assert doc["State"]["Status"] == "exited" and doc["RestartCount"] == count
    # nothing ran to signal or to die: Docker's events are the stop alone
    assert events(daemon, "rs-stop", since) == ["stop"]
    assert daemon.docker("wait", "rs-stop").stdout.strip() == b"3"
    daemon.docker("rm", "rs-stop")
