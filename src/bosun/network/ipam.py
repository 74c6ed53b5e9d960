"""IPv4 address management as pure functions: subnet choice from Docker's default pools,
validation of a network's subnet / gateway / ip-range, the next free address, and Docker's
MAC derivation. The SQLite store (store.py) calls these inside its transactions; nothing here
touches the kernel or the database."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from bosun.network.errors import AddressExhausted, Conflict, InvalidParameter

# Docker's default-address-pools: 172.17-31.0.0/16, then 192.168.0.0/16 cut into /20s.
# 172.17.0.0/16 is docker0's on a host that also runs Docker, so `bridge` prefers 172.18.
DEFAULT_BRIDGE_SUBNET = IPv4Network("172.18.0.0/16")


def default_pools() -> Iterator[IPv4Network]:
    for second in range(17, 32):
        yield IPv4Network(f"172.{second}.0.0/16")
    yield from IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def parse_pools(specs: Iterable[dict]) -> list[IPv4Network]:
    """Daemon config `default-address-pools` ([{"base": "10.10.0.0/16", "size": 24}, …]) as
    the subnets new networks are taken from, in order."""
    out: list[IPv4Network] = []
    for spec in specs:
        if not isinstance(spec, dict) or "base" not in spec or "size" not in spec:
            raise InvalidParameter(f"invalid default address pool {spec!r}: it needs a base "
                                   "and a size")
        try:
            base = IPv4Network(str(spec["base"]))
            size = int(spec["size"])
        except (ValueError, TypeError) as e:
            raise InvalidParameter(f"invalid default address pool {spec!r}: {e}") from None
        if not base.prefixlen <= size <= 30:
            raise InvalidParameter(f"invalid pools size: {size} (the base {base} is /"
                                   f"{base.prefixlen}; a size must be from there to 30)")
        out.extend(base.subnets(new_prefix=size))
    return out


def choose_subnet(in_use: Iterable[IPv4Network], preferred: IPv4Network | None = None,
                  pools: Iterable[IPv4Network] | None = None) -> IPv4Network:
    """The first pool (`preferred` first) overlapping nothing in `in_use`: the host's routes
    and the other networks' subnets. A default route (/0) never counts as a collision."""
    taken = [n for n in in_use if n.prefixlen > 0]
    candidates = list(pools if pools is not None else default_pools())
    if preferred is not None:
        candidates.insert(0, preferred)
    for net in candidates:
        if not any(net.overlaps(t) for t in taken):
            return net
    raise AddressExhausted("could not find an available, non-overlapping IPv4 address pool "
                           "among the defaults to assign to the network")


@dataclass(frozen=True)
class Pool:
    """A network's addressing: allocations come from `range` (the ip-range, or the whole
    subnet), never the network/broadcast address nor the gateway."""
    subnet: IPv4Network
    gateway: IPv4Address
    range: IPv4Network

    @property
    def first(self) -> int:
        # The subnet's network address is never handed out, even when the range starts there.
        return max(int(self.range.network_address), int(self.subnet.network_address) + 1)

    @property
    def last(self) -> int:
        return min(int(self.range.broadcast_address), int(self.subnet.broadcast_address) - 1)

    def usable(self, ip: IPv4Address) -> bool:
        """Whether `ip` may be an endpoint's address (static addresses may lie outside the
        ip-range, as in Docker, but must be in the subnet)."""
        n = int(ip)
        return (ip in self.subnet and ip != self.gateway
                and int(self.subnet.network_address) < n < int(self.subnet.broadcast_address))


def make_pool(subnet: str, gateway: str | None = None, ip_range: str | None = None) -> Pool:
    """Validate a network's IPAM config the way `docker network create` does."""
    try:
        net = IPv4Network(subnet, strict=False)
    except ValueError as e:
        raise InvalidParameter(f"invalid subnet {subnet!r}: {e}") from None
    if IPv4Address(subnet.split("/")[0]) != net.network_address:
        # 10.1.2.3/16 names a host inside the subnet: Docker refuses it too.
        raise InvalidParameter(f"invalid subnet {subnet}: it should be {net}")
    if net.prefixlen > 30:
        raise InvalidParameter(f"subnet {net} is too small: it has no room for endpoints")
    rng = net
    if ip_range:
        try:
            rng = IPv4Network(ip_range, strict=False)
        except ValueError as e:
            raise InvalidParameter(f"invalid ip-range {ip_range!r}: {e}") from None
        if not rng.subnet_of(net):
            raise InvalidParameter(f"ip-range {rng} is not within subnet {net}")
    if gateway:
        try:
            gw = IPv4Address(gateway)
        except ValueError as e:
            raise InvalidParameter(f"invalid gateway {gateway!r}: {e}") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise InvalidParameter(f"gateway {gw} is not a host address of subnet {net}")
    else:
        gw = net.network_address + 1
    pool = Pool(net, gw, rng)
    if pool.first > pool.last:
        raise InvalidParameter(f"ip-range {rng} has no usable address in subnet {net}")
    return pool


def next_free(pool: Pool, allocated: Collection[IPv4Address], after: IPv4Address | None
              ) -> IPv4Address:
    """The first free address after `after` (the last one handed out), wrapping around:
    serial allocation as Docker's IPAM does, so a released address is not reused at once
    (peers may still hold it in their ARP caches)."""
    taken = {int(a) for a in allocated}
    taken.add(int(pool.gateway))
    first, last = pool.first, pool.last
    start = int(after) + 1 if after is not None and first <= int(after) < last else first
    for n in range(start, last + 1):
        if n not in taken:
            return IPv4Address(n)
    for n in range(first, start):
        if n not in taken:
            return IPv4Address(n)
    raise AddressExhausted(f"no available IPv4 addresses on network range {pool.range}")


def check_static(pool: Pool, ip: str, allocated: Collection[IPv4Address]) -> IPv4Address:
    try:
        addr = IPv4Address(ip)
    except ValueError as e:
        raise InvalidParameter(f"invalid IPv4 address {ip!r}: {e}") from None
    if not pool.usable(addr):
        raise InvalidParameter(f"address {addr} is not a usable host address of subnet "
                               f"{pool.subnet} (gateway {pool.gateway})")
    if addr in allocated:
        raise Conflict(f"address {addr} is already in use on this network")
    return addr


def mac_for(ip: IPv4Address) -> str:
    """Docker's container MAC: 02:42 (locally administered) then the four IPv4 bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def check_mac(mac: str) -> str:
    parts = mac.lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        raise InvalidParameter(f"invalid MAC address {mac!r}")
    if int(parts[0], 16) & 1:
        raise InvalidParameter(f"MAC address {mac} is a multicast address")
    return ":".join(parts)


def parse_network(value: str) -> IPv4Network:
    return ipaddress.IPv4Network(value, strict=False)
