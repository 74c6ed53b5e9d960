"""Image archives: `docker save` / `docker load` tarballs, `docker import` of a root
filesystem, and OCI image layout directories (skopeo's `oci:` transport).

save() writes what Docker 25+ writes: an OCI image layout

    oci-layout                      {"imageLayoutVersion":"1.0.0"}
    index.json                      one manifest descriptor per name, annotated with
                                    io.containerd.image.name and org.opencontainers.image.ref.name
    blobs/sha256/<hex>              configs, OCI manifests, and layers as uncompressed tars
                                    (named by their diff_id)

plus the legacy manifest.json ([{"Config", "RepoTags", "Layers", "LayerSources"}]) and
repositories files older loaders (Docker <= 24, skopeo) read. The tar is deterministic
(sorted, uid/gid 0, mtime 0, fixed modes) and streamed: a layer stored compressed is
decompressed twice (once to learn its size for the tar header, once into the tar), never
held in memory or spooled.

load() takes such an archive, an older Docker's (manifest.json + <id>/layer.tar, possibly
with symlinked duplicate layers), skopeo's docker-archive, or a plain OCI image layout tar;
compressed (gzip, zstd, bzip2, xz) or not. The archive is untrusted and read once, in tar
stream mode: small members (metadata) are kept in memory within a budget, the others are
streamed into content-store ingests (under the store's root) and only committed once
everything checks out: member paths resolved inside the archive (no absolute paths, no
`..` out, symlinks followed within the archive only), blob names against their content,
descriptor sizes, configs and manifests parsed strictly, layer digests against the config's
diff_ids. A refused archive leaves nothing behind: no blob, no image, no tag. Then each image
goes to ImageStore.add_image(), which unpacks its layers.

import_rootfs() is `docker import`: a root filesystem tarball (file, URL, or stream; plain,
gzip, zstd, bzip2 or xz) becomes a one-layer image, with --change instructions applied to its
config (see bosun.image.changes) and Docker's "Imported from -" history.

Layers loaded or imported are stored as they come (uncompressed layers stay uncompressed,
application/vnd.oci.image.layer.v1.tar), with an OCI manifest built for them when the archive
has none.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from bosun.image import manifest as M
from bosun.image import reference as R
from bosun.image.changes import ChangeError, apply_changes, go_quote
from bosun.image.content import ContentError, parse_digest
from bosun.image.layer import (HashingReader, LayerError, clean_path, detect_compression,
                               open_decompressed, read_full, stream_errors)

__all__ = [
    "ArchiveError",
    "ChangeError",
    "apply_changes",
    "import_rootfs",
    "load",
    "load_oci_layout",
    "open_decompressed",
    "save",
    "save_oci_layout",
    "store_local_image",
]

OCI_LAYOUT_FILE = "oci-layout"
OCI_LAYOUT_VERSION = "1.0.0"
INDEX_FILE = "index.json"
MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

# Limits on what an untrusted archive may make us hold in memory.
MAX_MANIFEST_JSON = 8 << 20       # manifest.json, index.json, repositories
MAX_OCI_LAYOUT = 64 << 10
MAX_MEMBERS = 100_000             # tar entries
MAX_HEADER = 1 << 20              # one PAX header / GNU long name
SMALL_MEMBER = 64 << 10           # always kept in memory
MAX_MEMORY = 64 << 20             # all members kept in memory together
MAX_OPEN_INGESTS = 64             # ingest writers kept open while reading (2 fds each)
MAX_SYMLINKS = 40
_CHUNK = 1 << 20
_ZERO_BLOCK = bytes(512)

# Progress events are dicts shaped like Docker's JSON stream, as ImageStore's are:
# {"stream": "Loaded image: busybox:latest\n"}, {"status": "Loading layer", "progressDetail":
# {"current": n, "total": n}, "id": "<12 hex>"}, {"status": "Importing", ...}.
ProgressCallback = Callable[[dict], None]


class ArchiveError(ValueError):
    """An archive (or import source) bosun refuses; str() says what and where."""


# -- small helpers -----------------------------------------------------------------------------

def _go_json(obj: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, <>& and U+2028/9 escaped."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                 ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(a, b)
    return text.encode()


def _show(value: Any) -> str:
    """A value from an untrusted document, quoted and cut short for a message."""
    text = go_quote(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 100 else text[:97] + "..."


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob_path(digest: str) -> str:
    algorithm, hexpart = parse_digest(digest)
    return f"blobs/{algorithm}/{hexpart}"


def _short(digest: str) -> str:
    return digest.partition(":")[2][:12]


def _lease(store: Any) -> contextlib.AbstractContextManager:
    """The store's GC lease (blobs are written before the image that references them)."""
    lease = getattr(store, "lease", None)
    return lease() if lease is not None else contextlib.nullcontext()


def _report(progress: ProgressCallback | None, event: dict) -> None:
    if progress is not None:
        progress(event)


def _platform(platform: M.Platform | str | None) -> M.Platform:
    if platform is None:
        return M.host_platform()
    if isinstance(platform, str):
        return M.parse_platform(platform)
    return platform


def _check_os(os_name: str) -> None:
    if os_name not in ("", "linux"):
        raise ArchiveError(f"image operating system {go_quote(os_name)} cannot be used on "
                           "this platform")


def _image_name(text: str, what: str) -> R.Reference:
    """A RepoTag / annotation name: a reference with a tag (Docker's NamedTagged)."""
    try:
        ref = R.parse(text)
    except R.InvalidReference as e:
        raise ArchiveError(f"{what}: invalid reference {_show(text)}: {e}") from None
    if ref.tag is None or ref.digest is not None:
        raise ArchiveError(f"invalid tag {_show(text)}")
    return ref


# -- the store side ----------------------------------------------------------------------------

@dataclass
class _StoredImage:
    """What save needs of a stored image: its config bytes and, per layer, where the
    uncompressed tar comes from."""

    image_id: str
    config: bytes
    parsed: M.ImageConfig
    layers: list[M.Descriptor]     # stored blobs, one per diff_id
    diff_ids: list[str]


def _image_manifests(store: Any, image_id: str) -> list[tuple[M.Manifest, bytes]]:
    """The image manifests recorded for an image (parsed, and as bytes), the main one
    first: an index is searched for the entry with the image's config."""
    digests: list[str] = []
    db = store.db
    # No record (or a store without blob records): the layers are looked for by diff_id.
    with contextlib.suppress(Exception):
        digests.append(db.get_image(image_id).manifest_digest)
    with contextlib.suppress(Exception):
        digests += [d for d, kind in db.blobs_for(image_id) if kind == "manifest"]
    out: list[tuple[M.Manifest, bytes]] = []
    seen: set[str] = set()
    for digest in digests:
        if not digest or digest in seen or not store.content.has(digest):
            continue
        seen.add(digest)
        data = store.content.read(digest, M.MAX_MANIFEST_SIZE)
        try:
            parsed = M.parse(data)
        except M.ManifestError:
            continue
        if isinstance(parsed, M.Index):
            for desc in parsed.manifests:
                if desc.media_type in M.MANIFEST_TYPES and desc.digest not in seen \
                        and store.content.has(desc.digest):
                    seen.add(desc.digest)
                    child_data = store.content.read(desc.digest, M.MAX_MANIFEST_SIZE)
                    child = M.parse(child_data, desc.media_type)
                    if isinstance(child, M.Manifest) and child.config.digest == image_id:
                        out.append((child, child_data))
        elif parsed.config.digest == image_id:
            out.append((parsed, data))
    return out


def _stored_image(store: Any, image_id: str) -> _StoredImage:
    config = store.content.read(image_id, M.MAX_CONFIG_SIZE)
    parsed = M.ImageConfig.parse(config)
    manifests = [m for m, _ in _image_manifests(store, image_id)
                 if len(m.layers) == len(parsed.diff_ids)]
    layers: list[M.Descriptor] = []
    for i, diff_id in enumerate(parsed.diff_ids):
        # An uncompressed copy (named by the diff_id) is the cheapest source.
        if store.content.has(diff_id):
            layers.append(M.Descriptor(M.OCI_LAYER, diff_id, store.content.size(diff_id) or 0))
            continue
        blob = next((m.layers[i] for m in manifests if store.content.has(m.layers[i].digest)),
                    None)
        if blob is None:
            raise ArchiveError(f"image {image_id}: layer {i} ({diff_id}) is not in the "
                               "content store")
        layers.append(blob)
    return _StoredImage(image_id, config, parsed, layers, list(parsed.diff_ids))


def _all_tags(store: Any) -> list[tuple[R.Reference, str]]:
    """Every (tag reference, image id) the store knows."""
    out = []
    for image in store.db.list_images():
        for text in store.db.tags_for(image.id):
            try:
                ref = R.parse(text)
            except R.InvalidReference:
                continue
            if ref.tag is not None and ref.digest is None:
                out.append((ref, image.id))
    return out


def _select_images(store: Any, names: Sequence[str]) -> dict[str, list[R.Reference]]:
    """Docker's save name rules: an ID (or ID prefix) saves the image without names; a
    name with a tag saves that tag; a name alone saves every tag of that repository (or,
    with none, is tried as an ID prefix)."""
    chosen: dict[str, list[R.Reference]] = {}

    def add(image_id: str, ref: R.Reference | None) -> None:
        refs = chosen.setdefault(image_id, [])
        if ref is not None and ref not in refs:
            refs.append(ref)

    tags: list[tuple[R.Reference, str]] | None = None
    for name in names:
        if not isinstance(name, str) or not name:
            raise ArchiveError(f"invalid reference: {name!r}")
        if re.fullmatch(r"(sha256:)?[0-9a-f]{64}", name) or name.startswith("sha256:"):
            add(store.resolve(name), None)
            continue
        try:
            ref = R.parse(name)
        except R.InvalidReference as e:
            raise ArchiveError(f"invalid reference {name!r}: {e}") from None
        if ref.tag is None and ref.digest is None:
            if tags is None:
                tags = _all_tags(store)
            found = [(r, i) for r, i in tags if r.name == ref.name]
            for r, i in sorted(found, key=lambda x: str(x[0])):
                add(i, r)
            if not found:
                add(store.resolve(name), None)
            continue
        image_id = store.resolve(name)
        add(image_id, ref if ref.digest is None else None)
    return chosen


# -- save --------------------------------------------------------------------------------------

@dataclass
class _LayerSource:
    """An uncompressed layer to write: a stored blob, decompressed on the fly if need be."""

    diff_id: str
    blob: M.Descriptor
    size: int = -1  # of the uncompressed tar

    def open(self, store: Any) -> Any:
        f = store.content.open(self.blob.digest)
        if M.layer_compression(self.blob.media_type) is None \
                and detect_compression(_peek_file(f)) == "none":
            return f
        reader, _ = open_decompressed(f)
        return _Closing(reader, f)

    def measure(self, store: Any) -> None:
        """Learn the uncompressed size, checking the content against the diff_id."""
        if self.size >= 0:
            return
        if self.blob.digest == self.diff_id:
            self.size = self.blob.size
            return
        with contextlib.closing(self.open(store)) as src:
            h = HashingReader(src)
            try:
                while h.read(_CHUNK):
                    pass
            except stream_errors() + (OSError,) as e:
                raise ArchiveError(f"layer {self.blob.digest}: corrupt stored blob ({e})") from e
        if h.digest() != self.diff_id:
            raise ArchiveError(f"layer {self.blob.digest} decompresses to {h.digest()}, not "
                               f"its diff_id {self.diff_id}")
        self.size = h.count


def _peek_file(f: Any) -> bytes:
    pos = f.tell()
    head = f.read(6)
    f.seek(pos)
    return head


class _Closing:
    def __init__(self, reader: Any, *files: Any) -> None:
        self._reader, self._files = reader, files

    def read(self, n: int = -1) -> bytes:
        return self._reader.read(n)

    def close(self) -> None:
        for f in (self._reader, *self._files):
            close = getattr(f, "close", None)
            if close is not None:
                close()


def _tarinfo(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    ti.mode = 0o755 if directory else 0o644
    ti.size = 0 if directory else size
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def save(store: Any, refs_or_ids: Sequence[str], out: BinaryIO) -> list[str]:
    """Write the images named by `refs_or_ids` (references or IDs, as `docker save` takes
    them) to `out` as a Docker 25+ archive; returns the image IDs saved."""
    if isinstance(refs_or_ids, str):
        refs_or_ids = [refs_or_ids]
    if not refs_or_ids:
        raise ArchiveError("no images given to save")
    chosen = _select_images(store, refs_or_ids)
    try:
        _save(store, chosen, out)
    except ContentError as e:
        raise ArchiveError(f"saving: {e}") from e
    return list(chosen)


def _save(store: Any, chosen: dict[str, list[R.Reference]], out: BinaryIO) -> None:
    files: dict[str, bytes | _LayerSource] = {}
    index: list[dict[str, Any]] = []
    legacy: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for image_id, refs in chosen.items():
        image = _stored_image(store, image_id)
        sources = []
        for diff_id, blob in zip(image.diff_ids, image.layers):
            existing = files.get(_blob_path(diff_id))
            src = existing if isinstance(existing, _LayerSource) else _LayerSource(diff_id, blob)
            src.measure(store)
            files[_blob_path(diff_id)] = src
            sources.append(src)
        files[_blob_path(image_id)] = image.config
        layer_sources: dict[str, Any] = {}
        layer_descs = []
        for src in sources:
            media_type = M.OCI_LAYER
            if M.is_foreign_layer(src.blob.media_type):
                # Kept apart, as Docker does, with where it came from.
                media_type = (M.DOCKER_FOREIGN_LAYER if src.blob.media_type.startswith(
                    "application/vnd.docker") else M.OCI_LAYER_NONDIST)
                layer_sources[src.diff_id] = src.blob.to_dict()
            layer_descs.append({"mediaType": media_type, "digest": src.diff_id,
                                "size": src.size})
        manifest_doc = {
            "schemaVersion": 2,
            "mediaType": M.OCI_MANIFEST,
            "config": {"mediaType": M.OCI_CONFIG, "digest": image_id,
                       "size": len(image.config)},
            "layers": layer_descs,
        }
        manifest_bytes = _go_json(manifest_doc)
        manifest_digest = _sha256(manifest_bytes)
        files[_blob_path(manifest_digest)] = manifest_bytes
        platform = image.parsed.platform.to_dict()
        for ref in refs:
            index.append({"mediaType": M.OCI_MANIFEST, "digest": manifest_digest,
                          "size": len(manifest_bytes),
                          "annotations": {ANNOTATION_IMAGE_NAME: str(ref),
                                          ANNOTATION_REF_NAME: ref.tag},
                          "platform": platform})
            if image.diff_ids:
                repositories.setdefault(ref.familiar(), {})[ref.tag or "latest"] = \
                    image.diff_ids[-1].partition(":")[2]
        if not refs:
            index.append({"mediaType": M.OCI_MANIFEST, "digest": manifest_digest,
                          "size": len(manifest_bytes), "platform": platform})
        item: dict[str, Any] = {
            "Config": _blob_path(image_id),
            "RepoTags": [r.familiar_string() for r in refs] or None,
            "Layers": [_blob_path(d) for d in image.diff_ids],
        }
        if layer_sources:
            item["LayerSources"] = layer_sources
        legacy.append(item)
    files[OCI_LAYOUT_FILE] = _go_json({"imageLayoutVersion": OCI_LAYOUT_VERSION})
    files[INDEX_FILE] = _go_json({"schemaVersion": 2, "mediaType": M.OCI_INDEX,
                                  "manifests": index})
    files[MANIFEST_FILE] = _go_json(legacy) + b"\n"
    if repositories:
        files[REPOSITORIES_FILE] = _go_json(repositories) + b"\n"
    _write_tar(store, files, out)


def _write_tar(store: Any, files: dict[str, bytes | _LayerSource], out: BinaryIO) -> None:
    names = set(files)
    for name in files:
        parts = name.split("/")
        for i in range(1, len(parts)):
            names.add("/".join(parts[:i]) + "/")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(names):
            if name.endswith("/"):
                tar.addfile(_tarinfo(name, directory=True))
                continue
            item = files[name]
            if isinstance(item, bytes):
                tar.addfile(_tarinfo(name, len(item)), io.BytesIO(item))
                continue
            with contextlib.closing(item.open(store)) as src:
                h = HashingReader(src)
                try:
                    tar.addfile(_tarinfo(name, item.size), h)
                except stream_errors() as e:
                    raise ArchiveError(f"layer {item.diff_id}: {e}") from e
            if h.digest() != item.diff_id:
                raise ArchiveError(f"layer {item.diff_id}: the stored content changed while "
                                   f"being saved (now {h.digest()})")


# -- reading an untrusted archive --------------------------------------------------------------

class _SafeTarInfo(tarfile.TarInfo):
    """Refuses PAX headers and GNU long names above MAX_HEADER before tarfile reads them
    whole into memory."""

    def _proc_member(self, tarfile_):  # type: ignore[override]
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
                         tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE) \
                and self.size > MAX_HEADER:
            raise ArchiveError(f"archive header of {self.size} bytes, more than the "
                               f"{MAX_HEADER} allowed")
        return super()._proc_member(tarfile_)


@dataclass
class _Spool:
    """A member streamed into a content-store ingest, not committed yet."""

    ref: str
    expected: str | None  # the digest the member's name announces
    size: int
    digest: str  # in the writer's algorithm
    writer: Any | None
    done: bool = False  # committed


@dataclass
class _Member:
    name: str
    kind: str  # "file" | "dir" | "symlink" | "hardlink"
    size: int = 0
    link: str = ""
    data: bytes | None = None
    spool: _Spool | None = None
    head: bytes = b""
    digests: dict[str, str] = field(default_factory=dict)


_BLOB_NAME = re.compile(r"blobs/(sha256|sha512)/([0-9a-f]+)")


def _member_name(name: str) -> str:
    """A tar member name as a clean relative path; ArchiveError if it leaves the archive."""
    try:
        return "/".join(clean_path(name))
    except LayerError:
        raise ArchiveError(f"archive entry {name!r} points outside the archive") from None


class _ArchiveReader:
    """One pass over an archive: metadata in memory, everything else into ingests."""

    def __init__(self, content: Any) -> None:
        self.content = content
        self.members: dict[str, _Member] = {}
        self.memory = 0
        self.open_spools: collections.deque[_Spool] = collections.deque()
        self.spools: list[_Spool] = []
        self.committed: set[str] = set()
        self._prefix = f"archive-load-{uuid.uuid4().hex}"

    # -- reading -----------------------------------------------------------------------------
    def read(self, stream: Any) -> None:
        try:
            reader, _ = open_decompressed(stream)
            tar = tarfile.open(fileobj=reader, mode="r|", tarinfo=_SafeTarInfo)  # noqa: SIM115
        except tarfile.ReadError as e:
            raise ArchiveError(f"not a tar archive ({e})") from None
        except stream_errors() + (OSError,) as e:
            raise ArchiveError(f"reading the archive: {e}") from None
        count = 0
        try:
            with tar:
                while (m := tar.next()) is not None:
                    count += 1
                    if count > MAX_MEMBERS:
                        raise ArchiveError(f"archive has more than {MAX_MEMBERS} entries")
                    self._member(tar, m)
                    tar.members.clear()  # stream mode would keep every header
        except ArchiveError:
            raise
        except stream_errors() + (OSError,) as e:
            raise ArchiveError(f"corrupt archive: {e}") from None

    def _member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        name = _member_name(m.name)
        if not name:
            return
        if name in self.members:
            raise ArchiveError(f"archive has two entries named {name!r}")
        if m.isdir():
            self.members[name] = _Member(name, "dir")
        elif m.issym():
            self.members[name] = _Member(name, "symlink", link=m.linkname)
        elif m.islnk():
            target = _member_name(m.linkname)
            t = self.members.get(target)
            if t is None or t.kind != "file":
                raise ArchiveError(f"archive entry {m.name!r} is a hard link to "
                                   f"{m.linkname!r}, which is no earlier file of the archive")
            self.members[name] = _Member(name, "hardlink", link=target)
        elif m.isreg():
            self.members[name] = self._file(tar, m, name)
        # devices, fifos: no part of any image format, ignored

    def _file(self, tar: tarfile.TarFile, m: tarfile.TarInfo, name: str) -> _Member:
        size = m.size
        member = _Member(name, "file", size=size)
        limit = {MANIFEST_FILE: MAX_MANIFEST_JSON, INDEX_FILE: MAX_MANIFEST_JSON,
                 REPOSITORIES_FILE: MAX_MANIFEST_JSON, OCI_LAYOUT_FILE: MAX_OCI_LAYOUT}.get(name)
        if limit is not None and size > limit:
            raise ArchiveError(f"{name} is {size} bytes, more than the {limit} allowed")
        f = tar.extractfile(m)
        assert f is not None
        head = read_full(f, min(size, SMALL_MEMBER))
        member.head = head[:16]
        # Metadata (JSON) must be read whole, so it stays in memory, within a budget; small
        # files too while the budget lasts (spooling each costs a few fsyncs).
        metadata = limit is not None or (size <= M.MAX_CONFIG_SIZE
                                         and head.lstrip()[:1] in (b"{", b"["))
        fits = self.memory + size <= MAX_MEMORY
        if metadata or (size <= SMALL_MEMBER and fits):
            if not fits:
                raise ArchiveError(f"archive metadata is more than the {MAX_MEMORY} bytes "
                                   "allowed")
            data = head + read_full(f, size - len(head))
            if len(data) != size:
                raise ArchiveError(f"archive entry {name!r} is truncated")
            self.memory += size
            member.data = data
            m_blob = _BLOB_NAME.fullmatch(name)
            if m_blob:
                digest = f"{m_blob[1]}:{hashlib.new(m_blob[1], data).hexdigest()}"
                if digest != f"{m_blob[1]}:{m_blob[2]}":
                    raise ArchiveError(f"blob {name} does not match its digest (its content "
                                       f"is {digest})")
            return member
        member.spool = self._spool(f, name, size, head)
        return member

    def _spool(self, f: Any, name: str, size: int, head: bytes) -> _Spool:
        expected = None
        m_blob = _BLOB_NAME.fullmatch(name)
        if m_blob:
            expected = f"{m_blob[1]}:{m_blob[2]}"
            try:
                parse_digest(expected)
            except ContentError:
                expected = None
        ref = f"{self._prefix}-{len(self.spools)}"
        writer = self.content.writer(ref, expected, size)
        spool = _Spool(ref, expected, size, "", writer)
        self.spools.append(spool)
        try:
            writer.write(head)
            left = size - len(head)
            while left > 0:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    raise ArchiveError(f"archive entry {name!r} is truncated")
                writer.write(chunk)
                left -= len(chunk)
        except ContentError as e:
            raise ArchiveError(f"archive entry {name!r}: {e}") from None
        spool.digest = writer.digest()
        if expected is not None and spool.digest != expected:
            raise ArchiveError(f"blob {name} does not match its digest (its content is "
                               f"{spool.digest})")
        self.open_spools.append(spool)
        while len(self.open_spools) > MAX_OPEN_INGESTS:
            old = self.open_spools.popleft()
            if old.writer is not None:
                old.writer.close()  # the data stays in the ingest; commit reopens it
                old.writer = None
        return spool

    # -- looking things up -------------------------------------------------------------------
    def lookup(self, path: Any, what: str) -> _Member:
        """The regular file `path` names, symlinks followed inside the archive only."""
        if not isinstance(path, str) or not path:
            raise ArchiveError(f"{what}: path {_show(path)} is not a file name")
        if path.startswith("/"):
            raise ArchiveError(f"{what}: path {path!r} is absolute; archive paths are relative")
        parts = self._split(path, what, path)
        hops = 0
        i = 0
        while i < len(parts):
            m = self.members.get("/".join(parts[:i + 1]))
            if m is not None and m.kind == "symlink":
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise ArchiveError(f"{what}: too many levels of symbolic links in {path!r}")
                if m.link.startswith("/"):
                    raise ArchiveError(f"{what}: {path!r} leads to symlink {m.name!r} -> "
                                       f"{m.link!r}, which points outside the archive")
                parts = self._split("/".join(parts[:i] + [m.link] + parts[i + 1:]), what,
                                    path, via=m)
                i = 0
                continue
            i += 1
        name = "/".join(parts)
        m = self.members.get(name)
        if m is not None and m.kind == "hardlink":
            m = self.members.get(m.link)
        if m is None:
            raise ArchiveError(f"{what}: {path!r} is not in the archive")
        if m.kind != "file":
            raise ArchiveError(f"{what}: {path!r} is not a regular file")
        return m

    @staticmethod
    def _split(path: str, what: str, orig: str, via: _Member | None = None) -> list[str]:
        parts: list[str] = []
        for p in path.split("/"):
            if p in ("", "."):
                continue
            if p == "..":
                if not parts:
                    how = (f" (through symlink {via.name!r} -> {via.link!r})"
                           if via is not None else "")
                    raise ArchiveError(f"{what}: {orig!r} escapes the archive{how}")
                parts.pop()
            else:
                parts.append(p)
        return parts

    def has(self, name: str) -> bool:
        return name in self.members

    def data(self, m: _Member, what: str, limit: int) -> bytes:
        if m.data is None or len(m.data) > limit:
            raise ArchiveError(f"{what} {m.name!r} is {m.size} bytes, more than the {limit} "
                               "allowed")
        return m.data

    def digest(self, m: _Member, algorithm: str = "sha256") -> str:
        if algorithm in m.digests:
            return m.digests[algorithm]
        if m.data is not None:
            d = f"{algorithm}:{hashlib.new(algorithm, m.data).hexdigest()}"
        elif m.spool is not None and m.spool.digest.startswith(algorithm + ":"):
            d = m.spool.digest
        else:
            raise ArchiveError(f"archive entry {m.name!r}: cannot check a {algorithm} digest")
        m.digests[algorithm] = d
        return d

    def blob(self, desc: M.Descriptor, what: str, limit: int | None = None) -> _Member:
        """The member holding a descriptor's blob, checked against its digest and size."""
        algorithm, _ = parse_digest(desc.digest)
        m = self.lookup(_blob_path(desc.digest), what)
        if m.size != desc.size:
            raise ArchiveError(f"{what}: blob {desc.digest} is {m.size} bytes, the descriptor "
                               f"says {desc.size}")
        if self.digest(m, algorithm) != desc.digest:
            raise ArchiveError(f"{what}: blob {desc.digest} does not match its digest")
        if limit is not None:
            self.data(m, what, limit)
        return m

    # -- committing --------------------------------------------------------------------------
    def commit(self, m: _Member, digest: str) -> None:
        if digest in self.committed or self.content.has(digest):
            self.committed.add(digest)
            return
        if m.data is not None:
            self.commit_bytes(m.data, digest)
            return
        spool = m.spool
        assert spool is not None
        writer = spool.writer
        if writer is None:
            writer = self.content.writer(spool.ref, spool.expected, spool.size)
            if writer.offset != spool.size:
                writer.close()
                raise ArchiveError(f"archive entry {m.name!r}: its ingest was lost")
        spool.writer = None
        try:
            writer.commit(spool.size, digest)
        finally:
            writer.close()
        spool.done = True
        self.committed.add(digest)

    def commit_bytes(self, data: bytes, digest: str) -> None:
        if digest in self.committed or self.content.has(digest):
            self.committed.add(digest)
            return
        with self.content.writer(f"{self._prefix}-{digest}", digest, len(data)) as w:
            w.write(data)
            w.commit()
        self.committed.add(digest)

    def discard(self) -> None:
        """Drop every ingest not committed (all of them after a failure)."""
        for spool in self.spools:
            if spool.done:
                continue
            try:
                if spool.writer is not None:
                    spool.writer.abort()
                else:
                    # Reopened with other expectations, the ingest is truncated rather
                    # than re-hashed, then dropped.
                    self.content.writer(spool.ref, None, None if spool.size else 1).abort()
            except ContentError:
                pass
            spool.writer = None
        self.spools.clear()
        self.open_spools.clear()


# -- load: what to add -------------------------------------------------------------------------

@dataclass
class _Plan:
    """An image found in an archive, checked, ready to be added."""

    image_id: str
    manifest: bytes
    manifest_digest: str
    config: bytes
    layers: list[tuple[M.Descriptor, _Member]]
    refs: list[R.Reference] = field(default_factory=list)

    def add_refs(self, refs: Iterable[R.Reference]) -> None:
        for ref in refs:
            if ref not in self.refs:
                self.refs.append(ref)


def _config(data: bytes, what: str) -> M.ImageConfig:
    try:
        parsed = M.ImageConfig.parse(data)
    except M.ManifestError as e:
        raise ArchiveError(f"{what}: {e}") from None
    _check_os(parsed.os)
    return parsed


def _annotated_refs(desc: M.Descriptor) -> list[R.Reference]:
    """The names an index entry gives its image: containerd's full name, or the OCI ref
    name when it is a full reference itself (not a bare tag like "latest")."""
    name = desc.annotations.get(ANNOTATION_IMAGE_NAME)
    if name:
        return [_image_name(name, f"index.json {ANNOTATION_IMAGE_NAME}")]
    ref_name = desc.annotations.get(ANNOTATION_REF_NAME, "")
    if ref_name and any(c in ref_name for c in ":/"):
        try:
            ref = R.parse_normalized(ref_name)
        except R.InvalidReference:
            return []
        if ref.digest is None:
            return [ref]
    return []


def _oci_plan(reader: _ArchiveReader, desc: M.Descriptor, what: str) -> tuple[str, Any]:
    """(config digest, _Plan or the error that stopped it) for an image manifest."""
    mm = reader.blob(desc, what, M.MAX_MANIFEST_SIZE)
    assert mm.data is not None
    try:
        parsed = M.parse(mm.data, desc.media_type)
    except M.ManifestError as e:
        raise ArchiveError(f"{what}: {e}") from None
    if not isinstance(parsed, M.Manifest):
        raise ArchiveError(f"{what}: {desc.digest} is an index, not an image manifest")
    image_id = parsed.config.digest
    try:
        parsed.check_image()
        cm = reader.blob(parsed.config, f"{what} config", M.MAX_CONFIG_SIZE)
        assert cm.data is not None
        config = _config(cm.data, f"{what} config")
        config.check_layers(parsed)
        layers = []
        for i, layer in enumerate(parsed.layers):
            where = f"{what} layer {i}"
            if not reader.has(_blob_path(layer.digest)) and M.is_foreign_layer(layer.media_type):
                raise ArchiveError(f"{where}: foreign layer {layer.digest} is not in the "
                                   "archive (bosun does not fetch foreign layers)")
            lm = reader.blob(layer, where)
            if M.layer_compression(layer.media_type) is None \
                    and layer.digest != config.diff_ids[i]:
                raise ArchiveError(f"invalid diffID for layer {i}: expected "
                                   f"{config.diff_ids[i]!r}, got {layer.digest!r}")
            layers.append((layer, lm))
    except (ArchiveError, M.ManifestError) as e:
        return image_id, e
    return image_id, _Plan(image_id, mm.data, desc.digest, cm.data, layers)


def _parse_legacy_manifest(data: bytes) -> list[dict[str, Any]]:
    what = "invalid manifest.json"
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ArchiveError(f"{what}: not valid JSON ({e})") from None
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise ArchiveError(f"{what}: expected a list of images")
    items = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            raise ArchiveError(f"{what}: entry {i} is not an object")
        config = item.get("Config")
        if not isinstance(config, str) or not config:
            raise ArchiveError(f"{what}: entry {i} has no Config")
        tags = item.get("RepoTags") or []
        layers = item.get("Layers") or []
        sources = item.get("LayerSources") or {}
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ArchiveError(f"{what}: entry {i}: RepoTags must be a list of strings")
        if not isinstance(layers, list) or not all(isinstance(p, str) for p in layers):
            raise ArchiveError(f"{what}: entry {i}: Layers must be a list of paths")
        if not isinstance(sources, dict):
            raise ArchiveError(f"{what}: entry {i}: LayerSources must be an object")
        items.append({"Config": config, "RepoTags": tags, "Layers": layers,
                      "LayerSources": sources})
    return items


_LAYER_MEDIA_TYPES = {"none": M.OCI_LAYER, "gzip": M.OCI_LAYER_GZIP, "zstd": M.OCI_LAYER_ZSTD}


def _legacy_plan(reader: _ArchiveReader, item: dict[str, Any], i: int,
                 config_member: _Member) -> _Plan:
    what = f"manifest.json entry {i}"
    config_bytes = reader.data(config_member, f"{what} config", M.MAX_CONFIG_SIZE)
    image_id = _sha256(config_bytes)
    config = _config(config_bytes, f"{what} config {item['Config']!r}")
    if len(item["Layers"]) != len(config.diff_ids):
        raise ArchiveError(f"invalid manifest, layers length mismatch: expected "
                           f"{len(item['Layers'])}, got {len(config.diff_ids)}")
    layers = []
    for n, (path, diff_id) in enumerate(zip(item["Layers"], config.diff_ids)):
        where = f"{what} layer {n}"
        if diff_id in item["LayerSources"] and not reader.has(_member_name(path)):
            raise ArchiveError(f"{where}: foreign layer {diff_id} is not in the archive "
                               "(bosun does not fetch foreign layers)")
        lm = reader.lookup(path, where)
        compression = detect_compression(lm.head)
        media_type = _LAYER_MEDIA_TYPES.get(compression)
        if media_type is None:
            raise ArchiveError(f"{where}: {compression} compressed layers are not supported")
        digest = reader.digest(lm, "sha256")
        if compression == "none" and digest != diff_id:
            raise ArchiveError(f"invalid diffID for layer {n}: expected {diff_id!r}, got "
                               f"{digest!r}")
        layers.append((M.Descriptor(media_type, digest, lm.size), lm))
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": M.OCI_MANIFEST,
        "config": {"mediaType": M.OCI_CONFIG, "digest": image_id, "size": len(config_bytes)},
        "layers": [{"mediaType": d.media_type, "digest": d.digest, "size": d.size}
                   for d, _ in layers],
    }
    manifest_bytes = _go_json(manifest_doc)
    return _Plan(image_id, manifest_bytes, _sha256(manifest_bytes), config_bytes, layers)


def _plans(reader: _ArchiveReader) -> list[_Plan]:
    """Every image of the archive, checked; ArchiveError at the first problem."""
    plans: dict[str, _Plan] = {}
    failed: dict[str, Exception] = {}
    names: dict[str, list[R.Reference]] = {}
    has_index = reader.has(INDEX_FILE)
    has_manifest = reader.has(MANIFEST_FILE)
    if not has_index and not has_manifest:
        if reader.has(REPOSITORIES_FILE):
            raise ArchiveError("archive has no manifest.json: archives from Docker before "
                               "1.10 are not supported")
        raise ArchiveError("not an image archive: neither manifest.json nor index.json found")

    if has_index:
        if reader.has(OCI_LAYOUT_FILE):
            layout = reader.data(reader.lookup(OCI_LAYOUT_FILE, OCI_LAYOUT_FILE),
                                 OCI_LAYOUT_FILE, MAX_OCI_LAYOUT)
            _check_layout(layout)
        data = reader.data(reader.lookup(INDEX_FILE, INDEX_FILE), INDEX_FILE,
                           MAX_MANIFEST_JSON)
        index = _parse_index(data)
        for n, desc in enumerate(index.manifests):
            what = f"index.json manifests[{n}]"
            if desc.is_attestation():
                continue
            if desc.media_type in M.INDEX_TYPES:
                im = reader.blob(desc, what, M.MAX_MANIFEST_SIZE)
                assert im.data is not None
                try:
                    child = M.parse(im.data, desc.media_type)
                    if not isinstance(child, M.Index):
                        raise ArchiveError(f"{what}: {desc.digest} is not an index")
                    image_desc = M.select(child)
                except M.ManifestError as e:
                    raise ArchiveError(f"{what}: {e}") from None
            elif desc.media_type in M.MANIFEST_TYPES:
                image_desc = desc
            else:
                continue  # an artifact of some other kind
            image_id, result = _oci_plan(reader, image_desc, what)
            names.setdefault(image_id, []).extend(_annotated_refs(desc))
            if isinstance(result, _Plan):
                plans.setdefault(image_id, result)
            else:
                failed.setdefault(image_id, result)

    if has_manifest:
        data = reader.data(reader.lookup(MANIFEST_FILE, MANIFEST_FILE), MANIFEST_FILE,
                           MAX_MANIFEST_JSON)
        for i, item in enumerate(_parse_legacy_manifest(data)):
            what = f"manifest.json entry {i}"
            config_member = reader.lookup(item["Config"], f"{what} config")
            refs = [_image_name(t, f"{what} RepoTags") for t in item["RepoTags"]]
            image_id = _sha256(reader.data(config_member, f"{what} config",
                                           M.MAX_CONFIG_SIZE))
            if image_id not in plans:
                plans[image_id] = _legacy_plan(reader, item, i, config_member)
            names.setdefault(image_id, []).extend(refs)

    for image_id, error in failed.items():
        if image_id not in plans:
            raise error if isinstance(error, ArchiveError) else ArchiveError(str(error))
    for image_id, plan in plans.items():
        plan.add_refs(names.get(image_id, []))
    if not plans:
        raise ArchiveError("the archive holds no image")
    return list(plans.values())


def _check_layout(data: bytes) -> None:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ArchiveError("invalid oci-layout: not valid JSON") from None
    version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
    if not isinstance(version, str) or not version.startswith("1."):
        raise ArchiveError(f"unsupported OCI image layout version {_show(version)}")


def _parse_index(data: bytes) -> M.Index:
    try:
        index = M.parse(data, M.OCI_INDEX)
    except M.ManifestError as e:
        raise ArchiveError(f"invalid index.json: {e}") from None
    if not isinstance(index, M.Index):
        raise ArchiveError("invalid index.json: not an image index")
    return index


# -- load --------------------------------------------------------------------------------------

def _add(store: Any, plans: list[_Plan], progress: ProgressCallback | None) -> list[str]:
    messages: list[str] = []

    def say(text: str) -> None:
        messages.append(text)
        _report(progress, {"stream": text + "\n"})

    tagged = any(p.refs for p in plans)
    for plan in plans:
        for ref in plan.refs:
            try:
                old = store.resolve(str(ref))
            except Exception:  # noqa: BLE001 - not there yet
                old = None
            if old and old != plan.image_id:
                say(f"The image {ref.familiar_string()} already exists, renaming the old one "
                    f"with ID {old} to empty string")
        image_id = store.add_image(plan.manifest_digest, refs=[str(r) for r in plan.refs])
        if image_id != plan.image_id:
            raise ArchiveError(f"the store added {image_id} for image {plan.image_id}")
        for ref in plan.refs:
            say(f"Loaded image: {ref.familiar_string()}")
        if not tagged:
            say(f"Loaded image ID: {image_id}")
    return messages


def load(store: Any, stream: BinaryIO, *, progress: ProgressCallback | None = None) -> list[str]:
    """`docker load`: add every image of the archive read from `stream` (Docker's, old or
    new, skopeo's docker-archive, or an OCI image layout tar; compressed or not) to the
    store. Returns Docker's output lines ("Loaded image: busybox:latest", or "Loaded image
    ID: sha256:…" when the archive names no image); `progress` gets them as Docker's
    {"stream": line + "\n"} events, after a {"status": "Loading layer", ...} per layer.
    ArchiveError (nothing stored) for an archive that is malformed or hostile."""
    reader = _ArchiveReader(store.content)
    with _lease(store):
        try:
            reader.read(stream)
            plans = _plans(reader)
            for plan in plans:
                reader.commit_bytes(plan.config, plan.image_id)
                reader.commit_bytes(plan.manifest, plan.manifest_digest)
                for desc, member in plan.layers:
                    reader.commit(member, desc.digest)
                    _report(progress, {"status": "Loading layer", "progressDetail": {
                        "current": desc.size, "total": desc.size}, "id": _short(desc.digest)})
        except ContentError as e:
            raise ArchiveError(str(e)) from e
        finally:
            reader.discard()
        return _add(store, plans, progress)


# -- import ------------------------------------------------------------------------------------

class _IterReader:
    """read() over an iterator of byte chunks (an HTTP response body)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                break
            self._buf += chunk
        if n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data


@contextlib.contextmanager
def _open_source(source: BinaryIO | str,
                 progress: ProgressCallback | None = None) -> Iterator[tuple[Any, str]]:
    """(a binary reader, the "fromSrc" Docker records): a URL is fetched, a path opened."""
    if not isinstance(source, str):
        yield source, "-"
        return
    if source.startswith(("http://", "https://")):
        import httpx

        try:
            with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60.0)) as client, \
                    client.stream("GET", source) as resp:
                if resp.status_code >= 400:
                    body = b""
                    for chunk in resp.iter_bytes():
                        body += chunk
                        if len(body) > 4096:
                            break
                    raise ArchiveError(f"failed to GET {source} with status "
                                       f"{resp.status_code} {resp.reason_phrase}: "
                                       f"{body[:4096].decode(errors='replace')}")
                _report(progress, {"status": f"Downloading from {source}"})
                yield _IterReader(resp.iter_bytes(_CHUNK)), source
        except httpx.HTTPError as e:
            raise ArchiveError(f"fetching {source}: {e}") from e
        return
    try:
        f = open(source, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise ArchiveError(f"open {source}: {e.strerror}") from None
    with f:
        yield f, "-"


def _ingest_rootfs(content: Any, src: Any, progress: ProgressCallback | None) -> tuple[str, int]:
    """Stream the (decompressed) rootfs tar into the content store: (diff_id, size)."""
    try:
        reader, _ = open_decompressed(src)
    except stream_errors() + (OSError,) as e:
        raise ArchiveError(f"reading the rootfs archive: {e}") from None
    writer = content.writer(f"import-{uuid.uuid4().hex}")
    try:
        first = read_full(reader, 512)
        if len(first) < 512:
            raise ArchiveError("not a tar archive: fewer than 512 bytes" if first
                               else "the rootfs archive is empty")
        if first != _ZERO_BLOCK:
            try:
                tarfile.TarInfo.frombuf(first, "utf-8", "surrogateescape")
            except tarfile.HeaderError as e:
                raise ArchiveError(f"not a tar archive ({e})") from None
        writer.write(first)
        last = time.monotonic()
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            if progress is not None and time.monotonic() - last > 0.5:
                last = time.monotonic()
                progress({"status": "Importing", "progressDetail": {"current": writer.offset},
                          "id": ""})
        size = writer.offset
        digest = writer.commit()
    except stream_errors() + (OSError,) as e:
        writer.abort()
        raise ArchiveError(f"reading the rootfs archive: {e}") from None
    except BaseException:
        writer.abort()
        raise
    return digest, size


def _import_ref(ref: str) -> R.Reference:
    try:
        parsed = R.parse_normalized(ref)
    except R.InvalidReference as e:
        raise ArchiveError(str(e)) from None
    if parsed.digest is not None:
        raise ArchiveError("cannot import digest reference")
    return parsed


def import_rootfs(store: Any, source: BinaryIO | str, *, ref: str | None = None,
                  changes: Sequence[str] = (), message: str = "",
                  platform: M.Platform | str | None = None,
                  progress: ProgressCallback | None = None) -> str:
    """`docker import`: make a one-layer image of a root filesystem tarball. `source` is a
    binary stream, a file path, or an http(s) URL (fetched); the tar may be compressed.
    `changes` are --change instructions (ChangeError with Docker's message if refused),
    `message` the commit message (default "Imported from -", or "Imported from <URL>"),
    `platform` "os/arch[/variant]" (default: this host's). `progress` gets Docker's
    events ("Downloading from <URL>", "Importing" with the byte count, then the image ID
    as a status). Returns the image ID."""
    target = _import_ref(ref) if ref else None
    plat = _platform(platform)
    _check_os(plat.os)
    run_config = apply_changes([changes] if isinstance(changes, str) else list(changes))
    with _lease(store):
        return _import(store, source, target, plat, run_config, message, progress)


def _import(store: Any, source: BinaryIO | str, target: R.Reference | None,
            plat: M.Platform, run_config: dict[str, Any], message: str,
            progress: ProgressCallback | None) -> str:
    with _open_source(source, progress) as (src, from_src):
        diff_id, size = _ingest_rootfs(store.content, src, progress)
    created = M.Timestamp.from_unix(time.time()).rfc3339nano()
    comment = message or f"Imported from {from_src}"
    try:
        config_obj = M.RunConfig.from_json(run_config, "image config", "config").legacy_dict()
    except M.ManifestError as e:  # pragma: no cover - apply_changes makes valid configs
        raise ArchiveError(str(e)) from None
    doc: dict[str, Any] = {"comment": comment, "created": created, "config": config_obj,
                           "architecture": plat.architecture}
    if plat.variant:
        doc["variant"] = plat.variant
    doc["os"] = plat.os
    doc["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
    doc["history"] = [{"created": created, "comment": comment}]
    image_id = store_local_image(store, doc, [M.Descriptor(M.OCI_LAYER, diff_id, size)],
                                 refs=[str(target)] if target else [])
    _report(progress, {"status": image_id})
    return image_id


def store_local_image(store: Any, config_doc: dict[str, Any], layers: Sequence[M.Descriptor],
                      *, refs: Sequence[str] = (), docker: bool = False) -> str:
    """Add an image made here (`import`, `commit`): its config `config_doc` (written as
    Go's JSON, keys in the given order) and a manifest over `layers` go into the content
    store, then ImageStore.add_image() records it with `refs`. Each layer's blob is in the
    content store or the layer is unpacked already. The manifest is OCI, or Docker's schema
    2 with `docker`. Returns the image ID. Callers hold the store's lease: the new blobs are
    unreferenced until add_image."""
    content = store.content
    config = _go_json(config_doc)
    config_digest = _sha256(config)
    manifest = _go_json({
        "schemaVersion": 2,
        "mediaType": M.DOCKER_MANIFEST if docker else M.OCI_MANIFEST,
        "config": {"mediaType": M.DOCKER_CONFIG if docker else M.OCI_CONFIG,
                   "digest": config_digest, "size": len(config)},
        "layers": [d.to_dict() for d in layers],
    })
    manifest_digest = _sha256(manifest)
    for data, digest in ((config, config_digest), (manifest, manifest_digest)):
        if not content.has(digest):
            with content.writer(f"import-{digest}", digest, len(data)) as w:
                w.write(data)
                w.commit()
    return store.add_image(manifest_digest, refs=list(refs))


# -- OCI image layout directories --------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _to_oci(stored: M.Manifest, data: bytes) -> tuple[bytes, str]:
    """The manifest for an OCI layout: as stored if OCI, else converted (media types only,
    blobs unchanged), as skopeo does when copying to oci:."""
    if stored.media_type == M.OCI_MANIFEST:
        return data, M.OCI_MANIFEST
    convert = {M.DOCKER_CONFIG: M.OCI_CONFIG, M.DOCKER_LAYER: M.OCI_LAYER,
               M.DOCKER_LAYER_GZIP: M.OCI_LAYER_GZIP, M.DOCKER_LAYER_ZSTD: M.OCI_LAYER_ZSTD,
               M.DOCKER_FOREIGN_LAYER: M.OCI_LAYER_NONDIST,
               M.DOCKER_FOREIGN_LAYER_GZIP: M.OCI_LAYER_NONDIST_GZIP}

    def desc(d: M.Descriptor) -> dict[str, Any]:
        out = d.to_dict()
        out["mediaType"] = convert.get(d.media_type, d.media_type)
        return out

    doc = {"schemaVersion": 2, "mediaType": M.OCI_MANIFEST, "config": desc(stored.config),
           "layers": [desc(d) for d in stored.layers]}
    if stored.annotations:
        doc["annotations"] = dict(stored.annotations)
    return _go_json(doc), M.OCI_MANIFEST


def _write_file_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def save_oci_layout(store: Any, ref: str, directory: str, *,
                    ref_name: str | None = None) -> str:
    """Write one image to an OCI image layout directory (created if missing; an existing
    layout keeps its other images), as skopeo's `oci:DIR:NAME` does. Layers are copied as
    stored (compressed ones stay compressed); a Docker schema 2 manifest is converted to
    OCI. The index entry is named `ref_name` (default: the reference's tag, "latest"), with
    the full name in io.containerd.image.name. Returns the manifest digest."""
    try:
        return _save_layout(store, ref, directory, ref_name)
    except ContentError as e:
        raise ArchiveError(f"saving {ref}: {e}") from e


def _save_layout(store: Any, ref: str, directory: str, ref_name: str | None) -> str:
    image_id = store.resolve(ref)
    named: R.Reference | None = None
    if not re.fullmatch(r"(sha256:)?[0-9a-f]{1,64}", ref):
        try:
            named = R.parse_normalized(ref)
        except R.InvalidReference:
            named = None
    found = [(m, data) for m, data in _image_manifests(store, image_id)
             if all(store.content.has(d.digest) for d in m.layers)]
    if not found:
        raise ArchiveError(f"image {image_id} has no stored manifest whose layers are all in "
                           "the content store")
    stored, stored_bytes = found[0]
    manifest_bytes, media_type = _to_oci(stored, stored_bytes)
    manifest_digest = _sha256(manifest_bytes)
    config = store.content.read(image_id, M.MAX_CONFIG_SIZE)
    parsed = M.ImageConfig.parse(config)
    name = ref_name or (named.tag if named is not None and named.tag else None)

    os.makedirs(os.path.join(directory, "blobs"), exist_ok=True)
    layout_path = os.path.join(directory, OCI_LAYOUT_FILE)
    if not os.path.exists(layout_path):
        _write_file_atomic(layout_path, _go_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    blobs: list[tuple[str, bytes | None]] = [(image_id, config),
                                             (manifest_digest, manifest_bytes)]
    blobs += [(d.digest, None) for d in stored.layers]
    for digest, data in blobs:
        algorithm, hexpart = parse_digest(digest)
        adir = os.path.join(directory, "blobs", algorithm)
        os.makedirs(adir, exist_ok=True)
        path = os.path.join(adir, hexpart)
        if os.path.isfile(path):
            continue
        if data is not None:
            _write_file_atomic(path, data)
            continue
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with store.content.open(digest) as src, open(tmp, "wb") as dst:
                h = hashlib.new(algorithm)
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if f"{algorithm}:{h.hexdigest()}" != digest:
                raise ArchiveError(f"blob {digest} is corrupt in the content store")
            os.rename(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    index_path = os.path.join(directory, INDEX_FILE)
    manifests: list[dict[str, Any]] = []
    if os.path.exists(index_path):
        with open(index_path, "rb") as f:
            existing = _parse_index(f.read(MAX_MANIFEST_JSON + 1))
        manifests = [d.to_dict() for d in existing.manifests
                     if name is None or d.annotations.get(ANNOTATION_REF_NAME) != name]
    entry: dict[str, Any] = {"mediaType": media_type, "digest": manifest_digest,
                             "size": len(manifest_bytes)}
    annotations = {}
    if named is not None and named.tag:
        annotations[ANNOTATION_IMAGE_NAME] = str(named.with_default_tag())
    if name:
        annotations[ANNOTATION_REF_NAME] = name
    if annotations:
        entry["annotations"] = annotations
    entry["platform"] = parsed.platform.to_dict()
    manifests.append(entry)
    _write_file_atomic(index_path, _go_json({"schemaVersion": 2, "mediaType": M.OCI_INDEX,
                                             "manifests": manifests}))
    return manifest_digest


class _LayoutDir:
    """Blobs of an OCI layout directory, opened without following symlinks."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        try:
            self.fd = os.open(directory, _DIR_FLAGS)
        except OSError as e:
            raise ArchiveError(f"OCI layout {directory}: {e.strerror}") from None

    def close(self) -> None:
        os.close(self.fd)

    def open(self, *parts: str) -> BinaryIO:
        fd = os.dup(self.fd)
        try:
            for p in parts[:-1]:
                nfd = os.open(p, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
            ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError as e:
            raise ArchiveError(f"OCI layout {self.directory}: {'/'.join(parts)}: "
                               f"{e.strerror}") from None
        finally:
            os.close(fd)
        if not stat.S_ISREG(os.fstat(ffd).st_mode):
            os.close(ffd)
            raise ArchiveError(f"OCI layout {self.directory}: {'/'.join(parts)} is not a "
                               "regular file")
        return os.fdopen(ffd, "rb")

    def read(self, name: str, limit: int) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ArchiveError(f"OCI layout {self.directory}: {name} is more than {limit} "
                               "bytes")
        return data

    def blob(self, desc: M.Descriptor, limit: int) -> bytes:
        algorithm, hexpart = parse_digest(desc.digest)
        with self.open("blobs", algorithm, hexpart) as f:
            data = f.read(min(limit, desc.size) + 1)
        if len(data) != desc.size or hashlib.new(algorithm, data).hexdigest() != hexpart:
            raise ArchiveError(f"OCI layout {self.directory}: blob {desc.digest} does not "
                               "match its descriptor")
        return data


def load_oci_layout(store: Any, directory: str, ref: str | None = None, *,
                    name: str | None = None) -> str:
    """Add one image of an OCI image layout directory to the store, as skopeo's
    `oci:DIR:REF` reads it: `ref` picks the index entry by its
    org.opencontainers.image.ref.name (or io.containerd.image.name); without it the layout
    must hold one image. The image is tagged `name` if given, else by the entry's
    io.containerd.image.name, else by `ref` when that is a full reference ("busybox:1").
    Returns the image ID."""
    with _lease(store):
        return _load_layout(store, directory, ref, name)


def _load_layout(store: Any, directory: str, ref: str | None, name: str | None) -> str:
    layout = _LayoutDir(directory)
    writers: list[Any] = []
    try:
        _check_layout(layout.read(OCI_LAYOUT_FILE, MAX_OCI_LAYOUT))
        index = _parse_index(layout.read(INDEX_FILE, MAX_MANIFEST_JSON))
        desc = _pick(index, ref, directory)
        if desc.media_type in M.INDEX_TYPES:
            child = M.parse(layout.blob(desc, M.MAX_MANIFEST_SIZE), desc.media_type)
            if not isinstance(child, M.Index):
                raise ArchiveError(f"{desc.digest} is not an index")
            image_desc = M.select(child)
        else:
            image_desc = desc
        manifest_bytes = layout.blob(image_desc, M.MAX_MANIFEST_SIZE)
        parsed = M.parse(manifest_bytes, image_desc.media_type)
        if not isinstance(parsed, M.Manifest):
            raise ArchiveError(f"{image_desc.digest} is not an image manifest")
        parsed.check_image()
        config_bytes = layout.blob(parsed.config, M.MAX_CONFIG_SIZE)
        config = _config(config_bytes, "image config")
        config.check_layers(parsed)
        for i, layer in enumerate(parsed.layers):
            if M.layer_compression(layer.media_type) is None \
                    and layer.digest != config.diff_ids[i]:
                raise ArchiveError(f"invalid diffID for layer {i}: expected "
                                   f"{config.diff_ids[i]!r}, got {layer.digest!r}")
        refs: list[R.Reference] = []
        if name:
            refs = [_import_ref(name)]
        else:
            refs = _annotated_refs(desc)
            if not refs and ref and any(c in ref for c in ":/"):
                with contextlib.suppress(ArchiveError):
                    refs = [_import_ref(ref)]
        # Stream the layers into ingests, all checked before any is committed.
        prefix = f"oci-load-{uuid.uuid4().hex}"
        pending = []
        for i, layer in enumerate(parsed.layers):
            if store.content.has(layer.digest) or any(d == layer.digest for d, _ in pending):
                continue
            algorithm, hexpart = parse_digest(layer.digest)
            w = store.content.writer(f"{prefix}-{i}", layer.digest, layer.size)
            writers.append(w)
            with layout.open("blobs", algorithm, hexpart) as f:
                while chunk := f.read(_CHUNK):
                    w.write(chunk)
            if w.offset != layer.size or w.digest() != layer.digest:
                raise ArchiveError(f"OCI layout {directory}: layer {layer.digest} does not "
                                   "match its descriptor")
            pending.append((layer.digest, w))
        for digest, w in pending:
            w.commit()
        for data, digest in ((config_bytes, parsed.config.digest),
                             (manifest_bytes, image_desc.digest)):
            if not store.content.has(digest):
                with store.content.writer(f"{prefix}-{digest}", digest, len(data)) as w:
                    w.write(data)
                    w.commit()
    except M.ManifestError as e:
        raise ArchiveError(f"OCI layout {directory}: {e}") from None
    except ContentError as e:
        raise ArchiveError(f"OCI layout {directory}: {e}") from None
    finally:
        for w in writers:
            with contextlib.suppress(ContentError):
                w.abort()
        layout.close()
    image_id = store.add_image(image_desc.digest, refs=[str(r) for r in refs])
    return image_id


def _pick(index: M.Index, ref: str | None, directory: str) -> M.Descriptor:
    candidates = [d for d in index.manifests if not d.is_attestation()
                  and d.media_type in M.MANIFEST_TYPES | M.INDEX_TYPES]
    if ref is None:
        if len(candidates) != 1:
            raise ArchiveError(f"OCI layout {directory} holds {len(candidates)} images: "
                               "name the one to load")
        return candidates[0]
    full = None
    with contextlib.suppress(R.InvalidReference):
        full = str(R.parse_normalized(ref))
    for d in candidates:
        if d.annotations.get(ANNOTATION_REF_NAME) == ref:
            return d
    for d in candidates:
        if full is not None and d.annotations.get(ANNOTATION_IMAGE_NAME) == full:
            return d
    raise ArchiveError(f"OCI layout {directory} has no image named {ref!r}")
