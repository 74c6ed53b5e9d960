"""createconfig: image defaults merged as Docker merges them, HostConfig validated with Docker's
wording and given Docker's defaults, and the user resolved inside a (possibly hostile) rootfs."""

from __future__ import annotations

import os
import re

import pytest

from bosun.engine import createconfig as cc
from bosun.engine.errors import InvalidParameter, NotFound, SystemErr

IMAGE = {
    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"],
    "Entrypoint": ["/entry.sh"],
    "Cmd": ["serve", "--port", "80"],
    "WorkingDir": "/srv",
    "User": "www",
    "StopSignal": "SIGQUIT",
    "Labels": {"maintainer": "img", "version": "1"},
    "ExposedPorts": {"80/tcp": {}},
    "Volumes": {"/var/cache": {}},
    "Healthcheck": {"Test": ["CMD", "check"], "Interval": 30_000_000_000, "Retries": 3},
    "OnBuild": ["RUN echo hi"],
}


def raises(exc, fragment: str):
    """pytest.raises that also checks the message carries `fragment`."""
    return pytest.raises(exc, match=re.escape(fragment))


# -- merge_image_config ------------------------------------------------------------------------

def test_image_defaults_fill_an_empty_request():
    out = cc.merge_image_config({"Image": "img"}, IMAGE)
    assert out["Entrypoint"] == ["/entry.sh"]
    assert out["Cmd"] == ["serve", "--port", "80"]
    assert out["WorkingDir"] == "/srv"
    assert out["User"] == "www"
    assert out["StopSignal"] == "SIGQUIT"
    assert out["Env"] == IMAGE["Env"]
    assert out["ExposedPorts"] == {"80/tcp": {}}
    assert out["Volumes"] == {"/var/cache": {}}
    assert out["Healthcheck"]["Test"] == ["CMD", "check"]
    assert "OnBuild" not in out
    assert out["Image"] == "img"


def test_request_cmd_replaces_image_cmd_but_keeps_entrypoint():
    out = cc.merge_image_config({"Cmd": ["shell"]}, IMAGE)
    assert out["Entrypoint"] == ["/entry.sh"]
    assert out["Cmd"] == ["shell"]


def test_request_entrypoint_drops_the_image_cmd():
    out = cc.merge_image_config({"Entrypoint": ["/bin/sh"]}, IMAGE)
    assert out["Entrypoint"] == ["/bin/sh"]
    assert not out.get("Cmd")
    out = cc.merge_image_config({"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "x"]}, IMAGE)
    assert (out["Entrypoint"], out["Cmd"]) == (["/bin/sh"], ["-c", "x"])


def test_empty_string_entrypoint_clears_it():
    out = cc.merge_image_config({"Entrypoint": [""], "Cmd": ["ls"]}, IMAGE)
    assert out["Entrypoint"] is None
    assert out["Cmd"] == ["ls"]
    # the image's Cmd went with its entrypoint, so nothing is left to run
    with raises(InvalidParameter, "no command specified"):
        cc.merge_image_config({"Entrypoint": [""]}, IMAGE)


def test_no_command_anywhere_is_an_error():
    with raises(InvalidParameter, "no command specified"):
        cc.merge_image_config({"Image": "x"}, {"Env": ["A=1"]})


def test_env_merged_by_name_request_wins_image_path_kept():
    out = cc.merge_image_config({"Env": ["LANG=fr_FR", "DEBUG=1"]}, IMAGE)
    assert out["Env"] == ["LANG=fr_FR", "DEBUG=1", "PATH=/usr/local/bin:/usr/bin:/bin"]


def test_labels_ports_volumes_are_unions():
    out = cc.merge_image_config({"Labels": {"version": "2", "mine": "y"},
                                 "ExposedPorts": {"443/tcp": {}},
                                 "Volumes": {"/data": {}}}, IMAGE)
    assert out["Labels"] == {"maintainer": "img", "version": "2", "mine": "y"}
    assert out["ExposedPorts"] == {"80/tcp": {}, "443/tcp": {}}
    assert out["Volumes"] == {"/data": {}, "/var/cache": {}}


def test_request_scalars_win():
    out = cc.merge_image_config({"User": "1000:1000", "WorkingDir": "/tmp//x/",
                                 "StopSignal": "SIGTERM"}, IMAGE)
    assert (out["User"], out["WorkingDir"], out["StopSignal"]) == ("1000:1000", "/tmp/x",
                                                                   "SIGTERM")


def test_healthcheck_fields_merge_individually():
    out = cc.merge_image_config({"Healthcheck": {"Interval": 5_000_000_000}}, IMAGE)
    assert out["Healthcheck"] == {"Test": ["CMD", "check"], "Interval": 5_000_000_000,
                                  "Retries": 3}
    out = cc.merge_image_config({"Healthcheck": {"Test": ["NONE"]}}, IMAGE)
    assert out["Healthcheck"]["Test"] == ["NONE"]


def test_merge_does_not_touch_its_inputs():
    req = {"Env": ["A=1"], "WorkingDir": "/a/../b", "Labels": {"x": "1"}}
    img = {"Cmd": ["c"], "Env": ["B=2"], "Labels": {"y": "2"}}
    cc.merge_image_config(req, img)
    assert req == {"Env": ["A=1"], "WorkingDir": "/a/../b", "Labels": {"x": "1"}}
    assert img == {"Cmd": ["c"], "Env": ["B=2"], "Labels": {"y": "2"}}


@pytest.mark.parametrize("config, fragment", [
    ({"WorkingDir": "rel/dir"}, ("the working directory 'rel/dir' is invalid, it needs to be "
                                 "an absolute path")),
    ({"Env": ["=x"]}, "invalid environment variable: =x"),
    ({"Volumes": {"/ok": {}, "data": {}}}, "invalid mount path: 'data' mount path must be "
                                          "absolute"),
    ({"Volumes": {"": {}}}, "invalid mount path: ''"),
    ({"StopSignal": "SIGBOGUS"}, "Invalid signal: SIGBOGUS"),
    ({"Healthcheck": {"Interval": 10}}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Healthcheck": {"Retries": -1}}, "Retries in Healthcheck cannot be negative"),
])
def test_request_config_is_validated(config, fragment):
    with raises(InvalidParameter, fragment):
        cc.merge_image_config({"Cmd": ["x"], **config}, {})


@pytest.mark.parametrize("sig, num", [("SIGKILL", 9), ("kill", 9), ("15", 15),
                                      ("SIGRTMIN+1", 35), ("RTMAX", 64)])
def test_parse_signal(sig, num):
    assert cc.parse_signal(sig) == num


# -- normalize_host_config: defaults -------------------------------------------------------------

@pytest.mark.parametrize("v2, cgns", [(False, "host"), (True, "private")])
def test_defaults_are_dockers(v2, cgns):
    hc = cc.normalize_host_config(None, cgroups_v2=v2)
    assert hc["NetworkMode"] == "bridge"
    assert hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert hc["ShmSize"] == 67108864
    assert hc["IpcMode"] == "private"
    assert hc["CgroupnsMode"] == cgns
    assert hc["OomKillDisable"] is False
    assert hc["MaskedPaths"][:2] == ["/proc/asound", "/proc/acpi"]
    assert "/proc/sys" in hc["ReadonlyPaths"]


def test_explicit_values_and_given_empty_paths_are_kept():
    hc = cc.normalize_host_config({"NetworkMode": "none", "CgroupnsMode": "host",
                                   "MaskedPaths": [], "ShmSize": 1 << 20}, cgroups_v2=True)
    assert (hc["NetworkMode"], hc["CgroupnsMode"], hc["MaskedPaths"], hc["ShmSize"]) == \
        ("none", "host", [], 1 << 20)


def test_default_network_is_stored_as_bridge_and_privileged_has_no_masked_paths():
    hc = cc.normalize_host_config({"NetworkMode": "default", "Privileged": True})
    assert hc["NetworkMode"] == "bridge"
    assert hc.get("MaskedPaths") is None and hc.get("ReadonlyPaths") is None


def test_input_is_not_modified():
    given = {"Memory": 64 << 20, "RestartPolicy": {"Name": ""}}
    cc.normalize_host_config(given)
    assert given == {"Memory": 64 << 20, "RestartPolicy": {"Name": ""}}


# -- restart policy --------------------------------------------------------------------------------

@pytest.mark.parametrize("rp, fragment", [
    ({"Name": "always", "MaximumRetryCount": 3},
     "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
    ({"Name": "no", "MaximumRetryCount": -1},
     "maximum retry count can only be used with 'on-failure' and cannot be negative"),
    ({"Name": "on-failure", "MaximumRetryCount": -2},
     "invalid restart policy: maximum retry count cannot be negative"),
    ({"Name": "sometimes"}, ("invalid restart policy: unknown policy 'sometimes'; use one of "
                             "'no', 'always', 'on-failure', or 'unless-stopped'")),
])
def test_bad_restart_policies(rp, fragment):
    with raises(InvalidParameter, fragment):
        cc.normalize_host_config({"RestartPolicy": rp})


def test_good_restart_policies():
    hc = cc.normalize_host_config({"RestartPolicy": {"Name": "on-failure",
                                                     "MaximumRetryCount": 5}})
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    hc = cc.normalize_host_config({"RestartPolicy": {"Name": "", "MaximumRetryCount": 2}})
    assert hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}


def test_auto_remove_needs_no_restart_policy():
    with raises(InvalidParameter, "can't create 'AutoRemove' container with restart policy"):
        cc.normalize_host_config({"AutoRemove": True,
                                  "RestartPolicy": {"Name": "unless-stopped"}})
    assert cc.normalize_host_config({"AutoRemove": True,
                                     "RestartPolicy": {"Name": "no"}})["AutoRemove"]


# -- resources -------------------------------------------------------------------------------------

@pytest.mark.parametrize("hc, fragment", [
    ({"Memory": 4 << 20}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 64 << 20, "MemorySwap": 32 << 20},
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    ({"MemorySwap": 64 << 20},
     "You should always set the Memory limit when using Memoryswap limit, see usage"),
    ({"MemorySwappiness": 101}, "Invalid value: 101, valid memory swappiness range is 0-100"),
    ({"MemoryReservation": 1 << 20}, "Minimum memory reservation allowed is 6MB"),
    ({"Memory": 16 << 20, "MemoryReservation": 32 << 20},
     "Minimum memory limit can not be less than memory reservation limit, see usage"),
    ({"NanoCpus": 10**9, "CpuQuota": 50000},
     "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
    ({"NanoCpus": 10**9, "CpuPeriod": 50000},
     "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
    ({"NanoCpus": 10**15}, "Range of CPUs is from 0.01 to"),
    ({"CpuPeriod": 500}, ("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than "
                          "1s (i.e. 1000000)")),
    ({"CpuQuota": 999}, "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    ({"CpuShares": -5}, "shares: invalid argument"),
    ({"CpusetCpus": "0-a"}, "Invalid value 0-a for cpuset cpus: invalid format: 0-a"),
    ({"CpusetCpus": "3-1"}, "Invalid value 3-1 for cpuset cpus"),
    ({"CpusetMems": "0,,1"}, "Invalid value 0,,1 for cpuset mems"),
    ({"BlkioDeviceReadBps": [{"Rate": 1}]}, "invalid BlkioDeviceReadBps: bad format for "
                                            "device path: "),
    ({"BlkioWeightDevice": [{"Path": "..", "Weight": 10}]}, "bad format for device path: .."),
    ({"MaskedPaths": ["proc/kcore"]}, "invalid MaskedPaths: 'proc/kcore' is not an absolute "
                                     "path"),
    ({"ReadonlyPaths": ["/x", ""]}, "invalid ReadonlyPaths: '' is not an absolute path"),
    ({"CpusetCpus": "999999999999999999999"}, "Requested CPUs are not available - requested "
                                              "999999999999999999999, available: "),
    ({"CpusetMems": "0-99999"}, "Requested memory nodes are not available"),
    ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({"OomScoreAdj": 1001}, "Invalid value 1001, range for oom score adj is [-1000, 1000]"),
    ({"ShmSize": -1}, "SHM size can not be less than 0"),
])
def test_bad_resources(hc, fragment):
    with raises(InvalidParameter, fragment):
        cc.normalize_host_config(hc)


@pytest.mark.parametrize("supported", [True, False])
def test_block_io_weights_the_kernel_cannot_take_are_discarded(monkeypatch, supported):
    monkeypatch.setattr(cc, "blkio_supported", lambda v1_file: supported)
    weights = [{"Path": "/dev/null", "Weight": 200}]
    hc = cc.normalize_host_config({"BlkioWeight": 300, "BlkioWeightDevice": weights})
    assert (hc["BlkioWeight"], hc["BlkioWeightDevice"]) == (
        (300, weights) if supported else (0, []))
    with raises(InvalidParameter, "Range of blkio weight"):  # still checked first
        cc.normalize_host_config({"BlkioWeight": 5})


def test_resource_defaults_and_normalisation():
    hc = cc.normalize_host_config({"Memory": 64 << 20, "PidsLimit": 0, "MemorySwappiness": -1,
                                   "CpusetCpus": "0,1-1"})
    assert hc["MemorySwap"] == 128 << 20  # Docker gives as much swap as memory
    assert hc["PidsLimit"] is None
    assert hc["MemorySwappiness"] is None
    assert cc.normalize_host_config({"Memory": 64 << 20, "MemorySwap": -1})["MemorySwap"] == -1
    assert cc.normalize_host_config({"PidsLimit": 100})["PidsLimit"] == 100


@pytest.mark.parametrize("ulimits, fragment", [
    ([{"Name": "bogus", "Soft": 1, "Hard": 1}], "invalid ulimit type: bogus"),
    ([{"Name": "as", "Soft": 1, "Hard": 1}], "invalid ulimit type: as"),
    ([{"Name": "nofile", "Soft": 2048, "Hard": 1024}],
     "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"),
    ([{"Name": "core", "Soft": -1, "Hard": 10}],
     "ulimit soft limit must be less than or equal to hard limit: -1 > 10"),
])
def test_bad_ulimits(ulimits, fragment):
    with raises(InvalidParameter, fragment):
        cc.normalize_host_config({"Ulimits": ulimits})


def test_good_ulimits():
    cc.normalize_host_config({"Ulimits": [{"Name": "nproc", "Soft": 10, "Hard": 20},
                                          {"Name": "core", "Soft": -1, "Hard": -1}]})


# -- mounts ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bind, fragment", [
    ("/src:rel", ("invalid volume specification: '/src:rel': invalid mount config for type "
                  "\"bind\": invalid mount path: 'rel' mount path must be absolute")),
    ("/src:/dst:rw,ro", "invalid mode: rw,ro"),
    ("/src:/dst:bogus", "invalid mode: bogus"),
    ("/dst:rw", "invalid volume specification: '/dst:rw'"),
    ("/a:/b:/c:/d", "invalid volume specification: '/a:/b:/c:/d'"),
    (":/dst", "invalid volume specification: ':/dst'"),
    ("/src:/", "destination can't be '/'"),
    ("/src:/dst:nocopy", "field VolumeOptions must not be specified"),
    ("vol:/dst:rshared", "field BindOptions must not be specified"),
    ("/anon:ro", "invalid volume specification: '/anon:ro'"),
])
def test_bad_binds(bind, fragment):
    with raises(InvalidParameter, fragment):
        cc.normalize_host_config({"Binds": [bind]})


def test_parse_bind():
    assert cc.parse_bind("/host/x/:/data:ro,rslave") == {
        "Type": "bind", "Source": "/host/x", "Destination": "/data", "RW": False,
        "Propagation": "rslave"}
    assert cc.parse_bind("/h:/d")["Propagation"] == "rprivate"
    assert cc.parse_bind("myvol:/data:nocopy") == {
        "Type": "volume", "Source": "myvol", "Destination": "/data", "RW": True,
        "Propagation": ""}
    assert cc.parse_bind("/anon")["Type"] == "volume"
    assert cc.parse_bind("/anon")["Source"] == ""


def test_named_volumes_are_kept_as_given():
    hc = cc.normalize_host_config({"Binds": ["data:/var/lib/db:z", "/tmp:/tmp2"]})
    assert hc["Binds"] == ["data:/var/lib/db:z", "/tmp:/tmp2"]


@pytest.mark.parametrize("mount, fragment", [
    ({"Type": "bind", "Source": "/nonexistent/bosun-src", "Target": "/x"},
     ('invalid mount config for type "bind": bind source path does not exist: '
      '/nonexistent/bosun-src')),
    ({"Type": "bind", "Target": "/x"},
     'invalid mount config for type "bind": field Source must not be empty'),
    ({"Type": "bind", "Source": "/tmp", "Target": ""}, "field Target must not be empty"),
    ({"Type": "bind", "Source": "/tmp", "Target": "rel"},
     "invalid mount path: 'rel' mount path must be absolute"),
    ({"Type": "bind", "Source": "/tmp", "Target": "/x",
      "BindOptions": {"Propagation": "sideways"}}, "invalid propagation mode: sideways"),
    ({"Type": "tmpfs", "Source": "x", "Target": "/x"},
     'invalid mount config for type "tmpfs": field Source must not be specified'),
    ({"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"Options": [["suid"]]}},
     "invalid option: suid"),
    ({"Type": "volume", "Target": "/x", "ReadOnly": True},
     "must not set ReadOnly mode when using anonymous volumes"),
    ({"Type": "tmpfs", "Target": "/x", "BindOptions": {}},
     'BindOptions must not be specified on mount type "tmpfs"'),
    ({"Type": "npipe", "Target": "/x"},
     'invalid mount config for type "npipe": mount type unknown'),
])
def test_bad_mounts(mount, fragment):
    with raises(InvalidParameter, fragment):
        cc.normalize_host_config({"Mounts": [mount]})


def test_good_mounts(tmp_path):
    cc.normalize_host_config({"Mounts": [
        {"Type": "bind", "Source": str(tmp_path), "Target": "/a", "ReadOnly": True,
         "BindOptions": {"Propagation": "rslave"}},
        {"Type": "bind", "Source": str(tmp_path / "later"), "Target": "/b",
         "BindOptions": {"CreateMountpoint": True}},
        {"Type": "volume", "Source": "v", "Target": "/c"},
        {"Type": "tmpfs", "Target": "/d", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o700}},
    ]})


@pytest.mark.parametrize("hc, dest", [
    ({"Binds": ["/a:/data", "/b:/data/"]}, "/data"),
    ({"Binds": ["/a:/run"], "Tmpfs": {"/run": ""}}, "/run"),
    ({"Binds": ["v:/x"], "Mounts": [{"Type": "volume", "Source": "w", "Target": "/x"}]}, "/x"),
    ({"Mounts": [{"Type": "tmpfs", "Target": "/t"}], "Tmpfs": {"/t": "size=1m"}}, "/t"),
])
def test_duplicate_mount_points(hc, dest):
    with raises(InvalidParameter, f"Duplicate mount point: {dest}"):
        cc.normalize_host_config(hc)


def test_tmpfs_destinations_and_options_are_checked():
    with raises(InvalidParameter, "invalid mount path: 'run' mount path must be absolute"):
        cc.normalize_host_config({"Tmpfs": {"run": ""}})
    with raises(InvalidParameter, 'Invalid tmpfs option ["bogus"]'):
        cc.normalize_host_config({"Tmpfs": {"/run": "size=1m,bogus"}})
    with raises(InvalidParameter, 'Invalid tmpfs option ["colour" "red"]'):
        cc.normalize_host_config({"Tmpfs": {"/run": "colour=red"}})


def test_merge_tmpfs_options_keeps_the_last_of_each():
    assert cc.merge_tmpfs_options(["noexec", "nosuid", "nodev", "rprivate", "rw", "size=1m",
                                   "exec", "size=2m", "shared"]) == \
        ["nosuid", "nodev", "rw", "exec", "size=2m", "shared"]


def test_tmpfs_data_from_mount_options():
    assert cc.tmpfs_data({"SizeBytes": 64 << 20, "Mode": 0o1777}, False) == "mode=1777,size=64m"
    assert cc.tmpfs_data({"SizeBytes": 3 << 30, "Options": [["exec"]]}, True) == \
        "ro,size=3g,exec"
    assert cc.tmpfs_data({"SizeBytes": 1000}, False) == "size=1000"


# -- namespace modes -------------------------------------------------------------------------------

@pytest.mark.parametrize("hc, exc, fragment", [
    ({"NetworkMode": "container:"}, InvalidParameter,
     "Invalid network mode: invalid container format container:<name|id>"),
    ({"NetworkMode": "container:db", "Dns": ["1.1.1.1"]}, InvalidParameter,
     "conflicting options: dns and the network mode"),
    ({"NetworkMode": "container:db", "ExtraHosts": ["a:1.2.3.4"]}, InvalidParameter,
     "conflicting options: custom host-to-IP mapping and the network mode"),
    ({"NetworkMode": "container:db", "PortBindings": {"80/tcp": [{}]}}, InvalidParameter,
     "conflicting options: port publishing and the container type network mode"),
    ({"NetworkMode": "mynet"}, NotFound, "network mynet not found"),
    ({"IpcMode": "shared"}, InvalidParameter, "invalid IPC mode: shared"),
    ({"PidMode": "private"}, InvalidParameter, "invalid PID mode: private"),
    ({"PidMode": "container:"}, InvalidParameter, "invalid PID mode: container:"),
    ({"UTSMode": "container:x"}, InvalidParameter, "invalid UTS mode: container:x"),
    ({"CgroupnsMode": "shared"}, InvalidParameter, "invalid cgroup namespace mode: shared"),
])
def test_bad_namespace_modes(hc, exc, fragment):
    with raises(exc, fragment):
        cc.normalize_host_config(hc)


def test_good_namespace_modes():
    hc = cc.normalize_host_config({"NetworkMode": "container:db", "IpcMode": "shareable",
                                   "PidMode": "host", "UTSMode": "host"})
    assert (hc["NetworkMode"], hc["IpcMode"], hc["PidMode"], hc["UTSMode"]) == \
        ("container:db", "shareable", "host", "host")
    for mode in ("host", "none", "container:abc", "private"):
        assert cc.normalize_host_config({"IpcMode": mode})["IpcMode"] == mode


# -- devices, sysctls, capabilities, security options, logging -------------------------------------

def test_devices_get_docker_cli_defaults():
    hc = cc.normalize_host_config({"Devices": [{"PathOnHost": "/dev/null"}]})
    assert hc["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/null",
                              "CgroupPermissions": "rwm"}]


@pytest.mark.parametrize("hc, fragment", [
    ({"Devices": [{"PathOnHost": "/dev/null", "CgroupPermissions": "rwx"}]},
     "bad mode specified: rwx"),
    ({"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "dev/null"}]},
     "dev/null is not an absolute path"),
    ({"Devices": [{"PathInContainer": "/dev/x"}]}, "error gathering device information"),
    ({"DeviceCgroupRules": ["c 1:3 rwx"]}, "invalid device cgroup format 'c 1:3 rwx'"),
])
def test_bad_devices(hc, fragment):
    with raises(InvalidParameter, fragment):
        cc.normalize_host_config(hc)


def test_namespaced_sysctls_are_accepted():
    cc.normalize_host_config({"Sysctls": {"kernel.shmmax": "1", "kernel.msgmax": "1",
                                          "fs.mqueue.msg_max": "1", "net.core.somaxconn": "1",
                                          "kernel.sem": "1 2 3 4"}})


@pytest.mark.parametrize("hc, fragment", [
    ({"NetworkMode": "host", "Sysctls": {"net.ipv4.ip_forward": "1"}},
     'sysctl "net.ipv4.ip_forward" not allowed in host network namespace'),
    ({"IpcMode": "host", "Sysctls": {"kernel.shmmax": "1"}},
     'sysctl "kernel.shmmax" is not allowed in the hosts ipc namespace'),
    ({"Sysctls": {"kernel.panic": "1"}},
     'sysctl "kernel.panic" is not in a separate kernel namespace'),
    ({"Sysctls": {"vm.swappiness": "1"}},
     'sysctl "vm.swappiness" is not in a separate kernel namespace'),
])
def test_bad_sysctls(hc, fragment):
    with raises(InvalidParameter, fragment):
        cc.normalize_host_config(hc)


def test_capabilities_are_checked_and_kept_as_given():
    hc = cc.normalize_host_config({"CapAdd": ["net_admin", "CAP_SYS_TIME", "ALL"],
                                   "CapDrop": ["all"]})
    assert hc["CapAdd"] == ["net_admin", "CAP_SYS_TIME", "ALL"]
    with raises(InvalidParameter, 'invalid CapAdd: unknown capability: "CAP_FLY"'):
        cc.normalize_host_config({"CapAdd": ["fly"]})
    with raises(InvalidParameter, 'invalid CapDrop: unknown capability: "CAP_BOGUS"'):
        cc.normalize_host_config({"CapDrop": ["CAP_BOGUS"]})
    assert cc.normalize_capabilities(["chown", "ALL", "Cap_Kill"]) == \
        ["CAP_CHOWN", "ALL", "CAP_KILL"]


def test_security_opts():
    parse = cc.parse_security_opts
    assert parse(None) == {"no_new_privileges": False, "seccomp": None}
    assert parse(["no-new-privileges"])["no_new_privileges"] is True
    assert parse(["no-new-privileges:true"])["no_new_privileges"] is True
    assert parse(["no-new-privileges=false"])["no_new_privileges"] is False
    assert parse(["seccomp=unconfined"])["seccomp"] == "unconfined"
    assert parse(["seccomp:unconfined"])["seccomp"] == "unconfined"
    assert parse(["seccomp=builtin"])["seccomp"] is None
    text = '{"defaultAction": "SCMP_ACT_ALLOW"}'
    assert parse(["seccomp=" + text])["seccomp"] == text
    assert parse(["label=disable", "label:disable", "apparmor=unconfined", "disable"]) == \
        {"no_new_privileges": False, "seccomp": None}


@pytest.mark.parametrize("opt, fragment", [
    ("bogus", 'invalid --security-opt 1: "bogus"'),
    ("bogus=1", 'invalid --security-opt 2: "bogus=1"'),
    ("no-new-privileges=maybe", 'invalid --security-opt 2: "no-new-privileges=maybe"'),
    ("seccomp={not json", "Decoding seccomp profile failed"),
])
def test_bad_security_opts(opt, fragment):
    with raises(InvalidParameter, fragment):
        cc.normalize_host_config({"SecurityOpt": [opt]})


def test_log_config():
    hc = cc.normalize_host_config({"LogConfig": {"Type": "local",
                                                 "Config": {"max-size": "10m"}}})
    assert hc["LogConfig"] == {"Type": "local", "Config": {"max-size": "10m"}}
    assert cc.normalize_host_config({"LogConfig": {"Type": "none"}})["LogConfig"]["Type"] == "none"
    with raises(InvalidParameter, "logger: no log driver named 'syslog' is registered"):
        cc.normalize_host_config({"LogConfig": {"Type": "syslog"}})
    with raises(InvalidParameter, "unknown log opt 'colour' for json-file log driver"):
        cc.normalize_host_config({"LogConfig": {"Config": {"colour": "red"}}})
    with raises(InvalidParameter, "logger: logging mode not supported: fast"):
        cc.normalize_host_config({"LogConfig": {"Config": {"mode": "fast"}}})


# -- resolve_user ----------------------------------------------------------------------------------

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www:x:33:33:www-data:/var/www:/usr/sbin/nologin
alice:x:1000:1000::/home/alice:/bin/sh
"""
GROUP = """root:x:0:
daemon:x:1:
www:x:33:
audio:x:29:alice,bob
video:x:44:alice
staff:x:50:
alice:x:1000:
"""


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


@pytest.mark.parametrize("spec, want", [
    ("", (0, 0, [])),
    ("root", (0, 0, [])),
    ("www", (33, 33, [])),
    ("alice", (1000, 1000, [29, 44])),  # her supplementary groups come along
    ("1000", (1000, 1000, [29, 44])),
    ("4242", (4242, 0, [])),  # a uid without an entry runs with gid 0
    ("alice:staff", (1000, 50, [])),  # an explicit group: no supplementary groups
    ("alice:44", (1000, 44, [])),
    ("4242:4343", (4242, 4343, [])),
    ("www:7777", (33, 7777, [])),
])
def test_resolve_user(rootfs, spec, want):
    assert cc.resolve_user(str(rootfs), spec, []) == want


def test_group_add_by_name_and_id(rootfs):
    assert cc.resolve_user(str(rootfs), "www", ["audio", "50", "9999", "audio"]) == \
        (33, 33, [29, 50, 9999])
    assert cc.resolve_user(str(rootfs), "alice", ["video", "staff"]) == (1000, 1000, [29, 44, 50])


def test_unknown_names_are_errors(rootfs):
    with raises(SystemErr, "unable to find user xyz: no matching entries in passwd file"):
        cc.resolve_user(str(rootfs), "xyz", [])
    with raises(SystemErr, "unable to find group nogroup: no matching entries in group file"):
        cc.resolve_user(str(rootfs), "www:nogroup", [])
    with raises(SystemErr, "Unable to find group nogroup"):
        cc.resolve_user(str(rootfs), "www", ["nogroup"])
    with raises(SystemErr, "uids and gids must be in range 0-2147483647"):
        cc.resolve_user(str(rootfs), "4294967296", [])


def test_rootfs_without_passwd(tmp_path):
    (tmp_path / "etc").mkdir()
    assert cc.resolve_user(str(tmp_path), "", []) == (0, 0, [])
    assert cc.resolve_user(str(tmp_path), "123:456", ["7"]) == (123, 456, [7])
    with raises(SystemErr, "unable to find user alice"):
        cc.resolve_user(str(tmp_path), "alice", [])


def test_an_open_directory_fd_works(rootfs):
    fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY)
    try:
        assert cc.resolve_user(fd, "www", []) == (33, 33, [])
        os.fstat(fd)  # still ours, still open
    finally:
        os.close(fd)


def test_absolute_symlink_resolves_inside_the_rootfs(tmp_path, rootfs):
    """A hostile image's /etc/passwd → /<a host path>: the host file must never be read."""
    host_db = tmp_path / "host" / "passwd"
    host_db.parent.mkdir()
    host_db.write_text("evil:x:666:666::/:/bin/sh\n")
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to(host_db)
    with raises(SystemErr, "unable to find user evil"):
        cc.resolve_user(str(rootfs), "evil", [])
    # the same absolute path, inside the rootfs, is what the link means there
    inside = rootfs / str(host_db).lstrip("/")
    inside.parent.mkdir(parents=True)
    inside.write_text("evil:x:1234:1234::/:/bin/sh\n")
    assert cc.resolve_user(str(rootfs), "evil", []) == (1234, 1234, [])


def test_dotdot_symlink_cannot_climb_out(tmp_path, rootfs):
    (tmp_path / "passwd").write_text("evil:x:666:666::/:/bin/sh\n")
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to("../../../../../../passwd")
    with raises(SystemErr, "unable to find user evil"):
        cc.resolve_user(str(rootfs), "evil", [])
    (rootfs / "passwd").write_text("evil:x:77:78::/:/bin/sh\n")
    assert cc.resolve_user(str(rootfs), "evil", []) == (77, 78, [])


def test_a_fifo_passwd_does_not_block(rootfs):
    (rootfs / "etc" / "group").unlink()
    os.mkfifo(rootfs / "etc" / "group")
    assert cc.resolve_user(str(rootfs), "alice", []) == (1000, 1000, [])
