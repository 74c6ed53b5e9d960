"""`Networks`: the one object the engine calls for bridge networking.

Order of work, so that a crash leaves only what `reconcile()` cleans up:
  create:  record (store) → bridge (kernel) → rules (nftables)
  remove:  forget (store) → bridge → rules      leftovers are links with our alias
  attach:  allocate (store) → veth (kernel)     an endpoint whose veth is missing is stale
  detach:  veth → release (store) → rules if it had published ports

The engine's expected calls, per container: `create_netns(id)` before the runtime starts
the container (its spec then names the path as the network namespace), `attach()` per
network, `publish()` per port; on stop `detach_all(id)` and `remove_netns(path)`; at daemon
start `ensure_default_network()` then `reconcile(live_container_ids)`.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager

from bosun.network import firewall, ipam, netlink
from bosun.network.errors import Conflict, Forbidden, InvalidParameter, NotFound
from bosun.network.store import (
    OPT_BRIDGE_NAME,
    OPT_MTU,
    Endpoint,
    Network,
    NetworkStore,
    PortBinding,
    check_static,
)

DEFAULT_NETWORK = "bridge"
_IFNAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _check_ifname(name: str) -> str:
    if not 1 <= len(name) <= 15 or not set(name) <= _IFNAME_OK or name in (".", ".."):
        raise InvalidParameter(f"invalid bridge name {name!r}: 1-15 of [A-Za-z0-9_.-]")
    return name


def _port_free(proto: str, host_ip: str, port: int) -> bool:
    """Whether nothing on the host is bound to the port (tcp/udp; sctp is not checked)."""
    kind = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}.get(proto)
    if kind is None:
        return True
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host_ip, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
    return True


class Networks:
    """Bridge networks in `db_path`, runtime files (netns mounts, locks) under `exec_root`.

    `table` is the nftables table (`ip <table>`) bosun owns; `owner` tags the links bosun
    creates (defaults to the table's name); `default_bridge` is the `bridge` network's
    bridge; `veth_prefix` starts host-side veth names. Tests pass unique values for all four
    so they never touch the host's own.
    """

    def __init__(self, db_path: str, exec_root: str, *, table: str = "bosun",
                 owner: str | None = None, default_bridge: str = "bosun0",
                 veth_prefix: str = "veth", address_pools: list[dict] | None = None):
        self.store = NetworkStore(db_path)
        self.exec_root = os.path.abspath(exec_root)
        self.table = firewall.check_table(table)
        self.owner = owner or table
        self.default_bridge = _check_ifname(default_bridge)
        self.veth_prefix = veth_prefix
        # daemon config default-address-pools, per family; None: Docker's built-in ones
        pools = ipam.parse_pools(address_pools or ())
        self.pools = pools.of(4) or None
        self.pools6 = pools.of(6) or None
        self._fw_lock = threading.Lock()
        os.makedirs(self.netns_dir, exist_ok=True)

    @property
    def netns_dir(self) -> str:
        return os.path.join(self.exec_root, "netns")

    def _alias(self, kind: str, ident: str) -> str:
        return f"{self.owner}:{kind}:{ident}"

    # -- networks -------------------------------------------------------------------------

    def ensure_default_network(self, subnet: str | None = None,
                               gateway: str | None = None) -> Network:
        """The `bridge` network on `default_bridge`: `subnet`/`gateway` when given (dockerd's
        --bip), else the first free one of the daemon's default-address-pools, or without
        those 172.18.0.0/16 unless the host already routes it (then the next free default
        pool). An existing one is kept as it is."""
        try:
            net = self.store.network(DEFAULT_NETWORK)
        except NotFound:
            opts = {OPT_BRIDGE_NAME: self.default_bridge,
                    "com.docker.network.bridge.default_bridge": "true",
                    "com.docker.network.bridge.enable_icc": "true",
                    "com.docker.network.bridge.enable_ip_masquerade": "true",
                    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                    OPT_MTU: "1500"}
            try:
                return self.create_network(DEFAULT_NETWORK, subnet=subnet, gateway=gateway,
                                           options=opts)
            except Conflict:  # another process made it meanwhile
                net = self.store.network(DEFAULT_NETWORK)
        self._make_bridge(net)
        return net

    def create_network(self, name: str, driver: str = "bridge", subnet: str | None = None,
                       gateway: str | None = None, ip_range: str | None = None,
                       internal: bool = False, options: dict[str, str] | None = None,
                       labels: dict[str, str] | None = None, ipv6: bool = False,
                       subnet6: str | None = None, gateway6: str | None = None,
                       ip_range6: str | None = None) -> Network:
        """A bridge network; with `ipv6`, dual-stack (`subnet6`, else a /64 of the IPv6
        default-address-pools, else of a ULA /48 stable for this data root)."""
        if driver != "bridge":
            raise InvalidParameter(f"network driver {driver!r} is not supported (bridge only)")
        options = dict(options or {})
        named = options.get(OPT_BRIDGE_NAME)
        if named:
            _check_ifname(named)
            if netlink.link_exists(named) and named not in netlink.owned_links(self.owner):
                raise Conflict(f"interface {named} already exists on the host")
        routes = [*(netlink.host_routes() if not subnet else ()),
                  *(netlink.host_routes(6) if ipv6 and not subnet6 else ())]
        net = self.store.add_network(
            name, bridge=named or (lambda net_id: f"br-{net_id[:12]}"), driver=driver,
            subnet=subnet, gateway=gateway, ip_range=ip_range, internal=internal,
            options=options, labels=labels, host_routes=routes,
            preferred=ipam.DEFAULT_BRIDGE_SUBNET if name == DEFAULT_NETWORK and self.pools is None
            else None, pools=self.pools, ipv6=ipv6, subnet6=subnet6, gateway6=gateway6,
            ip_range6=ip_range6, pools6=self.pools6 or ipam.ula_pools(self._ula_seed()))
        try:
            netlink.enable_ip_forward(net.ipv6)
            self._make_bridge(net)
            self._render()
        except BaseException:
            self.store.remove_network(net.id)
            netlink.delete_link(net.bridge)
            self._render()
            raise
        return net

    def _ula_seed(self) -> str:
        """What the ULA Global ID derives from: the `bridge` network's id, random once per
        data root (moby uses its engine id), so the prefix is stable across restarts."""
        try:
            return self.store.network(DEFAULT_NETWORK).id
        except NotFound:
            return self.store.path

    def _make_bridge(self, net: Network) -> None:
        netlink.ensure_bridge(net.bridge, _interfaces(net.gateway, net.subnet, net.gateway6,
                                                      net.subnet6),
                              net.mtu, ipam.mac_for(net.gateway), self._alias("net", net.id))

    def remove_network(self, ref: str) -> Network:
        net = self.store.network(ref)
        if net.name == DEFAULT_NETWORK:
            raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
        net = self.store.remove_network(net.id)  # refuses while endpoints exist
        netlink.delete_link(net.bridge)
        self._render()
        return net

    def list(self) -> list[Network]:
        return self.store.networks()

    def get(self, ref: str) -> Network:
        return self.store.network(ref)

    def inspect(self, ref: str) -> dict:
        """Docker's NetworkResource shape. Containers are keyed by id; their "Name" is left
        to the engine, which knows container names."""
        net = self.store.network(ref)
        configs = []
        for subnet, gateway, ip_range in ((net.subnet, net.gateway, net.ip_range),
                                          (net.subnet6, net.gateway6, net.ip_range6)):
            if subnet is not None:
                configs.append({"Subnet": str(subnet), "Gateway": str(gateway),
                                **({"IPRange": str(ip_range)} if ip_range else {})})
        return {
            "Name": net.name, "Id": net.id,
            "Created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(net.created))
            + f".{int(net.created % 1 * 1e9):09d}Z",
            "Scope": "local", "Driver": net.driver, "EnableIPv4": True,
            "EnableIPv6": net.ipv6,
            "IPAM": {"Driver": "default", "Options": None, "Config": configs},
            "Internal": net.internal, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": {ep.container_id: {
                "Name": "", "EndpointID": ep.id, "MacAddress": ep.mac,
                "IPv4Address": f"{ep.ip}/{ep.prefixlen}",
                "IPv6Address": f"{ep.ip6}/{ep.prefixlen6}" if ep.ip6 else ""}
                for ep in self.store.endpoints(network_id=net.id)},
            "Options": dict(net.options), "Labels": dict(net.labels),
        }

    # -- namespaces and endpoints ---------------------------------------------------------

    def netns_path(self, container_id: str) -> str:
        if not container_id or "/" in container_id or container_id.startswith("."):
            raise InvalidParameter(f"invalid container id {container_id!r}")
        return os.path.join(self.netns_dir, container_id)

    def create_netns(self, container_id: str) -> str:
        path = self.netns_path(container_id)
        netlink.create_netns(path)
        return path

    def remove_netns(self, path: str) -> None:
        netlink.remove_netns(path)

    def attach(self, container_id: str, network: str, netns_path: str, ip: str | None = None,
               aliases: Iterable[str] = (), mac: str | None = None,
               ifnames_in_use: Iterable[str] | None = None, ip6: str | None = None
               ) -> Endpoint:
        """`ifnames_in_use`: the namespace's links other than bosun's endpoints, when the
        caller knows them (("lo",) for a namespace it just made); else they are listed."""
        if not netlink.is_netns(netns_path):
            raise InvalidParameter(f"{netns_path} is not a network namespace")
        if ifnames_in_use is None:
            ifnames_in_use = netlink.netns_links(netns_path)
        ep = self.store.allocate(network, container_id, netns_path=netns_path,
                                 ifnames_in_use=ifnames_in_use,
                                 veth_prefix=self.veth_prefix, ip=ip, mac=mac, aliases=aliases,
                                 ip6=ip6)
        try:
            netlink.create_endpoint(
                host_veth=ep.host_veth, bridge=ep.bridge, netns_path=netns_path,
                ifname=ep.ifname, addresses=_interfaces(ep.ip, ep.subnet, ep.ip6, ep.subnet6),
                mac=ep.mac, mtu=ep.mtu,
                gateways=[] if ep.internal else [g for g in (ep.gateway, ep.gateway6) if g],
                alias=self._alias("ep", ep.id))
        except BaseException:
            self.store.release(ep.id)
            raise
        return ep

    def check_addresses(self, network: str, ip: str | None = None, ip6: str | None = None
                        ) -> None:
        """An endpoint's static addresses checked before any attach (at container create and
        connect, as Docker does): each of a family the network has, in its subnet. Whether
        they are free is known only when one is taken."""
        net = self.store.network(network)
        for version, addr in ((4, ip), (6, ip6)):
            if addr:
                check_static(net, version, addr)

    def detach(self, container_id: str, network: str) -> None:
        self._detach(self.store.find_endpoint(network, container_id))

    def detach_all(self, container_id: str, keep_links: bool = False) -> None:
        """Detach every endpoint of a container. `keep_links`: the caller removes the
        namespace next, and its destruction takes the veth pairs with it (the kernel does it
        asynchronously, where a synchronous veth delete costs ~25 ms of RCU grace periods).
        Addresses and ports are released at once either way; a veth the kernel has not yet
        removed is an unknown link to `reconcile`."""
        for ep in self.store.endpoints(container_id=container_id):
            self._detach(ep, keep_link=keep_links)

    def _detach(self, ep: Endpoint, keep_link: bool = False) -> None:
        if not keep_link:
            netlink.delete_link(ep.host_veth)
        if self.store.release(ep.id):
            self._render()

    def endpoints(self, container_id: str | None = None) -> list[Endpoint]:
        return self.store.endpoints(container_id=container_id)

    @staticmethod
    def endpoint_settings(ep: Endpoint) -> dict:
        """The endpoint as Docker's NetworkSettings.Networks[<name>]."""
        return {"IPAMConfig": None, "Links": None, "Aliases": list(ep.aliases) or None,
                "MacAddress": ep.mac, "DriverOpts": None, "NetworkID": ep.network_id,
                "EndpointID": ep.id, "Gateway": "" if ep.internal else str(ep.gateway),
                "IPAddress": str(ep.ip), "IPPrefixLen": ep.prefixlen,
                "IPv6Gateway": str(ep.gateway6) if ep.ip6 and not ep.internal else "",
                "GlobalIPv6Address": str(ep.ip6 or ""), "GlobalIPv6PrefixLen": ep.prefixlen6,
                "DNSNames": None}

    # -- published ports ------------------------------------------------------------------

    def publish(self, endpoint: Endpoint | str, host_ip: str = "0.0.0.0", host_port: int = 0,
                container_port: int = 0, proto: str = "tcp") -> PortBinding:
        """DNAT host_ip:host_port (0 = a free ephemeral port) to the endpoint."""
        ep_id = endpoint.id if isinstance(endpoint, Endpoint) else endpoint
        if host_port and not _port_free(proto.lower(), host_ip or "0.0.0.0", host_port):
            # A host program has it: DNAT would silently steal its traffic (Docker's proxy
            # fails to bind there).
            raise Conflict(f"failed to bind host port {host_ip or '0.0.0.0'}:{host_port}/"
                           f"{proto.lower()}: address already in use")
        binding = self.store.add_port(ep_id, proto, host_ip, host_port, container_port,
                                      port_range=_ephemeral_range(), port_free=_port_free)
        try:
            self._render()
        except BaseException:
            self.store.remove_port(ep_id, binding.proto, str(binding.host_ip),
                                   binding.host_port)
            raise
        return binding

    def unpublish(self, endpoint: Endpoint | str, host_ip: str, host_port: int,
                  proto: str = "tcp") -> None:
        ep_id = endpoint.id if isinstance(endpoint, Endpoint) else endpoint
        if not self.store.remove_port(ep_id, proto, host_ip, host_port):
            raise NotFound(f"no published port {host_ip}:{host_port}/{proto} on endpoint "
                           f"{ep_id[:12]}")
        self._render()

    def ports(self, endpoint: Endpoint | str | None = None) -> list[PortBinding]:
        return self.store.ports(endpoint.id if isinstance(endpoint, Endpoint) else endpoint)

    # -- firewall -------------------------------------------------------------------------

    @contextmanager
    def _firewall_lock(self) -> Iterator[None]:
        # Threads of this process, then other processes sharing the exec root: each render
        # reads the whole state after taking the lock, so the last one applied is current.
        with self._fw_lock, open(os.path.join(self.exec_root, "firewall.lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _render(self) -> None:
        with self._firewall_lock():
            bridges = [firewall.BridgeRules(n.bridge, n.subnet, n.internal, n.masquerade, n.icc,
                                            n.subnet6)
                       for n in self.store.networks()]
            ports = [firewall.PortRule(p.bridge, p.proto, p.host_ip, p.host_port,
                                       p.container_ip, p.container_port)
                     for p in self.store.ports()]
            firewall.apply(firewall.render(self.table, bridges, ports))

    # -- daemon start and teardown ----------------------------------------------------------

    def reconcile(self, live_containers: Collection[str] | None = None) -> dict[str, list[str]]:
        """Bring the kernel in line with the store after a restart or crash: bridges
        re-made (a reboot loses them), endpoints whose veth or namespace is gone (or whose
        container is not in `live_containers`) released, links bosun made that the store
        no longer knows deleted, namespace files of dead containers unmounted (only when
        `live_containers` is given), rules re-rendered. Returns what it did."""
        done: dict[str, list[str]] = {"bridges": [], "endpoints": [], "links": [], "netns": []}
        networks = self.store.networks()
        if networks:
            netlink.enable_ip_forward(any(n.ipv6 for n in networks))
        for net in networks:
            if not netlink.link_exists(net.bridge):
                done["bridges"].append(net.bridge)
            self._make_bridge(net)
        for ep in self.store.endpoints():
            dead = live_containers is not None and ep.container_id not in live_containers
            if dead or not netlink.is_netns(ep.netns_path) or not netlink.link_exists(ep.host_veth):
                netlink.delete_link(ep.host_veth)
                self.store.release(ep.id)
                done["endpoints"].append(ep.id)
            else:
                netlink.plug(ep.host_veth, ep.bridge)
        known = {f"net:{n.id}" for n in self.store.networks()} | \
                {f"ep:{e.id}" for e in self.store.endpoints()}
        for ifname, alias in netlink.owned_links(self.owner).items():
            if alias[len(self.owner) + 1:] not in known:
                netlink.delete_link(ifname)
                done["links"].append(ifname)
        if live_containers is not None:
            for name in os.listdir(self.netns_dir):
                if name not in live_containers:
                    netlink.remove_netns(os.path.join(self.netns_dir, name))
                    done["netns"].append(name)
        self._render()
        return done

    def purge(self) -> None:
        """Remove everything this instance owns from the kernel: its links, its table,
        its namespace mounts. The store is left as is (tests, uninstall)."""
        for ifname in netlink.owned_links(self.owner):
            netlink.delete_link(ifname)
        firewall.delete_table(self.table)
        for name in os.listdir(self.netns_dir):
            netlink.remove_netns(os.path.join(self.netns_dir, name))


def _interfaces(ip, subnet, ip6, subnet6) -> list[netlink.Interface]:
    """An IPv4 address and maybe an IPv6 one (None: no IPv6), with their prefix lengths."""
    return [ipaddress.ip_interface(f"{a}/{n.prefixlen}")
            for a, n in ((ip, subnet), (ip6, subnet6)) if a is not None]


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = f.read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999
