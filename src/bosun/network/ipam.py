"""Address management for both families as pure functions: subnet choice from Docker's
default pools (IPv4) or a ULA prefix (IPv6), validation of a network's subnet / gateway /
ip-range, the next free address, and Docker's MAC derivation. The SQLite store (store.py)
calls these inside its transactions; nothing here touches the kernel or the database."""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from bosun.network.errors import AddressExhausted, Conflict, InvalidParameter

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Docker's default-address-pools: 172.17-31.0.0/16, then 192.168.0.0/16 cut into /20s.
# 172.17.0.0/16 is docker0's on a host that also runs Docker, so `bridge` prefers 172.18.
DEFAULT_BRIDGE_SUBNET = IPv4Network("172.18.0.0/16")
# At most this many subnets of a pool base are looked at (an IPv6 base may hold 2**56).
_MAX_POOL_SUBNETS = 1 << 16


def default_pools() -> Iterator[IPv4Network]:
    for second in range(17, 32):
        yield IPv4Network(f"172.{second}.0.0/16")
    yield from IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def ula_pools(seed: str) -> Iterator[IPv6Network]:
    """Docker 27+'s IPv6 default: /64s of a ULA /48 whose 40-bit Global ID derives from a
    stable per-engine value (RFC 4193 3.2.2 loosely, as moby does with its host ID)."""
    gid = hashlib.sha256(seed.encode()).digest()[:5]
    base = IPv6Network((b"\xfd" + gid + bytes(10), 48))
    return base.subnets(new_prefix=64)


def _network(text: str, what: str, version: int | None = None) -> IPNetwork:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except (ValueError, TypeError) as e:
        raise InvalidParameter(f"invalid {what} {text!r}: {e}") from None
    if version is not None and net.version != version:
        raise InvalidParameter(f"invalid {what} {text}: not an IPv{version} network")
    return net


def _address(text: str, what: str, version: int) -> IPAddress:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError as e:
        raise InvalidParameter(f"invalid {what} {text!r}: {e}") from None
    if addr.version != version:
        raise InvalidParameter(f"invalid {what} {text}: not an IPv{version} address")
    return addr


def _max_prefix(net: IPNetwork) -> int:
    # Room for the gateway and one endpoint besides the network (and v4 broadcast) address.
    return net.max_prefixlen - 2


class Pools:
    """Where new networks' subnets come from: (base, size) pairs, cut into subnets of that
    size lazily, in order, at each iteration."""

    def __init__(self, bases: Iterable[tuple[IPNetwork, int]]) -> None:
        self.bases = list(bases)

    def __iter__(self) -> Iterator[IPNetwork]:
        for base, size in self.bases:
            yield from itertools.islice(base.subnets(new_prefix=size), _MAX_POOL_SUBNETS)

    def __bool__(self) -> bool:
        return bool(self.bases)

    def of(self, version: int) -> Pools:
        return Pools((b, s) for b, s in self.bases if b.version == version)


def parse_pools(specs: Iterable[dict]) -> Pools:
    """Daemon config `default-address-pools` ([{"base": "10.10.0.0/16", "size": 24}, …],
    IPv6 bases too) as the subnets new networks are taken from, in order."""
    out: list[tuple[IPNetwork, int]] = []
    for spec in specs:
        if not isinstance(spec, dict) or "base" not in spec or "size" not in spec:
            raise InvalidParameter(f"invalid default address pool {spec!r}: it needs a base "
                                   "and a size")
        base = _network(str(spec["base"]), f"default address pool {spec!r}:")
        try:
            size = int(spec["size"])
        except (ValueError, TypeError) as e:
            raise InvalidParameter(f"invalid default address pool {spec!r}: {e}") from None
        if not base.prefixlen <= size <= _max_prefix(base):
            raise InvalidParameter(f"invalid pools size: {size} (the base {base} is /"
                                   f"{base.prefixlen}; a size must be from there to "
                                   f"{_max_prefix(base)})")
        out.append((base, size))
    return Pools(out)


def choose_subnet(in_use: Iterable[IPNetwork], preferred: IPNetwork | None = None,
                  pools: Iterable[IPNetwork] | None = None, version: int = 4) -> IPNetwork:
    """The first pool (`preferred` first) overlapping nothing in `in_use`: the host's routes
    and the other networks' subnets. A default route (/0) never counts as a collision."""
    taken = [n for n in in_use if n.prefixlen > 0 and n.version == version]
    candidates = itertools.chain([preferred] if preferred is not None else [],
                                 pools if pools is not None else default_pools())
    for net in candidates:
        if net.version == version and not any(net.overlaps(t) for t in taken):
            return net
    raise AddressExhausted(f"could not find an available, non-overlapping IPv{version} "
                           "address pool among the defaults to assign to the network")


@dataclass(frozen=True)
class Pool:
    """A network's addressing in one family: allocations come from `range` (the ip-range, or
    the whole subnet), never the subnet's network address (nor IPv4's broadcast) nor the
    gateway — as Docker's IPAM, which reserves the first address of an IPv6 subnet too."""
    subnet: IPNetwork
    gateway: IPAddress
    range: IPNetwork

    @property
    def version(self) -> int:
        return self.subnet.version

    @property
    def _top(self) -> int:
        """The last host address of the subnet (IPv6 has no broadcast address)."""
        return int(self.subnet.broadcast_address) - (self.version == 4)

    @property
    def first(self) -> int:
        # The subnet's network address is never handed out, even when the range starts there.
        return max(int(self.range.network_address), int(self.subnet.network_address) + 1)

    @property
    def last(self) -> int:
        return min(int(self.range.broadcast_address), self._top)

    def usable(self, ip: IPAddress) -> bool:
        """Whether `ip` may be an endpoint's address (static addresses may lie outside the
        ip-range, as in Docker, but must be in the subnet)."""
        return (ip.version == self.version and ip in self.subnet and ip != self.gateway
                and int(self.subnet.network_address) < int(ip) <= self._top)


def make_pool(subnet: str, gateway: str | None = None, ip_range: str | None = None,
              version: int | None = None) -> Pool:
    """Validate a network's IPAM config the way `docker network create` does."""
    net = _network(subnet, "subnet", version)
    if ipaddress.ip_address(subnet.split("/")[0]) != net.network_address:
        # 10.1.2.3/16 names a host inside the subnet: Docker refuses it too.
        raise InvalidParameter(f"invalid subnet {subnet}: it should be {net}")
    if net.prefixlen > _max_prefix(net):
        raise InvalidParameter(f"subnet {net} is too small: it has no room for endpoints")
    rng = net
    if ip_range:
        rng = _network(ip_range, "ip-range", net.version)
        if not rng.subnet_of(net):
            raise InvalidParameter(f"ip-range {rng} is not within subnet {net}")
    if gateway:
        gw = _address(gateway, "gateway", net.version)
        if gw not in net or gw == net.network_address or \
                (net.version == 4 and gw == net.broadcast_address):
            raise InvalidParameter(f"gateway {gw} is not a host address of subnet {net}")
    else:
        gw = net.network_address + 1
    pool = Pool(net, gw, rng)
    if pool.first > pool.last:
        raise InvalidParameter(f"ip-range {rng} has no usable address in subnet {net}")
    return pool


def next_free(pool: Pool, allocated: Collection[IPAddress], after: IPAddress | None
              ) -> IPAddress:
    """The first free address after `after` (the last one handed out), wrapping around:
    serial allocation as Docker's IPAM does, so a released address is not reused at once
    (peers may still hold it in their ARP/neighbour caches). Only taken addresses are
    stepped over, so a /64 costs no more than a /24."""
    taken = {int(a) for a in allocated}
    taken.add(int(pool.gateway))
    first, last = pool.first, pool.last
    start = int(after) + 1 if after is not None and first <= int(after) < last else first
    for n in itertools.chain(range(start, last + 1), range(first, start)):
        if n not in taken:
            return type(pool.gateway)(n)
    raise AddressExhausted(f"no available IPv{pool.version} addresses on network range "
                           f"{pool.range}")


def check_static(pool: Pool, ip: str, allocated: Collection[IPAddress]) -> IPAddress:
    addr = _address(ip, f"IPv{pool.version} address", pool.version)
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
