"""Bridge networking through the daemon, driven by the real docker CLI: the default `bridge`
network, user networks, published ports, the /networks API, and what is left after stops,
failures, daemon crashes and many containers (nothing: no veth, rule, IPAM row, netns).

The module's daemon has a bridge, nftables table and link tag of its own (BosunDaemon), and
its teardown fails on any leftover of those. The "outside" namespace is made here.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import urllib.request
from ipaddress import IPv4Address, IPv4Network

import pytest

from bosun.testing.daemon import inspect_container, wait_for
from bosun.testing.netns import peer_echo_outside

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.usefixtures("no_containers_after")]

from bosun.network import netlink  # noqa: E402
from bosun.network.store import NetworkStore  # noqa: E402

WEB = "mkdir -p /www && echo hello-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www"

def free_port() -> int:
    """A host port nothing listens on and bosun has not published (from a high range)."""
    while True:
        port = random.randrange(20000, 30000)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
                return port
            except OSError:
                continue


def http_get(host: str, port: int, timeout: float = 5) -> str:
    def get():
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/", timeout=1) as r:
                return r.read().decode()
        except OSError:
            return None
    return wait_for(get, timeout)


def run(daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return daemon.docker(*args, check=check)


def out(daemon, *args: str) -> str:
    return daemon.docker(*args).stdout.decode().strip()


def net_inspect(daemon, name: str) -> dict:
    return json.loads(out(daemon, "network", "inspect", name))[0]


def endpoint_veths(daemon) -> list[str]:
    return [i for i, alias in netlink.owned_links(daemon.nft_table).items() if ":ep:" in alias]


def dnat_rules(daemon) -> int:
    from bosun.network import firewall

    rules = firewall.table_rules(daemon.nft_table) or []
    return sum(1 for r in rules if any("dnat" in stmt for stmt in r["expr"]))


def ipam_rows(daemon) -> list[str]:
    return [e.container_id for e in
            NetworkStore(str(daemon.data_root / "network" / "network.db")).endpoints()]


def netns_files(daemon) -> list[str]:
    d = daemon.exec_root / "network" / "netns"
    return sorted(os.listdir(d)) if d.is_dir() else []


def assert_clean(daemon) -> None:
    # veths go with their namespace, which the kernel destroys asynchronously
    wait_for(lambda: not endpoint_veths(daemon), 5)
    assert dnat_rules(daemon) == 0
    assert ipam_rows(daemon) == []
    assert netns_files(daemon) == []


def in_container(daemon, name: str, cmd: str) -> str:
    return out(daemon, "exec", name, "sh", "-c", cmd)


# -- the default network --------------------------------------------------------------------

def test_default_bridge_gives_eth0_route_gateway_and_hosts_line(daemon):
    bridge = net_inspect(daemon, "bridge")
    assert bridge["Driver"] == "bridge"
    assert bridge["Options"]["com.docker.network.bridge.name"] == daemon.bridge
    subnet = IPv4Network(bridge["IPAM"]["Config"][0]["Subnet"])
    gateway = bridge["IPAM"]["Config"][0]["Gateway"]
    run(daemon, "run", "-d", "--name", "b1", "busybox", "sleep", "60")
    ns = inspect_container(daemon, "b1")["NetworkSettings"]
    ip = ns["Networks"]["bridge"]["IPAddress"]
    assert IPv4Address(ip) in subnet and ns["IPAddress"] == ip
    assert ns["Gateway"] == gateway and ns["IPPrefixLen"] == subnet.prefixlen
    assert ns["MacAddress"] == "02:42:" + ":".join(f"{b:02x}" for b in IPv4Address(ip).packed)
    assert ns["Networks"]["bridge"]["NetworkID"] == bridge["Id"]
    addr = in_container(daemon, "b1", "ip -4 -o addr show eth0")
    assert f"{ip}/{subnet.prefixlen}" in addr
    assert f"default via {gateway} dev eth0" in in_container(daemon, "b1", "ip route")
    in_container(daemon, "b1", f"ping -c1 -W2 {gateway}")
    hosts = in_container(daemon, "b1", "cat /etc/hosts")
    assert f"{ip}\t{ns['SandboxID'][:12]}" in hosts  # the hostname is the short id
    # Docker's sysctls, written by the engine in the namespace it made
    assert in_container(daemon, "b1", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start") == "0"
    members = net_inspect(daemon, "bridge")["Containers"]
    assert [m["Name"] for m in members.values()] == ["b1"]


def test_add_host_host_gateway_is_the_bridge_gateway(daemon):
    gateway = net_inspect(daemon, "bridge")["IPAM"]["Config"][0]["Gateway"]
    text = out(daemon, "run", "--rm", "--add-host", "gw:host-gateway", "--add-host",
               "other:10.9.9.9", "busybox", "cat", "/etc/hosts")
    lines = text.splitlines()
    assert f"{gateway}\tgw" in lines and "10.9.9.9\tother" in lines
    # and it is the host: a server on the gateway address answers by that name
    import threading

    srv = socket.create_server((gateway, 0))
    srv.settimeout(30)
    got = []

    def serve() -> None:
        try:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"hello from the host\n")
        except OSError as e:
            got.append(e)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        text = out(daemon, "run", "--rm", "--add-host", "hostbox:host-gateway", "busybox",
                   "nc", "hostbox", str(srv.getsockname()[1]))
    finally:
        t.join(30)
        srv.close()
    assert text == "hello from the host" and not got


def test_none_and_host_modes_unchanged(daemon):
    assert out(daemon, "run", "--rm", "--network", "none", "busybox",
               "ls", "/sys/class/net") == "lo"
    host_links = sorted(os.listdir("/sys/class/net"))
    seen = out(daemon, "run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net")
    assert daemon.bridge in seen.split() and len(seen.split()) >= len(host_links) - 2
    assert endpoint_veths(daemon) == []


def test_stop_and_exit_on_its_own_release_everything(daemon):
    run(daemon, "run", "-d", "--name", "short", "-p", "80", "busybox", "sleep", "1")
    assert len(endpoint_veths(daemon)) == 1 and dnat_rules(daemon) == 2  # prerouting, output
    wait_for(lambda: inspect_container(daemon, "short")["State"]["Status"] == "exited", 15)
    wait_for(lambda: not endpoint_veths(daemon) and not netns_files(daemon), 5)
    assert_clean(daemon)
    ns = inspect_container(daemon, "short")["NetworkSettings"]
    assert ns["IPAddress"] == "" and ns["Ports"] == {} and ns["SandboxKey"] == ""
    # Started again: a fresh endpoint; stopped by the user: gone again.
    run(daemon, "start", "short")
    assert inspect_container(daemon, "short")["NetworkSettings"]["IPAddress"]
    run(daemon, "stop", "-t", "0", "short")
    assert_clean(daemon)


def test_restart_policy_reattaches(daemon):
    run(daemon, "run", "-d", "--name", "flappy", "--restart", "on-failure:2", "busybox",
        "sh", "-c", "ip -4 -o addr show eth0; sleep 0.3; exit 3")
    c = wait_for(lambda: (lambda c: c if c["State"]["Status"] == "exited" else None)(
        inspect_container(daemon, "flappy")), 20)
    assert c["RestartCount"] == 2
    logs = out(daemon, "logs", "flappy").splitlines()
    assert len(logs) == 3 and all("eth0" in line and "inet " in line for line in logs)
    assert_clean(daemon)


# -- user networks ----------------------------------------------------------------------------

def test_user_network_containers_reach_each_other(daemon):
    br = f"bu{daemon.bridge[3:]}"
    run(daemon, "network", "create", "--subnet", "10.213.7.0/24", "--gateway", "10.213.7.254",
        "--ip-range", "10.213.7.128/25", "-o", f"com.docker.network.bridge.name={br}",
        "--label", "team=red", "apps")
    try:
        n = net_inspect(daemon, "apps")
        assert n["IPAM"]["Config"] == [{"Subnet": "10.213.7.0/24", "Gateway": "10.213.7.254",
                                        "IPRange": "10.213.7.128/25"}]
        assert os.path.exists(f"/sys/class/net/{br}")
        run(daemon, "run", "-d", "--name", "srv", "--network", "apps", "--ip", "10.213.7.10",
            "--network-alias", "db", "busybox", "sleep", "60")
        run(daemon, "run", "-d", "--name", "cli", "--network", "apps", "busybox", "sleep", "60")
        srv = inspect_container(daemon, "srv")["NetworkSettings"]
        ep = srv["Networks"]["apps"]
        assert ep["IPAddress"] == "10.213.7.10" and ep["Gateway"] == "10.213.7.254"
        assert ep["IPAMConfig"] == {"IPv4Address": "10.213.7.10"} and ep["Aliases"] == ["db"]
        assert srv["IPAddress"] == ""  # Docker fills the top level for `bridge` only
        cli_ip = inspect_container(daemon, "cli")["NetworkSettings"]["Networks"]["apps"][
            "IPAddress"]
        assert IPv4Address(cli_ip) in IPv4Network("10.213.7.128/25")
        in_container(daemon, "cli", "ping -c1 -W2 10.213.7.10")
        in_container(daemon, "srv", f"ping -c1 -W2 {cli_ip}")
        members = {m["Name"]: m for m in net_inspect(daemon, "apps")["Containers"].values()}
        assert members["srv"]["IPv4Address"] == "10.213.7.10/24" and set(members) == {"srv",
                                                                                  "cli"}
        # in use: refused, as Docker
        r = run(daemon, "network", "rm", "apps", check=False)
        assert r.returncode != 0
        assert (f"error while removing network: network apps id {n['Id']} has active "
                "endpoints") in r.stderr.decode()
        # the default bridge is isolated from it
        run(daemon, "run", "-d", "--name", "other", "busybox", "sleep", "60")
        r = run(daemon, "exec", "other", "ping", "-c1", "-W1", "10.213.7.10", check=False)
        assert r.returncode != 0
    finally:
        run(daemon, "rm", "-f", "srv", "cli", "other", check=False)
        run(daemon, "network", "rm", "apps")
    assert not os.path.exists(f"/sys/class/net/{br}")
    assert_clean(daemon)


def test_unknown_network_and_ip_on_default_bridge_are_refused(daemon):
    r = run(daemon, "run", "--rm", "--pull", "never", "--network", "nosuchnet", "busybox", "true",
            check=False)
    assert r.returncode == 125 and "network nosuchnet not found" in r.stderr.decode()
    r = run(daemon, "run", "--rm", "--ip", "172.18.0.50", "busybox", "true", check=False)
    assert "user specified IP address is supported on user defined networks only" in \
        r.stderr.decode()


def test_connect_and_disconnect_a_running_container(daemon):
    run(daemon, "network", "create", "side")
    try:
        run(daemon, "run", "-d", "--name", "multi", "busybox", "sleep", "60")
        run(daemon, "network", "connect", "--alias", "m", "side", "multi")
        ns = inspect_container(daemon, "multi")["NetworkSettings"]
        side_ip = ns["Networks"]["side"]["IPAddress"]
        assert side_ip and ns["Networks"]["bridge"]["IPAddress"]
        assert side_ip in in_container(daemon, "multi", "ip -4 -o addr show eth1")
        r = run(daemon, "network", "rm", "side", check=False)
        assert r.returncode != 0 and "active endpoints" in r.stderr.decode()
        run(daemon, "network", "disconnect", "side", "multi")
        assert "side" not in inspect_container(daemon, "multi")["NetworkSettings"]["Networks"]
        assert "eth1" not in in_container(daemon, "multi", "ls /sys/class/net")
        r = run(daemon, "network", "connect", "host", "multi", check=False)
        assert "connected to host network" in r.stderr.decode()
    finally:
        run(daemon, "rm", "-f", "multi", check=False)
        run(daemon, "network", "rm", "side", check=False)
    assert_clean(daemon)


def test_network_api_list_filters_create_errors_prune(daemon, client):
    listed = {n["Name"]: n["Driver"] for n in client.api.networks()}
    assert listed == {"bridge": "bridge", "host": "host", "none": "null"}
    a = client.api.create_network("fa", labels={"x": "1"})["Id"]
    client.api.create_network("fb", internal=True)
    try:
        names = lambda **f: sorted(n["Name"] for n in client.api.networks(filters=f))  # noqa: E731
        assert names(name="fa") == ["fa"]
        assert names(id=a[:10]) == ["fa"]
        assert names(label="x=1") == ["fa"] and names(label="x=2") == []
        assert names(type="builtin") == ["bridge", "host", "none"]
        assert names(type="custom") == ["fa", "fb"]
        assert names(driver="null") == ["none"]
        assert names(dangling="true") == ["fa", "fb"]
        assert client.api.inspect_network("fb")["Internal"] is True
        assert client.api.inspect_network(a[:12])["Name"] == "fa"
        import docker.errors

        with pytest.raises(docker.errors.APIError) as e:
            client.api.create_network("fa")
        assert e.value.response.status_code == 409
        with pytest.raises(docker.errors.APIError) as e:
            client.api.create_network("v6", enable_ipv6=True,
                                      ipam={"Config": [{"Subnet": "fd00:zz::/64"}]})
        assert e.value.response.status_code == 400
        with pytest.raises(docker.errors.APIError) as e:
            client.api.remove_network("bridge")
        assert e.value.response.status_code == 403
        with pytest.raises(docker.errors.NotFound):
            client.api.inspect_network("nope")
        pruned = client.api.prune_networks(filters={"label": "x=1"})
        assert pruned["NetworksDeleted"] == ["fa"]
        assert client.api.prune_networks()["NetworksDeleted"] == ["fb"]
    finally:
        for n in ("fa", "fb"):
            run(daemon, "network", "rm", n, check=False)
    assert sorted(n["Name"] for n in client.api.networks()) == ["bridge", "host", "none"]


# -- published ports --------------------------------------------------------------------------

def test_published_port_reachable_on_loopback_and_gateway(daemon):
    port = free_port()
    run(daemon, "run", "-d", "--name", "web", "-p", f"{port}:80", "busybox", "sh", "-c", WEB)
    c = inspect_container(daemon, "web")
    assert c["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0",
                                                         "HostPort": str(port)}]}
    gateway = c["NetworkSettings"]["Gateway"]
    assert http_get("127.0.0.1", port).startswith("hello-")
    assert http_get(gateway, port).startswith("hello-")
    assert out(daemon, "port", "web") == f"80/tcp -> 0.0.0.0:{port}"
    ps = out(daemon, "ps", "--filter", "name=web", "--format", "{{.Ports}}")
    assert ps == f"0.0.0.0:{port}->80/tcp"
    run(daemon, "rm", "-f", "web")
    assert_clean(daemon)
    with pytest.raises(AssertionError):
        http_get("127.0.0.1", port, timeout=0.5)


def _host_addresses(gateway: str) -> list[str]:
    """Addresses of the host a container may use for its published ports: its bridge's
    gateway, and the host's main address (the default route's source) when it has one."""
    addrs = [gateway]
    r = subprocess.run(["ip", "-4", "-o", "route", "get", "192.0.2.1"], capture_output=True,
                       text=True)  # a routing-table query: sends nothing
    words = r.stdout.split()
    if r.returncode == 0 and "src" in words:
        addrs.append(words[words.index("src") + 1])
    return addrs


@pytest.fixture(params=["br_netfilter", "routed"])
def bridge_nf(request):
    """Both ways a host's bridges see nftables: with br_netfilter calling the ip hooks for
    frames between ports of one bridge (loaded here; Docker loads it), and without (0 here
    is what a host without the module does). Restored after the test."""
    knob = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    if not os.path.exists(knob):
        if request.param == "br_netfilter":
            pytest.skip("br_netfilter is not loaded on this host")
        yield request.param
        return
    with open(knob) as f:
        before = f.read().strip()
    with open(knob, "w") as f:
        f.write("1" if request.param == "br_netfilter" else "0")
    try:
        yield request.param
    finally:
        with open(knob, "w") as f:
            f.write(before)


def test_hairpin_to_published_ports_through_host_addresses(daemon, bridge_nf):
    port, port2 = free_port(), free_port()
    run(daemon, "run", "-d", "--name", "hp", "-p", f"{port}:80", "busybox", "sh", "-c", WEB)
    gateway = inspect_container(daemon, "hp")["NetworkSettings"]["Gateway"]
    run(daemon, "network", "create", "hpnet")
    try:
        run(daemon, "run", "-d", "--name", "hp2", "--network", "hpnet", "-p", f"{port2}:80",
            "busybox", "sh", "-c", WEB)
        run(daemon, "run", "-d", "--name", "hpn", "busybox", "sleep", "60")
        assert http_get("127.0.0.1", port)
        get = "timeout 5 wget -q -O- http://{}:{}/"  # (busybox's -T crashes on expiry)
        for addr in _host_addresses(gateway):
            # itself (DNAT back out of the port it came in by), a neighbour on its bridge,
            # and a container of a user network reaching its own port
            assert in_container(daemon, "hp", get.format(addr, port)).startswith("hello-")
            assert in_container(daemon, "hpn", get.format(addr, port)).startswith("hello-")
            assert in_container(daemon, "hp2", get.format(addr, port2)).startswith("hello-")
        veths = endpoint_veths(daemon)
        assert len(veths) == 3 and all(
            open(f"/sys/class/net/{v}/brport/hairpin_mode").read().strip() == "1"
            for v in veths)
    finally:
        run(daemon, "rm", "-f", "hp", "hp2", "hpn", check=False)
        run(daemon, "network", "rm", "hpnet", check=False)
    assert_clean(daemon)


def test_publish_all_and_docker_port(daemon):
    run(daemon, "run", "-d", "--name", "pall", "-P", "--expose", "80", "--expose", "53/udp",
        "busybox", "sh", "-c", WEB)
    ports = inspect_container(daemon, "pall")["NetworkSettings"]["Ports"]
    assert set(ports) == {"80/tcp", "53/udp"}
    tcp = int(ports["80/tcp"][0]["HostPort"])
    lo, hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    assert lo <= tcp <= hi
    assert out(daemon, "port", "pall", "80") == f"0.0.0.0:{tcp}"
    assert http_get("127.0.0.1", tcp).startswith("hello-")
    # -p <container port> alone: a random host port too, on the given address
    run(daemon, "run", "-d", "--name", "p1", "-p", "127.0.0.1::80", "busybox", "sh", "-c", WEB)
    b = inspect_container(daemon, "p1")["NetworkSettings"]["Ports"]["80/tcp"][0]
    assert b["HostIp"] == "127.0.0.1" and http_get("127.0.0.1", int(b["HostPort"]))


def test_port_conflict_fails_start_and_leaves_nothing(daemon):
    port = free_port()
    run(daemon, "run", "-d", "--name", "holder", "-p", f"{port}:80", "busybox", "sleep", "60")
    before = (endpoint_veths(daemon), dnat_rules(daemon), ipam_rows(daemon),
              netns_files(daemon))
    r = run(daemon, "run", "-d", "--name", "loser", "-p", f"{port}:80", "busybox", "sleep",
            "60", check=False)
    err = r.stderr.decode()
    assert r.returncode == 125
    assert "failed to set up container networking: driver failed programming external " \
           "connectivity on endpoint loser (" in err
    assert f"Bind for 0.0.0.0:{port} failed: port is already allocated" in err
    wait_for(lambda: endpoint_veths(daemon) == before[0], 5)  # the kernel removes it async
    assert (endpoint_veths(daemon), dnat_rules(daemon), ipam_rows(daemon),
            netns_files(daemon)) == before
    assert inspect_container(daemon, "loser")["State"]["Status"] == "created"
    # A host program on the port: refused too (DNAT would steal its traffic).
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen(1)
        busy = s.getsockname()[1]
        r = run(daemon, "run", "--rm", "-p", f"{busy}:80", "busybox", "true", check=False)
        assert "address already in use" in r.stderr.decode()
    run(daemon, "rm", "-f", "holder", "loser")
    assert_clean(daemon)


# -- outbound NAT ------------------------------------------------------------------------------

@pytest.fixture
def outside(daemon, tmp_path):
    """A namespace standing for the world beyond the host: a /30 on its own veth, routed by
    the host. Yields (its address, the host's address on that link); a server in it answers
    every connection with the address it came from."""
    with peer_echo_outside(str(tmp_path / "outside-ns"), f"vo{daemon.bridge[3:]}", 7000) as ips:
        yield ips


def test_outbound_traffic_is_masqueraded(daemon, outside):
    far_ip, host_ip = outside
    # The outside has no route back to the container's subnet: any answer at all means the
    # connection left with the host's address.
    seen = out(daemon, "run", "--rm", "busybox", "sh", "-c", f"nc -w 3 {far_ip} 7000")
    assert seen == str(host_ip)


# -- daemon crash, many containers -------------------------------------------------------------

def test_kill9_daemon_keeps_address_and_published_port(daemon):
    port = free_port()
    run(daemon, "run", "-d", "--name", "keep", "-p", f"{port}:80", "busybox", "sh", "-c", WEB)
    run(daemon, "run", "-d", "--name", "gone", "-p", "80", "busybox", "sleep", "60")
    ip = inspect_container(daemon, "keep")["NetworkSettings"]["IPAddress"]
    gone = inspect_container(daemon, "gone")
    assert http_get("127.0.0.1", port)
    daemon.stop(signal.SIGKILL)
    # While the daemon is down, one container dies: its leftovers go at the next start.
    os.kill(gone["State"]["Pid"], signal.SIGKILL)
    assert http_get("127.0.0.1", port)  # the kernel's rules serve without the daemon
    daemon.start()
    keep = inspect_container(daemon, "keep")
    assert keep["State"]["Running"] and keep["NetworkSettings"]["IPAddress"] == ip
    assert http_get("127.0.0.1", port).startswith("hello-")
    assert ip in in_container(daemon, "keep", "ip -4 -o addr show eth0")
    wait_for(lambda: inspect_container(daemon, "gone")["State"]["Status"] == "exited", 10)
    wait_for(lambda: len(endpoint_veths(daemon)) == 1, 5)
    assert dnat_rules(daemon) == 2
    assert ipam_rows(daemon) == [keep["Id"]] and netns_files(daemon) == [keep["Id"]]
    run(daemon, "rm", "-f", "keep", "gone")
    assert_clean(daemon)


def test_twenty_containers_with_ports_leave_nothing(daemon):
    names = [f"leak{i}" for i in range(20)]
    for name in names:
        run(daemon, "run", "-d", "--name", name, "-p", "80", "-p", "53/udp", "busybox",
            "sleep", "60")
    assert len(endpoint_veths(daemon)) == 20 and dnat_rules(daemon) == 2 * 20 * 2
    ips = {inspect_container(daemon, n)["NetworkSettings"]["IPAddress"] for n in names}
    assert len(ips) == 20
    run(daemon, "rm", "-f", *names)
    assert_clean(daemon)


def test_default_address_pools_give_the_subnets(tmp_path):
    from bosun.testing.daemon import BosunDaemon

    d = BosunDaemon(str(tmp_path / "pools"), extra_args=(
        "--default-address-pool", "base=10.123.0.0/16,size=24",
        "--default-address-pool", "base=fd5e:123::/48,size=64"))
    d.data_root.mkdir(parents=True)
    d.start()
    try:
        assert net_inspect(d, "bridge")["IPAM"]["Config"][0]["Subnet"] == "10.123.0.0/24"
        run(d, "network", "create", "pooled")
        assert net_inspect(d, "pooled")["IPAM"]["Config"][0]["Subnet"] == "10.123.1.0/24"
        run(d, "network", "create", "--ipv6", "pooled6")
        assert [c["Subnet"] for c in net_inspect(d, "pooled6")["IPAM"]["Config"]] == [
            "10.123.2.0/24", "fd5e:123::/64"]
        run(d, "network", "rm", "pooled", "pooled6")
    finally:
        problems = d.teardown()
    assert not problems, problems
    bad = subprocess.run([sys.executable, "-m", "bosun.cli", "daemon", "--data-root",
                          str(tmp_path / "bad"), "--default-address-pool",
                          "base=10.1.0.0/16,size=8"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "invalid pools size: 8" in bad.stderr, bad.stderr
