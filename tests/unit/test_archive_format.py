"""save/load/import archive formats against a fake image store (content store + a dict;
nothing unpacked): Docker 25+ archives, legacy ones (symlinked duplicate layers), OCI
layouts, compression, streaming limits, and hostile archives refused with nothing stored."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from bosun.image import archive as A
from bosun.image import manifest as M
from bosun.image import reference as R
from bosun.image.content import ContentStore


# -- a fake store ------------------------------------------------------------------------------

@dataclass
class _Record:
    id: str
    manifest_digest: str


class FakeDB:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def get_image(self, image_id: str) -> _Record:
        return _Record(image_id, self.store.images[image_id])

    def list_images(self) -> list[_Record]:
        return [_Record(i, m) for i, m in self.store.images.items()]

    def tags_for(self, image_id: str) -> list[str]:
        return sorted(k for k, v in self.store.tags.items() if v == image_id)


class FakeStore:
    """What archive.py uses of ImageStore: content, db, resolve, add_image, tag."""

    def __init__(self, root: Path) -> None:
        self.content = ContentStore(str(root / "content"))
        self.images: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.db = FakeDB(self)

    def add_image(self, manifest_digest, *, refs=(), platform=None):
        doc = M.parse(self.content.read(manifest_digest))
        if isinstance(doc, M.Index):
            desc = M.select(doc)
            doc = M.parse(self.content.read(desc.digest), desc.media_type)
        doc.check_image()
        config = M.ImageConfig.parse(self.content.read(doc.config.digest, M.MAX_CONFIG_SIZE))
        config.check_layers(doc)
        for layer, diff_id in zip(doc.layers, config.diff_ids):
            with self.content.open(layer.digest) as f:
                reader, _ = A.open_decompressed(f)
                h = hashlib.sha256()
                while chunk := reader.read(1 << 20):
                    h.update(chunk)
            assert "sha256:" + h.hexdigest() == diff_id
        self.images[doc.config.digest] = manifest_digest
        for ref in refs:
            self.tags[str(R.parse_normalized(ref))] = doc.config.digest
        return doc.config.digest

    def resolve(self, ref_or_id: str) -> str:
        for image_id in self.images:
            if ref_or_id in (image_id, image_id[7:]) or (
                    len(ref_or_id) >= 4 and image_id[7:].startswith(ref_or_id)):
                return image_id
        try:
            key = str(R.parse_normalized(ref_or_id))
        except R.InvalidReference:
            key = None
        if key in self.tags:
            return self.tags[key]
        raise LookupError(f"No such image: {ref_or_id}")

    def tag(self, source: str, target: str) -> None:
        self.tags[str(R.parse_normalized(target))] = self.resolve(source)

    def state(self) -> tuple:
        """What a refused load must leave untouched."""
        return (dict(self.images), dict(self.tags), sorted(self.content.list()),
                self.content.ingests())


@pytest.fixture
def store(tmp_path) -> FakeStore:
    return FakeStore(tmp_path / "store")


# -- archives built here -----------------------------------------------------------------------

def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), 1_700_000_000, 0o644
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


BIG = layer_tar({"bin/big": os.urandom(200_000), "etc/hostname": b"x\n"})  # spooled
SMALL = layer_tar({"etc/motd": b"hello\n"})  # kept in memory


def config_for(diff_ids: list[str], os_name: str = "linux", **extra) -> bytes:
    doc = {"architecture": "amd64", "os": os_name, "config": {"Cmd": ["sh"], **extra},
           "rootfs": {"type": "layers", "diff_ids": diff_ids},
           "created": "2024-01-02T03:04:05Z",
           "history": [{"created": "2024-01-02T03:04:05Z", "comment": "t"}]}
    return json.dumps(doc).encode()


class Tar:
    """A tar built entry by entry (any names, symlinks, hard links)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w",  # noqa: SIM115 - see bytes()
                                format=tarfile.PAX_FORMAT)

    def file(self, name: str, data: bytes) -> Tar:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        self.tar.addfile(ti, io.BytesIO(data))
        return self

    def json(self, name: str, doc) -> Tar:
        return self.file(name, json.dumps(doc).encode())

    def symlink(self, name: str, target: str) -> Tar:
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname = tarfile.SYMTYPE, target
        self.tar.addfile(ti)
        return self

    def hardlink(self, name: str, target: str) -> Tar:
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname = tarfile.LNKTYPE, target
        self.tar.addfile(ti)
        return self

    def dir(self, name: str) -> Tar:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.DIRTYPE
        self.tar.addfile(ti)
        return self

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def legacy_archive(layers=(BIG, SMALL), tags=("busybox:latest",), symlink_dup=True,
                   config=None) -> tuple[bytes, str]:
    """An archive as Docker <= 24 writes it: <v1id>/{VERSION,json,layer.tar}, <id>.json,
    manifest.json, repositories; a second image sharing the base layer through a
    symlinked layer.tar."""
    diff_ids = [sha(x) for x in layers]
    cfg = config or config_for(diff_ids)
    t = Tar()
    paths = []
    for i, data in enumerate(layers):
        v1 = hashlib.sha256(f"v1-{i}".encode()).hexdigest()
        t.file(f"{v1}/VERSION", b"1.0").json(f"{v1}/json", {"id": v1})
        t.file(f"{v1}/layer.tar", data)
        paths.append(f"{v1}/layer.tar")
    t.file(f"{sha(cfg)[7:]}.json", cfg)
    items = [{"Config": f"{sha(cfg)[7:]}.json", "RepoTags": list(tags), "Layers": paths}]
    if symlink_dup:
        cfg2 = config_for(diff_ids[:1], Env=["SECOND=1"])
        t.file(f"{sha(cfg2)[7:]}.json", cfg2)
        dup = hashlib.sha256(b"dup").hexdigest()
        t.symlink(f"{dup}/layer.tar", f"../{paths[0]}")
        items.append({"Config": f"{sha(cfg2)[7:]}.json", "RepoTags": ["second:1"],
                      "Layers": [f"{dup}/layer.tar"]})
    t.json("manifest.json", items)
    t.json("repositories", {"busybox": {"latest": "x"}})
    return t.bytes(), sha(cfg)


def oci_layout_tar(annotations=None, manifest_json=True, layers=(SMALL,)) -> tuple[bytes, str]:
    """A plain OCI image layout as a tar (manifest.json optional)."""
    diff_ids = [sha(x) for x in layers]
    cfg = config_for(diff_ids)
    man = json.dumps({"schemaVersion": 2, "mediaType": M.OCI_MANIFEST,
                      "config": {"mediaType": M.OCI_CONFIG, "digest": sha(cfg),
                                 "size": len(cfg)},
                      "layers": [{"mediaType": M.OCI_LAYER, "digest": d, "size": len(x)}
                                 for d, x in zip(diff_ids, layers)]}).encode()
    t = Tar().json("oci-layout", {"imageLayoutVersion": "1.0.0"})
    for data in (cfg, man, *layers):
        t.file(f"blobs/sha256/{sha(data)[7:]}", data)
    desc = {"mediaType": M.OCI_MANIFEST, "digest": sha(man), "size": len(man)}
    if annotations:
        desc["annotations"] = annotations
    t.json("index.json", {"schemaVersion": 2, "manifests": [desc]})
    if manifest_json:
        t.json("manifest.json", [{"Config": f"blobs/sha256/{sha(cfg)[7:]}",
                                  "RepoTags": None,
                                  "Layers": [f"blobs/sha256/{d[7:]}" for d in diff_ids]}])
    return t.bytes(), sha(cfg)


def load(store, data: bytes, **kw) -> list[str]:
    return A.load(store, io.BytesIO(data), **kw)


# -- import ------------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [
    lambda b: b, gzip.compress, bz2.compress, lzma.compress,
    lambda b: zstandard.ZstdCompressor().compress(b)],
    ids=["plain", "gzip", "bzip2", "xz", "zstd"])
def test_import_rootfs_stream(store, compress):
    image_id = A.import_rootfs(store, io.BytesIO(compress(BIG)), ref="imp:1",
                               changes=['CMD ["sh"]', "ENV A=1"], platform="linux/arm/v7")
    assert store.resolve("imp:1") == image_id
    config = json.loads(store.content.read(image_id))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha(BIG)]}
    assert config["config"]["Cmd"] == ["sh"] and config["config"]["Env"] == ["A=1"]
    assert (config["architecture"], config["os"], config["variant"]) == ("arm", "linux", "v7")
    assert config["comment"] == "Imported from -"
    assert config["history"] == [{"created": config["created"], "comment": "Imported from -"}]
    # the layer is stored uncompressed, named by its diff_id
    assert store.content.read(sha(BIG), 1 << 30) == BIG
    man = json.loads(store.content.read(store.images[image_id]))
    assert man["layers"] == [{"mediaType": M.OCI_LAYER, "digest": sha(BIG), "size": len(BIG)}]


def test_import_from_path_with_message(store, tmp_path):
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(gzip.compress(SMALL))
    events = []
    image_id = A.import_rootfs(store, str(path), message="my import", progress=events.append)
    assert events[-1] == {"status": image_id}
    config = json.loads(store.content.read(image_id))
    assert config["comment"] == "my import"
    assert config["history"][0]["comment"] == "my import"
    assert store.tags == {}


@pytest.mark.parametrize("data, match", [
    (b"", "the rootfs archive is empty"),
    (b"hello", "fewer than 512 bytes"),
    (b"x" * 2048, "not a tar archive"),
    (gzip.compress(b"x" * 2048), "not a tar archive"),
    (gzip.compress(SMALL)[:-30], "reading the rootfs archive"),
])
def test_import_refuses_non_tars(store, data, match):
    with pytest.raises(A.ArchiveError, match=match):
        A.import_rootfs(store, io.BytesIO(data))
    assert store.state() == ({}, {}, [], [])


def test_import_refuses_bad_changes_and_refs_before_reading(store):
    class Unread(io.BytesIO):
        def read(self, *a):
            raise AssertionError("read")

    with pytest.raises(A.ChangeError, match="RUN is not a valid change command"):
        A.import_rootfs(store, Unread(), changes=["RUN x"])
    with pytest.raises(A.ArchiveError, match="cannot import digest reference"):
        A.import_rootfs(store, Unread(), ref="a@sha256:" + "0" * 64)
    with pytest.raises(A.ArchiveError, match="cannot be used on this platform"):
        A.import_rootfs(store, Unread(), platform="windows/amd64")


# -- save --------------------------------------------------------------------------------------

def _import(store, data=BIG, ref="busybox:latest", **kw) -> str:
    return A.import_rootfs(store, io.BytesIO(data), ref=ref, **kw)


def save_bytes(store, names) -> bytes:
    out = io.BytesIO()
    A.save(store, names, out)
    return out.getvalue()


def test_save_writes_the_docker25_layout_deterministically(store):
    image_id = _import(store, changes=['CMD ["sh"]'])
    store.tag("busybox:latest", "example.com/team/app:2")
    data = save_bytes(store, ["busybox:latest", "example.com/team/app:2"])
    assert data == save_bytes(store, ["busybox:latest", "example.com/team/app:2"])
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        members = t.getmembers()
        files = {m.name: t.extractfile(m).read() for m in members if m.isfile()}
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[:2] == ["blobs", "blobs/sha256"]
    assert {(m.uid, m.gid, m.mtime, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {m.mode for m in members if m.isfile()} == {0o644}
    assert set(files) == {"oci-layout", "index.json", "manifest.json", "repositories",
                          f"blobs/sha256/{image_id[7:]}", f"blobs/sha256/{sha(BIG)[7:]}",
                          *(n for n in files if n.startswith("blobs/"))}
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    assert files[f"blobs/sha256/{sha(BIG)[7:]}"] == BIG
    legacy = json.loads(files["manifest.json"])
    assert legacy == [{"Config": f"blobs/sha256/{image_id[7:]}",
                       "RepoTags": ["busybox:latest", "example.com/team/app:2"],
                       "Layers": [f"blobs/sha256/{sha(BIG)[7:]}"]}]
    assert json.loads(files["repositories"]) == {
        "busybox": {"latest": sha(BIG)[7:]}, "example.com/team/app": {"2": sha(BIG)[7:]}}
    index = json.loads(files["index.json"])
    assert index["mediaType"] == M.OCI_INDEX
    assert [d["annotations"] for d in index["manifests"]] == [
        {"io.containerd.image.name": "docker.io/library/busybox:latest",
         "org.opencontainers.image.ref.name": "latest"},
        {"io.containerd.image.name": "example.com/team/app:2",
         "org.opencontainers.image.ref.name": "2"}]
    man = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    assert man["config"] == {"mediaType": M.OCI_CONFIG, "digest": image_id,
                             "size": len(files[f"blobs/sha256/{image_id[7:]}"])}
    assert man["layers"] == [{"mediaType": M.OCI_LAYER, "digest": sha(BIG), "size": len(BIG)}]


def test_save_names_like_docker(store):
    a = _import(store, BIG, "busybox:latest")
    b = _import(store, SMALL, "busybox:other")

    def tags(data: bytes) -> list[dict]:
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            return json.loads(t.extractfile("manifest.json").read())

    # a name alone: every tag of that repository
    assert sorted(t for item in tags(save_bytes(store, ["busybox"])) for t in item["RepoTags"]) \
        == ["busybox:latest", "busybox:other"]
    # an ID (or prefix): the image without names
    assert tags(save_bytes(store, [a])) == [{"Config": f"blobs/sha256/{a[7:]}", "RepoTags": None,
                                             "Layers": [f"blobs/sha256/{sha(BIG)[7:]}"]}]
    assert tags(save_bytes(store, [b[7:19]]))[0]["RepoTags"] is None
    with pytest.raises(LookupError):
        save_bytes(store, ["nosuch:1"])
    with pytest.raises(A.ArchiveError, match="invalid reference"):
        save_bytes(store, ["Bad:Name"])


def test_save_decompresses_a_compressed_stored_layer(store):
    """A pulled image keeps its gzip'd layers: the archive gets the uncompressed tar."""
    gz = gzip.compress(BIG)
    cfg = config_for([sha(BIG)])
    man = json.dumps({"schemaVersion": 2, "mediaType": M.DOCKER_MANIFEST,
                      "config": {"mediaType": M.DOCKER_CONFIG, "digest": sha(cfg),
                                 "size": len(cfg)},
                      "layers": [{"mediaType": M.DOCKER_LAYER_GZIP, "digest": sha(gz),
                                  "size": len(gz)}]}).encode()
    for data in (gz, cfg, man):
        with store.content.writer(sha(data), sha(data), len(data)) as w:
            w.write(data)
            w.commit()
    image_id = store.add_image(sha(man), refs=["pulled:1"])
    data = save_bytes(store, ["pulled:1"])
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        assert t.extractfile(f"blobs/sha256/{sha(BIG)[7:]}").read() == BIG
    other = FakeStore(Path(store.content.root).parent.parent / "other")
    assert load(other, data) == ["Loaded image: pulled:1"]
    assert other.resolve("pulled:1") == image_id


# -- load --------------------------------------------------------------------------------------

def test_load_our_own_save(store, tmp_path):
    image_id = _import(store, changes=["ENV X=1"])
    data = save_bytes(store, ["busybox"])
    other = FakeStore(tmp_path / "other")
    progress = []
    assert load(other, data, progress=progress.append) == ["Loaded image: busybox:latest"]
    assert progress == [{"status": "Loading layer", "id": sha(BIG)[7:19],
                         "progressDetail": {"current": len(BIG), "total": len(BIG)}},
                        {"stream": "Loaded image: busybox:latest\n"}]
    assert other.resolve("busybox") == image_id
    # the OCI manifest from the archive is the one recorded (same digest as ours)
    assert other.images[image_id] == store.images[image_id]
    assert other.content.ingests() == []
    # loading again: nothing new, the same answer
    assert load(other, data) == ["Loaded image: busybox:latest"]


def test_load_untagged_reports_the_id(store, tmp_path):
    image_id = _import(store)
    other = FakeStore(tmp_path / "other")
    assert load(other, save_bytes(store, [image_id])) == [f"Loaded image ID: {image_id}"]


def test_load_reports_a_moved_tag(store, tmp_path):
    other = FakeStore(tmp_path / "other")
    old = _import(other, SMALL)
    _import(store)
    out = load(other, save_bytes(store, ["busybox:latest"]))
    assert out == [(f"The image busybox:latest already exists, renaming the old one with ID "
                    f"{old} to empty string"), "Loaded image: busybox:latest"]


@pytest.mark.parametrize("wrap", [lambda b: b, gzip.compress,
                                  lambda b: zstandard.ZstdCompressor().compress(b)],
                         ids=["plain", "gzip", "zstd"])
def test_load_legacy_archive_with_symlinked_layer(store, wrap, monkeypatch):
    monkeypatch.setattr(A, "MAX_OPEN_INGESTS", 1)  # ingests closed and reopened
    data, image_id = legacy_archive()
    assert load(store, wrap(data)) == ["Loaded image: busybox:latest", "Loaded image: second:1"]
    assert store.resolve("busybox:latest") == image_id
    second = store.resolve("second:1")
    man = json.loads(store.content.read(store.images[second]))
    assert [d["digest"] for d in man["layers"]] == [sha(BIG)]
    assert store.content.ingests() == []


def test_load_legacy_with_hard_link_and_dot_slash_names(store):
    cfg = config_for([sha(SMALL)])
    t = Tar().file("./a/layer.tar", SMALL).hardlink("./b/layer.tar", "./a/layer.tar")
    t.file(f"./{sha(cfg)[7:]}.json", cfg)
    t.json("./manifest.json", [{"Config": f"{sha(cfg)[7:]}.json", "RepoTags": ["h:1"],
                                "Layers": ["b/layer.tar"]}])
    assert load(store, t.bytes()) == ["Loaded image: h:1"]


def test_load_compressed_legacy_layer(store):
    gz = gzip.compress(BIG)
    cfg = config_for([sha(BIG)])
    t = Tar().file("l/layer.tar", gz).file("c.json", cfg)
    t.json("manifest.json", [{"Config": "c.json", "RepoTags": ["gz:1"],
                              "Layers": ["l/layer.tar"]}])
    load(store, t.bytes())
    man = json.loads(store.content.read(store.images[sha(cfg)]))
    assert man["layers"] == [{"mediaType": M.OCI_LAYER_GZIP, "digest": sha(gz),
                              "size": len(gz)}]


def test_load_plain_oci_layout(store, tmp_path):
    data, image_id = oci_layout_tar(manifest_json=False)
    assert load(store, data) == [f"Loaded image ID: {image_id}"]  # "latest" alone is no name
    other = FakeStore(tmp_path / "o2")
    data, image_id = oci_layout_tar(
        {"org.opencontainers.image.ref.name": "registry.local/x:3"}, manifest_json=False)
    assert load(other, data) == ["Loaded image: registry.local/x:3"]
    other = FakeStore(tmp_path / "o3")
    data, _ = oci_layout_tar({"io.containerd.image.name": "docker.io/library/y:4",
                              "org.opencontainers.image.ref.name": "4"})
    assert load(other, data) == ["Loaded image: y:4"]


def test_load_docker_25_0_manifest_without_layers_falls_back(store):
    """Docker 25.0.0 wrote OCI manifests listing no layers: manifest.json still has them."""
    cfg = config_for([sha(SMALL)])
    man = json.dumps({"schemaVersion": 2, "mediaType": M.OCI_MANIFEST,
                      "config": {"mediaType": M.OCI_CONFIG, "digest": sha(cfg),
                                 "size": len(cfg)}, "layers": []}).encode()
    t = Tar().json("oci-layout", {"imageLayoutVersion": "1.0.0"})
    for blob in (cfg, man, SMALL):
        t.file(f"blobs/sha256/{sha(blob)[7:]}", blob)
    t.json("index.json", {"schemaVersion": 2, "mediaType": M.OCI_INDEX, "manifests": [
        {"mediaType": M.OCI_MANIFEST, "digest": sha(man), "size": len(man),
         "annotations": {"io.containerd.image.name": "docker.io/library/old:25"}}]})
    t.json("manifest.json", [{"Config": f"blobs/sha256/{sha(cfg)[7:]}", "RepoTags": None,
                              "Layers": [f"blobs/sha256/{sha(SMALL)[7:]}"]}])
    assert load(store, t.bytes()) == ["Loaded image: old:25"]


def test_load_multi_platform_index_picks_the_host(store):
    base, image_id = oci_layout_tar(manifest_json=False)
    with tarfile.open(fileobj=io.BytesIO(base)) as t:
        files = {m.name: t.extractfile(m).read() for m in t if m.isfile()}
    index = json.loads(files["index.json"])
    child = dict(index["manifests"][0], platform=M.host_platform().to_dict())
    other = dict(child, digest="sha256:" + "1" * 64,
                 platform={"os": "linux", "architecture": "s390x"})
    inner = json.dumps({"schemaVersion": 2, "mediaType": M.OCI_INDEX,
                        "manifests": [other, child]}).encode()
    files[f"blobs/sha256/{sha(inner)[7:]}"] = inner
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": M.OCI_INDEX, "digest": sha(inner), "size": len(inner),
         "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"}}]}).encode()
    t = Tar()
    for name, data in files.items():
        t.file(name, data)
    assert load(store, t.bytes()) == ["Loaded image: multi:1"]
    assert store.resolve("multi:1") == image_id


# -- hostile archives --------------------------------------------------------------------------

def _legacy_with(config_path="c.json", layer_path="l/layer.tar", extra=None, tags=("h:1",),
                 layer=SMALL, diff_ids=None) -> bytes:
    cfg = config_for(diff_ids or [sha(SMALL)])
    t = Tar().file("c.json", cfg).file("l/layer.tar", layer)
    for step in extra or ():
        step(t)
    t.json("manifest.json", [{"Config": config_path, "RepoTags": list(tags),
                              "Layers": [layer_path]}])
    return t.bytes()


HOSTILE = {
    "config ../ path": (_legacy_with(config_path="../../etc/passwd"), "escapes the archive"),
    "layer ../ path": (_legacy_with(layer_path="l/../../../etc/shadow"), "escapes the archive"),
    "absolute config path": (_legacy_with(config_path="/etc/passwd"), "is absolute"),
    "absolute symlink": (_legacy_with(layer_path="x/layer.tar", extra=[
        lambda t: t.symlink("x/layer.tar", "/etc/passwd")]), "points outside the archive"),
    "relative symlink out": (_legacy_with(layer_path="x/layer.tar", extra=[
        lambda t: t.symlink("x/layer.tar", "../../../../etc/passwd")]), "escapes the archive"),
    "symlinked directory out": (_legacy_with(layer_path="d/etc/passwd", extra=[
        lambda t: t.symlink("d", "/")]), "points outside the archive"),
    "symlink loop": (_legacy_with(layer_path="s1", extra=[
        lambda t: t.symlink("s1", "s2"), lambda t: t.symlink("s2", "s1")]),
        "too many levels of symbolic links"),
    "entry name ../": (Tar().file("../../evil", b"x").bytes(), "points outside the archive"),
    "layer digest mismatch": (_legacy_with(layer=BIG), "invalid diffID for layer 0"),
    "missing layer": (_legacy_with(layer_path="nope/layer.tar"), "is not in the archive"),
    "layer is a directory": (_legacy_with(layer_path="dd", extra=[lambda t: t.dir("dd")]),
                             "is not a regular file"),
    "tag without tag": (_legacy_with(tags=("busybox",)), 'invalid tag "busybox"'),
    "tag with digest": (_legacy_with(tags=("a@sha256:" + "0" * 64,)), "invalid tag"),
    "duplicate entries": (Tar().file("a", b"1").file("a", b"2").bytes(),
                          "two entries named 'a'"),
    "hard link to nothing": (Tar().hardlink("a", "b").bytes(), "no earlier file"),
    "not a tar": (b"\x00\x01garbage" * 100, "not a tar archive|corrupt archive"),
    "empty": (b"", "not a tar archive"),
    "no manifest": (Tar().file("x", b"1").bytes(), "neither manifest.json nor index.json"),
    "pre-1.10 archive": (Tar().json("repositories", {}).bytes(), "before 1.10"),
    "manifest.json not JSON": (Tar().file("manifest.json", b"{nope").bytes(),
                               "invalid manifest.json: not valid JSON"),
    "manifest.json wrong shape": (Tar().json("manifest.json", {"Config": "x"}).bytes(),
                                  "expected a list"),
    "layers count": (_legacy_with(diff_ids=[sha(SMALL), sha(BIG)]),
                     "layers length mismatch: expected 1, got 2"),
    "windows image": (Tar().file("c.json", config_for([], "windows")).json(
        "manifest.json", [{"Config": "c.json", "RepoTags": None, "Layers": []}]).bytes(),
        'operating system "windows" cannot be used'),
}


def _blob_name_mismatch() -> bytes:
    data, _ = oci_layout_tar(manifest_json=False, layers=(BIG,))
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        files = {m.name: t.extractfile(m).read() for m in t if m.isfile()}
    bad = bytearray(files[f"blobs/sha256/{sha(BIG)[7:]}"])
    bad[-600] ^= 1
    files[f"blobs/sha256/{sha(BIG)[7:]}"] = bytes(bad)
    t = Tar()
    for name, content in files.items():
        t.file(name, content)
    return t.bytes()


def _symlinked_blob() -> bytes:
    data, _ = oci_layout_tar(manifest_json=False)
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        files = {m.name: t.extractfile(m).read() for m in t if m.isfile()}
    t = Tar()
    for name, content in files.items():
        if name == f"blobs/sha256/{sha(SMALL)[7:]}":
            t.symlink(name, "../../../etc/passwd")
        else:
            t.file(name, content)
    return t.bytes()


HOSTILE["blob content mismatch"] = (_blob_name_mismatch(), "does not match its digest")
HOSTILE["symlink named like a blob"] = (_symlinked_blob(), "escapes the archive")
HOSTILE["huge manifest.json"] = (Tar().file("manifest.json", b" " * (A.MAX_MANIFEST_JSON + 1))
                                 .bytes(), "manifest.json is 8388609 bytes, more than")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_leaves_nothing(store, tmp_path, name):
    data, match = HOSTILE[name]
    before = store.state()
    with pytest.raises(A.ArchiveError, match=match):
        load(store, data)
    assert store.state() == before
    assert not (tmp_path / "etc").exists()


def test_metadata_budget(store, monkeypatch):
    monkeypatch.setattr(A, "MAX_MEMORY", 100_000)
    data = Tar().file("a.json", b"{" + b" " * 60_000).file("b.json", b"{" + b" " * 60_000)
    with pytest.raises(A.ArchiveError, match="archive metadata is more than"):
        load(store, data.bytes())


def test_huge_pax_header_is_refused_before_reading_it(store, monkeypatch):
    monkeypatch.setattr(A, "MAX_HEADER", 1000)
    t = Tar()
    t.tar.pax_headers = {}
    ti = tarfile.TarInfo("x" * 2000)  # a long name: a PAX header
    t.tar.addfile(ti, io.BytesIO(b""))
    with pytest.raises(A.ArchiveError, match="archive header of"):
        load(store, t.bytes())


def test_too_many_entries(store, monkeypatch):
    monkeypatch.setattr(A, "MAX_MEMBERS", 3)
    t = Tar()
    for i in range(5):
        t.file(f"f{i}", b"")
    with pytest.raises(A.ArchiveError, match="more than 3 entries"):
        load(store, t.bytes())


def test_spooled_ingests_are_dropped_on_failure(store):
    # the big layer is spooled into an ingest, then the archive turns out bad
    data = _legacy_with(layer=BIG, diff_ids=[sha(SMALL)])
    with pytest.raises(A.ArchiveError):
        load(store, data)
    assert store.content.ingests() == [] and list(store.content.list()) == []


# -- OCI layout directories --------------------------------------------------------------------

def test_oci_layout_dir_roundtrip(store, tmp_path):
    image_id = _import(store, ref="busybox:1.36")
    digest = A.save_oci_layout(store, "busybox:1.36", str(tmp_path / "lay"))
    _import(store, SMALL, ref="other:2")
    A.save_oci_layout(store, "other:2", str(tmp_path / "lay"))  # adds to the layout
    index = json.loads((tmp_path / "lay/index.json").read_text())
    assert [d["annotations"]["org.opencontainers.image.ref.name"]
            for d in index["manifests"]] == ["1.36", "2"]
    assert index["manifests"][0]["digest"] == digest
    assert (tmp_path / f"lay/blobs/sha256/{sha(BIG)[7:]}").read_bytes() == BIG

    other = FakeStore(tmp_path / "other")
    assert A.load_oci_layout(other, str(tmp_path / "lay"), "1.36") == image_id
    assert other.resolve("busybox:1.36") == image_id  # from io.containerd.image.name
    assert A.load_oci_layout(other, str(tmp_path / "lay"), "1.36", name="mine:1") == image_id
    assert other.resolve("mine:1") == image_id
    with pytest.raises(A.ArchiveError, match="holds 2 images"):
        A.load_oci_layout(other, str(tmp_path / "lay"))
    with pytest.raises(A.ArchiveError, match="no image named 'nope'"):
        A.load_oci_layout(other, str(tmp_path / "lay"), "nope")
    assert other.content.ingests() == []


def test_oci_layout_dir_refuses_symlinked_and_corrupt_blobs(store, tmp_path):
    _import(store, ref="busybox:1")
    lay = tmp_path / "lay"
    A.save_oci_layout(store, "busybox:1", str(lay))
    blob = lay / f"blobs/sha256/{sha(BIG)[7:]}"
    blob.unlink()
    blob.symlink_to("/etc/passwd")
    other = FakeStore(tmp_path / "other")
    with pytest.raises(A.ArchiveError, match="Too many levels of symbolic links|symbolic"):
        A.load_oci_layout(other, str(lay), "1")
    blob.unlink()
    blob.write_bytes(BIG[:-1] + b"!")
    with pytest.raises(A.ArchiveError, match="does not match its descriptor"):
        A.load_oci_layout(other, str(lay), "1")
    assert other.state() == ({}, {}, [], [])


def test_small_members_spill_to_ingests_when_the_budget_is_spent(store, monkeypatch):
    monkeypatch.setattr(A, "MAX_MEMORY", 5000)  # the JSON fits, the small layers do not
    data, image_id = legacy_archive(layers=(SMALL, layer_tar({"a": b"1"})), symlink_dup=False)
    assert load(store, data) == ["Loaded image: busybox:latest"]
    assert store.resolve("busybox:latest") == image_id
    assert store.content.ingests() == []


def test_import_changes_may_be_one_string(store):
    image_id = A.import_rootfs(store, io.BytesIO(SMALL), changes='CMD ["sh"]')
    assert json.loads(store.content.read(image_id))["config"]["Cmd"] == ["sh"]
