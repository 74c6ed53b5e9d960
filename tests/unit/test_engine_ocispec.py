"""ocispec.build_spec: a stored container → the config.json `docker run` would give, and one
that bosun-runtime's own validation accepts."""

from __future__ import annotations

import json
import os
import re
import resource
import stat

import pytest

from bosun.engine import createconfig as cc
from bosun.engine import ocispec as oc
from bosun.engine.errors import Conflict, InvalidParameter
from bosun.kernel import caps as capnames
from bosun.runtime import spec as runtime_spec

CID = "0123456789ab" + "c" * 52
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
BASE = ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
FILES = {"hostname_path": "/h/hostname", "hosts_path": "/h/hosts",
         "resolv_path": "/h/resolv.conf"}


def container(config: dict | None = None, v2: bool = False, **hc) -> dict:
    """A stored container as the engine keeps it: merged Config, normalized HostConfig."""
    cfg = cc.merge_image_config({"Hostname": "0123456789ab", **(config or {})},
                                {"Cmd": ["sh"], "Env": ["PATH=/usr/bin:/bin"]})
    cmd = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
    return {"Id": CID, "Name": "/test", "Path": cmd[0], "Args": cmd[1:], "Config": cfg,
            "HostConfig": cc.normalize_host_config(hc, cgroups_v2=v2)}


def build(c: dict, **kw) -> dict:
    args = {"rootfs": "rootfs", "user": (0, 0, []), "init_path": None, **FILES, **kw}
    return oc.build_spec(c, **args)


@pytest.fixture(autouse=True)
def block_io_weights(monkeypatch):
    """The host's I/O scheduler decides whether weights are kept (createconfig): here they
    are, whatever this machine's is."""
    monkeypatch.setattr(cc, "blkio_supported", lambda v1_file: True)


@pytest.fixture
def validate(tmp_path):
    """Write the spec as config.json in a bundle and load it with bosun-runtime's loader."""
    (tmp_path / "rootfs").mkdir()

    def check(spec: dict) -> dict:
        (tmp_path / "config.json").write_text(json.dumps(spec))
        return runtime_spec.load(str(tmp_path))
    return check


def mount(spec: dict, dest: str) -> dict:
    found = [m for m in spec["mounts"] if m["destination"] == dest]
    assert len(found) == 1, f"{dest}: {found}"
    return found[0]


def dests(spec: dict) -> list[str]:
    return [m["destination"] for m in spec["mounts"]]


def ns_types(spec: dict) -> list[str]:
    return [n["type"] for n in spec["linux"]["namespaces"]]


def allowed_syscalls(spec: dict) -> set[str]:
    return {n for r in spec["linux"]["seccomp"]["syscalls"]
            if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]}


# -- the default container ---------------------------------------------------------------------

def test_default_container(validate):
    spec = build(container())
    validate(spec)
    p = spec["process"]
    assert p["args"] == ["sh"]
    assert p["cwd"] == "/"
    assert p["terminal"] is False
    assert p["env"] == ["PATH=/usr/bin:/bin", "HOSTNAME=0123456789ab"]
    assert p["user"] == {"uid": 0, "gid": 0}
    assert set(p["capabilities"]) == {"bounding", "effective", "permitted"}
    assert all(p["capabilities"][k] == DOCKER_CAPS for k in p["capabilities"])
    assert p["noNewPrivileges"] is False
    assert p["oomScoreAdj"] == 0
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["hostname"] == "0123456789ab"
    assert "domainname" not in spec
    linux = spec["linux"]
    assert ns_types(spec) == ["mount", "network", "uts", "pid", "ipc"]
    assert linux["cgroupsPath"] == f"bosun/{CID}"
    assert linux["maskedPaths"] == list(cc.DEFAULT_MASKED_PATHS)
    assert linux["readonlyPaths"] == list(cc.DEFAULT_READONLY_PATHS)
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in \
        linux["resources"]["devices"]
    assert linux["devices"] == []
    assert "memory" not in linux["resources"] and "cpu" not in linux["resources"]


def test_default_mounts_in_dockers_order_and_options():
    spec = build(container())
    assert dests(spec) == BASE + ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts"]
    assert mount(spec, "/dev")["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert mount(spec, "/dev/pts")["options"] == ["nosuid", "noexec", "newinstance",
                                                  "ptmxmode=0666", "mode=0620", "gid=5"]
    assert "ro" in mount(spec, "/sys")["options"]
    assert mount(spec, "/sys/fs/cgroup")["type"] == "cgroup"
    assert "ro" in mount(spec, "/sys/fs/cgroup")["options"]
    assert mount(spec, "/dev/shm")["options"] == ["nosuid", "noexec", "nodev", "mode=1777",
                                                  "size=67108864"]
    assert mount(spec, "/etc/hosts") == {"destination": "/etc/hosts", "type": "bind",
                                         "source": "/h/hosts", "options": ["rbind", "rprivate"]}


def test_network_files_are_left_out_when_not_given():
    spec = build(container(), hostname_path=None, hosts_path=None, resolv_path=None)
    assert dests(spec) == BASE


def test_shm_size_and_cgroup_parent():
    c = container(ShmSize=1 << 20, CgroupParent="/custom")
    spec = build(c)
    assert mount(spec, "/dev/shm")["options"][-1] == "size=1048576"
    assert spec["linux"]["cgroupsPath"] == f"/custom/{CID}"
    assert build(container(), cgroup_parent="/docker/")["linux"]["cgroupsPath"] == \
        f"/docker/{CID}"


# -- process -------------------------------------------------------------------------------------

def test_env_tty_workdir_and_user(validate):
    c = container({"Tty": True, "Env": ["PATH=/opt/bin", "HOSTNAME", "A=1"],
                   "WorkingDir": "/work"}, ConsoleSize=[40, 120])
    spec = build(c, user=(1000, 1000, [29, 44]))
    validate(spec)
    p = spec["process"]
    # PATH replaced in place, HOSTNAME unset by a bare name, TERM for the tty
    assert p["env"] == ["PATH=/opt/bin", "TERM=xterm", "A=1"]
    assert p["terminal"] is True
    assert p["cwd"] == "/work"
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [29, 44]}
    assert p["consoleSize"] == {"height": 40, "width": 120}


def test_container_env_keeps_default_path_when_none_given():
    assert oc.container_env({"Env": ["X=1"]}, "h") == [
        f"PATH={oc.DEFAULT_PATH_ENV}", "HOSTNAME=h", "X=1"]


def test_capability_add_and_drop(validate):
    spec = build(container(CapAdd=["net_admin", "CAP_SYS_ADMIN"], CapDrop=["MKNOD", "cap_chown"]))
    validate(spec)
    caps = spec["process"]["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in caps and "CAP_SYS_ADMIN" in caps
    assert "CAP_MKNOD" not in caps and "CAP_CHOWN" not in caps
    assert set(caps) == set(DOCKER_CAPS) - {"CAP_MKNOD", "CAP_CHOWN"} | {"CAP_NET_ADMIN",
                                                                        "CAP_SYS_ADMIN"}
    # the default seccomp profile follows the capabilities
    assert {"unshare", "mount", "setns"} <= allowed_syscalls(spec)
    assert "unshare" not in allowed_syscalls(build(container()))


def test_capability_all():
    every = oc.capabilities({"CapAdd": ["ALL"], "CapDrop": ["NET_RAW"]})
    assert "CAP_NET_RAW" not in every and "CAP_SYS_ADMIN" in every
    assert len(every) == len(cc.known_capabilities()) - 1
    assert oc.capabilities({"CapDrop": ["ALL"], "CapAdd": ["CHOWN"]}) == ["CAP_CHOWN"]
    assert oc.capabilities({"CapDrop": ["ALL"]}) == []
    assert oc.capabilities({"CapAdd": ["KILL"]}) == DOCKER_CAPS  # no duplicates


def test_privileged(validate):
    spec = build(container(Privileged=True))
    validate(spec)
    assert spec["process"]["capabilities"]["bounding"] == \
        list(capnames.NAMES[:len(cc.known_capabilities())])
    linux = spec["linux"]
    assert "seccomp" not in linux
    assert "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "ro" not in mount(spec, "/sys")["options"]
    assert "ro" not in mount(spec, "/sys/fs/cgroup")["options"]


def test_no_new_privileges_and_oom_score():
    spec = build(container(SecurityOpt=["no-new-privileges"], OomScoreAdj=-500))
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["oomScoreAdj"] == -500


def test_ulimits(validate):
    c = container(Ulimits=[{"Name": "nproc", "Soft": 100, "Hard": 200},
                           {"Name": "core", "Soft": -1, "Hard": -1}])
    spec = build(c)
    validate(spec)
    rl = {r["type"]: (r["soft"], r["hard"]) for r in spec["process"]["rlimits"]}
    assert rl["RLIMIT_NPROC"] == (100, 200)
    assert rl["RLIMIT_CORE"] == (2**64 - 1, 2**64 - 1)
    # nofile is bosun's daemon default, never above what we may set
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = oc.DEFAULT_NOFILE if hard == resource.RLIM_INFINITY else min(oc.DEFAULT_NOFILE, hard)
    assert rl["RLIMIT_NOFILE"] == (want, want)
    spec = build(container(Ulimits=[{"Name": "nofile", "Soft": 64, "Hard": 128}]))
    assert [r for r in spec["process"]["rlimits"] if r["type"] == "RLIMIT_NOFILE"] == \
        [{"type": "RLIMIT_NOFILE", "soft": 64, "hard": 128}]


def test_init(validate):
    spec = build(container({"Entrypoint": ["/app"], "Cmd": ["-v"]}, Init=True),
                 init_path="/usr/bin/docker-init")
    validate(spec)
    assert spec["process"]["args"] == ["/sbin/docker-init", "--", "/app", "-v"]
    init = mount(spec, "/sbin/docker-init")
    assert init == {"destination": "/sbin/docker-init", "type": "bind",
                    "source": "/usr/bin/docker-init", "options": ["bind", "ro"]}
    assert dests(spec).index("/sbin/docker-init") == len(BASE)  # after the base mounts
    # no init where the pid namespace is not the container's own, nor without a binary
    host_pid = build(container(Init=True, PidMode="host"), init_path="/usr/bin/docker-init")
    assert host_pid["process"]["args"][0] == "sh"
    assert build(container(Init=True))["process"]["args"] == ["sh"]


# -- mounts ----------------------------------------------------------------------------------------

def test_readonly_rootfs(validate):
    spec = build(container(ReadonlyRootfs=True, Binds=["/srv:/srv"]))
    validate(spec)
    assert spec["root"]["readonly"] is True
    for dest in ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts"):
        assert mount(spec, dest)["options"] == ["rbind", "ro", "rprivate"]
    assert "ro" not in mount(spec, "/srv")["options"]  # the user's own say
    assert "ro" not in mount(spec, "/dev/shm")["options"]
    assert "ro" not in mount(spec, "/proc")["options"]


def test_user_binds_volumes_and_order(validate):
    c = container(Binds=["/h/data/sub:/data/sub:ro,rslave", "/h/data:/data", "db:/var/lib/db",
                         "/anon"],
                  Tmpfs={"/run": "exec,size=1m"},
                  Mounts=[{"Type": "bind", "Source": "/tmp", "Target": "/mnt/tmp",
                           "ReadOnly": True, "BindOptions": {"NonRecursive": True}},
                          {"Type": "tmpfs", "Target": "/scratch",
                           "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1777}}])
    spec = build(c, volume_mounts=[{"Destination": "/var/lib/db", "Source": "/vol/db/_data"},
                                   {"Destination": "/anon", "Source": "/vol/anon/_data"}])
    validate(spec)
    order = dests(spec)
    assert order[:len(BASE)] == BASE
    user = order[len(BASE):]
    assert user.index("/data") < user.index("/data/sub")
    depth = [len(d.split("/")) for d in user]
    assert depth == sorted(depth)  # parents before children
    assert mount(spec, "/data")["options"] == ["rbind", "rprivate"]
    assert mount(spec, "/data/sub") == {"destination": "/data/sub", "type": "bind",
                                        "source": "/h/data/sub",
                                        "options": ["rbind", "ro", "rslave"]}
    assert mount(spec, "/var/lib/db") == {"destination": "/var/lib/db", "type": "bind",
                                          "source": "/vol/db/_data", "options": ["rbind"]}
    assert mount(spec, "/anon")["source"] == "/vol/anon/_data"
    assert mount(spec, "/mnt/tmp")["options"] == ["bind", "ro", "rprivate"]
    assert mount(spec, "/run") == {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                                   "options": ["nosuid", "nodev", "rprivate", "exec",
                                               "size=1m"]}
    assert mount(spec, "/scratch")["options"] == ["noexec", "nosuid", "nodev", "rprivate",
                                                  "mode=1777", "size=1m"]


def test_resolved_volumes_are_mounted_as_given():
    c = container({"Volumes": {"/var/cache": {}}}, Binds=["/h/data:/data"])
    spec = build(c, volume_mounts=[
        {"Destination": "/var/cache", "Source": "/vol/anon1/_data"},
        {"Destination": "/shared", "Source": "/proc/1/fd/7", "RW": False,
         "Propagation": "rslave"}])
    assert mount(spec, "/var/cache") == {"destination": "/var/cache", "type": "bind",
                                         "source": "/vol/anon1/_data", "options": ["rbind"]}
    assert mount(spec, "/shared")["options"] == ["rbind", "ro", "rslave"]
    assert mount(spec, "/data")["source"] == "/h/data"


def test_missing_volume_is_an_error():
    with pytest.raises(InvalidParameter, match="no such volume: db"):
        build(container(Binds=["db:/db"]))
    with pytest.raises(InvalidParameter, match="anonymous volume for /cache"):
        build(container(Mounts=[{"Type": "volume", "Target": "/cache"}]), volume_mounts=[])


def test_user_mounts_override_defaults():
    spec = build(container(Binds=["/my/hosts:/etc/hosts:ro", "/my/dev:/dev"],
                           Tmpfs={"/dev/shm": "size=8m"}))
    assert mount(spec, "/etc/hosts")["source"] == "/my/hosts"
    assert mount(spec, "/dev")["source"] == "/my/dev"
    # a user /dev takes everything below it away from the defaults
    assert "/dev/pts" not in dests(spec) and "/dev/mqueue" not in dests(spec)
    assert mount(spec, "/dev/shm")["source"] == "tmpfs"


# -- namespaces ------------------------------------------------------------------------------------

def test_host_namespaces(validate):
    c = container(NetworkMode="host", PidMode="host", IpcMode="host", UTSMode="host")
    spec = build(c)
    validate(spec)
    assert ns_types(spec) == ["mount"]
    assert "hostname" not in spec
    assert mount(spec, "/dev/shm") == {"destination": "/dev/shm", "type": "bind",
                                       "source": "/dev/shm", "options": ["rbind", "rprivate"]}
    assert not any(k.startswith("net.") for k in spec["linux"]["sysctl"])


def test_joined_namespaces(validate):
    c = container(NetworkMode="container:web", PidMode="container:web", IpcMode="container:web")
    paths = {"network": "/proc/42/ns/net", "pid": "/proc/42/ns/pid", "ipc": "/proc/42/ns/ipc"}
    spec = build(c, ns_paths=paths, shm_path="/var/lib/bosun/containers/web/shm")
    validate(spec)
    by_type = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert by_type == {"mount": None, "network": "/proc/42/ns/net", "uts": None,
                       "pid": "/proc/42/ns/pid", "ipc": "/proc/42/ns/ipc"}
    assert mount(spec, "/dev/shm")["source"] == "/var/lib/bosun/containers/web/shm"
    with pytest.raises(Conflict, match="cannot join PID of a non running container: web"):
        build(c, ns_paths={"network": "/proc/42/ns/net", "ipc": "/proc/42/ns/ipc"})


def test_prepared_netns_and_none(validate):
    spec = build(container(), netns_path="/run/bosun/netns/x")
    validate(spec)
    assert {"type": "network", "path": "/run/bosun/netns/x"} in spec["linux"]["namespaces"]
    spec = build(container(NetworkMode="none"))
    assert {"type": "network"} in spec["linux"]["namespaces"]


def test_ipc_none_and_shareable():
    assert "/dev/shm" not in dests(build(container(IpcMode="none")))
    spec = build(container(IpcMode="shareable"), shm_path="/shm/x")
    assert mount(spec, "/dev/shm")["type"] == "bind"
    assert {"type": "ipc"} in spec["linux"]["namespaces"]


@pytest.mark.parametrize("v2, mode, has_cgroupns", [
    (True, None, True), (False, None, False), (False, "private", True), (True, "host", False)])
def test_cgroup_namespace(v2, mode, has_cgroupns):
    c = container(v2=v2, **({"CgroupnsMode": mode} if mode else {}))
    assert ("cgroup" in ns_types(build(c, cgroups_v2=v2))) is has_cgroupns


def test_uts_hostname_and_domainname(validate):
    spec = build(container({"Hostname": "web", "Domainname": "example.org"}))
    validate(spec)
    assert (spec["hostname"], spec["domainname"]) == ("web", "example.org")
    assert "HOSTNAME=web" in spec["process"]["env"]


# -- resources, sysctls, devices ---------------------------------------------------------------

def test_resources_v1(validate):
    c = container(Memory=64 << 20, MemoryReservation=32 << 20, MemorySwappiness=10,
                  OomKillDisable=True, NanoCpus=1_500_000_000, CpuShares=512,
                  CpusetCpus="0", CpusetMems="0", PidsLimit=100, BlkioWeight=300)
    spec = build(c)
    validate(spec)
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20,
                             "swappiness": 10, "disableOOMKiller": True}
    assert res["cpu"] == {"shares": 512, "cpus": "0", "mems": "0", "period": 100000,
                          "quota": 150000}
    assert res["pids"] == {"limit": 100}
    assert res["blockIO"] == {"weight": 300}


def test_resources_v2_unlimited_swap_and_explicit_cfs():
    c = container(v2=True, Memory=64 << 20, MemorySwap=-1, MemorySwappiness=10,
                  OomKillDisable=True, CpuPeriod=50000, CpuQuota=25000)
    res = build(c, cgroups_v2=True)["linux"]["resources"]
    # -1 is left out (a new cgroup's swap is unlimited); v2 has neither knob, as Docker drops
    assert res["memory"] == {"limit": 64 << 20}
    assert res["cpu"] == {"period": 50000, "quota": 25000}
    assert "pids" not in res


def _a_block_device() -> tuple[str, int, int]:
    for name in sorted(os.listdir("/dev")):
        st = os.stat(f"/dev/{name}")
        if stat.S_ISBLK(st.st_mode):
            return f"/dev/{name}", os.major(st.st_rdev), os.minor(st.st_rdev)
    pytest.skip("no block device in /dev")


def test_block_io_devices_are_stat_ed():
    path, major, minor = _a_block_device()
    c = container(BlkioWeightDevice=[{"Path": path, "Weight": 200}],
                  BlkioDeviceReadBps=[{"Path": path, "Rate": 1024}])
    bio = build(c)["linux"]["resources"]["blockIO"]
    assert bio["weightDevice"] == [{"major": major, "minor": minor, "weight": 200}]
    assert bio["throttleReadBpsDevice"] == [{"major": major, "minor": minor, "rate": 1024}]
    with pytest.raises(InvalidParameter, match="stat /dev/nonexistent-bosun"):
        build(container(BlkioDeviceWriteIOps=[{"Path": "/dev/nonexistent-bosun", "Rate": 1}]))
    with pytest.raises(InvalidParameter, match="/dev/null is not a block device"):
        build(container(BlkioDeviceWriteIOps=[{"Path": "/dev/null", "Rate": 1}]))


def test_sysctls(validate):
    spec = build(container(Sysctls={"net.core.somaxconn": "1024", "kernel.shmmax": "65536"}))
    validate(spec)
    sysctl = spec["linux"]["sysctl"]
    assert sysctl["net.core.somaxconn"] == "1024"
    assert sysctl["kernel.shmmax"] == "65536"
    if os.path.exists("/proc/sys/net/ipv4/ip_unprivileged_port_start"):
        assert sysctl["net.ipv4.ip_unprivileged_port_start"] == "0"
    override = build(container(Sysctls={"net.ipv4.ip_unprivileged_port_start": "1024"}))
    assert override["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"] == "1024"
    # a namespace the engine prepared gets none of Docker's network defaults
    assert build(container(), netns_path="/run/netns/x")["linux"]["sysctl"] == {}


def test_devices(validate):
    c = container(Devices=[{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
                            "CgroupPermissions": "rw"}],
                  DeviceCgroupRules=["c 4:* rwm", "b *:* m"])
    spec = build(c)
    validate(spec)
    st = os.stat("/dev/null")
    assert spec["linux"]["devices"] == [{"path": "/dev/mynull", "type": "c", "major": 1,
                                         "minor": 3, "fileMode": st.st_mode & 0o7777,
                                         "uid": st.st_uid, "gid": st.st_gid}]
    rules = spec["linux"]["resources"]["devices"]
    assert rules[:len(oc.BASE_DEVICE_RULES)] == list(oc.BASE_DEVICE_RULES)
    assert rules[len(oc.BASE_DEVICE_RULES):] == [
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        {"allow": True, "type": "c", "major": 4, "access": "rwm"},
        {"allow": True, "type": "b", "access": "m"}]


def test_device_errors(tmp_path):
    with pytest.raises(InvalidParameter, match=re.escape(
            'error gathering device information while adding custom device '
            '"/dev/nonexistent-bosun": no such file or directory')):
        build(container(Devices=[{"PathOnHost": "/dev/nonexistent-bosun"}]))
    (tmp_path / "f").write_text("")
    with pytest.raises(InvalidParameter, match="not a device node"):
        build(container(Devices=[{"PathOnHost": str(tmp_path)}]))


def test_device_symlink_is_followed(tmp_path):
    (tmp_path / "link").symlink_to("/dev/zero")
    nodes, rules = oc.devices_from_path(str(tmp_path / "link"), "/dev/z", "r")
    assert (nodes[0]["path"], nodes[0]["major"], nodes[0]["minor"]) == ("/dev/z", 1, 5)
    assert rules == [{"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"}]


# -- seccomp ---------------------------------------------------------------------------------------

def test_seccomp_default_and_unconfined():
    spec = build(container())
    prof = spec["linux"]["seccomp"]
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "read" in allowed_syscalls(spec) and "reboot" not in allowed_syscalls(spec)
    assert "seccomp" not in build(container(SecurityOpt=["seccomp=unconfined"]))["linux"]


def test_default_profile_compiles():
    pytest.importorskip("seccomp")
    from bosun.runtime import seccomp_filter

    seccomp_filter.build(build(container(CapAdd=["SYS_ADMIN"]))["linux"]["seccomp"])


PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                 "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"name": "personality", "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ],
}


def test_custom_profile_is_specialised_like_dockers():
    text = json.dumps(PROFILE)
    out = oc.profile_from_json(text, DOCKER_CAPS, machine="x86_64", kernel="6.1.0-13-amd64")
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert out["defaultErrnoRet"] == 1
    names = [r["names"] for r in out["syscalls"]]
    assert names == [["read", "write"], ["ptrace"], ["arch_prctl"], ["clone"], ["personality"]]
    assert out["syscalls"][3]["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    assert out["syscalls"][4] == {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                  "errnoRet": 38}
    admin = oc.profile_from_json(text, DOCKER_CAPS + ["CAP_SYS_ADMIN"], machine="aarch64",
                                 kernel="4.4.0")
    assert admin["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert [r["names"] for r in admin["syscalls"]] == [["read", "write"], ["mount"],
                                                       ["personality"]]


def test_custom_profile_through_security_opt(validate):
    spec = build(container(SecurityOpt=["seccomp=" + json.dumps(PROFILE)]))
    validate(spec)
    assert ["read", "write"] in [r["names"] for r in spec["linux"]["seccomp"]["syscalls"]]
    assert oc.profile_from_json("{}", []) is None  # nothing in it: seccomp off, as Docker


@pytest.mark.parametrize("profile, fragment", [
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
      "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]},
     "'architectures' and 'archMap' were specified in the seccomp profile"),
    ({"defaultAction": "SCMP_ACT_ERRNO",
      "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]},
     "'name' and 'names' were specified in the seccomp profile"),
])
def test_bad_custom_profiles(profile, fragment):
    with pytest.raises(InvalidParameter, match=re.escape(fragment)):
        oc.profile_from_json(json.dumps(profile), [])


def test_annotations_are_passed_on():
    spec = build(container(Annotations={"org.example/key": "v"}))
    assert spec["annotations"] == {"org.example/key": "v"}
