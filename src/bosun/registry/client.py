"""A client for the OCI distribution API (Docker Registry HTTP API v2), over httpx.

One `RegistryClient` talks to one registry host: manifests and blobs in, manifests and
blobs out, tags, deletes. It authenticates as the registry asks (`bosun.registry.auth`),
retries what is safe to retry, resumes interrupted blob downloads with `Range`, and checks
every digest itself: a registry, mirror or proxy is never trusted with content.

Transport rules, as Docker's:
- HTTPS with verified certificates, except for "insecure" hosts — loopback addresses and
  hosts listed as insecure — which get HTTPS without verification, falling back to plain
  HTTP if the host does not speak TLS.
- docker.io is served by registry-1.docker.io; mirrors (Docker's registry-mirrors) are tried
  first for docker.io pulls, the origin after any mirror failure. Pushes go to the origin.
- Redirects are followed for GET/HEAD (blob storage); the Authorization header does not
  follow to another origin.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import random
import re
import ssl
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Concatenate, Literal, ParamSpec, Protocol, Self, TypeVar
from urllib.parse import urljoin

import httpx

from bosun.registry.auth import (
    DOCKER_IO_HOSTS, Authenticator, Credentials, TokenCache, is_loopback,
)
from bosun.registry.errors import (
    DigestMismatchError, ProtocolError, RegistryConnectionError, RegistryError,
    TooManyRequestsError, UnauthorizedError, error_from_response,
)

log = logging.getLogger("bosun.registry")

# Manifest media types, most wanted first. Schema 1 comes last so a registry holding only
# that still answers, and the caller can refuse it with a clear message.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
                        DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1)
MANIFEST_ACCEPT = ", ".join(
    [*MANIFEST_MEDIA_TYPES[:4], *(f"{t}; q=0.5" for t in MANIFEST_MEDIA_TYPES[4:])])

MAX_MANIFEST_SIZE = 4 * 1024 * 1024  # the limit distribution itself enforces
MAX_ERROR_BODY = 64 * 1024
MAX_REDIRECTS = 10
MAX_TAG_PAGES = 10_000
CHUNK = 256 * 1024
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DOCKER_IO_API = "registry-1.docker.io"

# What the distribution spec allows in a repository name, a tag and a digest. Checked
# before they go into a URL path.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}


P = ParamSpec("P")
R = TypeVar("R")


class Sink(Protocol):
    def write(self, data: bytes, /) -> Any: ...


@dataclass(frozen=True)
class Progress:
    """One progress report of a blob transfer; total is None when not known yet."""

    digest: str
    done: int
    total: int | None


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class ManifestInfo:
    """What a HEAD on a manifest tells."""

    digest: str | None
    media_type: str | None
    size: int | None


def parse_digest(digest: str) -> tuple[str, str]:
    """("sha256", hex) of a digest string; RegistryError if malformed or unsupported."""
    m = _DIGEST_RE.fullmatch(digest or "")
    if m is None:
        raise RegistryError(f"invalid digest {digest!r}")
    algo, hexd = m.groups()
    if algo not in _HEX_LEN:
        raise RegistryError(f"unsupported digest algorithm {algo!r} in {digest}")
    if len(hexd) != _HEX_LEN[algo] or not re.fullmatch(r"[0-9a-f]+", hexd):
        raise RegistryError(f"invalid digest {digest!r}")
    return algo, hexd


def digest_of(data: bytes, algo: str = "sha256") -> str:
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"


def _check_repo(repo: str) -> str:
    if not _REPO_RE.fullmatch(repo or "") or len(repo) > 255:
        raise RegistryError(f"invalid repository name {repo!r}")
    return repo


def _check_ref(ref: str) -> str:
    if ":" in ref:
        parse_digest(ref)
    elif not _TAG_RE.fullmatch(ref or ""):
        raise RegistryError(f"invalid tag {ref!r}")
    return ref


def _split_host(netloc: str) -> str:
    """The host part of host[:port] (IPv6 literals in brackets)."""
    if netloc.startswith("["):
        return netloc[1:netloc.index("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


@dataclass
class _Endpoint:
    """Where requests go: the origin registry or a mirror."""

    name: str               # host[:port], for messages and as the token cache key
    base: str | None        # "https://host[:port]" once known
    insecure: bool          # unverified TLS or plain HTTP allowed
    auth: Authenticator
    mirror: bool = False


class _Download:
    """A blob download's running state, kept across resumed requests and endpoints."""

    def __init__(self, digest: str, hasher: Any, done: int, total: int | None,
                 sink: Sink, progress: ProgressCallback | None):
        self.digest, self.hasher, self.done, self.total = digest, hasher, done, total
        self.sink, self.progress = sink, progress

    def write(self, data: bytes) -> None:
        if self.total is not None and self.done + len(data) > self.total:
            raise DigestMismatchError(f"blob {self.digest}: the registry sent more than "
                                      f"its {self.total} bytes")
        self.sink.write(data)
        self.hasher.update(data)
        self.done += len(data)
        if self.progress:
            self.progress(Progress(self.digest, self.done, self.total))


class _ShortRead(Exception):
    """The response body ended before its announced length (treated as a dropped
    connection: resume)."""


def _api(method: Callable[Concatenate[RegistryClient, P], R]
         ) -> Callable[Concatenate[RegistryClient, P], R]:
    """Public methods raise RegistryError only: httpx failures that slip past the specific
    handling (a malformed Location, a broken encoding) are wrapped, not leaked."""

    @functools.wraps(method)
    def wrapper(self: RegistryClient, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except (httpx.InvalidURL, httpx.StreamError, httpx.DecodingError) as e:
            raise ProtocolError(f"{self.host}: {_describe(e)}") from e
        except httpx.HTTPError as e:
            raise RegistryConnectionError(f"{self.host}: {_describe(e)}") from e

    return wrapper


class RegistryClient:
    """A client for one registry host ("registry.example:5000", "docker.io", …).

    credentials: what to authenticate with (see `bosun.registry.auth.load_credentials`);
    None is anonymous. insecure: allow unverified TLS and plain HTTP for this host (always
    so for loopback hosts). insecure_hosts: further hosts where that is allowed (redirect
    targets, token realms). mirrors: base URLs tried before docker.io for pulls (ignored for
    other hosts). retries/backoff: for 5xx, 429 and broken connections, exponential.
    """

    def __init__(self, host: str, *, insecure: bool = False,
                 credentials: Credentials | None = None, mirrors: tuple[str, ...] | list[str] = (),
                 timeout: float = 60.0, retries: int = 4, backoff: float = 0.5,
                 insecure_hosts: tuple[str, ...] | list[str] = (),
                 token_cache: TokenCache | None = None,
                 transport: httpx.BaseTransport | None = None,
                 user_agent: str = "bosun/0.1"):
        host = host.strip().rstrip("/")
        if not host or "/" in host:
            raise RegistryError(f"invalid registry host {host!r}")
        self.host = host
        self.retries = retries
        self.backoff = backoff
        self._sleep = time.sleep
        self._insecure_hosts = {_split_host(h.lower()) for h in insecure_hosts}
        if insecure:
            self._insecure_hosts.add(_split_host(host.lower()))
        self._cache = token_cache or TokenCache()
        self._lock = threading.Lock()

        # One pool verifies certificates (system trust store), the other does not and only
        # ever carries requests to insecure hosts.
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
        # trust_env off: no proxy variables and, above all, no ~/.netrc credentials
        # sent to registries behind our back.
        common: dict[str, Any] = {
            "timeout": httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            "follow_redirects": False, "http1": True, "http2": False, "limits": limits,
            "headers": {"User-Agent": user_agent}, "trust_env": False}
        if transport is not None:
            self._verified = httpx.Client(transport=transport, **common)
            self._unverified = self._verified
        else:
            self._verified = httpx.Client(verify=ssl.create_default_context(), **common)
            self._unverified = httpx.Client(verify=False, **common)

        is_docker_io = host.lower() in DOCKER_IO_HOSTS
        api_host = DOCKER_IO_API if is_docker_io else host
        self.origin = self._endpoint(api_host, None, credentials)
        self.mirrors: list[_Endpoint] = []
        if is_docker_io:
            for m in mirrors:
                url = httpx.URL(m.rstrip("/"))
                if url.scheme not in ("http", "https") or not url.host:
                    raise RegistryError(f"invalid mirror URL {m!r}")
                netloc = url.netloc.decode("ascii")
                if url.scheme == "http":  # the user asked for plain HTTP for this mirror
                    self._insecure_hosts.add(url.host.lower())
                # Mirrors are anonymous: Docker Hub credentials are not theirs to see.
                self.mirrors.append(self._endpoint(netloc, str(url).rstrip("/"), None,
                                                   mirror=True))
        elif mirrors:
            log.debug("mirrors ignored for %s (they serve docker.io only)", host)

    def _endpoint(self, name: str, base: str | None, credentials: Credentials | None,
                  mirror: bool = False) -> _Endpoint:
        auth = Authenticator(name, credentials, self._client_for, self._insecure, self._cache)
        return _Endpoint(name, base, self._insecure(_split_host(name)), auth, mirror)

    def _insecure(self, host: str) -> bool:
        return is_loopback(host) or host.lower() in self._insecure_hosts

    def _client_for(self, url: str | httpx.URL) -> httpx.Client:
        u = httpx.URL(url)
        return self._unverified if self._insecure(u.host) else self._verified

    def close(self) -> None:
        self._verified.close()
        self._unverified.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -----------------------------------------------------------------------------------
    # HTTP plumbing

    def _base(self, ep: _Endpoint) -> str:
        """The endpoint's scheme://host, found once: HTTPS, or for an insecure host
        whichever of HTTPS and HTTP it answers."""
        if ep.base:
            return ep.base
        with self._lock:
            if ep.base:
                return ep.base
            base = f"https://{ep.name}"
            if ep.insecure:
                try:
                    self._unverified.get(f"{base}/v2/").close()
                except httpx.TransportError as e:
                    log.debug("%s: no TLS (%s), using plain HTTP", ep.name, e)
                    base = f"http://{ep.name}"
            ep.base = base
            return base

    def _delay(self, attempt: int, retry_after: str | None = None) -> None:
        delay = min(self.backoff * 2 ** (attempt - 1), 30.0) * (0.5 + random.random() / 2)
        if retry_after and retry_after.strip().isdigit():
            delay = max(delay, min(float(retry_after), 60.0))
        self._sleep(delay)

    def _send_once(self, ep: _Endpoint, method: str, url: str, headers: dict[str, str],
                   content: Any, params: Any) -> httpx.Response:
        """One request, following GET/HEAD redirects; Authorization stays with the origin
        (blob storage gets a pre-signed URL, not our token). Body unread."""
        start = httpx.URL(url)
        hdrs = dict(headers)
        for _ in range(MAX_REDIRECTS + 1):
            client = self._client_for(url)
            req = client.build_request(method, url, headers=hdrs, content=content, params=params)
            resp = client.send(req, stream=True)
            if method not in ("GET", "HEAD") or not resp.has_redirect_location:
                return resp
            location = resp.headers["location"]
            _drain(resp)
            target = httpx.URL(_resolve(resp, location, f"{ep.name}: redirect"))
            if resp.url.scheme == "https" and target.scheme == "http" and \
                    not self._insecure(target.host):
                raise ProtocolError(f"{ep.name}: refusing redirect from HTTPS to {target}")
            if _origin(target) != _origin(start):
                hdrs.pop("Authorization", None)
            url, params = str(target), None
        raise ProtocolError(f"{ep.name}: too many redirects for {method} {start}")

    def _request(self, ep: _Endpoint, method: str, path: str, *, scope: tuple[str, ...],
                 what: str, headers: dict[str, str] | None = None, content: Any = None,
                 params: Any = None, retry: bool | None = None) -> httpx.Response:
        """A request with authentication and retries; the response (any status) comes back
        with its body unread: the caller reads or streams it, and closes it.

        retry: retry 5xx/429 and broken connections (default: for GET/HEAD). Bodies that
        are not bytes cannot be sent twice, so they are never retried, not even after a 401.
        """
        url = path if path.startswith(("http://", "https://")) else self._base(ep) + path
        replayable = content is None or isinstance(content, bytes)
        if retry is None:
            retry = method in ("GET", "HEAD")
        retry = retry and replayable
        attempt = 0
        auth_retried = False
        while True:
            try:
                sent = ep.auth.header(scope)
                hdrs = dict(headers or {})
                if sent:
                    hdrs["Authorization"] = sent
                resp = self._send_once(ep, method, url, hdrs, content, params)
            except httpx.TransportError as e:
                if retry and attempt < self.retries:
                    attempt += 1
                    log.debug("%s: %s; retry %d", what, e, attempt)
                    self._delay(attempt)
                    continue
                where = f"mirror {ep.name}: " if ep.mirror else ""
                raise RegistryConnectionError(f"{what}: {where}{_describe(e)}") from e
            status = resp.status_code
            same_origin = _origin(resp.url) == _origin(httpx.URL(url))
            if status == 401 and same_origin and not auth_retried and replayable \
                    and ep.auth.on_unauthorized(resp, scope, sent):
                _drain(resp)
                auth_retried = True
                continue
            if status in RETRY_STATUSES and retry and attempt < self.retries:
                _drain(resp)
                attempt += 1
                log.debug("%s: HTTP %d; retry %d", what, status, attempt)
                self._delay(attempt, resp.headers.get("retry-after"))
                continue
            return resp

    def _fail(self, resp: httpx.Response, what: str, default_code: str | None = None,
              ep: _Endpoint | None = None) -> RegistryError:
        """The error for an unexpected response (closes it)."""
        ep = ep or self.origin
        try:
            body = _read_limited(resp, MAX_ERROR_BODY, truncate=True)
        except (httpx.HTTPError, httpx.StreamError):
            body = b""
        finally:
            resp.close()
        if resp.status_code != 404:
            default_code = None
        err = error_from_response(what, resp.status_code, resp.reason_phrase, body,
                                  default_code)
        if resp.status_code == 429 and not isinstance(err, TooManyRequestsError):
            err = TooManyRequestsError(str(err), status=429, errors=err.errors)
        if isinstance(err, UnauthorizedError):
            hint = (f"the credentials for {self.host} were refused" if ep.auth.credentials
                    else f"log in to {self.host} first")
            err.args = (f"{err} ({hint})",)
        return err

    def _pull(self, fn: Callable[[_Endpoint], Any], what: str) -> Any:
        """Run fn on each mirror then the origin, until one works. Digest errors are not
        a reason to fall back: content that does not verify is reported."""
        for ep in self.mirrors:
            try:
                return fn(ep)
            except DigestMismatchError:
                raise
            except RegistryError as e:
                log.info("%s: mirror %s failed (%s); trying the next", what, ep.name, e)
        return fn(self.origin)

    @staticmethod
    def _scope(repo: str, push: bool = False) -> tuple[str, ...]:
        return (f"repository:{repo}:{'pull,push' if push else 'pull'}",)

    # -----------------------------------------------------------------------------------
    # API

    @_api
    def ping(self) -> str:
        """Check that the host speaks the v2 API and that the credentials (if any) are
        accepted. Returns the base URL used ("https://host" or "http://host")."""
        what = f"{self.host}: ping"
        ep = self.origin
        resp = self._request(ep, "GET", "/v2/", scope=(), what=what)
        if resp.status_code != 200:
            raise self._fail(resp, what)
        _drain(resp)
        return self._base(ep)

    @_api
    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index, by tag or digest. The
        digest is computed from the bytes and checked against the reference (when it is
        a digest) and against the registry's Docker-Content-Digest."""
        _check_repo(repo)
        _check_ref(ref)
        what = f"manifest {self.host}/{repo}{'@' if ':' in ref else ':'}{ref}"

        def get(ep: _Endpoint) -> tuple[bytes, str, str]:
            resp = self._request(ep, "GET", f"/v2/{repo}/manifests/{ref}",
                                 scope=self._scope(repo), what=what,
                                 headers={"Accept": MANIFEST_ACCEPT})
            if resp.status_code != 200:
                raise self._fail(resp, what, "MANIFEST_UNKNOWN", ep=ep)
            with contextlib.closing(resp):
                try:
                    data = _read_limited(resp, MAX_MANIFEST_SIZE)
                except httpx.HTTPError as e:
                    raise RegistryConnectionError(f"{what}: {_describe(e)}") from e
            media_type = _media_type(resp.headers.get("content-type"), data)
            said = resp.headers.get("docker-content-digest")
            return data, media_type, self._manifest_digest(what, ref, data, media_type, said)

        return self._pull(get, what)

    def _manifest_digest(self, what: str, ref: str, data: bytes, media_type: str,
                         header: str | None) -> str:
        algo = parse_digest(ref)[0] if ":" in ref else "sha256"
        digest = digest_of(data, algo)
        if ":" in ref and digest != ref:
            raise DigestMismatchError(f"{what}: content has digest {digest}")
        # A signed schema 1 manifest's digest covers its payload without the signatures,
        # so it never matches the bytes; it is refused later anyway.
        if header and media_type not in (DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1):
            try:
                halgo = parse_digest(header.strip())[0]
            except RegistryError:
                halgo = None
            if halgo and digest_of(data, halgo) != header.strip():
                raise DigestMismatchError(f"{what}: the registry says {header.strip()}, "
                                          f"the content has digest {digest_of(data, halgo)}")
        return digest

    @_api
    def head_manifest(self, repo: str, ref: str) -> ManifestInfo:
        """Digest, media type and size of a manifest without fetching it."""
        _check_repo(repo)
        _check_ref(ref)
        what = f"manifest {self.host}/{repo}{'@' if ':' in ref else ':'}{ref}"

        def head(ep: _Endpoint) -> ManifestInfo:
            resp = self._request(ep, "HEAD", f"/v2/{repo}/manifests/{ref}",
                                 scope=self._scope(repo), what=what,
                                 headers={"Accept": MANIFEST_ACCEPT})
            if resp.status_code != 200:
                raise self._fail(resp, what, "MANIFEST_UNKNOWN", ep=ep)
            _drain(resp)
            h = resp.headers
            digest = h.get("docker-content-digest") or (ref if ":" in ref else None)
            if digest and ":" in ref and digest != ref:
                raise DigestMismatchError(f"{what}: the registry says {digest}")
            size = h.get("content-length")
            ctype = h.get("content-type")
            return ManifestInfo(digest, ctype.split(";")[0].strip() if ctype else None,
                                int(size) if size and size.isdigit() else None)

        return self._pull(head, what)

    @_api
    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        """Upload a manifest under a tag (or its digest); returns its digest."""
        _check_repo(repo)
        _check_ref(ref)
        what = f"push manifest {self.host}/{repo}{'@' if ':' in ref else ':'}{ref}"
        algo = parse_digest(ref)[0] if ":" in ref else "sha256"
        digest = digest_of(data, algo)
        if ":" in ref and digest != ref:
            raise DigestMismatchError(f"{what}: content has digest {digest}")
        resp = self._request(self.origin, "PUT", f"/v2/{repo}/manifests/{ref}",
                             scope=self._scope(repo, push=True), what=what, content=data,
                             headers={"Content-Type": media_type}, retry=True)
        if resp.status_code not in (200, 201, 202):
            raise self._fail(resp, what)
        _drain(resp)
        said = resp.headers.get("docker-content-digest")
        if said and said.startswith(f"{algo}:") and said != digest:
            raise DigestMismatchError(f"{what}: the registry stored {said}, we sent {digest}")
        return digest

    @_api
    def delete_manifest(self, repo: str, ref: str) -> None:
        """Delete a manifest (registries generally want a digest, not a tag)."""
        _check_repo(repo)
        _check_ref(ref)
        what = f"delete manifest {self.host}/{repo}{'@' if ':' in ref else ':'}{ref}"
        resp = self._request(self.origin, "DELETE", f"/v2/{repo}/manifests/{ref}",
                             scope=(f"repository:{repo}:delete",), what=what, retry=True)
        if resp.status_code not in (200, 202, 204):
            err = self._fail(resp, what, "MANIFEST_UNKNOWN")
            if ":" not in ref and resp.status_code in (400, 405):
                err.args = (f"{err} (this registry may delete by digest only)",)
            raise err
        _drain(resp)

    @_api
    def list_tags(self, repo: str, page_size: int | None = None) -> list[str]:
        """All tags of a repository, following the registry's pagination (Link)."""
        _check_repo(repo)
        what = f"tags of {self.host}/{repo}"
        path: str = f"/v2/{repo}/tags/list"
        params: dict[str, int] | None = {"n": page_size} if page_size else None
        tags: list[str] = []
        seen: set[str] = set()
        for _ in range(MAX_TAG_PAGES):
            resp = self._request(self.origin, "GET", path, scope=self._scope(repo),
                                 what=what, params=params)
            if resp.status_code != 200:
                raise self._fail(resp, what)
            with contextlib.closing(resp):
                body = _read_limited(resp, 16 * 1024 * 1024)
            try:
                page = json.loads(body).get("tags") or []
            except (ValueError, AttributeError) as e:
                raise ProtocolError(f"{what}: not a tag list") from e
            tags.extend(str(t) for t in page)
            nxt = resp.links.get("next", {}).get("url")
            if not nxt:
                return tags
            path = _resolve(resp, nxt, what)
            if path in seen:
                raise ProtocolError(f"{what}: pagination loops")
            seen.add(path)
            params = None
        raise ProtocolError(f"{what}: too many pages")

    @_api
    def blob_exists(self, repo: str, digest: str) -> bool:
        """Whether the repository has the blob (HEAD)."""
        return self._blob_exists(self.origin, repo, digest, self._scope(repo))

    def _blob_exists(self, ep: _Endpoint, repo: str, digest: str,
                     scope: tuple[str, ...]) -> bool:
        _check_repo(repo)
        parse_digest(digest)
        what = f"blob {self.host}/{repo}@{digest}"
        resp = self._request(ep, "HEAD", f"/v2/{repo}/blobs/{digest}", scope=scope, what=what)
        if resp.status_code in (200, 404):
            _drain(resp)
            return resp.status_code == 200
        raise self._fail(resp, what, ep=ep)

    @_api
    def fetch_blob(self, repo: str, digest: str, sink: Sink, offset: int = 0,
                   progress: ProgressCallback | None = None, *, size: int | None = None,
                   hasher: Any = None) -> int:
        """Stream a blob into sink (anything with write()), starting at offset (the sink
        already holds the bytes before it). Dropped connections are resumed with Range.
        Returns the blob's size (offset included).

        The digest is verified when the whole blob went through here (offset 0), or when
        hasher — a hashlib object already fed the first offset bytes — is given; otherwise
        the sink must verify. size, if known (from a descriptor), is enforced."""
        _check_repo(repo)
        algo, hexd = parse_digest(digest)
        if offset < 0 or (size is not None and offset > size):
            raise RegistryError(f"blob {digest}: bad offset {offset}")
        verify = offset == 0 or hasher is not None
        state = _Download(digest, hasher or hashlib.new(algo), offset, size, sink, progress)
        what = f"blob {self.host}/{repo}@{digest}"
        self._pull(lambda ep: self._download(ep, repo, state, what), what)
        if state.total is not None and state.done != state.total:
            raise DigestMismatchError(f"{what}: got {state.done} of {state.total} bytes")
        if verify and state.hasher.hexdigest() != hexd:
            raise DigestMismatchError(f"{what}: content has digest "
                                      f"{algo}:{state.hasher.hexdigest()}")
        return state.done

    def _download(self, ep: _Endpoint, repo: str, st: _Download, what: str) -> None:
        resumes = 0
        while True:
            # identity: a compressed transfer would make ranges count other bytes
            headers = {"Accept-Encoding": "identity"}
            if st.done:
                headers["Range"] = f"bytes={st.done}-"
            resp = self._request(ep, "GET", f"/v2/{repo}/blobs/{st.digest}",
                                 scope=self._scope(repo), what=what, headers=headers)
            try:
                with contextlib.closing(resp):
                    if resp.status_code == 416 and st.total is not None and st.done == st.total:
                        return  # nothing left to fetch
                    if resp.status_code not in (200, 206):
                        raise self._fail(resp, what, "BLOB_UNKNOWN", ep=ep)
                    skip = self._range_start(resp, st, what)
                    # Raw (no decoding) and unbuffered: what has arrived is kept when the
                    # connection breaks.
                    for chunk in resp.iter_raw():
                        if skip:
                            cut = min(skip, len(chunk))
                            chunk, skip = chunk[cut:], skip - cut
                        if chunk:
                            st.write(chunk)
                    if st.total is not None and st.done < st.total:
                        raise _ShortRead(f"ended at {st.done} of {st.total} bytes")
                    return
            except (httpx.TransportError, _ShortRead) as e:
                resumes += 1
                if resumes > self.retries:
                    raise RegistryConnectionError(
                        f"{what}: connection kept failing ({_describe(e)})") from e
                log.info("%s: %s; resuming at byte %d", what, _describe(e), st.done)
                self._delay(resumes)

    @staticmethod
    def _range_start(resp: httpx.Response, st: _Download, what: str) -> int:
        """Check where the response body starts; returns how many bytes of it to skip
        (a server that ignored our Range sends everything again)."""
        length = resp.headers.get("content-length")
        if resp.status_code == 206:
            m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*",
                             resp.headers.get("content-range", ""))
            if m is None or int(m.group(1)) != st.done:
                raise ProtocolError(f"{what}: asked for bytes from {st.done}, got "
                                    f"{resp.headers.get('content-range')!r}")
            total = int(m.group(3)) if m.group(3) != "*" else None
            skip = 0
        else:
            total = int(length) if length and length.isdigit() else None
            skip = st.done
        if total is not None:
            if st.total is not None and total != st.total:
                raise DigestMismatchError(f"{what}: the registry says {total} bytes, "
                                          f"expected {st.total}")
            st.total = total
        return skip

    @_api
    def push_blob(self, repo: str, digest: str, size: int, source_stream: BinaryIO | bytes,
                  chunk_size: int | None = None, mount_from: str | None = None,
                  progress: ProgressCallback | None = None
                  ) -> Literal["exists", "mounted", "uploaded"]:
        """Make the blob exist in repo: nothing to do if it is there, a cross-repository
        mount from mount_from if the registry allows it, else an upload from source_stream
        (read(n); exactly size bytes, checked against digest before the upload is
        committed): monolithic (one PUT) or, with chunk_size, chunked (PATCHes then PUT).
        A seekable source is re-sent from the start when an upload breaks."""
        _check_repo(repo)
        algo, hexd = parse_digest(digest)
        if isinstance(source_stream, (bytes, bytearray)):
            source_stream = io.BytesIO(source_stream)
        if mount_from is not None:
            _check_repo(mount_from)
        if chunk_size is not None and chunk_size <= 0:
            raise RegistryError("chunk_size must be positive")
        what = f"push blob {self.host}/{repo}@{digest}"
        scope = self._scope(repo, push=True)
        if mount_from and mount_from != repo:
            scope += (f"repository:{mount_from}:pull",)
        ep = self.origin

        if self._blob_exists(ep, repo, digest, scope):
            if progress:
                progress(Progress(digest, size, size))
            return "exists"

        start = _tell(source_stream)
        attempt = 0
        while True:
            location = None
            try:
                params = {"mount": digest, "from": mount_from} if mount_from else None
                resp = self._request(ep, "POST", f"/v2/{repo}/blobs/uploads/", scope=scope,
                                     what=what, params=params, retry=True,
                                     headers={"Content-Length": "0"})
                if resp.status_code == 201 and mount_from:
                    _drain(resp)
                    if progress:
                        progress(Progress(digest, size, size))
                    return "mounted"
                # 202: an upload session (a refused mount starts one as well).
                location = self._location(resp, what, expect=202)
                if chunk_size is None:
                    self._put_monolithic(ep, location, scope, what, digest, algo, hexd, size,
                                         source_stream, progress)
                else:
                    self._put_chunked(ep, location, scope, what, digest, algo, hexd, size,
                                      source_stream, chunk_size, progress)
                return "uploaded"
            except RegistryError as e:
                if location:
                    self._cancel_upload(ep, location, scope, what)
                broken = isinstance(e, RegistryConnectionError) or (e.status or 0) >= 500
                if not broken or start is None or attempt >= self.retries \
                        or isinstance(e, DigestMismatchError):
                    raise
                attempt += 1
                log.info("%s: %s; starting the upload again", what, e)
                source_stream.seek(start)
                self._delay(attempt)

    def _location(self, resp: httpx.Response, what: str, expect: int) -> str:
        """The upload URL from a Location header (relative or absolute)."""
        if resp.status_code != expect:
            raise self._fail(resp, what)
        _drain(resp)
        loc = resp.headers.get("location")
        if not loc:
            raise ProtocolError(f"{what}: the registry gave no upload location")
        return _resolve(resp, loc, what)

    def _put_monolithic(self, ep: _Endpoint, location: str, scope: tuple[str, ...], what: str,
                        digest: str, algo: str, hexd: str, size: int, source: BinaryIO,
                        progress: ProgressCallback | None) -> None:
        hasher = hashlib.new(algo)

        def body() -> Iterator[bytes]:
            sent = 0
            while sent < size:
                data = source.read(min(CHUNK, size - sent))
                if not data:
                    raise RegistryError(f"{what}: the source ended after {sent} of {size} bytes")
                hasher.update(data)
                sent += len(data)
                if sent == size:  # before the last bytes go: a bad blob is never committed
                    _check_source(what, hasher, hexd, algo)
                yield data
                if progress:
                    progress(Progress(digest, sent, size))
            if size == 0:
                _check_source(what, hasher, hexd, algo)

        url = _with_params(location, {"digest": digest})
        resp = self._request(ep, "PUT", url, scope=scope, what=what, content=body(),
                             headers={"Content-Type": "application/octet-stream",
                                      "Content-Length": str(size)})
        self._committed(resp, what, digest)

    def _put_chunked(self, ep: _Endpoint, location: str, scope: tuple[str, ...], what: str,
                     digest: str, algo: str, hexd: str, size: int, source: BinaryIO,
                     chunk_size: int, progress: ProgressCallback | None) -> None:
        hasher = hashlib.new(algo)
        sent = 0
        while sent < size:
            data = _read_exactly(source, min(chunk_size, size - sent))
            if not data:
                raise RegistryError(f"{what}: the source ended after {sent} of {size} bytes")
            hasher.update(data)
            resp = self._request(ep, "PATCH", location, scope=scope, what=what, content=data,
                                 retry=False, headers={
                                     "Content-Type": "application/octet-stream",
                                     "Content-Range": f"{sent}-{sent + len(data) - 1}"})
            location = self._location(resp, what, expect=202)
            sent += len(data)
            if progress:
                progress(Progress(digest, sent, size))
        _check_source(what, hasher, hexd, algo)
        resp = self._request(ep, "PUT", _with_params(location, {"digest": digest}),
                             scope=scope, what=what, content=b"", retry=False,
                             headers={"Content-Type": "application/octet-stream"})
        self._committed(resp, what, digest)

    def _committed(self, resp: httpx.Response, what: str, digest: str) -> None:
        if resp.status_code not in (201, 204):
            raise self._fail(resp, what)
        _drain(resp)
        said = resp.headers.get("docker-content-digest")
        if said and said != digest:
            raise DigestMismatchError(f"{what}: the registry stored {said}")

    def _cancel_upload(self, ep: _Endpoint, location: str, scope: tuple[str, ...],
                       what: str) -> None:
        """Best effort: free the registry's half-done upload."""
        try:
            self._request(ep, "DELETE", location, scope=scope, what=what, retry=False).close()
        except RegistryError:
            pass


# ---------------------------------------------------------------------------------------
# helpers

def _media_type(content_type: str | None, data: bytes) -> str:
    """The manifest's media type: the Content-Type, unless it is a generic one (some
    registries send application/json), then the document's own mediaType."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in MANIFEST_MEDIA_TYPES:
        return ctype
    try:
        doc = json.loads(data)
        mt = doc.get("mediaType") if isinstance(doc, dict) else None
        if isinstance(mt, str) and mt:
            return mt
        if isinstance(doc, dict) and doc.get("schemaVersion") == 1:
            return DOCKER_SCHEMA1_SIGNED if "signatures" in doc else DOCKER_SCHEMA1
    except ValueError:
        pass
    return ctype


def _read_limited(resp: httpx.Response, limit: int, truncate: bool = False) -> bytes:
    buf = bytearray()
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > limit:
            if truncate:
                return bytes(buf[:limit])
            raise ProtocolError(f"{resp.url}: response larger than {limit} bytes")
    return bytes(buf)


def _drain(resp: httpx.Response, limit: int = MAX_ERROR_BODY) -> None:
    """Read a small body to its end before closing: only then can the connection be
    reused (closing midway drops it)."""
    try:
        for _ in resp.iter_raw():
            if resp.num_bytes_downloaded > limit:
                break
    except (httpx.HTTPError, httpx.StreamError):
        pass
    finally:
        resp.close()


def _resolve(resp: httpx.Response, location: str, what: str) -> str:
    """A Location or Link target, absolute or relative to the response's URL."""
    try:
        url = httpx.URL(urljoin(str(resp.url), location))
    except (ValueError, httpx.InvalidURL) as e:
        raise ProtocolError(f"{what}: bad URL from the registry: {location!r}") from e
    if url.scheme not in ("http", "https") or not url.host:
        raise ProtocolError(f"{what}: bad URL from the registry: {location!r}")
    return str(url)


def _with_params(url: str, params: dict[str, str]) -> str:
    """url with params added to its query (upload URLs carry state in theirs)."""
    return str(httpx.URL(url).copy_merge_params(params))


def _tell(stream: Any) -> int | None:
    try:
        return stream.tell() if stream.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = stream.read(n - len(buf))
        if not data:
            break
        buf += data
    return bytes(buf)


def _check_source(what: str, hasher: Any, hexd: str, algo: str) -> None:
    if hasher.hexdigest() != hexd:
        raise DigestMismatchError(f"{what}: the source has digest {algo}:{hasher.hexdigest()}")


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0] if text else type(e).__name__
