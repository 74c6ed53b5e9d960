"""bosun daemon driven by the real docker CLI (DOCKER_HOST=unix://…): what a user sees."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest


from bosun.testing.dockerd import DOCKER

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(DOCKER is None, reason="no docker CLI")]


def out(r: subprocess.CompletedProcess) -> str:
    return r.stdout.decode()


def test_version_and_info(daemon):
    v = json.loads(out(daemon.docker("version", "--format", "{{json .Server}}")))
    assert v["ApiVersion"] == "1.47"
    assert v["Os"] == "linux"
    info = json.loads(out(daemon.docker("info", "--format", "{{json .}}")))
    assert info["OSType"] == "linux"
    assert info["DockerRootDir"] == str(daemon.data_root)


def test_run_rm_prints_output_and_exit_code(daemon):
    r = daemon.docker("run", "--rm", "busybox", "echo", "hello from bosun")
    assert out(r) == "hello from bosun\n"
    r = daemon.docker("run", "--rm", "busybox", "sh", "-c", "echo err >&2; exit 7", check=False)
    assert r.returncode == 7
    assert r.stderr.decode().strip().endswith("err")
    assert out(daemon.docker("ps", "-aq")) == ""


def test_run_stdin_pipe(daemon):
    r = daemon.docker("run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z", input=b"shout\n")
    assert out(r) == "SHOUT\n"


def test_detached_logs_stop_rm(daemon):
    cid = out(daemon.docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"))
    cid = cid.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    time.sleep(0.5)
    logs = out(daemon.docker("logs", "ticker"))
    assert logs.startswith("tick 0\ntick 1\n")
    ps = out(daemon.docker("ps", "--format", "{{.Names}} {{.Status}}"))
    assert re.search(r"^ticker Up", ps, re.M)
    t0 = time.monotonic()
    daemon.docker("stop", "-t", "1", "ticker")  # sh ignores SIGTERM as pid 1: SIGKILL after 1 s
    assert time.monotonic() - t0 < 5
    state = json.loads(out(daemon.docker("inspect", "ticker")))[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137
    daemon.docker("rm", "ticker")
    r = daemon.docker("inspect", "ticker", check=False)
    err = r.stderr.decode()
    assert r.returncode == 1 and ("No such object" in err or "No such container" in err)


def test_logs_follow_ends_with_container(daemon):
    daemon.docker("run", "-d", "--name", "follow", "busybox", "sh", "-c",
                  "for i in 1 2 3; do echo line $i; sleep 0.2; done")
    r = daemon.docker("logs", "-f", "follow", timeout=30)
    assert out(r) == "line 1\nline 2\nline 3\n"
    daemon.docker("rm", "follow")


def test_exec(daemon):
    daemon.docker("run", "-d", "--name", "execme", "busybox", "sleep", "60")
    r = daemon.docker("exec", "execme", "sh", "-c", "echo $((6*7)); exit 3", check=False)
    assert out(r) == "42\n" and r.returncode == 3
    r = daemon.docker("exec", "-e", "FOO=bar", "-w", "/tmp", "execme", "sh", "-c",
                      "echo $FOO $(pwd)")
    assert out(r) == "bar /tmp\n"
    r = daemon.docker("exec", "execme", "no-such-binary", check=False)
    assert r.returncode == 127
    daemon.docker("rm", "-f", "execme")


def test_errors_as_docker(daemon):
    r = daemon.docker("inspect", "--type", "container", "nope", check=False)
    assert r.returncode == 1 and "No such container: nope" in r.stderr.decode()
    daemon.docker("create", "--name", "dup", "busybox")
    r = daemon.docker("create", "--name", "dup", "busybox", check=False)
    assert r.returncode != 0 and "is already in use" in r.stderr.decode()
    r = daemon.docker("run", "--rm", "busybox", "/nonexistent", check=False)
    assert r.returncode == 127
    daemon.docker("rm", "dup")
    r = daemon.docker("run", "--rm", "no-such-image-here", check=False)
    assert r.returncode != 0


def test_live_restore(daemon):
    names = [f"live{i}" for i in range(5)]
    for n in names:
        daemon.docker("run", "-d", "--name", n, "busybox", "sh", "-c",
                      "i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done")
    daemon.docker("run", "-d", "--name", "shortlived", "busybox", "sh", "-c", "sleep 1; exit 42")
    time.sleep(0.3)
    daemon.stop(signal.SIGKILL)
    time.sleep(1.5)  # shortlived exits while no daemon runs
    daemon.start()
    ps = out(daemon.docker("ps", "--format", "{{.Names}}")).split()
    assert sorted(n for n in ps if n.startswith("live")) == names
    state = json.loads(out(daemon.docker("inspect", "shortlived")))[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 42
    for n in names:
        lines = out(daemon.docker("logs", n)).split()
        nums = [int(x) for x in lines]
        assert nums == list(range(len(nums))) and len(nums) > 20  # nothing lost across restart
    daemon.docker("stop", "-t", "1", *names)
    for n in names:
        assert json.loads(out(daemon.docker("inspect", n)))[0]["State"]["Running"] is False
    daemon.docker("rm", *names, "shortlived")
