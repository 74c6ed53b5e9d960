"""bosun's --mount parser (docker's CSV, bosun.cli.mounts) and the volume commands'
registration."""

from __future__ import annotations

import pytest

from bosun.cli import find
from bosun.cli.mounts import parse_mount


def test_mount_kinds():
    assert parse_mount("type=bind,src=/h,dst=/c,readonly,bind-propagation=rslave") == {
        "Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": True,
        "BindOptions": {"Propagation": "rslave"}}
    assert parse_mount("dst=/v,source=name,volume-nocopy,volume-subpath=a/b,"
                       "volume-label=k=v,volume-opt=type=tmpfs,volume-opt=device=tmpfs") == {
        "Type": "volume", "Source": "name", "Target": "/v",
        "VolumeOptions": {"NoCopy": True, "Subpath": "a/b", "Labels": {"k": "v"},
                          "DriverConfig": {"Options": {"type": "tmpfs", "device": "tmpfs"}}}}
    assert parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770") == {
        "Type": "tmpfs", "Target": "/t",
        "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1770}}
    assert parse_mount("type=bind,src=/h,dst=/c,bind-recursive=disabled,ro=false")[
        "BindOptions"] == {"NonRecursive": True}


@pytest.mark.parametrize("spec,msg", [
    ("type=bind,src=/h", "target is required"),
    ("dst=/x,what=1", "unexpected key 'what'"),
    ("dst=/x,src", "must be a key=value pair"),
    ("dst=/x,ro=maybe", "invalid value for ro"),
])
def test_mount_errors(spec, msg):
    with pytest.raises(ValueError, match=msg):
        parse_mount(spec)


def test_volume_group_commands():
    for sub, path in (("ls", "volume ls"), ("list", "volume ls"), ("rm", "volume rm"),
                      ("remove", "volume rm"), ("create", "volume create"),
                      ("inspect", "volume inspect"), ("prune", "volume prune")):
        cmd, _, typed = find(["volume", sub])
        assert cmd is not None and cmd.path == path and typed == path
