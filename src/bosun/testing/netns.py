"""Network fixtures for tests: a namespace standing for the world beyond the host."""

from __future__ import annotations

import ipaddress
import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network


def _free_link_subnet(version: int) -> IPv4Network | IPv6Network:
    """A point-to-point subnet overlapping none of the host's routes: a /30 of 10.254/16, or
    a /64 of a random ULA prefix."""
    from bosun.network import netlink

    used = [r for r in netlink.host_routes(version) if r.prefixlen]
    for _ in range(100):
        if version == 4:
            sub = IPv4Network(f"10.254.{random.randrange(256)}.{random.randrange(64) * 4}/30")
        else:
            sub = IPv6Network((b"\xfd" + random.randbytes(7) + bytes(8), 64))
        if not any(sub.overlaps(r) for r in used):
            return sub
    raise RuntimeError(f"no free IPv{version} subnet for the outside namespace")


@contextmanager
def outside_world(path: str, host_if: str, version: int = 4
                  ) -> Iterator[tuple[IPv4Address | IPv6Address, IPv4Address | IPv6Address]]:
    """A network namespace at `path` linked to the host by its own veth (`host_if` on the
    host side) with a subnet of IP `version` that overlaps none of the host's routes: routed
    by the host, not a bridge. Yields (the host's address on that link, the namespace's
    address); removes it all afterwards."""
    from bosun.network import netlink

    sub = _free_link_subnet(version)
    host_ip, far_ip = sub.network_address + 1, sub.network_address + 2
    # IPv6: usable at once (no duplicate address detection on a link of two)
    nodad = ["nodad"] if version == 6 else []
    netlink.create_netns(path)
    try:
        subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0",
                        "netns", path], check=True)
        subprocess.run(["ip", "addr", "add", f"{host_ip}/{sub.prefixlen}", "dev", host_if,
                        *nodad], check=True)
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
        for cmd in (["ip", "addr", "add", f"{far_ip}/{sub.prefixlen}", "dev", "eth0", *nodad],
                    ["ip", "link", "set", "eth0", "up"]):
            subprocess.run(["nsenter", f"--net={path}", *cmd], check=True)
        yield ipaddress.ip_address(host_ip), ipaddress.ip_address(far_ip)
    finally:
        netlink.delete_link(host_if)
        netlink.remove_netns(path)


# Accepts connections, sends back the peer's address (run in the "outside" namespace).
_PEER_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
print('ready', flush=True)
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode() + b'\n'); c.close()
"""


@contextmanager
def peer_echo_outside(path: str, host_if: str, port: int, version: int = 4
                      ) -> Iterator[tuple[IPv4Address | IPv6Address, IPv4Address | IPv6Address]]:
    """`outside_world` with a server on `port` in it that answers every connection with the
    address it came from. Yields (its address, the host's address on that link)."""
    import sys

    with outside_world(path, host_if, version) as (host_ip, far_ip):
        server = subprocess.Popen(["nsenter", f"--net={path}", sys.executable, "-c",
                                   _PEER_ECHO, str(far_ip), str(port)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError("the outside server did not start")
            yield far_ip, host_ip
        finally:
            server.kill()
            server.wait()
