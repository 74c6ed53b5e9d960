"""Registry credentials: login, logout, and the X-Registry-Auth header of pull and push.

Credentials live where docker's CLI keeps them — $DOCKER_CONFIG/config.json, else
~/.docker/config.json (`--config DIR` overrides both) — in its format ({"auths": {server:
{"auth": base64(user:password)}}}), so `docker login` and `bosun login` share them."""

from __future__ import annotations

import os
import sys

from bosun.cli import StatusError
from bosun.cli.flags import BOOL, STR, Flag, command

COMMANDS: dict = {}
HUB = "https://index.docker.io/v1/"  # the key docker uses for Docker Hub


def config_path(config_dir: str | None = None) -> str:
    d = config_dir or os.environ.get("DOCKER_CONFIG") or os.path.join(
        os.path.expanduser("~"), ".docker")
    return os.path.join(d, "config.json")


def load_config(path: str) -> dict:
    from bosun import quickjson

    try:
        with open(path, "rb") as f:
            doc = quickjson.loads(f.read() or b"{}")
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise StatusError(1, f"loading config file {path}: {e}") from None
    return doc if isinstance(doc, dict) else {}


def save_config(path: str, doc: dict) -> None:
    """Atomically, mode 0600 (it holds passwords), keeping every other key docker wrote."""
    import json

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(doc, indent="\t") + "\n")
    os.replace(tmp, path)


def server_key(server: str) -> str:
    """docker's key for a registry: the hub's URL, else the bare host[:port]."""
    if not server or server in ("docker.io", "index.docker.io", "registry-1.docker.io") \
            or server.rstrip("/") in (HUB.rstrip("/"), "https://index.docker.io"):
        return HUB
    for scheme in ("https://", "http://"):
        server = server.removeprefix(scheme)
    return server.split("/", 1)[0]


def registry_of(ref: str) -> str:
    """The registry a reference names (its first component if that looks like a host)."""
    first, slash, _ = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return server_key(first)
    return HUB


def encode_auth(doc: dict) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


def stored(cli, server: str) -> dict | None:
    """{username, password | identitytoken, serveraddress} stored for server, if any."""
    import base64

    entry = (load_config(config_path(getattr(cli, "config_dir", None))).get("auths") or {}
             ).get(server)
    if not entry:
        return None
    user, password = entry.get("username", ""), entry.get("password", "")
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except ValueError:
            return None
    doc = {"username": user, "password": password, "serveraddress": server}
    if entry.get("identitytoken"):
        doc = {"username": user, "identitytoken": entry["identitytoken"],
               "serveraddress": server}
    return doc


def auth_header(cli, ref: str) -> dict:
    """The X-Registry-Auth header for ref's registry (none if we hold no credentials)."""
    doc = stored(cli, registry_of(ref))
    return {"X-Registry-Auth": encode_auth(doc)} if doc else {}


def read_secret(prompt: str) -> str:
    import getpass

    return getpass.getpass(prompt)


@command(COMMANDS, "login", "[OPTIONS] [SERVER]", "Authenticate to a registry.\nDefaults to "
         "Docker Hub if no server is specified.", [
             Flag("password", "p", STR, "Password or Personal Access Token (PAT)"),
             Flag("password-stdin", None, BOOL, "Take the Password or Personal Access Token "
                  "(PAT) from stdin"),
             Flag("username", "u", STR, "Username")], nargs=(0, 1))
def login(cli, opts, args) -> int:
    user, password = opts["username"], opts["password"]
    if password is not None:
        cli.err("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
        if opts["password-stdin"]:
            raise StatusError(1, "--password and --password-stdin are mutually exclusive")
    if opts["password-stdin"]:
        if not user:
            raise StatusError(1, "Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    server = server_key(args[0] if args else "")
    address = args[0] if args else HUB
    if not user or password is None:
        if not os.isatty(0):
            raise StatusError(1, "Error: Cannot perform an interactive login from a non TTY "
                              "device")
        if not user:
            cli.out("Username: ")
            sys.stdout.flush()
            user = sys.stdin.readline().strip()
            if not user:
                raise StatusError(1, "Error: Non-null Username Required")
        password = read_secret("Password: ")
        if not password:
            raise StatusError(1, "Error: Password Required")
    r = cli.client.call("POST", "/auth", body={"username": user, "password": password,
                                               "serveraddress": address}) or {}
    path = config_path(cli.config_dir)
    doc = load_config(path)
    import base64

    entry = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    if r.get("IdentityToken"):  # a token replaces the password, as docker stores it
        entry = {"auth": base64.b64encode(f"{user}:".encode()).decode(),
                 "identitytoken": r["IdentityToken"]}
    doc.setdefault("auths", {})[server] = entry
    save_config(path, doc)
    cli.err(f"WARNING! Your credentials are stored unencrypted in '{path}'.\n"
            "Configure a credential helper to remove this warning. See\n"
            "https://docs.docker.com/go/credential-store/\n\n")
    cli.out(f"{r.get('Status') or 'Login Succeeded'}\n")
    return 0


@command(COMMANDS, "logout", "[SERVER]", "Log out from a registry.\nIf no server is specified, "
         "the default is defined by the daemon.", nargs=(0, 1))
def logout(cli, opts, args) -> int:
    server = server_key(args[0] if args else "")
    shown = args[0] if args else HUB
    path = config_path(cli.config_dir)
    doc = load_config(path)
    auths = doc.get("auths") or {}
    if server not in auths:
        cli.out(f"Not logged in to {shown}\n")
        return 0
    cli.out(f"Removing login credentials for {shown}\n")
    del auths[server]
    save_config(path, doc)
    return 0


@command(COMMANDS, "push", "[OPTIONS] NAME[:TAG]", "Upload an image to a registry", [
    Flag("all-tags", "a", BOOL, "Push all tags of an image to the repository"),
    Flag("platform", None, STR, "Push a platform-specific manifest as a single-platform image "
         "to the registry."),
    Flag("quiet", "q", BOOL, "Suppress verbose output")], nargs=(1, 1))
def push(cli, opts, args) -> int:
    from bosun.cli.http import path_of
    from bosun.cli.images import PullError, full_name, show_progress, split_ref

    ref = args[0]
    repo, tag, digest = split_ref(ref)
    if opts["all-tags"] and (tag or digest):
        raise StatusError(1, "tag can't be used with --all-tags/-a")
    if not tag and not opts["all-tags"]:
        tag = "latest"
        if not opts["quiet"]:
            cli.out("Using default tag: latest\n")
    r = cli.client.stream("POST", f"/images/{path_of(repo)}/push",
                          {"tag": tag or None, "platform": opts["platform"]},
                          headers=auth_header(cli, ref))
    try:
        show_progress(r.json_stream(), opts["quiet"], sys.stdout)
    except PullError as e:
        raise StatusError(1, str(e)) from None
    if opts["quiet"]:
        cli.out(full_name(f"{repo}:{tag}" if tag else repo) + "\n")
    return 0
