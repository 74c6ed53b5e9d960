"""`bosun-runtime exec` and the other informational verbs: ps, features, spec, --version."""

import json
import os

import pytest

from bosun.kernel import caps




@pytest.fixture
def running(rt, bundles, cid):
    """A running container (sleep) whose config has noNewPrivileges off."""
    def edit(c):
        c["process"]["noNewPrivileges"] = False
        c["process"]["env"].append("FROM_CONFIG=yes")

    b = bundles.make(["sleep", "1000"], edit=edit)
    rt("create", "--bundle", b, cid)
    rt("start", cid)
    return cid


def status_of(text: str) -> dict:
    return {k.strip(): v.strip() for k, _, v in
            (ln.partition(":") for ln in text.splitlines())}


def test_exec_runs_inside_the_container(rt, running):
    out = rt("exec", running, "sh", "-c", "hostname; echo $FROM_CONFIG; pwd; id -u").stdout
    assert out == "bosun\nyes\n/\n0\n"


def test_exec_env_cwd(rt, running):
    out = rt("exec", "-e", "A=1", "--env", "B=two words", "--cwd", "/tmp", running,
             "sh", "-c", 'echo "$A|$B|$FROM_CONFIG"; pwd').stdout
    assert out == "1|two words|yes\n/tmp\n"


def test_exec_env_overrides_config(rt, running):
    out = rt("exec", "-e", "FROM_CONFIG=overridden", running, "sh", "-c",
             'echo "$FROM_CONFIG"').stdout
    assert out == "overridden\n"


def test_exec_user_and_additional_gids(rt, running):
    out = rt("exec", "--user", "1000:1000", "--additional-gids", "5", "-g", "4242", running,
             "sh", "-c", "id -u; id -g; id -G; echo $HOME").stdout.splitlines()
    assert out[:2] == ["1000", "1000"]
    assert sorted(out[2].split()) == ["1000", "4242", "5"]
    assert out[3] == "/home/user"


def test_exec_user_uid_only(rt, running):
    assert rt("exec", "-u", "65534", running, "sh", "-c", "id -u; id -g").stdout == "65534\n0\n"


def test_exec_cap_adds_a_capability(rt, running):
    def eff(*flags):
        out = rt("exec", *flags, running, "cat", "/proc/self/status").stdout
        st = status_of(out)
        return int(st["CapEff"], 16), int(st["CapBnd"], 16)

    raw = caps.to_mask(["CAP_NET_RAW"])
    e, b = eff()
    assert not e & raw and not b & raw
    e, b = eff("--cap", "CAP_NET_RAW")
    assert e & raw and b & raw
    assert e & caps.to_mask(["CAP_KILL"])  # the config's own caps are kept


def test_exec_no_new_privs(rt, running):
    def nnp(*flags):
        return status_of(rt("exec", *flags, running, "cat", "/proc/self/status").stdout)[
            "NoNewPrivs"]

    assert nnp() == "0"
    assert nnp("--no-new-privs") == "1"


def test_exec_process_file(rt, running, tmp_path):
    proc = {"args": ["sh", "-c", 'echo "$X"; pwd; id -u; id -g; umask; exit 5'],
            "env": ["PATH=/bin", "X=from file"], "cwd": "/home/user",
            "user": {"uid": 1000, "gid": 1000, "umask": 0o077}, "terminal": False}
    f = tmp_path / "process.json"
    f.write_text(json.dumps(proc))
    p = rt("exec", "--process", f, running, check=False)
    assert p.stdout == "from file\n/home/user\n1000\n1000\n0077\n"
    assert p.returncode == 5


def test_exec_process_file_invalid(rt, running, tmp_path):
    f = tmp_path / "process.json"
    f.write_text("{not json")
    p = rt("exec", "-p", f, running, check=False)
    assert p.returncode != 0 and "process" in p.stderr and "Traceback" not in p.stderr
    f.write_text(json.dumps({"args": [], "cwd": "/"}))
    p = rt("exec", "-p", f, running, check=False)
    assert p.returncode != 0 and "args" in p.stderr


@pytest.mark.parametrize("script,code", [("exit 0", 0), ("exit 3", 3), ("exit 255", 255),
                                         ("kill -9 $$", 137), ("kill -TERM $$", 143)])
def test_exec_exit_status_passes_through(rt, running, script, code):
    assert rt("exec", running, "sh", "-c", script, check=False).returncode == code


def test_exec_missing_program_fails_clearly(rt, running):
    p = rt("exec", running, "no-such-program", check=False)
    assert p.returncode != 0 and "no-such-program" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_exec_stdin_is_passed(rt, running, tmp_path):
    f = tmp_path / "in"
    f.write_text("line one\nline two\n")
    with open(f) as stdin:
        assert rt("exec", running, "wc", "-l", stdin=stdin).stdout.split() == ["2"]


def test_exec_detach_pid_file_same_pid_namespace(rt, running, tmp_path):
    pidfile = tmp_path / "exec.pid"
    rt("exec", "--detach", "--pid-file", pidfile, running, "sleep", "1000")
    pid = int(pidfile.read_text())
    init = rt.state(running)["pid"]
    assert pid != init
    for ns in ("pid", "mnt", "net", "uts", "ipc"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}"), ns
    assert open(f"/proc/{pid}/cgroup").read() == open(f"/proc/{init}/cgroup").read()
    # inside, the detached process is visible next to the init (pid 1)
    seen = rt("exec", running, "sh", "-c", "cat /proc/[0-9]*/comm").stdout.split()
    assert seen.count("sleep") == 2

    pids = json.loads(rt("ps", "--format", "json", running).stdout)
    assert init in pids and pid in pids
    table = rt("ps", running).stdout.splitlines()
    col = table[0].split().index("PID")
    listed = {int(row.split()[col]) for row in table[1:]}
    assert {init, pid} <= listed
    assert all("sleep" in row for row in table[1:])

    # killing the container takes the exec'd process with it
    rt("kill", "--all", running, "KILL")
    rt.wait_status(running, "stopped")
    assert rt.wait_gone(pid), f"exec'd process {pid} survived kill --all"




def test_exec_detach_tty_needs_console_socket(rt, running):
    p = rt("exec", "-d", "-t", running, "sh", check=False)
    assert p.returncode != 0 and "console-socket" in p.stderr


def test_exec_into_stopped_container_fails(rt, bundles, cid):
    b = bundles.make(["true"])
    rt("create", "--bundle", b, cid)
    rt("start", cid)
    rt.wait_status(cid, "stopped")
    p = rt("exec", cid, "echo", "hi", check=False)
    assert p.returncode != 0
    assert "stopped" in p.stderr and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1


def test_exec_into_missing_container_fails(rt, cid):
    p = rt("exec", cid, "true", check=False)
    assert p.returncode != 0 and cid in p.stderr and "not exist" in p.stderr


def test_exec_into_created_container(rt, bundles, cid):
    rt("create", "--bundle", bundles.make(["sleep", "1000"]), cid)
    assert rt("exec", cid, "cat", "/proc/1/comm").stdout.strip() in ("python3", "python3.11",
                                                                    "bosun-runtime")
    assert rt.state(cid)["status"] == "created"


def test_exec_usage_errors(rt, running):
    assert rt("exec", running, check=False).returncode == 2
    assert rt("exec", "--user", "bob", running, "true", check=False).returncode == 2
    assert rt("exec", "--bogus", running, "true", check=False).returncode == 2


def test_ps_of_a_stopped_or_missing_container(rt, cid):
    assert rt("ps", cid, check=False).returncode != 0


def test_features(rt):
    f = json.loads(rt("features").stdout)
    assert f["ociVersionMin"] and f["ociVersionMax"]
    ns = f["linux"]["namespaces"]
    assert {"pid", "network", "mount", "ipc", "uts", "user", "cgroup"} <= set(ns)
    assert "CAP_SYS_ADMIN" in f["linux"]["capabilities"]
    assert set(f["hooks"]) >= {"prestart", "createRuntime", "createContainer",
                               "startContainer", "poststart", "poststop"}
    assert "bind" in f["mountOptions"] and "rbind" in f["mountOptions"]
    assert isinstance(f["linux"]["cgroup"]["v1"], bool)


def test_spec_writes_config_and_refuses_to_overwrite(rt, tmp_path):
    rt("spec", "--bundle", tmp_path)
    cfg = tmp_path / "config.json"
    data = cfg.read_text()
    c = json.loads(data)
    assert c["ociVersion"] and c["process"]["args"] == ["sh"]
    assert c["root"]["path"] == "rootfs"
    assert {n["type"] for n in c["linux"]["namespaces"]} >= {"pid", "mount", "network"}
    assert "user" not in {n["type"] for n in c["linux"]["namespaces"]}
    p = rt("spec", "--bundle", tmp_path, check=False)
    assert p.returncode != 0 and "exists" in p.stderr
    assert cfg.read_text() == data
    assert os.listdir(tmp_path) == ["config.json"]


def test_spec_in_current_directory(rt, tmp_path):
    rt("spec", cwd=tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["process"]


def test_spec_rootless(rt, tmp_path):
    rt("spec", "--rootless", "-b", tmp_path)
    c = json.loads((tmp_path / "config.json").read_text())
    linux = c["linux"]
    assert "user" in {n["type"] for n in linux["namespaces"]}
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]


def test_spec_bundle_runs(rt, bundles, cid, tmp_path):
    """The default spec, with a rootfs and terminal off, runs as is."""
    import shutil

    rt("spec", "-b", tmp_path)
    shutil.copytree(bundles.rootfs, tmp_path / "rootfs", symlinks=True)
    c = json.loads((tmp_path / "config.json").read_text())
    c["process"]["terminal"] = False
    c["process"]["args"] = ["sh", "-c", "hostname; touch /x 2>/dev/null || echo read-only"]
    (tmp_path / "config.json").write_text(json.dumps(c))
    assert rt("run", "-b", tmp_path, cid).stdout == "bosun\nread-only\n"


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version(rt, flag):
    from bosun import __version__
    from bosun.runtime.spec import OCI_VERSION

    out = rt(flag).stdout.splitlines()
    assert out[0] == f"bosun-runtime version {__version__}"
    assert f"spec: {OCI_VERSION}" in out
