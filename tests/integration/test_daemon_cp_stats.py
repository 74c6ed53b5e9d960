"""docker cp, export, stats and update against a real `bosun daemon`, with the real docker CLI
and docker-py: what a user sees."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import uuid

import pytest


from bosun.testing.dockerd import DOCKER

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(DOCKER is None, reason="no docker CLI")]

MIB = 1 << 20


@pytest.fixture(scope="module")
def box(daemon):
    """A running busybox with a 64 MiB memory limit (and so 128 MiB of memory+swap)."""
    daemon.docker("create", "--name", "cpbox", "-m", "64m", "busybox", "sleep", "600")
    daemon.docker("start", "cpbox")
    yield "cpbox"
    daemon.docker("rm", "-f", "cpbox", check=False)


def out(r: subprocess.CompletedProcess) -> str:
    return r.stdout.decode()


def mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


# -- docker cp ---------------------------------------------------------------------------------

def test_cp_a_file_both_ways(daemon, box, tmp_path):
    src = tmp_path / "greeting.txt"
    src.write_bytes(b"hello from the host\n")
    daemon.docker("cp", str(src), f"{box}:/tmp/")
    assert out(daemon.docker("exec", box, "cat", "/tmp/greeting.txt")) == "hello from the host\n"
    daemon.docker("exec", box, "sh", "-c", "echo from the box > /tmp/back.txt")
    daemon.docker("cp", f"{box}:/tmp/back.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "from the box\n"
    r = daemon.docker("cp", f"{box}:/no/such/file", str(tmp_path), check=False)
    assert r.returncode == 1
    assert "Could not find the file /no/such/file in container cpbox" in r.stderr.decode()


def test_cp_a_directory_both_ways(daemon, box, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("A")
    (tree / "sub/b.txt").write_text("B")
    (tree / "sub/link").symlink_to("../a.txt")
    daemon.docker("cp", str(tree), f"{box}:/srv")  # /srv does not exist: becomes the copy
    listing = out(daemon.docker("exec", box, "find", "/srv")).split()
    assert sorted(listing) == ["/srv", "/srv/a.txt", "/srv/sub", "/srv/sub/b.txt",
                               "/srv/sub/link"]
    assert out(daemon.docker("exec", box, "cat", "/srv/sub/link")) == "A"
    daemon.docker("cp", f"{box}:/srv", str(tmp_path / "again"))
    assert (tmp_path / "again/sub/b.txt").read_text() == "B"
    assert os.readlink(tmp_path / "again/sub/link") == "../a.txt"
    # docker cp - streams a tar; the entry is named after the path's last component
    r = daemon.docker("cp", f"{box}:/srv/sub", "-")
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        assert sorted(tf.getnames()) == ["sub", "sub/b.txt", "sub/link"]


def test_cp_into_a_created_and_out_of_an_exited_container(daemon, tmp_path):
    src = tmp_path / "script.sh"
    src.write_text("echo copied before start\n")
    daemon.docker("create", "--name", "cpstopped", "busybox", "sh", "/script.sh")
    try:
        daemon.docker("cp", str(src), "cpstopped:/script.sh")
        daemon.docker("start", "cpstopped")
        assert out(daemon.docker("wait", "cpstopped")).strip() == "0"
        assert out(daemon.docker("logs", "cpstopped")) == "copied before start\n"
        merged = json.loads(out(daemon.docker("inspect", "cpstopped")))[0][
            "GraphDriver"]["Data"]["MergedDir"]
        assert not mounted(merged)  # exited: its rootfs is unmounted
        daemon.docker("cp", str(src), "cpstopped:/tmp/late.sh")
        r = daemon.docker("cp", "cpstopped:/tmp/late.sh", "-")
        with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
            assert tf.extractfile("late.sh").read() == src.read_bytes()
        assert not mounted(merged)  # mounted for each copy only
    finally:
        daemon.docker("rm", "-f", "cpstopped", check=False)


def test_symlinks_to_host_paths_resolve_inside_the_container(daemon, box, tmp_path):
    probe = f"bosun-cp-probe-{uuid.uuid4().hex[:8]}"
    (tmp_path / probe).write_text("inside\n")
    daemon.docker("exec", box, "sh", "-c",
                  "ln -s /etc /hostetc && ln -s ../../../../../../etc /climb")
    for link in ("/hostetc/", "/climb/"):
        daemon.docker("cp", str(tmp_path / probe), f"{box}:{link}")
        assert out(daemon.docker("exec", box, "cat", f"/etc/{probe}")) == "inside\n"
        assert not os.path.exists(f"/etc/{probe}")  # the host's /etc is untouched
        daemon.docker("exec", box, "rm", f"/etc/{probe}")
    r = daemon.docker("cp", f"{box}:/hostetc/hostname", "-")
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        hostname = tf.extractfile("hostname").read().decode().strip()
    assert hostname == out(daemon.docker("exec", box, "hostname")).strip()


# -- docker export ----------------------------------------------------------------------------

def test_export_lists_the_rootfs(daemon, box):
    r = daemon.docker("export", box)
    names = subprocess.run(["tar", "t"], input=r.stdout, capture_output=True, check=True,
                           timeout=30).stdout.decode().split()
    assert "bin/busybox" in names or "bin/sh" in names
    assert "etc/" in names and not any(n.startswith("proc/") and n != "proc/" for n in names)


# -- docker stats -----------------------------------------------------------------------------

def test_stats_no_stream_shows_the_memory_limit(daemon, box):
    r = daemon.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", box)
    line = out(r).strip()
    assert line.startswith(f"{box} ") and line.endswith("/ 64MiB"), line


def test_stats_with_docker_py(daemon, box):
    client = daemon.client()
    try:
        s = client.containers.get(box).stats(stream=False)
    finally:
        client.close()
    assert s["name"] == f"/{box}" and len(s["id"]) == 64
    assert s["memory_stats"]["limit"] == 64 * MIB and s["memory_stats"]["usage"] > 0
    assert "stats" in s["memory_stats"]
    cpu, pre = s["cpu_stats"], s["precpu_stats"]
    assert cpu["cpu_usage"]["total_usage"] > 0 and cpu["online_cpus"] >= 1
    assert cpu["system_cpu_usage"] > pre["system_cpu_usage"] > 0  # primed a second before
    assert s["pids_stats"]["current"] >= 1
    assert s["read"] > s["preread"] and set(s["blkio_stats"]) >= {
        "io_service_bytes_recursive", "io_serviced_recursive"}


# -- docker update ---------------------------------------------------------------------------

def test_update_memory_live_and_stored(daemon, box):
    daemon.docker("update", "--memory", "96m", box)
    limit = out(daemon.docker("exec", box, "cat",
                              "/sys/fs/cgroup/memory/memory.limit_in_bytes")).strip()
    assert int(limit) == 96 * MIB
    hc = json.loads(out(daemon.docker("inspect", box)))[0]["HostConfig"]
    assert hc["Memory"] == 96 * MIB and hc["MemorySwap"] == 128 * MIB
    r = daemon.docker("update", "--memory", "1g", box, check=False)
    assert r.returncode == 1
    assert "Memory limit should be smaller than already set memoryswap limit" in \
        r.stderr.decode()
    daemon.docker("update", "--memory", "64m", box)  # back for the other tests
