"""Docker's default seccomp profile (bosun.security.seccomp_default) in a real container.

Busybox has no applet for keyctl, ptrace or clone3, so a tiny static C program (`probe`)
makes those system calls and prints how each one ended: `name: ok` or `name: EPERM`.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bosun.security.seccomp_default import profile_for_config

DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/sched.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static long try(const char *what) {
    if (!strcmp(what, "keyctl"))       /* KEYCTL_GET_KEYRING_ID of the session keyring */
        return syscall(SYS_keyctl, 0, -3, 0);
    if (!strcmp(what, "add_key"))
        return syscall(SYS_add_key, "user", "bosun-probe", "x", 1, -3);
    if (!strcmp(what, "request_key"))
        return syscall(SYS_request_key, "user", "bosun-probe", NULL, 0);
    if (!strcmp(what, "ptrace"))
        return syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
    if (!strcmp(what, "clone3"))       /* no arguments: EINVAL if the kernel sees it */
        return syscall(SYS_clone3, NULL, 0);
    if (!strcmp(what, "clone_newns")) {
        long pid = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0)
            _exit(0);
        if (pid > 0)
            waitpid(pid, NULL, 0);
        return pid;
    }
    if (!strcmp(what, "socket_vsock"))
        return socket(AF_VSOCK, SOCK_STREAM, 0);
    if (!strcmp(what, "socket_unix"))
        return socket(AF_UNIX, SOCK_STREAM, 0);
    errno = EINVAL;
    return -2;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long rc = try(argv[i]);
        if (rc == -2)
            return 2;
        printf("%s: %s\n", argv[i], rc < 0 ? strerrorname_np(errno) : "ok");
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to build the static syscall probe (Debian: gcc, libc6-dev)")
    d = tmp_path_factory.mktemp("probe")
    (d / "probe.c").write_text(PROBE_C)
    p = subprocess.run([gcc, "-static", "-O1", "-o", str(d / "probe"), str(d / "probe.c")],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot build a static probe (static libc missing?): {p.stderr[-500:]}")
    return d / "probe"


def _run(rt, bundles, cid, script, caps=DOCKER_CAPS, nnp=True, probe=None):
    def edit(c):
        c["process"]["capabilities"] = {k: list(caps)
                                        for k in ("bounding", "effective", "permitted")}
        c["process"]["noNewPrivileges"] = nnp
        c["linux"]["seccomp"] = profile_for_config(c)
    b = bundles.make(["sh", "-c", script], edit=edit)
    if probe is not None:
        shutil.copy(probe, b / "rootfs" / "bin" / "probe")
    return rt("run", "--bundle", b, cid, check=False)


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_everyday_commands_work(rt, bundles, cid, nnp):
    # without noNewPrivileges the filter is loaded before the runtime drops capabilities
    # and changes ids, so the profile must also let the runtime finish its own work
    script = ("set -e; ls / >/dev/null; ps >/dev/null; cat /etc/passwd >/dev/null; "
              "mkdir -p /tmp/a/b; echo hi >/tmp/a/b/f; cat /tmp/a/b/f; "
              "wget --help 2>/dev/null; date +%Y >/dev/null; sleep 0.1; id -u; "
              "chroot / true; linux32 uname -m; (true) & wait; echo done")
    p = _run(rt, bundles, cid, script, nnp=nnp)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert p.stdout == "hi\n0\ni686\ndone\n", (p.stdout, p.stderr)


def test_unshare_is_refused(rt, bundles, cid):
    p = _run(rt, bundles, cid, "unshare -U true; echo rc=$?; unshare -m true; echo rc=$?")
    assert p.stdout == "rc=1\nrc=1\n", (p.stdout, p.stderr)
    assert p.stderr.count("Operation not permitted") == 2, p.stderr


def test_refused_syscalls(rt, bundles, cid, probe):
    p = _run(rt, bundles, cid, "probe keyctl add_key request_key ptrace clone3 clone_newns "
             "socket_vsock socket_unix", probe=probe)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert p.stdout.splitlines() == [
        "keyctl: EPERM", "add_key: EPERM", "request_key: EPERM", "ptrace: EPERM",
        "clone3: ENOSYS", "clone_newns: EPERM", "socket_vsock: EPERM", "socket_unix: ok"]


def test_sys_admin_allows_namespaces(rt, bundles, cid, probe):
    p = _run(rt, bundles, cid, "unshare -m true && echo unshare-ok; "
             "probe clone3 clone_newns keyctl ptrace",
             caps=DOCKER_CAPS + ["CAP_SYS_ADMIN"], probe=probe)
    assert p.returncode == 0, (p.stdout, p.stderr)
    # clone3 now reaches the kernel, which rejects the empty argument with EINVAL
    assert p.stdout.splitlines() == ["unshare-ok", "clone3: EINVAL", "clone_newns: ok",
                                     "keyctl: EPERM", "ptrace: EPERM"], p.stderr


def test_sys_ptrace_allows_ptrace(rt, bundles, cid, probe):
    p = _run(rt, bundles, cid, "probe ptrace", caps=DOCKER_CAPS + ["CAP_SYS_PTRACE"],
             probe=probe)
    assert p.stdout == "ptrace: ok\n", (p.stdout, p.stderr)
