"""The embedded DNS resolver as a library: the name table, answers, and a server on loopback
with a fake upstream (no root, no namespace)."""

from __future__ import annotations

import socket
import struct

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from bosun.network.dns import DnsServer, NameTable, answer, forward, to_wire
from bosun.testing.dns import FakeUpstream


@pytest.fixture
def table() -> NameTable:
    t = NameTable()
    t.set_endpoint("web1", "n1", "front", "10.0.0.2", ["web1", "web", "aaaaaaaaaaaa"])
    t.set_endpoint("web2", "n1", "front", "10.0.0.3", ["web2", "web"])
    t.set_endpoint("cli", "n1", "front", "10.0.0.4", ["cli"])
    t.set_endpoint("db", "n2", "back", "10.1.0.2", ["db", "Store"])
    t.set_endpoint("web1", "n2", "back", "10.1.0.3", ["web1"])
    t.set_links("cli", {"legacy": "web2"})
    return t


def ask(table, requester, name, rdtype="A"):
    return answer(table, requester, dns.message.make_query(name, rdtype))


def addresses(reply) -> list[str]:
    return [r.address for rrset in reply.answer for r in rrset]


def test_names_aliases_and_short_id(table):
    r = ask(table, "cli", "web1.")
    assert r.rcode() == dns.rcode.NOERROR and addresses(r) == ["10.0.0.2"]
    assert r.flags & dns.flags.AA and r.flags & dns.flags.RA and r.flags & dns.flags.QR
    assert addresses(ask(table, "cli", "aaaaaaaaaaaa")) == ["10.0.0.2"]
    assert addresses(ask(table, "db", "STORE")) == ["10.1.0.2"]  # case-insensitive
    assert addresses(ask(table, "cli", "web1.front")) == ["10.0.0.2"]  # name.<network>
    assert r.answer[0].ttl == 600


def test_scoped_to_the_requesters_networks(table):
    # web1 is on both networks: each side sees its own address of it
    assert addresses(ask(table, "db", "web1")) == ["10.1.0.3"]
    assert addresses(ask(table, "cli", "web1")) == ["10.0.0.2"]
    # db is not on cli's network: known name, so NXDOMAIN here (never forwarded)
    assert ask(table, "cli", "db").rcode() == dns.rcode.NXDOMAIN
    assert ask(table, "stranger", "web1").rcode() == dns.rcode.NXDOMAIN
    assert ask(table, "cli", "example.org") is None  # not local: forward


def test_round_robin_for_a_shared_alias(table):
    firsts = []
    for _ in range(4):
        firsts.append(addresses(ask(table, "cli", "web"))[0])
        ask(table, "cli", "web", "AAAA")  # does not turn it
    assert sorted(addresses(ask(table, "cli", "web"))) == ["10.0.0.2", "10.0.0.3"]
    assert firsts == ["10.0.0.2", "10.0.0.3", "10.0.0.2", "10.0.0.3"]


def test_aaaa_and_other_types_empty_for_a_known_name(table):
    for rdtype in ("AAAA", "MX", "TXT"):
        r = ask(table, "cli", "web1", rdtype)
        assert r.rcode() == dns.rcode.NOERROR and r.answer == []


def test_links_resolve_for_the_linking_container_only(table):
    assert addresses(ask(table, "cli", "legacy")) == ["10.0.0.3"]
    assert ask(table, "web1", "legacy") is None


def test_removal(table):
    table.remove_endpoint("web1", "n1")
    assert addresses(ask(table, "cli", "web1")) == []  # still on n2, which cli is not on
    table.remove_container("web1")
    assert ask(table, "cli", "web1") is None
    assert table.containers() == {"web2", "cli", "db"}


def test_ptr_for_a_visible_address(table):
    r = ask(table, "cli", dns.reversename.from_address("10.0.0.3"), "PTR")
    assert [x.target.to_text() for x in r.answer[0]] == ["web2.front."]
    assert ask(table, "cli", dns.reversename.from_address("10.1.0.2"), "PTR") is None


def test_truncation_over_udp():
    t = NameTable()
    for i in range(60):
        t.set_endpoint(f"c{i}", "n", "net", f"10.9.0.{i + 2}", ["many"])
    q = dns.message.make_query("many", "A")
    wire = to_wire(answer(t, "c0", q), q, udp=True)
    r = dns.message.from_wire(wire)
    assert r.flags & dns.flags.TC and len(wire) <= 512
    assert len(addresses(dns.message.from_wire(to_wire(answer(t, "c0", q), q, udp=False)))) == 60


def test_opcode_and_question_errors(table):
    q = dns.message.make_query("web1", "A")
    q.set_opcode(dns.opcode.NOTIFY)
    assert answer(table, "cli", q).rcode() == dns.rcode.NOTIMP


# -- a server on loopback and a fake upstream ------------------------------------------------

@pytest.fixture
def upstream():
    u = FakeUpstream()
    yield u
    u.close()


@pytest.fixture
def server(table):
    s = DnsServer(table, timeout=0.5)
    yield s
    s.close()


def test_server_answers_local_names_over_udp_and_tcp(server, upstream):
    addr = server.open("cli", None, [upstream.addr], address=("127.0.0.1", 0))
    r = dns.query.udp(dns.message.make_query("web2", "A"), addr[0], port=addr[1], timeout=2)
    assert addresses(r) == ["10.0.0.3"]
    r = dns.query.tcp(dns.message.make_query("web2", "A"), addr[0], port=addr[1], timeout=2)
    assert addresses(r) == ["10.0.0.3"]
    r = dns.query.udp(dns.message.make_query("db", "A"), addr[0], port=addr[1], timeout=2)
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert upstream.asked == []  # local names never leave


def test_server_forwards_unknown_names(server, upstream):
    addr = server.open("cli", None, [("127.0.0.1", 9), upstream.addr],  # 9: nobody there
                       address=("127.0.0.1", 0))
    r = dns.query.udp(dns.message.make_query("example.org", "A"), addr[0], port=addr[1],
                      timeout=3)
    assert addresses(r) == ["192.0.2.1"] and upstream.asked == ["example.org"]


def test_server_without_upstream_says_nxdomain_and_servfail_when_none_answers(server):
    addr = server.open("cli", None, [], address=("127.0.0.1", 0))
    r = dns.query.udp(dns.message.make_query("example.org", "A"), addr[0], port=addr[1],
                      timeout=2)
    assert r.rcode() == dns.rcode.NXDOMAIN
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))  # bound, never answers: the forward times out
    try:
        server.set_upstreams("cli", [dead.getsockname()])
        r = dns.query.udp(dns.message.make_query("example.org", "A"), addr[0], port=addr[1],
                          timeout=3)
        assert r.rcode() == dns.rcode.SERVFAIL
    finally:
        dead.close()


def test_server_garbage_and_close(server):
    addr = server.open("cli", None, [], address=("127.0.0.1", 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(struct.pack("!HH", 0x1234, 0x0100) + b"\x00\x01" + b"\xff" * 10, addr)
        reply = s.recv(512)
        assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == dns.rcode.FORMERR
    server.close_listener("cli")
    assert server.listening() == set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(addr)  # the port is free again: the sockets were closed


def test_forward_ignores_unrelated_replies(upstream):
    q = dns.message.make_query("example.org", "A")
    assert dns.message.from_wire(forward(q.to_wire(), [upstream.addr])).id == q.id
    assert forward(q.to_wire(), [], timeout=0.1) is None


def test_closing_a_listener_ends_its_tcp_connections(server):
    addr = server.open("cli", None, [], address=("127.0.0.1", 0))
    with socket.create_connection(addr, timeout=3) as c:
        q = dns.message.make_query("web1", "A").to_wire()
        c.sendall(struct.pack("!H", len(q)) + q)
        assert c.recv(2)  # being served (idle connections stay open for a while)
        c.recv(4096)
        server.close_listener("cli")
        assert c.recv(10) == b""  # closed by the server at once, not after its idle time


# -- the engine's resolv.conf and several networks at create -----------------------------------

def test_resolv_conf_for_the_embedded_dns(monkeypatch):
    from bosun.engine import etcfiles

    host = "nameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch corp.example\noptions edns0\n"
    monkeypatch.setattr(etcfiles, "_read", lambda path: host)
    assert etcfiles.resolv_conf({}, internal_dns=True) == (
        "nameserver 127.0.0.11\nsearch corp.example\noptions edns0 ndots:0\n\n"
        "# ExtServers: [127.0.0.53 10.0.0.1]\n")
    assert etcfiles.nameservers({}) == ["127.0.0.53", "10.0.0.1"]  # loopback kept: host-side
    assert etcfiles.nameservers({"Dns": ["9.9.9.9"]}) == ["9.9.9.9"]
    assert etcfiles.resolv_conf({"DnsOptions": ["ndots:2"]}, internal_dns=True).count(
        "ndots") == 1
    # without it (default bridge): the host's, loopback dropped
    assert etcfiles.resolv_conf({}) == ("nameserver 10.0.0.1\nsearch corp.example\n"
                                        "options edns0\n")


def test_several_networks_at_create_are_kept_mode_first():
    from bosun.engine.containers.create import _networking_config
    from bosun.engine.errors import InvalidParameter, NotFound
    from bosun.network import NotFound as NetNotFound

    class Nets:
        def get(self, ref):
            if ref not in ("front", "back", "bridge"):
                raise NetNotFound(ref)
            return type("N", (), {"name": ref})()

    engine = type("E", (), {"networks": Nets()})()
    nc = {"EndpointsConfig": {"back": {"Aliases": ["b"]}, "front": None}}
    eps = _networking_config(engine, nc, {"NetworkMode": "front"})["EndpointsConfig"]
    assert list(eps) == ["front", "back"] and eps["back"] == {"Aliases": ["b"]}
    with pytest.raises(NotFound):
        _networking_config(engine, {"EndpointsConfig": {"front": {}, "nope": {}}},
                           {"NetworkMode": "front"})
    with pytest.raises(InvalidParameter):
        _networking_config(engine, {"EndpointsConfig": {"host": {}, "front": {}}},
                           {"NetworkMode": "host"})
    with pytest.raises(InvalidParameter):  # aliases on the default bridge
        _networking_config(engine, {"EndpointsConfig": {"bridge": {"Aliases": ["x"]},
                                                        "front": {}}},
                           {"NetworkMode": "front"})


def test_aaaa_and_ip6_ptr_on_an_ipv6_network():
    t = NameTable()
    t.set_endpoint("a", "n6", "dual", "10.7.0.2", ["a", "both"], "fd00:7::2")
    t.set_endpoint("b", "n6", "dual", "10.7.0.3", ["b", "both"], "fd00:7::3")
    t.set_endpoint("v4", "n4", "plain", "10.8.0.2", ["v4"])
    t.set_endpoint("a", "n4", "plain", "10.8.0.3", ["a"])
    r = ask(t, "b", "a", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and addresses(r) == ["fd00:7::2"]
    assert addresses(ask(t, "b", "a")) == ["10.7.0.2"]  # A: IPv4 only
    assert addresses(ask(t, "b", "a.dual", "AAAA")) == ["fd00:7::2"]
    assert sorted(addresses(ask(t, "b", "a", "ANY"))) == ["10.7.0.2", "fd00:7::2"]
    # on an IPv4-only network the name exists with no AAAA: empty answer, not NXDOMAIN
    r = ask(t, "v4", "a", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []
    assert ask(t, "v4", "b", "AAAA").rcode() == dns.rcode.NXDOMAIN  # not visible there
    # each family turns on its own queries
    firsts = {addresses(ask(t, "a", "both", "AAAA"))[0] for _ in range(2)}
    assert firsts == {"fd00:7::2", "fd00:7::3"}
    r = ask(t, "b", dns.reversename.from_address("fd00:7::2"), "PTR")
    assert [x.target.to_text() for x in r.answer[0]] == ["a.dual."]
    assert ask(t, "v4", dns.reversename.from_address("fd00:7::2"), "PTR") is None
