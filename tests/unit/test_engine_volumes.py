"""engine/volumes.py without a daemon: Binds/Mounts as mount points, image VOLUMEs and
--volumes-from resolved against a real volume store (fake kernel), inspect's Mounts, undo."""

from __future__ import annotations

import pytest

from bosun.engine import volumes
from bosun.engine.errors import InvalidParameter, NotFound
from bosun.engine.events import EventBus
from bosun.volume.local import Volumes


class Other:
    def __init__(self, mounts):
        self.id, self.meta = "donor", {"mounts": mounts}


class FakeEngine:
    def __init__(self, root):
        self.volumes = Volumes(str(root), mount_points=lambda: [])
        self.events = EventBus()
        self.others = {}

    def get(self, ref):
        if ref not in self.others:
            raise NotFound(f"No such container: {ref}")
        return self.others[ref]


@pytest.fixture
def engine(tmp_path):
    e = FakeEngine(tmp_path / "volumes")
    yield e
    e.volumes.close()


def test_resolve_all_kinds(engine):
    hc = {"Binds": ["/h:/b:ro,rslave", "named:/n", "/anon"],
          "Mounts": [{"Type": "volume", "Target": "/m", "VolumeOptions": {"NoCopy": True}},
                     {"Type": "tmpfs", "Target": "/t"}],
          "Tmpfs": {"/img2": ""}}
    config = {"Volumes": {"/img": {}, "/n": {}, "/img2": {}}}
    mounts, made = volumes.resolve(engine, "c1", config, hc)
    by = {m["Destination"]: m for m in mounts}
    assert set(by) == {"/b", "/n", "/anon", "/m", "/t", "/img"}  # /n and /img2 are covered
    assert by["/b"] == {"Type": "bind", "Source": "/h", "Destination": "/b",
                        "Mode": "ro,rslave", "RW": False, "Propagation": "rslave"}
    assert by["/n"]["Name"] == "named" and by["/n"]["Mode"] == "z"
    assert not by["/n"]["Anonymous"] and by["/anon"]["Anonymous"] and by["/img"]["Anonymous"]
    assert by["/m"]["NoCopy"] and len(by["/m"]["Name"]) == 64
    assert sorted(made) == sorted(m["Name"] for m in mounts if m["Type"] == "volume")
    assert set(engine.volumes.refs()) == set(made)
    public = {m["Destination"]: m for m in volumes.public(mounts)}
    assert list(public["/n"]) == ["Type", "Name", "Source", "Destination", "Driver", "Mode",
                                  "RW", "Propagation"]
    assert "Name" not in public["/b"] and "NoCopy" not in public["/m"]


def test_volumes_from_modes_and_own_mounts_win(engine):
    engine.volumes.create("shared")
    engine.others["donor"] = Other([
        {"Type": "volume", "Name": "shared", "Destination": "/s", "RW": True, "Mode": "z"},
        {"Type": "bind", "Source": "/h", "Destination": "/h", "RW": True, "Mode": ""},
        {"Type": "tmpfs", "Source": "", "Destination": "/t", "RW": True, "Mode": ""}])
    mounts, made = volumes.resolve(engine, "c2", {}, {"Binds": ["/mine:/h"],
                                                      "VolumesFrom": ["donor:ro"]})
    by = {m["Destination"]: m for m in mounts}
    assert made == [] and set(by) == {"/h", "/s"} and by["/h"]["Source"] == "/mine"
    assert by["/s"]["RW"] is False and by["/s"]["From"] == "donor"
    assert engine.volumes.refs() == {"shared": ["c2"]}
    with pytest.raises(InvalidParameter, match="invalid mode: rx"):
        volumes.resolve(engine, "c3", {}, {"VolumesFrom": ["donor:rx"]})


def test_failed_resolve_leaves_nothing(engine):
    engine.volumes.create("existing")
    with pytest.raises(NotFound, match="No such container: ghost"):
        volumes.resolve(engine, "c4", {"Volumes": {"/img": {}}},
                        {"Binds": ["existing:/e", "fresh:/f"], "VolumesFrom": ["ghost"]})
    assert [v["Name"] for v in engine.volumes.list()] == ["existing"]
    assert engine.volumes.refs() == {}


def test_forget_removes_only_own_anonymous(engine):
    class C:
        id = "c5"

    mounts, _ = volumes.resolve(engine, "c5", {}, {"Binds": ["keep:/k", "/anon"]})
    C.meta = {"mounts": mounts}
    volumes.forget(engine, C, remove_anonymous=True)
    assert [v["Name"] for v in engine.volumes.list()] == ["keep"]
    assert engine.volumes.refs() == {}


@pytest.mark.parametrize("sub,ok", [("a/b", True), ("a/../b", True), (".", True),
                                    ("/abs", False), ("..", False), ("a/../../b", False)])
def test_subpath_must_stay_local(sub, ok):
    from bosun.engine.createconfig import check_mount

    m = {"Type": "volume", "Source": "v", "Target": "/t", "VolumeOptions": {"Subpath": sub}}
    if ok:
        check_mount(m)
    else:
        with pytest.raises(InvalidParameter, match="subpath must be a relative path within "
                                                   "the volume"):
            check_mount(m)


def test_recursive_read_only_rules_and_spec():
    from bosun.engine.createconfig import check_mount
    from bosun.engine.ocispec import _mount_points

    base = {"Type": "bind", "Source": "/", "Target": "/t", "ReadOnly": True}
    for bo, msg in (({"ReadOnlyForceRecursive": True, "NonRecursive": True}, "conflicts"),
                    ({"ReadOnlyForceRecursive": True, "Propagation": "rslave"},
                     "requires Propagation rprivate")):
        with pytest.raises(InvalidParameter, match=msg):
            check_mount(dict(base, BindOptions=bo))
    with pytest.raises(InvalidParameter, match="option ReadOnlyForceRecursive requires ReadOnly"):
        check_mount(dict(base, ReadOnly=False, BindOptions={"ReadOnlyForceRecursive": True}))
    rro = dict(base, BindOptions={"ReadOnlyForceRecursive": True})
    check_mount(rro)
    binds, _ = _mount_points({"Mounts": [rro]}, [])
    assert binds[0]["options"] == ["rbind", "ro", "rro", "rprivate"]
    binds, _ = _mount_points({"Mounts": [base]}, [])
    assert binds[0]["options"] == ["rbind", "ro", "rprivate"]
