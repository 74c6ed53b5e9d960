"""Registry credentials and authentication.

Credentials live in a docker-style config.json (`$DOCKER_CONFIG/config.json`, else
`~/.docker/config.json`), so `bosun login` and `docker login` share them:

    {"auths": {"registry.example:5000": {"auth": base64("user:password")},
               "https://index.docker.io/v1/": {"auth": "...", "identitytoken": "..."}},
     "credsStore": "pass", "credHelpers": {"gcr.io": "gcloud"}}

A credential helper named by `credHelpers` (for that host) or `credsStore` is used as
docker does (`docker-credential-<name> get|store|erase`).

Authentication follows the registry's challenge (`WWW-Authenticate` on a 401): Basic sends
the credentials with every request; Bearer trades them at the challenge's realm for a token
scoped to the repositories an operation touches (Docker's token protocol), cached per
(host, scope) until shortly before it expires. Without credentials the same flow gives an
anonymous token.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from bosun.registry.errors import (
    CredentialsError, ProtocolError, UnauthorizedError, error_from_response,
)

log = logging.getLogger("bosun.registry")

# The key docker has always used for Docker Hub in config.json.
DOCKER_IO_KEY = "https://index.docker.io/v1/"
DOCKER_IO_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_TOKEN_LIFETIME = 60  # seconds, when the token server does not say (Docker's spec)


# ---------------------------------------------------------------------------------------
# Credentials in config.json

@dataclass(frozen=True)
class Credentials:
    """What to authenticate with. identity_token is an OAuth2 refresh token some registries
    hand out at login instead of keeping the password."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def __bool__(self) -> bool:
        return bool(self.username or self.password or self.identity_token)


def config_path() -> Path:
    """$DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def config_key(host: str) -> str:
    """The `auths` key docker uses for a registry host."""
    return DOCKER_IO_KEY if _hostname(host) in DOCKER_IO_HOSTS else _hostname(host)


def _hostname(key: str) -> str:
    """A config key reduced to host[:port], as docker compares them: scheme and path go."""
    key = key.strip()
    for prefix in ("https://", "http://"):
        if key.lower().startswith(prefix):
            key = key[len(prefix):]
            break
    return key.split("/", 1)[0].lower()


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise CredentialsError(f"cannot read {path}: {e.strerror or e}") from e
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise CredentialsError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise CredentialsError(f"{path} is not a JSON object")
    return doc


def _write_config(path: Path, doc: dict[str, Any]) -> None:
    """Replace config.json atomically: a reader (or a crash) sees the old file or the new
    one, never half of one; the file is 0600 from its creation, it holds secrets."""
    if path.is_symlink():  # dotfile managers link it: replace the target, keep the link
        path = path.resolve()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)  # make the rename itself durable
    finally:
        os.close(dfd)


def _matching_keys(auths: dict[str, Any], host: str) -> list[str]:
    """Keys of `auths` that name this host: the exact key first, then any spelling of it
    (with a scheme or a path, as older docker versions wrote them)."""
    key = config_key(host)
    wanted = DOCKER_IO_HOSTS if key == DOCKER_IO_KEY else {_hostname(key)}
    keys = [key] if key in auths else []
    keys += [k for k in auths if k != key and _hostname(k) in wanted]
    return keys


def _helper_for(doc: dict[str, Any], host: str) -> str | None:
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        for k, v in helpers.items():
            if _hostname(k) == _hostname(config_key(host)) and v:
                return str(v)
    store = doc.get("credsStore")
    return str(store) if store else None


def _run_helper(name: str, verb: str, data: str) -> str:
    exe = shutil.which(f"docker-credential-{name}")
    if exe is None:
        raise CredentialsError(f"credential helper docker-credential-{name} is not installed")
    try:
        p = subprocess.run([exe, verb], check=False, input=data, capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise CredentialsError(f"docker-credential-{name} {verb}: {e}") from e
    if p.returncode != 0:
        out = (p.stdout.strip() or p.stderr.strip())
        if verb in ("get", "erase") and "credentials not found" in out.lower():
            return ""
        out = out or f"exit status {p.returncode}"
        raise CredentialsError(f"docker-credential-{name} {verb}: {out}")
    return p.stdout


def load_credentials(host: str, path: Path | str | None = None) -> Credentials | None:
    """The stored credentials for a registry host, or None (anonymous). As docker does,
    a configured credential helper is the only source for its hosts."""
    path = Path(path) if path else config_path()
    doc = _read_config(path)
    helper = _helper_for(doc, host)
    if helper:
        out = _run_helper(helper, "get", config_key(host))
        if not out.strip():
            return None
        try:
            d = json.loads(out)
            user, secret = str(d.get("Username") or ""), str(d.get("Secret") or "")
        except (ValueError, AttributeError) as e:
            raise CredentialsError(f"docker-credential-{helper} get: bad output") from e
        if user == "<token>":  # docker's convention for an identity token
            return Credentials(identity_token=secret)
        return Credentials(user, secret) or None
    auths = doc.get("auths") if isinstance(doc.get("auths"), dict) else {}
    for key in _matching_keys(auths, host):
        creds = _decode_entry(auths[key], path, key)
        if creds:
            return creds
    return None


def _decode_entry(entry: Any, path: Path, key: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    user, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    if entry.get("auth"):
        try:
            raw = base64.b64decode(str(entry["auth"]), validate=False).decode("utf-8")
            user, sep, password = raw.partition(":")
        except (ValueError, UnicodeDecodeError) as e:
            raise CredentialsError(f"{path}: bad 'auth' for {key}") from e
        if not sep:
            raise CredentialsError(f"{path}: bad 'auth' for {key} (no ':')")
    creds = Credentials(user, password, str(entry.get("identitytoken") or ""))
    return creds or None


def store_credentials(host: str, username: str, password: str, *,
                      identity_token: str = "", path: Path | str | None = None) -> None:
    """Remember credentials for host (replacing any other spelling of its key)."""
    path = Path(path) if path else config_path()
    doc = _read_config(path)
    auths = doc.get("auths") if isinstance(doc.get("auths"), dict) else {}
    helper = _helper_for(doc, host)
    if helper:
        secret = identity_token or password
        user = "<token>" if identity_token else username
        _run_helper(helper, "store", json.dumps(
            {"ServerURL": config_key(host), "Username": user, "Secret": secret}))
        entry: dict[str, Any] = {}  # docker keeps an empty entry so `auths` lists the host
    else:
        entry = {"auth": base64.b64encode(
            f"{username}:{'' if identity_token else password}".encode()).decode()}
        if identity_token:
            entry["identitytoken"] = identity_token
    for k in _matching_keys(auths, host):
        old = auths.pop(k)
        if isinstance(old, dict):  # keep fields we do not manage (docker's "email", …)
            entry = {**{f: v for f, v in old.items()
                        if f not in ("auth", "username", "password", "identitytoken")}, **entry}
    auths[config_key(host)] = entry
    doc["auths"] = auths
    _write_config(path, doc)


def erase_credentials(host: str, path: Path | str | None = None) -> bool:
    """Forget host's credentials; True if there were any."""
    path = Path(path) if path else config_path()
    doc = _read_config(path)
    auths = doc.get("auths") if isinstance(doc.get("auths"), dict) else {}
    keys = _matching_keys(auths, host)
    helper = _helper_for(doc, host)
    if helper:
        _run_helper(helper, "erase", config_key(host))
    if not keys:
        return bool(helper)
    for k in keys:
        del auths[k]
    _write_config(path, doc)
    return True


# ---------------------------------------------------------------------------------------
# WWW-Authenticate challenges (RFC 7235)

@dataclass(frozen=True)
class Challenge:
    scheme: str                       # lower case: "bearer", "basic", …
    params: dict[str, str] = field(default_factory=dict)  # names lower case
    token68: str | None = None

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")


_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def parse_challenges(headers: str | Iterable[str]) -> list[Challenge]:
    """All challenges in one or more WWW-Authenticate values. Several challenges may share
    a header and parameters are comma-separated too: a `name=` after a comma continues the
    current challenge, a bare token starts a new one. Values may be quoted (with backslash
    escapes) or not; junk is skipped rather than failing the whole header."""
    if isinstance(headers, str):
        headers = [headers]
    out: list[Challenge] = []
    for h in headers:
        out.extend(_parse_header(h))
    return out


def _skip(s: str, i: int, chars: str) -> int:
    while i < len(s) and s[i] in chars:
        i += 1
    return i


def _parse_header(s: str) -> list[Challenge]:
    found: list[Challenge] = []
    params: dict[str, str] | None = None
    i, n = 0, len(s)
    while i < n:
        i = _skip(s, i, " \t,")
        m = _TOKEN_RE.match(s, i)
        if m is None:
            i += 1
            continue
        name = m.group()
        j = _skip(s, m.end(), " \t")
        if params is not None and j < n and s[j] == "=":
            value, i = _param_value(s, _skip(s, j + 1, " \t"))
            params[name.lower()] = value
            continue
        # A new challenge: its scheme, then parameters or a token68.
        params = {}
        token68 = None
        t = _TOKEN68_RE.match(s, j)
        if t is not None:
            after = _skip(s, t.end(), " \t")
            if (after >= n or s[after] == ",") and "=" not in t.group().rstrip("="):
                token68, j = t.group(), after
        found.append(Challenge(name.lower(), params, token68))
        i = j
    return found


def _param_value(s: str, i: int) -> tuple[str, int]:
    if i < len(s) and s[i] == '"':
        out, i = [], i + 1
        while i < len(s) and s[i] != '"':
            if s[i] == "\\" and i + 1 < len(s):
                i += 1
            out.append(s[i])
            i += 1
        return "".join(out), i + 1
    # Unquoted: up to the next comma or blank (lenient: realms are often bare URLs).
    j = i
    while j < len(s) and s[j] not in ", \t":
        j += 1
    return s[i:j], j


# ---------------------------------------------------------------------------------------
# Tokens

class TokenCache:
    """Bearer tokens per (host, scope), dropped a little before they expire so a request
    never starts with a token about to lapse. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._tokens: dict[tuple[str, tuple[str, ...]], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, host: str, scope: tuple[str, ...]) -> str | None:
        with self._lock:
            hit = self._tokens.get((host, scope))
            if hit is None:
                return None
            if self._clock() >= hit[1]:
                del self._tokens[(host, scope)]
                return None
            return hit[0]

    def put(self, host: str, scope: tuple[str, ...], token: str, expires_in: float) -> None:
        margin = min(5.0, expires_in / 10)  # time for the request to reach the registry
        with self._lock:
            self._tokens[(host, scope)] = (token, self._clock() + expires_in - margin)

    def invalidate(self, host: str, scope: tuple[str, ...]) -> None:
        with self._lock:
            self._tokens.pop((host, scope), None)


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (a host without its port)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Authorization for one registry endpoint. It learns the scheme from the registry's
    first 401 and from then on authorizes requests up front (no 401 round trip per scope).

    client_for(url) returns the httpx client to reach a URL with (the token realm may be
    another host); allow_http(host) says whether credentials may go to host in clear."""

    def __init__(self, host: str, credentials: Credentials | None,
                 client_for: Callable[[str], httpx.Client],
                 allow_http: Callable[[str], bool] = is_loopback,
                 cache: TokenCache | None = None, client_id: str = "bosun"):
        self.host = host
        self.credentials = credentials or None
        self._client_for = client_for
        self._allow_http = allow_http
        self.cache = cache or TokenCache()
        self._client_id = client_id
        self._challenge: Challenge | None = None
        self._lock = threading.Lock()

    @property
    def challenge(self) -> Challenge | None:
        return self._challenge

    def header(self, scope: tuple[str, ...]) -> str | None:
        """The Authorization value for a request needing scope, or None (anonymous, or the
        registry has not challenged us yet)."""
        ch = self._challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            c = self.credentials
            return basic_header(c.username, c.password) if c and c.username else None
        if ch.scheme == "bearer":
            token = self.cache.get(self.host, scope)
            if token is None:
                token = self._fetch_token(ch, scope)
            return f"Bearer {token}"
        return None

    def on_unauthorized(self, response: httpx.Response, scope: tuple[str, ...],
                        sent: str | None) -> bool:
        """Digest a 401: remember its challenge, drop a rejected cached token. True if a
        retry could succeed (something new to send), False if it is hopeless."""
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        usable = [c for c in challenges if c.scheme == "bearer" and c.realm] or \
                 [c for c in challenges if c.scheme == "basic"]
        if not usable:
            return False
        ch = usable[0]
        with self._lock:
            self._challenge = ch
        if ch.scheme == "basic":
            c = self.credentials
            return bool(c and c.username) and basic_header(c.username, c.password) != sent
        # Drop the token the registry refused (expired, revoked, too narrow); the caller
        # retries once with a new one and reports the second refusal.
        if sent and sent.startswith("Bearer "):
            self.cache.invalidate(self.host, scope)
        return True

    def _fetch_token(self, ch: Challenge, scope: tuple[str, ...]) -> str:
        realm = ch.realm or ""
        url = httpx.URL(realm)
        if url.scheme not in ("https", "http") or not url.host:
            raise ProtocolError(f"{self.host}: bad token realm {realm!r}")
        if url.scheme == "http" and not self._allow_http(url.host):
            raise ProtocolError(f"{self.host}: refusing to send credentials to {realm} "
                                f"over plain HTTP")
        # No scope from us (ping): the challenge's own scope, if any.
        scopes = list(scope) or ([ch.scope] if ch.scope else [])
        c = self.credentials
        client = self._client_for(realm)
        if c and c.identity_token:
            resp = self._oauth_token(client, url, ch, scopes, c.identity_token)
        else:
            params: list[tuple[str, str]] = []
            if ch.service:
                params.append(("service", ch.service))
            params += [("scope", s) for s in scopes]
            headers = {}
            if c and c.username:
                params.append(("account", c.username))
                headers["Authorization"] = basic_header(c.username, c.password)
            resp = client.get(url, params=params, headers=headers)
        who = f"as {c.username!r}" if c and c.username else "anonymously"
        if resp.status_code in (401, 403):
            err = error_from_response(f"{self.host}: token server {url.host} refused "
                                      f"access {who}", resp.status_code, resp.reason_phrase,
                                      resp.content)
            raise UnauthorizedError(str(err), status=resp.status_code, errors=err.errors,
                                    code="UNAUTHORIZED")
        if resp.status_code != 200:
            raise error_from_response(f"{self.host}: token server {url.host}",
                                      resp.status_code, resp.reason_phrase, resp.content)
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
            expires_in = float(doc.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError) as e:
            raise ProtocolError(f"{self.host}: token server {url.host} sent a bad answer") from e
        if not token or not isinstance(token, str):
            raise ProtocolError(f"{self.host}: token server {url.host} sent no token")
        self.cache.put(self.host, scope, token, max(1.0, expires_in))
        log.debug("token for %s %s from %s (%s s)", self.host, scope, url.host, expires_in)
        return token

    def _oauth_token(self, client: httpx.Client, url: httpx.URL, ch: Challenge,
                     scopes: list[str], refresh_token: str) -> httpx.Response:
        """Trade an identity token (OAuth2 refresh token) for an access token."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": self._client_id, "scope": " ".join(scopes)}
        if ch.service:
            form["service"] = ch.service
        return client.post(url, data=form)
