"""state: container ids, atomic writes, process start times and the derived status."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest

from bosun.runtime import state
from bosun.runtime.errors import NotFound, RuntimeErr
from bosun.runtime.state import Container, atomic_write, proc_start_time, valid_id


# -- ids -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", ["a", "abc123", "A-b_c+d.e", "...x", "x" * 1024, "0", "-a"])
def test_valid_ids(cid):
    valid_id(cid)


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "/a", "a b", "a\x00b", "a\nb", "é",
                                 "x" * 1025, "a:b", "a*", "ａ"])
def test_invalid_ids(cid):
    with pytest.raises(RuntimeErr, match="invalid container id"):
        valid_id(cid)


# -- atomic_write ----------------------------------------------------------------------------------

def test_atomic_write_creates_with_mode(tmp_path):
    path = tmp_path / "f"
    atomic_write(str(path), b"hello")
    assert path.read_bytes() == b"hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_atomic_write_mode_argument(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(str(tmp_path / "f"), b"x", 0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"a much longer old content")
    atomic_write(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f"]


def test_atomic_write_replaces_a_symlink_instead_of_following_it(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    link = tmp_path / "link"
    link.symlink_to(target)
    atomic_write(str(link), b"new")
    assert not link.is_symlink()
    assert link.read_bytes() == b"new"
    assert target.read_bytes() == b"keep"


def test_atomic_write_readers_never_see_a_new_inode_half_written(tmp_path):
    # the old file's inode is never modified: a reader that opened it keeps the old bytes
    path = tmp_path / "f"
    path.write_bytes(b"old")
    with open(path, "rb") as reader:
        atomic_write(str(path), b"new content")
        assert reader.read() == b"old"
    assert path.read_bytes() == b"new content"


def test_atomic_write_into_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(str(tmp_path / "no" / "f"), b"x")
    assert os.listdir(tmp_path) == []


def test_atomic_write_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atomic_write("rel", b"x")        # dirname "" -> fsync "."
    assert (tmp_path / "rel").read_bytes() == b"x"


# -- proc_start_time ---------------------------------------------------------------------------------

def _stat_state(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2:data.rindex(b")") + 3]


def test_start_time_of_own_pid():
    t = proc_start_time(os.getpid())
    assert isinstance(t, int) and t > 0
    assert proc_start_time(os.getpid()) == t
    # a process started later cannot have started earlier
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE)
    try:
        child = proc_start_time(p.pid)
        assert child is not None and child >= t
    finally:
        p.communicate(b"")


def test_start_time_is_in_clock_ticks_since_boot():
    # independent check: field 22 is in clock ticks since boot, so it is below uptime * ticks
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    assert 0 < proc_start_time(os.getpid()) <= (uptime + 1) * ticks


def test_start_time_with_parentheses_and_spaces_in_the_name():
    # the command name is free text: "1 (a) R (b c) S 0 ..." must still parse
    code = ("import sys; open('/proc/self/comm', 'w').write('a) R (b c');"
            "print('ok', flush=True); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ok\n"
        with open(f"/proc/{p.pid}/stat", "rb") as f:
            assert b"(a) R (b c)" in f.read()
        t = proc_start_time(p.pid)
        assert isinstance(t, int) and t >= proc_start_time(os.getpid())
    finally:
        p.stdin.close()
        p.wait()
        p.stdout.close()


def test_start_time_of_zombie_is_none():
    p = subprocess.Popen(["true"] if shutil.which("true") else [sys.executable, "-c", ""])
    try:
        deadline = time.monotonic() + 5
        while _stat_state(p.pid) != b"Z":          # exited, not yet reaped
            assert time.monotonic() < deadline, "child did not exit"
            time.sleep(0.01)
        assert proc_start_time(p.pid) is None
    finally:
        p.wait()


def test_start_time_of_missing_pid_is_none():
    with open("/proc/sys/kernel/pid_max") as f:
        beyond = int(f.read()) + 1
    assert proc_start_time(beyond) is None
    assert proc_start_time(0) is None


# -- Container --------------------------------------------------------------------------------------

def alive_record(**extra):
    return {"pid": os.getpid(), "pid_start": proc_start_time(os.getpid()),
            "config": {"ociVersion": "1.2.0", "root": {"path": "/r"}},
            "bundle": "/b", "created": "2024-01-01T00:00:00.000000000Z", **extra}


@pytest.fixture
def make(tmp_path):
    def _make(record, cid="c1"):
        c = Container(str(tmp_path), cid, record)
        os.makedirs(c.dir, exist_ok=True)
        return c
    return _make


def test_status_stopped_without_pid(make):
    assert make({"pid": 0}).status() == state.STOPPED
    assert make({}).status() == state.STOPPED


def test_status_stopped_when_pid_was_reused(make):
    rec = alive_record()
    rec["pid_start"] -= 1                    # same pid, another process
    assert make(rec).status() == state.STOPPED


def test_status_stopped_for_a_zombie_init(make):
    p = subprocess.Popen([sys.executable, "-c", ""])
    try:
        start = proc_start_time(p.pid)
        deadline = time.monotonic() + 5
        while _stat_state(p.pid) != b"Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert make({"pid": p.pid, "pid_start": start}).status() == state.STOPPED
    finally:
        p.wait()


def test_status_created_while_fifo_exists(make):
    c = make(alive_record())
    os.mkfifo(c.fifo)
    assert c.status() == state.CREATED
    os.unlink(c.fifo)
    assert c.status() == state.RUNNING


def test_status_paused_v1_freezer(make, tmp_path):
    fr = tmp_path / "freezer"
    fr.mkdir()
    (fr / "freezer.state").write_text("FROZEN\n")
    c = make(alive_record(cgroups={"freezer": str(fr), "memory": str(tmp_path)}))
    assert c.status() == state.PAUSED
    (fr / "freezer.state").write_text("THAWED\n")
    assert c.status() == state.RUNNING


def test_status_paused_v2(make, tmp_path):
    (tmp_path / "cg").mkdir()
    (tmp_path / "cg" / "cgroup.freeze").write_text("1\n")
    c = make(alive_record(cgroups={"unified": str(tmp_path / "cg")}))
    assert c.status() == state.PAUSED


def test_oci_state(make):
    c = make(alive_record())
    c.config["annotations"] = {"a": "b"}
    s = c.oci_state()
    assert s == {"ociVersion": "1.2.0", "id": "c1", "status": "running", "pid": os.getpid(),
                 "bundle": "/b", "rootfs": "/r", "created": "2024-01-01T00:00:00.000000000Z",
                 "owner": "", "annotations": {"a": "b"}}


def test_oci_state_of_stopped_container_has_pid_zero(make):
    rec = alive_record(pid=os.getpid(), pid_start=-1)
    s = make(rec).oci_state()
    assert s["status"] == "stopped" and s["pid"] == 0
    assert "annotations" not in s


def test_save_and_load(tmp_path, make):
    c = make(alive_record())
    c.save()
    assert stat.S_IMODE(os.stat(os.path.join(c.dir, "state.json")).st_mode) == 0o600
    back = Container.load(str(tmp_path), "c1")
    assert back.record == c.record and back.id == "c1" and back.pid == os.getpid()


def test_load_missing(tmp_path):
    with pytest.raises(NotFound, match="container 'nope' does not exist"):
        Container.load(str(tmp_path), "nope")


def test_load_corrupt(tmp_path, make):
    c = make({})
    with open(os.path.join(c.dir, "state.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(RuntimeErr, match="corrupt"):
        Container.load(str(tmp_path), "c1")


@pytest.mark.parametrize("cid", ["../c1", "..", "a/b"])
def test_load_refuses_bad_ids(tmp_path, cid):
    (tmp_path / "x").mkdir()
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "state.json").write_text(json.dumps({"pid": 0}))
    with pytest.raises(RuntimeErr, match="invalid container id"):
        Container.load(str(tmp_path / "x"), cid)


def test_ids(tmp_path):
    for cid in ("b", "a", "c"):
        (tmp_path / cid).mkdir()
    (tmp_path / "a" / "state.json").write_text("{}")
    (tmp_path / "b" / "state.json").write_text("{}")
    (tmp_path / "stray.json").write_text("{}")
    assert Container.ids(str(tmp_path)) == ["a", "b"]
    assert Container.ids(str(tmp_path / "missing")) == []


def test_now_rfc3339():
    s = state.now_rfc3339()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", s)
    parsed = time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")
    assert abs(time.mktime(parsed) - time.mktime(time.gmtime())) < 5   # UTC, not local
