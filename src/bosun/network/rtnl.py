"""Batched rtnetlink requests for the per-container hot path.

pyroute2's `IPRoute` runs an asyncio loop for every request: ~0.55 ms of Python per call
here, where the kernel answers a simple request in ~0.01 ms. A container's endpoint takes
about ten requests, so that overhead was most of what a bridge adds to `docker run`. This
module keeps pyroute2 for what it is good at, encoding messages (its ifinfmsg, ifaddrmsg and
rtmsg classes), and sends the requests of one step in a single write on a plain netlink
socket, then reads their acks. The kernel handles the messages of one write in order, so a
later request sees what an earlier one made (an address before the route through it).

Rare operations (bridges, dumps, reconcile) stay on `IPRoute`, in netlink.py.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_CHANGE = NLM_F_REQUEST | NLM_F_ACK


class Request:
    """One encoded request; `ok` lists errnos that count as success (EEXIST for a route
    the namespace already has, ENODEV for a link already gone)."""

    __slots__ = ("what", "msg", "ok")

    def __init__(self, what: str, msg, ok: Iterable[int] = ()):
        self.what, self.msg, self.ok = what, msg, frozenset(ok)


def _build(cls, kind: int, flags: int, fields: dict, attrs: list) -> object:
    msg = cls()
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    return msg


def new_veth(host: str, *, master: int, mtu: int, peer: str, peer_netns_fd: int,
             peer_mac: str) -> Request:
    """A veth pair, the host end enslaved to `master` and up, the peer made directly inside
    the namespace of `peer_netns_fd` (no rename, no window on the host)."""
    peer_attrs = {"attrs": [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd),
                            ("IFLA_ADDRESS", peer_mac), ("IFLA_MTU", mtu)]}
    info = {"attrs": [("IFLA_INFO_KIND", "veth"),
                      ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer_attrs)]})]}
    return Request(f"create veth {host}", _build(
        ifinfmsg, RTM_NEWLINK, _CREATE, {"flags": IFF_UP, "change": IFF_UP},
        [("IFLA_IFNAME", host), ("IFLA_MTU", mtu), ("IFLA_MASTER", master),
         ("IFLA_LINKINFO", info)]))


def link_up(name: str) -> Request:
    """Set a link up, named rather than indexed (the kernel finds it by IFLA_IFNAME)."""
    return Request(f"set {name} up", _build(
        ifinfmsg, RTM_NEWLINK, _CHANGE, {"flags": IFF_UP, "change": IFF_UP},
        [("IFLA_IFNAME", name)]))


def del_link(name: str) -> Request:
    return Request(f"delete {name}", _build(ifinfmsg, RTM_DELLINK, _CHANGE, {},
                                            [("IFLA_IFNAME", name)]), ok=(errno.ENODEV,))


def add_addr(index: int, address: str, prefixlen: int, ok: Iterable[int] = ()) -> Request:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    attrs = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
    flags = 0
    if family == socket.AF_INET6:
        attrs = [("IFA_ADDRESS", address)]
        flags = 0x02  # IFA_F_NODAD: usable at once, the bridge's IPAM made it unique
    return Request(f"add address {address}/{prefixlen}", _build(
        ifaddrmsg, RTM_NEWADDR, _CREATE,
        {"family": family, "prefixlen": prefixlen, "index": index, "flags": flags}, attrs),
        ok=ok)


def default_route(gateway: str, oif: int) -> Request:
    """A default route via `gateway`; one the namespace already has (from another network
    attached first) is kept, as Docker keeps the first network's gateway."""
    family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
    return Request(f"add default route via {gateway}", _build(
        rtmsg, RTM_NEWROUTE, _CREATE,
        {"family": family, "dst_len": 0, "table": 254, "proto": 4,  # RTPROT_STATIC
         "scope": 0, "type": 1},  # RT_SCOPE_UNIVERSE, RTN_UNICAST
        [("RTA_GATEWAY", gateway), ("RTA_OIF", oif)]), ok=(errno.EEXIST,))


def open_socket() -> socket.socket:
    """A route netlink socket in the calling thread's network namespace (datagram: for
    netlink the same as raw, and what pyroute2's IPRoute accepts to adopt)."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                         NETLINK_ROUTE)


class Rtnl:
    """A route netlink socket in the network namespace of the thread that makes it (or
    adopts `sock`, made in another one); `call()` sends requests in one write."""

    def __init__(self, sock: socket.socket | None = None):
        self.sock = sock or open_socket()
        if self.sock.family == socket.AF_NETLINK:  # (unit tests pass a socketpair's end)
            self.sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _send(self, msgs: list) -> dict[int, object]:
        by_seq = {}
        chunks = []
        for msg in msgs:
            self._seq += 1
            msg["header"]["sequence_number"] = self._seq
            msg.encode()
            chunks.append(msg.data)
            by_seq[self._seq] = msg
        self.sock.sendall(b"".join(chunks))
        return by_seq

    def _replies(self, waiting: set[int]) -> Iterable[tuple[int, int, bytes]]:
        """(seq, type, payload) of every reply until each seq in `waiting` has its ack."""
        while waiting:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + _HDR.size <= len(data):
                length, kind, _flags, seq, _pid = _HDR.unpack_from(data, off)
                if length < _HDR.size:
                    break
                payload = data[off + _HDR.size:off + length]
                off += (length + 3) & ~3
                if kind == NLMSG_ERROR:
                    waiting.discard(seq)
                yield seq, kind, payload

    def call(self, *requests: Request) -> None:
        """Send the requests together; raise OSError for the first one that failed (the
        kernel still ran the others: callers clean up what a failed step leaves)."""
        by_seq = dict(zip(self._send([r.msg for r in requests]).keys(), requests))
        failure = None
        for seq, kind, payload in self._replies(set(by_seq)):
            if kind != NLMSG_ERROR:
                continue
            code = -struct.unpack_from("=i", payload)[0]
            req = by_seq[seq]
            if code and code not in req.ok and failure is None:
                failure = OSError(code, f"{req.what}: {os.strerror(code)}")
        if failure is not None:
            raise failure

    def index(self, name: str) -> int:
        """A link's index by name, in this socket's namespace."""
        msg = _build(ifinfmsg, RTM_GETLINK, _CHANGE, {}, [("IFLA_IFNAME", name)])
        (seq,) = self._send([msg])
        found = None
        for rseq, kind, payload in self._replies({seq}):
            if rseq != seq:
                continue
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", payload)[0]
                if code:
                    raise OSError(code, f"link {name}: {os.strerror(code)}")
            elif kind == RTM_NEWLINK:
                found = struct.unpack_from("=BxHiII", payload)[2]  # ifinfomsg.ifi_index
        if found is None:
            raise OSError(errno.ENODEV, f"link {name}: {os.strerror(errno.ENODEV)}")
        return found
