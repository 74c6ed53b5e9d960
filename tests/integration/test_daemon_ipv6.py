"""IPv6 on user-defined bridge networks through the daemon and the real docker CLI (and the
docker SDK): traffic between containers by address and by name (AAAA from the embedded
DNS), isolation between networks, inspect shapes, bad input, nothing left behind, and a
daemon kill -9 with live restore. Traffic stays on the bridges and namespaces made here;
the subnets are random ULA /64s that overlap nothing the host routes."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import sys

import pytest

from bosun.testing.daemon import inspect_container, wait_for
from bosun.testing.netns import peer_echo_outside

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.usefixtures("no_containers_after")]

from bosun.network import firewall, netlink  # noqa: E402
from bosun.network.store import NetworkStore  # noqa: E402

WEB = "mkdir -p /www && echo hello-$HOSTNAME > /www/index.html && exec httpd -f -p [::]:80 -h /www"
GET = "timeout 5 wget -q -O- http://{}/"  # (busybox's -T crashes on expiry)


def ula64() -> str:
    """A random ULA /64 no host route overlaps (this host has fd00::/64 on eth0)."""
    routes = [r for r in netlink.host_routes(6) if r.prefixlen]
    while True:
        net = ipaddress.IPv6Network((b"\xfd" + secrets.token_bytes(7) + bytes(8), 64))
        if not any(net.overlaps(r) for r in routes):
            return str(net)


def out(daemon, *args: str) -> str:
    return daemon.docker(*args).stdout.decode().strip()


def fails(daemon, *args: str) -> str:
    """stderr of a docker command that must fail."""
    r = daemon.docker(*args, check=False)
    assert r.returncode != 0, r.stdout
    return r.stderr.decode()


@pytest.fixture
def net(user_networks):
    """make(name, *flags) → a network with IPv6 (its v6 subnet, random unless given),
    removed after the test with whatever still uses it."""
    def make(name: str, *flags: str, subnet6: str | None = None) -> str:
        subnet6 = subnet6 or ula64()
        user_networks("--ipv6", "--subnet", subnet6, *flags, name)
        return subnet6

    return make


def run_d(daemon, name: str, *args: str, cmd: tuple[str, ...] = ("sleep", "300")) -> dict:
    daemon.docker("run", "-d", "--name", name, *args, "busybox", *cmd)
    return inspect_container(daemon, name)


def v6_of(c: dict, network: str) -> str:
    return c["NetworkSettings"]["Networks"][network]["GlobalIPv6Address"]


def aaaa(daemon, container: str, name: str) -> list[str] | None:
    """The IPv6 addresses busybox's nslookup gets for an AAAA query of `name` (asking the
    container's resolv.conf server, the embedded DNS): [] when the name exists without
    any, None when the resolver answers that it does not exist; any other failure is an
    error, not an empty answer."""
    r = daemon.docker("exec", container, "nslookup", "-type=AAAA", name, check=False)
    text = r.stdout.decode()
    if f"server can't find {name}: NXDOMAIN" in text:
        return None
    if f"Can't find {name}: No answer" in text:
        return []
    assert r.returncode == 0 and "can't find" not in text, \
        f"nslookup -type=AAAA {name} in {container} → {r.returncode}\n{text}{r.stderr.decode()}"
    answers = text.split("Name:", 1)[1] if "Name:" in text else ""
    return re.findall(r"Address:\s*([0-9a-f:]+:[0-9a-f:]*)\s*$", answers, re.M)


def endpoint_rows(daemon) -> list:
    return NetworkStore(str(daemon.data_root / "network" / "network.db")).endpoints()


def host_v6_addresses() -> set[str]:
    """The host's global IPv6 addresses (enabling forwarding must not cost it any)."""
    r = os.popen("ip -6 -o addr show scope global").read()
    return {line.split()[3] for line in r.splitlines() if " bsn" not in line and " br-" not in line}


def test_containers_talk_over_ipv6_by_address_and_name_and_networks_are_isolated(
        daemon, net, user_networks):
    host_before = host_v6_addresses()
    subnet6 = net("v6a")
    assert netlink.host_routes(6) and ipaddress.IPv6Network(subnet6) in netlink.host_routes(6)
    srv = run_d(daemon, "srv6", "--network", "v6a", "--network-alias", "web6",
                cmd=("sh", "-c", WEB))
    run_d(daemon, "cli6", "--network", "v6a")
    addr = v6_of(srv, "v6a")
    assert ipaddress.IPv6Address(addr) in ipaddress.IPv6Network(subnet6)
    # eth0: the address (usable at once: no DAD), a default route via the bridge's gateway
    eth0 = out(daemon, "exec", "srv6", "ip", "-6", "-o", "addr", "show", "eth0")
    assert f"{addr}/64" in eth0 and "tentative" not in eth0.split(addr)[1].split("\n")[0]
    gw6 = srv["NetworkSettings"]["Networks"]["v6a"]["IPv6Gateway"]
    assert f"default via {gw6} dev eth0" in out(daemon, "exec", "srv6", "ip", "-6", "route")
    # by address, over IPv6 (httpd listens on [::]:80)
    body = wait_for(lambda: daemon.docker("exec", "cli6", "sh", "-c", GET.format(f"[{addr}]"),
                                          check=False).stdout.decode(), 10)
    assert body.strip() == f"hello-{srv['Config']['Hostname']}"
    # by name: the embedded DNS answers AAAA for the name and the alias, and PTR back
    assert aaaa(daemon, "cli6", "srv6") == [addr] and aaaa(daemon, "cli6", "web6") == [addr]
    assert aaaa(daemon, "cli6", "srv6.v6a") == [addr]
    ptr = out(daemon, "exec", "cli6", "nslookup", addr)
    assert "srv6.v6a" in ptr
    assert "hello-" in out(daemon, "exec", "cli6", "sh", "-c", GET.format("web6"))
    # /etc/hosts: the v4 line then the v6 line for the hostname, as Docker writes them
    hosts = out(daemon, "exec", "srv6", "cat", "/etc/hosts").splitlines()
    v4 = srv["NetworkSettings"]["Networks"]["v6a"]["IPAddress"]
    host = srv["Config"]["Hostname"]
    assert hosts[-2:] == [f"{v4}\t{host}", f"{addr}\t{host}"]
    # another IPv6 network: no route through the host to the first one
    net("v6b")
    run_d(daemon, "other6", "--network", "v6b")
    r = daemon.docker("exec", "other6", "sh", "-c", GET.format(f"[{addr}]"), check=False)
    assert r.returncode != 0 and b"hello" not in r.stdout
    assert aaaa(daemon, "other6", "srv6") is None  # and the name is not visible there
    # a container on an IPv4-only network has IPv6 off on eth0, as Docker's
    user_networks("plain4")
    run_d(daemon, "plain4c", "--network", "plain4")
    assert out(daemon, "exec", "plain4c", "cat",
               "/proc/sys/net/ipv6/conf/eth0/disable_ipv6") == "1"
    assert aaaa(daemon, "plain4c", "plain4c") == []  # the name exists, without AAAA
    assert open("/proc/sys/net/ipv6/conf/all/forwarding").read().strip() == "1"
    assert host_v6_addresses() == host_before  # forwarding on: the host keeps its addresses


def test_inspect_shapes_cli_and_sdk(daemon, net, client, user_networks):
    subnet6 = ipaddress.IPv6Network(ula64())
    gw = str(subnet6.network_address + 0xfe)
    rng = str(next(subnet6.subnets(new_prefix=120)))
    net("v6i", "--subnet", "10.219.3.0/24", "--gateway", gw, "--ip-range", rng,
        subnet6=str(subnet6))
    n = json.loads(out(daemon, "network", "inspect", "v6i"))[0]
    assert n["EnableIPv6"] is True and n["EnableIPv4"] is True
    assert n["IPAM"]["Config"] == [
        {"Subnet": "10.219.3.0/24", "Gateway": "10.219.3.1"},
        {"Subnet": str(subnet6), "Gateway": gw, "IPRange": rng}]
    assert out(daemon, "network", "ls", "--filter", "name=v6i", "--format", "{{.IPv6}}") == "true"
    static = str(subnet6.network_address + 0x1234)  # outside the ip-range, inside the subnet
    run_d(daemon, "stat6", "--network", "v6i", "--ip6", static)
    run_d(daemon, "auto6", "--network", "v6i")
    ep = inspect_container(daemon, "stat6")["NetworkSettings"]
    e = ep["Networks"]["v6i"]
    assert (e["GlobalIPv6Address"], e["GlobalIPv6PrefixLen"], e["IPv6Gateway"]) == (
        static, 64, gw)
    assert e["IPAMConfig"] == {"IPv6Address": static}
    assert ep["GlobalIPv6Address"] == "" and ep["IPv6Gateway"] == ""  # top level: bridge only
    auto = inspect_container(daemon, "auto6")["NetworkSettings"]["Networks"]["v6i"]
    assert ipaddress.IPv6Address(auto["GlobalIPv6Address"]) in ipaddress.IPv6Network(rng)
    members = {m["Name"]: m for m in
               json.loads(out(daemon, "network", "inspect", "v6i"))[0]["Containers"].values()}
    assert members["stat6"]["IPv6Address"] == f"{static}/64"
    assert members["auto6"]["IPv6Address"] == f"{auto['GlobalIPv6Address']}/64"
    # the SDK: create with an IPAM pool, run, attrs
    import docker.types

    sdk_subnet = ula64()
    made = client.networks.create("v6sdk", driver="bridge", enable_ipv6=True, ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet=sdk_subnet)]))
    try:
        made.reload()
        assert made.attrs["EnableIPv6"] is True
        assert made.attrs["IPAM"]["Config"][1] == {
            "Subnet": sdk_subnet, "Gateway": str(ipaddress.IPv6Network(sdk_subnet)[1])}
        c = client.containers.run("busybox", "sleep 300", detach=True, name="sdk6",
                                  network="v6sdk")
        c.reload()
        s = c.attrs["NetworkSettings"]["Networks"]["v6sdk"]
        assert s["GlobalIPv6Address"] == str(ipaddress.IPv6Network(sdk_subnet)[2])
        assert s["GlobalIPv6PrefixLen"] == 64
        c.remove(force=True)
    finally:
        made.remove()
    # --ipv6 without a subnet: a ULA /64 clear of the host's routes (eth0's fd00::/64 here)
    user_networks("--ipv6", "v6auto")
    cfg = json.loads(out(daemon, "network", "inspect", "v6auto"))[0]["IPAM"]["Config"]
    auto6 = ipaddress.IPv6Network(cfg[1]["Subnet"])
    assert auto6.prefixlen == 64 and auto6.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert auto6 != subnet6 and not any(
        auto6.overlaps(r) for r in netlink.host_routes(6)
        if r.prefixlen and r != auto6 and r.prefixlen <= 64)


def test_bad_input_is_refused_and_leaves_nothing(daemon, net, user_networks):
    subnet6 = net("v6x")
    inside = ipaddress.IPv6Network(subnet6)
    # overlapping subnets: Docker's wording
    err = fails(daemon, "network", "create", "--ipv6", "--subnet",
                str(inside.supernet(new_prefix=56)), "clash")
    assert "Pool overlaps with other one on this address space" in err
    for args, wording in (
            (("--subnet", "fd00:zz::/64"), "invalid subnet"),
            (("--subnet", "fd12:1::5/64"), "it should be fd12:1::/64"),
            (("--subnet", "fd12:2::/64", "--gateway", "fd12:3::1"), "no matching subnet"),
            (("--subnet", "fd12:2::/64", "--ip-range", "fd12:3::/80"), "no matching subnet"),
            (("--subnet", "fd12:4::/127"), "too small")):
        assert wording in fails(daemon, "network", "create", "--ipv6", *args, "bad6"), args
    # through the API, the CLI's own checks aside: 400 with a clear message
    import docker

    api = docker.APIClient(base_url=daemon.host, version="1.47")
    try:
        for pool, wording in (({"Subnet": "fd12:5::/64", "Gateway": "fd12:6::1"},
                               "is not a host address of subnet"),
                              ({"Subnet": "fd12:5::/64", "IPRange": "fd12:6::/80"},
                               "is not within subnet"),
                              ({"Subnet": "fd12:5::/64", "Gateway": "10.0.0.1"},
                               "not an IPv6 address")):
            with pytest.raises(docker.errors.APIError) as e:
                api.create_network("bad6", enable_ipv6=True, ipam={"Config": [pool]})
            assert e.value.response.status_code == 400 and wording in str(e.value), pool
        with pytest.raises(docker.errors.APIError) as e:
            api.create_network("bad6", ipam={"Config": [{"Subnet": "fd12:5::/64"}]})
        assert e.value.response.status_code == 400 and "IPv6 is not enabled" in str(e.value)
    finally:
        api.close()
    assert "bad6" not in out(daemon, "network", "ls", "--format", "{{.Name}}").split()
    # --ip6 outside the subnet, or on a network without IPv6: refused at create
    err = fails(daemon, "run", "--rm", "--network", "v6x", "--ip6", "fd99:1::5", "busybox",
                "true")
    assert f"address fd99:1::5 is not a usable host address of subnet {subnet6}" in err
    user_networks("only4")
    err = fails(daemon, "create", "--network", "only4", "--ip6", str(inside[9]), "busybox")
    assert "network only4 does not have IPv6 enabled" in err
    # a static address already taken: the second start fails, and leaves nothing of its own
    run_d(daemon, "first6", "--network", "v6x", "--ip6", str(inside[9]))
    daemon.docker("create", "--name", "second6", "--network", "v6x", "--ip6", str(inside[9]),
                  "busybox", "sleep", "300")
    err = fails(daemon, "start", "second6")
    assert f"address {inside[9]} is already in use" in err
    assert [e.container_id for e in endpoint_rows(daemon)] == [
        inspect_container(daemon, "first6")["Id"]]
    # IPv6 host addresses for published ports stay refused with a clear error
    err = fails(daemon, "run", "--rm", "--network", "v6x", "-p", "[::1]:8080:80", "busybox",
                "true")
    assert "IPv6 is not supported" in err


def test_nothing_left_after_containers_and_network_go(daemon, net):
    subnet6 = net("v6l")
    from concurrent.futures import ThreadPoolExecutor

    names = [f"leak6{i}" for i in range(8)]
    with ThreadPoolExecutor(4) as pool:  # concurrent starts: never the same address
        list(pool.map(lambda n: run_d(daemon, n, "--network", "v6l"), names))
    assert len({v6_of(inspect_container(daemon, n), "v6l") for n in names}) == 8
    assert firewall.table_rules(daemon.nft_table, "ip6")
    bridge = json.loads(out(daemon, "network", "inspect", "v6l"))[0]["Id"][:12]
    daemon.docker("rm", "-f", *names)
    assert [e for e in endpoint_rows(daemon) if e.ip6] == []
    daemon.docker("network", "rm", "v6l")
    assert not os.path.exists(f"/sys/class/net/br-{bridge}")
    assert ipaddress.IPv6Network(subnet6) not in netlink.host_routes(6)
    # the ip6 table goes with the last IPv6 network (no other test's is left here)
    assert firewall.table_rules(daemon.nft_table, "ip6") is None
    assert endpoint_rows(daemon) == []
    wait_for(lambda: not [i for i, a in netlink.owned_links(daemon.nft_table).items()
                          if ":ep:" in a], 5)


def test_live_restore_keeps_the_address_and_aaaa_answers(daemon, net):
    net("v6r")
    srv = run_d(daemon, "keep6", "--network", "v6r", "--network-alias", "kept",
                cmd=("sh", "-c", WEB))
    run_d(daemon, "ask6", "--network", "v6r")
    addr = v6_of(srv, "v6r")
    assert aaaa(daemon, "ask6", "kept") == [addr]
    bridge = "br-" + json.loads(out(daemon, "network", "inspect", "v6r"))[0]["Id"][:12]
    daemon.stop(signal.SIGKILL)
    netlink.delete_link(bridge)  # lost meanwhile (as at a reboot): re-made, v6 gateway too
    daemon.start()
    again = inspect_container(daemon, "keep6")
    assert again["State"]["Running"] and v6_of(again, "v6r") == addr
    assert f"{addr}/64" in out(daemon, "exec", "keep6", "ip", "-6", "-o", "addr", "show",
                               "eth0")
    assert aaaa(daemon, "ask6", "kept") == [addr] and aaaa(daemon, "ask6", "keep6") == [addr]
    assert "hello-" in out(daemon, "exec", "ask6", "sh", "-c", GET.format(f"[{addr}]"))
    # the allocation survived too: a new container does not get the same address
    assert v6_of(run_d(daemon, "new6", "--network", "v6r"), "v6r") not in (addr, "")


def test_outbound_ipv6_is_masqueraded_and_internal_networks_stay_inside(daemon, net, tmp_path):
    net("v6o")
    net("v6in", "--internal")
    run_d(daemon, "out6", "--network", "v6o")
    inner = run_d(daemon, "in6", "--network", "v6in")
    assert "default" not in out(daemon, "exec", "in6", "ip", "-6", "route")
    assert inner["NetworkSettings"]["Networks"]["v6in"]["IPv6Gateway"] == ""
    with peer_echo_outside(str(tmp_path / "outside6"), f"vx{daemon.bridge[3:]}", 7006,
                           version=6) as (far_ip, host_ip):
        # The outside has no route back to the ULA subnet: an answer at all means NAT66.
        seen = out(daemon, "exec", "out6", "nc", "-w", "3", str(far_ip), "7006")
        assert seen == str(host_ip)
        # an internal network has no way out (no route; the ip6 table drops it anyway)
        r = daemon.docker("exec", "in6", "nc", "-w", "2", str(far_ip), "7006", check=False)
        assert r.returncode != 0 and str(host_ip) not in r.stdout.decode()


def test_bosun_cli_network_create_ipv6_and_connect_ip6(daemon, net):
    bosun = [sys.executable, "-m", "bosun.cli", "-H", daemon.host]
    subnet6 = ipaddress.IPv6Network(ula64())
    subprocess.run([*bosun, "network", "create", "--ipv6", "--subnet", str(subnet6),
                    "--subnet", "10.219.9.0/24", "v6cli"], check=True, capture_output=True)
    try:
        cfg = json.loads(out(daemon, "network", "inspect", "v6cli"))[0]["IPAM"]["Config"]
        assert [c["Subnet"] for c in cfg] == ["10.219.9.0/24", str(subnet6)]
        static = str(subnet6[0x42])
        subprocess.run([*bosun, "run", "-d", "--name", "cli6run", "--network", "v6cli",
                        "--ip6", static, "busybox", "sleep", "300"], check=True,
                       capture_output=True)
        assert v6_of(inspect_container(daemon, "cli6run"), "v6cli") == static
        # connect a running container on the default bridge, with a static IPv6 address
        run_d(daemon, "late6")
        subprocess.run([*bosun, "network", "connect", "--ip6", str(subnet6[0x43]), "v6cli",
                        "late6"], check=True, capture_output=True)
        late = inspect_container(daemon, "late6")
        assert v6_of(late, "v6cli") == str(subnet6[0x43])
        assert f"{subnet6[0x43]}/64" in out(daemon, "exec", "late6", "ip", "-6", "-o", "addr",
                                           "show", "eth1")
        assert f"{subnet6[0x43]}\t" in out(daemon, "exec", "late6", "cat", "/etc/hosts")
        assert aaaa(daemon, "cli6run", "late6") == [str(subnet6[0x43])]
    finally:
        daemon.docker("rm", "-f", "cli6run", "late6", check=False)
        daemon.docker("network", "rm", "v6cli", check=False)
