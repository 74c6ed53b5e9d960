"""Docker's default seccomp profile as bosun builds it (no container needed)."""

from __future__ import annotations

import json
import tempfile

import pytest

from bosun.kernel import caps as K
from bosun.security import seccomp_default as sd

# Docker's default capability set
DOCKER_CAPS = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
ALL_CAPS = set(K.NAMES)
CAP_SETS = {"none": set(), "docker": DOCKER_CAPS, "docker+admin": DOCKER_CAPS | {"CAP_SYS_ADMIN"},
            "all": ALL_CAPS}


def allowed(profile) -> set[str]:
    """Syscalls allowed whatever their arguments."""
    return {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
            for n in r["names"]}


def rules_for(profile, name) -> list[dict]:
    return [r for r in profile["syscalls"] if name in r["names"]]


def pfc(profile) -> str:
    """The filter libseccomp compiles from the profile, in its readable form."""
    from bosun.runtime import seccomp_filter

    pytest.importorskip("seccomp")
    f = seccomp_filter.build(profile)
    with tempfile.TemporaryFile("w+") as t:
        f.export_pfc(t)
        t.seek(0)
        return t.read()


def test_top_level_shape():
    p = sd.default_profile(DOCKER_CAPS, "x86_64")
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert sd.default_profile(DOCKER_CAPS, "aarch64")["architectures"] == [
        "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert sd.default_profile((), "sparc64")["architectures"] == []  # native only
    assert json.loads(json.dumps(p)) == p
    for r in p["syscalls"]:
        assert r["names"] and all(isinstance(n, str) for n in r["names"])
        assert r["action"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO")


def test_data_has_no_duplicates_or_overlaps():
    assert len(set(sd.ALWAYS)) == len(sd.ALWAYS)
    gated = {n for _, names in sd.BY_CAPABILITY for n in names}
    assert not gated & set(sd.ALWAYS)
    assert {c for c, _ in sd.BY_CAPABILITY} <= ALL_CAPS
    for _, only in sd.ARCHES.values():
        assert not set(only) & (set(sd.ALWAYS) | gated)


def test_each_call_returns_a_fresh_object():
    a = sd.default_profile(DOCKER_CAPS)
    a["syscalls"][0]["names"].append("keyctl")
    a["architectures"].append("SCMP_ARCH_MIPS")
    assert "keyctl" not in allowed(sd.default_profile(DOCKER_CAPS))


@pytest.mark.parametrize("caps", CAP_SETS.values(), ids=CAP_SETS.keys())
@pytest.mark.parametrize("machine", ["x86_64", "aarch64", "s390x", "ppc64le", "riscv64"])
def test_builds_with_libseccomp(caps, machine):
    pytest.importorskip("seccomp")
    from bosun.runtime import seccomp_filter

    seccomp_filter.build(sd.default_profile(caps, machine))


@pytest.mark.parametrize("cap,names", sd.BY_CAPABILITY)
def test_groups_follow_the_bounding_set(cap, names):
    others = {c for c, ns in sd.BY_CAPABILITY if c != cap and set(ns) & set(names)}
    without = allowed(sd.default_profile(ALL_CAPS - {cap} - others))
    assert not set(names) & without, cap
    assert set(names) <= allowed(sd.default_profile({cap}))
    assert set(names) <= allowed(sd.default_profile(ALL_CAPS))


def test_docker_caps_allow_chroot_but_nothing_admin():
    a = allowed(sd.default_profile(DOCKER_CAPS))
    assert "chroot" in a
    for name in ("mount", "umount2", "unshare", "setns", "reboot", "init_module", "bpf",
                 "perf_event_open", "settimeofday", "open_by_handle_at", "clone3", "clone"):
        assert name not in a, name
    assert {"read", "execve", "fork", "wait4", "rt_sigreturn", "arch_prctl", "chmod"} <= a


@pytest.mark.parametrize("caps", CAP_SETS.values(), ids=CAP_SETS.keys())
def test_keyring_syscalls_are_never_allowed(caps):
    p = sd.default_profile(caps)
    for name in ("keyctl", "add_key", "request_key"):
        assert not rules_for(p, name), name
    text = pfc(p)
    assert '"keyctl"' not in text and '"add_key"' not in text and '"request_key"' not in text


def test_ptrace_needs_cap_sys_ptrace():
    # bosun's deviation from Docker >= 19.03: no ptrace for a container without the cap
    for name in ("ptrace", "process_vm_readv", "process_vm_writev"):
        assert not rules_for(sd.default_profile(DOCKER_CAPS), name)
        assert name in allowed(sd.default_profile(DOCKER_CAPS | {"CAP_SYS_PTRACE"}))
    assert '"ptrace"' not in pfc(sd.default_profile(DOCKER_CAPS))


def test_clone_and_clone3_without_sys_admin():
    p = sd.default_profile(DOCKER_CAPS, "x86_64")
    (c3,) = rules_for(p, "clone3")
    assert c3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    (clone,) = rules_for(p, "clone")
    assert clone["action"] == "SCMP_ACT_ALLOW"
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "valueTwo": 0,
                              "op": "SCMP_CMP_MASKED_EQ"}]
    (s390,) = rules_for(sd.default_profile(DOCKER_CAPS, "s390x"), "clone")
    assert s390["args"][0]["index"] == 1  # s390 passes the flags second
    text = pfc(p)
    assert "action ERRNO(38)" in text.split('"clone3"', 1)[1].split("# filter for syscall")[0]
    assert "ERRNO(38)" in text


def test_clone_and_clone3_with_sys_admin():
    p = sd.default_profile(DOCKER_CAPS | {"CAP_SYS_ADMIN"})
    assert all(r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
               for name in ("clone", "clone3") for r in rules_for(p, name))
    assert {"clone", "clone3", "unshare", "mount", "setns"} <= allowed(p)
    assert "ERRNO(38)" not in pfc(p)


def test_unshare_refused_without_sys_admin():
    p = sd.default_profile(ALL_CAPS - {"CAP_SYS_ADMIN"})
    assert not rules_for(p, "unshare") and not rules_for(p, "setns")


def test_conditional_rules():
    p = sd.default_profile(())
    (sock,) = rules_for(p, "socket")
    assert sock["args"] == [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]  # not AF_VSOCK
    personas = sorted(r["args"][0]["value"] for r in rules_for(p, "personality"))
    assert personas == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert all(r["args"][0]["op"] == "SCMP_CMP_EQ" for r in rules_for(p, "personality"))


def test_arch_specific_syscalls():
    assert {"arch_prctl", "modify_ldt"} <= allowed(sd.default_profile((), "x86_64"))
    arm = allowed(sd.default_profile((), "aarch64"))
    assert "set_tls" in arm and "arch_prctl" not in arm
    assert "s390_runtime_instr" in allowed(sd.default_profile((), "s390x"))


def test_capability_names_are_normalised():
    assert allowed(sd.default_profile({"sys_admin"})) == allowed(
        sd.default_profile({"CAP_SYS_ADMIN"}))


def test_profile_for_config_uses_the_bounding_set():
    cfg = {"process": {"capabilities": {"bounding": ["CAP_SYS_PTRACE"], "effective": [],
                                        "permitted": []}}}
    assert "ptrace" in allowed(sd.profile_for_config(cfg))
    assert "ptrace" not in allowed(sd.profile_for_config({"process": {}}))
