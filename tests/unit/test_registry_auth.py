"""bosun.registry.auth: WWW-Authenticate parsing, config.json credentials (docker's format,
atomic 0600 writes, credential helpers), the token cache and the token flow (against
httpx's MockTransport: no network)."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import httpx
import pytest

from bosun.registry import auth
from bosun.registry.auth import (
    DOCKER_IO_KEY, Authenticator, Challenge, Credentials, TokenCache, config_path,
    erase_credentials, load_credentials, parse_challenges, store_credentials,
)
from bosun.registry.errors import CredentialsError, ProtocolError, UnauthorizedError

# ---------------------------------------------------------------------------------------
# Challenges


def test_bearer_challenge():
    [c] = parse_challenges('Bearer realm="https://auth.docker.io/token",'
                           'service="registry.docker.io",'
                           'scope="repository:library/busybox:pull,push"')
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.docker.io/token"
    assert c.service == "registry.docker.io"
    assert c.scope == "repository:library/busybox:pull,push"  # the comma is quoted


def test_basic_challenge_and_case():
    assert parse_challenges('BASIC Realm="Registry Realm"') == \
        [Challenge("basic", {"realm": "Registry Realm"})]


@pytest.mark.parametrize("header", [
    'Bearer realm = "https://a/token" , service="svc"',
    'Bearer realm=https://a/token,service=svc',
    'Bearer   realm="https://a/token",,service="svc",',
    'Bearer realm="https://a/token", service=svc, error="insufficient_scope"',
])
def test_spacing_quoting_and_stray_commas(header):
    [c] = parse_challenges(header)
    assert (c.scheme, c.realm, c.service) == ("bearer", "https://a/token", "svc")


def test_several_challenges_in_one_header_and_across_headers():
    cs = parse_challenges('Basic realm="a, b", Bearer realm="https://t/x",service="s"')
    assert [(c.scheme, c.realm) for c in cs] == [("basic", "a, b"), ("bearer", "https://t/x")]
    assert cs[1].service == "s"
    cs = parse_challenges(['Negotiate abc+/==', 'Bearer realm="r"'])
    assert cs[0] == Challenge("negotiate", {}, "abc+/==")
    assert cs[1].realm == "r"


def test_escapes_and_junk():
    [c] = parse_challenges(r'Bearer realm="a\"b\\c"')
    assert c.realm == 'a"b\\c'
    # Unterminated quotes and junk do not raise.
    assert parse_challenges('Bearer realm="unterminated')[0].realm == "unterminated"
    assert parse_challenges("") == []
    assert [c.scheme for c in parse_challenges('=== ; Bearer realm="x" ;;')] == ["bearer"]


# ---------------------------------------------------------------------------------------
# config.json

def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_store_load_erase(tmp_path):
    cfg = tmp_path / "d" / "config.json"
    store_credentials("reg.example:5000", "alice", "p:ss word", path=cfg)
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.parent.stat().st_mode) == 0o700
    doc = json.loads(cfg.read_text())
    assert doc == {"auths": {"reg.example:5000": {"auth": _b64("alice:p:ss word")}}}
    assert load_credentials("reg.example:5000", path=cfg) == Credentials("alice", "p:ss word")
    assert load_credentials("other.example", path=cfg) is None

    assert erase_credentials("reg.example:5000", path=cfg) is True
    assert erase_credentials("reg.example:5000", path=cfg) is False
    assert load_credentials("reg.example:5000", path=cfg) is None
    assert [p.name for p in cfg.parent.iterdir()] == ["config.json"]  # no temp files left


@pytest.mark.parametrize("host", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_key(tmp_path, host):
    cfg = tmp_path / "config.json"
    store_credentials(host, "bob", "pw", path=cfg)
    assert list(json.loads(cfg.read_text())["auths"]) == [DOCKER_IO_KEY]
    assert load_credentials("docker.io", path=cfg) == Credentials("bob", "pw")
    # Other tools' spellings of Docker Hub are read, and replaced on the next store.
    cfg.write_text(json.dumps({"auths": {"docker.io": {"auth": _b64("x:y")}}}))
    assert load_credentials(host, path=cfg) == Credentials("x", "y")
    store_credentials(host, "bob", "pw", path=cfg)
    assert list(json.loads(cfg.read_text())["auths"]) == [DOCKER_IO_KEY]


def test_reads_what_docker_writes(tmp_path):
    """Keys with a scheme or path, split username/password fields, identity tokens, and
    everything else in the file left alone when we write."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "auths": {
            "https://reg.example:5000/v2/": {"auth": _b64("alice:pw"), "email": "a@x"},
            "http://old.example": {"username": "u", "password": "p"},
            DOCKER_IO_KEY: {"auth": _b64("carol:"), "identitytoken": "refresh-me"},
        },
        "HttpHeaders": {"User-Agent": "docker"},
        "psFormat": "table {{.ID}}",
    }))
    assert load_credentials("reg.example:5000", path=cfg) == Credentials("alice", "pw")
    assert load_credentials("old.example", path=cfg) == Credentials("u", "p")
    assert load_credentials("docker.io", path=cfg) == \
        Credentials("carol", "", identity_token="refresh-me")

    store_credentials("reg.example:5000", "alice", "new", path=cfg)
    doc = json.loads(cfg.read_text())
    # The old spelling of the key is replaced, not duplicated; its email is kept.
    assert doc["auths"]["reg.example:5000"] == {"email": "a@x", "auth": _b64("alice:new")}
    assert "https://reg.example:5000/v2/" not in doc["auths"]
    assert doc["HttpHeaders"] == {"User-Agent": "docker"} and doc["psFormat"] == "table {{.ID}}"

    store_credentials("tok.example", "dave", "ignored", identity_token="idt", path=cfg)
    assert json.loads(cfg.read_text())["auths"]["tok.example"] == \
        {"auth": _b64("dave:"), "identitytoken": "idt"}
    assert load_credentials("tok.example", path=cfg) == Credentials("dave", "", "idt")


def test_default_path_and_docker_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    assert config_path() == tmp_path / "home" / ".docker" / "config.json"
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    assert config_path() == tmp_path / "dc" / "config.json"
    store_credentials("r.example", "u", "p")
    assert (tmp_path / "dc" / "config.json").exists()
    assert load_credentials("r.example") == Credentials("u", "p")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    cfg = tmp_path / "config.json"
    store_credentials("a.example", "u", "p", path=cfg)
    before = cfg.read_bytes()

    def boom(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(auth.json, "dump", boom)
    with pytest.raises(OSError, match="disk full"):
        store_credentials("b.example", "u", "p", path=cfg)
    assert cfg.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_symlinked_config_is_updated_through_the_link(tmp_path):
    real = tmp_path / "dotfiles" / "docker.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "config.json"
    link.symlink_to(real)
    store_credentials("r.example", "u", "p", path=link)
    assert link.is_symlink()
    assert load_credentials("r.example", path=real) == Credentials("u", "p")


def test_bad_config_is_a_clear_error(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text("{not json")
    with pytest.raises(CredentialsError, match="not valid JSON"):
        load_credentials("r.example", path=cfg)
    cfg.write_text(json.dumps({"auths": {"r.example": {"auth": _b64("nocolon")}}}))
    with pytest.raises(CredentialsError, match="bad 'auth'"):
        load_credentials("r.example", path=cfg)
    cfg.write_text("")
    assert load_credentials("r.example", path=cfg) is None


def test_credential_helper(tmp_path, monkeypatch):
    """credsStore / credHelpers: docker-credential-<name> get|store|erase."""
    store = tmp_path / "helper-store.json"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-fake"
    helper.write_text(f"""#!{sys.executable}
import json, sys
path = {str(store)!r}
try:
    db = json.load(open(path))
except FileNotFoundError:
    db = {{}}
verb, data = sys.argv[1], sys.stdin.read()
if verb == "store":
    d = json.loads(data)
    db[d["ServerURL"]] = [d["Username"], d["Secret"]]
elif verb == "get":
    if data not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": data, "Username": db[data][0], "Secret": db[data][1]}}))
elif verb == "erase":
    db.pop(data, None)
json.dump(db, open(path, "w"))
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"credsStore": "fake"}))

    store_credentials("docker.io", "erin", "secret", path=cfg)
    assert json.loads(store.read_text()) == {DOCKER_IO_KEY: ["erin", "secret"]}
    assert "secret" not in cfg.read_text()
    assert load_credentials("docker.io", path=cfg) == Credentials("erin", "secret")
    store_credentials("r.example", "x", "", identity_token="idt", path=cfg)
    assert load_credentials("r.example", path=cfg) == Credentials(identity_token="idt")
    assert erase_credentials("docker.io", path=cfg)
    assert load_credentials("docker.io", path=cfg) is None

    cfg.write_text(json.dumps({"credHelpers": {"r.example": "missing"}}))
    with pytest.raises(CredentialsError, match="docker-credential-missing is not installed"):
        load_credentials("r.example", path=cfg)


def test_credentials_repr_hides_secrets():
    r = repr(Credentials("alice", "hunter2", "idtoken"))
    assert "alice" in r and "hunter2" not in r and "idtoken" not in r
    assert not Credentials()


# ---------------------------------------------------------------------------------------
# Token cache

def test_token_cache_expiry():
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    cache.put("h", ("repository:a:pull",), "t1", 60)
    cache.put("h", ("repository:b:pull",), "t2", 300)
    assert cache.get("h", ("repository:a:pull",)) == "t1"
    assert cache.get("other", ("repository:a:pull",)) is None
    now[0] = 54.9
    assert cache.get("h", ("repository:a:pull",)) == "t1"
    now[0] = 55.0  # 60 s less a 5 s margin
    assert cache.get("h", ("repository:a:pull",)) is None
    assert cache.get("h", ("repository:b:pull",)) == "t2"
    cache.invalidate("h", ("repository:b:pull",))
    assert cache.get("h", ("repository:b:pull",)) is None
    cache.put("h", (), "short", 2)  # short lifetimes keep most of their life
    now[0] += 1.7
    assert cache.get("h", ()) == "short"


# ---------------------------------------------------------------------------------------
# Token flow

class TokenRealm:
    """A token endpoint behind MockTransport."""

    def __init__(self, answer: dict | None = None, status: int = 200):
        self.answer = answer if answer is not None else {"token": "tok", "expires_in": 300}
        self.status = status
        self.requests: list[httpx.Request] = []
        self.client = httpx.Client(transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.answer)


def _unauthorized(challenge: str) -> httpx.Response:
    return httpx.Response(401, headers={"WWW-Authenticate": challenge},
                          request=httpx.Request("GET", "https://reg.example/v2/"))


BEARER = 'Bearer realm="https://auth.example/token",service="reg.example"'


def test_bearer_flow_with_credentials():
    realm = TokenRealm()
    a = Authenticator("reg.example", Credentials("alice", "pw"), lambda url: realm.client)
    scope = ("repository:a/b:pull",)
    assert a.header(scope) is None  # nothing known before the first challenge
    assert a.on_unauthorized(_unauthorized(BEARER), scope, None)
    assert a.header(scope) == "Bearer tok"
    assert a.header(scope) == "Bearer tok"
    [req] = realm.requests  # cached
    assert req.url.params.get_list("scope") == ["repository:a/b:pull"]
    assert req.url.params["service"] == "reg.example"
    assert req.url.params["account"] == "alice"
    assert req.headers["Authorization"] == "Basic " + _b64("alice:pw")

    a.header(("repository:a/b:pull", "repository:c:pull"))
    assert realm.requests[-1].url.params.get_list("scope") == \
        ["repository:a/b:pull", "repository:c:pull"]

    # The registry refuses the cached token: it is dropped, a new one fetched.
    assert a.on_unauthorized(_unauthorized(BEARER), scope, "Bearer tok")
    n = len(realm.requests)
    a.header(scope)
    assert len(realm.requests) == n + 1


def test_bearer_anonymous_access_token_and_default_lifetime():
    now = [0.0]
    realm = TokenRealm({"access_token": "anon"})
    a = Authenticator("reg.example", None, lambda url: realm.client,
                      cache=TokenCache(clock=lambda: now[0]))
    a.on_unauthorized(_unauthorized(BEARER), (), None)
    assert a.header(()) == "Bearer anon"
    assert "Authorization" not in realm.requests[0].headers
    assert "account" not in realm.requests[0].url.params
    now[0] = 50
    a.header(())
    assert len(realm.requests) == 1
    now[0] = 60
    a.header(())
    assert len(realm.requests) == 2  # default lifetime 60 s


def test_ping_uses_the_challenge_scope():
    realm = TokenRealm()
    a = Authenticator("reg.example", None, lambda url: realm.client)
    a.on_unauthorized(_unauthorized(BEARER + ',scope="registry:catalog:*"'), (), None)
    a.header(())
    assert realm.requests[0].url.params.get_list("scope") == ["registry:catalog:*"]


def test_identity_token_uses_oauth2_refresh_grant():
    realm = TokenRealm({"access_token": "fromrefresh", "expires_in": 100})
    a = Authenticator("reg.example", Credentials(identity_token="rt"), lambda url: realm.client)
    a.on_unauthorized(_unauthorized(BEARER), ("repository:x:pull",), None)
    assert a.header(("repository:x:pull",)) == "Bearer fromrefresh"
    req = realm.requests[0]
    assert req.method == "POST"
    form = dict(httpx.QueryParams(req.content.decode()))
    assert form == {"grant_type": "refresh_token", "refresh_token": "rt", "client_id": "bosun",
                    "scope": "repository:x:pull", "service": "reg.example"}


def test_token_server_refusal_and_bad_answers():
    realm = TokenRealm({"errors": [{"code": "UNAUTHORIZED", "message": "bad password"}]}, 401)
    a = Authenticator("reg.example", Credentials("alice", "nope"), lambda url: realm.client)
    a.on_unauthorized(_unauthorized(BEARER), (), None)
    with pytest.raises(UnauthorizedError, match="refused access as 'alice'.*bad password"):
        a.header(())

    realm.status, realm.answer = 200, {"nothing": "here"}
    with pytest.raises(ProtocolError, match="no token"):
        a.header(())


def test_credentials_never_go_to_a_plain_http_realm_elsewhere():
    realm = TokenRealm()
    a = Authenticator("reg.example", Credentials("alice", "pw"), lambda url: realm.client)
    a.on_unauthorized(_unauthorized('Bearer realm="http://auth.example/token"'), (), None)
    with pytest.raises(ProtocolError, match="plain HTTP"):
        a.header(())
    assert realm.requests == []
    # Loopback is fine (local registries and test setups).
    a.on_unauthorized(_unauthorized('Bearer realm="http://127.0.0.1:5001/token"'), (), None)
    assert a.header(()) == "Bearer tok"


def test_basic_challenge():
    a = Authenticator("reg.example", Credentials("alice", "pw"), lambda url: None)
    assert a.on_unauthorized(_unauthorized('Basic realm="r"'), (), None)
    sent = a.header(("repository:x:pull",))
    assert sent == "Basic " + _b64("alice:pw")
    # The same credentials refused again: no point retrying.
    assert not a.on_unauthorized(_unauthorized('Basic realm="r"'), (), sent)
    anon = Authenticator("reg.example", None, lambda url: None)
    assert not anon.on_unauthorized(_unauthorized('Basic realm="r"'), (), None)
    assert anon.header(()) is None


def test_no_usable_challenge():
    a = Authenticator("reg.example", Credentials("a", "b"), lambda url: None)
    assert not a.on_unauthorized(httpx.Response(401), (), None)
    assert not a.on_unauthorized(_unauthorized("Negotiate"), (), None)
    assert a.header(()) is None


def test_missing_config_file(tmp_path: Path):
    assert load_credentials("x.example", path=tmp_path / "missing.json") is None
