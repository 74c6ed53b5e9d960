"""OCI hooks: every kind runs once, in lifecycle order, with the state JSON on stdin and its
args, env and timeout honoured; failures fail the operation (or only warn, after start)."""

import glob
import json
import os
import random
import time

import pytest

ORDER = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop"]

# Appends one line per call: "<kind> <state JSON from stdin> <HOOK_VAR>|<LEAKED>". Run as
# /bin/busybox with args[0] "sh": busybox picks its applet from argv[0], so this only works if
# the hook's args (argv[0] included) are passed as given.
SCRIPT = ('state=$(cat); '
          'printf "%s %s %s\\n" "$1" "$state" "${HOOK_VAR:-unset}|${LEAKED:-unset}" >> "$2"')


class HookDir:
    """A directory for the hook log, bind-mounted into the container at the same path, so
    the same hook works on the host and (startContainer) inside the container."""

    def __init__(self, path):
        self.dir = path
        path.mkdir()
        self.log = path / "log"

    def add(self, c, kind, **extra):
        h = {"path": "/bin/busybox", "args": ["sh", "-c", SCRIPT, "sh", kind, str(self.log)],
             "env": ["PATH=/usr/bin:/bin", f"HOOK_VAR=var-{kind}"], **extra}
        c.setdefault("hooks", {}).setdefault(kind, []).append(h)
        if not any(m["destination"] == str(self.dir) for m in c["mounts"]):
            c["mounts"].append({"destination": str(self.dir), "type": "bind",
                                "source": str(self.dir), "options": ["rbind"]})

    def entries(self):
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            if line == "main":  # the container's own program
                out.append(("main", None, None))
                continue
            kind, rest = line.split(" ", 1)
            state, env = rest.rsplit(" ", 1)
            out.append((kind, json.loads(state), env))
        return out


@pytest.fixture
def hookdir(tmp_path):
    return HookDir(tmp_path / "hooks")


def script_hook(tmp_path, name, body, **extra):
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return {"path": str(p), **extra}


def nothing_left(rt, cid):
    assert rt("list", "-q").stdout == ""
    assert not os.path.exists(rt.root / cid)
    assert glob.glob(f"/sys/fs/cgroup/*/{cid}") == []






def test_all_hooks_run_once_in_order_with_state(rt, bundles, hookdir, cid):
    def edit(c):
        for kind in ORDER:
            hookdir.add(c, kind)

    b = bundles.make(["sh", "-c", f"echo main >> {hookdir.log}"], edit=edit)
    rt("create", "--bundle", b, cid, env={"LEAKED": "from-runtime", "PATH": os.environ["PATH"]})
    pid = rt.state(cid)["pid"]
    created = [e[0] for e in hookdir.entries()]
    assert created == ["prestart", "createRuntime", "createContainer"]
    rt("start", cid)
    rt.wait_status(cid, "stopped")
    rt("delete", cid)
    entries = hookdir.entries()
    kinds = [e[0] for e in entries]
    # the container's program ("main") runs after startContainer (and races poststart)
    assert [k for k in kinds if k != "main"] == ORDER, kinds
    assert kinds.index("startContainer") < kinds.index("main") < kinds.index("poststop")

    by_kind = {e[0]: e for e in entries}
    for kind in ORDER:
        _, state, env = by_kind[kind]
        assert env == f"var-{kind}|unset", (kind, env)  # only the hook's env
        assert state["id"] == cid, (kind, state)
        assert state["ociVersion"], kind
    for kind in ("prestart", "createRuntime", "createContainer"):
        st = by_kind[kind][1]
        assert st["status"] == "creating" and st["pid"] == pid, (kind, st)
        assert st["bundle"] == str(b)
    st = by_kind["startContainer"][1]
    assert st["status"] in ("created", "running") and st["pid"] in (1, pid), st
    st = by_kind["poststart"][1]
    assert st["pid"] == pid and st["bundle"] == str(b), st
    assert by_kind["poststop"][1]["status"] == "stopped"


def test_main_process_runs_between_startcontainer_and_poststop(rt, bundles, hookdir, cid):
    def edit(c):
        for kind in ("startContainer", "poststop"):
            hookdir.add(c, kind)

    b = bundles.make(["sh", "-c", f"echo main >> {hookdir.log}"], edit=edit)
    rt("run", "--bundle", b, cid)
    assert [ln.split()[0] for ln in hookdir.log.read_text().splitlines()] == \
        ["startContainer", "main", "poststop"]


def test_hooks_run_with_run_too(rt, bundles, hookdir, cid):
    def edit(c):
        for kind in ORDER:
            hookdir.add(c, kind)

    rt("run", "--bundle", bundles.make(["true"], edit=edit), cid)
    assert [e[0] for e in hookdir.entries()] == ORDER


def test_createcontainer_hook_runs_in_the_containers_namespaces(rt, bundles, tmp_path, cid):
    out = tmp_path / "ns"
    # /proc/self, not /proc/$$: before pivot_root /proc is the host's (another pid namespace)
    hook = script_hook(tmp_path, "ns.sh", f"readlink /proc/self/ns/mnt /proc/self/ns/uts > {out}\n",
                       env=["PATH=/usr/bin:/bin"])

    def edit(c):
        c["hooks"] = {"createContainer": [hook]}

    rt("create", "--bundle", bundles.make(["sleep", "100"], edit=edit), cid)
    pid = rt.state(cid)["pid"]
    mnt, uts = out.read_text().split()
    assert uts == os.readlink(f"/proc/{pid}/ns/uts")
    # (the mount namespace is the container's, before pivot_root: so not the host's)
    assert mnt != os.readlink("/proc/self/ns/mnt")


def test_createruntime_hook_runs_in_the_runtime_namespace(rt, bundles, tmp_path, cid):
    out = tmp_path / "ns"
    hook = script_hook(tmp_path, "ns.sh", f"readlink /proc/self/ns/mnt > {out}\n",
                       env=["PATH=/usr/bin:/bin"])

    def edit(c):
        c["hooks"] = {"createRuntime": [hook]}

    rt("create", "--bundle", bundles.make(["sleep", "100"], edit=edit), cid)
    assert out.read_text().strip() == os.readlink("/proc/self/ns/mnt")


def test_timeout_kills_a_hung_hook_and_fails_create(rt, bundles, tmp_path, cid):
    token = f"1000.{random.randrange(10**8):08d}"
    pidfile = tmp_path / "hook.pid"
    hook = script_hook(tmp_path, "hang.sh", f"echo $$ > {pidfile}\nsleep {token}\necho done\n",
                       timeout=1, env=["PATH=/usr/bin:/bin"])

    def edit(c):
        c["hooks"] = {"createRuntime": [hook]}

    t0 = time.monotonic()
    p = rt("create", "--bundle", bundles.make(["true"], edit=edit), cid, check=False)
    assert time.monotonic() - t0 < 10
    assert p.returncode != 0
    assert "timed out" in p.stderr and "createRuntime" in p.stderr
    nothing_left(rt, cid)
    assert rt.wait_gone(int(pidfile.read_text()))
    # the hook's own children die with it
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [d for d in os.listdir("/proc") if d.isdigit() and _cmdline(d).count(token)]
        if not left:
            break
        time.sleep(0.05)
    assert not left


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def test_timeout_not_reached_is_fine(rt, bundles, tmp_path, cid):
    hook = script_hook(tmp_path, "quick.sh", "sleep 0.2\n", timeout=5,
                       env=["PATH=/usr/bin:/bin"])

    def edit(c):
        c["hooks"] = {"createRuntime": [hook], "poststop": [hook]}

    p = rt("run", "--bundle", bundles.make(["true"], edit=edit), cid)
    assert p.stderr == ""


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook_fails_create_and_leaves_nothing(rt, bundles, tmp_path, cid, kind):
    pidfile = tmp_path / "init.pid"
    hook = script_hook(tmp_path, "fail.sh",
                       f'sed -n \'s/.*"pid": *\\([0-9]*\\).*/\\1/p\' > {pidfile}\n'
                       'echo "hook says no" >&2\nexit 3\n', env=["PATH=/usr/bin:/bin"])

    def edit(c):
        c["hooks"] = {kind: [hook]}

    b = bundles.make(["sleep", "1000"], edit=edit)
    p = rt("create", "--bundle", b, cid, check=False)
    assert p.returncode != 0
    assert kind in p.stderr and "exit status 3" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    nothing_left(rt, cid)
    init_pid = int(pidfile.read_text())
    assert init_pid > 0 and rt.wait_gone(init_pid)
    # the id is free again
    b2 = bundles.make(["true"])
    rt("run", "--bundle", b2, cid)


def test_missing_hook_binary_fails_create(rt, bundles, tmp_path, cid):
    def edit(c):
        c["hooks"] = {"createRuntime": [{"path": str(tmp_path / "nope")}]}

    p = rt("create", "--bundle", bundles.make(["true"], edit=edit), cid, check=False)
    assert p.returncode != 0 and "createRuntime" in p.stderr
    nothing_left(rt, cid)


def test_failing_poststart_hook_only_warns(rt, bundles, tmp_path, hookdir, cid):
    bad = script_hook(tmp_path, "bad.sh", "exit 4\n")

    def edit(c):
        c["hooks"] = {"poststart": [bad]}
        hookdir.add(c, "poststart")  # the hooks after a failing one still run

    rt("create", "--bundle", bundles.make(["sleep", "1000"], edit=edit), cid)
    p = rt("start", cid)
    assert "poststart" in p.stderr and "4" in p.stderr
    assert rt.state(cid)["status"] == "running"
    assert [e[0] for e in hookdir.entries()] == ["poststart"]


def test_failing_poststop_hook_only_warns(rt, bundles, tmp_path, hookdir, cid):
    bad = script_hook(tmp_path, "bad.sh", "exit 4\n")

    def edit(c):
        c["hooks"] = {"poststop": [bad]}
        hookdir.add(c, "poststop")

    rt("create", "--bundle", bundles.make(["true"], edit=edit), cid)
    rt("start", cid)
    rt.wait_status(cid, "stopped")
    p = rt("delete", cid)
    assert "poststop" in p.stderr
    assert rt("state", cid, check=False).returncode != 0
    assert [e[0] for e in hookdir.entries()] == ["poststop"]


def test_failing_poststop_hook_with_run_still_returns_status(rt, bundles, tmp_path, cid):
    bad = script_hook(tmp_path, "bad.sh", "exit 4\n")

    def edit(c):
        c["hooks"] = {"poststop": [bad]}

    p = rt("run", "--bundle", bundles.make(["sh", "-c", "exit 6"], edit=edit), cid, check=False)
    assert p.returncode == 6 and "poststop" in p.stderr
    nothing_left(rt, cid)


def test_failing_startcontainer_hook_prevents_the_program(rt, bundles, tmp_path, hookdir, cid):
    def edit(c):
        c["hooks"] = {"startContainer": [{"path": "/bin/false"}]}
        c["process"]["args"] = ["sh", "-c", f"echo main >> {hookdir.log}"]
        hookdir.add(c, "poststop")

    p = rt("run", "--bundle", bundles.make(edit=edit), cid, check=False)
    assert p.returncode != 0
    assert "main" not in hookdir.log.read_text() if hookdir.log.exists() else True


def test_invalid_hook_config_is_rejected(rt, bundles, cid):
    for hooks in ({"prestart": [{"path": "relative/hook"}]},
                  {"bogusKind": [{"path": "/bin/true"}]},
                  {"poststop": [{"path": "/bin/true", "timeout": 0}]}):
        def edit(c, hooks=hooks):
            c["hooks"] = hooks

        p = rt("create", "--bundle", bundles.make(["true"], edit=edit), cid, check=False)
        assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        nothing_left(rt, cid)
