"""linux.seccomp through libseccomp, observed from inside the container."""


def _profile(syscalls, default="SCMP_ACT_ALLOW"):
    return {"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                                        "SCMP_ARCH_AARCH64"],
            "syscalls": syscalls}


def _run(rt, bundles, cid, script, seccomp, nnp=True):
    def edit(c):
        c["linux"]["seccomp"] = seccomp
        c["process"]["noNewPrivileges"] = nnp
    b = bundles.make(["sh", "-c", script], edit=edit)
    return rt("run", "--bundle", b, cid, check=False)


def test_denied_mkdir_fails_with_eperm(rt, bundles, cid):
    deny = [{"names": ["mkdir", "mkdirat", "no_such_syscall"], "action": "SCMP_ACT_ERRNO",
             "errnoRet": 1}]
    for nnp in (True, False):  # loaded late (no_new_privs) or before dropping caps
        p = _run(rt, bundles, f"{cid}{int(nnp)}", "mkdir /tmp/d; echo rc=$?; touch /tmp/f && echo ok",
                 _profile(deny), nnp=nnp)
        assert "Operation not permitted" in p.stderr, p.stderr
        assert p.stdout == "rc=1\nok\n"


def test_argument_condition(rt, bundles, cid):
    # chmod to 0777 is refused, any other mode allowed: fchmodat(dirfd, path, mode)
    rule = [{"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 2, "value": 0o777, "op": "SCMP_CMP_EQ"}]}]
    rule.append({"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 1, "value": 0o777, "op": "SCMP_CMP_EQ"}]})
    p = _run(rt, bundles, cid, "touch /tmp/f; chmod 755 /tmp/f && echo ok755; "
             "chmod 777 /tmp/f || echo denied777", _profile(rule))
    assert p.stdout == "ok755\ndenied777\n", (p.stdout, p.stderr)
    assert "Permission denied" in p.stderr


def test_default_errno_and_allow_list(rt, bundles, cid):
    # a rule without errnoRet answers EPERM; uname(2) denied means no "Linux" from uname -s
    p = _run(rt, bundles, cid, "uname -s", _profile([]))
    assert p.stdout == "Linux\n"
    prof = _profile([{"names": ["uname"], "action": "SCMP_ACT_ERRNO"}])
    p = _run(rt, bundles, cid + "u", "uname -s", prof)
    assert "Linux" not in p.stdout


def test_invalid_action_is_a_clean_error(rt, bundles, cid):
    p = _run(rt, bundles, cid, "true", _profile([], default="SCMP_ACT_NONSENSE"))
    assert p.returncode == 1
    assert p.stderr.strip() == "bosun-runtime: unknown seccomp action 'SCMP_ACT_NONSENSE'"
    assert rt("list", "-q").stdout == ""


def test_notify_is_reported_unsupported(rt, bundles, cid):
    prof = _profile([{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}])
    p = _run(rt, bundles, cid, "true", prof)
    assert p.returncode == 1 and "not supported" in p.stderr
