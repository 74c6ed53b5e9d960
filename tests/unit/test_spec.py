"""spec.validate / spec.load: every rejected config gives a ConfigError that says what is wrong."""

from __future__ import annotations

import json
import os
import resource

import pytest

from bosun.runtime import spec
from bosun.runtime.errors import ConfigError, RuntimeErr


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def minimal() -> dict:
    return {"ociVersion": "1.2.0", "root": {"path": "rootfs"}}


def with_linux(**linux) -> dict:
    c = minimal()
    c["linux"] = linux
    return c


def with_process(**process) -> dict:
    c = minimal()
    c["process"] = {"args": ["sh"], "cwd": "/", **process}
    return c


def rejects(config, bundle, *fragments) -> str:
    """validate() must raise ConfigError whose message contains every fragment."""
    with pytest.raises(ConfigError) as ei:
        spec.validate(config, str(bundle))
    msg = str(ei.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    assert "\n" not in msg
    return msg


# -- the basics ------------------------------------------------------------------------------

def test_minimal_config_is_valid_and_root_path_is_made_absolute(bundle):
    c = minimal()
    spec.validate(c, str(bundle))
    assert c["root"]["path"] == os.path.realpath(bundle / "rootfs")
    assert os.path.isabs(c["root"]["path"])


def test_root_path_is_resolved_through_symlinks(bundle, tmp_path_factory):
    link = tmp_path_factory.mktemp("links") / "b"
    link.symlink_to(bundle)
    c = minimal()
    spec.validate(c, str(link))
    assert c["root"]["path"] == str((bundle / "rootfs").resolve())


def test_absolute_root_path_is_kept(bundle, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("rootfs-elsewhere")
    c = minimal()
    c["root"]["path"] = str(elsewhere)
    spec.validate(c, str(bundle))
    assert c["root"]["path"] == os.path.realpath(elsewhere)


def test_config_error_is_a_runtime_error():
    # the CLI turns RuntimeErr into a one-line message; ConfigError must be one
    assert issubclass(ConfigError, RuntimeErr)


@pytest.mark.parametrize("config", [[], "x", 1, None, ["ociVersion"]])
def test_not_an_object(bundle, config):
    rejects(config, bundle, "JSON object")


@pytest.mark.parametrize("version", [None, 1, 1.2, ["1.2.0"]])
def test_oci_version_required_and_a_string(bundle, version):
    c = minimal()
    if version is None:
        del c["ociVersion"]
    else:
        c["ociVersion"] = version
    rejects(c, bundle, "ociVersion")


@pytest.mark.parametrize("root", [None, {}, {"path": ""}, {"path": 5}, {"readonly": True}])
def test_root_path_required(bundle, root):
    c = minimal()
    if root is None:
        del c["root"]
    else:
        c["root"] = root
    rejects(c, bundle, "root.path")


def test_root_must_be_an_object(bundle):
    c = minimal()
    c["root"] = "rootfs"
    rejects(c, bundle, "root")


def test_missing_rootfs_dir(bundle):
    c = minimal()
    c["root"]["path"] = "nope"
    rejects(c, bundle, "rootfs", str(bundle / "nope"), "does not exist")


def test_rootfs_that_is_a_file(bundle):
    (bundle / "afile").write_text("")
    c = minimal()
    c["root"]["path"] = "afile"
    rejects(c, bundle, "not a directory")


# -- namespaces --------------------------------------------------------------------------------

def test_all_known_namespaces_accepted(bundle):
    c = with_linux(namespaces=[{"type": t} for t in spec.NAMESPACES if t != "user"])
    spec.validate(c, str(bundle))


def test_unknown_namespace(bundle):
    rejects(with_linux(namespaces=[{"type": "pid"}, {"type": "bogus"}]), bundle,
            "unknown namespace", "'bogus'")


def test_duplicate_namespace(bundle):
    rejects(with_linux(namespaces=[{"type": "ipc"}, {"type": "pid"}, {"type": "ipc"}]), bundle,
            "'ipc'", "twice")


@pytest.mark.parametrize("entry", ["pid", {}, {"type": 3}, {"path": "/proc/1/ns/pid"}])
def test_namespace_entry_needs_a_type(bundle, entry):
    rejects(with_linux(namespaces=[entry]), bundle, "need a type")


def test_namespaces_must_be_an_array(bundle):
    rejects(with_linux(namespaces={"type": "pid"}), bundle, "namespaces")


def test_namespace_path_must_be_absolute(bundle):
    rejects(with_linux(namespaces=[{"type": "network", "path": "proc/1/ns/net"}]), bundle,
            "network", "absolute")


def test_namespace_absolute_path_accepted(bundle):
    spec.validate(with_linux(namespaces=[{"type": "network", "path": "/proc/1/ns/net"}]),
                  str(bundle))


MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


@pytest.mark.parametrize("key", ["uidMappings", "gidMappings"])
def test_mappings_without_user_namespace(bundle, key):
    rejects(with_linux(namespaces=[{"type": "pid"}], **{key: MAP}), bundle,
            "mappings", "user namespace")


@pytest.mark.parametrize("present", [(), ("uidMappings",), ("gidMappings",)])
def test_new_user_namespace_needs_both_mappings(bundle, present):
    c = with_linux(namespaces=[{"type": "user"}], **{k: MAP for k in present})
    rejects(c, bundle, "uidMappings and gidMappings")


def test_user_namespace_with_mappings_is_valid(bundle):
    spec.validate(with_linux(namespaces=[{"type": "user"}], uidMappings=MAP, gidMappings=MAP),
                  str(bundle))


def test_joined_user_namespace_needs_no_mappings(bundle):
    spec.validate(with_linux(namespaces=[{"type": "user", "path": "/proc/1/ns/user"}]),
                  str(bundle))


@pytest.mark.parametrize("entry", [
    {"containerID": 0, "hostID": 1000},                       # no size
    {"containerID": -1, "hostID": 1000, "size": 1},
    {"containerID": 0, "hostID": "1000", "size": 1},
    "0:1000:1",
])
def test_bad_mapping_entries(bundle, entry):
    c = with_linux(namespaces=[{"type": "user"}], uidMappings=MAP, gidMappings=[entry])
    rejects(c, bundle, "linux.gidMappings", "non-negative")


@pytest.mark.parametrize("key", ["hostname", "domainname"])
def test_hostname_needs_new_uts_namespace(bundle, key):
    c = with_linux(namespaces=[{"type": "pid"}])
    c[key] = "box"
    rejects(c, bundle, key, "uts namespace")
    c["linux"]["namespaces"].append({"type": "uts", "path": "/proc/1/ns/uts"})
    rejects(c, bundle, key, "uts namespace")   # a joined one is not ours to rename
    c["linux"]["namespaces"][-1] = {"type": "uts"}
    spec.validate(c, str(bundle))


def test_empty_hostname_needs_no_uts_namespace(bundle):
    c = minimal()
    c["hostname"] = ""
    spec.validate(c, str(bundle))


def test_time_offsets_in_a_joined_time_namespace(bundle):
    c = with_linux(namespaces=[{"type": "time", "path": "/proc/1/ns/time"}],
                   timeOffsets={"monotonic": {"secs": 1, "nanosecs": 0}})
    rejects(c, bundle, "timeOffsets", "time namespace")


def test_time_offsets_without_a_time_namespace(bundle):
    c = with_linux(namespaces=[{"type": "pid"}],
                   timeOffsets={"monotonic": {"secs": 1, "nanosecs": 0}})
    rejects(c, bundle, "timeOffsets")


def test_cgroups_path_must_be_a_string(bundle):
    rejects(with_linux(cgroupsPath=["/a"]), bundle, "cgroupsPath", "string")
    spec.validate(with_linux(cgroupsPath="/a/b"), str(bundle))


@pytest.mark.parametrize("value", ["private", "rprivate", "slave", "rslave", "shared",
                                   "rshared", "unbindable", "runbindable"])
def test_rootfs_propagation_valid(bundle, value):
    spec.validate(with_linux(rootfsPropagation=value), str(bundle))


@pytest.mark.parametrize("value", ["rbind", "Private", "recursive", "ro"])
def test_rootfs_propagation_invalid(bundle, value):
    rejects(with_linux(rootfsPropagation=value), bundle, "rootfsPropagation", repr(value))


def test_linux_must_be_an_object(bundle):
    c = minimal()
    c["linux"] = []
    rejects(c, bundle, "linux")


# -- sysctl ------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,ns", [
    ("kernel.shmmax", "ipc"), ("kernel.msgmnb", "ipc"), ("kernel.sem", "ipc"),
    ("kernel.shm_rmid_forced", "ipc"), ("fs.mqueue.msg_max", "ipc"),
    ("net.ipv4.ip_forward", "network"), ("net.core.somaxconn", "network"),
    ("kernel.hostname", "uts"), ("kernel.domainname", "uts"),
])
def test_namespaced_sysctl(bundle, key, ns):
    # no namespace of that kind: refused, naming the namespace needed
    c = with_linux(namespaces=[{"type": "mount"}], sysctl={key: "1"})
    rejects(c, bundle, key, f"new {ns} namespace")
    # a joined one: still refused (it would change another container's or the host's value)
    c["linux"]["namespaces"].append({"type": ns, "path": f"/proc/1/ns/{ns}"})
    rejects(c, bundle, key, f"new {ns} namespace")
    # a new one: fine
    c["linux"]["namespaces"][-1] = {"type": ns}
    spec.validate(c, str(bundle))


@pytest.mark.parametrize("key", ["vm.swappiness", "kernel.pid_max", "fs.file-max",
                                 "kernel.shmmaxx", "netfilter.x"])
def test_host_wide_sysctl_refused(bundle, key):
    c = with_linux(namespaces=[{"type": t} for t in ("ipc", "network", "uts")],
                   sysctl={key: "1"})
    rejects(c, bundle, key, "not namespaced")


# -- process -------------------------------------------------------------------------------------

def test_process_must_be_an_object(bundle):
    c = minimal()
    c["process"] = ["sh"]
    rejects(c, bundle, "process")
    with pytest.raises(ConfigError, match="process must be an object"):
        spec.validate_process(["sh"])


@pytest.mark.parametrize("args", [None, [], "sh", ["sh", 1], [None]])
def test_process_args(bundle, args):
    c = with_process()
    if args is None:
        del c["process"]["args"]
    else:
        c["process"]["args"] = args
    rejects(c, bundle, "process.args", "non-empty array of strings")


@pytest.mark.parametrize("cwd", ["tmp", "", 5, None])
def test_process_cwd(bundle, cwd):
    rejects(with_process(cwd=cwd), bundle, "process.cwd", "absolute")


def test_process_cwd_defaults_to_root(bundle):
    c = with_process()
    del c["process"]["cwd"]
    spec.validate(c, str(bundle))


@pytest.mark.parametrize("env", ["PATH=/bin", ["A=1", 2], [["A=1"]]])
def test_process_env(bundle, env):
    rejects(with_process(env=env), bundle, "process.env", "array of strings")


def test_process_user_must_be_an_object(bundle):
    rejects(with_process(user=[0, 0]), bundle, "process.user", "object")


@pytest.mark.parametrize("user,field", [
    ({"uid": -1, "gid": 0}, "uid"), ({"uid": "0", "gid": 0}, "uid"),
    ({"uid": 0, "gid": -5}, "gid"), ({"uid": 0, "gid": 1.5}, "gid"),
])
def test_process_user_ids(bundle, user, field):
    rejects(with_process(user=user), bundle, f"process.user.{field}", "non-negative")


def test_process_user_valid(bundle):
    spec.validate(with_process(user={"uid": 1000, "gid": 1000, "additionalGids": [5]}),
                  str(bundle))


def test_unknown_capability(bundle):
    c = with_process(capabilities={"bounding": ["CAP_KILL", "CAP_MAKE_COFFEE"]})
    rejects(c, bundle, "unknown capability", "CAP_MAKE_COFFEE")


def test_unknown_capability_set(bundle):
    rejects(with_process(capabilities={"effectives": ["CAP_KILL"]}), bundle,
            "capability set", "'effectives'")


def test_all_capability_sets_accepted(bundle):
    c = with_process(capabilities={k: ["CAP_KILL", "CAP_CHOWN"] for k in spec.CAP_SETS})
    spec.validate(c, str(bundle))


@pytest.mark.parametrize("rl,frags", [
    ({"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}, ("unknown rlimit", "RLIMIT_BOGUS")),
    ({"type": "nofile", "soft": 1, "hard": 1}, ("unknown rlimit", "nofile")),
    ("RLIMIT_NOFILE", ("unknown rlimit", "RLIMIT_NOFILE")),
    ({"type": "RLIMIT_NOFILE", "soft": 1}, ("RLIMIT_NOFILE", "integer soft and hard")),
    ({"type": "RLIMIT_NOFILE", "soft": "1", "hard": 2}, ("RLIMIT_NOFILE", "integer")),
    ({"type": "RLIMIT_CORE", "soft": 10, "hard": 5}, ("RLIMIT_CORE", "soft limit exceeds hard")),
])
def test_bad_rlimit(bundle, rl, frags):
    rejects(with_process(rlimits=[rl]), bundle, *frags)


def test_rlimits_valid(bundle):
    c = with_process(rlimits=[{"type": t, "soft": 5, "hard": 5} for t in spec.RLIMITS])
    spec.validate(c, str(bundle))


@pytest.mark.parametrize("oom", [-1001, 1001, 5000, "5", 1.5])
def test_oom_score_adj_out_of_range(bundle, oom):
    rejects(with_process(oomScoreAdj=oom), bundle, "oomScoreAdj", "-1000..1000")


@pytest.mark.parametrize("oom", [-1000, 0, 1000])
def test_oom_score_adj_bounds_valid(bundle, oom):
    spec.validate(with_process(oomScoreAdj=oom), str(bundle))


# -- mounts --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dest", ["proc", "./proc", "dev/shm"])
def test_relative_mount_destination(bundle, dest):
    c = minimal()
    c["mounts"] = [{"destination": "/ok", "type": "tmpfs"}, {"destination": dest, "type": "proc"}]
    rejects(c, bundle, repr(dest), "absolute")


@pytest.mark.parametrize("m", [{}, {"destination": ""}, {"destination": 5}, "/proc"])
def test_mount_needs_destination(bundle, m):
    c = minimal()
    c["mounts"] = [m]
    rejects(c, bundle, "mount needs a destination")


def test_mount_options_must_be_an_array(bundle):
    c = minimal()
    c["mounts"] = [{"destination": "/x", "options": "ro,nosuid"}]
    rejects(c, bundle, "mount options", "array")


def test_mounts_must_be_an_array(bundle):
    c = minimal()
    c["mounts"] = {"destination": "/x"}
    rejects(c, bundle, "mounts")


# -- hooks ---------------------------------------------------------------------------------------

def test_every_hook_kind_accepted(bundle):
    c = minimal()
    c["hooks"] = {k: [{"path": "/bin/true", "args": ["true"], "timeout": 5}]
                  for k in spec.HOOK_KINDS}
    spec.validate(c, str(bundle))


def test_unknown_hook_kind(bundle):
    c = minimal()
    c["hooks"] = {"prestop": [{"path": "/bin/true"}]}
    rejects(c, bundle, "unknown hook kind", "'prestop'")


@pytest.mark.parametrize("entry", [{"path": "bin/true"}, {"args": ["x"]}, "/bin/true",
                                   {"path": 7}])
def test_hook_needs_absolute_path(bundle, entry):
    c = minimal()
    c["hooks"] = {"poststart": [entry]}
    rejects(c, bundle, "poststart hook", "absolute path")


@pytest.mark.parametrize("timeout", [0, -1, "5", 1.5])
def test_hook_timeout(bundle, timeout):
    c = minimal()
    c["hooks"] = {"createRuntime": [{"path": "/bin/true", "timeout": timeout}]}
    rejects(c, bundle, "createRuntime hook timeout", "positive integer")


def test_hooks_must_be_an_object(bundle):
    c = minimal()
    c["hooks"] = [{"path": "/bin/true"}]
    rejects(c, bundle, "hooks")


# -- load ----------------------------------------------------------------------------------------

def test_load_valid(bundle):
    (bundle / "config.json").write_text(json.dumps(minimal()))
    c = spec.load(str(bundle))
    assert c["ociVersion"] == "1.2.0"
    assert c["root"]["path"] == os.path.realpath(bundle / "rootfs")


def test_load_missing_config(bundle):
    with pytest.raises(ConfigError, match="has no config.json") as ei:
        spec.load(str(bundle))
    assert str(bundle) in str(ei.value)


def test_load_missing_bundle(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        spec.load(str(tmp_path / "nobundle"))


def test_load_unreadable_config(bundle):
    (bundle / "config.json").mkdir()      # EISDIR: an OSError other than ENOENT
    with pytest.raises(ConfigError, match="cannot read .*config.json"):
        spec.load(str(bundle))


@pytest.mark.parametrize("raw", [b"{", b"", b"{'ociVersion': 1}", b'{"a": "\xc3\x28"}'])
def test_load_invalid_json(bundle, raw):
    (bundle / "config.json").write_bytes(raw)
    with pytest.raises(ConfigError, match="not valid JSON"):
        spec.load(str(bundle))


def test_load_validates(bundle):
    c = minimal()
    c["root"]["path"] = "missing"
    (bundle / "config.json").write_text(json.dumps(c))
    with pytest.raises(ConfigError, match="does not exist"):
        spec.load(str(bundle))


# -- default_spec --------------------------------------------------------------------------------

def test_default_spec_validates(bundle):
    c = spec.default_spec()
    spec.validate(c, str(bundle))
    assert c["ociVersion"] == spec.OCI_VERSION
    assert c["root"]["path"] == os.path.realpath(bundle / "rootfs")
    assert {ns["type"] for ns in c["linux"]["namespaces"]} == {
        "pid", "network", "ipc", "uts", "mount", "cgroup"}
    assert "uidMappings" not in c["linux"]


def test_default_spec_rootless_validates(bundle):
    c = spec.default_spec(rootless=True)
    spec.validate(c, str(bundle))
    linux = c["linux"]
    types = {ns["type"] for ns in linux["namespaces"]}
    assert "user" in types and "network" not in types and "cgroup" not in types
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in linux
    dests = {m["destination"]: m for m in c["mounts"]}
    assert "/sys/fs/cgroup" not in dests
    assert dests["/sys"]["type"] == "none" and "rbind" in dests["/sys"]["options"]
    assert "gid=5" not in dests["/dev/pts"]["options"]


def test_default_spec_is_fresh_each_call():
    a = spec.default_spec()
    a["mounts"].clear()
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    b = spec.default_spec()
    assert b["mounts"]
    assert "CAP_SYS_ADMIN" not in b["process"]["capabilities"]["bounding"]


def test_default_nofile_rlimit_within_current_hard_limit():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    (rl,) = spec.default_spec()["process"]["rlimits"]
    assert rl["type"] == "RLIMIT_NOFILE"
    assert rl["soft"] == rl["hard"] <= 1024
    if hard != resource.RLIM_INFINITY:
        assert rl["hard"] <= hard
