"""Volumes through the daemon, driven by the real docker CLI and the docker SDK: the volume
commands and /volumes API, named and anonymous volumes, copy-up, --volumes-from, subpaths,
tmpfs, driver options (tmpfs, bind) mounted by reference count, bind propagation, Docker's
errors, a daemon crash with a volume mounted, and what is left after many containers
(nothing: no directory, no mount). Each check is made inside the container and on the host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from bosun.testing.daemon import inspect_container, wait_for
from bosun.testing.dockerd import DOCKER, mountpoints_under

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.usefixtures("no_containers_after")]


def run(daemon, *args: str, check: bool = True) -> str:
    return daemon.docker(*args, check=check).stdout.decode()


def fails(daemon, *args: str) -> str:
    r = daemon.docker(*args, check=False)
    assert r.returncode != 0, r.stdout
    return r.stderr.decode()


def vinspect(daemon, name: str) -> dict:
    return json.loads(run(daemon, "volume", "inspect", name))[0]


def volume_names(daemon, *filters: str) -> list[str]:
    args = [a for f in filters for a in ("--filter", f)]
    return sorted(run(daemon, "volume", "ls", "-q", *args).split())


@pytest.fixture
def clean_volumes(daemon):
    yield
    daemon.docker("volume", "prune", "-af")


@pytest.fixture(scope="module")
def seed_image(daemon):
    """An image with a VOLUME over a directory of files of other owners and modes."""
    run(daemon, "run", "--name", "seed-base", "busybox", "sh", "-c",
        "mkdir -p /seed/sub && echo data > /seed/sub/f && chown -R 1000:2000 /seed/sub && "
        "chmod 0751 /seed && chmod 0640 /seed/sub/f && ln -s /etc/passwd /seed/link")
    run(daemon, "commit", "--change", "VOLUME /seed", "seed-base", "seedimg:1")
    run(daemon, "rm", "seed-base")
    yield "seedimg:1"
    daemon.docker("rmi", "-f", "seedimg:1", check=False)


def test_volume_commands(daemon, clean_volumes):
    assert run(daemon, "volume", "create", "--label", "team=a", "v-alpha").strip() == "v-alpha"
    assert run(daemon, "volume", "create", "v-alpha").strip() == "v-alpha"  # idempotent
    run(daemon, "volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
        "--opt", "o=size=1m", "v-beta")
    v = vinspect(daemon, "v-alpha")
    assert v["Driver"] == "local" and v["Labels"] == {"team": "a"} and v["Scope"] == "local"
    assert v["Mountpoint"] == str(daemon.data_root / "volumes" / "v-alpha" / "_data")
    assert os.path.isdir(v["Mountpoint"])
    assert vinspect(daemon, "v-beta")["Options"] == {"type": "tmpfs", "device": "tmpfs",
                                                      "o": "size=1m"}
    assert volume_names(daemon) == ["v-alpha", "v-beta"]
    assert volume_names(daemon, "label=team=a") == ["v-alpha"]
    assert volume_names(daemon, "name=bet") == ["v-beta"]
    assert volume_names(daemon, "driver=local") == ["v-alpha", "v-beta"]
    cid = run(daemon, "create", "-v", "v-alpha:/a", "busybox", "true").strip()
    assert volume_names(daemon, "dangling=true") == ["v-beta"]
    err = fails(daemon, "volume", "rm", "v-alpha")
    assert f"remove v-alpha: volume is in use - [{cid}]" in err
    err = fails(daemon, "volume", "rm", "-f", "v-alpha")  # force never takes one in use
    assert "volume is in use" in err
    assert "get nope: no such volume" in fails(daemon, "volume", "inspect", "nope")
    assert "includes invalid characters for a local volume name" in fails(
        daemon, "volume", "create", "../escape")
    assert 'invalid option: "bogus"' in fails(daemon, "volume", "create", "--opt", "bogus=1",
                                               "v-gamma")
    # prune: anonymous volumes only, unless --all; never one in use
    anon = run(daemon, "create", "-v", "/x", "busybox", "true").strip()
    anon_vol = inspect_container(daemon, anon)["Mounts"][0]["Name"]
    run(daemon, "rm", anon)  # without -v: its anonymous volume stays
    assert anon_vol in volume_names(daemon)
    out = run(daemon, "volume", "prune", "-f")
    assert anon_vol in out and "v-beta" not in out
    out = run(daemon, "volume", "prune", "-af")
    assert "v-beta" in out and "v-alpha" not in out
    run(daemon, "rm", cid)
    run(daemon, "volume", "rm", "v-alpha")
    run(daemon, "volume", "rm", "-f", "never-existed")  # force: a missing volume is fine
    assert volume_names(daemon) == []


def test_named_volume_persists_read_only_and_inspect(daemon, clean_volumes):
    run(daemon, "run", "--rm", "-v", "keep:/data", "busybox", "sh", "-c",
        "echo hello > /data/f && chown 123:456 /data/f")
    assert run(daemon, "run", "--rm", "-v", "keep:/data:ro", "busybox", "sh", "-c",
               "cat /data/f; stat -c %u:%g /data/f; touch /data/g 2>&1 || true"
               ).split("\n")[:3] == ["hello", "123:456", "touch: /data/g: Read-only file system"]
    path = vinspect(daemon, "keep")["Mountpoint"]
    assert open(os.path.join(path, "f")).read() == "hello\n"
    # SELinux relabel flags are accepted (and a no-op on a host without SELinux)
    assert run(daemon, "run", "--rm", "-v", "keep:/data:z,ro", "-v", f"{path}:/b:Z",
               "busybox", "cat", "/data/f", "/b/f") == "hello\nhello\n"
    cid = run(daemon, "create", "-v", "keep:/data:ro", "--mount",
              "type=volume,dst=/anon", "-v", "/tmp:/host-tmp:rslave", "--mount",
              "type=tmpfs,dst=/t", "busybox", "true").strip()
    mounts = {m["Destination"]: m for m in inspect_container(daemon, cid)["Mounts"]}
    assert mounts["/data"] == {"Type": "volume", "Name": "keep", "Source": path,
                               "Destination": "/data", "Driver": "local", "Mode": "ro",
                               "RW": False, "Propagation": ""}
    anon = mounts["/anon"]
    assert len(anon["Name"]) == 64 and anon["RW"] and anon["Type"] == "volume"
    assert vinspect(daemon, anon["Name"])["Labels"] == {"com.docker.volume.anonymous": ""}
    assert mounts["/host-tmp"] == {"Type": "bind", "Source": "/tmp",
                                   "Destination": "/host-tmp", "Mode": "rslave", "RW": True,
                                   "Propagation": "rslave"}
    assert mounts["/t"]["Type"] == "tmpfs"
    ps = run(daemon, "ps", "-aq", "--no-trunc", "--filter", "volume=keep").split()
    assert ps == [cid]
    # docker cp sees the volume at its destination, read-only as mounted
    assert b"hello" in daemon.docker("cp", f"{cid}:/data/f", "-").stdout
    assert "mounted volume is marked read-only" in fails(daemon, "cp", "/etc/hostname",
                                                         f"{cid}:/data/")
    run(daemon, "rm", "-v", cid)  # the anonymous volume goes, the named one stays
    assert volume_names(daemon) == ["keep"]


def test_copy_up_with_owners_and_nocopy(daemon, clean_volumes, seed_image):
    # the image's VOLUME gets an anonymous volume holding the image's content
    out = run(daemon, "run", "--name", "cu", seed_image, "sh", "-c",
              "stat -c '%a %u:%g' /seed /seed/sub /seed/sub/f; cat /seed/sub/f; "
              "readlink /seed/link")
    assert out.split("\n")[:5] == ["751 0:0", "755 1000:2000", "640 1000:2000", "data",
                                   "/etc/passwd"]
    name = inspect_container(daemon, "cu")["Mounts"][0]["Name"]
    host = vinspect(daemon, name)["Mountpoint"]
    st = os.stat(os.path.join(host, "sub", "f"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 2000, 0o640)
    assert os.readlink(os.path.join(host, "link")) == "/etc/passwd"  # copied, not followed
    run(daemon, "rm", "-v", "cu")
    assert name not in volume_names(daemon)
    # a named, empty volume is filled too; with nocopy it stays empty
    assert run(daemon, "run", "--rm", "-v", "filled:/seed", seed_image, "cat",
               "/seed/sub/f") == "data\n"
    assert run(daemon, "run", "--rm", "-v", "empty1:/seed:nocopy", seed_image, "ls", "-A",
               "/seed") == ""
    assert run(daemon, "run", "--rm", "--mount", "type=volume,src=empty2,dst=/seed,"
               "volume-nocopy", seed_image, "ls", "-A", "/seed") == ""
    # a volume with content is never overwritten
    run(daemon, "run", "--rm", "-v", "mine:/seed:nocopy", "busybox", "sh", "-c",
        "echo mine > /seed/own")
    assert run(daemon, "run", "--rm", "-v", "mine:/seed", seed_image, "ls", "/seed") == "own\n"


def test_volumes_from(daemon, clean_volumes, tmp_path):
    (tmp_path / "hostfile").write_text("from host\n")
    run(daemon, "run", "--name", "donor", "-v", "shared:/s", "-v", f"{tmp_path}:/h",
        "-v", "/anon", "busybox", "sh", "-c", "echo shared > /s/f; echo a > /anon/f")
    out = run(daemon, "run", "--rm", "--volumes-from", "donor:ro", "busybox", "sh", "-c",
              "cat /s/f /h/hostfile /anon/f; touch /s/x 2>&1 || true")
    assert out.split("\n")[:4] == ["shared", "from host", "a",
                                   "touch: /s/x: Read-only file system"]
    assert run(daemon, "run", "--rm", "--volumes-from", "donor", "busybox", "sh", "-c",
               "echo rw > /s/y && cat /s/y") == "rw\n"
    # (--pull never: on a 404 from create the docker CLI would try to pull the image)
    assert "No such container: ghost" in fails(daemon, "run", "--rm", "--pull", "never",
                                               "--volumes-from", "ghost", "busybox", "true")
    user = run(daemon, "create", "--volumes-from", "donor", "busybox", "true").strip()
    run(daemon, "rm", "-v", "donor")  # its anonymous volume is still used by `user`
    anon = [m["Name"] for m in inspect_container(daemon, user)["Mounts"]
            if m["Destination"] == "/anon"][0]
    assert anon in volume_names(daemon)
    run(daemon, "rm", "-v", user)
    assert anon in volume_names(daemon)  # rm -v takes only the container's own anonymous ones


def test_subpath_and_its_safety(daemon, clean_volumes):
    run(daemon, "run", "--rm", "-v", "sp:/v", "busybox", "sh", "-c",
        "mkdir -p /v/a/b && echo in-b > /v/a/b/f && ln -s / /v/root && ln -s ../../.. /v/up "
        "&& ln -s a/b /v/inside")
    assert run(daemon, "run", "--rm", "--mount", "type=volume,src=sp,dst=/m,volume-subpath=a/b",
               "busybox", "cat", "/m/f") == "in-b\n"
    assert run(daemon, "run", "--rm", "--mount", "type=volume,src=sp,dst=/m,"
               "volume-subpath=inside", "busybox", "cat", "/m/f") == "in-b\n"
    # docker cp sees the subpath at the destination too, both ways
    cid = run(daemon, "create", "--mount", "type=volume,src=sp,dst=/m,volume-subpath=a/b",
              "busybox", "true").strip()
    listing = subprocess.run(["tar", "-t"], input=daemon.docker("cp", f"{cid}:/m", "-").stdout,
                             capture_output=True, check=True).stdout.decode().split()
    assert sorted(listing) == ["m/", "m/f"]
    tar = subprocess.run(["tar", "-c", "-C", "/etc", "hostname"], capture_output=True,
                         check=True).stdout
    daemon.docker("cp", "-", f"{cid}:/m", input=tar)
    assert run(daemon, "run", "--rm", "-v", "sp:/v", "busybox", "ls", "/v/a/b") == "f\nhostname\n"
    run(daemon, "rm", cid)
    for bad in ("root", "up", "a/../../.."):
        err = fails(daemon, "run", "--rm", "--mount", f"type=volume,src=sp,dst=/m,"
                    f"volume-subpath={bad}", "busybox", "ls", "/m")
        assert "cannot access path" in err or "subpath must be a relative path" in err, err
    err = fails(daemon, "run", "--rm", "--mount", "type=volume,src=sp,dst=/m,"
                "volume-subpath=/etc", "busybox", "true")
    assert "subpath must be a relative path within the volume" in err
    # (`-v ..:/m` would be a bind: the docker CLI makes ".." an absolute host path)
    assert "includes invalid characters" in fails(
        daemon, "run", "--rm", "--mount", "type=volume,src=..,dst=/m", "busybox", "true")
    # nothing of those failures stayed: only `sp` exists
    assert volume_names(daemon) == ["sp"]


def test_tmpfs_mounts(daemon):
    out = run(daemon, "run", "--rm", "--tmpfs", "/t1:size=1m,mode=1777", "--mount",
              "type=tmpfs,dst=/t2,tmpfs-size=2m,tmpfs-mode=0700", "busybox", "sh", "-c",
              "stat -c %a /t1 /t2; grep -E ' /t[12] ' /proc/mounts | sort -k2")
    lines = out.split("\n")
    assert lines[:2] == ["1777", "700"]
    assert " /t1 tmpfs " in lines[2] and "size=1024k" in lines[2]
    assert " /t2 tmpfs " in lines[3] and "size=2048k" in lines[3]


def test_driver_options_tmpfs_mounted_while_used(daemon, clean_volumes):
    run(daemon, "volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
        "--opt", "o=size=2m,mode=0755", "tv")
    path = vinspect(daemon, "tv")["Mountpoint"]
    assert path not in mountpoints_under(path)  # mounted at first use, not at create
    a = run(daemon, "run", "-d", "-v", "tv:/t", "busybox", "sleep", "300").strip()
    b = run(daemon, "run", "-d", "-v", "tv:/t", "busybox", "sleep", "300").strip()
    assert mountpoints_under(path) == [path]  # one mount for both
    run(daemon, "exec", a, "sh", "-c", "echo a > /t/f")
    assert run(daemon, "exec", b, "cat", "/t/f") == "a\n"
    assert "tmpfs" in run(daemon, "exec", b, "grep", " /t ", "/proc/mounts")
    run(daemon, "rm", "-f", a)
    assert mountpoints_under(path) == [path]  # b still holds it
    # a crash of the daemon keeps the mount and who holds it
    daemon.stop(signal.SIGKILL)
    daemon.start()
    assert mountpoints_under(path) == [path]
    assert run(daemon, "exec", b, "cat", "/t/f") == "a\n"
    # b ends while no daemon runs: the next one sees it gone and releases the mount
    pid = inspect_container(daemon, b)["State"]["Pid"]
    daemon.stop(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    daemon.start()
    wait_for(lambda: mountpoints_under(path) == [], timeout=10)
    run(daemon, "rm", "-f", b)


def test_driver_options_bind_keeps_host_data(daemon, clean_volumes, tmp_path):
    src = tmp_path / "bind-src"
    src.mkdir()
    (src / "host").write_text("host data")
    run(daemon, "volume", "create", "--opt", "type=none", "--opt", f"device={src}",
        "--opt", "o=bind", "bv")
    assert run(daemon, "run", "--rm", "-v", "bv:/b", "busybox", "sh", "-c",
               "cat /b/host; echo c > /b/from-container") == "host data"
    assert (src / "from-container").read_text() == "c\n"
    run(daemon, "volume", "rm", "bv")
    assert (src / "host").read_text() == "host data"  # removal never empties the source
    path = str(daemon.data_root / "volumes" / "bv")
    assert not os.path.exists(path) and mountpoints_under(path) == []
    run(daemon, "volume", "create", "--opt", "type=none", "--opt", "device=/nonexistent-x",
        "--opt", "o=bind", "badv")
    err = fails(daemon, "run", "--rm", "-v", "badv:/b", "busybox", "true")
    assert "failed to mount local volume" in err
    run(daemon, "volume", "rm", "badv")


def test_driver_options_block_device(daemon, clean_volumes, tmp_path):
    img = tmp_path / "fs.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
    dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        run(daemon, "volume", "create", "--opt", "type=ext4", "--opt", f"device={dev}", "ext")
        path = vinspect(daemon, "ext")["Mountpoint"]
        out = run(daemon, "run", "--rm", "-v", "ext:/x", "busybox", "sh", "-c",
                  "echo on-ext4 > /x/f; grep ' /x ' /proc/mounts")
        assert " ext4 " in out and mountpoints_under(path) == []  # unmounted after use
        assert run(daemon, "run", "--rm", "-v", "ext:/x", "busybox", "cat", "/x/f") == \
            "on-ext4\n"
        run(daemon, "volume", "rm", "ext")
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_bind_propagation_and_recursion(daemon, tmp_path):
    src = tmp_path / "prop"
    src.mkdir()
    (src / "sub").mkdir()
    subprocess.run(["mount", "--bind", str(src), str(src)], check=True)
    try:
        subprocess.run(["mount", "--make-rshared", str(src)], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "early", str(src / "sub")],
                       check=True)
        (src / "sub" / "mark").write_text("submount")
        cid = run(daemon, "run", "-d", "--mount",
                  f"type=bind,src={src},dst=/p,bind-propagation=rslave", "--mount",
                  f"type=bind,src={src},dst=/nr,bind-nonrecursive", "--mount",
                  f"type=bind,src={src},dst=/ro,ro", "--mount",
                  f"type=bind,src={src},dst=/rro,ro,bind-recursive=readonly,bind-propagation=rprivate",
                  "busybox",
                  "sleep", "300").strip()
        assert run(daemon, "exec", cid, "cat", "/p/sub/mark") == "submount"
        assert run(daemon, "exec", cid, "ls", "-A", "/nr/sub") == ""  # not recursive
        # read-only: the bind itself; bind-recursive=readonly: its submounts too
        probe = "touch {0}/x 2>&1 >/dev/null | grep -c Read-only; touch {0}/sub/x && echo rw"
        assert run(daemon, "exec", cid, "sh", "-c", probe.format("/ro")) == "1\nrw\n"
        assert run(daemon, "exec", cid, "sh", "-c", probe.format("/rro") + " || true") == "1\n"
        (src / "late").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "late", str(src / "late")],
                       check=True)
        # rslave: a mount made on the host afterwards shows up inside
        assert " /p/late " in run(daemon, "exec", cid, "cat", "/proc/mounts").replace(
            "\n", " \n")
        info = run(daemon, "exec", cid, "cat", "/proc/self/mountinfo")
        line = next(x for x in info.splitlines() if x.split()[4] == "/p")
        assert "master:" in line
        run(daemon, "rm", "-f", cid)
    finally:
        subprocess.run(["umount", "-R", "-l", str(src)], check=False)


def test_mount_errors_as_docker(daemon, clean_volumes):
    assert ('invalid mount config for type "bind": bind source path does not exist: '
            "/nonexistent-src") in fails(daemon, "run", "--rm", "--mount",
                                         "type=bind,src=/nonexistent-src,dst=/x", "busybox",
                                         "true")
    assert "mount path must be absolute" in fails(
        daemon, "run", "--rm", "--mount", "type=bind,src=/tmp,dst=rel", "busybox", "true")
    assert "destination can't be '/'" in fails(daemon, "run", "--rm", "-v", "/tmp:/",
                                               "busybox", "true")
    assert "Duplicate mount point: /d" in fails(daemon, "run", "--rm", "-v", "a1:/d", "-v",
                                                "a2:/d", "busybox", "true")
    # a create that fails after making volumes leaves none of them
    assert "No such container" in fails(daemon, "create", "--pull", "never", "-v",
                                        "made-then-undone:/m", "-v", "/anon",
                                        "--volumes-from", "ghost", "busybox")
    assert volume_names(daemon) == []


def test_sdk_and_api_shapes(daemon, client, clean_volumes):
    import docker

    v = client.volumes.create("sdkvol", labels={"k": "v"})
    assert v.name == "sdkvol" and v.attrs["Labels"] == {"k": "v"}
    assert [x.name for x in client.volumes.list(filters={"label": "k=v"})] == ["sdkvol"]
    out = client.containers.run("busybox", "sh -c 'echo sdk > /d/f; cat /d/f'",
                                volumes={"sdkvol": {"bind": "/d", "mode": "rw"}}, remove=True)
    assert out == b"sdk\n"
    with pytest.raises(docker.errors.NotFound, match="get nope: no such volume"):
        client.volumes.get("nope")
    c = client.containers.create("busybox", "true", volumes=["sdkvol:/d"])
    with pytest.raises(docker.errors.APIError) as e:
        client.volumes.get("sdkvol").remove()
    assert e.value.status_code == 409 and "volume is in use" in str(e.value)
    c.remove()
    raw = client.api.volumes()
    assert set(raw) == {"Volumes", "Warnings"} and raw["Warnings"] == []
    df = client.df()
    row = next(x for x in df["Volumes"] if x["Name"] == "sdkvol")
    assert row["UsageData"] == {"Size": 4, "RefCount": 0}
    r = client.volumes.prune()  # API 1.47: anonymous volumes only
    assert r == {"VolumesDeleted": [], "SpaceReclaimed": 0}
    old = docker.APIClient(base_url=daemon.host, version="1.41")
    try:  # before API 1.42 (Docker 23) prune took named volumes too
        assert old.prune_volumes()["VolumesDeleted"] == ["sdkvol"]
    finally:
        old.close()


def test_volume_events(daemon, clean_volumes):
    since = str(int(time.time()) - 1)
    run(daemon, "run", "--rm", "-v", "ev:/e", "busybox", "true")
    run(daemon, "volume", "rm", "ev")
    out = run(daemon, "events", "--since", since, "--until", str(int(time.time()) + 1),
              "--filter", "type=volume", "--filter", "volume=ev", "--format",
              "{{.Action}} {{.Actor.ID}}")
    assert out.split("\n")[:4] == ["create ev", "mount ev", "unmount ev", "destroy ev"]


def test_many_anonymous_volumes_leave_nothing(daemon):
    vroot = daemon.data_root / "volumes"
    for _ in range(100):
        run(daemon, "run", "--rm", "-v", "/data", "busybox", "true")
    assert run(daemon, "volume", "ls", "-q") == ""
    assert [p.name for p in vroot.iterdir()] == ["metadata.db"] or \
        not [p for p in vroot.iterdir() if p.is_dir()]
    assert mountpoints_under(vroot) == []


def test_bosun_volume_commands_match_docker(daemon, clean_volumes):
    from bosun.testing.cli import bosun, err, out

    assert out(bosun(daemon, "volume", "create", "--label", "a=b", "-o", "type=tmpfs",
                     "-o", "device=tmpfs", "bv1")) == "bv1\n"
    out(bosun(daemon, "volume", "create", "bv2"))
    for args in (["volume", "ls"], ["volume", "ls", "-q", "--filter", "label=a=b"],
                 ["volume", "ls", "--format", "{{.Name}} {{.Driver}} {{.Labels}}"],
                 ["volume", "ls", "--format", "json"],
                 ["volume", "inspect", "bv1", "bv2"],
                 ["volume", "inspect", "-f", "{{.Name}} {{.Options.type}}", "bv1"]):
        assert out(bosun(daemon, *args)) == out(daemon.docker(*args)), args
    ours, theirs = bosun(daemon, "volume", "inspect", "nope", check=False), \
        daemon.docker("volume", "inspect", "nope", check=False)
    assert ours.returncode == theirs.returncode == 1 and "get nope: no such volume" in err(ours)
    cid = out(bosun(daemon, "run", "-d", "--mount", "type=volume,src=bv2,dst=/v,volume-nocopy",
                    "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m", "busybox", "sleep",
                    "30")).strip()
    assert out(bosun(daemon, "exec", cid, "sh", "-c", "grep -c ' /[tv] ' /proc/mounts")) \
        == "2\n"
    assert "bv2" in out(bosun(daemon, "volume", "ls", "-q", "--filter", "dangling=false"))
    r = bosun(daemon, "volume", "rm", "bv2", check=False)
    assert r.returncode == 1 and f"volume is in use - [{cid}]" in err(r)
    out(bosun(daemon, "rm", "-f", cid))
    assert out(bosun(daemon, "volume", "rm", "bv2")) == "bv2\n"
    assert out(bosun(daemon, "volume", "prune", "-af")) == \
        "Deleted Volumes:\nbv1\n\nTotal reclaimed space: 0B\n"


# -- PostgreSQL: a real database's data in a named volume ---------------------------------------

PG_BIN = "/usr/lib/postgresql/15/bin"  # bookworm's PostgreSQL
PG_DATA = "/var/lib/postgresql/data"
PG_RUN = (f"test -s {PG_DATA}/PG_VERSION || initdb -A trust -D {PG_DATA} >/dev/null; "
          f"exec postgres -D {PG_DATA} -c listen_addresses= -c unix_socket_directories=/tmp "
          "-c ssl=off")


def _mirror_or_skip() -> str:
    """The Debian mirror apt uses, if it answers; the test is skipped (saying why) if not."""
    import urllib.request

    from bosun.testing.debian import apt_mirror

    try:
        mirror = apt_mirror("bookworm")
    except RuntimeError as e:
        pytest.skip(f"PostgreSQL image: {e}")
    try:
        urllib.request.urlopen(mirror.rstrip("/") + "/dists/bookworm/Release", timeout=10)
    except OSError as e:
        pytest.skip(f"PostgreSQL image: debootstrap's mirror {mirror} is unreachable: {e}")
    return mirror


@pytest.fixture(scope="module")
def postgres_image(daemon):
    """debootstrap --variant=minbase --include=postgresql (the rootfs cached under the test
    data dir, so only the first run pays for it), imported as an image."""
    from pathlib import Path

    from bosun.demo import CACHE
    from bosun.testing.debian import build_rootfs

    dest = Path(CACHE) / "rootfs" / "debian-bookworm-postgresql"
    if not dest.is_dir():
        build_rootfs(dest, _mirror_or_skip(), "bookworm", include=("postgresql",))
    tar = subprocess.Popen(["tar", "--create", "--file=-", f"--directory={dest}",
                            "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
                            "."], stdout=subprocess.PIPE)
    try:
        r = subprocess.run([DOCKER, "import", "--change", f"ENV PATH={PG_BIN}:/usr/sbin:"
                            "/usr/bin:/sbin:/bin", "--change", "USER postgres", "-",
                            "bosun-test/postgres:15"], stdin=tar.stdout, env=daemon.env,
                           capture_output=True, timeout=600)
    finally:
        tar.stdout.close()
        tar.wait()
    assert r.returncode == 0, r.stderr
    yield "bosun-test/postgres:15"
    daemon.docker("rmi", "-f", "bosun-test/postgres:15", check=False)


def _psql(daemon, name: str, sql: str) -> str:
    return run(daemon, "exec", name, "psql", "-h", "/tmp", "-d", "postgres", "-qAt",
               "-c", sql).strip()


def _start_postgres(daemon, image: str, name: str) -> None:
    # -v pgdata:/var/lib/postgresql: copy-up gives the volume the image's postgres-owned
    # directory, so the database runs as postgres with no chown of ours
    run(daemon, "run", "-d", "--name", name, "-v", "pgdata:/var/lib/postgresql", image,
        "sh", "-c", PG_RUN)
    wait_for(lambda: daemon.docker("exec", name, "pg_isready", "-h", "/tmp",
                                   check=False).returncode == 0, timeout=60)


def test_postgres_data_survives_containers_and_daemon_crash(daemon, clean_volumes,
                                                           postgres_image):
    _start_postgres(daemon, postgres_image, "pg1")
    _psql(daemon, "pg1", "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3)")
    daemon.stop(signal.SIGKILL)  # the daemon dies; the database and its volume do not
    daemon.start()
    assert _psql(daemon, "pg1", "SELECT sum(x) FROM t") == "6"
    _psql(daemon, "pg1", "INSERT INTO t VALUES (4)")
    run(daemon, "stop", "-t", "30", "pg1")
    run(daemon, "rm", "pg1")
    _start_postgres(daemon, postgres_image, "pg2")
    assert _psql(daemon, "pg2", "SELECT count(*), sum(x) FROM t") == "4|10"
    owner = os.stat(os.path.join(vinspect(daemon, "pgdata")["Mountpoint"], "data"))
    assert owner.st_uid != 0 and owner.st_mode & 0o777 == 0o700  # postgres's, from initdb
    run(daemon, "rm", "-f", "pg2")
