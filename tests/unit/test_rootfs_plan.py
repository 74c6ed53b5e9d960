"""Rootfs: the plan of mount/mknod/pivot_root calls, checked against a kernel that records them.

FakeKernel never mounts anything: mount, umount2, pivot_root, chroot and mknod are recorded
(mknod leaves a placeholder file). openat2 is the real system call (it needs no privilege), so
path resolution inside the rootfs -- the security-relevant part -- is the real thing, on a
rootfs in a temporary directory. Mount targets of the form /proc/self/fd/N are recorded as
the path that fd pointed to at the time of the call.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest

from bosun import kernel as K
from bosun.runtime import cgroups, rootfs
from bosun.runtime.errors import RuntimeErr
from bosun.runtime.rootfs import Rootfs


def _openat2_available() -> bool:
    fd = os.open("/", os.O_PATH)
    try:
        os.close(K.Kernel().openat2(fd, ".", os.O_PATH, K.RESOLVE_IN_ROOT))
        return True
    except OSError as e:
        if e.errno in (errno.ENOSYS, errno.EPERM):
            return False
        raise
    finally:
        os.close(fd)


pytestmark = pytest.mark.skipif(not _openat2_available(), reason="openat2 not available")


def where(path):
    """The real path behind a /proc/self/fd/N mount target, else the path as given."""
    if isinstance(path, str) and path.startswith("/proc/self/fd/"):
        return os.readlink(path)
    return path


class FakeKernel(K.Kernel):
    def __init__(self, fail=None) -> None:
        super().__init__()
        self.calls: list[tuple] = []
        self.cwds: list[str] = []
        self.fail = fail  # fail(source, target, fstype, flags) -> exception to raise, or None

    def _rec(self, *call) -> None:
        self.calls.append(call)
        self.cwds.append(os.getcwd())

    def mount(self, source, target, fstype, flags, data=None):
        self._rec("mount", source, where(target), fstype, flags, data)
        if self.fail:
            exc = self.fail(source, target, fstype, flags)
            if exc is not None:
                raise exc
        if (flags & K.MS_BIND and not flags & K.MS_REMOUNT and source
                and not os.path.exists(source)):
            raise FileNotFoundError(errno.ENOENT, "mount: no such file", source)

    def umount2(self, target, flags=0):
        self._rec("umount2", where(target), flags)

    def mount_setattr(self, dirfd, path, flags, attr_set, attr_clr):
        self._rec("mount_setattr", where(f"/proc/self/fd/{dirfd}"), path, flags, attr_set,
                  attr_clr)

    def pivot_root(self, new_root, put_old):
        self._rec("pivot_root", new_root, put_old)

    def chroot(self, path):
        self._rec("chroot", path)

    def mknod(self, name, mode, device, dir_fd):
        self._rec("mknod", os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), name), mode,
                  device)
        # O_EXCL: a leftover file at the device path would make this fail, like mknod(2)
        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600, dir_fd=dir_fd))

    def _unexpected(self, *a, **kw):
        raise AssertionError("Rootfs made an unexpected system call")

    unshare = setns = sethostname = setdomainname = prctl = capset = write_file = _unexpected

    def mounts(self):
        return [c for c in self.calls if c[0] == "mount"]


@pytest.fixture(autouse=True)
def real_kernel_untouchable(monkeypatch):
    """Belt and braces: fail loudly if anything reaches the real kernel's mount calls."""
    def refuse(*a, **kw):
        raise AssertionError("the real kernel was asked to mount/pivot")

    for name in ("mount", "umount2", "pivot_root", "chroot", "mknod", "unshare", "setns",
                 "mount_setattr"):
        monkeypatch.setattr(K.LINUX, name, refuse)


@pytest.fixture
def chowns(monkeypatch):
    """Record chown calls (unprivileged users may not chown to 0)."""
    calls = []

    def fake_chown(path, uid, gid, *, dir_fd=None, follow_symlinks=True):
        base = os.readlink(f"/proc/self/fd/{dir_fd}") if dir_fd is not None else ""
        calls.append((os.path.join(base, path), uid, gid))

    monkeypatch.setattr(os, "chown", fake_chown)
    return calls


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "rootfs"
    r.mkdir()
    return r


@pytest.fixture
def make(root):
    """make(**config) -> (Rootfs with an open rootfd and a FakeKernel, the kernel)."""
    opened = []

    def _make(linux=None, mounts=None, readonly=False, userns=False, fail=None, **kw):
        k = FakeKernel(fail)
        config = {"root": {"path": str(root), "readonly": readonly},
                  "linux": linux or {}, "mounts": mounts or []}
        r = Rootfs(config, k, userns=userns, **kw)
        r.rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        opened.append(r)
        return r, k

    yield _make
    for r in opened:
        if r.rootfd >= 0:
            os.close(r.rootfd)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


DEFAULTS = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
            ("urandom", 1, 9), ("tty", 5, 0)]
LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
         "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}


# -- /dev ------------------------------------------------------------------------------------

def test_default_devices_and_links(make, root, chowns):
    r, k = make()
    r.create_devices()
    dev = root / "dev"
    assert k.calls == [("mknod", str(dev / n), stat.S_IFCHR | 0o666, os.makedev(ma, mi))
                       for n, ma, mi in DEFAULTS]
    assert chowns == [(str(dev / n), 0, 0) for n, _, _ in DEFAULTS]
    for name, target in LINKS.items():
        assert os.readlink(dev / name) == target
    assert sorted(os.listdir(dev)) == sorted([n for n, _, _ in DEFAULTS] + list(LINKS))


def test_devices_in_user_namespace_are_bind_mounted(make, root, chowns):
    r, k = make(userns=True)
    r.create_devices()
    dev = root / "dev"
    assert not [c for c in k.calls if c[0] == "mknod"]
    assert chowns == []
    assert k.calls == [("mount", f"/dev/{n}", str(dev / n), None, K.MS_BIND, None)
                       for n, _, _ in DEFAULTS]
    for n, _, _ in DEFAULTS:
        st = os.lstat(dev / n)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0


def test_config_devices_override_and_extend_defaults(make, root, chowns):
    r, k = make(linux={"devices": [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600,
         "uid": 5, "gid": 6},
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
        {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 0o060660},
        {"path": "/dev/net/tun", "type": "u", "major": 10, "minor": 200},
        {"path": "/dev/pipe", "type": "p"},
    ]})
    r.create_devices()
    dev = str(root / "dev")
    nods = {c[1]: (c[2], c[3]) for c in k.calls if c[0] == "mknod"}
    assert len([c for c in k.calls if c[0] == "mknod"]) == len(DEFAULTS) + 4  # null once
    assert nods[f"{dev}/null"] == (stat.S_IFCHR | 0o600, os.makedev(1, 3))
    assert nods[f"{dev}/fuse"] == (stat.S_IFCHR | 0o666, os.makedev(10, 229))
    assert nods[f"{dev}/sda"] == (stat.S_IFBLK | 0o660, os.makedev(8, 0))
    assert nods[f"{dev}/net/tun"] == (stat.S_IFCHR | 0o666, os.makedev(10, 200))
    assert nods[f"{dev}/pipe"] == (stat.S_IFIFO | 0o666, os.makedev(0, 0))
    assert (f"{dev}/null", 5, 6) in chowns and (f"{dev}/null", 0, 0) not in chowns
    assert (f"{dev}/fuse", 0, 0) in chowns
    assert os.path.isdir(f"{dev}/net")


@pytest.mark.parametrize("path", ["/etc/passwd", "/devx", "dev/null", None, "/dev"])
def test_device_outside_dev_refused(make, root, path):
    r, k = make()
    with pytest.raises(RuntimeErr, match="must be under /dev"):
        r.create_device({"path": path, "type": "c", "major": 1, "minor": 3})
    assert k.calls == []


def test_device_unknown_type(make):
    r, k = make()
    with pytest.raises(RuntimeErr, match="/dev/x: unknown type 'z'"):
        r.create_device({"path": "/dev/x", "type": "z"})
    assert k.calls == []


def test_device_path_with_dotdot_refused(make, root, tmp_path):
    r, k = make()
    with pytest.raises(RuntimeErr, match=r"\.\."):
        r.create_device({"path": "/dev/../../escape", "type": "c", "major": 1, "minor": 3})
    assert not [c for c in k.calls if c[0] == "mknod"]
    assert not (tmp_path / "escape").exists()


def test_device_replaces_whatever_is_at_its_path(make, root, tmp_path, chowns):
    (root / "dev").mkdir()
    (root / "dev" / "null").write_text("not a device")
    secret = tmp_path / "host-file"
    secret.write_text("host")
    (root / "dev" / "zero").symlink_to(secret)
    r, k = make()
    r.create_devices()
    assert os.path.getsize(root / "dev" / "null") == 0      # the placeholder from mknod
    assert not os.path.islink(root / "dev" / "zero")
    assert secret.read_text() == "host"
    assert (str(root / "dev" / "zero"), 0, 0) in chowns


def test_existing_dev_links_are_kept(make, root, chowns):
    (root / "dev").mkdir()
    (root / "dev" / "fd").symlink_to("custom")
    r, _ = make()
    r.create_devices()
    assert os.readlink(root / "dev" / "fd") == "custom"
    assert os.readlink(root / "dev" / "stdin") == "/proc/self/fd/0"


def test_create_devices_closes_its_fds(make, chowns):
    r, _ = make()
    before = open_fds()
    r.create_devices()
    assert open_fds() == before


# -- resolving paths inside the root ------------------------------------------------------------

def test_mkdir_all_creates_nested_dirs(make, root):
    r, _ = make()
    fd = r.mkdir_all("/a/b/c")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == str(root / "a" / "b" / "c")
    finally:
        os.close(fd)
    assert (root / "a" / "b" / "c").is_dir()


def test_mkdir_all_ignores_dot_and_empty_components(make, root):
    r, _ = make()
    fd = r.mkdir_all("/./x//y/./")
    os.close(fd)
    assert (root / "x" / "y").is_dir()
    assert sorted(os.listdir(root)) == ["x"]


def test_mkdir_all_root_itself(make, root):
    r, _ = make()
    fd = r.mkdir_all("/")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == str(root)
    finally:
        os.close(fd)


def test_mkdir_all_file(make, root):
    r, _ = make()
    os.close(r.mkdir_all("/etc/hostname", file=True))
    assert (root / "etc").is_dir()
    assert (root / "etc" / "hostname").is_file()
    # an existing directory stays a directory even when a file is asked for
    (root / "d").mkdir()
    os.close(r.mkdir_all("/d", file=True))
    assert (root / "d").is_dir()


@pytest.mark.parametrize("path", ["..", "/../etc", "../../x", "/a/../../b", "/a/.."])
def test_mkdir_all_refuses_dotdot(make, root, tmp_path, path):
    r, _ = make()
    before = open_fds()
    with pytest.raises(RuntimeErr, match=r"must not contain '\.\.'"):
        r.mkdir_all(path)
    assert open_fds() == before
    assert not (tmp_path / "etc").exists() and not (tmp_path / "b").exists()
    assert not (tmp_path / "x").exists()


def test_relative_symlink_climbing_out_stays_in_root(make, root, tmp_path):
    (root / "up").symlink_to("../../../../..")
    r, _ = make()
    fd = r.mkdir_all("/up/sub")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == str(root / "sub")
    finally:
        os.close(fd)
    assert not (tmp_path / "sub").exists()


def test_absolute_symlink_resolves_inside_root(make, root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    inside = root / str(outside).lstrip("/")
    inside.mkdir(parents=True)
    (root / "abs").symlink_to(outside)
    r, _ = make()
    fd = r.mkdir_all("/abs/y")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == str(inside / "y")
    finally:
        os.close(fd)
    assert (inside / "y").is_dir()
    assert os.listdir(outside) == []


def test_dangling_symlink_never_creates_outside_root(make, root, tmp_path):
    host_target = tmp_path / "host-target"
    (root / "dang").symlink_to(host_target)
    r, _ = make()
    before = open_fds()
    fd = r.mkdir_all("/dang/x")
    try:
        inside = root / str(host_target).lstrip("/") / "x"
        assert os.readlink(f"/proc/self/fd/{fd}") == str(inside)
    finally:
        os.close(fd)
    assert inside.is_dir()
    assert not host_target.exists()
    assert open_fds() == before


@pytest.mark.parametrize("file", [False, True])
def test_dangling_symlink_target_is_created_inside_root(make, root, file):
    # e.g. an image's /etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf
    (root / "etc").mkdir()
    (root / "etc" / "resolv.conf").symlink_to("/run/resolve/stub")
    r, _ = make()
    fd = r.mkdir_all("/etc/resolv.conf", file=file)
    target = root / "run" / "resolve" / "stub"
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == str(target)
    finally:
        os.close(fd)
    assert target.is_file() if file else target.is_dir()
    assert (root / "etc" / "resolv.conf").is_symlink()


def test_relative_dangling_symlink_climbing_out_is_created_inside_root(make, root, tmp_path):
    (root / "a").mkdir()
    (root / "a" / "link").symlink_to("../../../../../made")
    r, _ = make()
    os.close(r.mkdir_all("/a/link/sub"))
    assert (root / "made" / "sub").is_dir()
    assert not (tmp_path / "made").exists()


def test_symlink_loop_fails_cleanly(make, root):
    (root / "l1").symlink_to("l2")
    (root / "l2").symlink_to("l1")
    r, _ = make()
    before = open_fds()
    with pytest.raises((OSError, RuntimeErr)):
        r.mkdir_all("/l1/x")
    assert open_fds() == before


def test_chain_of_dangling_symlinks_is_bounded(make, root):
    # each link points at the next, which does not exist until it is created... as a link
    for i in range(60):
        (root / f"c{i}").symlink_to(f"/c{i + 1}")
    r, _ = make()
    before = open_fds()
    with pytest.raises((OSError, RuntimeErr)):
        os.close(r.mkdir_all("/c0/x"))
    assert open_fds() == before


# -- mounts ------------------------------------------------------------------------------------

def test_tmpfs_mount(make, root):
    r, k = make()
    r.mount_one({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]})
    assert k.calls == [("mount", "tmpfs", str(root / "dev"), "tmpfs",
                        K.MS_NOSUID | K.MS_STRICTATIME, "mode=755,size=65536k")]
    assert (root / "dev").is_dir()


def test_mount_without_source_uses_type_and_drops_remount(make, root):
    r, k = make()
    r.mount_one({"destination": "/run", "type": "tmpfs", "options": ["remount", "ro"]})
    assert k.calls == [("mount", "tmpfs", str(root / "run"), "tmpfs", K.MS_RDONLY, None)]


@pytest.mark.parametrize("typ", ["proc", "sysfs"])
def test_proc_on_a_file_refused(make, root, typ):
    (root / "proc").write_text("")
    r, k = make()
    before = open_fds()
    with pytest.raises(RuntimeErr, match=f"{typ} mount destination '/proc' is not a directory"):
        r.mount_one({"destination": "/proc", "type": typ, "source": typ})
    assert k.calls == []
    assert open_fds() == before


def test_bind_mount_with_flags_remounts(make, root, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    r, k = make()
    r.mount_one({"destination": "/mnt/data", "type": "none", "source": str(src),
                 "options": ["rbind", "ro", "nosuid"]})
    target = str(root / "mnt" / "data")
    bind, remount = k.calls
    assert bind == ("mount", str(src), target, None, K.MS_BIND | K.MS_REC, None)
    _, source, where_, fstype, flags, data = remount
    assert (source, where_, fstype, data) == (None, target, None, None)
    want = K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY | K.MS_NOSUID
    assert flags & want == want
    # nothing else but the flags the mount already has (which a remount must keep)
    assert flags & ~(want | rootfs.locked_flags(target)) == 0


def test_plain_bind_needs_no_remount(make, root, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    r, k = make()
    r.mount_one({"destination": "/b", "type": "bind", "source": str(src)})  # no "bind" option
    assert k.calls == [("mount", str(src), str(root / "b"), None, K.MS_BIND, None)]


def test_bind_mount_of_a_file_creates_a_file(make, root, tmp_path):
    src = tmp_path / "hosts"
    src.write_text("127.0.0.1 localhost\n")
    r, k = make()
    r.mount_one({"destination": "/etc/hosts", "source": str(src), "options": ["bind"]})
    assert (root / "etc" / "hosts").is_file()
    assert k.calls == [("mount", str(src), str(root / "etc" / "hosts"), None, K.MS_BIND, None)]


def test_bind_mount_missing_source(make, root, tmp_path):
    r, k = make()
    missing = str(tmp_path / "missing")
    with pytest.raises(RuntimeErr, match=f"bind mount source '{missing}'"):
        r.mount_one({"destination": "/m", "source": missing, "options": ["rbind"]})
    assert k.calls == []
    assert not (root / "m").exists()


def test_bind_mount_propagation(make, root, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    r, k = make()
    r.mount_one({"destination": "/p", "source": str(src), "options": ["rbind", "rslave",
                                                                      "private"]})
    target = str(root / "p")
    assert k.calls == [("mount", str(src), target, None, K.MS_BIND | K.MS_REC, None),
                       ("mount", None, target, None, K.MS_SLAVE | K.MS_REC, None),
                       ("mount", None, target, None, K.MS_PRIVATE, None)]


def test_unsupported_option_fails_before_mounting(make, root):
    r, k = make()
    with pytest.raises(RuntimeErr, match="not supported"):
        r.mount_one({"destination": "/x", "type": "tmpfs", "options": ["idmap"]})
    assert k.calls == []
    assert not (root / "x").exists()


def test_recursive_options_apply_to_the_whole_tree_after_mounting(make, root, tmp_path):
    src = tmp_path / "tree"
    src.mkdir()
    r, k = make()
    r.mount_one({"destination": "/t", "source": str(src),
                 "options": ["rbind", "ro", "rro", "rnosuid", "rnoatime", "rrw", "rprivate"]})
    target = str(root / "t")
    assert [c[0] for c in k.calls] == ["mount", "mount", "mount_setattr", "mount"]
    _, where_, path, flags, on, off = k.calls[2]
    assert (where_, path) == (target, "") and flags == K.AT_EMPTY_PATH | K.AT_RECURSIVE
    # the later rrw undoes rro; the atime field is cleared to set noatime
    assert on == K.MOUNT_ATTR_NOSUID | K.MOUNT_ATTR_NOATIME
    assert off == K.MOUNT_ATTR_RDONLY | K.MOUNT_ATTR__ATIME


def test_mount_destination_through_escaping_symlink(make, root, tmp_path):
    (root / "up").symlink_to("../../..")
    r, k = make()
    r.mount_one({"destination": "/up/escape", "type": "tmpfs"})
    assert k.calls == [("mount", "tmpfs", str(root / "escape"), "tmpfs", 0, None)]
    assert not (tmp_path / "escape").exists()


def test_mount_destination_with_dotdot_refused(make, tmp_path):
    r, k = make()
    with pytest.raises(RuntimeErr, match="must not contain"):
        r.mount_one({"destination": "/../escape", "type": "tmpfs"})
    assert k.calls == []


def _deny_sysfs(source, target, fstype, flags):
    return PermissionError(errno.EPERM, "denied") if fstype == "sysfs" else None


def test_sysfs_in_user_namespace_falls_back_to_bind(make, root):
    r, k = make(userns=True, fail=_deny_sysfs)
    r.mount_one({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev"]})
    target = str(root / "sys")
    flags3 = K.MS_NOSUID | K.MS_NOEXEC | K.MS_NODEV
    assert k.calls[0] == ("mount", "sysfs", target, "sysfs", flags3, None)
    assert k.calls[1] == ("mount", "/sys", target, None, K.MS_BIND | K.MS_REC, None)
    _, src, where_, fstype, flags, _ = k.calls[2]
    assert (src, where_, fstype) == (None, target, None)
    want = K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY | flags3
    assert flags & want == want
    assert len(k.calls) == 3


def test_sysfs_permission_error_without_user_namespace_propagates(make):
    r, k = make(userns=False, fail=_deny_sysfs)
    with pytest.raises(PermissionError):
        r.mount_one({"destination": "/sys", "type": "sysfs", "source": "sysfs"})
    assert len(k.calls) == 1


def test_locked_flags_maps_statvfs_bits(monkeypatch):
    class F:
        f_flag = K.ST_RDONLY | K.ST_NODEV | K.ST_RELATIME | 0x400000  # + an unrelated bit

    monkeypatch.setattr(os, "statvfs", lambda p: F)
    assert rootfs.locked_flags("/x") == K.MS_RDONLY | K.MS_NODEV | K.MS_RELATIME
    F.f_flag = K.ST_NOSUID | K.ST_NOEXEC | K.ST_NOATIME | K.ST_NODIRATIME
    assert rootfs.locked_flags("/x") == (K.MS_NOSUID | K.MS_NOEXEC | K.MS_NOATIME
                                         | K.MS_NODIRATIME)
    F.f_flag = 0
    assert rootfs.locked_flags("/x") == 0


# -- cgroup mounts -------------------------------------------------------------------------------

CG_OPTS = ["nosuid", "noexec", "nodev", "relatime", "ro"]
CG_FLAGS = K.MS_NOSUID | K.MS_NOEXEC | K.MS_NODEV | K.MS_RELATIME | K.MS_RDONLY


def test_cgroup2_with_cgroup_namespace(make, root, monkeypatch):
    monkeypatch.setattr(cgroups, "hierarchies", lambda: {cgroups.UNIFIED: "/sys/fs/cgroup"})
    r, k = make(cgroupns=True)
    r.mount_one({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": CG_OPTS})
    assert k.calls == [("mount", "cgroup2", str(root / "sys/fs/cgroup"), "cgroup2", CG_FLAGS,
                        None)]


def test_cgroup2_without_namespace_binds_own_cgroup(make, root, tmp_path, monkeypatch):
    own = tmp_path / "cg" / "ctr"
    own.mkdir(parents=True)
    monkeypatch.setattr(cgroups, "hierarchies", lambda: {cgroups.UNIFIED: str(tmp_path / "cg")})
    r, k = make(cgroup_dirs={cgroups.UNIFIED: str(own)})
    r.mount_one({"destination": "/sys/fs/cgroup", "type": "cgroup", "options": CG_OPTS})
    target = str(root / "sys/fs/cgroup")
    assert k.calls[0] == ("mount", str(own), target, None, K.MS_BIND, None)
    assert k.calls[1][1:4] == (None, target, None)
    assert k.calls[1][4] & (K.MS_BIND | K.MS_REMOUNT | CG_FLAGS) == (
        K.MS_BIND | K.MS_REMOUNT | CG_FLAGS)
    assert len(k.calls) == 2


def test_cgroup_v1_tmpfs_binds_and_symlinks(make, root, tmp_path, monkeypatch):
    cg = tmp_path / "cg"
    for d in ("cpu,cpuacct", "memory", "systemd", "unified", "memory/ctr"):
        (cg / d).mkdir(parents=True)
    hier = {"cpu": str(cg / "cpu,cpuacct"), "cpuacct": str(cg / "cpu,cpuacct"),
            "memory": str(cg / "memory"), "name=systemd": str(cg / "systemd"),
            "pids": str(cg / "pids"),            # not there: skipped
            cgroups.UNIFIED: str(cg / "unified")}
    monkeypatch.setattr(cgroups, "hierarchies", lambda: hier)
    r, k = make(cgroup_dirs={"memory": str(cg / "memory" / "ctr")})
    r.mount_one({"destination": "/sys/fs/cgroup", "type": "cgroup", "options": CG_OPTS})
    dest = root / "sys/fs/cgroup"
    assert k.calls[0] == ("mount", "tmpfs", str(dest), "tmpfs", CG_FLAGS & ~K.MS_RDONLY,
                          "mode=755")
    binds = [c[1:3] for c in k.calls if c[1] is not None and c[4] == K.MS_BIND | K.MS_REC]
    assert binds == [(str(cg / "cpu,cpuacct"), str(dest / "cpu,cpuacct")),
                     (str(cg / "memory" / "ctr"), str(dest / "memory")),
                     (str(cg / "systemd"), str(dest / "systemd")),
                     (str(cg / "unified"), str(dest / "unified"))]
    remounts = [c for c in k.calls if c[1] is None]
    assert [c[2] for c in remounts] == [str(dest / n) for n in
                                        ("cpu,cpuacct", "memory", "systemd", "unified")] + [
                                            str(dest)]
    for c in remounts:
        assert c[4] & (K.MS_BIND | K.MS_REMOUNT | CG_FLAGS) == K.MS_BIND | K.MS_REMOUNT | CG_FLAGS
    assert os.readlink(dest / "cpu") == "cpu,cpuacct"
    assert os.readlink(dest / "cpuacct") == "cpu,cpuacct"
    assert not (dest / "pids").exists()
    assert sorted(os.listdir(dest)) == ["cpu", "cpu,cpuacct", "cpuacct", "memory", "systemd",
                                        "unified"]


# -- the whole sequence --------------------------------------------------------------------------

def fake_mountinfo(monkeypatch, mountpoints):
    lines = [f"{i} 1 0:{i} / {m} rw - ext4 /dev/x rw\n" for i, m in enumerate(mountpoints, 20)]

    def fake_open(path, *a, **kw):
        assert path == "/proc/self/mountinfo"
        import io
        return io.StringIO("".join(lines))

    monkeypatch.setattr(rootfs, "open", fake_open, raising=False)


@pytest.mark.parametrize("path,parent", [
    ("/var/lib/ctr/rootfs", "/var/lib"),
    ("/var/lib2/ctr", "/var"),          # /var/lib is not a parent of /var/lib2
    ("/var", "/var"),
    ("/srv/x", "/"),
])
def test_parent_mount_made_private(path, parent, monkeypatch):
    fake_mountinfo(monkeypatch, ["/", "/var", "/var/lib", "/var/lib/ctr/rootfs/proc"])
    k = FakeKernel()
    Rootfs({"root": {"path": path}}, k)._make_parent_private(path)
    assert k.calls == [("mount", None, parent, None, K.MS_PRIVATE, None)]


def test_prepare_sequence(make, root, chowns, monkeypatch):
    fake_mountinfo(monkeypatch, ["/", str(root.parent)])
    r, k = make(mounts=[{"destination": "/proc", "type": "proc", "source": "proc"},
                        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                         "options": ["nosuid", "mode=755"]}])
    os.close(r.rootfd)
    r.rootfd = -1
    r.prepare()
    assert r.rootfd >= 0
    rt = str(root)
    assert k.calls[:5] == [
        ("mount", None, "/", None, K.MS_SLAVE | K.MS_REC, None),
        ("mount", None, str(root.parent), None, K.MS_PRIVATE, None),
        ("mount", rt, rt, None, K.MS_BIND | K.MS_REC, None),
        ("mount", "proc", f"{rt}/proc", "proc", 0, None),
        ("mount", "tmpfs", f"{rt}/dev", "tmpfs", K.MS_NOSUID, "mode=755"),
    ]
    assert [c[1] for c in k.calls[5:]] == [f"{rt}/dev/{n}" for n, _, _ in DEFAULTS]
    assert os.readlink(root / "dev" / "ptmx") == "pts/ptmx"


def test_prepare_uses_rootfs_propagation(make, root, chowns, monkeypatch):
    fake_mountinfo(monkeypatch, ["/"])
    r, k = make(linux={"rootfsPropagation": "rshared"})
    r.prepare()
    assert k.calls[0] == ("mount", None, "/", None, K.MS_SHARED | K.MS_REC, None)


def test_prepare_skips_devices_when_dev_is_bound(make, root, tmp_path, chowns, monkeypatch):
    fake_mountinfo(monkeypatch, ["/"])
    hostdev = tmp_path / "hostdev"
    hostdev.mkdir()
    r, k = make(mounts=[{"destination": "/dev/", "source": str(hostdev),
                         "options": ["rbind"]}])
    r.prepare()
    assert not [c for c in k.calls if c[0] == "mknod"]
    assert k.calls[-1] == ("mount", str(hostdev), str(root / "dev"), None,
                           K.MS_BIND | K.MS_REC, None)
    assert os.listdir(root / "dev") == []


def test_pivot(make, root, monkeypatch):
    monkeypatch.chdir(root.parent)          # restored after the test
    r, k = make()
    r.pivot()
    assert k.calls == [("pivot_root", ".", "."),
                       ("mount", None, ".", None, K.MS_SLAVE | K.MS_REC, None),
                       ("umount2", ".", K.MNT_DETACH)]
    # pivot_root(".", ".") from inside the new root; the old root is detached from itself
    assert k.cwds == [str(root), "/", "/"]
    assert os.getcwd() == "/"
    assert r.rootfd == -1


def test_pivot_no_pivot_moves_and_chroots(make, root, monkeypatch):
    monkeypatch.chdir(root.parent)
    r, k = make()
    r.pivot(no_pivot=True)
    assert k.calls == [("mount", str(root), "/", None, K.MS_MOVE, None), ("chroot", ".")]
    assert k.cwds == [str(root), str(root)]


def test_finalize_masked_and_readonly_paths(make, tmp_path):
    # After pivot_root these are container paths; here host temp paths stand in for them.
    ro_dir, ro_missing = tmp_path / "ro", tmp_path / "ro-missing"
    masked_dir, masked_file, masked_missing = tmp_path / "md", tmp_path / "mf", tmp_path / "mm"
    ro_dir.mkdir()
    masked_dir.mkdir()
    masked_file.write_text("secret")
    r, k = make(linux={"readonlyPaths": [str(ro_dir), str(ro_missing)],
                       "maskedPaths": [str(masked_dir), str(masked_file), str(masked_missing)]})
    r.finalize()
    ro = str(ro_dir)
    assert k.calls[0] == ("mount", ro, ro, None, K.MS_BIND | K.MS_REC, None)
    _, src, tgt, fstype, flags, _ = k.calls[1]
    assert (src, tgt, fstype) == (None, ro, None)
    want = K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY | K.MS_REC
    assert flags & want == want
    assert k.calls[2] == ("mount", str(ro_missing), str(ro_missing), None,
                          K.MS_BIND | K.MS_REC, None)       # tried, ENOENT, no remount
    assert k.calls[3:] == [("mount", "tmpfs", str(masked_dir), "tmpfs", K.MS_RDONLY, None),
                           ("mount", "/dev/null", str(masked_file), None, K.MS_BIND, None)]


def test_finalize_readonly_root_and_propagation(make):
    r, k = make(readonly=True, linux={"rootfsPropagation": "rslave"})
    r.finalize()
    assert len(k.calls) == 2
    _, src, tgt, _, flags, _ = k.calls[0]
    assert (src, tgt) == (None, "/")
    want = K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY
    assert flags & want == want and not flags & K.MS_REC
    assert k.calls[1] == ("mount", None, "/", None, K.MS_SLAVE | K.MS_REC, None)


def test_finalize_with_nothing_to_do(make):
    r, k = make(readonly=False)
    r.finalize()
    assert k.calls == []
