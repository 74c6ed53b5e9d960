"""The OCI lifecycle through the runc-compatible CLI: create, start, state, kill, delete."""

import json
import time

import pytest




def test_run_foreground_prints_and_returns_status(rt, bundles, cid):
    b = bundles.make(["sh", "-c", "echo hello from $(hostname); exit 7"])
    p = rt("run", "--bundle", b, cid, check=False)
    assert p.stdout == "hello from bosun\n"
    assert p.returncode == 7
    assert rt("list", "-q").stdout == ""


def test_create_start_state_delete(rt, bundles, tmp_path, cid):
    b = bundles.make(["sleep", "1000"])
    pidfile = tmp_path / "pid"
    rt("create", "--bundle", b, "--pid-file", pidfile, cid)
    st = rt.state(cid)
    assert st["status"] == "created"
    assert st["pid"] == int(pidfile.read_text())
    assert st["id"] == cid and st["bundle"] == str(b)
    rt("start", cid)
    assert rt.state(cid)["status"] == "running"
    # running containers can't be started again or deleted without --force
    assert rt("start", cid, check=False).returncode != 0
    p = rt("delete", cid, check=False)
    assert p.returncode != 0 and "force" in p.stderr
    rt("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    rt("delete", cid)
    assert rt("state", cid, check=False).returncode != 0


def test_list_formats(rt, bundles, cid):
    b = bundles.make(["sleep", "1000"])
    rt("create", "--bundle", b, cid)
    assert rt("list", "-q").stdout.split() == [cid]
    rows = json.loads(rt("list", "--format", "json").stdout)
    assert [r["id"] for r in rows] == [cid] and rows[0]["status"] == "created"
    table = rt("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"] and cid in table[1]
    rt("delete", cid)  # a created container may be deleted without --force


def _start_foreground(rt, bundles, script, cid):
    import subprocess

    b = bundles.make(["sh", "-c", script])
    p = subprocess.Popen(rt.cmd("run", "--bundle", b, cid))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = rt("state", cid, check=False)
        if r.returncode == 0 and json.loads(r.stdout)["status"] == "running":
            return p
        time.sleep(0.02)
    p.kill()
    raise AssertionError("container never ran")


@pytest.mark.parametrize("sig", ["KILL", "SIGKILL", "9"])
def test_run_killed_by_signal_exits_128_plus_n(rt, bundles, sig, cid):
    p = _start_foreground(rt, bundles, "sleep 1000", cid)
    rt("kill", cid, sig)
    assert p.wait(10) == 128 + 9


def test_run_forwards_signals_to_the_container(rt, bundles, cid):
    import signal

    p = _start_foreground(rt, bundles,
                          "trap 'echo got; exit 42' USR1; while :; do sleep 0.05; done", cid)
    time.sleep(0.3)  # let sh install its trap
    p.send_signal(signal.SIGUSR1)
    assert p.wait(10) == 42


def test_delete_force_removes_a_torn_record(rt, cid):
    """A create killed mid-write can leave an unreadable record: --force still cleans it."""
    d = rt.root / cid
    d.mkdir(parents=True)
    (d / "state.json").write_text("{not json")
    assert rt("state", cid, check=False).returncode == 1
    assert rt("delete", cid, check=False).returncode == 1
    rt("delete", "--force", cid)
    assert not d.exists()
    # an id that is a path is refused before any path is built from it
    p = rt("delete", "--force", "../x", check=False)
    assert p.returncode == 1 and "invalid container id" in p.stderr
