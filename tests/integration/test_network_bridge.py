"""The network library on a real kernel: bridges, veths, namespaces, NAT, published ports.

Every name is unique to the test (nft table, bridges, veth prefix, link aliases), and the
fixture removes all of it (`Networks.purge()` plus the test's own "outside" link and
namespace) even when a test fails. Traffic goes only between namespaces made here.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Self

import pytest

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

from bosun.network import Conflict, Forbidden, Networks, NotFound, firewall, netlink
from bosun.testing.netns import outside_world

PING = r"""
import os, socket, struct, sys
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(1.0)
ident = os.getpid() & 0xffff
body = struct.pack('!BBHHH', 8, 0, 0, ident, 1) + b'bosun-ping'
pkt = body[:2] + struct.pack('!H', csum(body)) + body[4:]
s.sendto(pkt, (sys.argv[1], 0))
try:
    while True:
        data, addr = s.recvfrom(2048)
        ihl = (data[0] & 15) * 4
        if addr[0] == sys.argv[1] and data[ihl] == 0 and data[ihl + 4:ihl + 6] == struct.pack('!H', ident):
            sys.exit(0)
except socket.timeout:
    sys.exit(1)
"""

# Accepts one connection, sends back the peer's address, prints it.
SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
print('ready', flush=True)
for _ in range(int(sys.argv[3])):
    c, peer = s.accept()
    c.sendall(peer[0].encode()); c.close()
    print(peer[0], flush=True)
"""

CONNECT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
print(c.recv(100).decode())
"""


def in_ns(path: str, code: str, *args: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={path}", sys.executable, "-c", code, *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def ping(path: str, ip) -> bool:
    return in_ns(path, PING, str(ip)).returncode == 0


def connect(path: str | None, ip, port: int) -> str | None:
    """The server's reply (the address it saw us come from), or None on failure."""
    if path is None:
        try:
            with socket.create_connection((str(ip), port), timeout=2) as c:
                return c.recv(100).decode()
        except OSError:
            return None
    r = in_ns(path, CONNECT, str(ip), str(port))
    return r.stdout.strip() if r.returncode == 0 else None


class Server:
    """SERVER in a namespace (or on the host when path is None), stopped at exit."""

    def __init__(self, path: str | None, ip: str, port: int, count: int = 8):
        pre = ["nsenter", f"--net={path}"] if path else []
        self.proc = subprocess.Popen([*pre, sys.executable, "-c", SERVER, ip, str(port),
                                      str(count)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def nets(tmp_path) -> Iterator[Networks]:
    tag = secrets.token_hex(3)
    n = Networks(str(tmp_path / "net.db"), str(tmp_path / "run"), table=f"bt_{tag}",
                 default_bridge=f"bt{tag}0", veth_prefix=f"vt{tag[:4]}")
    n.tag = tag
    try:
        yield n
    finally:
        n.purge()
        # Anything named with this test's tag that a failure left without our alias.
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            names = [link.get("ifname") for link in ipr.get_links()]
        for name in names:
            if name.startswith((n.veth_prefix, f"bt{tag}", f"vo{tag}")):
                netlink.delete_link(name)
        assert netlink.owned_links(n.owner) == {}
        assert firewall.table_rules(n.table) is None


def bridge_opt(nets: Networks, i: int) -> dict[str, str]:
    return {"com.docker.network.bridge.name": f"bt{nets.tag}{i}"}


def veths(nets: Networks) -> list[str]:
    return [name for name in netlink.owned_links(nets.owner) if name.startswith(nets.veth_prefix)]


@pytest.fixture
def outside(nets, tmp_path) -> Iterator[tuple[str, IPv4Address, IPv4Address]]:
    """A namespace standing for the world beyond the host: a /30 on its own veth, routed
    by the host, not a bridge. Yields (netns path, host's address, its address)."""
    path = str(tmp_path / "outside-ns")
    with outside_world(path, f"vo{nets.tag}") as (host_ip, far_ip):
        yield path, host_ip, far_ip


def test_two_endpoints_reach_each_other_and_the_gateway(nets):
    before = [r for r in netlink.host_routes() if r.prefixlen]
    net = nets.create_network("front", options=bridge_opt(nets, 1))
    assert not any(net.subnet.overlaps(r) for r in before)
    a, b = nets.create_netns("ca"), nets.create_netns("cb")
    ea = nets.attach("ca", "front", a)
    eb = nets.attach("cb", "front", b, aliases=["web"])
    assert ping(a, eb.ip) and ping(b, ea.ip)
    assert ping(a, net.gateway) and ping(b, net.gateway)
    out = subprocess.run(["nsenter", f"--net={a}", "ip", "-o", "link", "show", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    assert ea.mac in out and "mtu 1500" in out and ea.mac == "02:42:" + ":".join(
        f"{x:02x}" for x in ea.ip.packed)
    route = subprocess.run(["nsenter", f"--net={a}", "ip", "route", "show", "default"],
                           capture_output=True, text=True, check=True).stdout
    assert f"via {net.gateway} dev eth0" in route
    assert nets.inspect("front")["Containers"]["cb"]["IPv4Address"] == f"{eb.ip}/{net.subnet.prefixlen}"
    with pytest.raises(Conflict, match="active endpoints"):
        nets.remove_network("front")


def test_networks_are_isolated(nets):
    nets.create_network("n1", options=bridge_opt(nets, 1))
    n2 = nets.create_network("n2", options=bridge_opt(nets, 2))
    a, b, c = (nets.create_netns(x) for x in ("a", "b", "c"))
    ea = nets.attach("a", "n1", a)
    nets.attach("b", "n1", b)
    ec = nets.attach("c", "n2", c)
    assert ping(b, ea.ip) and ping(c, n2.gateway)
    assert not ping(c, ea.ip) and not ping(a, ec.ip)
    # A second network on the same container: it then reaches both sides.
    e2 = nets.attach("a", "n2", a)
    assert e2.ifname == "eth1" and ping(a, ec.ip) and ping(c, e2.ip)


def test_internal_network_stays_on_its_bridge(nets, outside):
    _, _, far = outside
    nets.create_network("inner", internal=True, options=bridge_opt(nets, 1))
    a, b = nets.create_netns("a"), nets.create_netns("b")
    nets.attach("a", "inner", a)
    eb = nets.attach("b", "inner", b)
    assert ping(a, eb.ip)
    assert not ping(a, far)
    route = subprocess.run(["nsenter", f"--net={a}", "ip", "route", "show", "default"],
                           capture_output=True, text=True, check=True).stdout
    assert route.strip() == ""


def test_outbound_traffic_is_masqueraded(nets, outside):
    path, host_ip, far_ip = outside
    nets.create_network("out", options=bridge_opt(nets, 1))
    a = nets.create_netns("a")
    nets.attach("a", "out", a)
    with Server(path, str(far_ip), 9000):
        # The outside namespace has no route to the container subnet: an answer at all
        # means the source was rewritten, and it must be the host's address there.
        assert connect(a, far_ip, 9000) == str(host_ip)


def test_published_port(nets, outside):
    path, host_ip, far_ip = outside
    net = nets.create_network("pub", options=bridge_opt(nets, 1))
    a = nets.create_netns("a")
    ep = nets.attach("a", "pub", a)
    binding = nets.publish(ep, "0.0.0.0", 0, 80, "tcp")
    port = binding.host_port
    assert port >= 1024
    with Server(a, "0.0.0.0", 80):
        assert connect(None, net.gateway, port) == str(net.gateway)  # host's bridge address
        seen = connect(None, "127.0.0.1", port)  # output chain + route_localnet + masquerade
        assert seen == str(net.gateway)
        # From beyond the host: prerouting DNAT, forwarded in; the client's own address
        # is kept (no masquerade on the way in).
        assert connect(path, host_ip, port) == str(far_ip)
        nets.unpublish(ep, "0.0.0.0", port, "tcp")
        assert connect(None, "127.0.0.1", port) is None
        # Nothing reaches the container from outside without a published port.
        assert connect(path, ep.ip, 80) is None
    fixed = nets.publish(ep, "127.0.0.1", port, 80)
    with pytest.raises(Conflict, match="already allocated"):
        nets.publish(ep, "0.0.0.0", port, 80)
    with Server(a, "0.0.0.0", 80):
        assert fixed.host_port == port and connect(None, "127.0.0.1", port) is not None


def test_concurrent_attaches(nets):
    nets.create_network("busy", options=bridge_opt(nets, 1))
    paths = {f"c{i}": nets.create_netns(f"c{i}") for i in range(8)}
    eps, errors = [], []

    def go(cid: str) -> None:
        try:
            eps.append(nets.attach(cid, "busy", paths[cid]))
        except Exception as e:  # noqa: BLE001 - asserted below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(cid,)) for cid in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len({e.ip for e in eps}) == 8
    assert ping(paths["c0"], next(e.ip for e in eps if e.container_id == "c7"))


def test_no_leaks_over_attach_detach_cycles(nets, tmp_path):
    net = nets.create_network("cyc", options=bridge_opt(nets, 1))
    ns_files = set()
    for i in range(20):
        p = nets.create_netns(f"c{i}")
        ns_files.add(p)
        ep = nets.attach(f"c{i}", "cyc", p)
        nets.publish(ep, "127.0.0.1", 0, 80)
        assert len(veths(nets)) == 1
        nets.detach(f"c{i}", "cyc")
        nets.remove_netns(p)
    assert veths(nets) == []
    assert nets.endpoints() == [] and nets.ports() == []
    assert not any(os.path.exists(p) for p in ns_files)
    assert not any(str(nets.exec_root) in line for line in Path("/proc/mounts").read_text()
                   .splitlines())
    rules = firewall.table_rules(nets.table)
    assert rules and not any(r["chain"].startswith("publish") for r in rules)
    nets.remove_network("cyc")
    assert not netlink.link_exists(net.bridge)
    assert firewall.table_rules(nets.table) == []
    assert nets.list() == []
    with pytest.raises(NotFound):
        nets.get("cyc")


def test_default_network_and_reconcile(nets):
    default = nets.ensure_default_network()
    assert default.bridge == nets.default_bridge and netlink.link_exists(default.bridge)
    with pytest.raises(Forbidden):
        nets.remove_network("bridge")
    a, b = nets.create_netns("a"), nets.create_netns("b")
    ea = nets.attach("a", "bridge", a)
    eb = nets.attach("b", "bridge", b)
    # A crash's leftovers: b's veth vanished, the bridge vanished (as after a reboot,
    # though a's endpoint is gone with it then too), and an owned link the store forgot.
    netlink.delete_link(eb.host_veth)
    stray = f"{nets.veth_prefix}zz"
    subprocess.run(["ip", "link", "add", stray, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", stray, "alias", f"{nets.owner}:ep:gone"], check=True)
    done = nets.reconcile(live_containers={"a", "b"})
    assert done["endpoints"] == [eb.id] and done["links"] == [stray]
    assert [e.id for e in nets.endpoints()] == [ea.id] and ping(a, default.gateway)
    # Container b is gone: its namespace file is removed; a stays.
    done = nets.reconcile(live_containers={"a"})
    assert done["netns"] == ["b"] and not os.path.exists(b) and netlink.is_netns(a)
    netlink.delete_link(default.bridge)
    done = nets.reconcile(live_containers={"a"})
    assert done["bridges"] == [default.bridge] and netlink.link_exists(default.bridge)
    # A veth outlives its bridge, unplugged: reconcile plugs it into the new one.
    assert done["endpoints"] == [] and ping(a, default.gateway)
