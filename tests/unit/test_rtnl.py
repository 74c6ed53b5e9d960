"""bosun.network.rtnl without a kernel: the messages it encodes (decoded back with
pyroute2's parsers) and how it reads acks, with a socketpair end playing the kernel."""

from __future__ import annotations

import errno
import socket
import struct
import threading

import pytest
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from bosun.network import rtnl

HDR = struct.Struct("=IHHII")


def messages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, seq, whole message) of each netlink message in one write."""
    out, off = [], 0
    while off < len(data):
        length, kind, _flags, seq, _pid = HDR.unpack_from(data, off)
        out.append((kind, seq, data[off:off + length]))
        off += (length + 3) & ~3
    return out


def ack(seq: int, code: int = 0) -> bytes:
    payload = struct.pack("=i", -code) + bytes(16)  # error + the request's header
    return HDR.pack(HDR.size + len(payload), rtnl.NLMSG_ERROR, 0, seq, 0) + payload


class FakeKernel:
    """Answers each write on its end of a socketpair: `reply(kind, seq)` -> bytes."""

    def __init__(self, reply):
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.seen: list[tuple[int, int, bytes]] = []
        self._reply = reply
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while data := self.theirs.recv(1 << 16):
            msgs = messages(data)
            self.seen.extend(msgs)
            self.theirs.send(b"".join(self._reply(kind, seq) for kind, seq, _ in msgs))

    def close(self) -> None:
        self.theirs.shutdown(socket.SHUT_RDWR)
        self.theirs.close()
        self._thread.join(5)


def test_one_write_for_all_requests_and_the_first_failure_raised():
    codes = {2: errno.EEXIST, 3: errno.ENODEV}
    k = FakeKernel(lambda kind, seq: ack(seq, codes.get(seq, 0)))
    try:
        with rtnl.Rtnl(k.ours) as nl:
            with pytest.raises(OSError) as e:
                nl.call(rtnl.link_up("eth0"), rtnl.add_addr(7, "10.0.0.2", 24),
                        rtnl.del_link("vethx"))  # ENODEV is fine for a delete
            assert e.value.errno == errno.EEXIST
            assert "add address 10.0.0.2/24" in str(e.value)
            # every ack was read: the next call starts clean
            nl.call(rtnl.link_up("lo"))
    finally:
        k.close()
    assert [kind for kind, _, _ in k.seen] == [RTM_NEWLINK, RTM_NEWADDR, RTM_DELLINK,
                                               RTM_NEWLINK]
    assert [seq for _, seq, _ in k.seen] == [1, 2, 3, 4]


def test_index_reads_the_link_reply_then_its_ack():
    def reply(kind, seq):
        assert kind == RTM_GETLINK
        link = struct.pack("=BxHiII", 0, 1, 42, 0, 0)  # ifinfomsg with ifi_index 42
        return HDR.pack(HDR.size + len(link), RTM_NEWLINK, 0, seq, 0) + link + ack(seq)

    k = FakeKernel(reply)
    try:
        with rtnl.Rtnl(k.ours) as nl:
            assert nl.index("eth0") == 42
    finally:
        k.close()
    msg = ifinfmsg(k.seen[0][2])
    msg.decode()
    assert msg.get_attr("IFLA_IFNAME") == "eth0"


def test_index_of_a_missing_link_is_enodev():
    k = FakeKernel(lambda kind, seq: ack(seq, errno.ENODEV))
    try:
        with rtnl.Rtnl(k.ours) as nl, pytest.raises(OSError) as e:
            nl.index("nope0")
        assert e.value.errno == errno.ENODEV
    finally:
        k.close()


def decoded(req: rtnl.Request, cls):
    req.msg.encode()
    msg = cls(req.msg.data)
    msg.decode()
    return msg


def test_veth_request_names_the_peer_its_namespace_and_the_master():
    msg = decoded(rtnl.new_veth("veth1", master=5, mtu=1400, peer="eth0", peer_netns_fd=9,
                                peer_mac="02:42:0a:00:00:02"), ifinfmsg)
    assert msg.get_attr("IFLA_IFNAME") == "veth1" and msg.get_attr("IFLA_MASTER") == 5
    assert msg["flags"] & 1 and msg["change"] & 1  # up
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "veth"
    peer = info.get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert peer.get_attr("IFLA_IFNAME") == "eth0" and peer.get_attr("IFLA_MTU") == 1400
    assert peer.get_attr("IFLA_ADDRESS") == "02:42:0a:00:00:02"


def test_address_and_route_requests_per_family():
    v4 = decoded(rtnl.add_addr(3, "10.1.2.3", 24), ifaddrmsg)
    assert (v4["family"], v4["prefixlen"], v4["index"]) == (socket.AF_INET, 24, 3)
    assert v4.get_attr("IFA_LOCAL") == "10.1.2.3"
    v6 = decoded(rtnl.add_addr(3, "fd00:1::2", 64), ifaddrmsg)
    assert v6["family"] == socket.AF_INET6 and v6["flags"] & 0x02  # nodad
    route = decoded(rtnl.default_route("fd00:1::1", 3), rtmsg)
    assert (route["family"], route["dst_len"]) == (socket.AF_INET6, 0)
    assert route.get_attr("RTA_GATEWAY") == "fd00:1::1" and route.get_attr("RTA_OIF") == 3
    assert rtnl.default_route("10.1.2.1", 3).ok == {errno.EEXIST}  # the first network's stays
