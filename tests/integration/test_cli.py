"""The `bosun` client commands against a bosun daemon, checked by their output and effect and,
where it matters, against the real docker CLI on the same daemon (exit codes, logs, inspect)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import termios
import time

import pytest

from bosun.testing.cli import BOSUN, bosun, err, out
from bosun.testing.daemon import wait_for
from bosun.testing.dockerd import DOCKER
from bosun.testing.terminal import Terminal, check_size

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_containers_after"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(DOCKER is None, reason="no docker CLI")]

# -- version, info ---------------------------------------------------------------------------

def test_version_and_info(daemon):
    text = out(bosun(daemon, "version"))
    assert text.startswith("Client:\n Version:           0.1.0\n")
    assert "\nServer: bosun\n Engine:\n  Version:          0.1.0\n" in text
    assert "  API version:      1.47 (minimum version 1.24)\n" in text
    assert out(bosun(daemon, "version", "--format", "{{.Server.ApiVersion}}")) == "1.47\n"
    assert out(bosun(daemon, "info", "--format", "{{.DockerRootDir}}")) == \
        f"{daemon.data_root}\n"
    info = out(bosun(daemon, "info"))
    assert f" Docker Root Dir: {daemon.data_root}\n" in info
    assert re.search(r"^ Images: \d+$", info, re.M)


# -- run -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [["echo", "hello from bosun"],
                                 ["sh", "-c", "echo out; echo err >&2; exit 7"],
                                 ["nosuchcmd"], ["/etc/passwd"]])
def test_run_rm_matches_docker(daemon, cmd):
    """Output, stderr and exit code (0, the container's, 127 not found, 126 not runnable)."""
    ours = bosun(daemon, "run", "--rm", "busybox", *cmd, check=False)
    theirs = daemon.docker("run", "--rm", "busybox", *cmd, check=False)
    assert ours.returncode == theirs.returncode
    assert out(ours) == out(theirs)
    if ours.returncode in (126, 127):
        assert err(ours).startswith("bosun: Error response from daemon: ")
        assert err(ours).endswith("\n\nRun 'bosun run --help' for more information\n")
    elif ours.returncode:
        assert err(ours) == "err\n"
    assert out(daemon.docker("ps", "-aq")) == ""  # --rm removed it, even when start failed


def test_run_stdin_pipe_and_env(daemon, tmp_path):
    r = bosun(daemon, "run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z", input=b"shout\n")
    assert out(r) == "SHOUT\n"
    big = os.urandom(600_000).hex().encode()  # more than the socket buffers hold both ways
    r = bosun(daemon, "run", "--rm", "-i", "busybox", "cat", input=big)
    assert r.stdout == big
    # the container writes a lot before it reads its stdin: input waiting for it must not
    # stop its output from being relayed (once a deadlock in the shim, flaky in CI)
    r = bosun(daemon, "run", "--rm", "-i", "busybox", "sh", "-c",
              "head -c 3000000 /dev/zero; wc -c", input=b"x" * 2_000_000, timeout=60)
    assert r.stdout == b"\0" * 3_000_000 + b"2000000\n"
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\n\nINHERITED\n")
    r = bosun(daemon, "run", "--rm", "--env-file", str(env_file), "-e", "A=1", "-e",
              "INHERITED", "-w", "/tmp", "-u", "1234:5678", "busybox", "sh", "-c",
              'echo $FROM_FILE $A $INHERITED $(pwd) $(id -u):$(id -g)',
              env=dict(os.environ, INHERITED="from-env"))
    assert out(r) == "yes 1 from-env /tmp 1234:5678\n"
    r = bosun(daemon, "run", "--rm", "--entrypoint", "echo", "busybox", "via", "entrypoint")
    assert out(r) == "via entrypoint\n"


def test_run_flags_reach_the_container(daemon, tmp_path):
    """Each flag as docker's CLI would send it: compare the created containers' inspect."""
    (tmp_path / "f").write_text("host file\n")
    flags = ["-l", "a=b", "-e", "X=1", "-w", "/srv", "-u", "nobody", "--restart",
             "on-failure:3", "-m", "64m", "--cpus", "0.5", "--pids-limit", "50", "--init",
             "--read-only", "--network", "none", "--cap-add", "NET_ADMIN", "--cap-drop",
             "CHOWN", "--tmpfs", "/run:size=1m", "-v", f"{tmp_path}:/data:ro",
             "--entrypoint", "sh", "--stop-signal", "SIGUSR1", "-h", "box"]
    ours = out(bosun(daemon, "create", "--name", "ours", *flags, "busybox", "-c", "x")).strip()
    daemon.docker("create", "--name", "theirs", *flags, "busybox", "-c", "x")
    assert re.fullmatch(r"[0-9a-f]{64}", ours)
    a = json.loads(out(bosun(daemon, "inspect", "ours")))[0]
    b = json.loads(out(daemon.docker("inspect", "theirs")))[0]
    for key in ("Memory", "NanoCpus", "PidsLimit", "Init", "ReadonlyRootfs", "NetworkMode",
                "CapAdd", "CapDrop", "Tmpfs", "Binds", "RestartPolicy", "AutoRemove",
                "Privileged"):
        assert a["HostConfig"][key] == b["HostConfig"][key], key
    for key in ("Labels", "Env", "WorkingDir", "User", "Entrypoint", "Cmd", "StopSignal",
                "Hostname", "Tty", "OpenStdin"):
        assert a["Config"][key] == b["Config"][key], key
    assert a["HostConfig"]["Memory"] == 64 << 20 and a["HostConfig"]["NanoCpus"] == 5 * 10**8
    # and they work: the bind mount read-only, the root read-only, no network but lo
    r = bosun(daemon, "run", "--rm", "--read-only", "--network", "none", "-v",
              f"{tmp_path}:/data:ro", "--privileged", "busybox", "sh", "-c",
              "cat /data/f; touch /data/g /x 2>&1 | wc -l; ls /sys/class/net")
    assert out(r) == "host file\n2\nlo\n"


def test_run_publish_and_network_flags_as_docker(daemon):
    flags = ["-p", "127.0.0.1:18080:80", "-p", "19000-19001:90-91/udp", "-p", "127.0.0.1::70",
             "-p", "[::1]:18081:81", "--expose", "7000-7001", "-P", "--add-host", "a:1.2.3.4",
             "--dns", "9.9.9.9", "--dns-search", "x.example", "--dns-option", "ndots:2",
             "--mac-address", "02:42:ac:11:00:42"]
    bosun(daemon, "create", "--name", "ours", *flags, "busybox")
    daemon.docker("create", "--name", "theirs", *flags, "busybox")
    a = json.loads(out(bosun(daemon, "inspect", "ours")))[0]
    b = json.loads(out(daemon.docker("inspect", "theirs")))[0]
    for key in ("PortBindings", "PublishAllPorts", "ExtraHosts", "Dns", "DnsSearch",
                "DnsOptions"):
        assert a["HostConfig"][key] == b["HostConfig"][key], key
    assert a["Config"]["ExposedPorts"] == b["Config"]["ExposedPorts"]
    assert a["HostConfig"]["PortBindings"]["90/udp"] == [{"HostIp": "", "HostPort": "19000"}]
    for bad, message in (("abc", "invalid containerPort: abc"), ("80/xyz", "invalid proto: xyz"),
                         ("70000:80", "invalid hostPort: 70000"),
                         ("8000-8002:80-81", "invalid ranges specified for container and "
                          "host Ports: 80-81 and 8000-8002")):
        r = bosun(daemon, "create", "-p", bad, "busybox", check=False)
        theirs = daemon.docker("create", "-p", bad, "busybox", check=False)
        assert r.returncode == theirs.returncode == 125
        assert err(r) == f"bosun: {message}\n\nRun 'bosun create --help' for more information\n"
        assert message in err(theirs)
    # and the port works: published on loopback, reached from the host
    bosun(daemon, "run", "-d", "--name", "web", "-p", "127.0.0.1::8000", "busybox", "sh", "-c",
          "echo hello-from-nc | nc -l -p 8000")
    port = out(bosun(daemon, "port", "web", "8000")).strip()
    assert port.startswith("127.0.0.1:")
    import socket

    def reply() -> bytes:
        try:
            with socket.create_connection(("127.0.0.1", int(port.rsplit(":", 1)[1])), 2) as s:
                return s.recv(100)
        except OSError:  # not listening yet
            return b""
    assert wait_for(lambda: reply() == b"hello-from-nc\n")


def test_detached_logs_exec_top_stop_rm(daemon):
    cid = out(bosun(daemon, "run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                    "i=0; while true; do echo tick $i; echo tock $i >&2; i=$((i+1)); "
                    "sleep 0.1; done")).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    wait_for(lambda: out(bosun(daemon, "logs", "ticker")).count("tick") >= 2)
    ours, theirs = bosun(daemon, "logs", "ticker"), daemon.docker("logs", "ticker")
    assert out(ours).startswith("tick 0\ntick 1\n") and err(ours).startswith("tock 0\n")
    n = min(out(ours).count("\n"), out(theirs).count("\n"))
    assert out(ours).splitlines()[:n] == out(theirs).splitlines()[:n]
    r = bosun(daemon, "logs", "--tail", "1", "-t", "ticker")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z t[io]ck \d+\n", out(r) + err(r))
    r = bosun(daemon, "logs", "--since", "1h", "--tail", "2", "ticker")
    assert (out(r) + err(r)).count("\n") == 2
    for flag, when in (("--since", "2099-01-01T00:00:00Z"), ("--until", "2000-01-01"),
                       ("--until", "1h")):
        r = bosun(daemon, "logs", flag, when, "ticker")
        assert out(r) + err(r) == "", (flag, when)
    ps = out(bosun(daemon, "ps", "--format", "{{.Names}} {{.Status}} {{.ID}}"))
    assert re.fullmatch(rf"ticker Up .* {cid[:12]}\n", ps)
    r = bosun(daemon, "exec", "-e", "Y=2", "-w", "/etc", "-u", "1:1", "ticker", "sh", "-c",
              "echo $Y $(pwd) $(id -u); exit 3", check=False)
    assert (r.returncode, out(r)) == (3, "2 /etc 1\n")
    assert out(bosun(daemon, "exec", "-i", "ticker", "cat", input=b"piped\n")) == "piped\n"
    ours = bosun(daemon, "exec", "ticker", "nosuch", check=False)
    theirs = daemon.docker("exec", "ticker", "nosuch", check=False)
    assert ours.returncode == theirs.returncode == 127
    bosun(daemon, "exec", "-d", "ticker", "touch", "/tmp/detached")
    assert bosun(daemon, "exec", "ticker", "test", "-e", "/tmp/detached").returncode == 0
    top = out(bosun(daemon, "top", "ticker")).splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"] and "tick" in top[1]
    t0 = time.monotonic()
    assert out(bosun(daemon, "stop", "-t", "1", "ticker")) == "ticker\n"
    assert time.monotonic() - t0 < 10
    assert out(bosun(daemon, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                     "ticker")) == "exited 137\n"
    assert out(bosun(daemon, "rm", "ticker")) == "ticker\n"
    assert out(bosun(daemon, "ps", "-aq")) == ""


def test_logs_follow_ends_with_the_container(daemon):
    bosun(daemon, "run", "-d", "--name", "brief", "busybox", "sh", "-c",
          "for i in 1 2 3; do echo line $i; sleep 0.2; done")
    r = bosun(daemon, "logs", "-f", "brief", timeout=30)
    assert out(r) == "line 1\nline 2\nline 3\n"


def test_lifecycle_commands(daemon):
    bosun(daemon, "create", "--name", "life", "busybox", "sh", "-c", "sleep 300")
    assert out(bosun(daemon, "ps", "-a", "--format", "{{.State}}")) == "created\n"
    assert out(bosun(daemon, "start", "life")) == "life\n"
    assert out(bosun(daemon, "pause", "life")) == "life\n"
    assert out(bosun(daemon, "ps", "--format", "{{.State}}")) == "paused\n"
    assert out(bosun(daemon, "unpause", "life")) == "life\n"
    bosun(daemon, "rename", "life", "renamed")
    assert out(bosun(daemon, "restart", "-t", "0", "renamed")) == "renamed\n"
    assert out(bosun(daemon, "kill", "-s", "KILL", "renamed")) == "renamed\n"
    assert out(bosun(daemon, "wait", "renamed")) == "137\n"
    # start -a: attached, exit code of the container
    bosun(daemon, "create", "--name", "once", "busybox", "sh", "-c", "echo started; exit 4")
    r = bosun(daemon, "start", "-a", "once", check=False)
    assert (r.returncode, out(r)) == (4, "started\n")
    assert out(bosun(daemon, "rm", "-f", "renamed", "once")) == "renamed\nonce\n"


def test_ps_filters_and_formats(daemon):
    for name, cmd in (("p1", "sleep 300"), ("p2", "true")):
        bosun(daemon, "run", "-d", "--name", name, "-l", f"who={name}", "busybox", "sh", "-c",
              cmd)
    bosun(daemon, "wait", "p2")
    assert out(bosun(daemon, "ps", "--format", "{{.Names}}")) == "p1\n"
    assert sorted(out(bosun(daemon, "ps", "-a", "--format", "{{.Names}}")).split()) == \
        ["p1", "p2"]
    assert out(bosun(daemon, "ps", "-a", "-f", "status=exited", "--format", "{{.Names}}")) == \
        "p2\n"
    assert out(bosun(daemon, "ps", "-a", "-f", "label=who=p1", "-q")) == \
        out(daemon.docker("ps", "-a", "-f", "label=who=p1", "-q"))
    assert out(bosun(daemon, "ps", "-l", "--format", "{{.Names}}")) == "p2\n"
    assert out(bosun(daemon, "ps", "-n", "2", "-q")).count("\n") == 2
    assert out(bosun(daemon, "ps", "-aq", "--no-trunc")) == out(daemon.docker("ps", "-aq",
                                                                             "--no-trunc"))
    assert out(bosun(daemon, "ps", "--format", '{{.Label "who"}}|{{.Labels}}|{{.Command}}')) == \
        'p1|who=p1|"sh -c \'sleep 300\'"\n'
    # the default table: same header and cells as docker's (times can differ by a second)
    ours = out(bosun(daemon, "ps", "-a")).splitlines()
    theirs = out(daemon.docker("ps", "-a")).splitlines()
    # (column widths follow the cells: "Up 1 second" and "Up 2 seconds" pad differently)
    assert re.split(r"\s{2,}", ours[0].strip()) == re.split(r"\s{2,}", theirs[0].strip())
    assert [line.split()[:3] for line in ours] == [line.split()[:3] for line in theirs]
    table = out(bosun(daemon, "ps", "-s", "--format", "table {{.Names}}\t{{.Size}}"))
    assert re.fullmatch(r"NAMES     SIZE\np1        \d.*B \(virtual .*B\)\n", table)
    row = json.loads(out(bosun(daemon, "ps", "--format", "json")))
    assert row["Names"] == "p1" and row["State"] == "running" and row["Labels"] == "who=p1"
    bosun(daemon, "rm", "-f", "p1", "p2")


def test_inspect(daemon):
    bosun(daemon, "run", "-d", "--name", "insp", "busybox", "sleep", "300")
    fmt = "{{.Name}} {{.State.Running}} {{json .Config.Cmd}} {{index .Config.Labels \"x\"}}" \
          " {{range .Config.Env}}{{.}};{{end}} {{if .State.Paused}}p{{else}}np{{end}}"
    assert out(bosun(daemon, "inspect", "-f", fmt, "insp")) == \
        out(daemon.docker("inspect", "-f", fmt, "insp"))
    ours = json.loads(out(bosun(daemon, "inspect", "insp", "busybox")))
    theirs = json.loads(out(daemon.docker("inspect", "insp", "busybox")))
    assert [d["Id"] for d in ours] == [d["Id"] for d in theirs]
    assert out(bosun(daemon, "inspect", "insp")).startswith('[\n    {\n        "Id": ')
    r = bosun(daemon, "inspect", "insp", "nosuch", check=False)
    assert r.returncode == 1 and err(r) == "Error: No such object: nosuch\n"
    assert json.loads(out(r))[0]["Name"] == "/insp"
    assert out(bosun(daemon, "inspect", "--type", "image", "-f", "{{.Id}}", "busybox")) == \
        out(daemon.docker("inspect", "--type", "image", "-f", "{{.Id}}", "busybox"))


def test_images_tag_rmi(daemon):
    assert out(bosun(daemon, "images", "-q")) == out(daemon.docker("images", "-q"))
    table = out(bosun(daemon, "images")).splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[0] == out(daemon.docker("images")).splitlines()[0]
    assert bosun(daemon, "tag", "busybox", "mine/box:v1").returncode == 0
    assert out(bosun(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}",
                     "mine/box")) == "mine/box:v1\n"
    assert out(bosun(daemon, "rmi", "mine/box:v1")) == "Untagged: mine/box:v1\n"
    r = bosun(daemon, "rmi", "nosuch", check=False)
    assert r.returncode == 1
    assert err(r) == "Error response from daemon: No such image: nosuch:latest\n"


def test_pull_from_registry(daemon, open_registry, repo_name):
    ref = f"{open_registry.host}/{repo_name}:v1"
    daemon.docker("tag", "busybox", ref)
    daemon.docker("push", ref)
    daemon.docker("rmi", ref)
    r = bosun(daemon, "pull", ref)
    lines = out(r).splitlines()
    assert lines[0] == f"v1: Pulling from {repo_name}"
    assert any(line.endswith(": Pull complete") or line.endswith(": Already exists")
               for line in lines)
    assert lines[-1] == ref and "Digest: sha256:" in out(r)
    assert out(bosun(daemon, "images", "-q", ref)) != ""
    bosun(daemon, "rmi", ref)
    # -q: just the name; and `run` pulls a missing image itself
    assert out(bosun(daemon, "pull", "-q", ref)) == f"{ref}\n"
    bosun(daemon, "rmi", ref)
    r = bosun(daemon, "run", "--rm", ref, "echo", "pulled")
    assert out(r) == "pulled\n"
    assert err(r).startswith(f"Unable to find image '{ref}' locally\n")
    bosun(daemon, "rmi", ref)
    r = bosun(daemon, "pull", f"{open_registry.host}/{repo_name}:nope", check=False)
    assert r.returncode == 1 and "manifest unknown" in err(r).lower()


# -- errors ------------------------------------------------------------------------------------

def test_usage_errors_match_docker(daemon):
    for args in (["run", "--x", "busybox"], ["ps", "--bogus"], ["run", "-z", "busybox"],
                 ["rm"], ["logs"], ["exec", "c"], ["ps", "-n", "x"], ["frobnicate"]):
        ours = bosun(daemon, *args, check=False)
        theirs = daemon.docker(*args, check=False)
        assert ours.returncode == theirs.returncode, args
        assert err(ours) == err(theirs).replace("docker", "bosun"), args


def test_daemon_errors(daemon, tmp_path):
    r = bosun(daemon, "stop", "nosuch", check=False)
    assert (r.returncode, err(r)) == (1, "Error response from daemon: No such container: "
                                         "nosuch\n")
    r = bosun(daemon, "run", "--rm", "no/such-image-anywhere:1", "true", check=False)
    assert r.returncode == daemon.docker("run", "--rm", "no/such-image-anywhere:1", "true",
                                         check=False).returncode == 125
    gone = f"unix://{tmp_path}/none.sock"
    for args, code in ((["ps"], 1), (["version"], 1), (["run", "busybox"], 125)):
        r = subprocess.run([*BOSUN, "-H", gone, *args], capture_output=True, timeout=30)
        assert r.returncode == code
        assert err(r) == (f"Cannot connect to the bosun daemon at {gone}. Is the bosun daemon "
                          "running? (start it with: bosun daemon)\n")
    r = subprocess.run([*BOSUN, "ps"], capture_output=True, timeout=30,
                       env=dict(os.environ, DOCKER_HOST=gone))
    assert gone in err(r)
    r = subprocess.run([*BOSUN, "ps", "--format", "{{.Names}}"], capture_output=True,
                       timeout=30, env=dict(os.environ, BOSUN_HOST=daemon.host,
                                            DOCKER_HOST=gone))
    assert r.returncode == 0


# -- terminals ---------------------------------------------------------------------------------

@pytest.fixture
def terminal(daemon):
    """bosun in a new pty."""
    opened: list[Terminal] = []

    def make(*args: str, **kw) -> Terminal:
        t = Terminal([*BOSUN, "-H", daemon.host, *args], dict(os.environ), **kw)
        opened.append(t)
        return t

    yield make
    for t in opened:
        t.close()


def test_run_it_raw_terminal_resize_and_restore(daemon, terminal):
    t = terminal("run", "-it", "--rm", "busybox", "sh", rows=30, cols=100)
    t.expect(rb"# ")
    # raw mode: our terminal neither echoes nor cooks; the container's tty does both
    attrs = termios.tcgetattr(t.fd)
    assert not attrs[3] & (termios.ECHO | termios.ICANON)
    t.type(b"tty; echo R$((40+2))\n")
    t.expect(rb"/dev/pts/0\r\nR42")
    check_size(t, 30, 100)
    t.resize(40, 120)  # SIGWINCH → resize
    check_size(t, 40, 120)
    t.type(b"exit 5\n")
    assert t.wait() == 5
    attrs = termios.tcgetattr(t.fd)  # restored on the way out
    assert attrs[3] & termios.ECHO and attrs[3] & termios.ICANON
    assert out(daemon.docker("ps", "-aq")) == ""


def test_exec_it_and_detach(daemon, terminal):
    bosun(daemon, "run", "-dit", "--name", "box", "busybox", "sh")
    t = terminal("exec", "-it", "-e", "X=exec", "box", "sh", rows=25, cols=90)
    t.expect(rb"# ")
    t.type(b"echo E$X$((3*3)); echo T$TERM\n")
    t.expect(rb"Eexec9\r\nTxterm")
    check_size(t, 25, 90)
    t.type(b"exit 6\n")
    assert t.wait() == 6
    # attach, then leave with ctrl-p ctrl-q: the container goes on
    t2 = terminal("attach", "box")
    t2.type(b"echo A$((2+3))\n")
    t2.expect(rb"A5")
    t2.type(b"\x10\x11")
    assert t2.wait() == 0
    assert out(bosun(daemon, "inspect", "-f", "{{.State.Running}}", "box")) == "true\n"
    bosun(daemon, "rm", "-f", "box")


def test_run_it_needs_a_terminal(daemon):
    r = bosun(daemon, "run", "-it", "--rm", "busybox", "true", check=False)
    theirs = daemon.docker("run", "-it", "--rm", "busybox", "true", check=False)
    assert r.returncode == theirs.returncode == 1
    assert err(r) == "the input device is not a TTY\n"


def test_network_commands_as_docker(daemon):
    netid = out(bosun(daemon, "network", "create", "--subnet", "10.231.0.0/24", "--gateway",
                      "10.231.0.254", "--label", "team=a", "clinet")).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", netid)
    daemon.docker("network", "create", "clinet2")
    for args in (["network", "ls"], ["network", "ls", "-q", "--filter", "label=team=a"],
                 ["network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Label \"team\"}}"],
                 ["network", "inspect", "-f", "{{json .IPAM.Config}}", "clinet"]):
        assert out(bosun(daemon, *args)) == out(daemon.docker(*args)), args
    assert json.loads(out(bosun(daemon, "network", "inspect", "clinet")))[0]["Id"] == netid
    r = bosun(daemon, "network", "inspect", "nonet", check=False)
    theirs = daemon.docker("network", "inspect", "nonet", check=False)
    assert (r.returncode, out(r), err(r)) == (theirs.returncode, out(theirs),
                                              err(theirs).replace("docker", "bosun"))
    r = bosun(daemon, "network", "create", "--subnet", "10.232.0.0/24", "--gateway",
              "10.9.9.9", "badnet", check=False)
    assert r.returncode == 125 and "no matching subnet for gateway 10.9.9.9" in err(r)
    # a container by its address and alias, then connected and disconnected
    bosun(daemon, "run", "-d", "--name", "member", "--network", "clinet", "--ip", "10.231.0.7",
          "--network-alias", "db", "busybox", "sleep", "300")
    doc = json.loads(out(bosun(daemon, "inspect", "member")))[0]
    ep = doc["NetworkSettings"]["Networks"]["clinet"]
    assert ep["IPAddress"] == "10.231.0.7" and "db" in ep["Aliases"]
    bosun(daemon, "network", "connect", "--alias", "cache", "clinet2", "member")
    r = bosun(daemon, "exec", "member", "ip", "-4", "-o", "addr")
    assert "10.231.0.7/24" in out(r) and re.findall(r"^\d+: (\w+)", out(r), re.M) == \
        ["lo", "eth0", "eth1"]
    bosun(daemon, "network", "disconnect", "clinet2", "member")
    r = bosun(daemon, "exec", "member", "ip", "-4", "-o", "addr")
    assert re.findall(r"^\d+: (\w+)", out(r), re.M) == ["lo", "eth0"]
    r = bosun(daemon, "network", "rm", "clinet", check=False)
    assert r.returncode == 1 and "has active endpoints" in err(r)
    bosun(daemon, "rm", "-f", "member")
    assert out(bosun(daemon, "network", "rm", "clinet")) == "clinet\n"
    assert out(bosun(daemon, "network", "prune", "-f")) == "Deleted Networks:\nclinet2\n"
    assert out(bosun(daemon, "network", "ls", "-q")).count("\n") == 3  # bridge, host, none


def test_mount_ulimit_health_flags_as_docker(daemon, tmp_path):
    (tmp_path / "f").write_text("bound\n")
    flags = ["--mount", f"type=bind,src={tmp_path},dst=/data,ro,bind-propagation=rslave",
             "--mount", "type=tmpfs,destination=/scratch,tmpfs-size=1m,tmpfs-mode=1770",
             "--ulimit", "nofile=512:1024", "--ulimit", "nproc=100",
             "--health-cmd", "true", "--health-interval", "1m30s", "--health-timeout", "500ms",
             "--health-retries", "2", "--health-start-period", "1s"]
    bosun(daemon, "create", "--name", "ours", *flags, "busybox")
    daemon.docker("create", "--name", "theirs", *flags, "busybox")
    a = json.loads(out(bosun(daemon, "inspect", "ours")))[0]
    b = json.loads(out(daemon.docker("inspect", "theirs")))[0]
    for key in ("Mounts", "Ulimits"):
        assert a["HostConfig"][key] == b["HostConfig"][key], key
    assert a["Config"]["Healthcheck"] == b["Config"]["Healthcheck"]
    assert a["Config"]["Healthcheck"]["Interval"] == 90 * 10**9
    r = bosun(daemon, "run", "--rm", *flags[:8], "busybox", "sh", "-c",
              "cat /data/f; touch /data/x 2>/dev/null || echo ro; ulimit -n; "
              "stat -c %a /scratch; grep ' /scratch ' /proc/mounts | grep -o size=[0-9a-z]*")
    assert out(r) == "bound\nro\n512\n1770\nsize=1024k\n"
    for bad in (["-m", "abc"], ["--health-interval", "5"], ["--ulimit", "nofile=10:5"],
                ["--ulimit", "bogus=1"], ["--mount", "type=bind"], ["--mount", "foo"],
                ["--mount", "type=volume,target=/x,bogus=1"],
                ["--mount", "type=tmpfs,target=/x,tmpfs-size=abc"],
                ["--mount", "type=bind,src=/tmp,dst=/x,volume-nocopy"]):
        ours = bosun(daemon, "create", *bad, "busybox", check=False)
        theirs = daemon.docker("create", *bad, "busybox", check=False)
        assert ours.returncode == theirs.returncode == 125, bad
        assert err(ours) == err(theirs).replace("docker", "bosun"), bad
