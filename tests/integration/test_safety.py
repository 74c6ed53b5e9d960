"""Container breakouts through the runtime itself: leaked host fds, /proc/<pid>/exe of the
runtime (CVE-2019-5736) and a working directory through a leaked fd (CVE-2024-21626)."""

import hashlib
import os
import subprocess
import sys
import tempfile
import time

import pytest

HOST_ONLY = sorted(set(os.listdir("/")) - {"bin", "dev", "etc", "home", "proc", "root", "sys",
                                           "tmp"})


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def with_host_fds(argv):
    """argv run with host files and directories open on fds 3..7 and inheritable, as a
    careless caller (or a leaky parent) would leave them."""
    return ["/bin/sh", "-c", 'exec "$@" 3</ 4<"$0" 5</etc 6>>"$0" 7</etc/hostname',
            "/etc/passwd", *map(str, argv)]


def run_files(argv, timeout=30, **kw):
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                            timeout=timeout, **kw).returncode
        out.seek(0)
        err.seek(0)
        return rc, out.read().decode(), err.read().decode()


def fd_listing(text: str) -> dict[int, str]:
    """Parse `ls -l /proc/self/fd`, dropping the directory fd ls opens to list itself."""
    fds = {}
    for line in text.splitlines():
        parts = line.split()
        if "->" not in parts:
            continue
        i = parts.index("->")
        fd, target = int(parts[i - 1]), " ".join(parts[i + 1:])
        if target.startswith("/proc/") and target.endswith("/fd"):
            continue  # ls's own
        fds[fd] = target
    return fds


def host_fds(pid: int) -> dict[int, str]:
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            pass
    return out




# -- no host fd leaks ----------------------------------------------------------------------

def test_run_leaks_no_fds(rt, bundles, cid):
    b = bundles.make(["ls", "-l", "/proc/self/fd"])
    rc, out, err = run_files(with_host_fds(rt.cmd("run", "--bundle", b, cid)))
    assert rc == 0, err
    assert sorted(fd_listing(out)) == [0, 1, 2], out


def test_run_with_preserve_fds_passes_only_those(rt, bundles, cid):
    b = bundles.make(["ls", "-l", "/proc/self/fd"])
    rc, out, err = run_files(with_host_fds(rt.cmd("run", "--preserve-fds", "2", "--bundle", b,
                                                  cid)))
    assert rc == 0, err
    fds = fd_listing(out)
    assert sorted(fds) == [0, 1, 2, 3, 4], out
    assert fds[4] == "/etc/passwd"


def test_create_start_init_holds_no_extra_fds(rt, bundles, cid):
    b = bundles.make(["sleep", "1000"])
    rc, _, err = run_files(with_host_fds(rt.cmd("create", "--bundle", b, cid)))
    assert rc == 0, err
    rt("start", cid)
    pid = rt.state(cid)["pid"]
    deadline = time.monotonic() + 5
    while not os.readlink(f"/proc/{pid}/exe").endswith("busybox") and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(host_fds(pid)) == [0, 1, 2], host_fds(pid)


def test_exec_leaks_no_fds(rt, bundles, cid, tmp_path):
    rt("create", "--bundle", bundles.make(["sleep", "1000"]), cid)
    rt("start", cid)
    rc, out, err = run_files(with_host_fds(rt.cmd("exec", cid, "ls", "-l", "/proc/self/fd")))
    assert rc == 0, err
    assert sorted(fd_listing(out)) == [0, 1, 2], out

    pidfile = tmp_path / "pid"
    rc, _, err = run_files(with_host_fds(rt.cmd("exec", "-d", "--pid-file", pidfile, cid,
                                                "sleep", "1000")))
    assert rc == 0, err
    assert sorted(host_fds(int(pidfile.read_text()))) == [0, 1, 2]


def test_exec_with_preserve_fds_passes_only_those(rt, bundles, cid):
    rt("create", "--bundle", bundles.make(["sleep", "1000"]), cid)
    rt("start", cid)
    rc, out, err = run_files(with_host_fds(rt.cmd("exec", "--preserve-fds", "1", cid,
                                                  "ls", "-l", "/proc/self/fd")))
    assert rc == 0, err
    assert sorted(fd_listing(out)) == [0, 1, 2, 3], out


def test_exec_tty_leaks_no_fds(rt, bundles, cid):
    import pty

    rt("create", "--bundle", bundles.make(["sleep", "1000"]), cid)
    rt("start", cid)
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execv("/bin/sh", with_host_fds(rt.cmd("exec", "-t", cid, "ls", "-l",
                                                     "/proc/self/fd")))
        finally:
            os._exit(127)
    out = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    os.close(master)
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace").replace("\r\n", "\n")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert sorted(fd_listing(text)) == [0, 1, 2], text


# -- CVE-2019-5736: the runtime's /proc/<pid>/exe --------------------------------------------

RUNTIME_FILES = [os.path.realpath(sys.executable),
                 str(os.path.join(os.path.dirname(sys.executable), "bosun-runtime"))]

# Tries, from inside the container, to reach the binary behind /proc/1/exe (the runtime's
# init while the container is 'created'). A non-destructive read-write open comes first;
# the truncating write only runs if everything else already failed to stop it.
PROBE = """
readlink /proc/self/exe
readlink /proc/1/exe && echo READLINK-OK
cat /proc/1/exe > /dev/null && echo READ-OK
(exec 3<>/proc/1/exe) && echo OPEN-RDWR-OK
(echo x >> /proc/1/exe) && echo APPEND-OK
(echo x > /proc/1/exe) && echo WRITE-OK
true
"""


@pytest.fixture
def runtime_hashes():
    before = {f: sha256(f) for f in RUNTIME_FILES}
    yield before
    after = {f: sha256(f) for f in RUNTIME_FILES}
    assert after == before, "the runtime's binary on the host was modified!"


@pytest.mark.parametrize("who", [
    pytest.param([], id="root-default-caps"),
    pytest.param(["--user", "1000:1000"], id="user-no-caps"),
    pytest.param(["--cap", "CAP_DAC_OVERRIDE", "--cap", "CAP_FOWNER"], id="root-dac-override"),
])
def test_created_init_exe_is_out_of_reach(rt, bundles, cid, runtime_hashes, who):
    rt("create", "--bundle", bundles.make(["sleep", "1000"]), cid)
    init = rt.state(cid)["pid"]
    # the init is still the runtime (python) until start
    assert os.path.realpath(f"/proc/{init}/exe") == RUNTIME_FILES[0]
    p = rt("exec", *who, cid, "sh", "-c", PROBE, check=False)
    assert p.stdout.splitlines()[0] == "/bin/busybox"  # /proc works for the prober itself
    for marker in ("READLINK-OK", "READ-OK", "OPEN-RDWR-OK", "APPEND-OK", "WRITE-OK"):
        assert marker not in p.stdout, (marker, p.stdout, p.stderr)
    assert rt.state(cid)["status"] == "created"
    rt("start", cid)
    assert rt.state(cid)["status"] == "running"


def test_init_exe_out_of_reach_from_the_containers_own_processes(rt, bundles, cid,
                                                                 runtime_hashes, tmp_path):
    """The container's program itself (pid 1) probes its parent-less world while created:
    here through a second container sharing its pid namespace."""
    rt("create", "--bundle", bundles.make(["sleep", "1000"]), cid)
    init = rt.state(cid)["pid"]

    def edit(c):
        for ns in c["linux"]["namespaces"]:
            if ns["type"] == "pid":
                ns["path"] = f"/proc/{init}/ns/pid"

    b = bundles.make(["sh", "-c", PROBE], edit=edit)
    p = rt("run", "--bundle", b, cid + "-b", check=False)
    assert p.stdout.splitlines()[0] == "/bin/busybox", p.stderr
    for marker in ("READLINK-OK", "READ-OK", "OPEN-RDWR-OK", "APPEND-OK", "WRITE-OK"):
        assert marker not in p.stdout, (marker, p.stdout)


def test_exec_in_progress_is_out_of_reach(rt, bundles, cid, runtime_hashes, tmp_path):
    """A prober loops over every process it can see while `exec`s come and go; the
    runtime's own processes, while they are in the container, must not be reachable."""
    log = tmp_path / "probe"
    log.mkdir()

    def edit(c):
        c["mounts"].append({"destination": "/probe", "type": "bind", "source": str(log),
                            "options": ["rbind"]})

    prober = ("while :; do for p in /proc/[0-9]*; do "
              "e=$(readlink $p/exe 2>/dev/null) && case $e in *python*|*bosun*) "
              "echo $p $e >> /probe/hits;; esac; "
              "c=$(cat $p/comm 2>/dev/null); case $c in *python*|*bosun*) "
              "echo $p $c >> /probe/seen; (exec 3<>$p/exe) 2>/dev/null && "
              "echo $p >> /probe/opened;; esac; done; done")
    rt("create", "--bundle", bundles.make(["sh", "-c", prober], edit=edit), cid)
    rt("start", cid)
    time.sleep(0.2)
    for i in range(60):
        rt("exec", cid, "true")
        if i >= 10 and (log / "seen").exists():
            break
    time.sleep(0.2)
    # the prober did catch the runtime inside the container (else this test proves nothing)
    assert (log / "seen").exists()
    assert not (log / "hits").exists(), (log / "hits").read_text()
    assert not (log / "opened").exists(), (log / "opened").read_text()


# -- CVE-2024-21626: cwd through a leaked fd ---------------------------------------------------

def _check_inside(rc, out, err, what):
    if rc != 0:  # refused: with a clear message
        assert "outside the container root" in err or "cannot chdir" in err, (what, err)
        assert len(err.strip().splitlines()) == 1, (what, err)
        return
    lines = out.splitlines()
    assert lines, what
    cwd = lines[0]
    assert cwd.startswith("/") and "unreachable" not in cwd, (what, out)
    listed = set(lines[1:])
    assert not listed & set(HOST_ONLY), (what, out)


def _maybe_with_host_fds(inherited, argv):
    return with_host_fds(argv) if inherited else list(map(str, argv))


@pytest.mark.parametrize("inherited", [True, False], ids=["host-fds", "own-fds"])
@pytest.mark.parametrize("n", range(3, 11))
def test_cwd_through_proc_self_fd_cannot_escape(rt, bundles, cid, n, inherited):
    def edit(c):
        c["process"]["cwd"] = f"/proc/self/fd/{n}"

    b = bundles.make(["sh", "-c", "pwd; ls ..; ls ../../.."], edit=edit)
    rc, out, err = run_files(_maybe_with_host_fds(inherited, rt.cmd("run", "--bundle", b, cid)))
    _check_inside(rc, out, err, n)
    if rc != 0:
        assert rt("list", "-q").stdout == ""


@pytest.mark.parametrize("inherited", [True, False], ids=["host-fds", "own-fds"])
@pytest.mark.parametrize("n", range(3, 11))
def test_exec_cwd_through_proc_self_fd_cannot_escape(rt, bundles, cid, n, inherited):
    rt("create", "--bundle", bundles.make(["sleep", "1000"]), cid)
    rt("start", cid)
    rc, out, err = run_files(_maybe_with_host_fds(inherited, rt.cmd(
        "exec", "--cwd", f"/proc/self/fd/{n}", cid, "sh", "-c", "pwd; ls ..; ls ../../..")))
    _check_inside(rc, out, err, n)


def test_cwd_escape_attempt_leaves_nothing_behind(rt, bundles, cid):
    def edit(c):
        c["process"]["cwd"] = "/proc/self/fd/3"

    b = bundles.make(["pwd"], edit=edit)
    rc, out, err = run_files(with_host_fds(rt.cmd("create", "--bundle", b, cid)))
    assert rc != 0 or out == ""
    if rc != 0:
        import glob

        assert not os.path.exists(rt.root / cid)
        assert glob.glob(f"/sys/fs/cgroup/*/{cid}") == []
