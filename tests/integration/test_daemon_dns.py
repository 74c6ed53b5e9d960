"""The embedded DNS (127.0.0.11) through the daemon and the real docker CLI: names, aliases,
short IDs and links on user networks, scoping, round-robin, forwarding to an upstream (a fake
one on the host's loopback, started here: no traffic leaves the machine), connect and
disconnect, several networks at create, a daemon restart with live-restore, and nothing left
behind (listener sockets would keep a container's namespace, and its veth, alive)."""

from __future__ import annotations

import os
import re
import signal

import pytest

from bosun.testing.daemon import inspect_container, wait_for
from bosun.testing.dns import FakeUpstream

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.usefixtures("no_containers_after")]

from bosun.network import netlink  # noqa: E402

UPSTREAM_ANSWER = "192.0.2.77"


@pytest.fixture
def upstream():
    u = FakeUpstream("127.0.0.*", 53, UPSTREAM_ANSWER, suffix=".test")
    yield u
    u.close()


@pytest.fixture
def net(user_networks):
    """make(name): a user network, removed after the test (with whatever still uses it)."""
    return user_networks


def out(daemon, *args: str) -> str:
    return daemon.docker(*args).stdout.decode().strip()


def run_d(daemon, name: str, *args: str) -> dict:
    daemon.docker("run", "-d", "--name", name, *args, "busybox", "sleep", "300")
    return inspect_container(daemon, name)


def ip_on(c: dict, network: str) -> str:
    return c["NetworkSettings"]["Networks"][network]["IPAddress"]


def lookup(daemon, container: str, name: str) -> list[str] | None:
    """The IPv4 addresses busybox's nslookup (asking the resolv.conf's server) prints for
    `name` in `container`; None when the resolver answers that the name does not exist.
    Any other failure (no answer, SERVFAIL, a failed exec) is an error, not "not found".
    (Containers asking for names that may not be local have `--dns` the fake upstream:
    nothing goes to the host's.)"""
    r = daemon.docker("exec", container, "nslookup", name, check=False)
    text = r.stdout.decode()
    if f"server can't find {name}: NXDOMAIN" in text:
        return None
    assert r.returncode == 0 and "can't find" not in text, \
        f"nslookup {name} in {container} → {r.returncode}\n{text}{r.stderr.decode()}"
    answers = text.split("Name:", 1)[1] if "Name:" in text else ""
    return re.findall(r"Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$", answers, re.M)


def netns_and_veths(daemon) -> tuple[list[str], list[str]]:
    d = daemon.exec_root / "network" / "netns"
    return (sorted(os.listdir(d)) if d.is_dir() else [],
            [i for i, a in netlink.owned_links(daemon.nft_table).items() if ":ep:" in a])


def daemon_threads(daemon) -> int:
    return len(os.listdir(f"/proc/{daemon.proc.pid}/task"))


# -- tests ------------------------------------------------------------------------------------

def test_names_aliases_ids_and_links_resolve(daemon, net, upstream):
    net("dnsa")
    srv = run_d(daemon, "srv", "--network", "dnsa", "--network-alias", "db",
                "--network-alias", "store", "--dns", upstream.ip)
    cli = run_d(daemon, "cli", "--network", "dnsa", "--dns", upstream.ip,
                "--link", "srv:legacy")
    ip = ip_on(srv, "dnsa")
    resolv = out(daemon, "exec", "cli", "cat", "/etc/resolv.conf")
    assert resolv.splitlines()[0] == "nameserver 127.0.0.11"
    assert "options ndots:0" in resolv and f"# ExtServers: [{upstream.ip}]" in resolv
    for name in ("srv", "db", "store", srv["Id"][:12], "srv.dnsa", "legacy"):
        assert lookup(daemon, "cli", name) == [ip], name
    out(daemon, "exec", "cli", "ping", "-c1", "-W2", "srv")
    # the asker's own name too, and the other way round
    assert lookup(daemon, "cli", "cli") == [ip_on(cli, "dnsa")]
    assert lookup(daemon, "srv", "cli") == [ip_on(cli, "dnsa")]
    assert cli["NetworkSettings"]["Networks"]["dnsa"]["DNSNames"] == ["cli", cli["Id"][:12]]
    # names not of a container go upstream, and the answer comes back
    assert lookup(daemon, "cli", "www.example.test") == [UPSTREAM_ANSWER]
    assert lookup(daemon, "cli", "nowhere.invalid") is None
    assert "www.example.test" in upstream.asked
    assert not {"srv", "db", "store", "legacy", "cli"} & set(upstream.asked)  # never leaked
    # a link alias is the linking container's alone
    assert lookup(daemon, "srv", "legacy") is None


def test_scoping_default_bridge_and_removal(daemon, net, upstream):
    net("dnsb")
    net("dnsc")
    run_d(daemon, "inb", "--network", "dnsb", "--dns", upstream.ip)
    run_d(daemon, "inc", "--network", "dnsc", "--dns", upstream.ip)
    run_d(daemon, "plain", "--dns", upstream.ip)
    assert lookup(daemon, "inc", "inb") is None  # another network: not visible
    assert "inb" not in upstream.asked  # and not asked upstream either
    resolv = out(daemon, "exec", "plain", "cat", "/etc/resolv.conf")
    assert "127.0.0.11" not in resolv and f"nameserver {upstream.ip}" in resolv
    daemon.docker("rm", "-f", "inb")
    run_d(daemon, "inb2", "--network", "dnsb", "--dns", upstream.ip)
    assert lookup(daemon, "inb2", "inb") is None  # gone with its container
    assert "inb" in upstream.asked  # unknown now: forwarded (the fake says NXDOMAIN)


def test_container_mode_shares_the_resolver(daemon, net):
    net("dnss")
    srv = run_d(daemon, "host1", "--network", "dnss")
    run_d(daemon, "buddy", "--network", "container:host1")
    assert out(daemon, "exec", "buddy", "head", "-1", "/etc/resolv.conf") == \
        "nameserver 127.0.0.11"
    assert lookup(daemon, "buddy", "host1") == [ip_on(srv, "dnss")]


def test_links_on_the_default_bridge_are_hosts_lines(daemon):
    web = run_d(daemon, "linked")
    run_d(daemon, "linker", "--link", "linked:web")
    hosts = out(daemon, "exec", "linker", "cat", "/etc/hosts")
    assert f"{web['NetworkSettings']['IPAddress']}\tweb {web['Config']['Hostname']} linked" \
        in hosts.splitlines()
    assert "127.0.0.11" not in out(daemon, "exec", "linker", "cat", "/etc/resolv.conf")
    out(daemon, "exec", "linker", "ping", "-c1", "-W2", "web")


def test_round_robin_over_a_shared_alias(daemon, net):
    net("dnsr")
    ips = {ip_on(run_d(daemon, n, "--network", "dnsr", "--network-alias", "pool"), "dnsr")
           for n in ("p1", "p2")}
    run_d(daemon, "asker", "--network", "dnsr")
    firsts = set()
    for _ in range(20):  # a client's retransmission also turns it: not strictly alternating,
        got = lookup(daemon, "asker", "pool")  # and under load an even number of turns
        assert set(got) == ips, got            # per lookup can repeat for a while
        firsts.add(got[0])
        if firsts == ips:
            break
    assert firsts == ips


def test_connect_disconnect_refresh_names_hosts_and_resolv(daemon, net, upstream):
    net("dnsx")
    target = run_d(daemon, "target", "--network", "dnsx", "--dns", upstream.ip)
    run_d(daemon, "late", "--dns", upstream.ip)  # default bridge: the host's servers
    assert "127.0.0.11" not in out(daemon, "exec", "late", "cat", "/etc/resolv.conf")
    daemon.docker("network", "connect", "--alias", "newcomer", "dnsx", "late")
    late = inspect_container(daemon, "late")
    late_ip = ip_on(late, "dnsx")
    assert out(daemon, "exec", "late", "head", "-1", "/etc/resolv.conf") == \
        "nameserver 127.0.0.11"
    hosts = out(daemon, "exec", "late", "cat", "/etc/hosts")
    assert f"{late_ip}\t{late['Config']['Hostname']}" in hosts  # its own new address
    assert lookup(daemon, "late", "target") == [ip_on(target, "dnsx")]
    assert lookup(daemon, "target", "newcomer") == [late_ip]
    daemon.docker("rename", "target", "renamed")
    assert lookup(daemon, "late", "renamed") == [ip_on(target, "dnsx")]
    assert lookup(daemon, "late", "target") is None
    daemon.docker("network", "disconnect", "dnsx", "late")
    assert lookup(daemon, "renamed", "newcomer") is None
    assert late_ip not in out(daemon, "exec", "late", "cat", "/etc/hosts")


def test_several_networks_at_create(daemon, net):
    net("dnsm1")
    net("dnsm2")
    daemon.docker("create", "--name", "multi", "--network", "dnsm1", "--network", "dnsm2",
                  "busybox", "sleep", "300")
    daemon.docker("start", "multi")
    multi = inspect_container(daemon, "multi")
    assert set(multi["NetworkSettings"]["Networks"]) == {"dnsm1", "dnsm2"}
    links = out(daemon, "exec", "multi", "ls", "/sys/class/net").split()
    assert {"eth0", "eth1"} <= set(links)
    run_d(daemon, "one", "--network", "dnsm1")
    run_d(daemon, "two", "--network", "dnsm2")
    assert lookup(daemon, "one", "multi") == [ip_on(multi, "dnsm1")]
    assert lookup(daemon, "two", "multi") == [ip_on(multi, "dnsm2")]
    assert lookup(daemon, "multi", "one") and lookup(daemon, "multi", "two")
    hosts = out(daemon, "exec", "multi", "cat", "/etc/hosts")
    assert ip_on(multi, "dnsm1") in hosts and ip_on(multi, "dnsm2") in hosts
    # before API 1.44, one network at create, as Docker's
    import docker

    old = docker.APIClient(base_url=daemon.host, version="1.43")
    try:
        nc = old.create_networking_config({"dnsm1": old.create_endpoint_config(),
                                           "dnsm2": old.create_endpoint_config()})
        with pytest.raises(docker.errors.APIError) as e:
            old.create_container("busybox", "true", networking_config=nc,
                                 host_config=old.create_host_config(network_mode="dnsm1"))
        assert e.value.response.status_code == 400
        assert "Container cannot be connected to network endpoints" in str(e.value)
    finally:
        old.close()


def test_live_restore_reopens_listeners_and_nothing_leaks(daemon, net):
    net("dnsl")
    a = run_d(daemon, "la", "--network", "dnsl", "--network-alias", "alpha")
    run_d(daemon, "lb", "--network", "dnsl")
    assert lookup(daemon, "lb", "alpha") == [ip_on(a, "dnsl")]
    daemon.stop(signal.SIGKILL)
    daemon.start()
    assert lookup(daemon, "lb", "alpha") == [ip_on(a, "dnsl")]
    assert lookup(daemon, "la", "lb")
    threads_before = daemon_threads(daemon)
    for i in range(8):  # many containers, one serving thread: the count does not grow
        run_d(daemon, f"many{i}", "--network", "dnsl")
    assert lookup(daemon, "many7", "many0")
    # at most a few more DNS workers, not one per container (the API's connection threads of
    # the runs above may take a moment to end: wait for those, a listener's would stay)
    wait_for(lambda: daemon_threads(daemon) < threads_before + 8, 10)
    daemon.docker("rm", "-f", "la", "lb", *[f"many{i}" for i in range(8)])
    # no socket of ours keeps a namespace (and its veth) alive
    wait_for(lambda: netns_and_veths(daemon) == ([], []), 5)
