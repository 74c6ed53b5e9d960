"""IPAM without root: address choice (pure) and the SQLite store's allocations."""

from __future__ import annotations

import itertools
import threading
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from bosun.network import ipam
from bosun.network.errors import AddressExhausted, Conflict, InvalidParameter, NotFound
from bosun.network.firewall import BridgeRules, PortRule, render
from bosun.network.store import NetworkStore


@pytest.fixture
def store(tmp_path) -> NetworkStore:
    return NetworkStore(str(tmp_path / "net.db"))


def add(store: NetworkStore, name: str, **kw):
    return store.add_network(name, bridge=kw.pop("bridge", f"br-{name}"), **kw)


def alloc(store: NetworkStore, net: str, cid: str, **kw):
    return store.allocate(net, cid, netns_path=f"/run/ns/{cid}", **kw)


def test_choose_subnet_skips_host_routes_and_networks():
    routes = [IPv4Network("0.0.0.0/0"), IPv4Network("172.18.5.0/24"),
              IPv4Network("172.17.0.0/16")]
    assert ipam.choose_subnet(routes, ipam.DEFAULT_BRIDGE_SUBNET) == IPv4Network("172.19.0.0/16")
    assert ipam.choose_subnet([]) == IPv4Network("172.17.0.0/16")
    every_172 = [IPv4Network("172.16.0.0/12")]
    assert ipam.choose_subnet(every_172) == IPv4Network("192.168.0.0/20")
    with pytest.raises(AddressExhausted):
        ipam.choose_subnet([IPv4Network("128.0.0.0/1")])


def test_pool_validation():
    p = ipam.make_pool("10.9.0.0/24")
    assert p.gateway == IPv4Address("10.9.0.1")
    with pytest.raises(InvalidParameter, match="it should be 10.9.0.0/16"):
        ipam.make_pool("10.9.1.2/16")
    with pytest.raises(InvalidParameter, match="not within"):
        ipam.make_pool("10.9.0.0/24", ip_range="10.8.0.0/25")
    with pytest.raises(InvalidParameter, match="gateway"):
        ipam.make_pool("10.9.0.0/24", gateway="10.9.1.1")
    with pytest.raises(InvalidParameter, match="too small"):
        ipam.make_pool("10.9.0.0/31")


def test_mac_is_dockers():
    assert ipam.mac_for(IPv4Address("172.18.0.2")) == "02:42:ac:12:00:02"


def test_sequential_allocation_gateway_and_mac(store):
    net = add(store, "n1", subnet="10.50.0.0/24")
    assert (net.subnet, net.gateway) == (IPv4Network("10.50.0.0/24"), IPv4Address("10.50.0.1"))
    a, b = alloc(store, "n1", "c1"), alloc(store, "n1", "c2")
    assert (a.ip, b.ip) == (IPv4Address("10.50.0.2"), IPv4Address("10.50.0.3"))
    assert a.mac == "02:42:0a:32:00:02" and a.ifname == "eth0" and a.prefixlen == 24
    assert a.bridge == "br-n1" and a.gateway == net.gateway
    with pytest.raises(Conflict, match="already attached"):
        alloc(store, "n1", "c1")


def test_default_subnet_avoids_routes_and_other_networks(store):
    a = add(store, "a", host_routes=[IPv4Network("172.18.0.0/16")],
            preferred=ipam.DEFAULT_BRIDGE_SUBNET)
    b = add(store, "b")
    # 172.18 (preferred) is routed: the pools from the start, then past what is taken
    assert a.subnet == IPv4Network("172.17.0.0/16")
    assert b.subnet == IPv4Network("172.18.0.0/16")
    assert add(store, "c").subnet == IPv4Network("172.19.0.0/16")
    with pytest.raises(Conflict, match="overlaps"):
        add(store, "d", subnet="172.18.128.0/17")
    with pytest.raises(Conflict, match="already exists"):
        add(store, "a", bridge="other")
    with pytest.raises(Conflict, match="bridge name"):
        add(store, "e", bridge="br-a")


def test_static_ip(store):
    add(store, "n", subnet="10.51.0.0/24", ip_range="10.51.0.128/25")
    ep = alloc(store, "n", "c1", ip="10.51.0.10")  # outside the range, inside the subnet
    assert ep.ip == IPv4Address("10.51.0.10")
    with pytest.raises(Conflict, match="already in use"):
        alloc(store, "n", "c2", ip="10.51.0.10")
    for bad in ("10.51.0.1", "10.51.0.0", "10.51.0.255", "10.52.0.5", "nonsense"):
        with pytest.raises(InvalidParameter):
            alloc(store, "n", "c3", ip=bad)
    assert alloc(store, "n", "c4", mac="02:AA:bb:cc:dd:ee").mac == "02:aa:bb:cc:dd:ee"


def test_ip_range(store):
    add(store, "n", subnet="10.52.0.0/24", ip_range="10.52.0.64/30")
    ips = [alloc(store, "n", f"c{i}").ip for i in range(4)]
    assert ips == [IPv4Address(f"10.52.0.{i}") for i in (64, 65, 66, 67)]
    with pytest.raises(AddressExhausted):
        alloc(store, "n", "c9")


def test_release_and_reuse_after_wrap(store):
    add(store, "n", subnet="10.53.0.0/29")  # .1 gateway, .2-.6 usable
    eps = [alloc(store, "n", f"c{i}") for i in range(5)]
    assert [str(e.ip) for e in eps] == [f"10.53.0.{i}" for i in range(2, 7)]
    with pytest.raises(AddressExhausted, match="no available IPv4"):
        alloc(store, "n", "full")
    store.release(eps[1].id)
    assert alloc(store, "n", "again").ip == IPv4Address("10.53.0.3")
    store.release(eps[3].id)
    store.release(eps[0].id)
    # Serial: the next after the last handed out (.3) that is free, not the lowest free.
    assert alloc(store, "n", "next").ip == IPv4Address("10.53.0.5")
    assert alloc(store, "n", "wrap").ip == IPv4Address("10.53.0.2")


@pytest.mark.parametrize("family", ["ip", "ip6"])
def test_concurrent_allocations_unique(tmp_path, family):
    path = str(tmp_path / "net.db")
    NetworkStore(path).add_network("n", bridge="br-n", subnet="10.54.0.0/24", ipv6=True,
                                   subnet6="fd00:54::/64")
    results, errors = [], []

    def worker(i: int) -> None:
        try:
            s = NetworkStore(path)  # as separate processes would: their own handle
            for j in range(10):
                results.append(getattr(alloc(s, "n", f"c{i}-{j}"), family))
        except Exception as e:  # noqa: BLE001 - asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 160 and len(set(results)) == 160


def test_persistence_across_reopen(tmp_path):
    path = str(tmp_path / "net.db")
    s = NetworkStore(path)
    net = s.add_network("n", bridge="br-n", subnet="10.55.0.0/24", labels={"k": "v"},
                        options={"com.docker.network.driver.mtu": "1400"})
    ep = alloc(s, "n", "c1", aliases=["web"])
    s.add_port(ep.id, "tcp", "0.0.0.0", 8080, 80)
    s2 = NetworkStore(path)
    (again,) = s2.networks()
    assert again == net and again.mtu == 1400 and again.labels == {"k": "v"}
    assert s2.endpoint(ep.id) == ep and ep.aliases == ("web",) and ep.mtu == 1400
    assert alloc(s2, "n", "c2").ip == IPv4Address("10.55.0.3")  # serial point persisted
    (p,) = s2.ports()
    assert (p.host_port, p.container_ip, p.bridge) == (8080, ep.ip, "br-n")


def test_lookup_and_remove(store):
    net = add(store, "n", subnet="10.56.0.0/24")
    assert store.network(net.id[:6]) == net == store.network("n") == store.network(net.id)
    with pytest.raises(NotFound):
        store.network("nope")
    with pytest.raises(NotFound):  # hex, but longer than an ID: no LIKE pattern that long
        store.network("a" * 70000)
    ep = alloc(store, "n", "c1")
    with pytest.raises(Conflict, match="active endpoints"):
        store.remove_network("n")
    store.release(ep.id)
    store.remove_network("n")
    assert store.networks() == []


def test_ifname_per_namespace(store):
    add(store, "a", subnet="10.57.0.0/24")
    add(store, "b", subnet="10.58.0.0/24")
    e1 = store.allocate("a", "c1", netns_path="/ns/c1", ifnames_in_use=["lo"])
    e2 = store.allocate("b", "c1", netns_path="/ns/c1", ifnames_in_use=["lo", "eth0"])
    assert (e1.ifname, e2.ifname) == ("eth0", "eth1")


def test_ports(store):
    add(store, "n", subnet="10.59.0.0/24")
    ep = alloc(store, "n", "c1")
    store.add_port(ep.id, "tcp", "127.0.0.1", 8080, 80)
    with pytest.raises(Conflict, match="already allocated"):
        store.add_port(ep.id, "tcp", "0.0.0.0", 8080, 80)
    store.add_port(ep.id, "udp", "0.0.0.0", 8080, 80)  # another protocol
    store.add_port(ep.id, "tcp", "127.0.0.2", 8080, 81)  # another address
    auto = store.add_port(ep.id, "tcp", "", 0, 22, port_range=(40000, 40010),
                          port_free=lambda proto, ip, port: port != 40000)
    assert auto.host_port == 40001 and str(auto.host_ip) == "0.0.0.0"
    assert store.release(ep.id) is True
    assert store.ports() == []


def test_firewall_render_is_complete():
    s = render("bosun_t", [BridgeRules("bra", IPv4Network("10.1.0.0/24"), False, True, True),
                           BridgeRules("brb", IPv4Network("10.2.0.0/24"), True, False, True)],
               [PortRule("bra", "tcp", IPv4Address("0.0.0.0"), 8080, IPv4Address("10.1.0.2"),
                         80)])
    assert s.startswith("table ip bosun_t\ndelete table ip bosun_t\n")
    assert 'ip saddr 10.1.0.0/24 oifname != "bra" masquerade' in s
    assert "10.2.0.0/24" not in s  # internal: no masquerade
    assert 'iifname "bra" oifname { "brb" } drop' in s
    assert 'iifname "brb" oifname != "brb" drop' in s
    assert '\t\tmeta l4proto tcp th dport 8080 dnat to 10.1.0.2:80' in s
    assert 'iifname "bra" oifname "bra" ct status dnat masquerade' in s  # hairpin
    assert "ip saddr 10.1.0.2 ip daddr 10.1.0.2 meta l4proto tcp th dport 80 masquerade" in s
    assert 'oifname "bra" ip saddr 127.0.0.0/8 masquerade' in s
    with pytest.raises(InvalidParameter):
        render("bad name", [], [])
    with pytest.raises(InvalidParameter):
        render("t", [BridgeRules('x" drop', IPv4Network("10.1.0.0/24"), 0, 1, 1)], [])


def test_default_address_pools_are_cut_and_used_in_order():
    pools = ipam.parse_pools([{"base": "10.123.0.0/16", "size": 24},
                              {"base": "10.200.0.0/23", "size": "24"}])
    assert next(iter(pools)) == IPv4Network("10.123.0.0/24") and len(list(pools)) == 256 + 2
    assert ipam.choose_subnet([IPv4Network("10.123.0.0/24")], None, pools) == \
        IPv4Network("10.123.1.0/24")
    with pytest.raises(ipam.AddressExhausted):
        ipam.choose_subnet([IPv4Network("10.0.0.0/8")], None, pools)
    for bad in ({"base": "10.1.0.0/16", "size": 8}, {"base": "10.1.0.0/16"},
                {"base": "nope", "size": 24}, {"base": "10.1.0.0/16", "size": 31}):
        with pytest.raises(ipam.InvalidParameter):
            ipam.parse_pools([bad])


# -- IPv6 --------------------------------------------------------------------------------------

def test_ipv6_pool_validation():
    p = ipam.make_pool("fd00:10::/64", version=6)
    assert p.gateway == IPv6Address("fd00:10::1") and p.version == 6
    # no broadcast in IPv6: the subnet's last address is a host address
    assert p.last == int(IPv6Address("fd00:10::ffff:ffff:ffff:ffff"))
    assert p.usable(IPv6Address("fd00:10::ffff:ffff:ffff:ffff"))
    assert not p.usable(IPv6Address("fd00:10::")) and not p.usable(IPv6Address("fd00:10::1"))
    for subnet, kw, wording in (
            ("fd00:10::5/64", {}, "it should be fd00:10::/64"),
            ("fd00:10::/127", {}, "too small"),
            ("fd00:10::/64", {"ip_range": "10.0.0.0/24"}, "not an IPv6 network"),
            ("fd00:10::/64", {"gateway": "10.0.0.1"}, "not an IPv6 address"),
            ("fd00:10::/64", {"ip_range": "fd00:11::/80"}, "not within"),
            ("fd00:10::/64", {"version": 4}, "not an IPv4 network"),
            ("fd00:zz::/64", {}, "invalid subnet"),
            ("fd00::/129", {}, "invalid subnet")):
        with pytest.raises(InvalidParameter, match=wording):
            ipam.make_pool(subnet, **kw)


def test_dual_stack_allocation_and_release(store):
    net = add(store, "n6", subnet="10.60.0.0/24", ipv6=True, subnet6="fd00:60::/64")
    assert net.ipv6 and net.gateway6 == IPv6Address("fd00:60::1") and net.ip_range6 is None
    a, b = alloc(store, "n6", "c1"), alloc(store, "n6", "c2")
    assert (a.ip, a.ip6) == (IPv4Address("10.60.0.2"), IPv6Address("fd00:60::2"))
    assert b.ip6 == IPv6Address("fd00:60::3") and a.prefixlen6 == 64
    assert a.gateway6 == net.gateway6 and a.mac == "02:42:0a:3c:00:02"
    store.release(a.id)
    assert [e.ip6 for e in store.endpoints(network_id=net.id)] == [b.ip6]
    # serial in IPv6 too: the released ::2 is not handed out again at once
    assert alloc(store, "n6", "c3").ip6 == IPv6Address("fd00:60::4")
    # an IPv4-only network's endpoints have no IPv6 address, and refuse a static one
    add(store, "v4only", subnet="10.61.0.0/24")
    assert alloc(store, "v4only", "c1").ip6 is None
    with pytest.raises(InvalidParameter, match="does not have IPv6 enabled"):
        alloc(store, "v4only", "c2", ip6="fd00:60::9")


def test_ipv6_ip_range_exhaustion_and_wrap(store):
    # a /126 range at the subnet's start: ::0 (the subnet's own) and ::1 (gateway) never go
    add(store, "small", subnet="10.62.0.0/24", ipv6=True, subnet6="fd00:62::/64",
        ip_range6="fd00:62::/126")
    first, second = alloc(store, "small", "c1"), alloc(store, "small", "c2")
    assert (first.ip6, second.ip6) == (IPv6Address("fd00:62::2"), IPv6Address("fd00:62::3"))
    with pytest.raises(AddressExhausted, match="no available IPv6 addresses on network "
                                               "range fd00:62::/126"):
        alloc(store, "small", "c3")
    store.release(first.id)
    assert alloc(store, "small", "c4").ip6 == IPv6Address("fd00:62::2")  # wrapped around
    # a failed IPv6 allocation takes no IPv4 address either (one transaction)
    assert len(store.endpoints()) == 2


def test_ipv6_static(store):
    add(store, "s", subnet="10.63.0.0/24", ipv6=True, subnet6="fd00:63::/64",
        ip_range6="fd00:63::100/120")
    ep = alloc(store, "s", "c1", ip6="fd00:63::10")  # outside the range, inside the subnet
    assert ep.ip6 == IPv6Address("fd00:63::10") and ep.ip == IPv4Address("10.63.0.2")
    with pytest.raises(Conflict, match="already in use"):
        alloc(store, "s", "c2", ip6="fd00:63::10")
    for bad in ("fd00:63::1", "fd00:63::", "fd00:64::5", "10.63.0.9", "nonsense"):
        with pytest.raises(InvalidParameter):
            alloc(store, "s", "c3", ip6=bad)
    assert alloc(store, "s", "c4").ip6 == IPv6Address("fd00:63::100")
    assert {e.container_id for e in store.endpoints()} == {"c1", "c4"}


def test_ipv6_overlap_and_bad_requests(store):
    add(store, "a", subnet="10.64.0.0/24", ipv6=True, subnet6="fd00:64::/64")
    with pytest.raises(Conflict, match="Pool overlaps with other one on this address space"):
        add(store, "b", ipv6=True, subnet6="fd00:64::/56")
    with pytest.raises(InvalidParameter, match="IPv6 is not enabled"):
        add(store, "c", subnet6="fd00:65::/64")
    with pytest.raises(InvalidParameter, match="needs a subnet"):
        add(store, "d", ipv6=True, gateway6="fd00:66::1")
    assert [n.name for n in store.networks()] == ["a"]  # nothing half-made


def test_ipv6_default_is_a_ula_64_avoiding_routes_and_networks(store):
    pools = list(itertools.islice(ipam.ula_pools("seed"), 3))
    assert all(p.prefixlen == 64 and p.subnet_of(IPv6Network("fd00::/8")) for p in pools)
    assert pools == list(itertools.islice(ipam.ula_pools("seed"), 3))  # stable per seed
    assert pools[0] != next(ipam.ula_pools("another seed"))
    a = add(store, "a", ipv6=True, host_routes=[pools[0], IPv6Network("::/0")],
            pools6=ipam.ula_pools("seed"))
    b = add(store, "b", ipv6=True, pools6=ipam.ula_pools("seed"))
    c = add(store, "c", ipv6=True, pools6=ipam.ula_pools("seed"))
    assert (a.subnet6, b.subnet6, c.subnet6) == (pools[1], pools[0], pools[2])
    assert add(store, "d").subnet6 is None


def test_default_address_pools_with_an_ipv6_base():
    pools = ipam.parse_pools([{"base": "fd00:aa::/48", "size": 64},
                              {"base": "fd00::/8", "size": 64}])  # cut lazily: 2**56 /64s
    assert next(iter(pools)) == IPv6Network("fd00:aa::/64")
    assert not pools.of(4) and pools.of(6).bases == pools.bases
    assert ipam.choose_subnet([IPv6Network("fd00:aa::/64")], None, pools, 6) == \
        IPv6Network("fd00:aa:0:1::/64")
    with pytest.raises(ipam.InvalidParameter, match="from there to 126"):
        ipam.parse_pools([{"base": "fd00::/48", "size": 127}])


def test_ipv6_persisted_across_reopen(tmp_path):
    path = str(tmp_path / "net.db")
    s = NetworkStore(path)
    net = s.add_network("n", bridge="br-n", ipv6=True, subnet6="fd00:66::/64",
                        ip_range6="fd00:66::/120", gateway6="fd00:66::fe")
    ep = alloc(s, "n", "c1")
    assert ep.ip6 == IPv6Address("fd00:66::1")  # the gateway is elsewhere: ::1 is free
    s2 = NetworkStore(path)
    assert s2.network("n") == net and s2.endpoint(ep.id) == ep
    assert net.pool6.range == IPv6Network("fd00:66::/120") and ep.gateway6 == net.gateway6
    s2.release(ep.id)
    assert alloc(s2, "n", "c2").ip6 == IPv6Address("fd00:66::2")  # serial point persisted


def test_schema_1_database_is_migrated(tmp_path):
    import sqlite3

    from bosun.network import store as store_module

    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in store_module._SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute("INSERT INTO networks VALUES ('x', 'old', 'bridge', 'br-old', '10.67.0.0/24', "
                 "'10.67.0.1', NULL, 0, '{}', '{}', 0, '10.67.0.2')")
    conn.commit()
    conn.close()
    s = NetworkStore(path)
    (old,) = s.networks()
    assert old.name == "old" and not old.ipv6
    assert alloc(s, "old", "c1").ip == IPv4Address("10.67.0.3") and \
        s.add_network("new", bridge="br-new", ipv6=True).ipv6
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT version FROM schema_version").fetchone() == (2,)


def test_firewall_renders_the_ip6_twin_only_with_an_ipv6_network():
    v4 = BridgeRules("bra", IPv4Network("10.1.0.0/24"), False, True, True)
    assert render("bosun_t", [v4], []).endswith("table ip6 bosun_t\ndelete table ip6 bosun_t\n")
    v6 = BridgeRules("brc", IPv4Network("10.3.0.0/24"), False, True, True,
                     IPv6Network("fd00:3::/64"))
    internal6 = BridgeRules("brd", IPv4Network("10.4.0.0/24"), True, False, True,
                            IPv6Network("fd00:4::/64"))
    s = render("bosun_t", [v4, v6, internal6], [])
    ip6 = s[s.index("table ip6 bosun_t {"):]
    assert 'ip6 saddr fd00:3::/64 oifname != "brc" masquerade' in ip6
    assert "fd00:4::" not in s  # internal: no NAT66
    assert 'iifname "brc" oifname { "bra", "brd" } drop' in ip6  # isolation, v6 too
    assert 'iifname "brd" oifname != "brd" drop' in ip6 and "dnat" not in ip6.split("forward")[0]
