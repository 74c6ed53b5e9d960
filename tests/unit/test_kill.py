"""kill.parse_signal: runc's signal spellings; kill() on containers that are not running."""

from __future__ import annotations

import json
import os
import signal

import pytest

from bosun.runtime import kill as kill_mod
from bosun.runtime.errors import NotFound, RuntimeErr, StateError
from bosun.runtime.kill import parse_signal


@pytest.mark.parametrize("spelling,num", [
    ("SIGKILL", 9), ("KILL", 9), ("kill", 9), ("SigKill", 9), (" TERM ", 15), ("9", 9),
    ("15", 15), ("HUP", 1), ("SIGUSR1", 10), ("usr2", 12), ("WINCH", 28), ("SIGCHLD", 17),
    ("IOT", 6), ("SIGRTMIN", 34), ("RTMAX", 64), ("64", 64), ("1", 1),
])
def test_spellings(spelling, num):
    assert parse_signal(spelling) == num


def test_numbers_match_the_signal_module():
    for name in ("SIGINT", "SIGQUIT", "SIGSTOP", "SIGCONT", "SIGPWR"):
        assert parse_signal(name) == int(getattr(signal, name))


def test_int_passes_through():
    assert parse_signal(9) == 9
    assert parse_signal(signal.SIGTERM) == 15


@pytest.mark.parametrize("bad", ["NOPE", "SIGNOPE", "", "SIG", "-9", "9x", "KILL9", "SIG_DFL",
                                 "Signals"])
def test_unknown(bad):
    with pytest.raises(RuntimeErr, match="unknown signal"):
        parse_signal(bad)


@pytest.mark.parametrize("bad", ["0", "65", "1000", "00"])
def test_out_of_range(bad):
    with pytest.raises(RuntimeErr, match=f"invalid signal number {int(bad)}$"):
        parse_signal(bad)


def _record(root, cid, record):
    d = root / cid
    d.mkdir(parents=True)
    (d / "state.json").write_text(json.dumps(record))


def test_kill_stopped_container_is_a_state_error(tmp_path, monkeypatch):
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    _record(tmp_path, "c1", {"pid": 0, "config": {}, "cgroups": {}})
    with pytest.raises(StateError, match="'c1' is not running"):
        kill_mod.kill(str(tmp_path), "c1", "KILL")
    assert sent == []


def test_kill_all_on_stopped_container_signals_cgroup_stragglers(tmp_path, monkeypatch):
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    cg = tmp_path / "cg"
    (cg / "sub").mkdir(parents=True)
    (cg / "cgroup.procs").write_text("101\n")
    (cg / "sub" / "cgroup.procs").write_text("102\n")
    _record(tmp_path / "state", "c2", {"pid": 0, "config": {}, "cgroups": {"pids": str(cg)}})
    kill_mod.kill(str(tmp_path / "state"), "c2", "SIGUSR1", all=True)
    assert sorted(sent) == [(101, 10), (102, 10)]


def test_kill_missing_container(tmp_path):
    with pytest.raises(NotFound):
        kill_mod.kill(str(tmp_path), "ghost", "TERM")


def test_kill_bad_signal_on_stopped_container(tmp_path):
    _record(tmp_path, "c3", {"pid": 0, "config": {}})
    with pytest.raises(RuntimeErr, match="unknown signal"):
        kill_mod.kill(str(tmp_path), "c3", "BOGUS")
