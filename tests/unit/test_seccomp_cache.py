"""The runtime's cache of compiled seccomp programs."""

import os

import pytest

from bosun.runtime import seccomp_filter as sf
from bosun.runtime.errors import ConfigError

pytest.importorskip("seccomp")

PROFILE = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
           "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}


def test_compiles_to_classic_bpf_and_caches(tmp_path, monkeypatch):
    prog = sf.compile(PROFILE, str(tmp_path))
    assert prog.flags == 0 and prog.code and len(prog.code) % 8 == 0
    [name] = os.listdir(tmp_path)
    assert name.endswith(".bpf") and (tmp_path / name).read_bytes() == prog.code
    assert oct((tmp_path / name).stat().st_mode & 0o777) == "0o600"

    def no_build(cfg):
        raise AssertionError("compiled again despite a cached program")
    monkeypatch.setattr(sf, "build", no_build)
    assert sf.compile(PROFILE, str(tmp_path)) == prog


def test_a_different_profile_is_a_different_program(tmp_path):
    other = dict(PROFILE, syscalls=[{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}])
    a, b = sf.compile(PROFILE, str(tmp_path)), sf.compile(other, str(tmp_path))
    assert a.code != b.code and len(os.listdir(tmp_path)) == 2


def test_a_damaged_cache_entry_is_compiled_again(tmp_path):
    good = sf.compile(PROFILE, str(tmp_path))
    [name] = os.listdir(tmp_path)
    (tmp_path / name).write_bytes(good.code[:-3])  # torn: not whole instructions
    assert sf.compile(PROFILE, str(tmp_path)) == good
    assert (tmp_path / name).read_bytes() == good.code


def test_flags_and_errors(tmp_path):
    prog = sf.compile(dict(PROFILE, flags=["SECCOMP_FILTER_FLAG_TSYNC",
                                           "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]))
    assert prog.flags == 1 | 4
    with pytest.raises(ConfigError, match="not supported"):
        sf.compile(dict(PROFILE, flags=["SECCOMP_FILTER_FLAG_NEW_LISTENER"]), str(tmp_path))
    with pytest.raises(ConfigError, match="unknown seccomp action"):
        sf.compile(dict(PROFILE, defaultAction="SCMP_ACT_MAYBE"), str(tmp_path))
    assert os.listdir(tmp_path) == []  # nothing cached for a profile that failed


def test_an_unwritable_cache_only_costs_time(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert sf.compile(PROFILE, str(blocker / "cache")).code
