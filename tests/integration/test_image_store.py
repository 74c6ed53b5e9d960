"""ImageStore end to end: a busybox image built here (its layer is write_diff of the busybox
rootfs), pushed to a real docker-registry with skopeo, pulled into a fresh store, listed,
inspected, run by bosun-runtime on an overlay (and vfs) rootfs; tags, rmi, prune and GC;
an index with two platforms; Basic and token auth; a dropped connection (resumed), a
corrupt blob (refused, nothing kept), a pull interrupted by an exception and one killed
with SIGKILL (both completed by the next pull, fsck clean); and our push read back by
skopeo. Every store is unmounted and removed at teardown, even when a test fails."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from bosun import kernel as K
from bosun.image import manifest as M
from bosun.image.diff import write_diff
from bosun.image.metadata import Conflict, NotFound
from bosun.image.snapshot import mount_points
from bosun.image.store import ImageStore
from bosun.registry.auth import Credentials, load_credentials, store_credentials
from bosun.registry.client import RegistryClient
from bosun.registry.errors import DigestMismatchError, UnauthorizedError

SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
CREATED = "2024-05-01T12:00:00.123456789Z"
CREATED_UNIX = 1714564800
FAST = {"backoff": 0.01}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


# -- images made here -------------------------------------------------------------------------

@dataclass
class Built:
    layers: list[bytes]  # gzip'd
    diff_ids: list[str]
    config: bytes
    manifest: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def image_id(self) -> str:
        return sha256(self.config)

    @property
    def layer_digests(self) -> list[str]:
        return [sha256(layer) for layer in self.layers]

    def blobs(self) -> list[bytes]:
        return [self.config, *self.layers]


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def build_image(tars: list[bytes], *, docker: bool = False, arch: str = "amd64",
                labels: dict | None = None) -> Built:
    layers = [gzip.compress(t, compresslevel=6, mtime=0) for t in tars]
    diff_ids = [sha256(t) for t in tars]
    history = [{"created": CREATED, "created_by": f"/bin/sh -c #(nop) ADD layer{i} /"}
               for i in range(len(tars))]
    history.append({"created": CREATED, "created_by": '/bin/sh -c #(nop)  CMD ["sh"]',
                    "empty_layer": True})
    config = json.dumps({
        "architecture": arch, "os": "linux", "created": CREATED,
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history,
    }, sort_keys=True).encode()
    if docker:
        mt, cfg_mt, layer_mt = M.DOCKER_MANIFEST, M.DOCKER_CONFIG, M.DOCKER_LAYER_GZIP
    else:
        mt, cfg_mt, layer_mt = M.OCI_MANIFEST, M.OCI_CONFIG, M.OCI_LAYER_GZIP
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": cfg_mt, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": layer_mt, "digest": sha256(b), "size": len(b)}
                   for b in layers],
    }, indent=2).encode()
    return Built(layers, diff_ids, config, manifest, mt)


def client_for(reg, **kw) -> RegistryClient:
    return RegistryClient(reg.host, **FAST, **kw)


def push_raw(client: RegistryClient, repo: str, tag: str, img: Built) -> str:
    for blob in img.blobs():
        client.push_blob(repo, sha256(blob), len(blob), blob)
    return client.put_manifest(repo, tag, img.manifest, img.media_type)


def write_oci_layout(d: Path, img: Built, tag: str) -> None:
    blobs = d / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (*img.blobs(), img.manifest):
        (blobs / sha256(blob).split(":")[1]).write_bytes(blob)
    (d / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": img.media_type, "digest": img.digest, "size": len(img.manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))


def skopeo(*args: str) -> str:
    p = subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, text=True,
                       timeout=60, check=False)
    if p.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {p.stderr}")
    return p.stdout


@dataclass
class Pushed:
    host: str
    path: str
    image: Built

    @property
    def ref(self) -> str:
        return f"{self.host}/{self.path}:latest"

    @property
    def digest_ref(self) -> str:
        return f"{self.host}/{self.path}@{self.image.digest}"


@pytest.fixture(scope="module")
def busybox(open_registry, busybox_rootfs) -> Pushed:
    """The busybox rootfs as a one-layer OCI image, pushed to the open registry by skopeo
    from an OCI layout written here (by our client when skopeo is missing)."""
    buf = io.BytesIO()
    write_diff(str(busybox_rootfs), buf, lower_dirs=[])
    img = build_image([buf.getvalue()], labels={"org.example.name": "busybox"})
    path = f"t/busybox-{secrets.token_hex(3)}"
    if SKOPEO is None:
        with client_for(open_registry) as c:
            push_raw(c, path, "latest", img)
        return Pushed(open_registry.host, path, img)
    layout = Path(tempfile.mkdtemp(prefix="bosun-layout-"))
    try:
        write_oci_layout(layout / "oci", img, "latest")
        skopeo("copy", "--preserve-digests", "--dest-tls-verify=false",
               f"oci:{layout / 'oci'}:latest", f"docker://{open_registry.host}/{path}:latest")
    finally:
        shutil.rmtree(layout, ignore_errors=True)
    return Pushed(open_registry.host, path, img)


# -- stores -----------------------------------------------------------------------------------

def mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    return [m for m in mount_points() if m.startswith(prefix)]


@pytest.fixture
def store_root():
    """A directory for stores; whatever is mounted under it is unmounted (and reported) and
    the directory removed, even when the test fails."""
    d = Path(tempfile.mkdtemp(prefix="bosun-imagestore-"))
    try:
        yield d
    finally:
        left = mounts_under(d)
        for m in sorted(left, key=len, reverse=True):
            K.LINUX.umount2(m, K.MNT_DETACH)
        shutil.rmtree(d, ignore_errors=True)
    assert not left, f"mounts left behind: {left}"


def new_store(root: Path, **kw) -> ImageStore:
    kw.setdefault("credentials_lookup", lambda host: None)  # never the host's ~/.docker
    kw.setdefault("client_options", FAST)
    return ImageStore(str(root), **kw)


@pytest.fixture(params=["overlay"])
def store(request, store_root):
    s = new_store(store_root / "image", driver=request.param)
    try:
        yield s
    finally:
        s.close()


# -- pull, list, inspect, run -----------------------------------------------------------------

@pytest.mark.parametrize("store", ["overlay", "vfs"], indirect=True)
def test_pull_inspect_and_run(store, busybox, bundles, rt, cid):
    img, ref = busybox.image, busybox.ref
    lid = short(img.layer_digests[0])
    events: list[dict] = []
    image_id = store.pull(ref, progress=events.append)
    assert image_id == img.image_id

    statuses = [e["status"] for e in events]
    assert events[0] == {"status": f"Pulling from {busybox.path}", "progressDetail": {},
                         "id": "latest"}
    assert {"status": "Pulling fs layer", "progressDetail": {}, "id": lid} in events
    downloading = [e for e in events if e["status"] == "Downloading"]
    size = len(img.layers[0])
    assert downloading and downloading[-1] == {
        "status": "Downloading", "progressDetail": {"current": size, "total": size}, "id": lid}
    assert "Extracting" in statuses and "Download complete" in statuses
    assert statuses.index("Download complete") < statuses.index("Pull complete")
    assert statuses[-2:] == [f"Digest: {img.digest}",
                             f"Status: Downloaded newer image for {ref}"]

    [row] = store.images()
    assert row["Size"] > 500_000  # the busybox binary, unpacked
    assert row == {"Containers": -1, "Created": CREATED_UNIX, "Id": image_id,
                   "Labels": {"org.example.name": "busybox"}, "ParentId": "",
                   "RepoDigests": [busybox.digest_ref], "RepoTags": [ref], "SharedSize": -1,
                   "Size": row["Size"]}

    info = store.inspect(ref)
    assert (info["Id"], info["RepoTags"], info["RepoDigests"]) == (image_id, [ref],
                                                                   [busybox.digest_ref])
    assert info["Created"] == CREATED and info["Size"] == row["Size"]
    assert info["Config"]["Cmd"] == ["sh"] and info["Config"]["Env"] == ["PATH=/bin"]
    assert info["RootFS"] == {"Type": "layers", "Layers": img.diff_ids}
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    driver = {"overlay": "overlay2", "vfs": "vfs"}[store.snapshots.driver]
    assert info["GraphDriver"]["Name"] == driver
    assert store.inspect(image_id.split(":")[1][:12])["Id"] == image_id  # an ID prefix
    old = store.inspect(ref, api_version="1.43")
    assert old["VirtualSize"] == row["Size"] and "ContainerConfig" in old

    rows = store.history(ref)
    assert [r["CreatedBy"] for r in rows] == ['/bin/sh -c #(nop)  CMD ["sh"]',
                                              "/bin/sh -c #(nop) ADD layer0 /"]
    assert (rows[0]["Id"], rows[0]["Tags"], rows[0]["Size"]) == (image_id, [ref], 0)
    assert (rows[1]["Id"], rows[1]["Size"]) == ("<missing>", row["Size"])
    assert store.config(ref).config.cmd == ["sh"]

    with pytest.raises(NotFound, match=r"^No such image: busybox:latest$"):
        store.resolve("busybox")
    with pytest.raises(NotFound, match=r"^No such image: sha256:0{64}$"):
        store.resolve("sha256:" + "0" * 64)

    chain = store.layer_chain(ref)
    assert chain == M.chain_ids(img.diff_ids)
    rootfs = store.snapshots.mount_container(cid, chain)
    try:
        bundle = bundles.make(["echo", "hi"], edit=lambda c: c["root"].update(path=rootfs))
        assert rt("run", "--bundle", bundle, cid).stdout == "hi\n"
    finally:
        store.snapshots.remove_container(cid)

    events.clear()
    assert store.pull(ref, progress=events.append) == image_id
    assert {"status": "Already exists", "progressDetail": {}, "id": lid} in events
    assert not {"Downloading", "Extracting", "Pull complete"} & {e["status"] for e in events}
    assert events[-1] == {"status": f"Status: Image is up to date for {ref}"}

    events.clear()
    assert store.pull(busybox.digest_ref, progress=events.append) == image_id
    assert events[-1] == {"status": f"Status: Image is up to date for {busybox.digest_ref}"}
    assert store.fsck() == []


def test_concurrent_pulls_of_one_image(store_root, busybox):
    """Two stores on one root (as two processes would be) pull the same image at once."""
    stores = [new_store(store_root / "image") for _ in range(2)]
    results: list = [None, None]

    def pull(i: int) -> None:
        try:
            results[i] = stores[i].pull(busybox.ref)
        except BaseException as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=pull, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert results == [busybox.image.image_id] * 2
        assert [r["Id"] for r in stores[0].images()] == [busybox.image.image_id]
        assert stores[1].fsck() == [] and stores[0].content.ingests() == []
    finally:
        for s in stores:
            s.close()


# -- tags, rmi, prune, gc ---------------------------------------------------------------------

def test_tag_remove_prune_gc(store, busybox):
    ref, dref = busybox.ref, busybox.digest_ref
    image_id = store.pull(ref)
    chain = store.layer_chain(ref)
    store.tag(ref, "example.com/app:v1")
    store.tag(image_id.split(":")[1][:12], "example.com/app")
    assert store.images()[0]["RepoTags"] == [ref, "example.com/app:latest",
                                             "example.com/app:v1"]
    with pytest.raises(ValueError, match="refusing to create a tag with a digest"):
        store.tag(ref, dref)

    # a reference with other tags beside it: only that tag goes
    assert store.remove("example.com/app:v1") == [{"Untagged": "example.com/app:v1"}]
    with pytest.raises(Conflict, match="image is referenced in multiple repositories"):
        store.remove(image_id)
    assert store.remove("example.com/app") == [{"Untagged": "example.com/app:latest"}]

    # a container uses it: neither its last tag nor its ID goes without force
    store.db.add_container_ref("ctr1", image_id)
    with pytest.raises(Conflict, match="container ctr1 is using its referenced image"):
        store.remove(ref)
    with pytest.raises(Conflict, match="being used by container ctr1"):
        store.remove(image_id)
    assert store.prune(all=True) == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    assert store.remove(ref, force=True) == [
        {"Untagged": ref}, {"Untagged": dref}, {"Deleted": image_id}]
    assert store.images() == []
    with pytest.raises(NotFound, match=f"^No such image: {ref}$"):
        store.inspect(ref)
    # the container keeps its layer; the image's blobs went with it
    assert store.snapshots.has_layer(chain[0]) and list(store.content.list()) == []
    assert store.gc()["LayersDeleted"] == [] and store.fsck() == []
    store.db.remove_container_ref("ctr1")
    collected = store.gc()
    assert collected["LayersDeleted"] == chain and collected["SpaceReclaimed"] > 500_000
    assert not store.snapshots.has_layer(chain[0]) and store.fsck() == []

    # untagging the last tag of a repository takes its digest reference along (Docker's
    # rule); the image stays while another repository names it
    assert store.pull(ref) == image_id
    store.tag(ref, "example.com/keep:1")
    assert store.remove(ref) == [{"Untagged": ref}, {"Untagged": dref}]
    assert store.remove("example.com/keep:1", noprune=True) == [
        {"Untagged": "example.com/keep:1"}, {"Deleted": image_id}]
    assert store.snapshots.has_layer(chain[0])  # noprune: left for gc
    assert store.gc()["LayersDeleted"] == chain

    # prune: an image pulled by digest has no tag, so it is dangling
    assert store.pull(dref) == image_id
    assert store.images()[0]["RepoTags"] == []
    pruned = store.prune()
    assert pruned["ImagesDeleted"] == [{"Untagged": dref}, {"Deleted": image_id},
                                       {"Deleted": chain[0]}]
    assert pruned["SpaceReclaimed"] > 500_000
    assert store.pull(ref) == image_id
    assert store.prune()["ImagesDeleted"] is None  # tagged: kept
    assert [r["Deleted"] for r in store.prune(all=True)["ImagesDeleted"]
            if "Deleted" in r] == [image_id, chain[0]]
    assert store.images() == [] and list(store.content.list()) == [] and store.fsck() == []


# -- platforms --------------------------------------------------------------------------------

def test_index_platform_selection(store, open_registry, repo_name):
    amd = build_image([tar_of({"arch": b"amd64\n"})], docker=True, arch="amd64")
    arm = build_image([tar_of({"arch": b"arm64\n"})], docker=True, arch="arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": M.DOCKER_MANIFEST_LIST, "manifests": [
        {"mediaType": M.DOCKER_MANIFEST, "digest": img.digest, "size": len(img.manifest),
         "platform": {"architecture": arch, "os": "linux", **extra}}
        for img, arch, extra in ((amd, "amd64", {}), (arm, "arm64", {"variant": "v8"}))]
    }).encode()
    with client_for(open_registry) as c:
        for img in (amd, arm):
            push_raw(c, repo_name, img.digest, img)
        index_digest = c.put_manifest(repo_name, "multi", index, M.DOCKER_MANIFEST_LIST)
    ref = f"{open_registry.host}/{repo_name}:multi"
    events: list[dict] = []
    arm_id = store.pull(ref, platform="linux/arm64", progress=events.append)
    assert arm_id == arm.image_id
    assert {"status": f"Digest: {index_digest}"} in events
    info = store.inspect(ref)
    assert info["Architecture"] == "arm64"
    assert info["RepoDigests"] == [f"{open_registry.host}/{repo_name}@{index_digest}"]
    with pytest.raises(M.ManifestError, match="no matching manifest for linux/s390x"):
        store.pull(ref, platform="linux/s390x")
    with pytest.raises(M.ManifestError, match="does not match the specified platform"):
        store.pull(f"{open_registry.host}/{repo_name}@{arm.digest}", platform="linux/amd64")
    if M.host_platform().architecture == "amd64":
        assert store.pull(ref) == amd.image_id  # the host's platform by default
        assert store.inspect(ref)["Architecture"] == "amd64"
        # the tag (and the index digest) moved on: the arm64 image is dangling now
        dangling = {r["Id"]: r for r in store.images()}[arm_id]
        assert (dangling["RepoTags"], dangling["RepoDigests"]) == ([], [])
    assert store.fsck() == []


# -- push -------------------------------------------------------------------------------------

@needs_skopeo
def test_push_reads_back_with_skopeo(store, busybox, open_registry):
    img = busybox.image
    image_id = store.pull(busybox.ref)
    target_repo = f"t/pushed-{secrets.token_hex(3)}"
    target = f"{open_registry.host}/{target_repo}:v1"
    store.tag(busybox.ref, target)
    events: list[dict] = []
    digest = store.push(target, progress=events.append)
    assert digest == img.digest  # the manifest in the content store, byte for byte
    did = short(img.diff_ids[0])
    assert events[0] == {"status": f"The push refers to repository "
                                   f"[{open_registry.host}/{target_repo}]"}
    assert {"status": "Preparing", "progressDetail": {}, "id": did} in events
    assert {"status": f"Mounted from {busybox.path}", "progressDetail": {},
            "id": did} in events
    assert {"status": f"v1: digest: {digest} size: {len(img.manifest)}"} in events
    assert events[-1] == {"progressDetail": {}, "aux": {"Tag": "v1", "Digest": digest,
                                                        "Size": len(img.manifest)}}
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{target}"))
    assert info["Digest"] == digest
    assert skopeo("inspect", "--raw", "--tls-verify=false",
                  f"docker://{target}").encode() == img.manifest
    assert f"{open_registry.host}/{target_repo}@{digest}" in store.inspect(target)["RepoDigests"]

    events.clear()
    assert store.push(target, progress=events.append) == digest
    assert {"status": "Layer already exists", "progressDetail": {}, "id": did} in events
    with pytest.raises(NotFound, match="An image does not exist locally with the tag"):
        store.push(f"{open_registry.host}/{target_repo}:nope")

    # a layer blob gone from the content store is compressed again from its snapshot (the
    # same tar: write_diff made it), so the image stays the same, under a new manifest
    store.content.delete(img.layer_digests[0])
    again = f"{open_registry.host}/t/again-{secrets.token_hex(3)}:v1"
    store.tag(image_id, again)
    digest2 = store.push(again)
    assert digest2 != digest
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{again}"))
    assert raw["config"]["digest"] == image_id
    assert store.content.has(raw["layers"][0]["digest"])
    with contextlib.closing(new_store(Path(store.root).parent / "other")) as other:
        assert other.pull(again) == image_id  # its diff IDs check out
        assert other.fsck() == []
    problems = store.fsck()
    assert [(p.kind, p.digest) for p in problems] == [("missing-blob", img.layer_digests[0])]


# -- auth -------------------------------------------------------------------------------------

def test_basic_and_token_auth(store_root, basic_registry, token_registry, repo_name):
    img = build_image([tar_of({"secret": b"s3cret\n"})])
    config = store_root / "docker" / "config.json"
    for reg in (basic_registry, token_registry):
        with RegistryClient(reg.host, credentials=Credentials(reg.username, reg.password),
                            **FAST) as c:
            push_raw(c, repo_name, "v1", img)
        store_credentials(reg.host, reg.username, reg.password, path=config)

    with contextlib.closing(new_store(store_root / "anon")) as anon:
        for reg in (basic_registry, token_registry):
            with pytest.raises(UnauthorizedError):
                anon.pull(f"{reg.host}/{repo_name}:v1")
        assert anon.images() == [] and anon.fsck() == []

    lookup = functools.partial(load_credentials, path=config)
    with contextlib.closing(new_store(store_root / "auth", credentials_lookup=lookup)) as s:
        for reg in (basic_registry, token_registry):
            assert s.pull(f"{reg.host}/{repo_name}:v1") == img.image_id
        assert any(r.user == "bob" for r in token_registry.token_server.requests)
        # push within the token registry: a mount from the repository pulled from
        target = f"{token_registry.host}/{repo_name}-copy:v2"
        s.tag(f"{token_registry.host}/{repo_name}:v1", target)
        events: list[dict] = []
        assert s.push(target, progress=events.append) == img.digest
        assert any(e["status"] == f"Mounted from {repo_name}" for e in events)
        assert s.fsck() == []


# -- faults -----------------------------------------------------------------------------------

def range_requests(heads: list[str], digest: str) -> list[str]:
    return [h for h in heads if digest in h and "range: bytes=" in h.lower()]


def test_pull_resumes_after_dropped_connection(store, busybox, fault_proxy):
    layer = busybox.image.layer_digests[0]
    assert len(busybox.image.layers[0]) > 400_000
    fault_proxy.cut_once(f"/blobs/{layer}", after=300_000)
    ref = f"{fault_proxy.host}/{busybox.path}:latest"
    assert store.pull(ref) == busybox.image.image_id
    assert fault_proxy.cuts == 1 and range_requests(fault_proxy.heads, layer)
    assert store.fsck() == [] and store.content.ingests() == []


def test_corrupt_blob_is_refused_and_nothing_kept(store, open_registry, repo_name):
    img = build_image([tar_of({"noise": os.urandom(200_000)})])
    with client_for(open_registry) as c:
        push_raw(c, repo_name, "v1", img)
    path = open_registry.blob_path(img.layer_digests[0])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError):
        store.pull(f"{open_registry.host}/{repo_name}:v1")
    assert store.images() == [] and store.fsck() == []
    assert not store.content.has(img.layer_digests[0]) and store.content.ingests() == []
    assert store.db.list_layers() == []
    store.gc()  # the manifest and config it did fetch are garbage
    assert list(store.content.list()) == []


def test_pull_interrupted_by_an_exception(store, busybox):
    class Stop(Exception):
        pass

    def progress(e: dict) -> None:
        detail = e.get("progressDetail") or {}
        if e["status"] == "Downloading" and detail["current"] < detail["total"]:
            raise Stop

    with pytest.raises(Stop):
        store.pull(busybox.ref, progress=progress)
    [ingest] = store.content.ingests()
    assert 0 < ingest.offset < len(busybox.image.layers[0])
    assert store.images() == [] and store.fsck() == []
    # what a pull killed while committing a layer leaves: a half-made layer directory (as
    # deep as a layer may make it, past shutil.rmtree's recursion) and the short link made
    # just before the rename
    home = Path(store.snapshots.home)
    (home / ".tmp-0123abcd").mkdir()
    fd = os.open(home / ".tmp-0123abcd", os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(2000):
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(parent)
    os.close(fd)
    os.symlink("../0123abcd/diff", home / "l" / "AAAAAAAAAAAAAAAA")
    assert sorted(p.kind for p in store.fsck()) == ["stale-link", "stale-snapshot"]
    assert store.pull(busybox.ref) == busybox.image.image_id
    assert store.content.ingests() == [] and store.fsck() == []


def test_store_changes_do_not_wait_for_an_unpack(store, busybox, open_registry, repo_name):
    """Unpacking runs outside store.lock: while a layer is being extracted, another
    thread tags an image (a store change) without waiting for the extraction to end."""
    base = store.pull(busybox.ref)
    img = build_image([tar_of({f"f{i}": os.urandom(64) for i in range(50)})])
    with client_for(open_registry) as c:
        push_raw(c, repo_name, "v1", img)
    tagged = []

    def progress(e: dict) -> None:
        if e["status"] == "Extracting" and not tagged:
            t = threading.Thread(target=store.tag, args=(base, f"{repo_name}-copy:1"))
            t.start()
            t.join(20)  # with the lock held by this extraction, it would wait for us
            tagged.append(not t.is_alive())

    store.pull(f"{open_registry.host}/{repo_name}:v1", progress=progress)
    assert tagged == [True]
    assert store.resolve(f"{repo_name}-copy:1") == base


def test_sweeps_spare_a_layer_being_unpacked(store, busybox):
    """A partial layer whose unpack lock is held is work in progress (unpacking runs
    outside store.lock), not a leftover: another pull's sweep and fsck leave it; once
    released, it is one. (gc cannot run meanwhile: an unpack holds a lease.)"""
    chain = "sha256:" + "ab" * 32
    partial = Path(store.snapshots.home) / store.snapshots.partial_name(chain)
    partial.mkdir()
    with store._unpack_lock(chain).hold(exclusive=True):
        with store._mutating():
            store._sweep()  # what another pull's _ensure_layer does
        assert store.fsck(repair=True) == [] and partial.is_dir()
    assert [p.kind for p in store.fsck()] == ["stale-snapshot"]
    store.gc()
    assert not partial.exists() and store.fsck() == []


KILLED_PULL = """
import sys, time
from bosun.image.store import ImageStore

def progress(e):
    d = e.get("progressDetail") or {}
    if e["status"] == "Downloading" and d["current"] < d.get("total", 0):
        print("MID", flush=True)
        time.sleep(120)

store = ImageStore(sys.argv[1], driver=sys.argv[2], credentials_lookup=lambda host: None)
store.pull(sys.argv[3], progress=progress)
print("DONE", flush=True)
"""


def test_pull_killed_mid_download(store, busybox, fault_proxy):
    ref = f"{fault_proxy.host}/{busybox.path}:latest"
    layer = busybox.image.layer_digests[0]
    p = subprocess.Popen([sys.executable, "-c", KILLED_PULL, store.root,
                          store.snapshots.driver, ref], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = p.stdout.readline()
        if line.strip() != "MID":
            p.kill()
            raise AssertionError(f"pull did not stop mid-way: {line!r} {p.stderr.read()}")
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(10) == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        p.stdout.close()
        p.stderr.close()
    [ingest] = store.content.ingests()
    assert 0 < ingest.offset < len(busybox.image.layers[0])
    assert store.images() == [] and store.fsck() == []
    seen = len(fault_proxy.heads)
    assert store.pull(ref) == busybox.image.image_id
    assert range_requests(fault_proxy.heads[seen:], layer)  # resumed, not started over
    assert store.content.ingests() == [] and store.fsck() == []
