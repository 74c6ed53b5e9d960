"""engine.containers.update (`docker update`): request parsing and validation with Docker's
messages, Docker's merge rules, the OCI resources handed to the runtime, and what is stored."""

from __future__ import annotations

import pytest

from bosun.engine.container import Container
from bosun.engine.containers import update as U
from bosun.engine.errors import Conflict, InvalidParameter, SystemErr

CID = "e" * 64
MIB = 1 << 20


def hc(**kw) -> dict:
    base = {"Memory": 64 * MIB, "MemorySwap": 128 * MIB, "CpuShares": 0, "NanoCpus": 0,
            "CpuPeriod": 0, "CpuQuota": 0, "PidsLimit": None, "AutoRemove": False,
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}}
    base.update(kw)
    return base


# -- parsing and validation --------------------------------------------------------------------

def test_zero_and_empty_mean_unchanged():
    changes, policy = U.parse_update({"Memory": 0, "CpuShares": 512, "CpusetCpus": "",
                                      "PidsLimit": 0, "RestartPolicy": {"Name": ""}})
    assert changes == {"CpuShares": 512, "PidsLimit": 0}
    assert policy is None


@pytest.mark.parametrize("body", [{"Memory": "64m"}, {"CpusetCpus": 1}, {"Memory": True},
                                  {"RestartPolicy": "always"}, ["Memory"]])
def test_wrong_json_types_are_400(body):
    with pytest.raises(InvalidParameter):
        U.parse_update(body)


@pytest.mark.parametrize("body, message", [
    ({"Memory": 4 * MIB}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 64 * MIB, "MemorySwap": 32 * MIB},
     "Minimum memoryswap limit should be larger than memory limit"),
    ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({"NanoCpus": 10**9, "CpuPeriod": 100000}, "Nano CPUs and CPU Period cannot both be set"),
    ({"CpusetCpus": "1-0"}, "Invalid value 1-0 for cpuset cpus"),
    ({"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy: unknown policy"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}},
     "maximum retry count can only be used with 'on-failure'"),
])
def test_validation_uses_dockers_messages(body, message):
    changes, policy = U.parse_update(body)
    with pytest.raises(InvalidParameter, match=message):
        U.validate(changes, policy, hc())


def test_a_swap_limit_alone_is_judged_against_the_current_memory():
    changes, _ = U.parse_update({"MemorySwap": 32 * MIB})
    with pytest.raises(InvalidParameter, match="memoryswap limit should be larger"):
        U.validate(changes, None, hc(Memory=64 * MIB))
    changes, _ = U.parse_update({"MemorySwap": 256 * MIB})
    U.validate(changes, None, hc(Memory=64 * MIB))


def test_validate_returns_the_normalized_policy():
    changes, policy = U.parse_update({"RestartPolicy": {"Name": "on-failure",
                                                        "MaximumRetryCount": 3}})
    assert U.validate(changes, policy, hc()) == {"Name": "on-failure", "MaximumRetryCount": 3}


# -- merging -----------------------------------------------------------------------------------

@pytest.mark.parametrize("current, changes, message", [
    (hc(), {"Memory": 256 * MIB},
     ("Memory limit should be smaller than already set memoryswap limit, update the "
      "memoryswap at the same time")),
    (hc(Memory=0, MemorySwap=0), {"Memory": 64 * MIB},
     "Memory limit should be smaller than already set memoryswap limit"),
    (hc(CpuPeriod=100000), {"NanoCpus": 10**9},
     "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set"),
    (hc(CpuQuota=50000), {"NanoCpus": 10**9},
     "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set"),
    (hc(NanoCpus=10**9), {"CpuQuota": 50000},
     "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"),
])
def test_docker_merge_conflicts(current, changes, message):
    with pytest.raises(Conflict) as e:
        U.merge(current, changes, None, CID)
    assert str(e.value).startswith(f"Cannot update container {CID}: {message}")


def test_auto_remove_keeps_no_restart_policy():
    with pytest.raises(Conflict, match="Restart policy cannot be updated because AutoRemove "
                                       "is enabled for the container"):
        U.merge(hc(AutoRemove=True), {}, {"Name": "always", "MaximumRetryCount": 0}, CID)
    out = U.merge(hc(AutoRemove=True), {}, {"Name": "no", "MaximumRetryCount": 0}, CID)
    assert out["RestartPolicy"]["Name"] == "no"


def test_merge_applies_changes_without_touching_the_original():
    current = hc(PidsLimit=100)
    out = U.merge(current, {"Memory": 96 * MIB, "CpuShares": 512, "PidsLimit": -1,
                            "KernelMemory": 1 << 30},
                  {"Name": "always", "MaximumRetryCount": 0}, CID)
    assert (out["Memory"], out["MemorySwap"], out["CpuShares"]) == (96 * MIB, 128 * MIB, 512)
    assert out["PidsLimit"] is None  # -1: unlimited
    assert "KernelMemory" not in out or not out["KernelMemory"]
    assert out["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert current["Memory"] == 64 * MIB and current["PidsLimit"] == 100


def test_live_resources():
    new = U.merge(hc(PidsLimit=100), {"Memory": 96 * MIB, "NanoCpus": 1_500_000_000,
                                      "PidsLimit": 0}, None, CID)
    res = U.live_resources(new, {"Memory": 96 * MIB, "NanoCpus": 1_500_000_000,
                                 "PidsLimit": 0}, cgroups_v2=False)
    assert res["memory"] == {"limit": 96 * MIB, "swap": 128 * MIB}
    assert res["cpu"] == {"period": 100000, "quota": 150000}
    assert res["pids"] == {"limit": -1}  # the old limit must be lifted explicitly
    assert "devices" not in res
    unlimited_swap = U.merge(hc(), {"MemorySwap": -1}, None, CID)
    assert U.live_resources(unlimited_swap, {"MemorySwap": -1}, False)["memory"]["swap"] == -1


# -- the verb ----------------------------------------------------------------------------------

class FakeEngine:
    runtime_root = "/nonexistent"

    def __init__(self):
        self.saved, self.events = 0, []

    def save(self, c):
        self.saved += 1

    def emit(self, c, action, **attrs):
        self.events.append(action)


def make(status: str, **host) -> Container:
    running = status in ("running", "paused")
    doc = {"Id": CID, "Name": "/u", "HostConfig": hc(**host),
           "State": {"Status": status, "Running": running, "Pid": 7 if running else 0}}
    return Container(doc, {})


def test_update_of_a_stopped_container_is_stored(monkeypatch):
    import bosun.runtime.update as runtime_update

    monkeypatch.setattr(runtime_update, "update", lambda *a: pytest.fail("not running"))
    engine, c = FakeEngine(), make("exited")
    assert U.update(engine, c, {"Memory": 100 * MIB, "RestartPolicy": {"Name": "always"}}) \
        == {"Warnings": []}
    assert c.doc["HostConfig"]["Memory"] == 100 * MIB
    assert c.doc["HostConfig"]["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert engine.saved == 1 and engine.events == ["update"]


def test_update_of_a_running_container_goes_to_the_runtime(monkeypatch):
    import bosun.runtime.update as runtime_update

    calls = []
    monkeypatch.setattr(runtime_update, "update", lambda root, cid, res: calls.append(res))
    engine, c = FakeEngine(), make("running")
    U.update(engine, c, {"Memory": 100 * MIB})
    assert calls and calls[0]["memory"]["limit"] == 100 * MIB
    calls.clear()
    U.update(engine, c, {"RestartPolicy": {"Name": "unless-stopped"}})
    assert calls == []  # nothing to apply live


def test_a_runtime_failure_restores_the_host_config(monkeypatch):
    import bosun.runtime.update as runtime_update
    from bosun.runtime.errors import RuntimeErr

    def fail(*a):
        raise RuntimeErr("cannot write '1' to cpu.shares: Invalid argument")
    monkeypatch.setattr(runtime_update, "update", fail)
    engine, c = FakeEngine(), make("running")
    with pytest.raises(SystemErr, match=f"^Cannot update container {CID}: cannot write"):
        U.update(engine, c, {"CpuShares": 512})
    assert c.doc["HostConfig"]["CpuShares"] == 0 and engine.saved == 0


def test_removed_container_cannot_be_updated():
    c = make("exited")
    c.removed = True
    with pytest.raises(Conflict, match='marked for removal and cannot be "update"'):
        U.update(FakeEngine(), c, {"CpuShares": 512})


def test_a_block_io_weight_the_kernel_cannot_take_is_no_change(monkeypatch):
    from bosun.engine import createconfig

    monkeypatch.setattr(createconfig, "blkio_supported", lambda v1_file: False)
    changes, policy = U.parse_update({"BlkioWeight": 500, "CpuShares": 512})
    U.validate(changes, policy, hc())
    assert changes == {"CpuShares": 512}  # not a cgroup write that fails (a 500)
