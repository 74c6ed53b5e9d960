"""linux.resources → cgroup writes (plan, device rules, apply), freezing, stats, update and
events helpers, all without root: layouts are built from fake directory names, and apply,
freeze and stats run against fake cgroupfs trees made of plain files in tmp_path.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
import time

import pytest

from bosun.runtime import cgroups, cli, events, resources, stats, update
from bosun.runtime.errors import ConfigError, RuntimeErr, StateError
from bosun.runtime.resources import Layout, apply, device_rules, plan

M = 1 << 20
UNLIMITED = 9223372036854771712  # what a v1 memory file reads after "-1" (PAGE_COUNTER_MAX)

V1_CTRLS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
            "net_cls", "net_prio")


def v1_layout(*, without=(), hugetlb_v1=False) -> Layout:
    """This project's host: everything on v1, hugetlb on the unified hierarchy."""
    dirs = {c: f"/cg/{c}/ctr" for c in V1_CTRLS if c not in without}
    dirs["unified"] = "/cg/unified/ctr"
    if hugetlb_v1:
        dirs["hugetlb"] = "/cg/hugetlb/ctr"
    return Layout(dirs, v2_controllers=set() if hugetlb_v1 else {"hugetlb"})


def v2_layout(ctrls=("cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc")):
    return Layout({"unified": "/cg/ctr"}, v2_controllers=set(ctrls))


def writes(res, layout):
    """The plan without the controller column: [(version, file, value)]."""
    return [(v, f, val) for _, v, f, val in plan(res, layout)]


# -- Layout ------------------------------------------------------------------------------------

def test_layout_where_hybrid():
    lay = v1_layout()
    assert lay.where("memory") == "v1"
    assert lay.where("hugetlb") == "v2"
    assert lay.where("io") is None and lay.where("rdma") is None
    assert lay.path("memory", "v1") == "/cg/memory/ctr"
    assert lay.path("hugetlb", "v2") == "/cg/unified/ctr"


def test_layout_v1_dir_wins_over_v2():
    lay = Layout({"pids": "/p", "unified": "/u"}, v2_controllers={"pids"})
    assert lay.where("pids") == "v1"


def test_layout_v2_controllers_read_from_the_nearest_existing_ancestor(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    lay = Layout({"unified": str(tmp_path / "a" / "ctr")})  # not created yet
    assert lay.v2 == {"cpu", "memory", "pids"}
    assert lay.where("memory") == "v2" and lay.where("io") is None


def test_layout_without_unified_has_no_v2():
    assert Layout({"memory": "/m"}).v2 == set()


# -- plan: memory ------------------------------------------------------------------------------

def test_memory_v1_all_fields_in_order():
    res = {"memory": {"limit": 64 * M, "swap": 128 * M, "reservation": 32 * M,
                      "kernelTCP": 8 * M, "swappiness": 10, "disableOOMKiller": True}}
    assert plan(res, v1_layout()) == [
        ("memory", "v1", "memory.limit_in_bytes", str(64 * M)),
        ("memory", "v1", "memory.memsw.limit_in_bytes", str(128 * M)),
        ("memory", "v1", "memory.soft_limit_in_bytes", str(32 * M)),
        ("memory", "v1", "memory.kmem.tcp.limit_in_bytes", str(8 * M)),
        ("memory", "v1", "memory.swappiness", "10"),
        ("memory", "v1", "memory.oom_control", "1"),
    ]


def test_memory_v1_unlimited_and_oom_killer_left_on():
    res = {"memory": {"limit": -1, "swap": -1, "disableOOMKiller": False}}
    assert writes(res, v1_layout()) == [("v1", "memory.limit_in_bytes", "-1"),
                                        ("v1", "memory.memsw.limit_in_bytes", "-1")]


def test_memory_v1_swap_equal_to_limit_means_no_swap():
    assert writes({"memory": {"limit": 32 * M, "swap": 32 * M}}, v1_layout())[1] == (
        "v1", "memory.memsw.limit_in_bytes", str(32 * M))


@pytest.mark.parametrize("mem", [{"limit": 64 * M, "swap": 32 * M},
                                 {"swappiness": 101}, {"swappiness": -1}])
def test_memory_v1_invalid(mem):
    with pytest.raises(ConfigError):
        plan({"memory": mem}, v1_layout())


def test_kernel_memory_is_ignored():
    assert plan({"memory": {"kernel": 64 * M}}, v1_layout()) == []


def test_memory_v2_limit_and_swap_conversion():
    # OCI swap is memory+swap; memory.swap.max is the swap alone
    res = {"memory": {"limit": 64 * M, "swap": 96 * M, "reservation": 16 * M}}
    assert plan(res, v2_layout()) == [
        ("memory", "v2", "memory.max", str(64 * M)),
        ("memory", "v2", "memory.swap.max", str(32 * M)),
        ("memory", "v2", "memory.low", str(16 * M)),
    ]


def test_memory_v2_swap_equal_to_limit_is_zero_swap():
    assert writes({"memory": {"limit": 64 * M, "swap": 64 * M}}, v2_layout()) == [
        ("v2", "memory.max", str(64 * M)), ("v2", "memory.swap.max", "0")]


def test_memory_v2_unlimited_is_max():
    assert writes({"memory": {"limit": -1, "swap": -1}}, v2_layout()) == [
        ("v2", "memory.max", "max"), ("v2", "memory.swap.max", "max")]


@pytest.mark.parametrize("mem,msg", [
    ({"swap": 64 * M}, "needs a memory limit"),
    ({"limit": -1, "swap": 64 * M}, "needs a memory limit"),
    ({"limit": 64 * M, "swap": 32 * M}, ">= the memory limit"),
    ({"limit": 64 * M, "disableOOMKiller": True}, "disableOOMKiller"),
    ({"swappiness": 60}, "swappiness"),
])
def test_memory_v2_invalid(mem, msg):
    with pytest.raises(ConfigError, match=msg):
        plan({"memory": mem}, v2_layout())


def test_memory_without_the_controller():
    with pytest.raises(RuntimeErr, match="memory cgroup controller"):
        plan({"memory": {"limit": 64 * M}}, v1_layout(without=("memory",)))
    with pytest.raises(RuntimeErr, match="memory cgroup controller"):
        plan({"memory": {"limit": 64 * M}}, v2_layout(ctrls=("cpu", "pids")))


# -- plan: cpu ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shares,weight", [(2, 1), (512, 20), (1024, 39), (262144, 10000),
                                           (0, 0)])
def test_shares_to_weight(shares, weight):
    assert resources.shares_to_weight(shares) == weight


@pytest.mark.parametrize("blkio,io_", [(10, 1), (100, 910), (500, 4950), (1000, 10000),
                                       (0, 0)])
def test_blkio_to_io_weight(blkio, io_):
    assert resources.blkio_to_io_weight(blkio) == io_


def test_cpu_v1():
    res = {"cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 10000,
                   "realtimePeriod": 1000000, "realtimeRuntime": 950000, "idle": 0}}
    assert writes(res, v1_layout()) == [
        ("v1", "cpu.shares", "512"), ("v1", "cpu.cfs_period_us", "100000"),
        ("v1", "cpu.cfs_quota_us", "50000"), ("v1", "cpu.cfs_burst_us", "10000"),
        ("v1", "cpu.rt_period_us", "1000000"), ("v1", "cpu.rt_runtime_us", "950000"),
        ("v1", "cpu.idle", "0")]


def test_cpu_v1_unlimited_quota():
    assert writes({"cpu": {"quota": -1}}, v1_layout()) == [("v1", "cpu.cfs_quota_us", "-1")]


def test_cpu_v1_zero_values_are_unset():
    assert plan({"cpu": {"shares": 0, "quota": 0, "period": 0}}, v1_layout()) == []


def test_cpu_v2_weight_and_max():
    res = {"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 5000}}
    assert plan(res, v2_layout()) == [
        ("cpu", "v2", "cpu.weight", "39"), ("cpu", "v2", "cpu.max", "50000 100000"),
        ("cpu", "v2", "cpu.max.burst", "5000")]


def test_cpu_v2_unlimited_quota_is_max():
    assert writes({"cpu": {"quota": -1, "period": 50000}}, v2_layout()) == [
        ("v2", "cpu.max", "max 50000")]


def test_cpu_v2_quota_alone_keeps_the_current_period():
    # as runc writes it: "QUOTA" alone leaves the cgroup's period as it is (an update of
    # the quota must not silently reset a configured period to 100 ms)
    assert writes({"cpu": {"quota": 20000}}, v2_layout()) == [("v2", "cpu.max", "20000")]


@pytest.mark.parametrize("cpu", [{"realtimeRuntime": 1000}, {"realtimePeriod": 1000}])
def test_cpu_v2_realtime_refused(cpu):
    with pytest.raises(ConfigError, match="realtime"):
        plan({"cpu": cpu}, v2_layout())


def test_cpu_without_the_controller():
    with pytest.raises(RuntimeErr, match="cpu cgroup controller"):
        plan({"cpu": {"shares": 512}}, v1_layout(without=("cpu",)))


def test_cpuset_v1_and_v2():
    res = {"cpu": {"cpus": "0-1", "mems": "0"}}
    assert plan(res, v1_layout()) == [("cpuset", "v1", "cpuset.cpus", "0-1"),
                                      ("cpuset", "v1", "cpuset.mems", "0")]
    assert plan(res, v2_layout()) == [("cpuset", "v2", "cpuset.cpus", "0-1"),
                                      ("cpuset", "v2", "cpuset.mems", "0")]
    assert plan({"cpu": {"cpus": "1"}}, v1_layout()) == [("cpuset", "v1", "cpuset.cpus", "1")]
    with pytest.raises(RuntimeErr, match="cpuset"):
        plan(res, v1_layout(without=("cpuset",)))


# -- plan: pids --------------------------------------------------------------------------------

@pytest.mark.parametrize("limit,want", [(100, "100"), (-1, "max"), (-5, "max"), (1, "1")])
def test_pids(limit, want):
    assert plan({"pids": {"limit": limit}}, v1_layout()) == [("pids", "v1", "pids.max", want)]
    assert plan({"pids": {"limit": limit}}, v2_layout()) == [("pids", "v2", "pids.max", want)]


def test_pids_zero_or_absent_writes_nothing():
    assert plan({"pids": {"limit": 0}}, v1_layout()) == []
    assert plan({"pids": {}}, v1_layout()) == []
    # and so does not even need the controller
    assert plan({"pids": {"limit": 0}}, v1_layout(without=("pids",))) == []


def test_pids_without_the_controller():
    with pytest.raises(RuntimeErr, match="a pids limit needs the pids cgroup controller"):
        plan({"pids": {"limit": 10}}, v1_layout(without=("pids",)))


# -- plan: block I/O ---------------------------------------------------------------------------

BIO = {"weight": 500, "leafWeight": 300,
       "weightDevice": [{"major": 8, "minor": 0, "weight": 200, "leafWeight": 100}],
       "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
       "throttleWriteBpsDevice": [{"major": 8, "minor": 16, "rate": 2097152}],
       "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
       "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 50}]}


def test_blkio_v1():
    assert writes({"blockIO": BIO}, v1_layout()) == [
        ("v1", "blkio.weight", "500"), ("v1", "blkio.leaf_weight", "300"),
        ("v1", "blkio.weight_device", "8:0 200"), ("v1", "blkio.leaf_weight_device", "8:0 100"),
        ("v1", "blkio.throttle.read_bps_device", "8:0 1048576"),
        ("v1", "blkio.throttle.write_bps_device", "8:16 2097152"),
        ("v1", "blkio.throttle.read_iops_device", "8:0 100"),
        ("v1", "blkio.throttle.write_iops_device", "8:0 50")]


def test_io_v2():
    assert plan({"blockIO": BIO}, v2_layout()) == [
        ("io", "v2", "io.weight", "default 4950"), ("io", "v2", "io.weight", "8:0 1920"),
        ("io", "v2", "io.max", "8:0 rbps=1048576"), ("io", "v2", "io.max", "8:16 wbps=2097152"),
        ("io", "v2", "io.max", "8:0 riops=100"), ("io", "v2", "io.max", "8:0 wiops=50")]


def test_blkio_without_either_controller():
    with pytest.raises(RuntimeErr, match="io cgroup controller"):
        plan({"blockIO": {"weight": 500}}, v1_layout(without=("blkio",)))


def test_blkio_empty_writes_nothing():
    assert plan({"blockIO": {"weight": 0, "weightDevice": []}}, v1_layout()) == []


# -- plan: hugetlb, network, unified, rdma ---------------------------------------------------

def test_hugepages_v1_and_v2():
    h = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * M}, {"pageSize": "1GB"}]}
    assert plan(h, v1_layout(hugetlb_v1=True)) == [
        ("hugetlb", "v1", "hugetlb.2MB.limit_in_bytes", str(4 * M)),
        ("hugetlb", "v1", "hugetlb.1GB.limit_in_bytes", "0")]
    # this project's hybrid host has hugetlb on the unified hierarchy only
    assert plan(h, v1_layout()) == [("hugetlb", "v2", "hugetlb.2MB.max", str(4 * M)),
                                    ("hugetlb", "v2", "hugetlb.1GB.max", "0")]


@pytest.mark.parametrize("entry", [{"limit": 1}, {"pageSize": "", "limit": 1},
                                   {"pageSize": 2, "limit": 1}])
def test_hugepages_need_a_page_size(entry):
    with pytest.raises(ConfigError, match="pageSize"):
        plan({"hugepageLimits": [entry]}, v1_layout())


def test_hugepages_without_the_controller():
    with pytest.raises(RuntimeErr, match="hugetlb"):
        plan({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]},
             v2_layout(ctrls=("memory",)))


def test_network():
    res = {"network": {"classID": 1048577,
                       "priorities": [{"name": "eth0", "priority": 5},
                                      {"name": "lo", "priority": 1}]}}
    assert plan(res, v1_layout()) == [("net_cls", "v1", "net_cls.classid", "1048577"),
                                      ("net_prio", "v1", "net_prio.ifpriomap", "eth0 5"),
                                      ("net_prio", "v1", "net_prio.ifpriomap", "lo 1")]
    with pytest.raises(RuntimeErr, match="net_cls"):
        plan({"network": {"classID": 1}}, v2_layout())
    with pytest.raises(RuntimeErr, match="net_prio"):
        plan({"network": {"priorities": [{"name": "lo", "priority": 1}]}}, v2_layout())


def test_unified_on_v2():
    res = {"unified": {"memory.high": "1000000", "cgroup.max.depth": "3"}}
    assert plan(res, v2_layout()) == [("memory", "v2", "memory.high", "1000000"),
                                      ("unified", "v2", "cgroup.max.depth", "3")]


@pytest.mark.parametrize("key", ["../memory.max", "a/b", ".hidden"])
def test_unified_refuses_paths(key):
    with pytest.raises(ConfigError):
        plan({"unified": {key: "1"}}, v2_layout())


def test_unified_without_a_v2_hierarchy():
    with pytest.raises(ConfigError, match="needs cgroup v2"):
        plan({"unified": {"memory.high": "1"}}, Layout({"memory": "/m"}, set()))


def test_rdma_refused():
    with pytest.raises(ConfigError, match="rdma"):
        plan({"rdma": {"mlx5_0": {"hcaHandles": 3}}}, v2_layout())


def test_plan_of_nothing_and_of_garbage():
    assert plan({}, v1_layout()) == []
    assert plan({"memory": {}, "cpu": {}, "pids": None}, v1_layout()) == []
    with pytest.raises(ConfigError, match="must be an object"):
        plan([], v1_layout())


# -- device rules ------------------------------------------------------------------------------

DEFAULT_ALLOWS = [("devices.allow", r) for r in (
    "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 1:5 rwm",
    "c 1:9 rwm", "c 5:1 rwm", "c 136:* rwm", "c 5:2 rwm")]


def test_deny_all_then_runc_default_allows():
    rules = device_rules({"devices": [{"allow": False, "access": "rwm"}]}, v1_layout())
    assert rules == [("devices.deny", "a")] + DEFAULT_ALLOWS


def test_user_rules_keep_their_order_before_the_defaults():
    res = {"devices": [{"allow": False, "access": "rwm"},
                       {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rw"},
                       {"allow": True, "type": "b", "major": 8, "access": "r"},
                       {"allow": True, "type": "c", "minor": 3, "access": "m"},
                       {"allow": True, "type": "c", "major": -1, "minor": -1}]}
    assert device_rules(res, v1_layout()) == [
        ("devices.deny", "a"), ("devices.allow", "c 10:200 rw"),
        ("devices.allow", "b 8:* r"), ("devices.allow", "c *:3 m"),
        ("devices.allow", "c *:* rwm")] + DEFAULT_ALLOWS


def test_rules_without_deny_all_get_no_defaults():
    res = {"devices": [{"allow": False, "type": "c", "major": 1, "minor": 9, "access": "rwm"}]}
    assert device_rules(res, v1_layout()) == [("devices.deny", "c 1:9 rwm")]


def test_no_device_rules():
    assert device_rules({}, v1_layout()) == []
    assert device_rules({"devices": []}, v1_layout()) == []
    # v2 has no devices files (apply attaches an eBPF program instead)
    assert device_rules({"devices": [{"allow": False}]}, v2_layout()) == []


@pytest.mark.parametrize("rule,msg", [
    ({"allow": True, "type": "x", "major": 1, "minor": 3}, "type"),
    ({"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwx"}, "access"),
    ({"allow": True, "type": "p", "access": "r"}, "type"),
])
def test_invalid_device_rules(rule, msg):
    with pytest.raises(ConfigError, match=msg):
        device_rules({"devices": [rule]}, v1_layout())


# -- apply against a fake cgroupfs -------------------------------------------------------------

class FakeKernel:
    """Plain files standing in for cgroup files: a write replaces the file's content (as
    a cgroup file's value is replaced), a missing file stays missing, and the v1 memory
    controller refuses any write that would leave limit > memsw limit (the kernel's EINVAL).
    Every successful write is recorded as (controller dir name, file, value)."""

    def __init__(self, monkeypatch):
        self.log: list[tuple[str, str, str]] = []
        real = resources._write

        def write(path, value):
            d, name = os.path.split(path)
            if not os.path.isfile(path):
                return real(path, value)  # reports the missing file
            if name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
                cur = {n: self._read_int(os.path.join(d, n)) for n in
                       ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")}
                cur[name] = UNLIMITED if int(value) == -1 else int(value)
                if cur["memory.limit_in_bytes"] > cur["memory.memsw.limit_in_bytes"]:
                    raise RuntimeErr(f"cannot write {value!r} to {name}: Invalid argument")
                value = str(cur[name])
            os.truncate(path, 0)
            real(path, value)
            self.log.append((os.path.basename(os.path.dirname(d)), name, value))

        monkeypatch.setattr(resources, "_write", write)

    @staticmethod
    def _read_int(path):
        with open(path) as f:
            return int(f.read())


def fake_v1_tree(tmp_path, files: dict[str, dict[str, str]]) -> dict[str, str]:
    """{controller: {file: content}} → dirs of a container cgroup "ctr" per controller."""
    dirs = {}
    for ctrl, content in files.items():
        d = tmp_path / ctrl / "ctr"
        d.mkdir(parents=True)
        for name, text in content.items():
            (d / name).write_text(text)
        dirs[ctrl] = str(d)
    return dirs


def read(dirs, ctrl, name):
    with open(os.path.join(dirs[ctrl], name)) as f:
        return f.read()


def mem_tree(tmp_path, limit=UNLIMITED, memsw=UNLIMITED):
    return fake_v1_tree(tmp_path, {"memory": {"memory.limit_in_bytes": str(limit),
                                              "memory.memsw.limit_in_bytes": str(memsw),
                                              "memory.soft_limit_in_bytes": str(UNLIMITED)}})


def test_fake_kernel_refuses_limit_above_memsw(tmp_path, monkeypatch):
    # the fake must be able to catch a wrong order, or the tests below prove nothing
    FakeKernel(monkeypatch)
    dirs = mem_tree(tmp_path, 32 * M, 32 * M)
    with pytest.raises(RuntimeErr, match="Invalid argument"):
        resources._write(os.path.join(dirs["memory"], "memory.limit_in_bytes"), str(64 * M))


@pytest.mark.parametrize("cur,new,first", [
    ((UNLIMITED, UNLIMITED), (32 * M, 32 * M), "memory.limit_in_bytes"),    # fresh cgroup
    ((32 * M, 32 * M), (64 * M, 64 * M), "memory.memsw.limit_in_bytes"),    # growing
    ((64 * M, 64 * M), (32 * M, 32 * M), "memory.limit_in_bytes"),          # shrinking
    ((32 * M, 32 * M), (-1, -1), "memory.memsw.limit_in_bytes"),            # to unlimited
    ((32 * M, 128 * M), (64 * M, 96 * M), "memory.limit_in_bytes"),         # within memsw
    ((64 * M, 64 * M), (32 * M, 256 * M), "memory.limit_in_bytes"),        # swap added
])
def test_apply_v1_memory_limit_and_memsw_in_a_valid_order(tmp_path, monkeypatch, cur, new,
                                                           first):
    k = FakeKernel(monkeypatch)
    dirs = mem_tree(tmp_path, *cur)
    apply(dirs, {"memory": {"limit": new[0], "swap": new[1]}}, Layout(dirs, set()))
    want = [UNLIMITED if v == -1 else v for v in new]
    assert int(read(dirs, "memory", "memory.limit_in_bytes")) == want[0]
    assert int(read(dirs, "memory", "memory.memsw.limit_in_bytes")) == want[1]
    assert [n for _, n, _ in k.log][0] == first


def test_apply_v1_memory_grow_then_shrink_again(tmp_path, monkeypatch):
    FakeKernel(monkeypatch)
    dirs = mem_tree(tmp_path)
    lay = Layout(dirs, set())
    for mib in (32, 64, 16, 128, 32):
        apply(dirs, {"memory": {"limit": mib * M, "swap": mib * M}}, lay)
        assert read(dirs, "memory", "memory.limit_in_bytes") == str(mib * M)
        assert read(dirs, "memory", "memory.memsw.limit_in_bytes") == str(mib * M)


def test_apply_v1_memory_limit_alone_above_memsw_is_refused(tmp_path, monkeypatch):
    FakeKernel(monkeypatch)
    dirs = mem_tree(tmp_path, 32 * M, 32 * M)
    with pytest.raises(RuntimeErr, match="Invalid argument"):
        apply(dirs, {"memory": {"limit": 64 * M}}, Layout(dirs, set()))
    assert read(dirs, "memory", "memory.limit_in_bytes") == str(32 * M)


def test_apply_v1_memsw_missing_is_a_clear_error(tmp_path, monkeypatch):
    # a kernel without swap accounting has no memory.memsw.* files
    FakeKernel(monkeypatch)
    dirs = fake_v1_tree(tmp_path, {"memory": {"memory.limit_in_bytes": str(UNLIMITED)}})
    with pytest.raises(RuntimeErr, match="memory.memsw.limit_in_bytes does not exist"):
        apply(dirs, {"memory": {"limit": 32 * M, "swap": 32 * M}}, Layout(dirs, set()))


def test_apply_writes_devices_first_then_the_plan(tmp_path, monkeypatch):
    k = FakeKernel(monkeypatch)
    dirs = fake_v1_tree(tmp_path, {
        "devices": {"devices.allow": "", "devices.deny": ""},
        "pids": {"pids.max": "max"},
        "cpu": {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000"},
        "cpuset": {"cpuset.cpus": "0-1", "cpuset.mems": "0"}})
    res = {"devices": [{"allow": False, "access": "rwm"}], "pids": {"limit": 10},
           "cpu": {"shares": 512, "quota": 20000, "period": 50000, "cpus": "1"}}
    apply(dirs, res, Layout(dirs, set()))
    assert k.log[0] == ("devices", "devices.deny", "a")
    assert k.log[1:12] == [("devices", "devices.allow", r) for _, r in DEFAULT_ALLOWS]
    assert k.log[12:] == [("cpu", "cpu.shares", "512"), ("cpu", "cpu.cfs_period_us", "50000"),
                          ("cpu", "cpu.cfs_quota_us", "20000"), ("cpuset", "cpuset.cpus", "1"),
                          ("pids", "pids.max", "10")]
    assert read(dirs, "pids", "pids.max") == "10"
    assert read(dirs, "cpu", "cpu.cfs_quota_us") == "20000"
    assert read(dirs, "cpuset", "cpuset.mems") == "0"  # untouched


def test_apply_nothing(tmp_path, monkeypatch):
    k = FakeKernel(monkeypatch)
    apply({"memory": str(tmp_path / "nowhere")}, None)
    apply({"memory": str(tmp_path / "nowhere")}, {})
    assert k.log == []


def test_apply_missing_cgroup_file(tmp_path):
    dirs = fake_v1_tree(tmp_path, {"cpu": {"cpu.cfs_quota_us": "-1"}})
    with pytest.raises(RuntimeErr, match="cgroup file cpu.cfs_burst_us does not exist"):
        apply(dirs, {"cpu": {"quota": 1000, "burst": 500}}, Layout(dirs, set()))


def test_write_replaces_at_offset_zero_and_reports_errors(tmp_path):
    p = tmp_path / "pids.max"
    p.write_text("")
    resources._write(str(p), "42")
    assert p.read_text() == "42"
    with pytest.raises(RuntimeErr, match="does not exist on this kernel"):
        resources._write(str(tmp_path / "nope"), "1")
    # a write the kernel refuses: /dev/full fails every write with ENOSPC
    with pytest.raises(RuntimeErr, match=r"cannot write '1' to full: No space left"):
        resources._write("/dev/full", "1")


def fake_v2_tree(tmp_path, controllers="cpu io memory pids hugetlb"):
    """<tmp>/cg is the cgroup2 mount, <tmp>/cg/a an intermediate cgroup, <tmp>/cg/a/ctr ours."""
    root = tmp_path / "cg"
    ctr = root / "a" / "ctr"
    ctr.mkdir(parents=True)
    for d in (root, root / "a", ctr):
        (d / "cgroup.controllers").write_text(controllers + "\n")
        (d / "cgroup.subtree_control").write_text("")
    return root, ctr


@pytest.fixture
def subtree_log(monkeypatch):
    """Record what resources writes to cgroup.subtree_control (a plain file keeps only the
    last write), by giving the module its own `open`."""
    log = []
    real_open = open

    def recording_open(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        if "w" in mode and os.path.basename(path) == "cgroup.subtree_control":
            w = f.write

            def write(s):
                log.append((os.path.dirname(path), s))
                return w(s)
            f.write = write
        return f

    monkeypatch.setattr(resources, "open", recording_open, raising=False)
    return log


def test_enable_v2_controllers_in_every_ancestor_top_down(tmp_path, subtree_log):
    root, ctr = fake_v2_tree(tmp_path)
    resources.enable_v2_controllers(Layout({"unified": str(ctr)}), {"pids", "memory"})
    assert subtree_log == [(str(root), "+memory"), (str(root), "+pids"),
                           (str(root / "a"), "+memory"), (str(root / "a"), "+pids")]
    assert (ctr / "cgroup.subtree_control").read_text() == ""  # not our own cgroup's


def test_enable_v2_controllers_nothing_to_do(tmp_path, subtree_log):
    root, ctr = fake_v2_tree(tmp_path)
    resources.enable_v2_controllers(Layout({"unified": str(ctr)}), set())
    resources.enable_v2_controllers(Layout({"memory": str(ctr)}, set()), {"memory"})
    assert subtree_log == []


def test_enable_v2_controllers_failure(tmp_path):
    root, ctr = fake_v2_tree(tmp_path)
    (root / "a" / "cgroup.subtree_control").unlink()
    (root / "a" / "cgroup.subtree_control").mkdir()  # unwritable
    with pytest.raises(RuntimeErr, match="cannot enable the io controller in .*/cg/a"):
        resources.enable_v2_controllers(Layout({"unified": str(ctr)}), {"io"})


def test_apply_v2_end_to_end(tmp_path, subtree_log):
    root, ctr = fake_v2_tree(tmp_path)
    for name in ("memory.max", "memory.swap.max", "pids.max", "cpu.max", "cpu.weight",
                 "io.max"):
        (ctr / name).write_text("")
    apply({"unified": str(ctr)},
          {"memory": {"limit": 64 * M, "swap": 64 * M}, "pids": {"limit": -1},
           "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
           "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]}})
    assert (ctr / "memory.max").read_text() == str(64 * M)
    assert (ctr / "memory.swap.max").read_text() == "0"
    assert (ctr / "pids.max").read_text() == "max"
    assert (ctr / "cpu.max").read_text() == "50000 100000"
    assert (ctr / "cpu.weight").read_text() == "39"
    assert (ctr / "io.max").read_text() == "8:0 rbps=1048576"
    assert {s for d, s in subtree_log if d == str(root / "a")} == {
        "+cpu", "+io", "+memory", "+pids"}


def test_apply_hybrid_hugetlb_goes_to_the_unified_hierarchy(tmp_path, subtree_log):
    root, ctr = fake_v2_tree(tmp_path, controllers="hugetlb")
    (ctr / "hugetlb.2MB.max").write_text("")
    dirs = fake_v1_tree(tmp_path, {"memory": {}})
    dirs["unified"] = str(ctr)
    apply(dirs, {"hugepageLimits": [{"pageSize": "2MB", "limit": 2 * M}]})
    assert (ctr / "hugetlb.2MB.max").read_text() == str(2 * M)
    assert (str(root / "a"), "+hugetlb") in subtree_log


# -- freeze ------------------------------------------------------------------------------------

def test_freeze_v1(tmp_path):
    d = tmp_path / "freezer"
    d.mkdir()
    (d / "freezer.state").write_text("THAWED\n")
    dirs = {"freezer": str(d)}
    cgroups.freeze(dirs, True)
    assert (d / "freezer.state").read_text() == "FROZEN"
    assert cgroups.is_frozen(dirs)
    cgroups.freeze(dirs, False)
    assert (d / "freezer.state").read_text() == "THAWED"
    assert not cgroups.is_frozen(dirs)


def test_freeze_prefers_the_v1_freezer(tmp_path):
    f, u = tmp_path / "freezer", tmp_path / "unified"
    f.mkdir()
    u.mkdir()
    (f / "freezer.state").write_text("THAWED")
    (u / "cgroup.freeze").write_text("0")
    cgroups.freeze({"freezer": str(f), "unified": str(u)}, True)
    assert (f / "freezer.state").read_text() == "FROZEN"
    assert (u / "cgroup.freeze").read_text() == "0"


def test_freeze_v2_waits_for_the_frozen_event(tmp_path):
    d = tmp_path / "ctr"
    d.mkdir()
    (d / "cgroup.freeze").write_text("0")
    (d / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    dirs = {"unified": str(d)}
    cgroups.freeze(dirs, True)
    assert (d / "cgroup.freeze").read_text() == "1"
    assert cgroups.is_frozen(dirs)
    # the kernel never reports "frozen 0": thawing times out with a clear error
    with pytest.raises(RuntimeErr, match="did not thaw"):
        cgroups.freeze(dirs, False, timeout=0.05)
    assert (d / "cgroup.freeze").read_text() == "0"
    (d / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    cgroups.freeze(dirs, False)


def test_freeze_v2_timeout(tmp_path):
    d = tmp_path / "ctr"
    d.mkdir()
    (d / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    t = time.monotonic()
    with pytest.raises(RuntimeErr, match="did not freeze in 0.1s"):
        cgroups.freeze({"unified": str(d)}, True, timeout=0.1)
    assert time.monotonic() - t < 2


def test_freeze_without_a_freezer(tmp_path):
    with pytest.raises(RuntimeErr, match="no freezer"):
        cgroups.freeze({"memory": str(tmp_path)}, True)


# -- stats -------------------------------------------------------------------------------------

def v1_stats_tree(tmp_path):
    return fake_v1_tree(tmp_path, {
        "cpuacct": {"cpuacct.usage": "123456789\n", "cpuacct.usage_percpu": "100 200 \n",
                    "cpuacct.stat": "user 5\nsystem 3\n"},
        "cpu": {"cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 5000\n"},
        "memory": {"memory.usage_in_bytes": "4096\n", "memory.max_usage_in_bytes": "8192\n",
                   "memory.failcnt": "2\n", "memory.limit_in_bytes": f"{32 * M}\n",
                   "memory.memsw.usage_in_bytes": "4097\n",
                   "memory.memsw.max_usage_in_bytes": "8193\n",
                   "memory.memsw.failcnt": "1\n",
                   "memory.memsw.limit_in_bytes": f"{UNLIMITED}\n",
                   "memory.stat": "cache 100\nrss 200\ntotal_cache 300\n",
                   "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"},
        "pids": {"pids.current": "3\n", "pids.max": "max\n"},
        "blkio": {"blkio.throttle.io_service_bytes_recursive":
                  "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\nTotal 12288\n",
                  "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\nTotal 3\n"},
        "hugetlb": {"hugetlb.2MB.limit_in_bytes": "0\n", "hugetlb.2MB.usage_in_bytes": "0\n",
                    "hugetlb.2MB.max_usage_in_bytes": "2097152\n",
                    "hugetlb.2MB.failcnt": "7\n"}})


def test_stats_v1(tmp_path):
    data = stats.stats(v1_stats_tree(tmp_path))
    assert set(data) == {"cpu", "memory", "pids", "blkio", "hugetlb", "intel_rdt",
                         "network_interfaces"}
    assert data["cpu"] == {
        "usage": {"total": 123456789, "percpu": [100, 200],
                  "kernel": 3 * 10_000_000, "user": 5 * 10_000_000},  # USER_HZ ticks → ns
        "throttling": {"periods": 10, "throttledPeriods": 4, "throttledTime": 5000}}
    mem = data["memory"]
    assert mem["usage"] == {"usage": 4096, "max": 8192, "failcnt": 2, "limit": 32 * M}
    assert mem["swap"] == {"usage": 4097, "max": 8193, "failcnt": 1, "limit": UNLIMITED}
    assert mem["cache"] == 300
    assert mem["raw"] == {"cache": 100, "rss": 200, "total_cache": 300}
    assert mem["oom_kill"] == 2
    assert mem["kernel"] == {"usage": 0, "max": 0, "failcnt": 0, "limit": 0}  # no files
    assert data["pids"] == {"current": 3, "limit": 0}  # "max" is reported as 0, as runc does
    assert data["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096},
        {"major": 8, "minor": 0, "op": "Write", "value": 8192},
        {"major": 8, "minor": 0, "op": "Sync", "value": 0}]
    assert data["blkio"]["ioServicedRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 1},
        {"major": 8, "minor": 0, "op": "Write", "value": 2}]
    assert data["hugetlb"] == {"2MB": {"usage": 0, "max": 2097152, "failcnt": 7}}
    json.dumps(data)  # serializable as is


def test_stats_v1_pids_limit(tmp_path):
    dirs = fake_v1_tree(tmp_path, {"pids": {"pids.current": "1", "pids.max": "64"}})
    assert stats.stats(dirs)["pids"] == {"current": 1, "limit": 64}


def test_stats_v2(tmp_path):
    d = tmp_path / "ctr"
    d.mkdir()
    files = {
        "cgroup.controllers": "cpu io memory pids hugetlb\n",
        "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\n"
                    "nr_throttled 2\nthrottled_usec 30\n",
        "memory.current": "65536\n", "memory.peak": "131072\n", "memory.max": "max\n",
        "memory.swap.current": "0\n", "memory.swap.max": f"{M}\n",
        "memory.stat": "anon 222\nfile 111\n",
        "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        "pids.current": "2\n", "pids.max": "20\n",
        "io.stat": "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n"
                   "8:16 rbytes=10 wbytes=20 rios=30 wios=40 dbytes=0 dios=0\n",
        "hugetlb.2MB.max": "max\n", "hugetlb.2MB.current": "4096\n",
        "hugetlb.2MB.events": "max 5\n", "hugetlb.2MB.rsvd.max": "max\n"}
    for name, text in files.items():
        (d / name).write_text(text)
    data = stats.stats({"unified": str(d)})
    assert data["cpu"] == {"usage": {"total": 1_500_000, "kernel": 500_000, "user": 1_000_000},
                           "throttling": {"periods": 7, "throttledPeriods": 2,
                                          "throttledTime": 30_000}}
    mem = data["memory"]
    assert mem["usage"] == {"usage": 65536, "max": 131072, "limit": -1, "failcnt": 0}
    assert mem["swap"] == {"usage": 0, "limit": M}
    assert mem["cache"] == 111 and mem["raw"] == {"anon": 222, "file": 111}
    assert mem["oom_kill"] == 1
    assert data["pids"] == {"current": 2, "limit": 20}
    assert data["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 1},
        {"major": 8, "minor": 0, "op": "Write", "value": 2},
        {"major": 8, "minor": 16, "op": "Read", "value": 10},
        {"major": 8, "minor": 16, "op": "Write", "value": 20}]
    assert data["blkio"]["ioServicedRecursive"][:2] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 3},
        {"major": 8, "minor": 0, "op": "Write", "value": 4}]
    assert data["hugetlb"] == {"2MB": {"usage": 4096, "failcnt": 5}}


def test_stats_of_empty_or_missing_cgroups_do_not_fail(tmp_path):
    dirs = fake_v1_tree(tmp_path, {c: {} for c in ("cpuacct", "cpu", "memory", "pids",
                                                   "blkio")})
    dirs["gone"] = str(tmp_path / "gone")
    data = stats.stats(dirs)
    assert data["cpu"]["usage"] == {"total": 0, "percpu": [], "kernel": 0, "user": 0}
    assert data["pids"] == {"current": 0, "limit": 0}
    assert data["blkio"] == {"ioServiceBytesRecursive": [], "ioServicedRecursive": []}
    assert stats.stats({})["memory"] == {}


# -- events ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,seconds", [("100ms", 0.1), ("5s", 5.0), ("1.5s", 1.5),
                                          ("1m", 60.0), ("2h", 7200.0), ("3", 3.0),
                                          (" 250ms ", 0.25)])
def test_parse_interval(text, seconds):
    assert events.parse_interval(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ms", "abc", "5x", "0s", "0", "-1s", "1m30s"])
def test_parse_interval_invalid(text):
    with pytest.raises(StateError):
        events.parse_interval(text)


def _container_record(tmp_path, pid, dirs):
    from bosun.runtime.state import Container, proc_start_time

    root = tmp_path / "root"
    (root / "c1").mkdir(parents=True)
    Container(str(root), "c1", {"pid": pid, "pid_start": proc_start_time(pid),
                                "bundle": "/b", "created": "now", "cgroups": dirs,
                                "config": {"ociVersion": "1.2.0", "root": {"path": "r"}}}
              ).save()
    return str(root)


def test_events_stats_once(tmp_path):
    dirs = v1_stats_tree(tmp_path)
    root = _container_record(tmp_path, os.getpid(), dirs)
    out = io.StringIO()
    events.events(root, "c1", once=True, out=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    ev = json.loads(lines[0])
    assert ev["type"] == "stats" and ev["id"] == "c1"
    assert ev["data"]["cpu"]["usage"]["total"] == 123456789
    assert "oom_kill" not in ev["data"]["memory"]  # internal: turned into oom events


def test_events_stream_reports_oom_and_ends_with_the_container(tmp_path):
    dirs = v1_stats_tree(tmp_path)
    p = subprocess.Popen(["sleep", "0.6"])
    try:
        root = _container_record(tmp_path, p.pid, dirs)
        oc = os.path.join(dirs["memory"], "memory.oom_control")

        def oom_later():
            time.sleep(0.2)
            with open(oc, "w") as f:
                f.write("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
        t = threading.Thread(target=oom_later)
        t.start()
        out = io.StringIO()
        start = time.monotonic()
        events.events(root, "c1", once=False, interval=0.05, out=out)
        assert time.monotonic() - start < 5
        t.join()
    finally:
        p.kill()
        p.wait()
    evs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [e for e in evs if e["type"] == "oom"] == [{"type": "oom", "id": "c1"}]
    assert sum(e["type"] == "stats" for e in evs) >= 3


def test_events_of_a_stopped_container(tmp_path):
    p = subprocess.Popen(["sleep", "10"])
    root = _container_record(tmp_path, p.pid, {})
    p.kill()
    p.wait()
    with pytest.raises(StateError, match="not running"):
        events.events(root, "c1", once=True, out=io.StringIO())


# -- update ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("64m", 64 << 20), ("64M", 64 << 20), ("64mb", 64 << 20), ("64MB", 64 << 20),
    ("1g", 1 << 30), ("2t", 2 << 40), ("1024", 1024), ("100b", 100), ("-1", -1),
    ("1.5k", 1536), (" 2k ", 2048), ("0", 0)])
def test_parse_bytes(text, value):
    assert update.parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "m", "abc", "-5", "-1k", "64x", "1.2.3k", "k64",
                                  "inf", "nan", "infk"])
def test_parse_bytes_invalid(text):
    with pytest.raises(RuntimeErr, match="invalid size"):
        update.parse_bytes(text)


def test_merge_is_nested_and_replaces_lists():
    base = {"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 5},
            "devices": [{"allow": False}], "cpu": None}
    change = {"memory": {"limit": 10}, "devices": [{"allow": True}],
              "cpu": {"quota": 3}, "blockIO": {"weight": 100}}
    assert update.merge(base, change) == {
        "memory": {"limit": 10, "swap": 2}, "pids": {"limit": 5},
        "devices": [{"allow": True}], "cpu": {"quota": 3}, "blockIO": {"weight": 100}}
    assert base["memory"] == {"limit": 1, "swap": 2}  # not modified


def test_merge_twice_accumulates():
    r = update.merge({}, {"memory": {"limit": 1}})
    r = update.merge(r, {"pids": {"limit": 7}})
    r = update.merge(r, {"memory": {"swap": 2}})
    assert r == {"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 7}}


# -- cli: update flags -------------------------------------------------------------------------

def flags(*argv):
    opts, rest = cli.parse_flags(list(argv), *cli.COMMANDS["update"])
    return opts


def test_update_flags_memory():
    assert cli._update_resources(flags("--memory", "64m", "--memory-swap", "128m",
                                       "--memory-reservation", "32m")) == {
        "memory": {"limit": 64 * M, "swap": 128 * M, "reservation": 32 * M}}
    assert cli._update_resources(flags("--memory=-1", "--memory-swap=-1")) == {
        "memory": {"limit": -1, "swap": -1}}
    assert cli._update_resources(flags("--kernel-memory", "1m", "--kernel-memory-tcp",
                                       "2m")) == {"memory": {"kernel": M, "kernelTCP": 2 * M}}


def test_update_flags_cpu_pids_blkio():
    assert cli._update_resources(flags(
        "--cpu-shares", "512", "--cpu-quota", "20000", "--cpu-period", "100000",
        "--cpu-rt-period", "1000000", "--cpu-rt-runtime", "950000", "--cpuset-cpus", "0",
        "--cpuset-mems", "0", "--pids-limit", "42", "--blkio-weight", "300")) == {
        "cpu": {"shares": 512, "quota": 20000, "period": 100000, "realtimePeriod": 1000000,
                "realtimeRuntime": 950000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 42}, "blockIO": {"weight": 300}}
    assert cli._update_resources(flags("--pids-limit", "-1")) == {"pids": {"limit": -1}}
    assert cli._update_resources(flags("--cpu-quota", "-1")) == {"cpu": {"quota": -1}}


def test_update_flags_errors():
    with pytest.raises(cli.Usage, match="at least one"):
        cli._update_resources({})
    with pytest.raises(RuntimeErr, match="Intel RDT"):
        cli._update_resources(flags("--l3-cache-schema", "L3:0=f"))
    with pytest.raises(RuntimeErr, match="invalid size"):
        cli._update_resources(flags("--memory", "lots"))


def test_update_resources_from_stdin_and_file(tmp_path, monkeypatch):
    doc = {"memory": {"limit": 1024}, "pids": {"limit": 9}}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(doc)))
    # -r wins over the other flags, as in runc
    assert cli._update_resources(flags("-r", "-", "--pids-limit", "3")) == doc
    f = tmp_path / "r.json"
    f.write_text(json.dumps(doc))
    assert cli._update_resources(flags("--resources", str(f))) == doc


@pytest.mark.parametrize("content,msg", [("{bad", "cannot read resources"),
                                         ("[1, 2]", "must be a JSON object"),
                                         (None, "cannot read resources")])
def test_update_resources_file_errors(tmp_path, content, msg):
    f = tmp_path / "r.json"
    if content is not None:
        f.write_text(content)
    with pytest.raises(RuntimeErr, match=msg):
        cli._update_resources(flags("-r", str(f)))


@pytest.mark.parametrize("argv,code,msg", [
    (["--memory", "inf"], 1, "invalid size"),
    (["--memory", "lots"], 1, "invalid size"),
    (["--cpu-quota", "half"], 2, "invalid value"),
    ([], 2, "at least one"),
])
def test_update_cli_errors_are_one_line(tmp_path, capsys, argv, code, msg):
    assert cli.main(["--root", str(tmp_path), "update", *argv, "c1"]) == code
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_use_hierarchy_and_check_before_update(tmp_path):
    from bosun.runtime import resources as R

    d = tmp_path / "memory"
    d.mkdir()
    for name, value in (("memory.usage_in_bytes", "5000000"), ("memory.limit_in_bytes", "-1"),
                        ("memory.use_hierarchy", "0")):
        (d / name).write_text(value)
    layout = R.Layout({"memory": str(d)}, v2_controllers=set())
    assert ("memory", "v1", "memory.use_hierarchy", "1") in R.plan(
        {"memory": {"useHierarchy": True}}, layout)
    with pytest.raises(R.RuntimeErr, match="below the current usage"):
        R.apply({"memory": str(d)}, {"memory": {"limit": 4000000, "checkBeforeUpdate": True}},
                layout)
    assert (d / "memory.limit_in_bytes").read_text() == "-1"  # nothing written
    R.apply({"memory": str(d)}, {"memory": {"limit": 6000000, "checkBeforeUpdate": True}},
            layout)
    assert (d / "memory.limit_in_bytes").read_text() == "6000000"
