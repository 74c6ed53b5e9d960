"""`bosun daemon`: hosts the engine and serves the Docker Engine API.

Settings come from /etc/bosun/daemon.json (dockerd's key names) and flags named as dockerd's;
a flag wins over the file. Order matters at start-up: the fork-server is forked first, while
this process has a single thread; only then do the engine's and the server's threads start.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

DEFAULT_CONFIG = "/etc/bosun/daemon.json"
DEFAULT_SOCKET = "unix:///run/bosun/bosun.sock"

log = logging.getLogger("bosun.daemon")

# daemon.json key → (type, default)
_KEYS = {
    "data-root": (str, "/var/lib/bosun"), "exec-root": (str, "/run/bosun"),
    "hosts": (list, []), "registry-mirrors": (list, []), "insecure-registries": (list, []),
    "log-driver": (str, "json-file"), "log-opts": (dict, {}), "default-ulimits": (dict, {}),
    "live-restore": (bool, True), "debug": (bool, False), "pidfile": (str, ""),
    "storage-driver": (str, ""), "tlsverify": (bool, False), "tlscacert": (str, ""),
    "tlscert": (str, ""), "tlskey": (str, ""), "group": (str, "bosun"),
    "bridge": (str, "bosun0"), "bip": (str, ""), "default-address-pools": (list, []),
}


class ConfigError(Exception):
    pass


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bosun daemon", description="Run the bosun daemon.")
    p.add_argument("-H", "--host", action="append", dest="hosts",
                   help="daemon socket(s) to listen on (unix://path, tcp://host:port)")
    p.add_argument("--config-file", default=DEFAULT_CONFIG)
    p.add_argument("--data-root", dest="data_root")
    p.add_argument("--exec-root", dest="exec_root")
    p.add_argument("--registry-mirror", action="append", dest="registry_mirrors")
    p.add_argument("--insecure-registry", action="append", dest="insecure_registries")
    p.add_argument("--live-restore", dest="live_restore", action="store_const", const=True)
    p.add_argument("-D", "--debug", action="store_const", const=True)
    p.add_argument("-p", "--pidfile")
    p.add_argument("--log-driver", dest="log_driver")
    p.add_argument("--log-opt", action="append", dest="log_opts", metavar="KEY=VALUE")
    p.add_argument("--storage-driver", dest="storage_driver")
    p.add_argument("-G", "--group")
    p.add_argument("--tlsverify", action="store_const", const=True)
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("-b", "--bridge", help="the Linux bridge of the default `bridge` network")
    p.add_argument("--bip", help="the default bridge's address and prefix (e.g. 172.30.0.1/16)")
    p.add_argument("--default-address-pool", action="append", dest="address_pools",
                   metavar="base=CIDR,size=N", help="where new networks' subnets come from")
    return p.parse_args(argv)


def load_config(path: str, required: bool) -> dict:
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"unable to configure the bosun daemon with file {path}: "
                              "open: no such file or directory") from None
        return {}
    except (OSError, ValueError) as e:
        raise ConfigError(f"unable to configure the bosun daemon with file {path}: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the configuration must be a JSON object")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{path}: the following directives don't match any configuration "
                          f"option: {', '.join(unknown)}")
    for key, value in raw.items():
        kind = _KEYS[key][0]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: {key} must be a {kind.__name__}")
    return raw


def settings(args: argparse.Namespace) -> dict:
    """daemon.json merged with the flags (flags win)."""
    cfg = {k: v[1] for k, v in _KEYS.items()}
    cfg.update(load_config(args.config_file, args.config_file != DEFAULT_CONFIG))
    flags = {"hosts": args.hosts, "data-root": args.data_root, "exec-root": args.exec_root,
             "registry-mirrors": args.registry_mirrors,
             "insecure-registries": args.insecure_registries,
             "live-restore": args.live_restore, "debug": args.debug, "pidfile": args.pidfile,
             "log-driver": args.log_driver, "storage-driver": args.storage_driver,
             "group": args.group, "tlsverify": args.tlsverify, "tlscacert": args.tlscacert,
             "tlscert": args.tlscert, "tlskey": args.tlskey, "bridge": args.bridge,
             "bip": args.bip}
    if args.log_opts:
        opts = {}
        for item in args.log_opts:
            k, sep, v = item.partition("=")
            if not sep:
                raise ConfigError(f"invalid --log-opt {item!r}: expected key=value")
            opts[k] = v
        flags["log-opts"] = opts
    if args.address_pools:
        pools = []
        for item in args.address_pools:
            fields = dict(f.partition("=")[::2] for f in item.split(","))
            if set(fields) != {"base", "size"}:
                raise ConfigError(f"invalid --default-address-pool {item!r}: expected "
                                  "base=CIDR,size=N")
            pools.append(fields)
        flags["default-address-pools"] = pools
    cfg.update({k: v for k, v in flags.items() if v is not None})
    if cfg["default-address-pools"]:
        from bosun.network.errors import InvalidParameter
        from bosun.network.ipam import parse_pools

        try:
            parse_pools(cfg["default-address-pools"])
        except InvalidParameter as e:
            raise ConfigError(str(e)) from None
    if not cfg["hosts"]:
        cfg["hosts"] = [DEFAULT_SOCKET]
    return cfg


def _listeners(cfg: dict) -> list[dict]:
    out = []
    for host in cfg["hosts"]:
        if host.startswith("unix://"):
            out.append({"unix_path": host[len("unix://"):]})
        elif host.startswith(("tcp://", "https://")):
            addr = host.split("://", 1)[1].rstrip("/")
            h, _, port = addr.rpartition(":")
            if not port.isdigit():
                raise ConfigError(f"invalid host {host!r}: a port is required")
            if not cfg["tlsverify"]:
                raise ConfigError(f"refusing to listen on {host} without --tlsverify: the API "
                                  "gives root on this machine to whoever reaches it")
            out.append({"tcp": (h or "0.0.0.0", int(port))})
        else:
            raise ConfigError(f"invalid host {host!r}: use unix:///path or tcp://host:port")
    return out


def _tls_context(cfg: dict):
    import ssl

    for key in ("tlscacert", "tlscert", "tlskey"):
        if not cfg[key]:
            raise ConfigError(f"--tlsverify needs --{key}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg["tlscert"], cfg["tlskey"])
    ctx.load_verify_locations(cfg["tlscacert"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _write_pidfile(path: str) -> None:
    from bosun.runtime.state import atomic_write

    try:
        with open(path) as f:
            old = int(f.read().strip() or 0)
        if old and old != os.getpid() and os.path.exists(f"/proc/{old}"):
            raise ConfigError(f"pid file found, ensure bosun is not running or delete {path}")
    except (FileNotFoundError, ValueError):
        pass
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, f"{os.getpid()}".encode(), 0o644)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        cfg = settings(args)
        listeners = _listeners(cfg)
        ssl_ctx = _tls_context(cfg) if cfg["tlsverify"] else None
    except ConfigError as e:
        print(f"bosun daemon: {e}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.DEBUG if cfg["debug"] else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        print("bosun daemon: must run as root", file=sys.stderr)
        return 1
    pidfile = cfg["pidfile"] or os.path.join(cfg["exec-root"], "bosun.pid")
    try:
        _write_pidfile(pidfile)
    except ConfigError as e:
        print(f"bosun daemon: {e}", file=sys.stderr)
        return 1

    from bosun.engine.forkserver import ForkServer

    forkserver = ForkServer()
    forkserver.start()  # a fresh interpreter the shims are forked from

    from bosun.api.routes import build_router
    from bosun.api.http import Server
    from bosun.engine.engine import Engine, EngineConfig
    from bosun.engine.errors import EngineError

    engine = Engine(EngineConfig(
        data_root=cfg["data-root"], exec_root=cfg["exec-root"],
        registry_mirrors=cfg["registry-mirrors"],
        insecure_registries=cfg["insecure-registries"], log_driver=cfg["log-driver"],
        log_opts=cfg["log-opts"], default_ulimits=cfg["default-ulimits"],
        live_restore=cfg["live-restore"], debug=cfg["debug"],
        storage_driver=cfg["storage-driver"] or None, bridge=cfg["bridge"], bip=cfg["bip"],
        address_pools=cfg["default-address-pools"]),
        forkserver=forkserver)
    try:
        engine.start()
    except EngineError as e:
        print(f"bosun daemon: {e}", file=sys.stderr)
        engine.close()
        forkserver.stop()
        os.unlink(pidfile)
        return 1
    router = build_router(engine)
    servers = []
    for listener in listeners:
        if "unix_path" in listener:
            os.makedirs(os.path.dirname(listener["unix_path"]), 0o755, exist_ok=True)
            servers.append(Server(router, unix_path=listener["unix_path"],
                                  unix_group=cfg["group"]))
        else:
            servers.append(Server(router, tcp=listener["tcp"], ssl_context=ssl_ctx))
    done = threading.Event()

    def shutdown(*_):
        done.set()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    log.info("bosun daemon listening on %s", ", ".join(cfg["hosts"]))
    done.wait()
    for s in servers:
        s.shutdown()
    if not cfg["live-restore"]:
        from bosun.engine.containers.stop import stop

        for c in engine.all():
            if c.running:
                try:
                    stop(engine, c, quiet_if_stopped=True)
                except Exception as e:  # noqa: BLE001
                    log.warning("stopping %s: %s", c.id[:12], e)
    engine.close()
    forkserver.stop()
    try:
        os.unlink(pidfile)
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
