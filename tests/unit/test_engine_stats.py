"""engine.containers.stats: runtime stats samples (runc's events shape) → Docker's stats JSON,
/proc/stat and /proc/<pid>/net/dev parsing, and the stream's cadence and precpu."""

from __future__ import annotations

import threading

import pytest

from bosun.engine.container import Container
from bosun.engine.containers import stats as S
from bosun.engine.errors import InvalidParameter

GIB = 1 << 30
READ = "2026-01-02T03:04:05.5Z"

V1_SAMPLE = {
    "cpu": {"usage": {"total": 5_000_000, "percpu": [3_000_000, 2_000_000],
                      "kernel": 1_000_000, "user": 4_000_000},
            "throttling": {"periods": 7, "throttledPeriods": 2, "throttledTime": 99}},
    "memory": {"cache": 10, "usage": {"usage": 3 << 20, "max": 5 << 20, "failcnt": 0,
                                      "limit": 64 << 20},
               "swap": {"usage": 0, "max": 0, "failcnt": 0, "limit": 128 << 20},
               "raw": {"total_inactive_file": 4096, "rss": 2 << 20}},
    "pids": {"current": 3, "limit": 0},
    "blkio": {"ioServiceBytesRecursive": [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096},
        {"major": 8, "minor": 0, "op": "Write", "value": 0},
        {"major": 8, "minor": 0, "op": "Total", "value": 4096}],
        "ioServicedRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 1}]},
    "hugetlb": {}, "intel_rdt": {}, "network_interfaces": None,
}

V2_SAMPLE = {
    "cpu": {"usage": {"total": 7000, "kernel": 2000, "user": 5000},
            "throttling": {"periods": 0, "throttledPeriods": 0, "throttledTime": 0}},
    "memory": {"cache": 0, "usage": {"usage": 1 << 20, "max": 2 << 20, "limit": -1,
                                     "failcnt": 0},
               "raw": {"inactive_file": 8192}},
    "pids": {"current": 1, "limit": 100},
    "blkio": {"ioServiceBytesRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 1},
                                          {"major": 8, "minor": 0, "op": "Write", "value": 2}],
              "ioServicedRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 1}]},
}


def convert(raw, **kw):
    args = dict(read=READ, system_cpu_usage=123_000_000_000, online_cpus=2,
                machine_memory=4 * GIB, networks=None)
    args.update(kw)
    return S.docker_stats(raw, **args)


def test_v1_sample_in_dockers_shape():
    out = convert(V1_SAMPLE)
    assert list(out) == ["read", "preread", "pids_stats", "blkio_stats", "num_procs",
                         "storage_stats", "cpu_stats", "precpu_stats", "memory_stats"]
    assert out["read"] == READ and out["preread"] == S.ZERO_TIME
    assert out["cpu_stats"] == {
        "cpu_usage": {"total_usage": 5_000_000, "percpu_usage": [3_000_000, 2_000_000],
                      "usage_in_kernelmode": 1_000_000, "usage_in_usermode": 4_000_000},
        "system_cpu_usage": 123_000_000_000, "online_cpus": 2,
        "throttling_data": {"periods": 7, "throttled_periods": 2, "throttled_time": 99}}
    assert out["precpu_stats"] == S.zero_cpu()
    assert out["memory_stats"] == {"usage": 3 << 20, "max_usage": 5 << 20,
                                   "stats": {"total_inactive_file": 4096, "rss": 2 << 20},
                                   "limit": 64 << 20}
    assert out["pids_stats"] == {"current": 3}  # no limit: omitted, as Go's omitempty
    blkio = out["blkio_stats"]
    assert blkio["io_service_bytes_recursive"][0] == {"major": 8, "minor": 0, "op": "Read",
                                                      "value": 4096}
    assert blkio["io_serviced_recursive"] == [{"major": 8, "minor": 0, "op": "Read",
                                               "value": 1}]
    assert blkio["io_queue_recursive"] == [] and len(blkio) == 8  # v1: lists, as dockerd
    assert out["num_procs"] == 0 and out["storage_stats"] == {}
    assert "networks" not in out


def test_unlimited_memory_is_reported_as_the_machines():
    raw = {**V1_SAMPLE, "memory": {**V1_SAMPLE["memory"],
                                   "usage": {**V1_SAMPLE["memory"]["usage"],
                                             "limit": 9223372036854771712}}}
    assert convert(raw)["memory_stats"]["limit"] == 4 * GIB


def test_v2_sample():
    out = convert(V2_SAMPLE, cgroup_v2=True)
    assert out["cpu_stats"]["cpu_usage"] == {"total_usage": 7000, "usage_in_kernelmode": 2000,
                                             "usage_in_usermode": 5000}  # no percpu on v2
    assert out["memory_stats"] == {"usage": 1 << 20, "stats": {"inactive_file": 8192},
                                   "limit": 4 * GIB}  # "max" → the machine; no max_usage
    assert [e["op"] for e in out["blkio_stats"]["io_service_bytes_recursive"]] == ["read",
                                                                                  "write"]
    assert out["blkio_stats"]["io_serviced_recursive"] is None
    assert out["pids_stats"] == {"current": 1, "limit": 100}
    no_io = convert({**V2_SAMPLE, "blkio": {}}, cgroup_v2=True)["blkio_stats"]
    assert all(v is None for v in no_io.values())


def test_empty_stats_is_dockers_zero_value():
    e = S.empty_stats("/x", "abc")
    assert e["read"] == e["preread"] == "0001-01-01T00:00:00Z"
    assert e["memory_stats"] == {} and e["pids_stats"] == {} and e["storage_stats"] == {}
    assert e["cpu_stats"] == {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                                            "usage_in_usermode": 0},
                              "throttling_data": {"periods": 0, "throttled_periods": 0,
                                                  "throttled_time": 0}}
    assert all(v is None for v in e["blkio_stats"].values()) and len(e["blkio_stats"]) == 8
    assert (e["name"], e["id"]) == ("/x", "abc") and "networks" not in e


def test_system_cpu_from_proc_stat():
    text = ("cpu  100 5 50 1000 10 1 4 7 0 0\n"
            "cpu0 50 2 25 500 5 1 2 3 0 0\ncpu1 50 3 25 500 5 0 2 4 0 0\n"
            "intr 12345\nctxt 999\n")
    usage, cpus = S.system_cpu(text, 100)
    assert usage == (100 + 5 + 50 + 1000 + 10 + 1 + 4) * 10_000_000  # steal not counted
    assert cpus == 2


def test_net_dev_leaves_out_loopback():
    text = ("Inter-|   Receive                                                |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets"
            " errs drop fifo colls carrier compressed\n"
            "    lo:     100       1    0    0    0     0          0         0      100       1"
            "    0    0    0     0       0          0\n"
            "  eth0:    2000      20    1    2    0     0          0         0     3000      30"
            "    3    4    0     0       0          0\n")
    assert S.net_dev(text) == {"eth0": {"rx_bytes": 2000, "rx_packets": 20, "rx_errors": 1,
                                        "rx_dropped": 2, "tx_bytes": 3000, "tx_packets": 30,
                                        "tx_errors": 3, "tx_dropped": 4}}
    assert S.net_dev(text.rsplit("\n", 2)[0] + "\n") == {}


def test_identity_goes_before_networks():
    doc = S.with_identity(convert(V1_SAMPLE, networks={"eth0": {"rx_bytes": 1}}), "/n", "id")
    assert list(doc)[-3:] == ["name", "id", "networks"]


# -- the verb ----------------------------------------------------------------------------------

def container(status: str = "running") -> Container:
    running = status in ("running", "paused")
    doc = {"Id": "f" * 64, "Name": "/web", "HostConfig": {},
           "State": {"Status": status, "Running": running, "Pid": 42 if running else 0}}
    return Container(doc, {})


def test_stream_and_one_shot_together_are_refused():
    with pytest.raises(InvalidParameter, match="cannot have stream=true and one-shot=true"):
        S.stats(None, container(), stream=True, one_shot=True)


def test_stopped_container_without_stream_gives_the_zero_value(monkeypatch):
    monkeypatch.setattr(S, "sample", lambda e, c: pytest.fail("must not sample"))
    docs = list(S.stats(None, container("exited"), stream=False))
    assert docs == [S.empty_stats("/web", "f" * 64)]


def fake_samples(monkeypatch, totals):
    reads = iter(range(len(totals)))
    seq = iter(totals)

    def sample(engine, c):
        t = next(seq)
        return convert({**V1_SAMPLE, "cpu": {"usage": {"total": t}}},
                       read=f"2026-01-01T00:00:0{next(reads)}Z")
    monkeypatch.setattr(S, "sample", sample)
    monkeypatch.setattr(S, "INTERVAL", 0.0)


def test_no_stream_primes_precpu_with_a_first_sample(monkeypatch):
    fake_samples(monkeypatch, [100, 250])
    docs = list(S.stats(None, container(), stream=False))
    assert len(docs) == 1
    d = docs[0]
    assert d["cpu_stats"]["cpu_usage"]["total_usage"] == 250
    assert d["precpu_stats"]["cpu_usage"]["total_usage"] == 100
    assert (d["read"], d["preread"]) == ("2026-01-01T00:00:01Z", "2026-01-01T00:00:00Z")
    assert (d["name"], d["id"]) == ("/web", "f" * 64)


def test_one_shot_is_one_sample_with_zero_precpu(monkeypatch):
    fake_samples(monkeypatch, [100])
    (d,) = list(S.stats(None, container(), stream=False, one_shot=True))
    assert d["cpu_stats"]["cpu_usage"]["total_usage"] == 100
    assert d["precpu_stats"] == S.zero_cpu() and d["preread"] == S.ZERO_TIME


def test_stream_chains_precpu_and_stops_on_request(monkeypatch):
    fake_samples(monkeypatch, [1, 2, 3, 4])
    stop = threading.Event()
    it = S.stats(None, container(), stream=True, stop=stop)
    first, second = next(it), next(it)
    assert first["precpu_stats"] == S.zero_cpu()
    assert second["precpu_stats"]["cpu_usage"]["total_usage"] == 1
    stop.set()
    assert list(it) == []


def test_stream_of_a_container_that_stops_goes_on_with_zero_values(monkeypatch):
    seq = iter([convert(V1_SAMPLE), None])
    monkeypatch.setattr(S, "sample", lambda e, c: next(seq))
    monkeypatch.setattr(S, "INTERVAL", 0.0)
    c = container()
    it = S.stats(None, c, stream=True)
    next(it)
    zero = next(it)
    assert zero["read"] == S.ZERO_TIME and zero["memory_stats"] == {}
    assert zero["precpu_stats"]["cpu_usage"]["total_usage"] == 5_000_000
    c.removed = True
    assert list(it) == []
