"""engine.containers.archive (docker cp, docker export) on a directory standing in for a
container's rootfs: the path stat in Docker's shape (Go FileMode bits), resolution inside the
rootfs and its bind mounts, the tars we write and the hostile tars we unpack."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from bosun.engine.container import Container
from bosun.engine.containers import archive as A
from bosun.engine.errors import InvalidParameter, NotFound


# -- a container on a plain directory ----------------------------------------------------------

class FakeSnapshots:
    def __init__(self, rootfs: str) -> None:
        self.rootfs = rootfs
        self.calls: list[str] = []

    def mount_container(self, cid, chain):
        self.calls.append("mount")
        return self.rootfs

    def unmount_container(self, cid):
        self.calls.append("unmount")


class FakeEngine:
    def __init__(self, rootfs: str) -> None:
        self.images = type("Images", (), {})()
        self.images.snapshots = FakeSnapshots(rootfs)
        self.events: list[str] = []

    def emit(self, c, action, **attrs):
        self.events.append(action)


@pytest.fixture
def box(tmp_path):
    """(engine, container, rootfs, host dir): a stopped container with a bind mount at /data
    and an /etc/hostname file mount; `host` holds things outside the rootfs."""
    rootfs, host = tmp_path / "rootfs", tmp_path / "host"
    for d in ("etc", "bin", "tmp", "srv/sub"):
        (rootfs / d).mkdir(parents=True)
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                       "bob:x:4321:4322::/:/bin/sh\n")
    (rootfs / "etc/group").write_text("root:x:0:\n")
    (rootfs / "srv/sub/file").write_text("deep")
    (rootfs / "to-etc").symlink_to("/etc")
    (rootfs / "srv/up").symlink_to("../../../../../../etc/passwd")
    (rootfs / "loop").symlink_to("loop")
    (host / "bind").mkdir(parents=True)
    (host / "bind/inbind").write_text("bound")
    (host / "hostname").write_text("box\n")
    (host / "victim").mkdir()
    (rootfs / "to-host").symlink_to(str(host / "victim"))
    doc = {"Id": "c" * 64, "Name": "/box", "Config": {"User": ""},
           "State": {"Status": "exited", "Running": False},
           "HostConfig": {"ReadonlyRootfs": False},
           "Mounts": [{"Type": "bind", "Source": str(host / "bind"), "Destination": "/data",
                       "RW": True}],
           "HostnamePath": str(host / "hostname")}
    c = Container(doc, {"rootfs": str(rootfs), "chain": []})
    return FakeEngine(str(rootfs)), c, rootfs, host


def tar_of(*entries) -> bytes:
    """entries: (name, bytes) files, (name, None) directories, (name, "->target") symlinks,
    or TarInfo objects (with no data)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tf.addfile(e)
                continue
            name, data = e
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif isinstance(data, str):
                ti.type, ti.linkname = tarfile.SYMTYPE, data[2:]
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}


def read_member(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.extractfile(name).read()


# -- pure helpers ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, expected", [
    (stat.S_IFREG | 0o644, 0o644),
    (stat.S_IFDIR | 0o755, (1 << 31) | 0o755),
    (stat.S_IFLNK | 0o777, (1 << 27) | 0o777),
    (stat.S_IFREG | 0o4755, (1 << 23) | 0o755),
    (stat.S_IFREG | 0o2755, (1 << 22) | 0o755),
    (stat.S_IFDIR | 0o1777, (1 << 31) | (1 << 20) | 0o777),
    (stat.S_IFCHR | 0o666, (1 << 26) | (1 << 21) | 0o666),
    (stat.S_IFBLK | 0o660, (1 << 26) | 0o660),
    (stat.S_IFIFO | 0o600, (1 << 25) | 0o600),
    (stat.S_IFSOCK | 0o755, (1 << 24) | 0o755),
])
def test_go_file_mode(mode, expected):
    assert A.go_file_mode(mode) == expected


def test_go_time_trims_the_fraction_like_rfc3339nano():
    assert A.go_time(1_700_000_000_123_000_000) == "2023-11-14T22:13:20.123Z"
    assert A.go_time(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"
    assert A.go_time(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize("path, abs_path, base, follow", [
    ("/etc/passwd", "/etc/passwd", "passwd", False),
    ("etc", "/etc", "etc", False),
    ("/etc/", "/etc/", "etc", True),
    ("/etc/.", "/etc/.", ".", True),
    ("/a/../etc//x", "/etc/x", "x", False),
    ("/", "/", "/", True),
    (".", "/.", ".", True),
    ("../../..", "/", "/", True),
])
def test_docker_abs_path(path, abs_path, base, follow):
    got = A.docker_abs_path(path)
    assert (got, A.go_base(got), A.follows_last(got)) == (abs_path, base, follow)


def test_a_path_with_a_nul_byte_is_invalid():
    with pytest.raises(InvalidParameter, match="NUL"):
        A.docker_abs_path("/etc\0/passwd")


def test_container_mounts_from_inspect_and_etc_files():
    doc = {"Mounts": [{"Type": "bind", "Source": "/h/a", "Destination": "/a", "RW": False},
                      {"Type": "volume", "Name": "v", "Source": "", "Destination": "/v"},
                      {"Type": "bind", "Source": "/h/hosts", "Destination": "/etc/hosts"}],
           "HostnamePath": "/c/hostname", "HostsPath": "/c/hosts", "ResolvConfPath": "",
           "HostConfig": {"ReadonlyRootfs": True}}
    got = {m.dest: m for m in A.container_mounts(doc)}
    assert set(got) == {("a",), ("etc", "hosts"), ("etc", "hostname")}
    assert got[("a",)].rw is False and got[("a",)].volume
    assert got[("etc", "hosts")].source == "/h/hosts"  # the user's mount wins over ours
    assert not got[("etc", "hostname")].volume and not got[("etc", "hostname")].rw


# -- resolution --------------------------------------------------------------------------------

def test_resolution_stays_inside_the_rootfs(box):
    _, c, rootfs, _ = box
    with A.ContainerFS(str(rootfs), A.container_mounts(c.doc)) as fs:
        assert fs.resolve("/to-etc/passwd", True) == ["etc", "passwd"]
        assert fs.resolve("/srv/up", True) == ["etc", "passwd"]  # ../ clamped at "/"
        assert fs.resolve("/srv/up", False) == ["srv", "up"]
        # an absolute link to a host path means that path inside the container
        with pytest.raises(FileNotFoundError):
            fs.resolve("/to-host/x", True)
        with pytest.raises(OSError) as e:
            fs.resolve("/loop/x", True)
        assert e.value.errno == 40  # ELOOP
        with pytest.raises(NotADirectoryError):
            fs.resolve("/etc/passwd/x", True)
        assert fs.resolve("/nope/x", True, lenient=True) == ["nope", "x"]


def test_resolution_crosses_into_bind_mounts(box):
    _, c, rootfs, host = box
    (rootfs / "tmp/link").symlink_to("/data/inbind")
    with A.ContainerFS(str(rootfs), A.container_mounts(c.doc)) as fs:
        parts = fs.resolve("/tmp/link", True)
        assert parts == ["data", "inbind"]
        fd, name = fs.handle(parts)
        try:
            assert os.stat(name, dir_fd=fd).st_ino == os.stat(host / "bind/inbind").st_ino
        finally:
            os.close(fd)
        assert fs.lstat(["etc", "hostname"]).st_ino == os.stat(host / "hostname").st_ino


# -- stat --------------------------------------------------------------------------------------

def test_stat_path_shape(box):
    engine, c, rootfs, _ = box
    s = A.stat_path(engine, c, "/etc/passwd")
    assert list(s) == ["name", "size", "mode", "mtime", "linkTarget"]
    assert s["name"] == "passwd" and s["mode"] == 0o644 and s["linkTarget"] == ""
    assert s["size"] == (rootfs / "etc/passwd").stat().st_size
    link = A.stat_path(engine, c, "/srv/up")
    assert link["mode"] & (1 << 27) and link["linkTarget"] == "/etc/passwd"
    assert A.stat_path(engine, c, "/to-etc/")["mode"] & (1 << 31)  # followed: the directory
    assert A.stat_path(engine, c, "/data")["mode"] == (1 << 31) | (
        os.stat(box[3] / "bind").st_mode & 0o777)  # the bind's source
    assert A.stat_path(engine, c, "/etc/hostname")["size"] == 4  # the engine's file


def test_stat_of_a_missing_path_is_dockers_404(box):
    engine, c, _, _ = box
    with pytest.raises(NotFound, match=r"^Could not find the file /nope/x in container box$"):
        A.stat_path(engine, c, "/nope/x")
    with pytest.raises(NotFound, match="in container myref$"):
        A.stat_path(engine, c, "/nope", ref="myref")


@pytest.mark.parametrize("path", ["/etc/passwd/", "/etc/passwd/.", "/etc/passwd/x"])
def test_a_file_used_as_a_directory_is_not_a_404(box, path):
    # a 404 would make the docker CLI take the path for a new name and write over the file
    engine, c, _, _ = box
    with pytest.raises(InvalidParameter, match="not a directory$"):
        A.stat_path(engine, c, path)


def test_a_stopped_container_is_mounted_for_the_request_only(box):
    engine, c, _, _ = box
    _, it = A.get_archive(engine, c, "/etc")
    assert engine.images.snapshots.calls == ["mount"]  # held while the tar is read
    b"".join(it)
    assert engine.images.snapshots.calls == ["mount", "unmount"]
    c.state.update(Status="running", Running=True)
    A.stat_path(engine, c, "/etc")
    assert engine.images.snapshots.calls[-1] == "mount"  # a running container keeps it


def test_a_closed_archive_stream_releases_the_mount(box):
    engine, c, _, _ = box
    _, it = A.get_archive(engine, c, "/")
    next(it)
    it.close()
    assert engine.images.snapshots.calls == ["mount", "unmount"]


# -- docker cp out -----------------------------------------------------------------------------

def test_archive_of_a_directory_is_rooted_at_its_name(box):
    engine, c, _, _ = box
    st, it = A.get_archive(engine, c, "/srv")
    data = b"".join(it)
    assert st["name"] == "srv"
    m = members(data)
    assert sorted(m) == ["srv", "srv/sub", "srv/sub/file", "srv/up"]
    assert m["srv/up"].issym() and m["srv/up"].linkname == "../../../../../../etc/passwd"
    assert read_member(data, "srv/sub/file") == b"deep"
    assert data.endswith(b"\0" * 1024) and len(data) % 512 == 0
    assert engine.events == ["archive-path"]


def test_archive_of_dir_dot_and_of_a_symlink(box):
    engine, c, _, _ = box
    _, it = A.get_archive(engine, c, "/srv/.")
    assert sorted(members(b"".join(it))) == [".", "./sub", "./sub/file", "./up"]
    st, it = A.get_archive(engine, c, "/to-etc")
    m = members(b"".join(it))
    assert list(m) == ["to-etc"] and m["to-etc"].issym() and st["linkTarget"] == "/etc"


def test_archive_enters_bind_mounts_and_file_mounts(box):
    engine, c, _, _ = box
    _, it = A.get_archive(engine, c, "/")
    data = b"".join(it)
    m = members(data)
    assert "./data/inbind" in m and read_member(data, "./data/inbind") == b"bound"
    assert read_member(data, "./etc/hostname") == b"box\n"
    assert not any(n.startswith("./to-host/") for n in m)  # the link is not followed


def test_archive_keeps_hard_links_and_owner(box):
    engine, c, rootfs, _ = box
    (rootfs / "srv/sub/again").hardlink_to(rootfs / "srv/sub/file")
    _, it = A.get_archive(engine, c, "/srv/sub")
    m = members(b"".join(it))
    # sorted order: "again" comes first, "file" becomes the link to it
    assert m["sub/file"].islnk() and m["sub/file"].linkname == "sub/again"
    assert m["sub/again"].isreg() and m["sub/again"].size == 4
    st = (rootfs / "srv/sub/again").stat()
    assert (m["sub/again"].uid, m["sub/again"].mode) == (st.st_uid, st.st_mode & 0o7777)


def test_export_is_the_rootfs_without_mounts(box):
    engine, c, _, _ = box
    data = b"".join(A.export(engine, c))
    names = set(members(data))
    assert {"etc", "etc/passwd", "srv/sub/file", "to-etc"} <= names
    assert not any(n.startswith(("data", "./")) or n == "etc/hostname" for n in names)
    assert engine.events == ["export"]


# -- docker cp in ------------------------------------------------------------------------------

def test_put_into_a_directory_through_a_symlink(box):
    engine, c, rootfs, _ = box
    A.put_archive(engine, c, "/to-etc", [tar_of(("hello", b"hi"), ("d", None),
                                                ("d/f", b"x"))])
    assert (rootfs / "etc/hello").read_bytes() == b"hi"
    assert (rootfs / "etc/d/f").read_bytes() == b"x"
    assert engine.events == ["extract-to-dir"]


def test_put_through_a_link_to_a_host_path_stays_in_the_rootfs(box):
    engine, c, rootfs, host = box
    # /to-host -> <host>/victim, an absolute link: that path inside the container
    with pytest.raises(NotFound):
        A.put_archive(engine, c, "/to-host", [tar_of(("x", b"x"))])
    inside = rootfs / str(host / "victim").lstrip("/")
    inside.mkdir(parents=True)
    A.put_archive(engine, c, "/to-host", [tar_of(("x", b"x"))])
    assert (inside / "x").read_bytes() == b"x"
    assert list((host / "victim").iterdir()) == []


def test_hostile_tar_entries_stay_inside_the_destination(box):
    engine, c, rootfs, host = box
    outside = host / "victim"
    A.put_archive(engine, c, "/tmp", [tar_of(("esc", f"->{outside}"), ("esc/pwned", b"x"),
                                             ("up", "->../../.."), ("up/pwned2", b"y"))])
    assert list(outside.iterdir()) == []
    assert not (rootfs / "pwned2").exists()  # the link resolves inside /tmp (Docker chroots)
    assert (rootfs / "tmp/pwned2").read_bytes() == b"y"
    with pytest.raises(InvalidParameter, match="escapes"):
        A.put_archive(engine, c, "/tmp", [tar_of(("../../evil", b"x"))])
    assert not (rootfs / "evil").exists() and not (host.parent / "evil").exists()


def test_put_into_a_bind_mount_writes_the_source(box):
    engine, c, _, host = box
    A.put_archive(engine, c, "/data", [tar_of(("new", b"n"))])
    assert (host / "bind/new").read_bytes() == b"n"


def test_whiteout_names_are_plain_files_for_cp(box):
    engine, c, rootfs, _ = box
    A.put_archive(engine, c, "/etc", [tar_of((".wh.passwd", b"w"))])
    assert (rootfs / "etc/passwd").exists() and (rootfs / "etc/.wh.passwd").read_bytes() == b"w"


def test_no_overwrite_dir_non_dir(box):
    engine, c, rootfs, _ = box
    with pytest.raises(InvalidParameter, match='cannot overwrite directory "/srv/sub" with '
                                               'non-directory "/srv"'):
        A.put_archive(engine, c, "/srv", [tar_of(("sub", b"x"))],
                      no_overwrite_dir_non_dir=True)
    assert (rootfs / "srv/sub").is_dir()
    with pytest.raises(InvalidParameter, match="cannot overwrite non-directory"):
        A.put_archive(engine, c, "/etc", [tar_of(("passwd", None))],
                      no_overwrite_dir_non_dir=True)
    A.put_archive(engine, c, "/srv", [tar_of(("sub", b"x"))])  # allowed without the flag
    assert (rootfs / "srv/sub").read_bytes() == b"x"


@pytest.mark.parametrize("where, body, message", [
    ("/etc/passwd", None, "extraction point is not a directory"),
    ("/etc", {"ReadonlyRootfs": True}, "container rootfs is marked read-only"),
])
def test_put_refusals(box, where, body, message):
    engine, c, _, _ = box
    if body:
        c.doc["HostConfig"].update(body)
    with pytest.raises(InvalidParameter, match=message):
        A.put_archive(engine, c, where, [tar_of(("x", b"x"))])


def test_put_into_read_only_bind_and_missing_dir(box):
    engine, c, _, host = box
    c.doc["Mounts"][0]["RW"] = False
    with pytest.raises(InvalidParameter, match="^mounted volume is marked read-only$"):
        A.put_archive(engine, c, "/data", [tar_of(("x", b"x"))])
    c.doc["Mounts"][0]["RW"] = True
    c.doc["HostConfig"]["ReadonlyRootfs"] = True  # a writable bind on a read-only rootfs
    A.put_archive(engine, c, "/data", [tar_of(("ok", b"x"))])
    assert (host / "bind/ok").exists()
    with pytest.raises(NotFound, match="^Could not find the file /no/such in container box$"):
        A.put_archive(engine, c, "/no/such", [tar_of(("x", b"x"))])


def test_put_accepts_compressed_streams_in_pieces(box):
    import gzip

    engine, c, rootfs, _ = box
    data = gzip.compress(tar_of(("z", b"zipped")))
    A.put_archive(engine, c, "/tmp", [data[i:i + 7] for i in range(0, len(data), 7)])
    assert (rootfs / "tmp/z").read_bytes() == b"zipped"
    with pytest.raises(InvalidParameter):
        A.put_archive(engine, c, "/tmp", [b"\x1f\x8b" + b"garbage" * 100])


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_copy_uid_gid_uses_the_containers_user(box):
    engine, c, rootfs, _ = box
    ti = tarfile.TarInfo("owned")
    ti.uid = ti.gid = 0
    A.put_archive(engine, c, "/tmp", [tar_of(ti)])
    assert (rootfs / "tmp/owned").stat().st_uid == 0  # the tar's owner by default
    c.doc["Config"]["User"] = "bob"
    A.put_archive(engine, c, "/tmp", [tar_of(ti)], copy_uid_gid=True)
    st = (rootfs / "tmp/owned").stat()
    assert (st.st_uid, st.st_gid) == (4321, 4322)  # from the container's /etc/passwd
