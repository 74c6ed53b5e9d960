"""Bad input to create/run: each is one line on stderr (never a Python traceback), a non-zero
exit status, and nothing left behind: no state, no mount, no cgroup, no process."""

from __future__ import annotations

import glob
import json
import os
import time

import pytest


def set_(path, value):
    """An edit setting config[path...] = value (path like "process.args")."""
    def edit(c):
        *parents, last = path.split(".")
        d = c
        for p in parents:
            d = d[p]
        d[last] = value
    return edit


def append(path, value):
    def edit(c):
        d = c
        for p in path.split("."):
            d = d[p]
        d.append(value)
    return edit


# (id, edit, what stderr must mention)
BAD_CONFIGS = [
    ("args-not-array", set_("process.args", "sh"), "process.args"),
    ("args-empty", set_("process.args", []), "process.args"),
    ("args-not-strings", set_("process.args", ["sh", 1]), "process.args"),
    ("env-not-array", set_("process.env", "PATH=/bin"), "process.env"),
    ("cwd-relative", set_("process.cwd", "tmp"), "cwd"),
    ("uid-string", set_("process.user.uid", "0"), "uid"),
    ("gid-negative", set_("process.user.gid", -1), "gid"),
    ("additional-gids-strings", set_("process.user.additionalGids", ["wheel"]),
     "additionalGids"),
    ("capabilities-array", set_("process.capabilities", ["CAP_KILL"]), "capabilities"),
    ("capability-not-string", set_("process.capabilities.bounding", [21]), "bounding"),
    ("capability-unknown", set_("process.capabilities.bounding", ["CAP_BOGUS"]), "CAP_BOGUS"),
    ("rlimit-unknown", set_("process.rlimits", [{"type": "RLIMIT_BOGUS", "soft": 1,
                                                 "hard": 1}]), "RLIMIT_BOGUS"),
    ("rlimit-soft-above-hard", set_("process.rlimits", [{"type": "RLIMIT_NOFILE",
                                                         "soft": 10, "hard": 5}]), "soft"),
    ("process-not-object", set_("process", ["sh"]), "process"),
    ("root-not-object", set_("root", "rootfs"), "root"),
    ("root-path-missing", set_("root", {}), "root.path"),
    ("rootfs-missing", set_("root.path", "no-such-rootfs"), "does not exist"),
    ("oci-version-number", set_("ociVersion", 1), "ociVersion"),
    ("linux-array", set_("linux", []), "linux"),
    ("namespaces-not-array", set_("linux.namespaces", {"type": "pid"}), "namespaces"),
    ("namespace-entry-string", set_("linux.namespaces", ["pid", "mount"]), "namespaces"),
    ("namespace-unknown", append("linux.namespaces", {"type": "bogus"}), "bogus"),
    ("namespace-duplicate", append("linux.namespaces", {"type": "pid"}), "twice"),
    ("namespace-path-relative", set_("linux.namespaces", [{"type": "mount"},
                                                          {"type": "net" "work",
                                                           "path": "run/netns/x"}]),
     "absolute"),
    ("no-mount-namespace", lambda c: (c.pop("hostname"), c["linux"].update(
        namespaces=[{"type": "pid"}])), "mount namespace"),
    ("uid-mappings-without-userns", set_("linux.uidMappings",
                                         [{"containerID": 0, "hostID": 1000, "size": 1}]),
     "user namespace"),
    ("uid-mappings-not-array", lambda c: (c["linux"]["namespaces"].append({"type": "user"}),
                                          c["linux"].update(uidMappings=5, gidMappings=5)),
     "uidMappings"),
    ("mounts-not-array", set_("mounts", {"/proc": "proc"}), "mounts"),
    ("mount-destination-relative", append("mounts", {"destination": "mnt/x", "type": "tmpfs",
                                                     "source": "tmpfs"}), "absolute"),
    ("mount-destination-missing", append("mounts", {"type": "tmpfs", "source": "tmpfs"}),
     "destination"),
    ("mount-options-string", append("mounts", {"destination": "/x", "type": "tmpfs",
                                               "options": "ro"}), "options"),
    ("mount-options-not-strings", append("mounts", {"destination": "/x", "type": "tmpfs",
                                                    "options": [1]}), "options"),
    ("mount-type-number", append("mounts", {"destination": "/x", "type": 5}), "type"),
    ("hostname-number", set_("hostname", 42), "hostname"),
    ("hostname-without-uts", lambda c: c["linux"].update(
        namespaces=[{"type": "mount"}, {"type": "pid"}]), "uts"),
    ("sysctl-array", set_("linux.sysctl", [{"net.ipv4.ip_forward": "1"}]), "sysctl"),
    ("sysctl-not-namespaced", set_("linux.sysctl", {"vm.swappiness": "10"}), "vm.swappiness"),
    ("masked-paths-string", set_("linux.maskedPaths", "/proc/kcore"), "maskedPaths"),
    ("readonly-path-relative", set_("linux.readonlyPaths", ["proc/sys"]), "readonlyPaths"),
    ("device-major-string", set_("linux.devices", [{"path": "/dev/x", "type": "c",
                                                    "major": "1", "minor": 3}]), "devices"),
    ("time-offsets-string", lambda c: (c["linux"]["namespaces"].append({"type": "time"}),
                                       c["linux"].update(timeOffsets={"boottime": "1d"})),
     "timeOffsets"),
    ("rootfs-propagation-bogus", set_("linux.rootfsPropagation", "sideways"), "sideways"),
    ("cgroups-path-escapes", set_("linux.cgroupsPath", "/../../../escape"), "escapes"),
    ("hook-kind-unknown", set_("hooks", {"prestop": []}), "prestop"),
    ("hook-path-relative", set_("hooks", {"prestart": [{"path": "bin/true"}]}), "prestart"),
]

# config is valid, but setting the container up fails part-way, after processes exist
SETUP_FAILURES = [
    ("exec-not-found", set_("process.args", ["/no/such/program"]), "/no/such/program"),
    ("bind-source-missing", append("mounts", {"destination": "/x", "type": "bind",
                                              "source": "/no/such/source"}), "/no/such/source"),
    ("filesystem-unknown", append("mounts", {"destination": "/x", "type": "bogusfs",
                                             "source": "x"}), "No such device"),
    ("device-type-unknown", set_("linux.devices", [{"path": "/dev/x", "type": "q",
                                                    "major": 1, "minor": 3}]), "/dev/x"),
    ("device-outside-dev", set_("linux.devices", [{"path": "/etc/x", "type": "c",
                                                   "major": 1, "minor": 3}]), "/dev"),
    ("dotdot-destination", append("mounts", {"destination": "/../../x", "type": "tmpfs",
                                             "source": "t"}), ".."),
    ("symlink-loop-destination", append("mounts", {"destination": "/loop/x",
                                                   "type": "tmpfs", "source": "t"}),
     "symbolic links"),
    ("cwd-missing", set_("process.cwd", "/no/such/dir"), "/no/such/dir"),
    ("sysctl-missing", set_("linux.sysctl", {"net.ipv4.no_such_knob": "1"}), "no_such_knob"),
    ("uid-map-out-of-range", lambda c: (
        c["linux"]["namespaces"].append({"type": "user"}),
        c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1, "size": 2 ** 40}],
                          gidMappings=[{"containerID": 0, "hostID": 1, "size": 1}])), "uid_map"),
]


# -- what "nothing left behind" means -----------------------------------------------------------

def host_mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def processes_mentioning(*needles: str) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmd for n in needles):
            out.append(f"{pid}: {cmd}")
    return out


def assert_nothing_left(rt, cid, bundle, mounts_before):
    assert not (rt.root / cid).exists(), os.listdir(rt.root / cid)
    assert cid not in rt("list", "-q").stdout.split()
    cgs = glob.glob(f"/sys/fs/cgroup/*/{cid}") + glob.glob(f"/sys/fs/cgroup/{cid}")
    assert cgs == []
    new = [m for m in host_mounts() - mounts_before if cid in m or str(bundle) in m]
    assert new == []
    deadline = time.monotonic() + 3  # a SIGKILLed init may take a moment to go
    while processes_mentioning(cid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert processes_mentioning(cid) == []


def assert_one_line_error(p, *mentions):
    assert p.returncode != 0
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("bosun-runtime: "), lines[0]
    for m in mentions:
        assert m in lines[0], (m, lines[0])
    assert p.stdout == ""


def attempt(rt, cmd, bundle, cid):
    before = host_mounts()
    p = rt(cmd, "--bundle", bundle, cid, check=False)
    return p, before


# -- invalid config.json ---------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["create", "run"])
@pytest.mark.parametrize("text,mention", [
    ("{not json", "not valid JSON"),
    ("", "not valid JSON"),
    ('{"ociVersion": "1.2.0"', "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
    ("[]", "JSON object"),
    ("null", "JSON object"),
    ('"config"', "JSON object"),
], ids=["garbage", "empty", "truncated", "not-utf8", "array", "null", "string"])
def test_malformed_config_json(rt, bundles, cid, cmd, text, mention):
    b = bundles.make(["true"], readonly_rootfs=True)
    data = text if isinstance(text, bytes) else text.encode()
    (b / "config.json").write_bytes(data)
    p, before = attempt(rt, cmd, b, cid)
    assert_one_line_error(p, mention)
    assert_nothing_left(rt, cid, b, before)


def test_missing_config_json(rt, bundles, cid):
    b = bundles.make(["true"])
    (b / "config.json").unlink()
    p, before = attempt(rt, "create", b, cid)
    assert_one_line_error(p, "config.json")
    assert_nothing_left(rt, cid, b, before)


def test_missing_bundle(rt, tmp_path, cid):
    p, before = attempt(rt, "run", tmp_path / "no-such-bundle", cid)
    assert_one_line_error(p, "config.json")
    assert_nothing_left(rt, cid, tmp_path / "no-such-bundle", before)


def test_rootfs_is_a_file(rt, bundles, cid):
    b = bundles.make(["true"], edit=set_("root.path", "rootfs-file"))
    (b / "rootfs-file").write_text("not a directory")
    p, before = attempt(rt, "create", b, cid)
    assert_one_line_error(p, "rootfs")
    assert_nothing_left(rt, cid, b, before)


# create and run both validate the same way: alternate between them to cover both paths
@pytest.mark.parametrize("cmd,edit,mention",
                         [("run" if i % 2 else "create", *x[1:])
                          for i, x in enumerate(BAD_CONFIGS)],
                         ids=[f"{x[0]}-{'run' if i % 2 else 'create'}"
                              for i, x in enumerate(BAD_CONFIGS)])
def test_invalid_config(rt, bundles, cid, cmd, edit, mention):
    # a copy of the rootfs: some of these get as far as creating mount points
    b = bundles.make(["true"], edit=edit)
    p, before = attempt(rt, cmd, b, cid)
    assert_one_line_error(p, mention)
    assert_nothing_left(rt, cid, b, before)


# -- failures while setting the container up ----------------------------------------------------

@pytest.mark.parametrize("cmd", ["create", "run"])
@pytest.mark.parametrize("edit,mention", [x[1:] for x in SETUP_FAILURES],
                         ids=[x[0] for x in SETUP_FAILURES])
def test_setup_failure_undoes_everything(rt, bundles, cid, cmd, edit, mention):
    b = bundles.make(["true"], edit=edit)
    (b / "rootfs" / "loop").symlink_to("loop2")
    (b / "rootfs" / "loop2").symlink_to("loop")
    p, before = attempt(rt, cmd, b, cid)
    assert_one_line_error(p, mention)
    assert_nothing_left(rt, cid, b, before)


def test_terminal_without_console_socket(rt, bundles, cid):
    b = bundles.make(["true"], edit=set_("process.terminal", True))
    p, before = attempt(rt, "create", b, cid)
    assert_one_line_error(p, "console-socket")
    assert_nothing_left(rt, cid, b, before)


def test_console_socket_that_does_not_exist(rt, bundles, cid, tmp_path):
    b = bundles.make(["true"], edit=set_("process.terminal", True))
    before = host_mounts()
    p = rt("create", "--console-socket", tmp_path / "no.sock", "--bundle", b, cid, check=False)
    assert_one_line_error(p, "console socket")
    assert_nothing_left(rt, cid, b, before)


# -- container ids ---------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["create", "run"])
def test_id_that_already_exists(rt, bundles, cid, cmd):
    first = bundles.make(["sleep", "1000"])
    rt("create", "--bundle", first, cid)
    st = rt.state(cid)
    record = (rt.root / cid / "state.json").read_bytes()
    b = bundles.make(["true"])
    p = rt(cmd, "--bundle", b, cid, check=False)
    assert_one_line_error(p, "already exists", cid)
    # the existing container is untouched: same init, same state, its cgroup still there
    assert rt.state(cid) == st and st["status"] == "created"
    assert (rt.root / cid / "state.json").read_bytes() == record
    assert os.path.exists(f"/proc/{st['pid']}")
    assert glob.glob(f"/sys/fs/cgroup/pids/{cid}")
    rt("delete", cid)
    assert not glob.glob(f"/sys/fs/cgroup/*/{cid}")


@pytest.mark.parametrize("cmd", ["create", "run"])
@pytest.mark.parametrize("bad", ["", ".", "..", "../escape", "a/b", "/abs", "with space",
                                 "nul\x01", "caf\u00e9", "x" * 1025])
def test_invalid_id(rt, bundles, cmd, bad, tmp_path):
    b = bundles.make(["true"], readonly_rootfs=True)
    before = host_mounts()
    entries_before = set(os.listdir(tmp_path))
    p = rt(cmd, "--bundle", b, "--", bad, check=False)
    assert_one_line_error(p, "invalid container id")
    # nothing created anywhere, in particular not outside the state root
    assert not rt.root.exists() or os.listdir(rt.root) == []
    assert set(os.listdir(tmp_path)) == entries_before
    assert not (tmp_path / "escape").exists()
    assert [m for m in host_mounts() - before if str(b) in m] == []


def test_missing_id(rt, bundles):
    b = bundles.make(["true"])
    p = rt("create", "--bundle", b, check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_unknown_flag_and_command(rt, bundles, cid):
    b = bundles.make(["true"])
    for args in (["create", "--bogus", "--bundle", b, cid], ["frobnicate", cid],
                 ["create", "--preserve-fds", "many", "--bundle", b, cid]):
        p = rt(*args, check=False)
        assert p.returncode != 0 and "Traceback" not in p.stderr, args
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (rt.root / cid).exists()


# -- the valid baseline: the same bundle machinery does work -------------------------------

def test_baseline_valid_bundle_runs(rt, bundles, cid):
    b = bundles.make(["sh", "-c", "echo ok"])
    p = rt("run", "--bundle", b, cid, check=False)
    assert (p.returncode, p.stdout, p.stderr) == (0, "ok\n", "")
    assert json.loads((b / "config.json").read_text())["process"]["args"][0] == "sh"
