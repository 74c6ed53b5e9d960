"""The embedded DNS server of user-defined networks, as Docker's (127.0.0.11 in a container).

Three parts, usable on their own:

- `NameTable`: which container is on which network with which address and names (its name,
  network aliases, short ID), and each container's `--link` aliases. Who may see what is
  decided here: a container resolves only names on the networks it is on.
- `answer()`: one query → the reply for a local name, or None (not a container's name:
  forward it). `forward()` relays a query to upstream servers, raw, over UDP or TCP.
- `DnsServer`: per container, one UDP and one TCP socket bound to 127.0.0.11:53 inside the
  container's network namespace (made by a thread that entered it: setns() is per thread; a
  socket stays in the namespace it was made in). One thread serves every container's
  sockets with epoll; forwarding runs on a small worker pool and each TCP client on a
  thread of its own, so a slow upstream never holds up local answers. Binding 127.0.0.11 needs no DNAT: lo owns all of
  127.0.0.0/8.

Upstream queries leave from the daemon's (host) namespace, so host resolvers on loopback
(127.0.0.53) work, as with Docker's "host loopback" forwarding. A name that is some
container's, but not visible to the asking one, gets NXDOMAIN and is never forwarded: local
names do not leak upstream.
"""

from __future__ import annotations

import concurrent.futures
import errno
import ipaddress
import itertools
import logging
import os
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterable

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

log = logging.getLogger("bosun.network.dns")

ADDRESS = ("127.0.0.11", 53)
TTL = 600  # Docker's
UPSTREAM_TIMEOUT = 2.0
# Forwards queued or in flight, all containers together: beyond it a query is dropped (its
# client retries), so a container flooding a slow upstream cannot grow the daemon's memory.
MAX_PENDING = 256
MAX_TCP = 16  # TCP clients served at once (each a thread while connected)
_TCP_IDLE = 5.0
_EP = tuple[tuple[str, ...], str, tuple[str, ...]]  # (addresses, network name, names)
_FAMILY = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


class NameTable:
    """Thread-safe: the engine updates it from request threads, the server reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._eps: dict[str, dict[str, _EP]] = {}  # container → network id → endpoint
        self._links: dict[str, dict[str, str]] = {}  # container → alias → container
        # (name, IP version) → round-robin counter
        self._turn: dict[tuple[str, int], itertools.count] = {}

    def set_endpoint(self, container: str, network_id: str, network_name: str, ip: str,
                     names: Iterable[str], ip6: str | None = None) -> None:
        """`ip6`: the endpoint's IPv6 address, on an IPv6 network."""
        with self._lock:
            self._eps.setdefault(container, {})[network_id] = (
                tuple(a for a in (ip, ip6) if a), network_name,
                tuple(dict.fromkeys(_norm(n) for n in names if n)))

    def remove_endpoint(self, container: str, network_id: str) -> None:
        with self._lock:
            self._eps.get(container, {}).pop(network_id, None)

    def set_links(self, container: str, links: dict[str, str]) -> None:
        """`links`: alias → target container, resolvable by `container` alone."""
        with self._lock:
            self._links[container] = {_norm(a): t for a, t in links.items()}

    def remove_container(self, container: str) -> None:
        with self._lock:
            self._eps.pop(container, None)
            self._links.pop(container, None)

    def networks_of(self, container: str) -> set[str]:
        with self._lock:
            return set(self._eps.get(container, {}))

    def containers(self) -> set[str]:
        with self._lock:
            return set(self._eps) | set(self._links)

    def lookup(self, requester: str, name: str, turn: int | None = None
               ) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
        """Addresses (IPv4 then IPv6) `name` has for `requester`; `turn` (4 or 6): that
        family's come one further at each such call, for round-robin. [] for a name some
        container has elsewhere; None for no container's."""
        name = _norm(name)
        with self._lock:
            mine = self._eps.get(requester, {})
            target = self._links.get(requester, {}).get(name)
            if target is not None:  # a link alias: the target's addresses on shared networks
                found = {a for net, ep in self._eps.get(target, {}).items() if net in mine
                         for a in ep[0]}
            else:
                found, known = set(), False
                for eps in self._eps.values():
                    for net, (addrs, net_name, names) in eps.items():
                        # "name" and, as Docker, "name.<network>"
                        base, dot, suffix = name.rpartition(".")
                        if name in names or (dot and suffix == net_name.lower()
                                             and base in names):
                            known = True
                            if net in mine:
                                found.update(addrs)
                if not known:
                    return None
            out = []
            for version in (4, 6):
                group = sorted(a for a in map(ipaddress.ip_address, found)
                               if a.version == version)
                if turn == version and len(group) > 1:
                    n = next(self._turn.setdefault((name, version), itertools.count()))
                    group = group[n % len(group):] + group[:n % len(group)]
                out += group
            return out

    def reverse(self, requester: str, ip: str) -> str | None:
        """The PTR name of an address on one of the requester's networks ("name.network")."""
        want = ipaddress.ip_address(ip)
        with self._lock:
            mine = self._eps.get(requester, {})
            for eps in self._eps.values():
                for net, (addrs, net_name, names) in eps.items():
                    if net in mine and names and any(ipaddress.ip_address(a) == want
                                                     for a in addrs):
                        return f"{names[0]}.{net_name}"
        return None


# -- messages ----------------------------------------------------------------------------------

def _reply(query: dns.message.Message, rcode: int = dns.rcode.NOERROR) -> dns.message.Message:
    r = dns.message.make_response(query)
    r.flags |= dns.flags.RA
    r.set_rcode(rcode)
    return r


def answer(table: NameTable, requester: str,
           query: dns.message.Message) -> dns.message.Message | None:
    """The reply to `query` from `requester` if the name is local, else None (forward)."""
    if query.opcode() != dns.opcode.QUERY:
        return _reply(query, dns.rcode.NOTIMP)
    if len(query.question) != 1:
        return _reply(query, dns.rcode.FORMERR)
    q = query.question[0]
    if q.rdclass != dns.rdataclass.IN:
        return None
    if q.rdtype == dns.rdatatype.PTR:
        try:
            ip = dns.reversename.to_address(q.name)
        except (dns.exception.SyntaxError, ValueError):
            return None
        target = table.reverse(requester, ip)
        if target is None:
            return None
        r = _reply(query)
        r.flags |= dns.flags.AA
        r.answer.append(dns.rrset.from_text(q.name, TTL, "IN", "PTR", target + "."))
        return r
    # Each family turns on its own type's queries only (an AAAA asked alongside an A must
    # not turn the A answers); ANY turns IPv4's.
    ips = table.lookup(requester, q.name.to_text(),
                       turn=4 if q.rdtype == dns.rdatatype.ANY else _FAMILY.get(q.rdtype))
    if ips is None:
        return None
    if not ips:
        return _reply(query, dns.rcode.NXDOMAIN)
    r = _reply(query)
    r.flags |= dns.flags.AA
    for rdtype, version in _FAMILY.items():
        wanted = [str(a) for a in ips if a.version == version]
        if wanted and q.rdtype in (rdtype, dns.rdatatype.ANY):
            r.answer.append(dns.rrset.from_text_list(q.name, TTL, "IN", rdtype, wanted))
    # other types, or a family the name has no address in: an empty answer (the name exists)
    return r


def to_wire(reply: dns.message.Message, query: dns.message.Message, udp: bool) -> bytes:
    """`reply` in wire form; over UDP cut to what the client accepts (TC set)."""
    limit = max(512, query.payload) if udp and query.edns >= 0 else 512 if udp else 65535
    try:
        return reply.to_wire(max_size=limit)
    except dns.exception.TooBig:
        reply.flags |= dns.flags.TC
        reply.answer.clear()
        return reply.to_wire(max_size=limit)


def _error_wire(wire: bytes, rcode: int) -> bytes:
    """A header-only reply for a query too broken (or too unlucky) to parse."""
    qid, flags = struct.unpack("!HH", wire[:4])
    return struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


def forward(wire: bytes, upstreams: list[tuple[str, int]], tcp: bool = False,
            timeout: float = UPSTREAM_TIMEOUT) -> bytes | None:
    """Relay `wire` to each upstream in turn; the first reply to it, as it came (None if
    none answered)."""
    qid = wire[:2]
    for host, port in upstreams:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            if tcp:
                with socket.create_connection((host, port), timeout=timeout) as s:
                    s.sendall(struct.pack("!H", len(wire)) + wire)
                    data = _read_tcp_message(s)
            else:
                with socket.socket(family, socket.SOCK_DGRAM) as s:
                    s.settimeout(timeout)
                    s.connect((host, port))  # only this server's datagrams reach us
                    s.send(wire)
                    data = s.recv(65535)
                    while data[:2] != qid:  # a late answer to something else: skip it
                        data = s.recv(65535)
        except OSError as e:
            log.debug("upstream %s:%s: %s", host, port, e)
            continue
        if data and len(data) >= 12 and data[:2] == qid and data[2] & 0x80:
            return data
    return None


def _read_tcp_message(s: socket.socket) -> bytes | None:
    head = _read_exactly(s, 2)
    if head is None:
        return None
    return _read_exactly(s, struct.unpack("!H", head)[0])


def _read_exactly(s: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


# -- the server --------------------------------------------------------------------------------

class _Listener:
    __slots__ = ("container", "udp", "tcp", "upstreams", "conns")

    def __init__(self, container: str, udp: socket.socket, tcp: socket.socket,
                 upstreams: list[tuple[str, int]]) -> None:
        self.container, self.udp, self.tcp, self.upstreams = container, udp, tcp, upstreams
        self.conns: set[socket.socket] = set()  # accepted TCP connections being served


def _bind_pair(address: tuple[str, int]) -> tuple[socket.socket, socket.socket]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK |
                        socket.SOCK_CLOEXEC)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK |
                        socket.SOCK_CLOEXEC)
    try:
        udp.bind(address)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((address[0], udp.getsockname()[1]))  # port 0 (tests): the same one for both
        tcp.listen(16)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


class DnsServer:
    """Serves `table` to every container given to `open()`.

    `in_netns(path, fn)` runs `fn` inside the network namespace at `path` (the network
    layer's netlink.in_netns); a path of None means the caller's own namespace (tests)."""

    def __init__(self, table: NameTable,
                 in_netns: Callable[[str, Callable], object] | None = None,
                 workers: int = 4, timeout: float = UPSTREAM_TIMEOUT) -> None:
        self.table = table
        self.timeout = timeout
        self._in_netns = in_netns
        self._lock = threading.Lock()
        self._listeners: dict[str, _Listener] = {}
        self._by_fd: dict[int, tuple[_Listener, str]] = {}
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, "bosun-dns-worker")
        self._closed = False
        self._pending = threading.BoundedSemaphore(MAX_PENDING)
        self._tcp_slots = threading.BoundedSemaphore(MAX_TCP)
        self._thread = threading.Thread(target=self._serve, name="bosun-dns", daemon=True)
        self._thread.start()

    def open(self, container: str, netns_path: str | None,
             upstreams: Iterable[tuple[str, int]] = (),
             address: tuple[str, int] = ADDRESS) -> tuple[str, int]:
        """Listen for `container` (again: its old sockets are replaced); the bound address."""
        self.close_listener(container)
        if netns_path is None:
            udp, tcp = _bind_pair(address)
        else:
            udp, tcp = self._in_netns(netns_path, lambda: _bind_pair(address))
        lst = _Listener(container, udp, tcp, _usable(upstreams))
        with self._lock:
            if self._closed:
                udp.close()
                tcp.close()
                raise OSError(errno.ESHUTDOWN, "DNS server closed")
            self._listeners[container] = lst
            for sock, kind in ((udp, "udp"), (tcp, "tcp")):
                self._by_fd[sock.fileno()] = (lst, kind)
                self._epoll.register(sock.fileno(), select.EPOLLIN)
        return udp.getsockname()

    def set_upstreams(self, container: str, upstreams: Iterable[tuple[str, int]]) -> None:
        with self._lock:
            lst = self._listeners.get(container)
            if lst is not None:
                lst.upstreams = _usable(upstreams)

    def listening(self) -> set[str]:
        with self._lock:
            return set(self._listeners)

    def close_listener(self, container: str) -> None:
        """Close the container's sockets: its namespace can then go away."""
        with self._lock:
            lst = self._listeners.pop(container, None)
            if lst is None:
                return
            for sock in (lst.udp, lst.tcp):
                self._by_fd.pop(sock.fileno(), None)
                try:
                    self._epoll.unregister(sock.fileno())
                except OSError:
                    pass
                sock.close()
            for conn in list(lst.conns):  # they too hold the namespace: end them now
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for container in self.listening():
            self.close_listener(container)
        with self._lock:
            self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- the serving thread and its workers ------------------------------------------------

    def _serve(self) -> None:
        while True:
            try:
                events = self._epoll.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self._wake_r:
                    return
                with self._lock:
                    entry = self._by_fd.get(fd)
                if entry is None:
                    continue
                lst, kind = entry
                try:
                    if kind == "udp":
                        self._read_udp(lst)
                    else:
                        self._accept(lst)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:  # closed meanwhile, or the client vanished
                    log.debug("dns %s %s: %s", lst.container[:12], kind, e)
                except RuntimeError:  # the pool was shut down: closing
                    return

    def _accept(self, lst: _Listener) -> None:
        """A TCP client gets a thread of its own (idle clients must not hold up the
        forwarding pool), up to MAX_TCP at once; beyond, it is closed at once."""
        conn, _ = lst.tcp.accept()
        if not self._tcp_slots.acquire(blocking=False):
            conn.close()
            return
        threading.Thread(target=self._serve_tcp, args=(lst, conn), name="bosun-dns-tcp",
                         daemon=True).start()

    def _read_udp(self, lst: _Listener) -> None:
        while True:
            try:
                wire, peer = lst.udp.recvfrom(65535)
            except BlockingIOError:
                return
            reply = self._local(lst, wire, udp=True)
            if reply is not None:
                lst.udp.sendto(reply, peer)
            elif len(wire) >= 12 and self._pending.acquire(blocking=False):
                self._pool.submit(self._forward_udp, lst, wire, peer)

    def _local(self, lst: _Listener, wire: bytes, udp: bool) -> bytes | None:
        """The reply when it needs no upstream, else None."""
        if len(wire) < 12:
            return None  # not even a header: nothing to answer
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _error_wire(wire, dns.rcode.FORMERR)
        if query.flags & dns.flags.QR:
            return None
        reply = answer(self.table, lst.container, query)
        if reply is None:
            if lst.upstreams:
                return None
            reply = _reply(query, dns.rcode.NXDOMAIN)  # nowhere to ask
        return to_wire(reply, query, udp)

    def _relay(self, lst: _Listener, wire: bytes, tcp: bool) -> bytes:
        return (forward(wire, lst.upstreams, tcp=tcp, timeout=self.timeout)
                or _error_wire(wire, dns.rcode.SERVFAIL))

    def _forward_udp(self, lst: _Listener, wire: bytes, peer) -> None:
        try:
            lst.udp.sendto(self._relay(lst, wire, tcp=False), peer)
        except OSError:
            pass  # its container stopped meanwhile
        finally:
            self._pending.release()

    def _serve_tcp(self, lst: _Listener, conn: socket.socket) -> None:
        with self._lock:
            if self._listeners.get(lst.container) is not lst:  # closed since the accept
                conn.close()
                self._tcp_slots.release()
                return
            lst.conns.add(conn)
        with conn:
            conn.setblocking(True)
            conn.settimeout(_TCP_IDLE)
            try:
                while (wire := _read_tcp_message(conn)) is not None and len(wire) >= 12:
                    reply = self._local(lst, wire, udp=False) or self._relay(lst, wire, True)
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                pass
            finally:
                with self._lock:
                    lst.conns.discard(conn)
                self._tcp_slots.release()


def _usable(upstreams: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """Upstreams without ourselves (a loop: the daemon's namespace has no 127.0.0.11)."""
    return [(h, p) for h, p in upstreams if (h, p) != ADDRESS]
