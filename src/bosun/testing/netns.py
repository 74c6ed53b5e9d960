"""Network fixtures for tests: a namespace standing for the world beyond the host."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network


@contextmanager
def outside_world(path: str, host_if: str) -> Iterator[tuple[IPv4Address, IPv4Address]]:
    """A network namespace at `path` linked to the host by its own veth (`host_if` on the
    host side) with a /30 that overlaps none of the host's routes: routed by the host, not a
    bridge. Yields (the host's address on that link, the namespace's address); removes it all
    afterwards."""
    from bosun.network import netlink

    used = netlink.host_routes()
    for _ in range(100):
        sub = IPv4Network(f"10.254.{random.randrange(256)}.{random.randrange(64) * 4}/30")
        if not any(sub.overlaps(r) for r in used if r.prefixlen):
            break
    host_ip, far_ip = list(sub.hosts())
    netlink.create_netns(path)
    try:
        subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0",
                        "netns", path], check=True)
        subprocess.run(["ip", "addr", "add", f"{host_ip}/30", "dev", host_if], check=True)
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
        for cmd in (["ip", "addr", "add", f"{far_ip}/30", "dev", "eth0"],
                    ["ip", "link", "set", "eth0", "up"]):
            subprocess.run(["nsenter", f"--net={path}", *cmd], check=True)
        yield host_ip, far_ip
    finally:
        netlink.delete_link(host_if)
        netlink.remove_netns(path)
