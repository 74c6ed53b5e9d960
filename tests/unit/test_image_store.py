"""ImageStore without a registry or root: a fake registry client in place of the real one,
the vfs snapshotter, and the helpers (locks, references, Docker's rmi rules)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading

import pytest

from bosun.image import manifest as M
from bosun.image.metadata import NotFound
from bosun.image.store import ImageStore, _FileLock, _is_single_reference, _key
from bosun.image import reference as R
from bosun.registry.client import Progress


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


class FakeClient:
    """Serves one repository from memory, as RegistryClient's pull side does."""

    def __init__(self, manifests: dict[str, tuple[bytes, str]], blobs: dict[str, bytes]):
        self.manifests, self.blobs = manifests, blobs
        self.fetched: list[tuple[str, int]] = []

    def get_manifest(self, repo: str, ref: str):
        data, media_type = self.manifests[ref]
        return data, media_type, sha256(data)

    def fetch_blob(self, repo, digest, sink, offset=0, progress=None, *, size=None,
                   hasher=None):
        self.fetched.append((digest, offset))
        data = self.blobs[digest]
        for i in range(offset, len(data), 1000):
            sink.write(data[i:i + 1000])
            if progress:
                progress(Progress(digest, min(i + 1000, len(data)), len(data)))
        return len(data)

    def close(self) -> None:
        pass


@pytest.fixture
def store(tmp_path):
    s = ImageStore(str(tmp_path / "image"), driver="vfs", credentials_lookup=lambda h: None)
    yield s
    s.close()


def one_image(text: str = "hello"):
    tar = layer_tar({"hello.txt": text.encode()})
    layer = gzip.compress(tar, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": M.OCI_MANIFEST,
        "config": {"mediaType": M.OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": M.OCI_LAYER_GZIP, "digest": sha256(layer),
                    "size": len(layer)}]}).encode()
    client = FakeClient({"latest": (manifest, M.OCI_MANIFEST)},
                        {sha256(config): config, sha256(layer): layer})
    return client, sha256(config), sha256(manifest), sha256(layer), sha256(tar)


def test_pull_records_and_reports(store):
    client, image_id, mdigest, ldigest, diff_id = one_image()
    store._client = lambda domain: client
    events: list[dict] = []
    assert store.pull("example.com/app", progress=events.append) == image_id
    statuses = [e["status"] for e in events]
    assert statuses[0] == "Pulling from app" and statuses[-1] == (
        "Status: Downloaded newer image for example.com/app:latest")
    assert f"Digest: {mdigest}" in statuses and "Pull complete" in statuses
    [row] = store.images()
    assert (row["RepoTags"], row["RepoDigests"]) == (["example.com/app:latest"],
                                                     [f"example.com/app@{mdigest}"])
    assert store.layer_chain("example.com/app") == [diff_id]
    assert store.fsck() == []
    # again: nothing fetched, the layer already exists
    client.fetched.clear()
    events.clear()
    store.pull("example.com/app", progress=events.append)
    assert client.fetched == []
    assert {"status": "Already exists", "progressDetail": {}, "id": ldigest[7:19]} in events


def test_schema1_is_refused_and_nothing_stored(store):
    schema1 = json.dumps({"schemaVersion": 1, "name": "app", "tag": "old",
                          "fsLayers": [], "history": []}).encode()
    store._client = lambda domain: FakeClient(
        {"old": (schema1, "application/vnd.docker.distribution.manifest.v1+prettyjws")}, {})
    with pytest.raises(M.ManifestError, match="Schema 1"):
        store.pull("example.com/app:old")
    assert list(store.content.list()) == [] and store.images() == []


def test_add_image_from_content(store):
    """What load/import do: blobs written to content under a lease, then add_image."""
    client, image_id, mdigest, _, _ = one_image("loaded")
    with store.lease():
        for data in [client.manifests["latest"][0], *client.blobs.values()]:
            with store.content.writer(f"load-{sha256(data)}", sha256(data), len(data)) as w:
                w.write(data)
                w.commit()
        assert store.add_image(mdigest, refs=["loaded:1"]) == image_id
    assert store.images()[0]["RepoTags"] == ["loaded:1"]
    assert store.inspect("loaded:1")["RootFS"]["Layers"] == store.layer_chain("loaded:1")


def test_resolve_wording(store):
    with pytest.raises(NotFound, match=r"^No such image: busybox:latest$"):
        store.resolve("busybox")
    with pytest.raises(NotFound, match=r"^No such image: abc123:latest$"):
        store.resolve("abc123")
    with pytest.raises(NotFound, match=r"^No such image: sha256:" + "a" * 64 + "$"):
        store.resolve("sha256:" + "a" * 64)
    with pytest.raises(R.InvalidReference):
        store.resolve("Not/Valid!")


def test_keys_and_single_reference():
    assert _key(R.parse_normalized("busybox")) == "docker.io/library/busybox:latest"
    d = "sha256:" + "b" * 64
    assert _key(R.parse(f"busybox:1@{d}")) == f"docker.io/library/busybox@{d}"
    bb = "docker.io/library/busybox"
    assert _is_single_reference([f"{bb}:latest"])
    assert _is_single_reference([f"{bb}:latest", f"{bb}@{d}"])
    assert not _is_single_reference([f"{bb}:latest", f"{bb}:1"])
    assert not _is_single_reference([f"{bb}:latest", f"docker.io/library/other@{d}"])
    assert not _is_single_reference([])


def test_file_lock(tmp_path):
    lock = _FileLock(str(tmp_path / "lock"))
    got: list[bool] = []

    def try_exclusive() -> None:
        with lock.hold(exclusive=True, blocking=False) as ok:
            got.append(ok)

    with lock.hold(exclusive=False):
        with lock.hold(exclusive=False):  # re-entrant
            pass
        with lock.hold(exclusive=True, blocking=False) as ok:
            assert ok is False  # no silent upgrade
        t = threading.Thread(target=try_exclusive)
        t.start()
        t.join()
    with lock.hold(exclusive=True):
        with lock.hold(exclusive=False):  # covered by the exclusive hold
            pass
        t = threading.Thread(target=try_exclusive)
        t.start()
        t.join()
    try_exclusive()
    assert got == [False, False, True]


def test_registry_options(tmp_path):
    s = ImageStore(str(tmp_path / "image"), driver="vfs", credentials_lookup=lambda h: None,
                   mirrors=["https://mirror.example"],
                   insecure_registries=["myreg:5000", "http://plain.example", "10.0.0.0/8"])
    try:
        assert s._insecure("myreg:5000") and s._insecure("plain.example")
        assert s._insecure("10.1.2.3:5000") and not s._insecure("other:5000")
        client = s._client("docker.io")
        try:
            assert [m.name for m in client.mirrors] == ["mirror.example"]
        finally:
            client.close()
    finally:
        s.close()
