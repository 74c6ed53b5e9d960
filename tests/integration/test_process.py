"""config.json's process object, as the program inside a busybox container observes it:
args, env, cwd, user, umask, rlimits, no_new_privs, oom_score_adj and capabilities."""

import glob
import os
import resource

import pytest

from bosun.kernel import caps


def run_in(rt, bundles, cid, script, edit=None, check=True):
    """Run `sh -c script` in the foreground; return the CompletedProcess."""
    b = bundles.make(["sh", "-c", script], edit=edit)
    return rt("run", "--bundle", b, cid, check=check)


def nothing_left(rt, cid):
    assert rt("list", "-q").stdout == ""
    assert not os.path.exists(rt.root / cid)
    assert glob.glob(f"/sys/fs/cgroup/*/{cid}") == []


def proc_status(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def test_args_are_passed_verbatim(rt, bundles, cid):
    b = bundles.make(["sh", "-c", 'printf "[%s]" "$0" "$@"', "zero", "a b", "", "*", "$HOME"])
    assert rt("run", "--bundle", b, cid).stdout == "[zero][a b][][*][$HOME]"


def test_env_is_exactly_the_config(rt, bundles, cid):
    def edit(c):
        c["process"]["env"] = ["PATH=/bin", "FOO=bar baz", "EMPTY=", "EQ=a=b", "HOME=/tmp"]

    b = bundles.make(["env"], edit=edit)
    env = rt("run", "--bundle", b, cid).stdout.splitlines()
    assert sorted(env) == sorted(["PATH=/bin", "FOO=bar baz", "EMPTY=", "EQ=a=b", "HOME=/tmp"])


def test_path_lookup_uses_the_containers_path(rt, bundles, cid):
    def edit(c):
        c["process"]["env"] = ["PATH=/opt/tools:/bin"]
        c["process"]["args"] = ["hello"]

    b = bundles.make(edit=edit)
    (b / "rootfs/opt/tools").mkdir(parents=True)
    (b / "rootfs/opt/tools/hello").write_text("#!/bin/sh\necho hi from tools\n")
    (b / "rootfs/opt/tools/hello").chmod(0o755)
    assert rt("run", "--bundle", b, cid).stdout == "hi from tools\n"


def test_missing_executable_fails_create_clearly(rt, bundles, cid):
    b = bundles.make(["no-such-program"])
    p = rt("create", "--bundle", b, cid, check=False)
    assert p.returncode != 0
    assert "no-such-program" in p.stderr and "not found" in p.stderr
    nothing_left(rt, cid)


def test_cwd(rt, bundles, cid):
    def edit(c):
        c["process"]["cwd"] = "/tmp"

    assert run_in(rt, bundles, cid, "pwd; /bin/busybox realpath .", edit).stdout == "/tmp\n/tmp\n"


def test_cwd_is_created_when_missing_or_fails_clearly(rt, bundles, cid):
    def edit(c):
        c["process"]["cwd"] = "/does/not/exist"

    p = run_in(rt, bundles, cid, "pwd", edit, check=False)
    # runc creates a missing cwd; failing with a clear message is also acceptable
    if p.returncode == 0:
        assert p.stdout == "/does/not/exist\n"
    else:
        assert "/does/not/exist" in p.stderr
        nothing_left(rt, cid)


def test_root_user_by_default(rt, bundles, cid):
    out = run_in(rt, bundles, cid, "id -u; id -g; id -G; echo $HOME").stdout
    assert out == "0\n0\n0\n/root\n"


def test_user_uid_gid_additional_gids_umask(rt, bundles, cid):
    def edit(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 4242],
                                "umask": 0o027}

    out = run_in(rt, bundles, cid,
                 "id -u; id -g; id -G; umask; echo $HOME; touch /tmp/f; stat -c '%a %u:%g' /tmp/f",
                 edit).stdout.splitlines()
    assert out[0] == "1000" and out[1] == "1000"
    assert sorted(out[2].split()) == ["1000", "4242", "5"]
    assert out[3] == "0027"
    assert out[4] == "/home/user"  # HOME comes from the rootfs's /etc/passwd
    assert out[5] == "640 1000:1000"


def test_default_umask_is_0022(rt, bundles, cid):
    assert run_in(rt, bundles, cid, "umask").stdout == "0022\n"


def test_user_without_passwd_entry_gets_home_slash(rt, bundles, cid):
    def edit(c):
        c["process"]["user"] = {"uid": 4321, "gid": 4321}

    assert run_in(rt, bundles, cid, 'echo "$HOME"; id -u; id -G', edit).stdout == \
        "/\n4321\n4321\n"


def test_home_from_env_wins(rt, bundles, cid):
    def edit(c):
        c["process"]["env"].append("HOME=/custom")
        c["process"]["user"] = {"uid": 1000, "gid": 1000}

    assert run_in(rt, bundles, cid, 'echo "$HOME"', edit).stdout == "/custom\n"


def test_rlimits(rt, bundles, cid):
    def edit(c):
        c["process"]["rlimits"] = [
            {"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        ]

    assert run_in(rt, bundles, cid, "ulimit -n; ulimit -Hn; ulimit -c", edit).stdout == \
        "321\n654\n0\n"


def test_rlimit_above_the_hard_limit_fails_cleanly(rt, bundles, cid):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with open("/proc/self/status") as f:
        cap_eff = int(proc_status(f.read())["CapEff"], 16)
    if hard == resource.RLIM_INFINITY or cap_eff >> caps.NUMBERS["CAP_SYS_RESOURCE"] & 1:
        pytest.skip("this process may raise hard limits (CAP_SYS_RESOURCE)")

    def edit(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1000,
                                    "hard": hard + 1000}]

    b = bundles.make(["true"], edit=edit)
    for verb in ("create", "run"):
        p = rt(verb, "--bundle", b, cid, check=False)
        assert p.returncode != 0
        err = p.stderr.strip()
        assert len(err.splitlines()) == 1, err
        assert "RLIMIT_NOFILE" in err and "Traceback" not in err
        assert p.stdout == ""
        nothing_left(rt, cid)


def test_soft_rlimit_above_hard_is_rejected(rt, bundles, cid):
    def edit(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 50}]

    p = rt("create", "--bundle", bundles.make(["true"], edit=edit), cid, check=False)
    assert p.returncode != 0 and "soft" in p.stderr
    nothing_left(rt, cid)


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(rt, bundles, cid, nnp):
    def edit(c):
        c["process"]["noNewPrivileges"] = nnp

    st = proc_status(run_in(rt, bundles, cid, "cat /proc/self/status", edit).stdout)
    assert st["NoNewPrivs"] == ("1" if nnp else "0")


def test_oom_score_adj(rt, bundles, cid):
    def edit(c):
        c["process"]["oomScoreAdj"] = 500

    assert run_in(rt, bundles, cid, "cat /proc/self/oom_score_adj", edit).stdout == "500\n"


def test_oom_score_adj_unset_is_inherited(rt, bundles, cid):
    mine = open("/proc/self/oom_score_adj").read()
    assert run_in(rt, bundles, cid, "cat /proc/self/oom_score_adj").stdout == mine


def _cap_sets(rt, bundles, cid, edit) -> dict:
    st = proc_status(run_in(rt, bundles, cid, "cat /proc/self/status", edit).stdout)
    return {k: int(st[k], 16) for k in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb")}


def test_capabilities_root(rt, bundles, cid):
    full = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID", "CAP_NET_BIND_SERVICE"]
    cfg = {"bounding": full, "effective": full, "permitted": full,
           "inheritable": ["CAP_KILL", "CAP_CHOWN"], "ambient": ["CAP_KILL"]}

    def edit(c):
        c["process"]["capabilities"] = cfg

    got = _cap_sets(rt, bundles, cid, edit)
    assert caps.to_names(got["CapBnd"]) == caps.to_names(caps.to_mask(cfg["bounding"]))
    assert caps.to_names(got["CapEff"]) == caps.to_names(caps.to_mask(cfg["effective"]))
    assert caps.to_names(got["CapPrm"]) == caps.to_names(caps.to_mask(cfg["permitted"]))
    assert caps.to_names(got["CapInh"]) == caps.to_names(caps.to_mask(cfg["inheritable"]))
    assert caps.to_names(got["CapAmb"]) == caps.to_names(caps.to_mask(cfg["ambient"]))


def test_capabilities_default_spec(rt, bundles, cid):
    got = _cap_sets(rt, bundles, cid, None)
    want = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]
    for k in ("CapBnd", "CapEff", "CapPrm"):
        assert sorted(caps.to_names(got[k])) == sorted(want), k
    assert got["CapInh"] == 0 and got["CapAmb"] == 0


def test_capabilities_non_root_with_ambient(rt, bundles, cid):
    cfg = {"bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"],
           "effective": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
           "permitted": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
           "inheritable": ["CAP_NET_BIND_SERVICE"],
           "ambient": ["CAP_NET_BIND_SERVICE"]}

    def edit(c):
        c["process"]["capabilities"] = cfg
        c["process"]["user"] = {"uid": 1000, "gid": 1000}

    got = _cap_sets(rt, bundles, cid, edit)
    amb = caps.to_mask(cfg["ambient"])
    assert got["CapBnd"] == caps.to_mask(cfg["bounding"])
    assert got["CapInh"] == caps.to_mask(cfg["inheritable"])
    assert got["CapAmb"] == amb
    # a non-root user keeps across execve exactly its ambient capabilities
    assert got["CapPrm"] == amb and got["CapEff"] == amb


def test_capabilities_non_root_without_ambient_has_none(rt, bundles, cid):
    def edit(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000}

    got = _cap_sets(rt, bundles, cid, edit)
    assert got["CapEff"] == got["CapPrm"] == got["CapAmb"] == 0
    assert sorted(caps.to_names(got["CapBnd"])) == sorted(
        ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"])


def test_dropped_capability_is_really_gone(rt, bundles, cid):
    # without CAP_CHOWN root can't give a file away
    out = run_in(rt, bundles, cid, "touch /tmp/x; chown 1000 /tmp/x && echo chowned || echo denied")
    assert out.stdout.strip().endswith("denied")


@pytest.mark.parametrize("bad", ["CAP_BOGUS", "NOT_A_CAP"])
def test_unknown_capability_is_rejected(rt, bundles, cid, bad):
    def edit(c):
        c["process"]["capabilities"]["bounding"].append(bad)

    b = bundles.make(["true"], edit=edit)
    p = rt("create", "--bundle", b, cid, check=False)
    assert p.returncode != 0
    assert bad in p.stderr and len(p.stderr.strip().splitlines()) == 1
    nothing_left(rt, cid)
