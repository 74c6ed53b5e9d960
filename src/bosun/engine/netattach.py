"""A container's bridge networking, over the network layer (bosun.network): its network
namespace, one endpoint per network it is connected to, its published ports, and the
NetworkSettings inspect shows for them.

The engine makes the namespace before the shim starts (the spec names it by path), and undoes
it all when the container stops, whichever way (stop, exit on its own, rm -f, a failed start).
Callers hold the container's lock: it is the per-container serialization the network layer
asks for (two concurrent attaches to one namespace could pick the same ethN).
"""

from __future__ import annotations

import logging
import os
import re

from bosun.engine.errors import (
    Conflict,
    EngineError,
    Forbidden,
    InvalidParameter,
    NotFound,
    SystemErr,
)

log = logging.getLogger("bosun.engine")

DEFAULT_NETWORK = "bridge"
BUILTIN = ("bridge", "host", "none")
# Docker's sysctls for a container's own network namespace (bosun-runtime sets net.*
# sysctls only in a namespace it creates, so the engine writes them into the one it made).
_NETNS_SYSCTLS = {"net.ipv4.ping_group_range": "0 2147483647",
                  "net.ipv4.ip_unprivileged_port_start": "0"}
_PORT_KEY = re.compile(r"^(\d{1,5})(?:/(tcp|udp|sctp))?$")


class NetworkSetupFailed(SystemErr):
    """A start that failed in its networking: shown as it is, not as an OCI runtime error."""


def engine_error(e: Exception) -> Exception:
    """The network layer's errors as the engine's kinds (same names, one to one)."""
    from bosun.network import errors as n

    for src, dst in ((n.InvalidParameter, InvalidParameter), (n.NotFound, NotFound),
                     (n.Conflict, Conflict), (n.Forbidden, Forbidden)):
        if isinstance(e, src):
            return dst(str(e))
    if isinstance(e, (n.NetworkError, OSError)):
        return SystemErr(str(e))
    return e


def uses_bridge(hc: dict) -> bool:
    """Whether the container gets a namespace of the engine's making (bridge or a user
    network), as opposed to none (the runtime's own), host, or container:<id>."""
    mode = hc.get("NetworkMode") or DEFAULT_NETWORK
    return mode not in ("none", "host") and not mode.startswith("container:")


def empty_endpoint(ipam: dict | None = None, aliases: list[str] | None = None) -> dict:
    """A network's EndpointSettings while the container does not run (Docker keeps the
    configuration, not the address)."""
    return {"IPAMConfig": ipam or None, "Links": None, "Aliases": aliases or None,
            "MacAddress": "", "DriverOpts": None, "NetworkID": "", "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


# Docker's deprecated top-level copy of the `bridge` endpoint (from EndpointSettings).
_TOP_LEVEL_ENDPOINT = ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress",
                       "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen")


def clear_top_level(ns: dict) -> None:
    ns.update({k: 0 if k.endswith("PrefixLen") else "" for k in _TOP_LEVEL_ENDPOINT})


# -- start and stop -----------------------------------------------------------------------

def setup(engine, c) -> str | None:
    """Namespace, endpoints, sysctls and published ports for a starting container; the
    namespace's path for the spec (None: not a bridge-networked container). All or nothing."""
    hc = c.doc["HostConfig"]
    if not uses_bridge(hc):
        return None
    nets = engine.networks
    try:
        path = nets.create_netns(c.id)
    except Exception as e:  # noqa: BLE001
        raise NetworkSetupFailed(f"failed to set up container networking: {e}") from None
    ns = c.doc["NetworkSettings"]
    try:
        for name in list(ns.get("Networks") or {}):
            attach(engine, c, name, path, fresh=True)
        sysctls = {k: v for k, v in _NETNS_SYSCTLS.items()
                   if os.path.exists("/proc/sys/" + k.replace(".", "/"))}
        sysctls.update({k: str(v) for k, v in (hc.get("Sysctls") or {}).items()
                        if k.startswith("net.")})
        from bosun.network import netlink

        netlink.set_netns_sysctls(path, sysctls)
        publish(engine, c)
    except BaseException as e:
        teardown(engine, c)
        if isinstance(e, Exception) and not isinstance(e, EngineError):
            err = engine_error(e)
            if type(err) is SystemErr:
                raise NetworkSetupFailed(f"failed to set up container networking: {e}") from None
            raise err from None
        raise
    ns["SandboxKey"] = path
    ns["SandboxID"] = c.id  # one sandbox per container, named after it
    return path


def attach(engine, c, name: str, path: str, fresh: bool = False) -> None:
    """Connect the namespace at `path` to network `name`, recording the endpoint. `fresh`:
    the engine just made the namespace, so it holds only lo and bosun's endpoints."""
    ns = c.doc["NetworkSettings"]
    conf = endpoint_config(c, name)
    ipam = conf.get("IPAMConfig") or {}
    mac = conf.get("MacAddress") or (c.doc["Config"].get("MacAddress")
                                     if name == c.doc["HostConfig"].get("NetworkMode") else "")
    try:
        ep = engine.networks.attach(c.id, name, path, ip=ipam.get("IPv4Address") or None,
                                    aliases=conf.get("Aliases") or (), mac=mac or None,
                                    ifnames_in_use=("lo",) if fresh else None,
                                    ip6=ipam.get("IPv6Address") or None)
    except Exception as e:  # noqa: BLE001
        err = engine_error(e)
        if type(err) is SystemErr:
            err = NetworkSetupFailed(f"failed to set up container networking: {e}")
        raise err from None
    settings = engine.networks.endpoint_settings(ep)
    settings["IPAMConfig"] = ipam or None
    if ep.network_name != DEFAULT_NETWORK:  # the names the embedded DNS answers to
        from bosun.engine.netdns import dns_names

        settings["DNSNames"] = dns_names(c, ep.aliases)
    ns["Networks"].pop(name, None)
    ns["Networks"][ep.network_name] = settings
    if ep.network_name == DEFAULT_NETWORK:  # Docker's deprecated top-level copy
        ns.update({k: settings[k] for k in _TOP_LEVEL_ENDPOINT})


def check_static_addresses(engine, network: str, conf: dict) -> None:
    """EndpointSettings.IPAMConfig's addresses checked against the network now (Docker does
    at create and connect), not first at start. An unknown network is reported elsewhere."""
    from bosun.network import NetworkError, NotFound

    ipam = conf.get("IPAMConfig") or {}
    if not (ipam.get("IPv4Address") or ipam.get("IPv6Address")):
        return
    try:
        engine.networks.check_addresses(network, ipam.get("IPv4Address") or None,
                                        ipam.get("IPv6Address") or None)
    except NotFound:
        pass
    except NetworkError as e:
        raise engine_error(e) from None


def endpoint_config(c, name: str) -> dict:
    """The EndpointsConfig entry the user gave for network `name` (create or connect)."""
    return ((c.meta.get("networking") or {}).get("EndpointsConfig") or {}).get(name) or {}


def publish(engine, c) -> None:
    """HostConfig.PortBindings (and, with PublishAllPorts, every exposed port) as DNAT rules
    to the first endpoint; NetworkSettings.Ports as Docker shows them."""
    hc, cfg = c.doc["HostConfig"], c.doc["Config"]
    bindings = hc.get("PortBindings") or {}
    exposed = cfg.get("ExposedPorts") or {}
    ports: dict[str, list | None] = {k: None for k in (*exposed, *bindings)}
    wanted = [(k, b or {}) for k, bs in bindings.items() for b in (bs or [{}])]
    if hc.get("PublishAllPorts"):
        wanted += [(k, {}) for k in exposed if not bindings.get(k)]
    ns = c.doc["NetworkSettings"]
    if not wanted:
        ns["Ports"] = ports
        return
    eps = engine.networks.endpoints(c.id)
    if not eps:
        ns["Ports"] = ports
        return
    ep = eps[0]
    for key, b in wanted:
        m = _PORT_KEY.match(key)
        if not m:
            raise InvalidParameter(f"invalid port specification: {key!r}")
        cport, proto = int(m.group(1)), m.group(2) or "tcp"
        host_ip = b.get("HostIp") or "0.0.0.0"
        if ":" in host_ip:
            raise InvalidParameter(f"cannot publish on {host_ip}: IPv6 is not supported")
        lo, hi = _host_ports(b.get("HostPort") or "")
        binding = None
        for port in range(lo, hi + 1):
            try:
                binding = engine.networks.publish(ep, host_ip, port, cport, proto)
                break
            except Exception as e:  # noqa: BLE001
                from bosun.network import Conflict as NetConflict

                if isinstance(e, NetConflict) and port < hi:
                    continue  # a range: try its next port, as Docker does
                err = engine_error(e)
                if isinstance(err, Conflict):  # Docker's wording and kind (500)
                    raise NetworkSetupFailed(
                        "failed to set up container networking: driver failed programming "
                        f"external connectivity on endpoint {c.name} ({ep.id}): {e}") from None
                raise err from None
        ports[key] = (ports.get(key) or []) + [{"HostIp": str(binding.host_ip),
                                               "HostPort": str(binding.host_port)}]
    ns["Ports"] = ports


def _host_ports(text: str) -> tuple[int, int]:
    """"" → (0, 0) (any free port); "8080" → (8080, 8080); "8000-8010" → the range."""
    lo, sep, hi = text.partition("-")
    try:
        first = int(lo) if lo else 0
        last = int(hi) if sep else first
    except ValueError:
        raise InvalidParameter(f"invalid host port: {text!r}") from None
    if not (0 <= first <= last <= 65535):
        raise InvalidParameter(f"invalid host port: {text!r}")
    return first, last


def teardown(engine, c) -> None:
    """Detach every endpoint and remove the namespace (a no-op for other network modes, and
    when already done); reset NetworkSettings to a stopped container's."""
    if not uses_bridge(c.doc["HostConfig"]):
        return
    from bosun.engine import netdns

    netdns.unregister(engine, c)  # first: its sockets would keep the namespace alive
    c.meta.pop("dns", None)
    nets = engine.networks
    path = nets.netns_path(c.id)
    try:
        # With no process left in it (teardown follows the runtime's delete), unmounting the
        # namespace destroys it and its veths: no synchronous (slow) veth delete needed.
        nets.detach_all(c.id, keep_links=not _netns_in_use(path))
        nets.remove_netns(path)
    except Exception as e:  # noqa: BLE001  (reconcile at the next daemon start finishes it)
        log.warning("network teardown of %s: %s", c.id[:12], e)
    ns = c.doc.get("NetworkSettings")
    if ns is None:
        return
    clear_top_level(ns)
    ns.update(SandboxID="", SandboxKey="", Ports={})
    for name, ep in list((ns.get("Networks") or {}).items()):
        ns["Networks"][name] = empty_endpoint((ep or {}).get("IPAMConfig"),
                                              (ep or {}).get("Aliases"))


def _netns_in_use(path: str) -> bool:
    """Whether a process still has the namespace mounted at `path` (then its veths must be
    deleted explicitly, or they would outlive the container until that process exits)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                ns = os.stat(f"/proc/{pid}/ns/net")
            except OSError:
                continue
            if (ns.st_dev, ns.st_ino) == (st.st_dev, st.st_ino):
                return True
    return False


def host_gateway(engine) -> str | None:
    """What `--add-host NAME:host-gateway` stands for: the default bridge's gateway (Docker's
    default host-gateway-ip), None when there is no default bridge."""
    try:
        return str(engine.networks.get("bridge").gateway)
    except Exception:  # noqa: BLE001  (no bridge network: --bridge none)
        return None


def hosts_lines(c) -> list[str]:
    """/etc/hosts lines for the container's own addresses (Docker's "<ip>\\t<hostname>", per
    endpoint its IPv4 then its IPv6 address)."""
    cfg = c.doc["Config"]
    host = cfg.get("Hostname") or ""
    if cfg.get("Domainname"):
        host = f"{host}.{cfg['Domainname']} {host}"
    return [f"{ep[key]}\t{host}"
            for ep in (c.doc["NetworkSettings"].get("Networks") or {}).values() if ep
            for key in ("IPAddress", "GlobalIPv6Address") if ep.get(key)]


# -- daemon start ----------------------------------------------------------------------------

def reconcile(engine, live: set[str]) -> None:
    """After restore: keep the endpoints of containers still running (their addresses and
    ports survive a daemon restart), remove every other leftover."""
    try:
        done = engine.networks.reconcile(live)
    except Exception as e:  # noqa: BLE001
        log.error("network reconcile failed: %s", e)
        return
    if any(done.values()):
        log.info("network reconcile: %s", {k: v for k, v in done.items() if v})
