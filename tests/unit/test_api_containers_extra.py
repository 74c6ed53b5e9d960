"""api.containers_extra over a real unix socket, spoken to by docker-py's APIClient: archive
HEAD/GET/PUT (the X-Docker-Container-Path-Stat header), export, stats and update, against a
container whose rootfs is a plain directory."""

from __future__ import annotations

import base64
import io
import json
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest

from bosun.api.containers_extra import PATH_STAT_HEADER, encode_path_stat, register
from bosun.api.http import Router, Server
from bosun.engine.container import Container
from bosun.engine.errors import NotFound


class FakeEngine:
    runtime_root = "/nonexistent"

    def __init__(self, c: Container, rootfs: str) -> None:
        self.c = c
        snaps = type("Snaps", (), {"mount_container": lambda s, cid, chain: rootfs,
                                   "unmount_container": lambda s, cid: None})()
        self.images = type("Images", (), {"snapshots": snaps})()
        self.events: list[str] = []

    def get(self, ref: str) -> Container:
        if ref not in (self.c.id, self.c.name):
            raise NotFound(f"No such container: {ref}")
        return self.c

    def emit(self, c, action, **attrs):
        self.events.append(action)

    def save(self, c):
        pass


@pytest.fixture
def api():
    d = Path(tempfile.mkdtemp(prefix="bapx-"))
    rootfs = d / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/motd").write_text("hello\n")
    doc = {"Id": "a" * 64, "Name": "/web", "Config": {}, "HostConfig": {
        "Memory": 64 << 20, "MemorySwap": 128 << 20, "RestartPolicy": {"Name": "no"}},
        "State": {"Status": "exited", "Running": False, "Pid": 0}}
    engine = FakeEngine(Container(doc, {"rootfs": str(rootfs), "chain": []}), str(rootfs))
    router = Router()
    register(router, engine)
    srv = Server(router, unix_path=str(d / "api.sock"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    import docker

    client = docker.APIClient(base_url=f"unix://{d / 'api.sock'}", version="1.47", timeout=10)
    yield client, engine, rootfs
    client.close()
    srv.shutdown()
    shutil.rmtree(d, ignore_errors=True)


def test_path_stat_header_is_base64_json():
    stat = {"name": "é", "size": 1, "mode": 420, "mtime": "x", "linkTarget": ""}
    assert json.loads(base64.b64decode(encode_path_stat(stat))) == stat


def test_get_archive_with_docker_py(api):
    client, engine, _ = api
    chunks, stat = client.get_archive("web", "/etc/motd")
    data = b"".join(chunks)
    assert stat["name"] == "motd" and stat["mode"] == 0o644 and stat["size"] == 6
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.extractfile("motd").read() == b"hello\n"
    assert engine.events == ["archive-path"]


def test_head_is_the_stat_alone_and_404s_as_docker(api):
    client, engine, _ = api
    resp = client.head(client._url("/containers/{0}/archive", "web"),
                        params={"path": "/etc"})
    assert resp.status_code == 200 and resp.content == b""
    stat = json.loads(base64.b64decode(resp.headers[PATH_STAT_HEADER]))
    assert stat["name"] == "etc" and stat["mode"] & (1 << 31)
    import docker.errors

    with pytest.raises(docker.errors.NotFound, match="Could not find the file /nope in "
                                                     "container web"):
        client.get_archive("web", "/nope")
    assert engine.events == []
    resp = client.head(client._url("/containers/{0}/archive", "web"), params={"path": ""})
    assert resp.status_code == 400


def test_put_archive_with_docker_py(api):
    client, _, rootfs = api
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("new.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"abc"))
    assert client.put_archive("web", "/etc", buf.getvalue()) is True
    assert (rootfs / "etc/new.txt").read_bytes() == b"abc"
    import docker.errors

    with pytest.raises(docker.errors.APIError, match="extraction point is not a directory"):
        client.put_archive("web", "/etc/motd", buf.getvalue())


def test_export(api):
    client, _, _ = api
    data = b"".join(client.export("web"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.getnames() == ["etc", "etc/motd"]


def test_stats_of_a_stopped_container(api):
    client, _, _ = api
    s = client.stats("web", stream=False)
    assert s["name"] == "/web" and s["id"] == "a" * 64 and s["memory_stats"] == {}
    import docker.errors

    with pytest.raises(docker.errors.APIError, match="cannot have stream=true and one-shot"):
        client._result(client._get(client._url("/containers/{0}/stats", "web"),
                                   params={"stream": "1", "one-shot": "1"}), json=True)


def test_update_with_docker_py(api):
    client, engine, _ = api
    assert client.update_container("web", mem_limit="96m", restart_policy={"Name": "always"}) \
        == {"Warnings": []}
    hc = engine.c.doc["HostConfig"]
    assert hc["Memory"] == 96 << 20 and hc["RestartPolicy"]["Name"] == "always"
    import docker.errors

    with pytest.raises(docker.errors.APIError, match="Memory limit should be smaller"):
        client.update_container("web", mem_limit="1g")
