"""Namespaces, as seen from inside a busybox container: each one the config asks for is
new (or the one a `path` names), and what the container does in it stays there."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest


def run(rt, bundles, cid, script, edit=None, check=True, **kw):
    """`bosun-runtime run` a shell script in a fresh busybox bundle; the completed process."""
    b = bundles.make(["sh", "-c", script], edit=edit)
    p = rt("run", "--bundle", b, cid, check=False, **kw)
    if check:
        assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def set_namespaces(c, *types, **paths):
    """Replace linux.namespaces: `types` new ones, `paths` (type=path) joined ones."""
    c["linux"]["namespaces"] = [{"type": t} for t in types]
    c["linux"]["namespaces"] += [{"type": t, "path": p} for t, p in paths.items()]


def start_sleeper(rt, bundles, cid, edit=None):
    """A created-and-started container that sleeps; returns its init's host pid."""
    b = bundles.make(["sleep", "1000"], edit=edit)
    rt("run", "--detach", "--bundle", b, cid)
    st = rt.state(cid)
    assert st["status"] == "running"
    return st["pid"]


def stop(rt, cid):
    rt("delete", "--force", cid)


# -- pid ------------------------------------------------------------------------------------

def test_pid_namespace_the_process_is_pid_1_and_sees_only_its_own(rt, bundles, cid):
    p = run(rt, bundles, cid, "echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                              "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '")
    lines = p.stdout.splitlines()
    assert lines[0] == "1"
    assert lines[1].startswith("sh -c echo $$")
    # sh (1) and the few short-lived pipeline children: nothing of the host's
    pids = [int(x) for x in lines[2].split()]
    assert pids[0] == 1 and len(pids) <= 6, pids


def test_pid_namespace_is_not_the_hosts(rt, bundles, cid):
    p = run(rt, bundles, cid, "readlink /proc/self/ns/pid")
    assert p.stdout.strip() != os.readlink("/proc/self/ns/pid")


# -- uts ------------------------------------------------------------------------------------

def test_uts_namespace_hostname_and_domainname(rt, bundles, cid):
    host_name, host_domain = os.uname().nodename, open("/proc/sys/kernel/domainname").read()

    def edit(c):
        c["hostname"] = "box-one"
        c["domainname"] = "example.test"
        c["process"]["capabilities"] = {k: ["CAP_SYS_ADMIN"] for k in
                                        ("bounding", "effective", "permitted")}

    p = run(rt, bundles, cid, "hostname; cat /proc/sys/kernel/domainname; hostname other; "
                              "hostname", edit=edit)
    assert p.stdout.splitlines() == ["box-one", "example.test", "other"]
    # whatever the container did, the host's names are untouched
    assert os.uname().nodename == host_name
    assert open("/proc/sys/kernel/domainname").read() == host_domain


def test_without_a_uts_namespace_the_host_name_is_seen(rt, bundles, cid):
    def edit(c):
        c.pop("hostname")
        set_namespaces(c, "pid", "mount", "ipc", "network")

    p = run(rt, bundles, cid, "hostname", edit=edit)
    assert p.stdout.strip() == os.uname().nodename


# -- ipc ------------------------------------------------------------------------------------

@pytest.fixture
def host_shm_segment():
    """A SysV shared memory segment in the host's ipc namespace; its id."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0
    shmid = libc.shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0o600)
    assert shmid >= 0, os.strerror(ctypes.get_errno())
    yield shmid
    libc.shmctl(shmid, IPC_RMID, None)


def _shm_ids(text: str) -> set[int]:
    return {int(line.split()[1]) for line in text.splitlines()[1:] if line.split()}


def test_ipc_namespace_hides_the_hosts_shared_memory(rt, bundles, cid, host_shm_segment):
    with open("/proc/sysvipc/shm") as f:
        assert host_shm_segment in _shm_ids(f.read())
    p = run(rt, bundles, cid, "cat /proc/sysvipc/shm")
    assert host_shm_segment not in _shm_ids(p.stdout)
    assert _shm_ids(p.stdout) == set()


def test_without_an_ipc_namespace_the_hosts_is_shared(rt, bundles, cid, host_shm_segment):
    p = run(rt, bundles, cid, "cat /proc/sysvipc/shm",
            edit=lambda c: set_namespaces(c, "pid", "mount", "uts", "network"))
    assert host_shm_segment in _shm_ids(p.stdout)


# -- network --------------------------------------------------------------------------------

def test_network_namespace_has_only_loopback(rt, bundles, cid):
    p = run(rt, bundles, cid, "ls /sys/class/net; echo --; "
                              "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
    listed, _, devs = p.stdout.partition("--\n")
    assert listed.split() == ["lo"]
    assert devs.split() == ["lo"]


def test_loopback_is_up_and_usable(rt, bundles, cid):
    # runc brings lo up in a new network namespace; containers rely on 127.0.0.1 working
    p = run(rt, bundles, cid, "ip -o link show lo; ip -o -4 addr show lo; "
                              "timeout 5 nc -l -p 7777 > /tmp/got & sleep 0.2; "
                              "echo over-loopback | timeout 5 nc 127.0.0.1 7777; wait; "
                              "cat /tmp/got")
    link, addr = p.stdout.splitlines()[:2]
    assert "UP" in link.split("<")[1].split(">")[0].split(","), link
    assert "127.0.0.1/8" in addr
    assert p.stdout.splitlines()[-1] == "over-loopback"


# -- mount ----------------------------------------------------------------------------------

def test_mount_namespace_mounts_stay_inside(rt, bundles, cid):
    def edit(c):
        c["process"]["capabilities"] = {k: ["CAP_SYS_ADMIN"] for k in
                                        ("bounding", "effective", "permitted")}

    p = run(rt, bundles, cid, "mkdir -p /mnt/x && mount -t tmpfs inner-tmpfs /mnt/x && "
                              "grep inner-tmpfs /proc/self/mountinfo | wc -l", edit=edit)
    assert p.stdout.strip() == "1"
    with open("/proc/self/mountinfo") as f:
        assert "inner-tmpfs" not in f.read()


def test_mount_namespace_root_is_the_bundles_rootfs(rt, bundles, cid):
    p = run(rt, bundles, cid, "ls /; test -e /work && echo HOST-VISIBLE; true")
    assert "HOST-VISIBLE" not in p.stdout
    names = p.stdout.splitlines()
    assert {"bin", "etc", "proc", "dev", "sys", "tmp"} <= set(names)


# -- user -----------------------------------------------------------------------------------

HOST_UID, HOST_GID, SIZE = 100000, 100000, 65536


def chown_shifted(path, uid_base: int, gid_base: int) -> None:
    """Shift every owner in a tree by the mapping base (what a userns rootfs needs)."""
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(name)
            os.lchown(name, uid_base + st.st_uid, gid_base + st.st_gid)


@pytest.fixture
def userns_bundles(bundles):
    """Bundles in a directory that the container's mapped root can traverse (pytest's own
    temp dirs are 0700 root, out of reach of uid 100000)."""
    import shutil
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="bosun-userns-"))
    d.chmod(0o711)
    bundles.tmp = d
    yield bundles
    shutil.rmtree(d, ignore_errors=True)


def userns_edit(c):
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": HOST_UID, "size": SIZE}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": HOST_GID, "size": SIZE}]
    # a user namespace can't mount a v1 cgroup tree from an ancestor namespace's mount
    c["mounts"] = [m for m in c["mounts"] if m["type"] != "cgroup"]


def test_user_namespace_maps_ids_and_files_get_the_mapped_owner(rt, userns_bundles, cid):
    bundles = userns_bundles
    shared = bundles.tmp / "shared"
    shared.mkdir()
    os.chown(shared, HOST_UID, HOST_GID)

    def edit(c):
        userns_edit(c)
        c["mounts"].append({"destination": "/shared", "type": "bind", "source": str(shared),
                            "options": ["rbind", "rw"]})
        c["process"]["capabilities"] = {k: ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]
                                        for k in ("bounding", "effective", "permitted")}

    b = bundles.make(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; "
                      "touch /shared/by-root /tmp/in-rootfs; "
                      "touch /shared/by-user && chown 1000:1000 /shared/by-user; "
                      "ls -ln /bin/busybox | awk '{print $3, $4}'"], edit=edit)
    chown_shifted(b / "rootfs", HOST_UID, HOST_GID)
    p = rt("run", "--bundle", b, cid, check=False)
    assert p.returncode == 0, p.stderr
    lines = [" ".join(x.split()) for x in p.stdout.splitlines()]
    assert lines[0] == f"0 {HOST_UID} {SIZE}"
    assert lines[1] == f"0 {HOST_GID} {SIZE}"
    assert lines[2:4] == ["0", "0"]
    assert lines[4] == "0 0"  # the shifted rootfs is owned by root as the container sees it
    st = os.stat(shared / "by-root")
    assert (st.st_uid, st.st_gid) == (HOST_UID, HOST_GID)
    st = os.stat(shared / "by-user")
    assert (st.st_uid, st.st_gid) == (HOST_UID + 1000, HOST_GID + 1000)
    st = os.stat(b / "rootfs" / "tmp" / "in-rootfs")
    assert (st.st_uid, st.st_gid) == (HOST_UID, HOST_GID)


def test_user_namespace_host_root_files_are_nobody(rt, userns_bundles, cid):
    """Without shifting the rootfs, host-root-owned files show as the overflow id."""
    p = run(rt, userns_bundles, cid, "ls -ln /bin/busybox | awk '{print $3}'; "
                                     "cat /proc/self/uid_map", edit=userns_edit)
    assert p.stdout.split()[0] == "65534"


# -- cgroup ---------------------------------------------------------------------------------

def test_cgroup_namespace_root_is_the_containers_cgroup(rt, bundles, cid):
    p = run(rt, bundles, cid, "cat /proc/self/cgroup")
    lines = p.stdout.splitlines()
    assert lines, p.stdout
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        assert path == "/", line
    assert any("memory" in line.split(":")[1] for line in lines)


def test_without_a_cgroup_namespace_the_full_path_shows(rt, bundles, cid):
    def edit(c):
        set_namespaces(c, "pid", "mount", "ipc", "uts", "network")

    p = run(rt, bundles, cid, "cat /proc/self/cgroup", edit=edit)
    mem = [line for line in p.stdout.splitlines() if ":memory:" in line]
    assert mem and mem[0].endswith(f"/{cid}"), p.stdout


# -- time -----------------------------------------------------------------------------------

def test_time_namespace_offsets(rt, bundles, cid):
    days = 10

    def edit(c):
        c["linux"]["namespaces"].append({"type": "time"})
        c["linux"]["timeOffsets"] = {"boottime": {"secs": days * 86400, "nanosecs": 0},
                                     "monotonic": {"secs": 3600, "nanosecs": 0}}

    p = run(rt, bundles, cid, "cat /proc/self/timens_offsets; echo --; cat /proc/uptime",
            edit=edit)
    offsets, _, uptime = p.stdout.partition("--\n")
    offs = {ln.split()[0]: ln.split()[1:] for ln in offsets.splitlines()}
    assert offs["monotonic"] == ["3600", "0"]
    assert offs["boottime"] == [str(days * 86400), "0"]
    host_uptime = float(open("/proc/uptime").read().split()[0])
    inside = float(uptime.split()[0])
    assert days * 86400 <= inside - host_uptime + 5 <= days * 86400 + 60


def test_time_namespace_without_offsets_matches_the_host(rt, bundles, cid):
    def edit(c):
        c["linux"]["namespaces"].append({"type": "time"})

    p = run(rt, bundles, cid, "readlink /proc/self/ns/time; cat /proc/uptime", edit=edit)
    ns, up = p.stdout.splitlines()[:2]
    assert ns != os.readlink("/proc/self/ns/time")
    assert abs(float(up.split()[0]) - float(open("/proc/uptime").read().split()[0])) < 30


# -- joining namespaces by path ---------------------------------------------------------------

@pytest.fixture
def netns():
    """A named network namespace (ip netns) with a veth pair in it; removed afterwards."""
    name = f"bosun-t-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "vth-a", "type", "veth", "peer",
                        "name", "vth-b"], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_join_a_named_network_namespace(rt, bundles, cid, netns):
    path = f"/run/netns/{netns}"

    def edit(c):
        set_namespaces(c, "pid", "mount", "ipc", "uts", network=path)

    p = run(rt, bundles, cid, "readlink /proc/self/ns/net; ls /sys/class/net", edit=edit)
    lines = p.stdout.split()
    assert lines[0] == f"net:[{os.stat(path).st_ino}]"
    assert sorted(lines[1:]) == ["lo", "vth-a", "vth-b"]


@pytest.fixture
def uts_ns(tmp_path):
    """A persistent uts namespace (bind-mounted on a file) whose hostname is set."""
    nsfile = tmp_path / "uts"
    nsfile.touch()
    subprocess.run(["unshare", f"--uts={nsfile}", "hostname", "from-a-file"], check=True)
    try:
        yield nsfile
    finally:
        subprocess.run(["umount", str(nsfile)], check=False)


def test_join_a_uts_namespace_by_path(rt, bundles, cid, uts_ns):
    def edit(c):
        c.pop("hostname")
        set_namespaces(c, "pid", "mount", "ipc", "network", uts=str(uts_ns))

    p = run(rt, bundles, cid, "hostname", edit=edit)
    assert p.stdout.strip() == "from-a-file"


def test_setting_hostname_in_a_joined_uts_namespace_is_refused(rt, bundles, cid, uts_ns):
    def edit(c):
        set_namespaces(c, "pid", "mount", "ipc", "network", uts=str(uts_ns))

    b = bundles.make(["true"], edit=edit)  # keeps hostname "bosun"
    p = rt("run", "--bundle", b, cid, check=False)
    assert p.returncode != 0 and "uts" in p.stderr and "Traceback" not in p.stderr
    assert subprocess.run(["nsenter", f"--uts={uts_ns}", "hostname"], capture_output=True,
                          text=True).stdout.strip() == "from-a-file"


def test_join_another_containers_namespaces(rt, bundles, cid):
    first = cid + "-a"

    def edit_first(c):
        c["hostname"] = "alpha"

    pid = start_sleeper(rt, bundles, first, edit=edit_first)
    try:
        def edit(c):
            c.pop("hostname")
            set_namespaces(c, "mount", uts=f"/proc/{pid}/ns/uts",
                           network=f"/proc/{pid}/ns/net", ipc=f"/proc/{pid}/ns/ipc",
                           pid=f"/proc/{pid}/ns/pid")

        p = run(rt, bundles, cid, "hostname; readlink /proc/self/ns/net; "
                                  "cat /proc/1/cmdline | tr '\\0' ' '", edit=edit)
        lines = p.stdout.splitlines()
        assert lines[0] == "alpha"
        assert lines[1] == os.readlink(f"/proc/{pid}/ns/net")
        assert lines[2].strip() == "sleep 1000"  # pid 1 is the first container's
    finally:
        stop(rt, first)


def test_joining_a_missing_namespace_path_fails_cleanly(rt, bundles, cid, tmp_path):
    def edit(c):
        set_namespaces(c, "pid", "mount", "ipc", "uts", network=str(tmp_path / "nope"))

    b = bundles.make(["true"], edit=edit)
    p = rt("run", "--bundle", b, cid, check=False)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr and "network" in p.stderr
    assert not (rt.root / cid).exists()
