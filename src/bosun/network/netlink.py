"""The network layer's kernel access: links, addresses and routes over rtnetlink (pyroute2),
persistent network namespaces, and the few sysctls bosun sets. Each function is one small
step the manager composes; nothing here knows about the store or the firewall.

Entering a namespace never forks: a short-lived thread calls setns()/unshare() for the
network namespace (a per-thread attribute in Linux), opens what it needs there (a netlink
socket bound in that namespace keeps working from any thread), and exits. Forking a
multi-threaded daemon to do it would risk the child inheriting held locks.

Ownership: every link bosun creates carries an ifalias "<owner>:<kind>:<id>", so that
`reconcile` removes only links that are bosun's (Docker's bridges are also named br-<hex>).
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from bosun.kernel import CLONE_NEWNET, LINUX, MNT_DETACH, MS_BIND
from bosun.network import rtnl

T = TypeVar("T")
Interface = IPv4Interface | IPv6Interface


@contextmanager
def _host() -> Iterator[IPRoute]:
    with IPRoute() as ipr:
        yield ipr


def _in_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a fresh thread (which may change its own namespaces and then ends)."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=run, name="bosun-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _enter(netns_path: str) -> None:
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        LINUX.setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)


def in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    """`fn()` run by a thread inside the namespace mounted at `netns_path`: sockets it makes
    belong to that namespace, whichever thread uses them afterwards."""
    def run() -> T:
        _enter(netns_path)
        return fn()

    return _in_thread(run)


@contextmanager
def _netns(netns_path: str) -> Iterator[IPRoute]:
    """An rtnetlink handle inside the namespace mounted at `netns_path`."""
    sock = in_netns(netns_path, rtnl.open_socket)
    with IPRoute(fileno=sock.detach()) as ipr:
        yield ipr


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


# -- host state -----------------------------------------------------------------------------

def host_routes(version: int = 4) -> list[IPv4Network] | list[IPv6Network]:
    """Every destination of one family the host routes (all tables), for choosing a free
    subnet (an IPv6 host address's prefix has its route too)."""
    family, net, anywhere = ((socket.AF_INET, IPv4Network, "0.0.0.0") if version == 4 else
                             (socket.AF_INET6, IPv6Network, "::"))
    with _host() as ipr:
        return [net(f"{r.get('dst') or anywhere}/{r['dst_len']}", strict=False)
                for r in ipr.get_routes(family=family)]


def set_sysctl(path: str, value: str) -> None:
    with open(os.path.join("/proc/sys", path), "w") as f:
        f.write(value)


def set_netns_sysctls(netns_path: str, values: dict[str, str]) -> None:
    """Write net.* sysctls inside a namespace: /proc/sys/net shows the namespace of the
    thread that opens it, so a thread that entered it does the writes."""
    def write() -> None:
        for key, value in values.items():
            set_sysctl(key.replace(".", "/"), value)

    if values:
        in_netns(netns_path, write)


def enable_ip_forward(ipv6: bool = False) -> None:
    # Containers reach beyond their bridge only with forwarding on (Docker sets it too).
    # It is never restored: other networks and the host's admin may rely on it by then.
    # IPv6 forwarding only once an IPv6 network exists: it also stops the host's interfaces
    # from accepting router advertisements (where accept_ra is 1).
    set_sysctl("net/ipv4/ip_forward", "1")
    if ipv6:
        set_sysctl("net/ipv6/conf/all/forwarding", "1")


def link_exists(name: str) -> bool:
    return _if_index(name) is not None


def owned_links(owner: str) -> dict[str, str]:
    """ifname → ifalias of the host's links whose alias says `owner` made them."""
    out = {}
    with _host() as ipr:
        for link in ipr.get_links():
            alias = link.get("ifalias") or ""
            if alias.startswith(owner + ":"):
                out[link.get("ifname")] = alias
    return out


def delete_link(name: str) -> bool:
    """Delete a link (a veth takes its peer with it); False when there was none."""
    if _if_index(name) is None:
        return False
    with rtnl.Rtnl() as host:
        host.call(rtnl.del_link(name))  # gone meanwhile (ENODEV) counts as deleted
    return True


# -- bridges --------------------------------------------------------------------------------

def ensure_bridge(name: str, addresses: Sequence[Interface], mtu: int, mac: str,
                  alias: str) -> None:
    """Create the bridge if missing (or finish one a crash left half-made): its gateway
    addresses (one per family), MTU, alias, up. Idempotent, and safe against another
    process doing the same."""
    with _host() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", address=mac, mtu=mtu)
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise
            idx = _index(ipr, name)
        link = ipr.get_links(idx)[0]
        if link.get_attr("IFLA_LINKINFO") is None or \
                link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND") != "bridge":
            raise OSError(errno.EEXIST, f"{name} exists and is not a bridge")
        ipr.link("set", index=idx, mtu=mtu, ifalias=alias)
        have = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=idx)}
        ipr.link("set", index=idx, state="up")
    missing = [a for a in addresses if (str(a.ip), a.network.prefixlen) not in have]
    if missing:  # (another process adding one meanwhile is fine)
        with rtnl.Rtnl() as host:
            host.call(*[rtnl.add_addr(idx, str(a.ip), a.network.prefixlen, ok=(errno.EEXIST,))
                        for a in missing])
    # 127.0.0.1:<published port> is DNATed to a container behind this bridge: without it the
    # kernel drops the loopback-sourced packet as martian before masquerade rewrites it.
    set_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")


# -- endpoints ------------------------------------------------------------------------------

def create_endpoint(*, host_veth: str, bridge: str, netns_path: str, ifname: str,
                    addresses: Sequence[Interface], mac: str, mtu: int,
                    gateways: Sequence[IPv4Address | IPv6Address], alias: str) -> None:
    """A veth pair: the host end on the bridge, the other created directly inside the
    namespace as `ifname` (no rename, no window where it sits on the host), with the
    addresses, MAC, MTU, and per gateway a default route of its family unless the
    namespace has one. Without an IPv6 address, IPv6 is off on the interface (as Docker
    does); with one, router advertisements are ignored (bosun routes it). Two batched
    netlink writes on the host and two in the namespace (see rtnl.py)."""
    br = _if_index(bridge)
    if br is None:
        raise OSError(errno.ENODEV, f"bridge {bridge} does not exist")
    conf = f"net/ipv6/conf/{ifname}/"
    if any(a.version == 6 for a in addresses):
        sysctls = {conf + "disable_ipv6": "0", conf + "accept_ra": "0"}
    else:  # (a kernel without IPv6 has nothing to turn off)
        sysctls = {conf + "disable_ipv6": "1"} if os.path.isdir("/proc/sys/net/ipv6") else {}

    def enter() -> socket.socket:  # the thread that enters the namespace writes them too
        for key, value in sysctls.items():
            set_sysctl(key, value)
        return rtnl.open_socket()

    ns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with rtnl.Rtnl() as host:
            host.call(rtnl.new_veth(host_veth, master=br, mtu=mtu, peer=ifname,
                                    peer_netns_fd=ns_fd, peer_mac=mac))
        try:
            _write_sys(host_veth, "ifalias", alias)
            set_hairpin(host_veth)
            with rtnl.Rtnl(in_netns(netns_path, enter)) as ns:
                eth = ns.index(ifname)
                # IPv6 addresses after the link is up: on a down link one gets no prefix
                # route, and the default route via the gateway would fail (EHOSTUNREACH)
                ns.call(*[rtnl.add_addr(eth, str(a.ip), a.network.prefixlen)
                          for a in addresses if a.version == 4],
                        rtnl.link_up(ifname),
                        *[rtnl.add_addr(eth, str(a.ip), a.network.prefixlen)
                          for a in addresses if a.version == 6],
                        *[rtnl.default_route(str(gw), eth) for gw in gateways])
        except BaseException:
            delete_link(host_veth)
            raise
    finally:
        os.close(ns_fd)


def _if_index(name: str) -> int | None:
    """A host link's index without a netlink round trip (an ioctl), None if missing."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _write_sys(ifname: str, attr: str, value: str) -> None:
    with open(f"/sys/class/net/{ifname}/{attr}", "w") as f:
        f.write(value)


def plug(host_veth: str, bridge: str) -> None:
    """Put a surviving endpoint's veth back on its bridge (re-made after it was lost)."""
    with _host() as ipr:
        idx, br = _index(ipr, host_veth), _index(ipr, bridge)
        if idx is None or br is None:
            raise OSError(errno.ENODEV, f"{host_veth} or {bridge} does not exist")
        if ipr.get_links(idx)[0].get("master") != br:
            ipr.link("set", index=idx, master=br)
        ipr.link("set", index=idx, state="up")
    set_hairpin(host_veth)


def set_hairpin(host_veth: str) -> None:
    """Let the bridge send a frame back out of the port it came in by: a container reaching
    its own published port through a host address (DNAT back to itself) needs it."""
    _write_sys(host_veth, "brport/hairpin_mode", "1")


def netns_links(netns_path: str) -> list[str]:
    with _netns(netns_path) as ns:
        return [link.get("ifname") for link in ns.get_links()]


# -- persistent network namespaces ----------------------------------------------------------

def is_netns(path: str) -> bool:
    """Whether a network namespace is mounted at `path` (nsfs files share one device)."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except FileNotFoundError:
        return False


def create_netns(path: str) -> None:
    """A new network namespace kept alive by a bind mount at `path`, as `ip netns add` does,
    with its loopback up."""
    if is_netns(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))

    def make() -> socket.socket:
        LINUX.unshare(CLONE_NEWNET)  # this thread alone moves to the new namespace
        LINUX.mount("/proc/thread-self/ns/net", path, None, MS_BIND)
        return rtnl.open_socket()

    try:
        with rtnl.Rtnl(_in_thread(make)) as ns:
            ns.call(rtnl.link_up("lo"))
    except BaseException:
        remove_netns(path)
        raise


def remove_netns(path: str) -> None:
    """Unmount and delete a namespace file (gone already is fine). The namespace itself
    lives on while a process is still in it."""
    try:
        LINUX.umount2(path, MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
