"""--mount, --ulimit and --health-* parsing, as docker's CLI."""

import pytest

from bosun.cli.flags import FlagValue
from bosun.cli.mounts import healthcheck, parse_mount, parse_ulimit


def test_mount_fields():
    assert parse_mount("type=volume,src=data,dst=/d,volume-nocopy,volume-opt=o=size=1m,"
                       "volume-subpath=sub") == {
        "Type": "volume", "Source": "data", "Target": "/d",
        "VolumeOptions": {"NoCopy": True, "Subpath": "sub",
                          "DriverConfig": {"Options": {"o": "size=1m"}}}}
    # CSV: a quoted field may hold a comma
    assert parse_mount('type=bind,"source=/a,b",target=/b,ro=false,bind-recursive=disabled') == {
        "Type": "bind", "Source": "/a,b", "Target": "/b", "ReadOnly": False,
        "BindOptions": {"NonRecursive": True}}
    assert parse_mount("target=/t") == {"Type": "volume", "Target": "/t"}
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=2m,tmpfs-mode=700")["TmpfsOptions"] == \
        {"SizeBytes": 2 << 20, "Mode": 0o700}


@pytest.mark.parametrize("spec,reason", [
    ("type=bind", "target is required"),
    ("foo", "invalid field 'foo' must be a key=value pair"),
    ("dst=/x,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
    ("type=bind,src=/a,dst=/x,tmpfs-size=1m", "cannot mix 'tmpfs-*' options with mount type "
     "'bind'"),
    ("dst=/x,ro=maybe", "invalid value for ro: maybe")])
def test_mount_errors(spec, reason):
    with pytest.raises(ValueError) as e:
        parse_mount(spec)
    assert str(e.value) == reason


def test_ulimit():
    assert parse_ulimit("nofile=10:20") == {"Name": "nofile", "Soft": 10, "Hard": 20}
    assert parse_ulimit("core=-1") == {"Name": "core", "Soft": -1, "Hard": -1}
    for bad in ("nofile", "bogus=1", "nofile=a", "nofile=3:2"):
        with pytest.raises(ValueError):
            parse_ulimit(bad)


def opts(**kw):
    base = {"health-cmd": None, "health-interval": None, "health-timeout": None,
            "health-start-period": None, "health-start-interval": None,
            "health-retries": None, "no-healthcheck": False}
    base.update({k.replace("_", "-"): v for k, v in kw.items()})
    return base


def test_healthcheck():
    assert healthcheck(opts()) is None
    assert healthcheck(opts(no_healthcheck=True)) == {"Test": ["NONE"]}
    assert healthcheck(opts(health_cmd="curl x", health_interval="1.5s", health_retries=3)) == {
        "Test": ["CMD-SHELL", "curl x"], "Interval": 1_500_000_000, "Retries": 3}
    with pytest.raises(FlagValue, match='invalid argument "5" for "--health-timeout" flag: '
                                        'time: missing unit in duration "5"'):
        healthcheck(opts(health_timeout="5"))
    with pytest.raises(ValueError, match="conflicts"):
        healthcheck(opts(no_healthcheck=True, health_cmd="true"))


def test_relative_bind_sources_are_made_absolute(monkeypatch, tmp_path):
    import os

    from bosun.cli.run import CREATE_FLAGS, container_config

    monkeypatch.chdir(tmp_path)
    assert parse_mount("type=bind,src=./d,dst=/x")["Source"] == str(tmp_path / "d")
    assert parse_mount("type=volume,src=name,dst=/x")["Source"] == "name"
    opts = {f.name: f.default for f in CREATE_FLAGS}
    opts.update(volume=["./data:/data:ro", "named:/n", "/abs:/a"], pull="missing")
    binds = container_config(opts, ["busybox"], True)["HostConfig"]["Binds"]
    assert binds == [f"{os.getcwd()}/data:/data:ro", "named:/n", "/abs:/a"]


def test_sizes_as_go_units():
    from bosun.gosyntax import GoSyntaxError, human_size, ram_in_bytes

    assert [ram_in_bytes(s) for s in ("100000", "64m", "1.5GiB", "10 k", "7b")] == \
        [100000, 64 << 20, 3 << 29, 10 << 10, 7]
    for bad in ("abc", "-5m", "1x", ""):
        with pytest.raises(GoSyntaxError, match=f"invalid size: '{bad}'"):
            ram_in_bytes(bad)
    assert human_size(2155000) == "2.155MB" and human_size(1982411, 3) == "1.98MB"
