"""rootfs.MountOptions: OCI mount option strings -> mount(2) flags, propagation, data."""

from __future__ import annotations

import pytest

from bosun import kernel as K
from bosun.runtime import spec
from bosun.runtime.errors import RuntimeErr
from bosun.runtime.rootfs import MountOptions


def test_uapi_flag_values():
    # include/uapi/linux/mount.h: a wrong constant would silently mount the wrong thing
    assert (K.MS_RDONLY, K.MS_NOSUID, K.MS_NODEV, K.MS_NOEXEC) == (1, 2, 4, 8)
    assert (K.MS_REMOUNT, K.MS_BIND, K.MS_MOVE, K.MS_REC) == (32, 4096, 8192, 16384)
    assert (K.MS_NOSYMFOLLOW, K.MS_NOATIME, K.MS_NODIRATIME) == (256, 1024, 2048)
    assert (K.MS_UNBINDABLE, K.MS_PRIVATE, K.MS_SLAVE, K.MS_SHARED) == (
        0x20000, 0x40000, 0x80000, 0x100000)
    assert (K.MS_RELATIME, K.MS_STRICTATIME, K.MS_LAZYTIME) == (0x200000, 0x1000000, 0x2000000)
    assert K.MNT_DETACH == 2


@pytest.mark.parametrize("options", [None, [], ()])
def test_empty(options):
    o = MountOptions(options)
    assert (o.flags, o.propagation, o.data, o.bind) == (0, [], "", False)


SETTING = {
    "ro": K.MS_RDONLY, "nosuid": K.MS_NOSUID, "nodev": K.MS_NODEV, "noexec": K.MS_NOEXEC,
    "sync": K.MS_SYNCHRONOUS, "dirsync": K.MS_DIRSYNC, "remount": K.MS_REMOUNT,
    "mand": K.MS_MANDLOCK, "noatime": K.MS_NOATIME, "nodiratime": K.MS_NODIRATIME,
    "bind": K.MS_BIND, "rbind": K.MS_BIND | K.MS_REC, "relatime": K.MS_RELATIME,
    "strictatime": K.MS_STRICTATIME, "lazytime": K.MS_LAZYTIME, "silent": K.MS_SILENT,
    "nosymfollow": K.MS_NOSYMFOLLOW,
}
# option that sets the flag -> option that clears it
CLEARING = {
    "ro": "rw", "nosuid": "suid", "nodev": "dev", "noexec": "exec", "sync": "async",
    "mand": "nomand", "noatime": "atime", "nodiratime": "diratime", "relatime": "norelatime",
    "strictatime": "nostrictatime", "lazytime": "nolazytime", "silent": "loud",
    "nosymfollow": "symfollow",
}


@pytest.mark.parametrize("opt,flag", sorted(SETTING.items()))
def test_option_sets_flag(opt, flag):
    o = MountOptions([opt])
    assert o.flags == flag
    assert o.data == "" and o.propagation == []


@pytest.mark.parametrize("setter,clearer", sorted(CLEARING.items()))
def test_option_clears_flag(setter, clearer):
    assert MountOptions([setter, clearer]).flags == 0
    assert MountOptions([clearer]).flags == 0
    # clearing leaves the other flags alone; the last word wins
    other = "nodev" if setter != "nodev" else "noexec"
    assert MountOptions([other, setter, clearer]).flags == SETTING[other]
    assert MountOptions([clearer, setter]).flags == SETTING[setter]


def test_defaults_is_no_flag():
    assert MountOptions(["defaults"]).flags == 0
    assert MountOptions(["ro", "defaults"]).flags == K.MS_RDONLY


def test_combined_flags_and_data():
    o = MountOptions(["nosuid", "strictatime", "mode=755", "size=65536k", "noexec"])
    assert o.flags == K.MS_NOSUID | K.MS_STRICTATIME | K.MS_NOEXEC
    assert o.data == "mode=755,size=65536k"
    assert o.bind is False


def test_unknown_options_are_filesystem_data_in_order():
    o = MountOptions(["newinstance", "ptmxmode=0666", "ro", "mode=0620", "gid=5"])
    assert o.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    assert o.flags == K.MS_RDONLY


@pytest.mark.parametrize("opt,flags", [("bind", K.MS_BIND), ("rbind", K.MS_BIND | K.MS_REC)])
def test_bind(opt, flags):
    o = MountOptions([opt, "ro"])
    assert o.bind is True
    assert o.flags == flags | K.MS_RDONLY


def test_propagation_kept_in_order_and_out_of_flags():
    o = MountOptions(["rprivate", "ro", "shared", "runbindable", "slave"])
    assert o.propagation == [K.MS_PRIVATE | K.MS_REC, K.MS_SHARED,
                             K.MS_UNBINDABLE | K.MS_REC, K.MS_SLAVE]
    assert o.flags == K.MS_RDONLY
    assert o.data == ""


@pytest.mark.parametrize("opt,value", [
    ("private", K.MS_PRIVATE), ("rprivate", K.MS_PRIVATE | K.MS_REC),
    ("shared", K.MS_SHARED), ("rshared", K.MS_SHARED | K.MS_REC),
    ("slave", K.MS_SLAVE), ("rslave", K.MS_SLAVE | K.MS_REC),
    ("unbindable", K.MS_UNBINDABLE), ("runbindable", K.MS_UNBINDABLE | K.MS_REC),
])
def test_each_propagation(opt, value):
    assert MountOptions([opt]).propagation == [value]


@pytest.mark.parametrize("opt", ["idmap", "ridmap"])
def test_unsupported_options_raise(opt):
    with pytest.raises(RuntimeErr, match=f"'{opt}' is not supported"):
        MountOptions(["nosuid", opt])


@pytest.mark.parametrize("opt,on,off", [
    ("rro", K.MOUNT_ATTR_RDONLY, 0), ("rrw", 0, K.MOUNT_ATTR_RDONLY),
    ("rnosuid", K.MOUNT_ATTR_NOSUID, 0), ("rdev", 0, K.MOUNT_ATTR_NODEV),
    ("rnoexec", K.MOUNT_ATTR_NOEXEC, 0), ("rnosymfollow", K.MOUNT_ATTR_NOSYMFOLLOW, 0),
    ("rnoatime", K.MOUNT_ATTR_NOATIME, K.MOUNT_ATTR__ATIME),
    ("rstrictatime", K.MOUNT_ATTR_STRICTATIME, K.MOUNT_ATTR__ATIME),
    ("rrelatime", K.MOUNT_ATTR_RELATIME, K.MOUNT_ATTR__ATIME)])
def test_recursive_options_are_mount_attributes(opt, on, off):
    o = MountOptions(["nosuid", opt])
    assert (o.rset, o.rclr) == (on, off) and o.flags == K.MS_NOSUID  # not mount(2) flags


def test_every_default_spec_mount_parses():
    for rootless in (False, True):
        for m in spec.default_spec(rootless)["mounts"]:
            MountOptions(m.get("options"))
    devpts = next(m for m in spec.default_spec()["mounts"] if m["type"] == "devpts")
    o = MountOptions(devpts["options"])
    assert o.flags == K.MS_NOSUID | K.MS_NOEXEC
    assert o.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"
