"""Resource limits on a real kernel, checked the way a user notices them: the OOM killer, a
fork that fails, a throttled busy loop, a pinned CPU, a device that can't be opened, frozen
processes; plus update, events, and cleanup of cgroups (sub-cgroups too) after delete and
after the runtime itself is SIGKILLed between steps.

This host is cgroup v1 (one hierarchy per controller under /sys/fs/cgroup/<controller>);
a container's cgroup is /<id> in each. Inside, /sys/fs/cgroup/<controller> is the
container's own cgroup directory.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

CG = Path("/sys/fs/cgroup")
M = 1 << 20


def cg(ctrl, cid) -> Path:
    return CG / ctrl / cid


def cg_dirs(cid) -> list[str]:
    return sorted(glob.glob(f"{CG}/*/{cid}"))


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def make(bundles, script, resources=None, edit=None):
    def ed(c):
        if resources:
            c["linux"]["resources"].update(resources)
        if edit:
            edit(c)
    return bundles.make(["sh", "-c", script], edit=ed)


def run_d(rt, b, cid) -> int:
    rt("run", "-d", "--bundle", b, cid)
    return rt.state(cid)["pid"]


def stats(rt, cid) -> dict:
    lines = rt("events", "--stats", cid).stdout.splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def record(rt, cid) -> dict:
    return json.loads((rt.root / cid / "state.json").read_text())


def assert_gone(rt, cid, pids=()):
    assert cg_dirs(cid) == []
    assert not (rt.root / cid).exists()
    for pid in pids:
        wait_for(lambda: not alive(pid), 5, f"pid {pid} to die")


def scrub(rt, cid):
    """Remove what a broken container left behind (state dir, cgroups, processes), so the
    `rt` fixture's leak check reports the test's own verdict, not this leftover."""
    for d in sorted(cg_dirs(cid) + glob.glob(f"{CG}/*/{cid}/**/", recursive=True),
                    key=len, reverse=True):
        procs = Path(d, "cgroup.procs")
        if procs.exists():
            for pid in procs.read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    for d in sorted(glob.glob(f"{CG}/*/{cid}/**/", recursive=True) + cg_dirs(cid),
                    key=len, reverse=True):
        for _ in range(100):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
    shutil.rmtree(rt.root / cid, ignore_errors=True)


# -- memory ------------------------------------------------------------------------------------

def test_memory_limit_oom_kills_the_hog(rt, bundles, cid):
    b = make(bundles, "tail /dev/zero; echo status=$?",
             {"memory": {"limit": 32 * M, "swap": 32 * M}})
    p = rt("run", "--bundle", b, cid, check=False, timeout=30)
    assert "status=137" in p.stdout  # SIGKILLed by the OOM killer; the shell lives on
    assert p.returncode == 0


def test_oom_is_reported_by_events_and_the_cgroup(rt, bundles, cid, tmp_path):
    b = make(bundles, "while [ ! -e /go ]; do sleep 0.02; done; "
                      "tail /dev/zero; echo $? > /status; sleep 1000",
             {"memory": {"limit": 32 * M, "swap": 32 * M}})
    run_d(rt, b, cid)
    out = open(tmp_path / "events.out", "w+")
    ev = subprocess.Popen(rt.cmd("events", "--interval", "100ms", cid), stdout=out,
                          stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (tmp_path / "events.out").read_text(), 5, "the first stats line")
        (b / "rootfs" / "go").touch()
        status = wait_for(lambda: (b / "rootfs" / "status").exists()
                          and (b / "rootfs" / "status").read_text().strip(), 20, "the hog")
        assert status == "137"
        oom = dict(line.split() for line in
                   (cg("memory", cid) / "memory.oom_control").read_text().splitlines())
        assert int(oom["oom_kill"]) >= 1
        mem = stats(rt, cid)["data"]["memory"]
        assert mem["usage"]["limit"] == 32 * M and mem["swap"]["limit"] == 32 * M
        assert 30 * M < mem["usage"]["max"] <= 32 * M  # it hit the limit, never passed it
        wait_for(lambda: '"type": "oom"' in (tmp_path / "events.out").read_text(), 5,
                 "an oom event")
        rt("delete", "--force", cid)
        ev.wait(10)  # the stream ends with the container
    finally:
        if ev.poll() is None:
            ev.kill()
            ev.wait()
    lines = [json.loads(x) for x in (tmp_path / "events.out").read_text().splitlines()]
    assert {"type": "oom", "id": cid} in lines
    assert all(x["type"] in ("stats", "oom") and x["id"] == cid for x in lines)


# -- pids, cpu, cpuset, devices ---------------------------------------------------------------

def test_pids_limit_makes_fork_fail(rt, bundles, cid):
    b = make(bundles, "for i in $(seq 30); do sleep 1 & done; wait; echo forked-all",
             {"pids": {"limit": 10}})
    p = rt("run", "--bundle", b, cid, check=False, timeout=30)
    assert "can't fork" in p.stderr
    assert "forked-all" not in p.stdout


def test_pids_limit_is_visible_inside(rt, bundles, cid):
    b = make(bundles, "cat /sys/fs/cgroup/pids/pids.max", {"pids": {"limit": 17}})
    assert rt("run", "--bundle", b, cid).stdout == "17\n"


def test_cpu_quota_throttles_a_busy_loop(rt, bundles, cid):
    b = make(bundles, "while :; do :; done",
             {"cpu": {"quota": 10000, "period": 100000}})
    t0 = time.monotonic()
    run_d(rt, b, cid)
    assert (cg("cpu", cid) / "cpu.cfs_quota_us").read_text() == "10000\n"

    def throttled():
        st = dict(line.split() for line in (cg("cpu", cid) / "cpu.stat").read_text()
                  .splitlines())
        return int(st["nr_throttled"]) >= 3
    wait_for(throttled, 10, "the loop to be throttled")
    data = stats(rt, cid)["data"]
    wall = time.monotonic() - t0
    assert data["cpu"]["throttling"]["throttledPeriods"] >= 3
    assert data["cpu"]["throttling"]["throttledTime"] > 0
    # 10% of one CPU (plus a period of slack), though the loop would take 100%
    assert 0 < data["cpu"]["usage"]["total"] < (0.1 * wall + 0.15) * 1e9


def test_cpuset_pins_the_container(rt, bundles, cid):
    b = make(bundles, "grep Cpus_allowed_list /proc/self/status; nproc",
             {"cpu": {"cpus": "0"}})
    out = rt("run", "--bundle", b, cid).stdout.split()
    assert out == ["Cpus_allowed_list:", "0", "1"]


TUN = {"path": "/dev/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o666}
DEV_CHECK = ("cat /dev/tun; head -c 4 /dev/urandom | wc -c; echo hi > /dev/null && "
             "echo null-ok; head -c 3 /dev/zero | wc -c")


def test_devices_deny_all_keeps_the_default_devices(rt, bundles, cid):
    # the default config denies everything, then allows runc's defaults: a device node
    # that is not among them can be created (linux.devices) but not opened
    b = make(bundles, DEV_CHECK, edit=lambda c: c["linux"].setdefault("devices", [TUN]))
    p = rt("run", "--bundle", b, cid, check=False)
    assert "can't open '/dev/tun': Operation not permitted" in p.stderr
    assert p.stdout.split() == ["4", "null-ok", "3"]


def test_devices_allow_rule_opens_a_device(rt, bundles, cid):
    def ed(c):
        c["linux"]["devices"] = [TUN]
        c["linux"]["resources"]["devices"].append(
            {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rw"})
    b = make(bundles, DEV_CHECK, edit=ed)
    p = rt("run", "--bundle", b, cid, check=False)
    # opened: reading a tun fd never attached to an interface fails in the driver (EBADFD;
    # ENODEV without a tun driver), not in the devices cgroup (EPERM)
    assert ("File descriptor in bad state" in p.stderr or "No such device" in p.stderr), \
        p.stderr
    assert "Operation not permitted" not in p.stderr
    assert p.stdout.split() == ["4", "null-ok", "3"]


def test_devices_explicit_deny(rt, bundles, cid):
    # without a deny-all rule no defaults are added, so a deny of /dev/urandom holds
    # (runc always re-allows its default devices after the user's rules)
    b = make(bundles, "head -c 4 /dev/urandom | wc -c; head -c 3 /dev/zero | wc -c",
             {"devices": [{"allow": False, "type": "c", "major": 1, "minor": 9,
                           "access": "rwm"}]})
    p = rt("run", "--bundle", b, cid, check=False)
    assert "/dev/urandom: Operation not permitted" in p.stderr
    assert p.stdout.split() == ["0", "3"]


# -- pause / resume ------------------------------------------------------------------------------

def test_pause_freezes_and_resume_thaws(rt, bundles, cid):
    b = make(bundles, "i=0; while :; do i=$((i+1)); echo $i > /tick; sleep 0.01; done")
    tick = b / "rootfs" / "tick"
    pid = run_d(rt, b, cid)
    wait_for(lambda: tick.exists() and tick.read_text().strip(), 5, "ticks")
    rt("pause", cid)
    assert rt.state(cid)["status"] == "paused"
    assert (cg("freezer", cid) / "freezer.state").read_text().strip() == "FROZEN"
    with open(f"/proc/{pid}/status") as f:
        assert "State:\tD" in f.read()  # frozen tasks show as uninterruptible sleep
    before = tick.read_text()
    time.sleep(0.3)
    assert tick.read_text() == before
    p = rt("pause", cid, check=False)
    assert p.returncode != 0 and "paused" in p.stderr
    rt("resume", cid)
    assert rt.state(cid)["status"] == "running"
    assert (cg("freezer", cid) / "freezer.state").read_text().strip() == "THAWED"
    wait_for(lambda: tick.read_text() != before, 5, "ticks after resume")
    p = rt("resume", cid, check=False)
    assert p.returncode != 0 and "running" in p.stderr


def test_delete_force_of_a_paused_container(rt, bundles, cid):
    b = make(bundles, "sleep 1000 & sleep 1000")  # sh execs the second sleep
    pid = run_d(rt, b, cid)
    procs = [int(x) for x in (cg("pids", cid) / "cgroup.procs").read_text().split()]
    assert len(procs) == 2
    rt("pause", cid)
    assert rt.state(cid)["status"] == "paused"
    rt("delete", "--force", cid)
    assert_gone(rt, cid, procs + [pid])


# -- update ------------------------------------------------------------------------------------

def inside(rt, cid, path) -> str:
    return rt("exec", cid, "cat", path).stdout.strip()


def test_update_changes_limits_seen_inside_and_recorded(rt, bundles, cid, tmp_path):
    b = make(bundles, "sleep 1000", {"memory": {"limit": 32 * M, "swap": 32 * M},
                                     "pids": {"limit": 20},
                                     "cpu": {"quota": 10000, "period": 100000}})
    run_d(rt, b, cid)
    rt("update", "--pids-limit", "42", cid)
    assert inside(rt, cid, "/sys/fs/cgroup/pids/pids.max") == "42"
    # growing memory+swap: memsw must be raised before the limit
    rt("update", "--memory", "64m", "--memory-swap", "64m", cid)
    assert inside(rt, cid, "/sys/fs/cgroup/memory/memory.limit_in_bytes") == str(64 * M)
    assert inside(rt, cid, "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") == str(64 * M)
    # shrinking: the limit first
    rt("update", "--memory", "48m", "--memory-swap", "48m", cid)
    assert inside(rt, cid, "/sys/fs/cgroup/memory/memory.limit_in_bytes") == str(48 * M)
    assert inside(rt, cid, "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") == str(48 * M)
    rt("update", "--cpu-quota", "20000", cid)
    assert inside(rt, cid, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us") == "20000"
    assert inside(rt, cid, "/sys/fs/cgroup/cpu/cpu.cfs_period_us") == "100000"
    # runc's -r -: a resources object on stdin, merged into what earlier updates recorded
    (tmp_path / "r.json").write_text(json.dumps({"pids": {"limit": 7},
                                                 "cpu": {"shares": 512}}))
    with open(tmp_path / "r.json") as f:
        rt("update", "-r", "-", cid, stdin=f)
    assert inside(rt, cid, "/sys/fs/cgroup/pids/pids.max") == "7"
    assert inside(rt, cid, "/sys/fs/cgroup/cpu/cpu.shares") == "512"
    res = record(rt, cid)["config"]["linux"]["resources"]
    assert res["memory"] == {"limit": 48 * M, "swap": 48 * M}
    assert res["pids"] == {"limit": 7}
    assert res["cpu"] == {"quota": 20000, "period": 100000, "shares": 512}
    assert res["devices"] == [{"allow": False, "access": "rwm"}]  # untouched
    assert stats(rt, cid)["data"]["pids"]["limit"] == 7


def test_update_refused_by_the_kernel_changes_nothing(rt, bundles, cid):
    b = make(bundles, "sleep 1000", {"memory": {"limit": 32 * M, "swap": 32 * M}})
    run_d(rt, b, cid)
    # a memory limit above the memory+swap limit: the kernel says EINVAL
    p = rt("update", "--memory", "128m", cid, check=False)
    assert p.returncode == 1 and "Invalid argument" in p.stderr
    assert "Traceback" not in p.stderr
    assert inside(rt, cid, "/sys/fs/cgroup/memory/memory.limit_in_bytes") == str(32 * M)
    assert record(rt, cid)["config"]["linux"]["resources"]["memory"]["limit"] == 32 * M
    p = rt("update", "--memory", "lots", cid, check=False)
    assert p.returncode == 1 and "invalid size" in p.stderr


def test_update_of_a_stopped_container_fails(rt, bundles, cid):
    b = make(bundles, "true")
    pid = run_d(rt, b, cid)
    wait_for(lambda: rt.state(cid)["status"] == "stopped", 5, "the container to exit")
    assert not alive(pid)
    p = rt("update", "--pids-limit", "5", cid, check=False)
    assert p.returncode != 0 and "not running" in p.stderr


# -- events ------------------------------------------------------------------------------------

def test_events_stats_shape(rt, bundles, cid):
    b = make(bundles, "sleep 1000 & sleep 1000", {"pids": {"limit": 50}})
    run_d(rt, b, cid)
    ev = stats(rt, cid)
    assert ev["type"] == "stats" and ev["id"] == cid
    d = ev["data"]
    assert {"cpu", "memory", "pids", "blkio", "hugetlb"} <= set(d)
    assert d["cpu"]["usage"]["total"] > 0
    assert len(d["cpu"]["usage"]["percpu"]) >= 1
    assert set(d["cpu"]["throttling"]) == {"periods", "throttledPeriods", "throttledTime"}
    assert d["memory"]["usage"]["usage"] > 0
    assert d["memory"]["raw"]["total_rss"] >= 0
    assert "oom_kill" not in d["memory"]
    assert d["pids"] == {"current": 2, "limit": 50}  # two sleeps (sh execs the last)


def test_events_stream_ends_when_the_container_stops(rt, bundles, cid, tmp_path):
    b = make(bundles, "sleep 1")
    run_d(rt, b, cid)
    out = tmp_path / "events.out"
    t0 = time.monotonic()
    with open(out, "w") as f:
        p = subprocess.run(rt.cmd("events", "--interval", "100ms", cid), stdout=f,
                           stderr=subprocess.PIPE, timeout=15)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) >= 4 and took < 5
    assert all(x["type"] == "stats" and x["id"] == cid for x in lines)
    p = rt("events", "--stats", cid, check=False)
    assert p.returncode != 0 and "not running" in p.stderr


def test_events_bad_interval(rt, bundles, cid):
    b = make(bundles, "sleep 1000")
    run_d(rt, b, cid)
    p = rt("events", "--interval", "soon", cid, check=False)
    assert p.returncode == 1 and "invalid interval" in p.stderr


# -- cleanup -----------------------------------------------------------------------------------

def test_delete_removes_sub_cgroups_made_from_the_host(rt, bundles, cid):
    b = make(bundles, "sleep 1000 & wait")
    pid = run_d(rt, b, cid)
    child = wait_for(lambda: [int(x) for x in
                              (cg("pids", cid) / "cgroup.procs").read_text().split()
                              if int(x) != pid], 5, "the child")[0]
    try:
        for ctrl, sub in (("pids", "sub"), ("memory", "sub/deeper"), ("cpu", "sub")):
            d = cg(ctrl, cid) / sub
            d.mkdir(parents=True)
            (d / "cgroup.procs").write_text(str(child))
        assert rt.state(cid)["status"] == "running"
        rt("delete", "--force", cid)
        assert_gone(rt, cid, [pid, child])
    finally:
        scrub(rt, cid)


def test_sigkilled_foreground_run_leaves_a_container_delete_cleans(rt, bundles, cid):
    b = make(bundles, "sleep 1000 & sleep 1000")
    p = subprocess.Popen(rt.cmd("run", "--bundle", b, cid), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: rt("state", cid, check=False).returncode == 0
                 and rt.state(cid)["status"] == "running", 10, "the container")
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    st = rt.state(cid)  # the orphaned container keeps running
    assert st["status"] == "running" and alive(st["pid"])
    procs = [int(x) for x in (cg("pids", cid) / "cgroup.procs").read_text().split()]
    assert len(procs) == 2
    assert rt("list", "-q").stdout.split() == [cid]
    rt("delete", "--force", cid)
    assert_gone(rt, cid, procs)
    assert rt("list", "-q").stdout == ""


def _kill_create_during_hook(rt, bundles, cid, tmp_path):
    """SIGKILL `create` while its createRuntime hook (a sleep) runs; returns its bundle."""
    def ed(c):
        c["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"]}]}
    b = make(bundles, "sleep 1000", {"pids": {"limit": 30}}, edit=ed)
    with open(tmp_path / "create.out", "w") as out:
        p = subprocess.Popen(rt.cmd("create", "--bundle", b, cid), stdout=out, stderr=out)
    hook = None
    try:
        def hook_pid():
            try:
                kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
            except OSError:
                return None
            for k in kids:
                try:
                    if Path(f"/proc/{k}/cmdline").read_bytes().startswith(b"sleep\0"):
                        return int(k)
                except OSError:
                    pass
            return None
        hook = wait_for(hook_pid, 10, "the createRuntime hook")
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if hook:
            try:
                os.kill(hook, signal.SIGKILL)  # the orphaned hook, ours to end
            except ProcessLookupError:
                pass
    return b


def test_sigkilled_create_is_cleaned_up_by_delete_force(rt, bundles, cid, tmp_path):
    b = _kill_create_during_hook(rt, bundles, cid, tmp_path)
    try:
        # the init, blocked waiting for the runtime, sees it gone and exits
        wait_for(lambda: not (cg("pids", cid) / "cgroup.procs").read_text().split(), 5,
                 "the half-created init to exit")
        assert rt.state(cid)["status"] == "stopped"  # recorded from the start of create
        assert rt("list", "-q").stdout.split() == [cid]
        rt("delete", "--force", cid)
        assert not (rt.root / cid).exists()
        assert cg_dirs(cid) == []
        # the id is free again
        c = json.loads((b / "config.json").read_text())
        del c["hooks"]
        (b / "config.json").write_text(json.dumps(c))
        rt("create", "--bundle", b, cid)
        assert rt.state(cid)["status"] == "created"
    finally:
        scrub(rt, cid)
