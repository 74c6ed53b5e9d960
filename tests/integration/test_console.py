"""The container's terminal (process.terminal with --console-socket, or relayed by a
foreground run/exec) and file descriptors passed in (--preserve-fds, LISTEN_FDS)."""

import fcntl
import os
import select
import socket
import struct
import subprocess
import tempfile
import termios
import time

import pytest


def read_until(fd, want: bytes, timeout=10) -> bytes:
    """Read fd until `want` shows up, EOF/EIO, or timeout; return all that was read."""
    buf = b""
    deadline = time.monotonic() + timeout
    while want not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            break
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the other side of the pty is closed
            break
        if not data:
            break
        buf += data
    return buf


def read_all(fd, timeout=10) -> bytes:
    return read_until(fd, b"\0never\0", timeout)


class ConsoleSocket:
    """What containerd's shim does: listen, receive the pty master over SCM_RIGHTS."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.settimeout(10)

    def receive(self) -> int:
        conn, _ = self.sock.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 4096, 4)
        assert len(fds) == 1, fds
        assert msg  # runc sends the name of the file
        return fds[0]

    def close(self):
        self.sock.close()


@pytest.fixture
def console(tmp_path):
    # a short path: sun_path is limited to 108 bytes
    d = tempfile.mkdtemp(prefix="bosun-cs")
    cs = ConsoleSocket(os.path.join(d, "c.sock"))
    yield cs
    cs.close()
    os.unlink(cs.path)
    os.rmdir(d)


def tty_bundle(bundles, args, size=None):
    def edit(c):
        c["process"]["terminal"] = True
        if size:
            c["process"]["consoleSize"] = size

    return bundles.make(args, edit=edit)


def test_console_socket_receives_the_pty_master(rt, bundles, console, cid):
    script = ("tty; test -t 0 && echo stdin-is-a-tty; test -t 1 && echo stdout-is-a-tty; "
              "stty size; read line; echo got:$line; exit 3")
    b = tty_bundle(bundles, ["sh", "-c", script], size={"height": 33, "width": 101})
    rt("create", "--bundle", b, "--console-socket", console.path, cid)
    master = console.receive()
    try:
        assert os.isatty(master)
        rt("start", cid)
        out = read_until(master, b"33 101")
        os.write(master, b"hello pty\n")
        out += read_all(master)
    finally:
        os.close(master)
    lines = out.decode().replace("\r\n", "\n").splitlines()
    assert lines[0] == "/dev/pts/0"
    assert "stdin-is-a-tty" in lines and "stdout-is-a-tty" in lines
    assert "33 101" in lines
    assert "got:hello pty" in lines


def test_console_is_the_controlling_terminal(rt, bundles, console, cid):
    b = tty_bundle(bundles, ["sh", "-c", "trap 'echo after-interrupt; exit 0' INT; "
                             "ls -l /dev/console; cat /proc/self/stat; echo ready; "
                             "while :; do sleep 0.1; done"])
    rt("create", "--bundle", b, "--console-socket", console.path, cid)
    master = console.receive()
    try:
        rt("start", cid)
        out = read_until(master, b"ready").decode()
        time.sleep(0.2)
        # ^C on the terminal sends SIGINT to the foreground process group (sh's trap)
        os.write(master, b"\x03")
        out += read_all(master).decode()
    finally:
        os.close(master)
    out = out.replace("\r\n", "\n")
    assert "after-interrupt" in out
    stat = [ln for ln in out.splitlines() if " (cat) " in ln][0]
    fields = stat.rsplit(") ", 1)[1].split()
    assert int(fields[4]) != 0  # tty_nr: cat has a controlling terminal
    assert "/dev/console" in out


def test_console_size_default_is_left_to_the_caller(rt, bundles, console, cid):
    b = tty_bundle(bundles, ["sh", "-c", "read x; stty size"])
    rt("create", "--bundle", b, "--console-socket", console.path, cid)
    master = console.receive()
    try:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 12, 34, 0, 0))
        rt("start", cid)
        os.write(master, b"\n")
        out = read_all(master).decode()
    finally:
        os.close(master)
    assert "12 34" in out


def test_terminal_requires_a_console_socket_for_create(rt, bundles, cid):
    b = tty_bundle(bundles, ["sh"])
    p = rt("create", "--bundle", b, cid, check=False)
    assert p.returncode != 0 and "console" in p.stderr
    assert rt("list", "-q").stdout == ""


def test_console_socket_without_terminal_is_rejected(rt, bundles, console, cid):
    b = bundles.make(["true"])
    p = rt("create", "--bundle", b, "--console-socket", console.path, cid, check=False)
    assert p.returncode != 0 and "terminal" in p.stderr
    assert rt("list", "-q").stdout == ""


def test_console_socket_that_nobody_listens_on(rt, bundles, tmp_path, cid):
    b = tty_bundle(bundles, ["sh"])
    p = rt("create", "--bundle", b, "--console-socket", tmp_path / "none.sock", cid,
           check=False)
    assert p.returncode != 0 and "console socket" in p.stderr
    assert rt("list", "-q").stdout == ""


def spawn_under_pty(argv, rows=40, cols=120):
    """Start argv with a fresh pty as its controlling terminal; return (Popen, master)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def ctty():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                         preexec_fn=ctty)
    os.close(slave)
    return p, master


def test_foreground_run_relays_the_terminal(rt, bundles, cid):
    script = "tty; stty size; read line; echo got:$line; exit 4"
    b = tty_bundle(bundles, ["sh", "-c", script])
    p, master = spawn_under_pty(rt.cmd("run", "--bundle", b, cid), rows=40, cols=120)
    try:
        out = read_until(master, b"40 120")
        os.write(master, b"typed in\r")
        out += read_all(master)
        assert p.wait(10) == 4
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    text = out.decode(errors="replace").replace("\r\n", "\n")
    assert "/dev/pts/0" in text
    assert "40 120" in text
    assert "got:typed in" in text


def test_foreground_run_terminal_without_a_tty(rt, bundles, cid, tmp_path):
    """stdin a file: its content is typed into the container's terminal, then EOF."""
    f = tmp_path / "input"
    f.write_text("from a file\n")
    b = tty_bundle(bundles, ["sh", "-c", "read line; echo got:$line; test -t 0 && echo tty"])
    with open(f) as stdin:
        p = rt("run", "--bundle", b, cid, stdin=stdin)
    assert "got:from a file" in p.stdout and "tty" in p.stdout.split()


def test_foreground_exec_tty_relays_the_terminal(rt, bundles, cid):
    rt("create", "--bundle", bundles.make(["sleep", "1000"]), cid)
    rt("start", cid)
    p, master = spawn_under_pty(rt.cmd("exec", "-t", cid, "sh", "-c",
                                       "tty; stty size; read l; echo got:$l; exit 5"),
                                rows=21, cols=77)
    try:
        out = read_until(master, b"21 77")
        os.write(master, b"exec input\r")
        out += read_all(master)
        assert p.wait(10) == 5
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    text = out.decode(errors="replace").replace("\r\n", "\n")
    assert "/dev/pts/" in text and "21 77" in text and "got:exec input" in text


def test_exec_tty_with_console_socket(rt, bundles, console, cid):
    rt("create", "--bundle", bundles.make(["sleep", "1000"]), cid)
    rt("start", cid)
    out = tempfile.TemporaryFile()
    p = subprocess.Popen(rt.cmd("exec", "-t", "--console-socket", console.path, cid,
                                "sh", "-c", "tty; read l; echo got:$l"),
                         stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        master = console.receive()
        try:
            os.write(master, b"via socket\n")
            text = read_all(master).decode().replace("\r\n", "\n")
        finally:
            os.close(master)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert any(ln.startswith("/dev/pts/") for ln in text.splitlines()), text
    assert "got:via socket" in text


# -- file descriptors passed in -----------------------------------------------------------

def with_fd3(path, argv):
    """argv, run with `path` open (read-only) on fd 3."""
    return ["/bin/sh", "-c", 'exec "$@" 3<"$0"', str(path), *map(str, argv)]


def run_files(argv, env=None, timeout=30):
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                            timeout=timeout).returncode
        out.seek(0)
        err.seek(0)
        return rc, out.read().decode(), err.read().decode()


@pytest.fixture
def payload(tmp_path):
    f = tmp_path / "payload"
    f.write_text("secret-payload\n")
    return f


def test_preserve_fds_with_run(rt, bundles, cid, payload):
    b = bundles.make(["sh", "-c", "cat /proc/self/fd/3; cat <&3; ls /proc/self/fd"])
    rc, out, err = run_files(with_fd3(payload, rt.cmd("run", "--preserve-fds", "1",
                                                      "--bundle", b, cid)))
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["secret-payload", "secret-payload"]
    assert "3" in lines[2:]


def test_preserve_fds_with_create_start(rt, bundles, cid, payload):
    b = bundles.make(["sh", "-c", "cat <&3 > /tmp/r; sleep 1000"])
    rc, _, err = run_files(with_fd3(payload, rt.cmd("create", "--preserve-fds", "1",
                                                    "--bundle", b, cid)))
    assert rc == 0, err
    rt("start", cid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = rt("exec", cid, "cat", "/tmp/r").stdout
        if r:
            break
        time.sleep(0.05)
    assert r == "secret-payload\n"


def test_fd3_is_not_passed_without_preserve_fds(rt, bundles, cid, payload):
    b = bundles.make(["sh", "-c", "cat <&3 && echo LEAK; ls /proc/self/fd"])
    rc, out, err = run_files(with_fd3(payload, rt.cmd("run", "--bundle", b, cid)))
    assert "secret-payload" not in out and "LEAK" not in out


def test_preserve_fds_with_exec(rt, bundles, cid, payload):
    rt("create", "--bundle", bundles.make(["sleep", "1000"]), cid)
    rt("start", cid)
    rc, out, err = run_files(with_fd3(payload, rt.cmd("exec", "--preserve-fds", "1", cid,
                                                      "sh", "-c", "cat <&3")))
    assert (rc, out) == (0, "secret-payload\n"), err
    rc, out, err = run_files(with_fd3(payload, rt.cmd("exec", cid, "sh", "-c", "cat <&3")))
    assert "secret-payload" not in out


def test_listen_fds_socket_activation(rt, bundles, cid, payload):
    b = bundles.make(["sh", "-c", 'echo "$LISTEN_FDS $LISTEN_PID"; cat <&3'])
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
    rc, out, err = run_files(with_fd3(payload, rt.cmd("run", "--bundle", b, cid)), env=env)
    assert rc == 0, err
    assert out == "1 1\nsecret-payload\n"


def test_listen_fds_with_a_real_socket(rt, bundles, cid, tmp_path):
    """A listening socket on fd 3, as systemd would pass it: the container accepts on it."""
    path = str(tmp_path / "act.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cli.connect(path)  # queued: the container accepts it
    cli.sendall(b"ping\n")
    b = bundles.make(["sh", "-c", "ls -l /proc/self/fd/3; echo $LISTEN_FDS"])
    env = dict(os.environ, LISTEN_FDS="1")
    argv = rt.cmd("run", "--bundle", b, cid)
    with tempfile.TemporaryFile() as out:
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                            preexec_fn=lambda: os.dup2(srv.fileno(), 3), close_fds=False,
                            timeout=30).returncode
        out.seek(0)
        text = out.read().decode()
    srv.close()
    cli.close()
    assert rc == 0, text
    assert "socket:[" in text and text.splitlines()[-1] == "1"
