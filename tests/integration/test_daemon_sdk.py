"""bosun daemon driven by the docker SDK for Python (docker-py 7.x): what a script or a tool
built on docker-py sees."""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import socket
import threading
import time

import pytest

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_containers_after"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

docker = pytest.importorskip("docker")

TIMESTAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


def wait_for(predicate, timeout: float = 10, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_ping_version_info(client, daemon):
    assert client.ping() is True
    v = client.version()
    assert v["ApiVersion"] == "1.47" and v["Os"] == "linux"
    assert any(c["Name"] == "Engine" for c in v["Components"])
    info = client.info()
    assert info["OSType"] == "linux" and info["DockerRootDir"] == str(daemon.data_root)
    assert info["Images"] >= 1 and info["CgroupVersion"] in ("1", "2")


def test_run_foreground_and_detached(client):
    assert client.containers.run("busybox", ["echo", "hello sdk"], remove=True) == b"hello sdk\n"
    out = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"],
                                stdout=True, stderr=True, remove=True)
    assert sorted(out.splitlines()) == [b"err", b"out"]
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run("busybox", ["sh", "-c", "echo oops >&2; exit 3"], remove=True)
    assert e.value.exit_status == 3 and b"oops" in e.value.stderr
    with pytest.raises(docker.errors.ImageNotFound):  # create does not pull (run would)
        client.containers.create("no-such-image-anywhere:none", "true")

    ct = client.containers.run("busybox", ["sh", "-c", "exit 4"], detach=True, name="det")
    assert isinstance(ct, docker.models.containers.Container) and ct.name == "det"
    assert ct.wait(timeout=30) == {"StatusCode": 4, "Error": None}
    ct.reload()
    assert ct.status == "exited" and ct.attrs["State"]["ExitCode"] == 4


def test_logs_stream_timestamps_tail_since(client):
    ct = client.containers.run(
        "busybox", ["sh", "-c", "echo one; sleep 0.2; echo two >&2; sleep 1.2; echo three"],
        detach=True)
    streamed = list(ct.logs(stream=True, follow=True))
    assert b"".join(streamed).splitlines() == [b"one", b"two", b"three"]
    assert ct.logs(stdout=True, stderr=False) == b"one\nthree\n"
    assert ct.logs(stdout=False, stderr=True) == b"two\n"
    assert ct.logs(tail=1) == b"three\n"
    stamped = ct.logs(timestamps=True).splitlines(keepends=True)
    assert len(stamped) == 3 and all(TIMESTAMP.match(line) for line in stamped)
    assert [TIMESTAMP.sub(b"", line) for line in stamped] == [b"one\n", b"two\n", b"three\n"]
    # "three" came ≥1.2 s after the others: a since between them keeps it alone (a float:
    # docker-py sends a datetime as whole seconds)
    third = datetime.datetime.fromisoformat(stamped[2][:26].decode() + "+00:00")
    assert ct.logs(since=third.timestamp() - 0.6) == b"three\n"
    assert ct.logs(since=int(time.time()) + 60) == b""


def test_exec_run(client):
    ct = client.containers.run("busybox", ["sleep", "300"], detach=True)
    r = ct.exec_run(["sh", "-c", "echo hi; echo err >&2; exit 4"])
    assert r.exit_code == 4 and sorted(r.output.splitlines()) == [b"err", b"hi"]
    r = ct.exec_run(["sh", "-c", "echo hi; echo err >&2"], demux=True)
    assert r.exit_code == 0 and r.output == (b"hi\n", b"err\n")
    r = ct.exec_run(["sh", "-c", 'echo "$FOO $BAR"; id -u; id -g; pwd'],
                    environment={"FOO": "foo", "BAR": "bar"}, user="1000:1000", workdir="/tmp")
    assert r.exit_code == 0 and r.output == b"foo bar\n1000\n1000\n/tmp\n"
    r = ct.exec_run(["id", "-un"], user="nobody")
    assert r.output == b"nobody\n"
    r = ct.exec_run(["tty"], tty=True)
    assert r.exit_code == 0 and r.output.strip() == b"/dev/pts/0"
    r = ct.exec_run(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done"], stream=True)
    assert b"".join(r.output) == b"1\n2\n3\n"
    r = ct.exec_run(["no-such-binary"])
    assert r.exit_code in (126, 127)


def test_attach(client):
    # The live stream. (Not logs=True: docker-py reads the stream from the raw socket under
    # http.client's buffer, so a replay that arrives with the response head — from any
    # daemon — is lost to it.)
    ct = client.containers.run(
        "busybox", ["sh", "-c", "sleep 1; for i in 1 2 3; do echo at $i; done"],
        detach=True)
    assert b"".join(ct.attach(stream=True)) == b"at 1\nat 2\nat 3\n"
    assert ct.wait(timeout=30)["StatusCode"] == 0

    # stdin through a hijacked attach socket, output framed (no tty)
    cat = client.containers.run("busybox", ["cat"], detach=True, stdin_open=True)
    sock = cat.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
    raw = sock._sock
    raw.settimeout(10)
    raw.sendall(b"ping through attach\n")
    data = b""
    while len(data) < 8 + len(b"ping through attach\n"):
        chunk = raw.recv(4096)
        assert chunk, data
        data += chunk
    assert data[:1] == b"\x01" and data[8:] == b"ping through attach\n"
    raw.shutdown(socket.SHUT_WR)  # StdinOnce is off: cat keeps running
    raw.close()
    cat.reload()
    assert cat.status == "running"


def test_stop_kill_restart_rename_pause_top(client):
    ct = client.containers.run("busybox", ["sleep", "300"], detach=True, name="life")
    t0 = time.monotonic()
    ct.stop(timeout=1)  # sleep as pid 1 ignores SIGTERM: SIGKILL after 1 s
    assert time.monotonic() - t0 < 5
    ct.reload()
    assert ct.status == "exited" and ct.attrs["State"]["ExitCode"] == 137

    ct.start()
    ct.kill(signal="SIGUSR1")  # pid 1 without a handler ignores it
    time.sleep(0.3)
    ct.reload()
    assert ct.status == "running"
    first_pid = ct.attrs["State"]["Pid"]
    ct.restart(timeout=0)
    ct.reload()
    assert ct.status == "running" and ct.attrs["State"]["Pid"] not in (0, first_pid)

    ct.rename("life2")
    ct.reload()
    assert ct.name == "life2" and ct.attrs["Name"] == "/life2"
    assert client.containers.get("life2").id == ct.id
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("life")

    ct.pause()
    ct.reload()
    assert ct.status == "paused" and ct.attrs["State"]["Paused"] is True
    with pytest.raises(docker.errors.APIError) as e:
        ct.exec_run("true")
    assert e.value.status_code == 409
    ct.unpause()
    ct.reload()
    assert ct.status == "running"

    top = ct.top()
    assert "PID" in top["Titles"] and "CMD" in top["Titles"]
    assert [p[-1] for p in top["Processes"]] == ["sleep 300"]
    assert ct.top(ps_args="aux")["Titles"][0] == "USER"

    ct.kill()
    assert ct.wait(timeout=30)["StatusCode"] == 137
    with pytest.raises(docker.errors.APIError) as e:
        ct.kill()
    assert e.value.status_code == 409
    ct.start()
    with pytest.raises(docker.errors.APIError) as e:
        ct.remove()
    assert e.value.status_code == 409
    ct.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(ct.id)


def test_list_filters(client):
    up = client.containers.run("busybox", ["sleep", "300"], detach=True, name="flt-up",
                               labels={"tier": "web", "env": "test"})
    done = client.containers.run("busybox", ["true"], detach=True, name="flt-done",
                                 labels={"tier": "db"})
    done.wait(timeout=30)
    client.containers.create("busybox", ["true"], name="flt-made")

    def names(**kw):
        return sorted(c.name for c in client.containers.list(**kw))

    assert names() == ["flt-up"]
    assert names(all=True) == ["flt-done", "flt-made", "flt-up"]
    assert names(filters={"status": "running"}) == ["flt-up"]
    assert names(filters={"status": "exited"}) == ["flt-done"]
    assert names(filters={"status": "created"}) == ["flt-made"]
    assert names(all=True, filters={"label": "tier"}) == ["flt-done", "flt-up"]
    assert names(all=True, filters={"label": "tier=web"}) == ["flt-up"]
    assert names(all=True, filters={"label": ["tier=web", "env=prod"]}) == []
    assert names(all=True, filters={"name": "flt-d"}) == ["flt-done"]
    assert names(all=True, filters={"name": "^/flt-(up|made)$"}) == ["flt-made", "flt-up"]
    assert names(all=True, filters={"ancestor": "busybox"}) == ["flt-done", "flt-made",
                                                                "flt-up"]
    assert names(all=True, filters={"ancestor": "busybox:latest"}) == ["flt-done", "flt-made",
                                                                       "flt-up"]
    assert names(all=True, filters={"id": up.id[:12]}) == ["flt-up"]
    assert names(all=True, filters={"exited": "0"}) == ["flt-done"]
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.list(filters={"status": "bogus"})
    assert e.value.status_code == 400


def test_inspect_shapes(client, tmp_path):
    (tmp_path / "f").write_text("x")
    ct = client.containers.run(
        "busybox", ["sleep", "300"], detach=True, name="shape", labels={"a": "b"},
        environment={"E": "1"}, volumes={str(tmp_path): {"bind": "/data", "mode": "ro"}},
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 2}, mem_limit="64m")
    ct.reload()
    a = ct.attrs
    assert a["Name"] == "/shape" and a["Id"] == ct.id and re.fullmatch(r"[0-9a-f]{64}", ct.id)
    assert a["Image"].startswith("sha256:") and ct.image.tags == ["busybox:latest"]
    assert a["Path"] == "sleep" and a["Args"] == ["300"]
    state = a["State"]
    for key in ("Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid",
                "ExitCode", "Error", "StartedAt", "FinishedAt"):
        assert key in state, key
    assert state["Status"] == "running" and state["Running"] is True and state["Pid"] > 0
    cfg = a["Config"]
    assert cfg["Image"] == "busybox" and cfg["Cmd"] == ["sleep", "300"]
    assert cfg["Labels"] == {"a": "b"} and ct.labels == {"a": "b"}
    assert "E=1" in cfg["Env"] and cfg["Hostname"] == ct.id[:12]
    for key in ("User", "Tty", "OpenStdin", "AttachStdout", "WorkingDir", "Entrypoint"):
        assert key in cfg, key
    hc = a["HostConfig"]
    assert hc["Binds"] == [f"{tmp_path}:/data:ro"]
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert hc["Memory"] == 64 << 20 and hc["NetworkMode"] == "bridge"
    # keys Docker always shows, whatever the request left out
    for key in ("Privileged", "ReadonlyRootfs", "AutoRemove", "PortBindings", "CapAdd",
                "CapDrop", "Dns", "ExtraHosts", "CpuShares", "NanoCpus", "PidsLimit",
                "LogConfig", "ShmSize", "SecurityOpt", "Devices", "Ulimits"):
        assert key in hc, key
    assert hc["Privileged"] is False and hc["LogConfig"]["Type"] == "json-file"
    ns = a["NetworkSettings"]
    assert "Ports" in ns and "Networks" in ns and ct.ports == {}
    assert a["Mounts"] == [{"Type": "bind", "Source": str(tmp_path), "Destination": "/data",
                            "Mode": "ro", "RW": False, "Propagation": "rprivate"}]
    assert ct.health == "unknown"
    listed = client.api.containers(filters={"id": ct.id})[0]
    assert listed["Names"] == ["/shape"] and listed["State"] == "running"
    assert listed["Status"].startswith("Up ") and listed["Labels"] == {"a": "b"}
    assert listed["Mounts"][0]["Destination"] == "/data"


def test_events_stream(client):
    since = time.time()
    stream = client.events(decode=True, filters={"type": "container"})
    seen: list[tuple[str, str]] = []

    def read() -> None:
        with contextlib.suppress(Exception):  # the stream is closed under us at the end
            for ev in stream:
                seen.append((ev["Action"], ev["Actor"]["ID"]))

    def actions() -> list[str]:
        return [a for a, cid in seen if cid == ct.id]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ct = client.containers.run("busybox", ["sh", "-c", "exit 2"], detach=True,
                               labels={"evt": "1"})
    ct.wait(timeout=30)
    ct.remove()
    wait_for(lambda: "destroy" in actions())
    stream.close()
    got = [a for a in actions() if a in ("create", "start", "die", "destroy")]
    assert got == ["create", "start", "die", "destroy"]

    # the same, replayed from the past with since/until and filters
    past = list(client.events(decode=True, since=since, until=time.time(),
                              filters={"container": ct.id, "event": ["die"]}))
    assert [e["Action"] for e in past] == ["die"]
    assert past[0]["Actor"]["Attributes"]["exitCode"] == "2"
    assert past[0]["Actor"]["Attributes"]["evt"] == "1"
    assert past[0]["status"] == "die" and past[0]["id"] == ct.id
