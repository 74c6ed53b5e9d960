"""Networks, endpoints (IPAM allocations) and published ports in SQLite.

WAL mode, one transaction per change, taken with BEGIN IMMEDIATE so that the read (which
addresses are taken?) and the write (take one) happen under the database's write lock:
concurrent attaches, from threads or processes, never get the same address, and the
UNIQUE(network_id, ip) constraint backs that up. Every call opens its own connection
(network changes are rare next to their netlink work, and a connection is never shared
between threads nor across fork()).

Schema (version 2; version 1 had no *6 columns, they are added in place):
    networks(id, name UNIQUE, driver, bridge UNIQUE, subnet, gateway, ip_range, internal,
             options JSON, labels JSON, created, last_ip,   last_ip: serial allocation point
             subnet6, gateway6, ip_range6, last_ip6)        NULL subnet6: no IPv6
    endpoints(id, network_id -> networks, container_id, ip, mac, host_veth UNIQUE, ifname,
              netns_path, aliases JSON, created, ip6)   UNIQUE(network_id, ip),
                                                        UNIQUE(network_id, ip6),
                                                        UNIQUE(network_id, container_id)
    ports(endpoint_id -> endpoints ON DELETE CASCADE, proto, host_ip, host_port,
          container_port)   PRIMARY KEY(proto, host_ip, host_port)
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from bosun.network import ipam
from bosun.network.errors import Conflict, InvalidParameter, NetworkError, NotFound

SCHEMA_VERSION = 2
_SCHEMA = [
    """CREATE TABLE networks (
        id       TEXT PRIMARY KEY,
        name     TEXT NOT NULL UNIQUE,
        driver   TEXT NOT NULL,
        bridge   TEXT NOT NULL UNIQUE,
        subnet   TEXT NOT NULL,
        gateway  TEXT NOT NULL,
        ip_range TEXT,
        internal INTEGER NOT NULL,
        options  TEXT NOT NULL,
        labels   TEXT NOT NULL,
        created  REAL NOT NULL,
        last_ip  TEXT
    )""",
    """CREATE TABLE endpoints (
        id           TEXT PRIMARY KEY,
        network_id   TEXT NOT NULL REFERENCES networks(id),
        container_id TEXT NOT NULL,
        ip           TEXT NOT NULL,
        mac          TEXT NOT NULL,
        host_veth    TEXT NOT NULL UNIQUE,
        ifname       TEXT NOT NULL,
        netns_path   TEXT NOT NULL,
        aliases      TEXT NOT NULL,
        created      REAL NOT NULL,
        UNIQUE (network_id, ip),
        UNIQUE (network_id, container_id)
    )""",
    "CREATE INDEX endpoints_container ON endpoints(container_id)",
    """CREATE TABLE ports (
        endpoint_id    TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
        proto          TEXT NOT NULL CHECK (proto IN ('tcp', 'udp', 'sctp')),
        host_ip        TEXT NOT NULL,
        host_port      INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
        container_port INTEGER NOT NULL CHECK (container_port BETWEEN 1 AND 65535),
        PRIMARY KEY (proto, host_ip, host_port)
    )""",
]
# Statements taking a database from version N-1 to N (a new one runs them all after _SCHEMA).
_MIGRATIONS = {
    2: ["ALTER TABLE networks ADD COLUMN subnet6 TEXT",
        "ALTER TABLE networks ADD COLUMN gateway6 TEXT",
        "ALTER TABLE networks ADD COLUMN ip_range6 TEXT",
        "ALTER TABLE networks ADD COLUMN last_ip6 TEXT",
        "ALTER TABLE endpoints ADD COLUMN ip6 TEXT",
        # NULLs are distinct in a UNIQUE index: IPv4-only endpoints never clash
        "CREATE UNIQUE INDEX endpoints_ip6 ON endpoints(network_id, ip6)"],
}
# Per family: the network's subnet and serial point, the endpoint's address.
_COLUMNS = {4: ("subnet", "last_ip", "ip"), 6: ("subnet6", "last_ip6", "ip6")}

OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
OPT_ICC = "com.docker.network.bridge.enable_icc"


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str
    bridge: str
    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None
    internal: bool
    options: dict[str, str]
    labels: dict[str, str]
    created: float
    subnet6: IPv6Network | None = None  # None: IPv4 only
    gateway6: IPv6Address | None = None
    ip_range6: IPv6Network | None = None

    @property
    def pool(self) -> ipam.Pool:
        return ipam.Pool(self.subnet, self.gateway, self.ip_range or self.subnet)

    @property
    def pool6(self) -> ipam.Pool | None:
        if self.subnet6 is None:
            return None
        return ipam.Pool(self.subnet6, self.gateway6, self.ip_range6 or self.subnet6)

    def pool_of(self, version: int) -> ipam.Pool | None:
        return self.pool if version == 4 else self.pool6

    @property
    def ipv6(self) -> bool:
        return self.subnet6 is not None

    @property
    def mtu(self) -> int:
        return int(self.options.get(OPT_MTU) or 1500)

    @property
    def masquerade(self) -> bool:
        return _flag(self.options.get(OPT_MASQUERADE), True) and not self.internal

    @property
    def icc(self) -> bool:
        return _flag(self.options.get(OPT_ICC), True)


@dataclass(frozen=True)
class Endpoint:
    id: str
    network_id: str
    container_id: str
    ip: IPv4Address
    mac: str
    host_veth: str
    ifname: str
    netns_path: str
    aliases: tuple[str, ...]
    created: float
    # From the network, for the caller's convenience (inspect, /etc/hosts, routes).
    network_name: str
    bridge: str
    subnet: IPv4Network
    gateway: IPv4Address
    internal: bool
    mtu: int
    ip6: IPv6Address | None = None  # None: the network has no IPv6
    subnet6: IPv6Network | None = None
    gateway6: IPv6Address | None = None

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    @property
    def prefixlen6(self) -> int:
        return self.subnet6.prefixlen if self.subnet6 is not None else 0


@dataclass(frozen=True)
class PortBinding:
    endpoint_id: str
    proto: str
    host_ip: IPv4Address
    host_port: int
    container_port: int
    # From the endpoint, for the firewall rules.
    container_ip: IPv4Address
    bridge: str


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise InvalidParameter(f"invalid boolean option value {value!r}")


def _opt(kind, value):
    return kind(value) if value else None


def _network(row: Sequence) -> Network:
    return Network(id=row[0], name=row[1], driver=row[2], bridge=row[3],
                   subnet=IPv4Network(row[4]), gateway=IPv4Address(row[5]),
                   ip_range=_opt(IPv4Network, row[6]), internal=bool(row[7]),
                   options=json.loads(row[8]), labels=json.loads(row[9]), created=row[10],
                   subnet6=_opt(IPv6Network, row[11]), gateway6=_opt(IPv6Address, row[12]),
                   ip_range6=_opt(IPv6Network, row[13]))


_NET_COLS = "n.id, n.name, n.driver, n.bridge, n.subnet, n.gateway, n.ip_range, n.internal, " \
            "n.options, n.labels, n.created, n.subnet6, n.gateway6, n.ip_range6"
_EP_COLS = "e.id, e.network_id, e.container_id, e.ip, e.mac, e.host_veth, e.ifname, " \
           "e.netns_path, e.aliases, e.created, n.name, n.bridge, n.subnet, n.gateway, " \
           "n.internal, n.options, e.ip6, n.subnet6, n.gateway6"


def _endpoint(row: Sequence) -> Endpoint:
    return Endpoint(id=row[0], network_id=row[1], container_id=row[2], ip=IPv4Address(row[3]),
                    mac=row[4], host_veth=row[5], ifname=row[6], netns_path=row[7],
                    aliases=tuple(json.loads(row[8])), created=row[9], network_name=row[10],
                    bridge=row[11], subnet=IPv4Network(row[12]), gateway=IPv4Address(row[13]),
                    internal=bool(row[14]),
                    mtu=int(json.loads(row[15]).get(OPT_MTU) or 1500),
                    ip6=_opt(IPv6Address, row[16]), subnet6=_opt(IPv6Network, row[17]),
                    gateway6=_opt(IPv6Address, row[18]))


def _port(row: Sequence) -> PortBinding:
    return PortBinding(endpoint_id=row[0], proto=row[1], host_ip=IPv4Address(row[2]),
                       host_port=row[3], container_port=row[4],
                       container_ip=IPv4Address(row[5]), bridge=row[6])


def _new_pool(c: sqlite3.Connection, version: int, subnet: str | None, gateway: str | None,
              ip_range: str | None, host_routes: list, preferred, pools) -> ipam.Pool:
    """A new network's pool in one family: the given subnet unless it overlaps another
    network's, or the first free one of `pools`."""
    col = _COLUMNS[version][0]
    others = [ipaddress.ip_network(r[0]) for r in
              c.execute(f"SELECT {col} FROM networks WHERE {col} IS NOT NULL")]
    if subnet:
        pool = ipam.make_pool(subnet, gateway, ip_range, version)
        for other in others:
            if pool.subnet.overlaps(other):
                raise Conflict(f"invalid pool request: Pool overlaps with other one "
                               f"on this address space ({other})")
        return pool
    chosen = ipam.choose_subnet([*host_routes, *others], preferred, pools, version)
    return ipam.make_pool(str(chosen))


def check_static(net: Network, version: int, ip: str,
                 allocated: Collection[ipam.IPAddress] = ()) -> ipam.IPAddress:
    """A static address for an endpoint on `net`: of a family the network has, usable in
    its subnet, not in `allocated`."""
    pool = net.pool_of(version)
    if pool is None:
        raise InvalidParameter(f"cannot use IPv{version} address {ip}: network {net.name} "
                               f"does not have IPv{version} enabled (--ipv{version})")
    return ipam.check_static(pool, ip, allocated)


def _take(c: sqlite3.Connection, net: Network, version: int, static: str | None
          ) -> ipam.IPAddress:
    """An address of `net` in one family for a new endpoint: `static` if usable and free,
    else the next free one after the network's serial point (which moves on)."""
    _, last_col, ip_col = _COLUMNS[version]
    pool = net.pool_of(version)
    taken = {ipaddress.ip_address(r[0]) for r in c.execute(
        f"SELECT {ip_col} FROM endpoints WHERE network_id = ? AND {ip_col} IS NOT NULL",
        (net.id,))}
    if static:
        return check_static(net, version, static, taken)
    last = c.execute(f"SELECT {last_col} FROM networks WHERE id = ?", (net.id,)).fetchone()[0]
    addr = ipam.next_free(pool, taken, ipaddress.ip_address(last) if last else None)
    c.execute(f"UPDATE networks SET {last_col} = ? WHERE id = ?", (str(addr), net.id))
    return addr


class NetworkStore:
    def __init__(self, path: str, timeout: float = 30.0):
        self.path = os.path.abspath(path)
        self.timeout = timeout
        from bosun import sqlitedb

        self._pool = sqlitedb.Pool(self.path, timeout, error=NetworkError)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        # 0600 from the start: SQLite would follow the umask, and -wal/-shm copy this mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        with self._tx() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                for statement in _SCHEMA:
                    c.execute(statement)
                c.execute("INSERT INTO schema_version VALUES (1)")
                row = (1,)
            if row[0] > SCHEMA_VERSION:
                raise NetworkError(f"{self.path}: network database schema {row[0]}, this "
                                   f"bosun knows {SCHEMA_VERSION}")
            for version in range(row[0] + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    c.execute(statement)
                c.execute("UPDATE schema_version SET version = ?", (version,))

    @contextmanager
    def _tx(self, write: bool = True, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """`durable=False` for endpoints and ports: they describe kernel state that a power
        loss wipes anyway, so their commits skip the fsync (WAL keeps them across a crash
        of the process, and the next durable commit syncs them too)."""
        from bosun import sqlitedb

        with self._pool.connection() as conn:
            # per transaction: pooled connections serve both kinds
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            with sqlitedb.transaction(conn, write):
                yield conn

    def close(self) -> None:
        """Close the idle connections (at shutdown; used again, the store reconnects)."""
        self._pool.close()

    # -- networks -------------------------------------------------------------------------

    def add_network(self, name: str, *, bridge: str | Callable[[str], str], driver: str = "bridge",
                    subnet: str | None = None, gateway: str | None = None,
                    ip_range: str | None = None, internal: bool = False,
                    options: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                    host_routes: Iterable[ipam.IPNetwork] = (),
                    preferred: IPv4Network | None = None,
                    network_id: str | None = None,
                    pools: Iterable[ipam.IPNetwork] | None = None, ipv6: bool = False,
                    subnet6: str | None = None, gateway6: str | None = None,
                    ip_range6: str | None = None,
                    pools6: Iterable[IPv6Network] | None = None) -> Network:
        """Record a network. Without `subnet`, the first of `pools` (Docker's defaults when
        None; `preferred` first) that overlaps neither `host_routes` nor another network.
        With `ipv6`, the same for `subnet6` from `pools6` (a ULA prefix when None). `bridge`
        may be a function of the new network's id (br-<12 hex>)."""
        if not name:
            raise InvalidParameter("network name is empty")
        options, labels = dict(options or {}), dict(labels or {})
        for sub, gw, rng in ((subnet, gateway, ip_range), (subnet6, gateway6, ip_range6)):
            if gw and not sub:
                raise InvalidParameter("a gateway needs a subnet (--subnet)")
            if rng and not sub:
                raise InvalidParameter("an ip-range needs a subnet (--subnet)")
        if subnet6 and not ipv6:
            raise InvalidParameter(f"IPv6 subnet {subnet6} given, but IPv6 is not enabled "
                                   "on the network (--ipv6)")
        for key in (OPT_MASQUERADE, OPT_ICC):
            _flag(options.get(key), True)  # refuse a bad value now, not at a later render
        if options.get(OPT_MTU):
            try:
                mtu = int(options[OPT_MTU])
            except ValueError:
                raise InvalidParameter(f"invalid MTU {options[OPT_MTU]!r}") from None
            if not 68 <= mtu <= 65535:
                raise InvalidParameter(f"invalid MTU {mtu}: it must be within 68-65535")
        net_id = network_id or secrets.token_hex(32)
        br = bridge(net_id) if callable(bridge) else bridge
        with self._tx() as c:
            if c.execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"network with name {name} already exists")
            if c.execute("SELECT 1 FROM networks WHERE bridge = ?", (br,)).fetchone():
                raise Conflict(f"bridge name {br} is already used by another network")
            host_routes = list(host_routes)
            pool = _new_pool(c, 4, subnet, gateway, ip_range, host_routes, preferred, pools)
            pool6 = _new_pool(c, 6, subnet6, gateway6, ip_range6, host_routes, None,
                              pools6 if pools6 is not None else ipam.ula_pools(self.path)
                              ) if ipv6 else None
            c.execute("INSERT INTO networks (id, name, driver, bridge, subnet, gateway, "
                      "ip_range, internal, options, labels, created, subnet6, gateway6, "
                      "ip_range6) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                      (net_id, name, driver, br, str(pool.subnet), str(pool.gateway),
                       str(pool.range) if ip_range else None, int(internal),
                       json.dumps(options, sort_keys=True), json.dumps(labels, sort_keys=True),
                       time.time(), pool6 and str(pool6.subnet), pool6 and str(pool6.gateway),
                       str(pool6.range) if pool6 and ip_range6 else None))
            return _network(c.execute(f"SELECT {_NET_COLS} FROM networks n WHERE id = ?",
                                      (net_id,)).fetchone())

    def networks(self) -> list[Network]:
        with self._tx(write=False) as c:
            return [_network(r) for r in
                    c.execute(f"SELECT {_NET_COLS} FROM networks n ORDER BY n.created")]

    def network(self, ref: str) -> Network:
        """By name, full id, or unique id prefix (Docker's order of precedence)."""
        with self._tx(write=False) as c:
            return self._resolve(c, ref)

    def _resolve(self, c: sqlite3.Connection, ref: str) -> Network:
        for sql in ("n.name = ?", "n.id = ?"):
            row = c.execute(f"SELECT {_NET_COLS} FROM networks n WHERE {sql}", (ref,)).fetchone()
            if row:
                return _network(row)
        # an ID prefix is at most an ID long (a longer pattern is too complex for LIKE)
        if 0 < len(ref) <= 64 and all(ch in "0123456789abcdef" for ch in ref):
            rows = c.execute(f"SELECT {_NET_COLS} FROM networks n WHERE n.id LIKE ?",
                             (ref + "%",)).fetchall()
            if len(rows) == 1:
                return _network(rows[0])
            if len(rows) > 1:
                raise Conflict(f"network {ref} is ambiguous ({len(rows)} matches found)")
        raise NotFound(f"network {ref} not found")

    def remove_network(self, ref: str) -> Network:
        """Delete a network's record; refused while it has endpoints."""
        with self._tx() as c:
            net = self._resolve(c, ref)
            n = c.execute("SELECT COUNT(*) FROM endpoints WHERE network_id = ?",
                          (net.id,)).fetchone()[0]
            if n:
                raise Conflict(f"error while removing network: network {net.name} id {net.id} "
                               f"has active endpoints ({n})")
            c.execute("DELETE FROM networks WHERE id = ?", (net.id,))
            return net

    # -- endpoints ------------------------------------------------------------------------

    def allocate(self, network: str, container_id: str, *, netns_path: str,
                 ifname: str | None = None, ifnames_in_use: Iterable[str] = (),
                 veth_prefix: str = "veth", ip: str | None = None, mac: str | None = None,
                 aliases: Iterable[str] = (), ip6: str | None = None) -> Endpoint:
        """Take an address (static `ip`, or the next free one), and an IPv6 one likewise on
        an IPv6 network (static `ip6`), and record the endpoint.
        Without `ifname`, the first ethN that neither `ifnames_in_use` (the namespace's
        links) nor another endpoint in the same namespace has."""
        if len(veth_prefix) > 8:
            raise InvalidParameter(f"veth prefix {veth_prefix!r} is longer than 8 characters")
        if mac is not None:
            mac = ipam.check_mac(mac)
        with self._tx(durable=False) as c:
            net = self._resolve(c, network)
            if c.execute("SELECT 1 FROM endpoints WHERE network_id = ? AND container_id = ?",
                         (net.id, container_id)).fetchone():
                raise Conflict(f"container {container_id[:12]} is already attached to "
                               f"network {net.name}")
            addr = _take(c, net, 4, ip)
            addr6 = _take(c, net, 6, ip6) if net.ipv6 or ip6 else None
            if ifname is None:
                used = set(ifnames_in_use) | {r[0] for r in c.execute(
                    "SELECT ifname FROM endpoints WHERE netns_path = ?", (netns_path,))}
                ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
            ep_id = secrets.token_hex(32)
            # 15 characters at most (IFNAMSIZ); the random part makes a clash unlikely and
            # the UNIQUE column makes it an error instead of a shared name.
            veth = veth_prefix + secrets.token_hex(4)[:15 - len(veth_prefix)]
            c.execute("INSERT INTO endpoints (id, network_id, container_id, ip, mac, "
                      "host_veth, ifname, netns_path, aliases, created, ip6) "
                      "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                      (ep_id, net.id, container_id, str(addr), mac or ipam.mac_for(addr), veth,
                       ifname, netns_path, json.dumps(list(aliases)), time.time(),
                       addr6 and str(addr6)))
            return self._endpoint(c, ep_id)

    @staticmethod
    def _endpoint(c: sqlite3.Connection, ep_id: str) -> Endpoint:
        row = c.execute(f"SELECT {_EP_COLS} FROM endpoints e JOIN networks n "
                        f"ON n.id = e.network_id WHERE e.id = ?", (ep_id,)).fetchone()
        if row is None:
            raise NotFound(f"endpoint {ep_id} not found")
        return _endpoint(row)

    def endpoint(self, ep_id: str) -> Endpoint:
        with self._tx(write=False) as c:
            return self._endpoint(c, ep_id)

    def find_endpoint(self, network: str, container_id: str) -> Endpoint:
        with self._tx(write=False) as c:
            net = self._resolve(c, network)
            row = c.execute("SELECT id FROM endpoints WHERE network_id = ? AND container_id = ?",
                            (net.id, container_id)).fetchone()
            if row is None:
                raise NotFound(f"container {container_id[:12]} is not connected to network "
                               f"{net.name}")
            return self._endpoint(c, row[0])

    def endpoints(self, network_id: str | None = None,
                  container_id: str | None = None) -> list[Endpoint]:
        where, params = [], []
        if network_id is not None:
            where.append("e.network_id = ?")
            params.append(network_id)
        if container_id is not None:
            where.append("e.container_id = ?")
            params.append(container_id)
        sql = (f"SELECT {_EP_COLS} FROM endpoints e JOIN networks n ON n.id = e.network_id"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY e.created")
        with self._tx(write=False) as c:
            return [_endpoint(r) for r in c.execute(sql, params)]

    def release(self, ep_id: str) -> bool:
        """Free an endpoint's address and its published ports (gone already is fine).
        Returns whether it had published ports: the firewall then needs re-rendering."""
        with self._tx(durable=False) as c:
            had_ports = c.execute("SELECT 1 FROM ports WHERE endpoint_id = ?",
                                  (ep_id,)).fetchone() is not None
            c.execute("DELETE FROM endpoints WHERE id = ?", (ep_id,))
            return had_ports

    # -- published ports ------------------------------------------------------------------

    def add_port(self, ep_id: str, proto: str, host_ip: str, host_port: int,
                 container_port: int, port_range: tuple[int, int] = (32768, 60999),
                 port_free: Callable[[str, str, int], bool] = lambda proto, ip, port: True
                 ) -> PortBinding:
        """Record a published port. host_port 0 takes a free one from `port_range` (the
        host's ephemeral range, as Docker does); `port_free` may veto ports already bound
        by other programs on the host."""
        proto = proto.lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidParameter(f"invalid protocol {proto!r}")
        try:
            hip = IPv4Address(host_ip or "0.0.0.0")
        except ValueError as e:
            raise InvalidParameter(f"invalid host IP {host_ip!r}: {e}") from None
        if not 0 <= host_port <= 65535 or not 1 <= container_port <= 65535:
            raise InvalidParameter(f"invalid port: {host_port}:{container_port}")
        with self._tx(durable=False) as c:
            self._endpoint(c, ep_id)
            used = {(r[0], r[1]) for r in c.execute(
                "SELECT host_ip, host_port FROM ports WHERE proto = ?", (proto,))}

            def clash(port: int) -> bool:
                # 0.0.0.0 binds every address, so it clashes with any address on that port.
                return any(p == port and (ip == str(hip) or "0.0.0.0" in (ip, str(hip)))
                           for ip, p in used)

            if host_port == 0:
                lo, hi = port_range
                host_port = next((p for p in range(lo, hi + 1)
                                  if not clash(p) and port_free(proto, str(hip), p)), 0)
                if not host_port:
                    raise Conflict(f"no free host port in {lo}-{hi} for {proto}")
            elif clash(host_port):
                raise Conflict(f"Bind for {hip}:{host_port} failed: port is already allocated")
            c.execute("INSERT INTO ports VALUES (?,?,?,?,?)",
                      (ep_id, proto, str(hip), host_port, container_port))
        return next(p for p in self.ports(ep_id)
                    if (p.proto, p.host_ip, p.host_port) == (proto, hip, host_port))

    def remove_port(self, ep_id: str, proto: str, host_ip: str, host_port: int) -> bool:
        with self._tx(durable=False) as c:
            cur = c.execute("DELETE FROM ports WHERE endpoint_id = ? AND proto = ? AND "
                            "host_ip = ? AND host_port = ?",
                            (ep_id, proto.lower(), str(IPv4Address(host_ip or "0.0.0.0")),
                             host_port))
            return cur.rowcount > 0

    def ports(self, ep_id: str | None = None) -> list[PortBinding]:
        sql = ("SELECT p.endpoint_id, p.proto, p.host_ip, p.host_port, p.container_port, e.ip, "
               "n.bridge FROM ports p JOIN endpoints e ON e.id = p.endpoint_id "
               "JOIN networks n ON n.id = e.network_id")
        with self._tx(write=False) as c:
            rows = c.execute(sql + (" WHERE p.endpoint_id = ?" if ep_id else "")
                             + " ORDER BY p.proto, p.host_port, p.host_ip",
                             (ep_id,) if ep_id else ()).fetchall()
        return [_port(r) for r in rows]
