"""The container's root filesystem, as seen from inside a busybox container: mounts and
their options, /dev, masked and read-only paths, sysctls, and that an untrusted rootfs
can't redirect a mount onto the host."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
import uuid

import pytest


def run(rt, bundles, cid, script, edit=None, check=True, args=(), **kw):
    """`bosun-runtime run` a shell script in a fresh busybox bundle; the completed process."""
    b = bundles.make(["sh", "-c", script], edit=edit)
    p = rt("run", *args, "--bundle", b, cid, check=False, **kw)
    if check:
        assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


class Mount:
    """One line of /proc/<pid>/mountinfo."""

    def __init__(self, line: str) -> None:
        pre, _, post = line.partition(" - ")
        f = pre.split()
        self.id, self.parent, self.dev, self.root, self.point = f[:5]
        self.opts = set(f[5].split(","))
        self.optional = f[6:]
        g = post.split()
        self.fstype, self.source = g[0], g[1]
        self.super = set(g[2].split(",")) if len(g) > 2 else set()

    def __repr__(self) -> str:
        return f"<{self.point} {self.fstype} {sorted(self.opts)} {self.optional}>"


def mountinfo(text: str) -> list[Mount]:
    return [Mount(line) for line in text.splitlines() if " - " in line]


def mounts_at(text: str, point: str) -> list[Mount]:
    return [m for m in mountinfo(text) if m.point == point]


def host_mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {m.point for m in mountinfo(f.read())}


def new_host_mounts(before: set[str], *under) -> set[str]:
    """Host mount points added since `before` at or below any of `under` (other tests may
    be mounting elsewhere on the host meanwhile)."""
    return {p for p in host_mount_points() - before
            if any(p == str(u) or p.startswith(str(u).rstrip("/") + "/") for u in under)}


def with_mounts(*extra, caps=None):
    """An edit that appends mounts (and optionally sets the capabilities)."""
    def edit(c):
        c["mounts"].extend(extra)
        if caps is not None:
            c["process"]["capabilities"] = {k: list(caps) for k in
                                            ("bounding", "effective", "permitted")}
    return edit


@pytest.fixture
def host_tmpfs(tmp_path):
    """Mount a tmpfs on a host directory for the test; everything unmounted afterwards."""
    mounted = []

    def make(path, *flags):
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", f"host-{path.name}", str(path),
                        *flags], check=True)
        mounted.append(path)
        return path

    yield make
    for path in reversed(mounted):
        subprocess.run(["umount", "-R", "-l", str(path)], check=False)


# -- order ------------------------------------------------------------------------------------

def test_mounts_are_applied_in_order(rt, bundles, cid, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "from-host").write_text("hello\n")
    edit = with_mounts(
        {"destination": "/data", "type": "tmpfs", "source": "first", "options": ["size=1m"]},
        # lands in the tmpfs above: only works if that is already mounted
        {"destination": "/data/sub", "type": "bind", "source": str(src), "options": ["rbind"]},
        {"destination": "/data/sub/inner", "type": "tmpfs", "source": "third"},
        # the same destination twice: the later mount is on top
        {"destination": "/stack", "type": "tmpfs", "source": "lower", "options": ["size=1m"]},
        {"destination": "/stack", "type": "tmpfs", "source": "upper", "options": ["size=2m"]},
    )
    p = run(rt, bundles, cid, "cat /proc/self/mountinfo; echo ==; cat /data/sub/from-host; "
                              "df -k /stack | tail -1", edit=edit)
    info, _, rest = p.stdout.partition("==\n")
    points = [m.point for m in mountinfo(info)]
    order = [points.index(x) for x in ("/data", "/data/sub", "/data/sub/inner")]
    assert order == sorted(order)
    stack = mounts_at(info, "/stack")
    assert [m.source for m in stack] == ["lower", "upper"]
    assert rest.splitlines()[0] == "hello"
    assert rest.splitlines()[1].split()[1] == "2048"  # df sees the upper one
    # /data/sub/inner was made after the bind: its mount point was created in the host dir
    assert (src / "inner").is_dir()


# -- bind mounts and their options -------------------------------------------------------------

def test_bind_readonly(rt, bundles, cid, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("data\n")
    edit = with_mounts({"destination": "/ro", "type": "bind", "source": str(src),
                        "options": ["rbind", "ro"]})
    p = run(rt, bundles, cid, "cat /ro/file; touch /ro/new; echo rc=$?; echo more >> /ro/file; "
                              "echo rc=$?; grep ' /ro ' /proc/self/mountinfo", edit=edit)
    assert p.stdout.splitlines()[:3] == ["data", "rc=1", "rc=1"]
    assert p.stderr.count("Read-only file system") == 2
    assert "ro" in mountinfo(p.stdout)[0].opts
    assert sorted(os.listdir(src)) == ["file"] and (src / "file").read_text() == "data\n"


def test_bind_nosuid_nodev_noexec(rt, bundles, cid, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", src / "true")  # applet by name
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    edit = with_mounts(
        {"destination": "/locked", "type": "bind", "source": str(src),
         "options": ["rbind", "nosuid", "nodev", "noexec"]},
        {"destination": "/open", "type": "bind", "source": str(src), "options": ["rbind"]})
    p = run(rt, bundles, cid,
            "/open/true; echo open-exec=$?; echo x > /open/null; echo open-dev=$?; "
            "/locked/true; echo locked-exec=$?; echo x > /locked/null; echo locked-dev=$?; "
            "grep -E ' /(open|locked) ' /proc/self/mountinfo", edit=edit)
    lines = p.stdout.splitlines()
    assert lines[:4] == ["open-exec=0", "open-dev=0", "locked-exec=126", "locked-dev=1"]
    assert "Permission denied" in p.stderr
    by_point = {m.point: m for m in mountinfo(p.stdout)}
    assert {"nosuid", "nodev", "noexec"} <= by_point["/locked"].opts
    assert not {"nosuid", "nodev", "noexec"} & by_point["/open"].opts


def test_bind_file(rt, bundles, cid, tmp_path):
    src = tmp_path / "resolv.conf"
    src.write_text("nameserver 127.0.0.53\n")
    edit = with_mounts({"destination": "/etc/resolv.conf", "type": "bind",
                        "source": str(src), "options": ["rbind", "ro"]})
    p = run(rt, bundles, cid, "cat /etc/resolv.conf; test -f /etc/resolv.conf && echo FILE",
            edit=edit)
    assert p.stdout == "nameserver 127.0.0.53\nFILE\n"


def test_bind_vs_rbind_submounts(rt, bundles, cid, tmp_path, host_tmpfs):
    src = tmp_path / "src"
    host_tmpfs(src / "sub")
    (src / "sub" / "in-submount").write_text("x")
    edit = with_mounts(
        {"destination": "/b", "type": "none", "source": str(src), "options": ["bind"]},
        {"destination": "/r", "type": "none", "source": str(src), "options": ["rbind"]})
    p = run(rt, bundles, cid, "ls /b/sub; echo ==; ls /r/sub", edit=edit)
    plain, _, recursive = p.stdout.partition("==\n")
    assert plain.split() == []
    assert recursive.split() == ["in-submount"]


def test_mount_propagation_options(rt, bundles, cid, tmp_path, host_tmpfs):
    src = host_tmpfs(tmp_path / "prop")
    subprocess.run(["mount", "--make-shared", str(src)], check=True)
    with open("/proc/self/mountinfo") as f:
        host = mounts_at(f.read(), str(src))[-1]
    group = next(o for o in host.optional if o.startswith("shared:")).split(":")[1]
    edit = with_mounts(*({"destination": f"/{name}", "type": "bind", "source": str(src),
                          "options": ["rbind", name]}
                         for name in ("rslave", "rshared", "rprivate")))
    b = bundles.make(["sh", "-c", "i=0; while [ ! -e /rprivate/go ] && [ $i -lt 200 ]; do "
                      "sleep 0.05; i=$((i+1)); done; cat /proc/self/mountinfo; echo ==; "
                      "ls /rslave/late; echo ==; ls /rshared/late; echo ==; ls /rprivate/late"],
                     edit=edit)
    proc = subprocess.Popen(rt.cmd("run", "--bundle", b, cid), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while rt("state", cid, check=False).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        # a mount made on the host after the container started
        host_tmpfs(src / "late")
        (src / "late" / "propagated").write_text("x")
        (src / "go").touch()
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    info, slave_ls, shared_ls, private_ls = out.split("==\n")
    opt = {p: mounts_at(info, p)[0].optional for p in ("/rslave", "/rshared", "/rprivate")}
    assert f"master:{group}" in opt["/rslave"] and not any(
        o.startswith("shared:") for o in opt["/rslave"])
    assert any(o.startswith("shared:") for o in opt["/rshared"])
    assert opt["/rprivate"] == []
    # host -> container propagation: into the slave (and the shared slave), not the private
    assert slave_ls.split() == ["propagated"]
    assert shared_ls.split() == ["propagated"]
    assert private_ls.split() == []


# -- special filesystems --------------------------------------------------------------------------

def test_proc_and_sysfs(rt, bundles, cid):
    p = run(rt, bundles, cid, "cat /proc/self/mountinfo; echo ==; "
                              "tr '\\0' ' ' < /proc/1/cmdline; echo; "
                              "ls /sys/class/net; touch /sys/x; echo sys-write=$?")
    info, _, rest = p.stdout.partition("==\n")
    assert mounts_at(info, "/proc")[0].fstype == "proc"
    sys_ = mounts_at(info, "/sys")[0]
    assert sys_.fstype == "sysfs" and {"ro", "nosuid", "nodev", "noexec"} <= sys_.opts
    lines = rest.splitlines()
    assert lines[0].startswith("sh -c cat /proc/self/mountinfo")
    assert lines[1:] == ["lo", "sys-write=1"]  # sysfs of the container's own netns


def test_tmpfs_size_and_mode(rt, bundles, cid):
    edit = with_mounts({"destination": "/scratch", "type": "tmpfs", "source": "scratch",
                        "options": ["nosuid", "size=1m", "mode=1770"]})
    p = run(rt, bundles, cid, "stat -c %a /scratch; df -k /scratch | tail -1; "
                              "dd if=/dev/zero of=/scratch/big bs=1k count=2048 2>/dev/null; "
                              "echo dd=$?; grep ' /scratch ' /proc/self/mountinfo", edit=edit)
    lines = p.stdout.splitlines()
    assert lines[0] == "1770"
    assert lines[1].split()[1] == "1024"
    assert lines[2] == "dd=1"  # ENOSPC at 1 MiB
    m = mountinfo(p.stdout)[0]
    assert m.fstype == "tmpfs" and "size=1024k" in m.super and "mode=1770" in m.super


def test_devpts_newinstance_and_ptmxmode(rt, bundles, cid):
    master, slave = os.openpty()  # the host has a pty of its own while the container runs
    try:
        host_pts = os.listdir("/dev/pts")
        p = run(rt, bundles, cid, "ls /dev/pts; readlink /dev/ptmx; "
                                  "stat -c '%a %t %T' /dev/pts/ptmx; "
                                  "grep ' /dev/pts ' /proc/self/mountinfo")
    finally:
        os.close(master)
        os.close(slave)
    assert any(x.isdigit() for x in host_pts)
    lines = p.stdout.splitlines()
    assert lines[0] == "ptmx"  # a new instance: none of the host's ptys
    assert lines[1] == "pts/ptmx"
    assert lines[2] == "666 5 2"
    m = mountinfo(p.stdout)[0]
    assert m.fstype == "devpts"
    assert {"ptmxmode=666", "mode=620", "gid=5"} <= m.super
    assert {"nosuid", "noexec"} <= m.opts


def test_mqueue(rt, bundles, cid):
    p = run(rt, bundles, cid, "grep ' /dev/mqueue ' /proc/self/mountinfo; ls -A /dev/mqueue")
    m = mountinfo(p.stdout)[0]
    assert m.fstype == "mqueue" and {"nosuid", "nodev", "noexec"} <= m.opts
    assert p.stdout.splitlines()[1:] == []


def test_cgroup_mount(rt, bundles, cid):
    p = run(rt, bundles, cid, "ls /sys/fs/cgroup; echo ==; cat /sys/fs/cgroup/pids/cgroup.procs; "
                              "echo ==; mkdir /sys/fs/cgroup/pids/sub; echo mkdir=$?; "
                              "grep ' /sys/fs/cgroup/memory ' /proc/self/mountinfo")
    ls, procs, rest = p.stdout.split("==\n")
    assert {"memory", "pids", "cpu", "freezer"} <= set(ls.split())
    # the container's own cgroup: its pid 1 (and the cat) are in it, no host process
    assert "1" in procs.split() and all(int(x) < 100 for x in procs.split())
    assert rest.splitlines()[0] == "mkdir=1"
    m = mountinfo(rest)[0]
    assert m.fstype == "cgroup" and "ro" in m.opts and "memory" in m.super


# -- the root ---------------------------------------------------------------------------------

@pytest.mark.parametrize("prop,expect", [("shared", "shared:"), ("private", None),
                                         ("unbindable", "unbindable"), ("slave", None)])
def test_rootfs_propagation(rt, bundles, cid, prop, expect):
    def edit(c):
        c["linux"]["rootfsPropagation"] = prop

    p = run(rt, bundles, cid, "cat /proc/self/mountinfo", edit=edit)
    root = mounts_at(p.stdout, "/")[-1]
    if expect is None:
        assert root.optional == [], root
    else:
        assert any(o.startswith(expect) for o in root.optional), root


def test_root_readonly(rt, bundles, cid):
    def edit(c):
        c["root"]["readonly"] = True

    p = run(rt, bundles, cid, "touch /new; echo root=$?; touch /dev/shm/ok; echo shm=$?; "
                              "cat /proc/self/mountinfo", edit=edit)
    lines = p.stdout.splitlines()
    assert lines[:2] == ["root=1", "shm=0"]
    assert "Read-only file system" in p.stderr
    assert "ro" in mounts_at(p.stdout, "/")[-1].opts


def test_no_pivot(rt, bundles, cid):
    b = bundles.make(["sh", "-c", "ls /; test -e /work && echo HOST; touch /tmp/np; hostname; "
                      "cat /proc/1/cmdline | tr '\\0' ' '"])
    p = rt("run", "--no-pivot", "--bundle", b, cid, check=False)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "HOST" not in lines
    assert {"bin", "etc", "proc", "dev", "sys", "tmp"} <= set(lines)
    assert "bosun" in lines
    assert (b / "rootfs" / "tmp" / "np").exists()


# -- /dev ------------------------------------------------------------------------------------

def test_default_devices(rt, bundles, cid):
    script = (
        "for d in null zero full random urandom tty; do stat -c '%n %F %a %t %T' /dev/$d; done; "
        "for l in fd stdin stdout stderr ptmx; do echo $l $(readlink /dev/$l); done; "
        "stat -c '%n %a' /dev/shm; grep ' /dev/shm ' /proc/self/mountinfo | sed 's/.* - //'; "
        "head -c 3 /dev/zero | od -An -tx1; head -c 8 /dev/urandom | wc -c; "
        "echo x > /dev/null; echo null=$?; echo x > /dev/full; echo full=$?; "
        "echo to-stderr > /dev/stderr")
    p = run(rt, bundles, cid, script)
    lines = p.stdout.splitlines()
    assert lines[:6] == [
        "/dev/null character special file 666 1 3",
        "/dev/zero character special file 666 1 5",
        "/dev/full character special file 666 1 7",
        "/dev/random character special file 666 1 8",
        "/dev/urandom character special file 666 1 9",
        "/dev/tty character special file 666 5 0",
    ]
    assert lines[6:11] == ["fd /proc/self/fd", "stdin /proc/self/fd/0",
                           "stdout /proc/self/fd/1", "stderr /proc/self/fd/2", "ptmx pts/ptmx"]
    assert lines[11] == "/dev/shm 1777" and lines[12].split()[0] == "tmpfs"
    assert lines[13].split() == ["00", "00", "00"] and lines[14].strip() == "8"
    assert lines[15:] == ["null=0", "full=1"]
    assert p.stderr == "to-stderr\n"


def test_linux_devices(rt, bundles, cid):
    def edit(c):
        c["linux"]["devices"] = [
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640,
             "uid": 1000, "gid": 1001},
            {"path": "/dev/sub/fifo", "type": "p", "fileMode": 0o600, "uid": 0, "gid": 0},
            # overrides a default device's mode
            {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o600},
        ]

    p = run(rt, bundles, cid, "stat -c '%n %F %a %u %g %t %T' /dev/mynull /dev/sub/fifo "
                              "/dev/zero", edit=edit)
    assert p.stdout.splitlines() == [
        "/dev/mynull character special file 640 1000 1001 1 3",
        "/dev/sub/fifo fifo 600 0 0 0 0",
        "/dev/zero character special file 600 0 0 1 5",
    ]


# -- masked and read-only paths ----------------------------------------------------------------

def test_masked_paths(rt, bundles, cid):
    def edit(c):
        c["linux"]["maskedPaths"] += ["/opt/secret", "/etc/shadow", "/does/not/exist"]

    b = bundles.make(["sh", "-c", "wc -c < /proc/keys; wc -c < /proc/timer_list; "
                      "stat -c '%t %T' /proc/keys; ls -A /opt/secret; echo ==; "
                      "cat /etc/shadow; echo ==; touch /opt/secret/x; echo touch=$?; "
                      "ls -A /sys/firmware | wc -l"], edit=edit)
    (b / "rootfs" / "opt" / "secret").mkdir(parents=True)
    (b / "rootfs" / "opt" / "secret" / "key").write_text("s3cret")
    (b / "rootfs" / "etc" / "shadow").write_text("root:hash:::::\n")
    p = rt("run", "--bundle", b, cid, check=False)
    assert p.returncode == 0, p.stderr
    # on the host these are not empty
    assert open("/proc/timer_list").read() and os.listdir("/sys/firmware")
    masked, shadow, rest = p.stdout.split("==\n")
    # /proc/keys and /proc/timer_list read as empty (bound to /dev/null), /opt/secret is empty
    assert masked.splitlines() == ["0", "0", "1 3"]
    assert shadow == ""  # a masked file is /dev/null
    assert rest.splitlines() == ["touch=1", "0"]  # a masked dir is a read-only empty tmpfs
    assert "s3cret" not in p.stdout


def test_readonly_paths(rt, bundles, cid):
    def edit(c):
        c["linux"]["readonlyPaths"] += ["/etc", "/missing/is/ignored"]

    p = run(rt, bundles, cid, "touch /etc/x; echo etc=$?; touch /tmp/x; echo tmp=$?; "
                              "echo 1 > /proc/sys/kernel/ns_last_pid; echo sys=$?; "
                              "grep -E ' /(etc|proc/sys) ' /proc/self/mountinfo", edit=edit)
    lines = p.stdout.splitlines()
    assert lines[:3] == ["etc=1", "tmp=0", "sys=1"]
    assert p.stderr.count("Read-only file system") == 2
    for m in mountinfo(p.stdout):
        assert "ro" in m.opts, m


# -- sysctl ------------------------------------------------------------------------------------

def test_sysctl_in_new_namespaces(rt, bundles, cid):
    def host():
        return [open(f"/proc/sys/{k}").read() for k in
                ("net/ipv4/ip_unprivileged_port_start", "kernel/shmmax", "kernel/msgmax")]

    before = host()

    def edit(c):
        c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1",
                                "net.ipv4.ip_unprivileged_port_start": "123",
                                "kernel.shmmax": "4096000", "kernel.msgmax": "4321"}

    p = run(rt, bundles, cid, "cat /proc/sys/net/ipv4/ip_forward "
                              "/proc/sys/net/ipv4/ip_unprivileged_port_start "
                              "/proc/sys/kernel/shmmax /proc/sys/kernel/msgmax", edit=edit)
    assert p.stdout.split() == ["1", "123", "4096000", "4321"]
    assert host() == before


@pytest.mark.parametrize("key,why", [
    ("vm.swappiness", "not namespaced"),
    ("kernel.pid_max", "not namespaced"),
    ("net.ipv4.ip_forward", "network"),   # no network namespace of its own
    ("kernel.shmmax", "ipc"),             # no ipc namespace of its own
])
def test_sysctl_rejected(rt, bundles, cid, key, why):
    before = open("/proc/sys/" + key.replace(".", "/")).read()

    def edit(c):
        c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"]
                                    if ns["type"] not in ("network", "ipc")]
        c["linux"]["sysctl"] = {key: "1"}

    p = run(rt, bundles, cid, "true", edit=edit, check=False)
    assert p.returncode != 0
    assert key in p.stderr and why in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (rt.root / cid).exists()
    assert open("/proc/sys/" + key.replace(".", "/")).read() == before


# -- safety: symlinks in the rootfs ------------------------------------------------------------

def test_mount_on_absolute_symlink_out_of_rootfs_stays_inside(rt, bundles, cid, tmp_path):
    target = tmp_path / f"host-target-{uuid.uuid4().hex[:6]}"
    target.mkdir()
    (target / "orig").write_text("host data")
    edit = with_mounts({"destination": "/mnt/evil", "type": "tmpfs", "source": "evil-tmpfs"})
    b = bundles.make(["sh", "-c", f"touch /mnt/evil/pwned; ls -A {target}; echo ==; "
                      "grep evil-tmpfs /proc/self/mountinfo"], edit=edit)
    (b / "rootfs" / "mnt").mkdir()
    (b / "rootfs" / "mnt" / "evil").symlink_to(target)
    before = host_mount_points()
    p = rt("run", "--bundle", b, cid, check=False)
    assert p.returncode == 0, p.stderr
    listing, _, info = p.stdout.partition("==\n")
    assert listing.split() == ["pwned"]  # the tmpfs, at the symlink's target inside the root
    assert [m.point for m in mountinfo(info)] == [str(target)]
    # the host directory is untouched and nothing was ever mounted on it
    assert sorted(os.listdir(target)) == ["orig"]
    assert new_host_mounts(before, target, b) == set()
    assert str(target) not in host_mount_points()
    assert (b / "rootfs" / str(target).lstrip("/")).is_dir()


def test_bind_on_symlink_to_host_etc_stays_inside(rt, bundles, cid, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "planted").write_text("x")
    edit = with_mounts({"destination": "/mnt/etc-link", "type": "bind", "source": str(src),
                        "options": ["rbind"]})
    b = bundles.make(["sh", "-c", "ls /etc"], edit=edit)
    (b / "rootfs" / "mnt").mkdir()
    (b / "rootfs" / "mnt" / "etc-link").symlink_to("/etc")
    host_etc = sorted(os.listdir("/etc"))
    p = rt("run", "--bundle", b, cid, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["planted"]  # the container's /etc got the mount
    assert sorted(os.listdir("/etc")) == host_etc and not os.path.exists("/etc/planted")
    assert "/etc" not in host_mount_points()
    assert (b / "rootfs" / "etc" / "passwd").exists()


def test_mount_on_relative_symlink_escaping_rootfs_stays_inside(rt, bundles, cid, tmp_path):
    target = tmp_path / "rel-target"
    target.mkdir()
    edit = with_mounts({"destination": "/a/b/up", "type": "tmpfs", "source": "up-tmpfs"})
    b = bundles.make(["sh", "-c", "touch /a/b/up/pwned && grep up-tmpfs /proc/self/mountinfo"],
                     edit=edit)
    (b / "rootfs" / "a" / "b").mkdir(parents=True)
    (b / "rootfs" / "a" / "b" / "up").symlink_to("../" * 30 + str(target).lstrip("/"))
    p = rt("run", "--bundle", b, cid, check=False)
    assert p.returncode == 0, p.stderr
    assert [m.point for m in mountinfo(p.stdout)] == [str(target)]
    assert os.listdir(target) == []
    assert str(target) not in host_mount_points()


def test_bind_file_on_symlink_to_host_file_stays_inside(rt, bundles, cid, tmp_path):
    src = tmp_path / "hostname-src"
    src.write_text("planted\n")
    victim = tmp_path / "victim"
    victim.write_text("original\n")
    edit = with_mounts({"destination": "/etc/evil", "type": "bind", "source": str(src),
                        "options": ["rbind"]})
    b = bundles.make(["sh", "-c", f"cat /etc/evil {victim}"], edit=edit)
    (b / "rootfs" / "etc" / "evil").symlink_to(victim)
    p = rt("run", "--bundle", b, cid, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "planted\nplanted\n"
    assert victim.read_text() == "original\n"
    assert str(victim) not in host_mount_points()


@pytest.mark.parametrize("dest", ["/mnt/../../../../{t}", "/../{t}", "/tmp/../../{t}"])
def test_dotdot_in_destination_never_reaches_the_host(rt, bundles, cid, dest):
    name = f"bosun-dotdot-{uuid.uuid4().hex[:8]}"
    edit = with_mounts({"destination": dest.format(t=f"tmp/{name}"), "type": "tmpfs",
                        "source": "dotdot"})
    p = run(rt, bundles, cid, "grep dotdot /proc/self/mountinfo", edit=edit, check=False)
    assert "Traceback" not in p.stderr
    if p.returncode == 0:  # resolved inside the root
        assert [m.point for m in mountinfo(p.stdout)] == [f"/tmp/{name}"]
    else:  # or refused, cleanly
        assert ".." in p.stderr and len(p.stderr.strip().splitlines()) == 1
        assert not (rt.root / cid).exists()
    assert not os.path.exists(f"/tmp/{name}")
    assert f"/tmp/{name}" not in host_mount_points()


def test_bind_on_dangling_relative_symlink_creates_its_target_inside(rt, bundles, cid, tmp_path):
    """The Ubuntu image case: /etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf,
    and /run does not exist in the image. The bind lands on the target, inside the root."""
    src = tmp_path / "resolv.conf"
    src.write_text("nameserver 127.0.0.53\n")
    edit = with_mounts({"destination": "/etc/resolv.conf", "type": "bind", "source": str(src),
                        "options": ["rbind", "ro"]})
    b = bundles.make(["sh", "-c", "cat /etc/resolv.conf; "
                      "grep -c resolve/stub-resolv.conf /proc/self/mountinfo"], edit=edit)
    (b / "rootfs" / "etc" / "resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    host_had = os.path.exists("/run/systemd/resolve")
    p = rt("run", "--bundle", b, cid, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "nameserver 127.0.0.53\n1\n"
    assert (b / "rootfs" / "run" / "systemd" / "resolve" / "stub-resolv.conf").is_file()
    assert os.path.exists("/run/systemd/resolve") == host_had


def test_mount_through_a_dangling_symlinked_parent_dir(rt, bundles, cid):
    """/var/run -> /run with no /run in the image: /var/run/app/sock-dir is made as
    /run/app/sock-dir inside the root."""
    edit = with_mounts({"destination": "/var/run/app/sock-dir", "type": "tmpfs",
                        "source": "run-tmpfs"})
    b = bundles.make(["sh", "-c", "grep run-tmpfs /proc/self/mountinfo; touch /run/app/sock-dir/s"
                      " && ls /var/run/app/sock-dir"], edit=edit)
    (b / "rootfs" / "var").mkdir()
    (b / "rootfs" / "var" / "run").symlink_to("/run")
    before = host_mount_points()
    p = rt("run", "--bundle", b, cid, check=False)
    assert p.returncode == 0, p.stderr
    assert [m.point for m in mountinfo(p.stdout)] == ["/run/app/sock-dir"]
    assert p.stdout.splitlines()[-1] == "s"
    assert (b / "rootfs" / "run" / "app" / "sock-dir").is_dir()
    assert not os.path.exists("/run/app/sock-dir")
    assert new_host_mounts(before, "/run", "/var/run", b) == set()
