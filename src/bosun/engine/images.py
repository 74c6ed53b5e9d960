"""Image operations the engine adds to the image store: those that need containers, events or
per-request registry credentials (moby's daemon/images): commit, rmi with Docker's conflict
rules, prune and list filters, and pull/push/tag/import/load/save with their image events.

The image store (`engine.images`) does the work; what is here is Docker's policy around it.
Image-layer and registry errors come out as engine errors (see `translate_errors`)."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from bosun.engine.errors import (
    Conflict,
    EngineError,
    Forbidden,
    InvalidParameter,
    NotFound,
    SystemErr,
)
from bosun.image import manifest as M
from bosun.image import reference as R
from bosun.registry.auth import Credentials, TokenCache

Progress = Callable[[dict], None]

IMAGE_LIST_FILTERS = frozenset({"dangling", "label", "before", "since", "reference", "until"})
IMAGE_PRUNE_FILTERS = frozenset({"dangling", "label", "label!", "until"})
_EMPTY_BLOCK = bytes(512)  # a tar with no member starts with its end-of-archive block


class Unauthorized(EngineError):
    """A registry refused a login's credentials: HTTP 401 (POST /auth only). Not in
    bosun.engine.errors yet, so the API maps it itself."""


# -- errors -----------------------------------------------------------------------------------

def image_error(e: BaseException) -> BaseException:
    """An image-layer or registry error as the engine error kind Docker reports it with;
    anything else (engine errors included) unchanged."""
    from bosun.image import archive, changes, content, layer, metadata, snapshot, store
    from bosun.registry import errors as reg

    if isinstance(e, EngineError):
        return e
    if isinstance(e, metadata.NotFound):
        return NotFound(str(e))
    if isinstance(e, metadata.Conflict):
        return Conflict(str(e))
    if isinstance(e, (metadata.AmbiguousPrefix, R.InvalidReference, changes.ChangeError,
                      archive.ArchiveError)):
        return InvalidParameter(str(e))
    if isinstance(e, (reg.UnauthorizedError, reg.DeniedError)):
        # 403, not 401: the docker CLI answers a 401 from a pull by prompting for a login
        return Forbidden(str(e))
    if isinstance(e, reg.NotFoundError):
        return NotFound(str(e))
    if isinstance(e, M.ManifestError):
        # a platform the image does not have is Docker's NotFound; the rest is bad input
        return (NotFound(str(e)) if "no matching manifest" in str(e)
                else InvalidParameter(str(e)))
    if isinstance(e, (reg.RegistryError, store.ImageError, content.ContentError,
                      layer.LayerError, snapshot.SnapshotError)):
        return SystemErr(str(e))
    return e


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise image-layer and registry errors as engine errors."""
    try:
        yield
    except Exception as e:
        mapped = image_error(e)
        if mapped is e:
            raise
        raise mapped from e


# -- events -----------------------------------------------------------------------------------

def _labels(engine, image_id: str) -> dict[str, str]:
    try:
        return dict(engine.images.config(image_id).config.labels or {})
    except Exception:  # noqa: BLE001 - gone (a delete event): no labels, as Docker
        return {}


def image_event(engine, action: str, actor: str, name: str | None = None,
                labels: Mapping[str, str] | None = None) -> None:
    """An image event as moby's LogImageEvent: the image's labels, then `name`."""
    attributes = dict(labels if labels is not None else _labels(engine, actor))
    if name:
        attributes["name"] = name
    engine.events.emit("image", action, actor, attributes)


def _removal_events(engine, image_id: str, records: list[dict],
                    labels: Mapping[str, str]) -> None:
    """untag/delete events for `docker rmi` records (moby names the image ID in both)."""
    for record in records:
        if "Untagged" in record:
            image_event(engine, "untag", image_id, image_id, labels)
        elif record.get("Deleted") == image_id:
            image_event(engine, "delete", image_id, image_id, labels)


# -- registries -------------------------------------------------------------------------------

def registry_store(engine, credentials: Credentials | None):
    """The image store to reach registries with. `credentials` None: the daemon's own (its
    docker config.json); otherwise exactly those (empty: anonymous), with a token cache of
    their own so that no other request's tokens are used or kept. A shallow copy shares
    the content store, metadata, snapshots and locks with `engine.images`."""
    if credentials is None:
        return engine.images
    store = copy.copy(engine.images)
    given = credentials or None
    store.credentials_lookup = lambda host: given
    store.client_options = {**engine.images.client_options, "token_cache": TokenCache()}
    return store


def registry_host(server_address: str | None) -> str:
    """A login's `serveraddress` as a registry host: scheme and path dropped, Docker Hub's
    many names (and none) as docker.io."""
    text = (server_address or "").strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme):]
    host = text.split("/", 1)[0].lower()
    if host in ("", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
        return R.DEFAULT_DOMAIN
    if not R.is_valid_domain(host):  # else the URL parser's ValueError is a 500
        raise InvalidParameter(f"invalid registry address {server_address!r}")
    return host


def login(engine, credentials: Credentials, server_address: str | None) -> dict:
    """POST /auth: check the credentials against the registry's /v2/ (Unauthorized when
    refused). Nothing is stored: the client keeps its credentials."""
    from bosun.registry.errors import UnauthorizedError

    host = registry_host(server_address)
    store = registry_store(engine, credentials)
    # the store's client: the same insecure-registry and transport settings as a pull
    with translate_errors(), contextlib.closing(store._client(host)) as client:
        try:
            client.ping()
        except UnauthorizedError as e:
            said = [str(x.get("message") or "") for x in e.errors if x.get("message")]
            raise Unauthorized(f"login attempt to {host} failed: unauthorized: "
                               f"{'; '.join(said) or e}") from e
    return {"Status": "Login Succeeded", "IdentityToken": ""}


def pull(engine, image: str, tag: str | None = None, *, platform: str | None = None,
         credentials: Credentials | None = None, progress: Progress | None = None) -> str:
    """POST /images/create?fromImage=…&tag=…: pull (`:latest` when no tag is given),
    reporting Docker's progress events; returns the image ID."""
    with translate_errors():
        ref = R.for_pull(image, tag).with_default_tag()
        store = registry_store(engine, credentials)
        image_id = store.pull(str(ref), platform=platform or None, progress=progress)
    shown = ref.familiar_string()
    image_event(engine, "pull", shown, shown)
    return image_id


def _repository_tags(engine, ref: R.Reference) -> list[str]:
    """Every tag of `ref`'s repository, as references (push -a)."""
    out = []
    for summary in engine.images.images():
        for text in summary["RepoTags"]:
            r = R.parse(text)
            if r.name == ref.name and r.tag is not None:
                out.append(str(r))
    return sorted(set(out))


def push(engine, name: str, tag: str | None = None, *, credentials: Credentials | None = None,
         progress: Progress | None = None) -> list[str]:
    """POST /images/{name}/push?tag=…: push that tag, or every tag of the repository when
    neither `name` nor `tag` has one (as Docker); returns the manifest digests pushed."""
    with translate_errors():
        ref = R.parse(name)
        if ref.digest is not None and not tag:
            raise InvalidParameter("cannot push a digest reference")
        if tag:
            ref = R.for_tag(name, tag)
        targets = [str(ref)] if ref.tag is not None else _repository_tags(engine, ref)
        if not targets:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar()}")
        store = registry_store(engine, credentials)
        digests = []
        for target in targets:
            digests.append(store.push(target, progress=progress))
            shown = R.parse(target).familiar_string()
            image_event(engine, "push", shown, shown)
    return digests


# -- tags, import, load, save -----------------------------------------------------------------

def tag(engine, source: str, repo: str, tag: str | None = None) -> str:
    """POST /images/{name}/tag: `repo[:tag]` (`:latest` by default) names the image."""
    with translate_errors():
        if not repo:
            raise InvalidParameter("repository name is required")
        target = R.for_tag(repo, tag)
        if target.familiar() == "sha256":
            raise InvalidParameter(
                "refusing to create an ambiguous tag using digest algorithm as name")
        image_id = engine.images.resolve(source)
        engine.images.tag(image_id, str(target))
    image_event(engine, "tag", image_id, target.familiar_string())
    return image_id


def import_image(engine, source: BinaryIO | str, *, repo: str = "", tag: str = "",
                 changes: Sequence[str] = (), message: str = "", platform: str | None = None,
                 progress: Progress | None = None) -> str:
    """`docker import`: a root filesystem tarball (stream, or URL) as a one-layer image."""
    from bosun.image.archive import import_rootfs

    with translate_errors():
        target = str(R.for_tag(repo, tag or None)) if repo else None
        image_id = import_rootfs(engine.images, source, ref=target, changes=list(changes),
                                 message=message, platform=platform or None,
                                 progress=progress)
    image_event(engine, "import", image_id, image_id)
    if target:
        image_event(engine, "tag", image_id, R.parse(target).familiar_string())
    return image_id


def load_images(engine, stream: BinaryIO, progress: Progress | None = None) -> list[str]:
    """`docker load`; returns Docker's output lines ("Loaded image: busybox:latest")."""
    from bosun.image.archive import load

    with translate_errors():
        lines = load(engine.images, stream, progress=progress)
    for line in lines:
        if line.startswith("Loaded image ID: "):
            image_id = line.removeprefix("Loaded image ID: ")
        elif line.startswith("Loaded image: "):
            image_id = engine.images.resolve(line.removeprefix("Loaded image: "))
        else:
            continue
        image_event(engine, "load", image_id, image_id)
    return lines


def save_images(engine, names: Sequence[str], out: BinaryIO) -> list[str]:
    """`docker save`: the images as a tar written to `out`; returns their IDs."""
    from bosun.image.archive import save

    with translate_errors():
        if not names:
            raise InvalidParameter("no images given to save")
        ids = save(engine.images, list(names), out)
    for image_id in ids:
        image_event(engine, "save", image_id, image_id)
    return ids


# -- rmi --------------------------------------------------------------------------------------

def _users(engine, image_id: str) -> tuple[list, list]:
    """(running, stopped) containers made from the image (paused ones are running)."""
    running, stopped = [], []
    for c in sorted(engine.all(), key=lambda c: c.id):
        if c.doc.get("Image") == image_id:
            (running if c.running else stopped).append(c)
    return running, stopped


def _is_id_prefix(image_id: str, ref: str) -> bool:
    """Docker's isImageIDPrefix: `ref` names the image by (a prefix of) its ID."""
    return image_id.startswith(ref) or image_id.partition(":")[2].startswith(ref)


def _ref_key(ref: R.Reference) -> str:
    """How the metadata keys a reference (`name:tag`, or `name@digest`)."""
    return f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"


def remove_image(engine, ref: str, force: bool = False, noprune: bool = False) -> list[dict]:
    """DELETE /images/{name} (`docker rmi`) with Docker's conflict rules: a reference is
    untagged, the image goes with its last one or when named by ID. Containers using it:
    a reference whose removal would leave the image dangling needs `force`; by ID, a
    stopped container needs `force` and a running one cannot be forced. `rmi -f` of a
    reference a running container's image has only untags (the image stays)."""
    store = engine.images
    with translate_errors():
        image_id = store.resolve(ref)
        running, stopped = _users(engine, image_id)
        short = image_id.partition(":")[2][:12]
        labels = _labels(engine, image_id)
        if _is_id_prefix(image_id, ref):
            if running:
                raise Conflict(f"conflict: unable to delete {short} (cannot be forced) - "
                               f"image is being used by running container {running[0].id[:12]}")
            if stopped and not force:
                raise Conflict(f"conflict: unable to delete {short} (must be forced) - "
                               f"image is being used by stopped container {stopped[0].id[:12]}")
            records = store.remove(ref, force=force, noprune=noprune)
        elif running and force:
            records = _untag_reference(engine, image_id, ref)
        else:
            records = store.remove(ref, force=force, noprune=noprune)
    _removal_events(engine, image_id, records, labels)
    return records


def _untag_reference(engine, image_id: str, ref: str) -> list[dict]:
    """Remove the reference `ref` and leave the image: moby's `rmi -f` of a reference whose
    image a running container uses. A repository's digest references go with its last
    tag, as in ImageStore.remove."""
    db = engine.images.db
    parsed = R.parse_normalized(ref)
    key = _ref_key(parsed)
    db.untag(key)
    records = [{"Untagged": parsed.familiar_string()}]
    if parsed.digest is None:
        remaining = [R.parse(k) for k in db.tags_for(image_id)]
        if not any(r.name == parsed.name and r.digest is None for r in remaining):
            for r in remaining:
                if r.name == parsed.name:
                    db.untag(_ref_key(r))
                    records.append({"Untagged": r.familiar_string()})
    return records


# -- list and prune filters -------------------------------------------------------------------

def _invalid_filter(key: str, values: Sequence[str] | None = None) -> InvalidParameter:
    """moby's invalidFilter wording: "invalid filter 'dangling=[maybe]'"."""
    if values is None:
        return InvalidParameter(f"invalid filter '{key}'")
    return InvalidParameter(f"invalid filter '{key}=[{' '.join(values)}]'")


def _check_keys(filters: Mapping[str, Sequence[str]], allowed: frozenset[str]) -> None:
    for key in filters:
        if key not in allowed:
            raise _invalid_filter(key)


def path_match(pattern: str, name: str) -> bool:
    """Go's path.Match: `*` and `?` stop at "/", `[^a-z]` classes, `\\` escapes.
    InvalidParameter for a malformed pattern (Go's ErrBadPattern)."""
    out, i, n = [], 0, len(pattern)

    def bad() -> InvalidParameter:
        return InvalidParameter("syntax error in pattern")

    def escaped(j: int) -> tuple[str, int]:
        """One class character at j (escape undone) and the index after it."""
        if j >= n or pattern[j] in "-]":
            raise bad()
        if pattern[j] == "\\":
            j += 1
            if j >= n:
                raise bad()
        return pattern[j], j + 1

    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "\\":
            if i + 1 >= n:
                raise bad()
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif ch == "[":
            i += 1
            negate = i < n and pattern[i] == "^"
            if negate:
                i += 1
            ranges = []
            while True:
                if i < n and pattern[i] == "]" and ranges:
                    i += 1
                    break
                lo, i = escaped(i)
                hi = lo
                if i < n and pattern[i] == "-":
                    hi, i = escaped(i + 1)
                    if hi < lo:
                        raise bad()
                ranges.append(re.escape(lo) + ("-" + re.escape(hi) if hi != lo else ""))
            out.append("[" + ("^" if negate else "") + "".join(ranges) + "]")
        else:
            out.append(re.escape(ch))
            i += 1
    return re.fullmatch("".join(out), name, re.DOTALL) is not None


def reference_matches(pattern: str, ref: str) -> bool:
    """moby's FamiliarMatch: the pattern against the familiar reference (`busybox:latest`),
    then against its name alone (`busybox`)."""
    if path_match(pattern, ref):
        return True
    name, _ = R.split_repo_tag(ref)
    return path_match(pattern, name)


def _dangling_value(values: Sequence[str], lenient: bool) -> bool:
    """The `dangling` filter's value: exactly true/false for a list (moby's ExactMatch),
    also 1/0 and any case for prune (GetBoolOrDefault)."""
    for v in values:
        if v == "true" or (lenient and (v.lower() == "true" or v == "1")):
            return True
    for v in values:
        if v == "false" or (lenient and (v.lower() == "false" or v == "0")):
            return False
    raise _invalid_filter("dangling", values)


def _time_filter(values: Sequence[str] | None, now: float) -> float | None:
    from bosun.engine.logs import parse_time

    if not values:
        return None
    return parse_time(values[-1], now)


def filter_images(summaries: Sequence[dict], filters: Mapping[str, Sequence[str]] | None,
                  created: Mapping[str, float], resolve: Callable[[str], str],
                  now: float | None = None) -> list[dict]:
    """GET /images/json's filters (moby's Images) over the store's summaries (newest first):
    dangling=true|false, label=k[=v], before/since=<image>, reference=<pattern> (which also
    keeps only the matching RepoTags/RepoDigests), until=<time>. `created` maps image IDs to
    creation times (unix seconds, fractions kept); `resolve` an image reference to its ID."""
    from bosun.engine.views import match_labels

    filters = filters or {}
    _check_keys(filters, IMAGE_LIST_FILTERS)
    now = time.time() if now is None else now
    dangling = _dangling_value(filters["dangling"], False) if filters.get("dangling") else None
    before = min((created.get(resolve(v), 0.0) for v in filters.get("before", ())),
                 default=None)
    since = max((created.get(resolve(v), 0.0) for v in filters.get("since", ())),
                default=None)
    until = _time_filter(filters.get("until"), now)
    patterns = list(filters.get("reference", ()))
    out = []
    for summary in summaries:
        t = created.get(summary["Id"], 0.0)
        if before is not None and not t < before:
            continue
        if since is not None and not t > since:
            continue
        if until is not None and t > until:
            continue
        if "label" in filters and not match_labels(list(filters["label"]),
                                                   summary.get("Labels")):
            continue
        item = dict(summary)
        if patterns:
            item["RepoTags"] = [r for r in summary["RepoTags"]
                                if any(reference_matches(p, r) for p in patterns)]
            item["RepoDigests"] = [r for r in summary["RepoDigests"]
                                   if any(reference_matches(p, r) for p in patterns)]
        if not item["RepoTags"] and not item["RepoDigests"]:
            if patterns or dangling is False:
                continue
        elif dangling and item["RepoTags"]:
            continue
        out.append(item)
    return out


def prune_candidates(summaries: Sequence[dict], filters: Mapping[str, Sequence[str]] | None,
                     created: Mapping[str, float], in_use: set[str],
                     now: float | None = None) -> list[str]:
    """The IDs `POST /images/prune` removes (moby's ImagesPrune), oldest first: images
    without a tag (all images with dangling=false) that no container uses, created before
    `until`, whose labels match `label` and do not all match `label!`."""
    from bosun.engine.views import match_labels

    filters = filters or {}
    _check_keys(filters, IMAGE_PRUNE_FILTERS)
    now = time.time() if now is None else now
    dangling = _dangling_value(filters["dangling"], True) if filters.get("dangling") else True
    until = _time_filter(filters.get("until"), now)
    out = []
    for summary in reversed(summaries):
        image_id = summary["Id"]
        labels = summary.get("Labels") or {}
        if image_id in in_use or (dangling and summary["RepoTags"]):
            continue
        if until is not None and created.get(image_id, 0.0) > until:
            continue
        if "label" in filters and not match_labels(list(filters["label"]), labels):
            continue
        if filters.get("label!") and match_labels(list(filters["label!"]), labels):
            continue
        out.append(image_id)
    return out


def _created_times(engine) -> dict[str, float]:
    """Image ID → creation time from its config, to the nanosecond (0 when unknown)."""
    out = {}
    for img in engine.images.db.list_images():
        t = 0.0
        if img.created:
            with contextlib.suppress(ValueError):
                ts = M.Timestamp.parse(img.created)
                t = ts.seconds + ts.nanos / 1e9
        out[img.id] = t
    return out


def _shared_sizes(engine, ids: Iterable[str]) -> dict[str, int]:
    """Per image, the size of its layers that other images use too."""
    stacks = {i: engine.images.db.layers_for(i) for i in ids}
    users: dict[str, int] = {}
    for layers in stacks.values():
        for chain in {layer.chain_id for layer in layers}:
            users[chain] = users.get(chain, 0) + 1
    return {i: sum(layer.size for layer in layers if users[layer.chain_id] > 1)
            for i, layers in stacks.items()}


def list_images(engine, filters: Mapping[str, Sequence[str]] | None = None, *,
                shared_size: bool = False) -> list[dict]:
    """GET /images/json (`docker images`), newest first; SharedSize only when asked for
    (-1 otherwise, as Docker)."""
    with translate_errors():
        summaries = engine.images.images()
        out = filter_images(summaries, filters, _created_times(engine), engine.images.resolve)
        if shared_size:
            shared = _shared_sizes(engine, [s["Id"] for s in out])
            for s in out:
                s["SharedSize"] = shared.get(s["Id"], 0)
    return out


def prune_images(engine, filters: Mapping[str, Sequence[str]] | None = None) -> dict:
    """POST /images/prune: each candidate removed by ID (its references with it), with
    rmi's events; SpaceReclaimed counts the layers removed."""
    with translate_errors():
        store = engine.images
        in_use = {c.doc.get("Image") for c in engine.all()}
        ids = prune_candidates(store.images(), filters, _created_times(engine),
                               {i for i in in_use if i})
        layer_sizes = {layer.chain_id: layer.size for layer in store.db.list_layers()}
        deleted: list[dict] = []
        reclaimed = 0
        for image_id in ids:
            labels = _labels(engine, image_id)
            try:
                records = store.remove(image_id, force=True)
            except Exception as e:
                if isinstance(image_error(e), (NotFound, Conflict)):
                    continue  # removed, or put to use, meanwhile
                raise
            _removal_events(engine, image_id, records, labels)
            deleted += records
            reclaimed += sum(layer_sizes.get(r.get("Deleted", ""), 0) for r in records)
    engine.events.emit("image", "prune", "", {"reclaimed": str(reclaimed)})
    return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}


# -- commit -----------------------------------------------------------------------------------

def merge_config(user: dict[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """moby's commit merge(): what the new image's config leaves unset comes from the
    container's config (Env and Labels by key, ExposedPorts and Volumes added, Cmd and
    Entrypoint only together, Healthcheck field by field). Modifies and returns `user`."""
    for key in ("User", "WorkingDir", "StopSignal"):
        if not user.get(key):
            user[key] = base.get(key) or ""
    for key in ("ExposedPorts", "Volumes"):
        if not user.get(key):
            user[key] = copy.deepcopy(base.get(key))
        else:
            for name in base.get(key) or {}:
                user[key].setdefault(name, {})
    if not user.get("Env"):
        user["Env"] = copy.deepcopy(base.get("Env"))
    else:
        have = {e.partition("=")[0] for e in user["Env"]}
        user["Env"] += [e for e in base.get("Env") or [] if e.partition("=")[0] not in have]
    labels = dict(user.get("Labels") or {})
    for k, v in (base.get("Labels") or {}).items():
        labels.setdefault(k, v)
    user["Labels"] = labels
    if not user.get("Entrypoint") and not user.get("Cmd"):
        user["Cmd"] = copy.deepcopy(base.get("Cmd"))
        user["Entrypoint"] = copy.deepcopy(base.get("Entrypoint"))
    hc = base.get("Healthcheck")
    if hc:
        if not user.get("Healthcheck"):
            user["Healthcheck"] = copy.deepcopy(hc)
        else:
            mine = user["Healthcheck"]
            for key in ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval",
                        "Retries"):
                if not mine.get(key) and hc.get(key):
                    mine[key] = copy.deepcopy(hc[key])
    return user


def _run_config(config: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A container config in Docker's shape and field order (InvalidParameter if bad)."""
    try:
        return M.RunConfig.from_json(config, what, "config").legacy_dict()
    except M.ManifestError as e:
        raise InvalidParameter(str(e)) from None


def commit_config(container_config: Mapping[str, Any], override: Mapping[str, Any] | None,
                  changes: Sequence[str]) -> dict[str, Any]:
    """The committed image's config (moby's CreateImageFromContainer): `override` (the
    request body; the container's config when None) with the `--change` instructions
    applied, then merged with the container's config."""
    from bosun.image.changes import apply_changes

    base = _run_config(container_config, "container config")
    start = base if override is None else _run_config(override, "config")
    with translate_errors():
        changed = apply_changes(list(changes), start)
    return _run_config(merge_config(changed, base), "config")


class _Head:
    """Passes writes on and keeps the first tar block: all zeros means no member."""

    def __init__(self, out) -> None:
        self._out = out
        self.head = b""

    def write(self, data) -> int:
        if len(self.head) < 512:
            self.head += bytes(data[:512 - len(self.head)])
        return self._out.write(data)


def _diff_layer(store, container_id: str, media_type: str) -> M.Descriptor | None:
    """The container's changes as an uncompressed layer blob in the content store; None
    when there are none (Docker adds no layer then). Under the store's lease."""
    w = store.content.writer(f"commit-{container_id[:12]}-{uuid.uuid4().hex[:8]}")
    try:
        sink = _Head(w)
        diff_id = store.snapshots.diff(container_id, sink)
        if sink.head in (b"", _EMPTY_BLOCK):
            w.abort()
            return None
        size = w.offset
        digest = w.commit()
    except BaseException:
        w.abort()
        raise
    if digest != diff_id:
        raise SystemErr(f"commit: the layer written ({digest}) is not its diff ID {diff_id}")
    return M.Descriptor(media_type, diff_id, size)


def _parent_manifest(store, image_id: str) -> M.Manifest:
    img = store.db.get_image(image_id)
    if img.manifest_digest:
        man = M.parse(store.content.read(img.manifest_digest))
        if isinstance(man, M.Manifest) and man.config.digest == image_id:
            return man
    raise SystemErr(f"image {image_id} has no manifest to build on")


def _child_config(parent: Mapping[str, Any], diff_id: str | None, *, config: dict,
                  container_config: dict, container_id: str, author: str,
                  comment: str) -> dict[str, Any]:
    """moby's NewChildImage: the parent's platform, rootfs and history, one more history
    step (an empty_layer one when nothing changed), keys sorted as Docker writes them."""
    created = M.Timestamp.from_unix(time.time()).rfc3339nano()
    step: dict[str, Any] = {"created": created}
    if author:
        step["author"] = author
    created_by = " ".join(container_config.get("Cmd") or [])
    if created_by:
        step["created_by"] = created_by
    if comment:
        step["comment"] = comment
    if diff_id is None:
        step["empty_layer"] = True
    rootfs = parent.get("rootfs") or {}
    diff_ids = list(rootfs.get("diff_ids") or []) + ([diff_id] if diff_id else [])
    doc: dict[str, Any] = {
        "architecture": parent.get("architecture", ""),
        "config": config,
        "container": container_id,
        "container_config": container_config,
        "created": created,
        "history": list(parent.get("history") or []) + [step],
        "os": parent.get("os") or "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    for key, value in (("author", author), ("comment", comment),
                       ("variant", parent.get("variant")),
                       ("os.version", parent.get("os.version")),
                       ("os.features", parent.get("os.features"))):
        if value:
            doc[key] = value
    return dict(sorted(doc.items()))


def commit(engine, container_ref: str, *, repo: str = "", tag: str = "", comment: str = "",
           author: str = "", changes: Sequence[str] = (), pause: bool = True,
           config: Mapping[str, Any] | None = None) -> str:
    """POST /commit (`docker commit`): the container's changes as a new layer over its
    image's, the new config as Docker makes it, tagged `repo[:tag]` if given; the
    container is frozen meanwhile when `pause` and running. Returns the image ID."""
    from bosun.engine.container import DEAD, PAUSED, REMOVING, RUNNING
    from bosun.image import metadata
    from bosun.image.archive import store_local_image

    c = engine.get(container_ref)
    with translate_errors():
        target = R.for_tag(repo, tag or None) if repo else None
    if c.status == DEAD or c.state.get("Dead"):
        raise Conflict(f"You cannot commit container {c.id} which is Dead")
    if c.status == REMOVING:
        raise Conflict(f"You cannot commit container {c.id} which is being removed")
    container_config = _run_config(c.doc["Config"], "container config")
    new_config = commit_config(c.doc["Config"], config, changes)
    store = engine.images
    parent_id = c.doc["Image"]
    paused_here = False
    if pause and c.status == RUNNING:
        engine.pause_container(c.id)
        paused_here = True
    try:
        with translate_errors(), store.lease():
            try:
                base = _parent_manifest(store, parent_id)
            except metadata.NotFound:  # removed with `rmi -f` since the container was made
                raise NotFound(f"No such image: {parent_id}") from None
            parent = json.loads(store.content.read(parent_id, M.MAX_CONFIG_SIZE))
            docker = base.media_type == M.DOCKER_MANIFEST
            layer = _diff_layer(store, c.id, M.DOCKER_LAYER if docker else M.OCI_LAYER)
            doc = _child_config(parent, layer.digest if layer else None, config=new_config,
                                container_config=container_config, container_id=c.id,
                                author=author, comment=comment)
            layers = list(base.layers) + ([layer] if layer else [])
            image_id = store_local_image(store, doc, layers,
                                         refs=[str(target)] if target else [], docker=docker)
    finally:
        if paused_here and c.status == PAUSED:
            with contextlib.suppress(EngineError):
                engine.unpause_container(c.id)
    shown = target.familiar_string() if target else ""
    if target:
        image_event(engine, "tag", image_id, shown)
    engine.emit(c, "commit", comment=comment, imageID=image_id, imageRef=shown)
    return image_id
