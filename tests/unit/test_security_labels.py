"""AppArmor / SELinux labels: applied only where the host runs them (no kernel needed)."""

import pytest

from bosun.runtime import process as P
from bosun.runtime.errors import RuntimeErr


def test_ignored_when_the_host_has_neither(monkeypatch):
    writes = []
    monkeypatch.setattr(P, "_write_attr", lambda *a: writes.append(a))
    P.set_security_labels({"apparmorProfile": "docker-default",
                           "selinuxLabel": "system_u:system_r:container_t:s0"},
                          apparmor=False, selinux=False)
    assert writes == []


def test_applied_when_enabled(monkeypatch):
    writes = []
    monkeypatch.setattr(P, "_write_attr", lambda paths, value, what: writes.append(
        (paths[0], value)))
    P.set_security_labels({"apparmorProfile": "docker-default",
                           "selinuxLabel": "system_u:system_r:container_t:s0"},
                          apparmor=True, selinux=True)
    assert writes == [("/proc/self/attr/apparmor/exec", "exec docker-default"),
                      ("/proc/self/attr/exec", "system_u:system_r:container_t:s0")]


def test_write_attr_picks_the_first_existing_file(tmp_path):
    target = tmp_path / "exec"
    target.write_text("")
    P._write_attr([str(tmp_path / "missing"), str(target)], "exec prof", "x")
    assert target.read_text() == "exec prof"
    with pytest.raises(RuntimeErr, match="no attr interface"):
        P._write_attr([str(tmp_path / "none")], "v", "x")


def test_host_detection(tmp_path):
    flag = tmp_path / "enabled"
    flag.write_text("Y\n")
    assert P.apparmor_enabled(str(flag)) is True
    flag.write_text("N\n")
    assert P.apparmor_enabled(str(flag)) is False
    assert P.apparmor_enabled(str(tmp_path / "gone")) is False
    assert P.selinux_enabled(str(tmp_path)) is False
    (tmp_path / "enforce").write_text("1")
    assert P.selinux_enabled(str(tmp_path)) is True
