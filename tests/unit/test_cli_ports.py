"""-p/--expose parsing and network create's IPAM pairing, as docker's CLI."""

import pytest

from bosun.cli import StatusError
from bosun.cli.network import ipam_config
from bosun.cli.ports import parse_expose, parse_publish
from bosun.portspec import PortSpecError


def publish(*specs):
    exposed, bindings = {}, {}
    parse_publish(list(specs), exposed, bindings)
    return exposed, bindings


def test_publish_forms():
    assert publish("80") == ({"80/tcp": {}}, {"80/tcp": [{"HostIp": "", "HostPort": ""}]})
    assert publish("8080:80/udp")[1] == {"80/udp": [{"HostIp": "", "HostPort": "8080"}]}
    assert publish("127.0.0.1::80")[1] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert publish("[::1]:81:80")[1] == {"80/tcp": [{"HostIp": "::1", "HostPort": "81"}]}
    _, b = publish("9000-9001:90-91", "9100:90")
    assert b == {"90/tcp": [{"HostIp": "", "HostPort": "9000"},
                            {"HostIp": "", "HostPort": "9100"}],
                 "91/tcp": [{"HostIp": "", "HostPort": "9001"}]}
    # one container port, a host range: any free port of it
    assert publish("8000-8010:80")[1] == {"80/tcp": [{"HostIp": "", "HostPort": "8000-8010"}]}


@pytest.mark.parametrize("spec,message", [
    ("abc", "invalid containerPort: abc"), ("80/xyz", "invalid proto: xyz"),
    ("70000:80", "invalid hostPort: 70000"), ("1.2.3:80:80", "invalid IP address: 1.2.3"),
    ("80:", "no port specified: 80:<empty>"), ("80-78", "invalid containerPort: 80-78"),
    ("8000-8002:80-81", "invalid ranges specified for container and host Ports: 80-81 and "
     "8000-8002")])
def test_publish_errors(spec, message):
    with pytest.raises(PortSpecError, match=f"^{message}$".replace("(", r"\(")):
        publish(spec)


def test_expose():
    exposed = {}
    parse_expose(["7000-7001", "53/udp"], exposed)
    assert exposed == {"7000/tcp": {}, "7001/tcp": {}, "53/udp": {}}
    with pytest.raises(PortSpecError, match="invalid range format for --expose: abc, error: "):
        parse_expose(["abc"], {})


def test_ipam_pairs_gateways_and_ranges_with_their_subnet():
    assert ipam_config(["10.1.0.0/16", "10.2.0.0/16"], ["10.2.0.1"], ["10.1.5.0/24"]) == [
        {"Subnet": "10.1.0.0/16", "IPRange": "10.1.5.0/24"},
        {"Subnet": "10.2.0.0/16", "Gateway": "10.2.0.1"}]
    with pytest.raises(StatusError, match="no matching subnet for gateway 10.9.9.9"):
        ipam_config(["10.1.0.0/16"], ["10.9.9.9"], [])
    with pytest.raises(StatusError, match="cannot configure multiple gateways"):
        ipam_config(["10.1.0.0/16"], ["10.1.0.1", "10.1.0.2"], [])


def test_ipam_config_and_endpoint_config_with_ipv6():
    from bosun.cli.network import endpoint_config

    assert ipam_config(["10.1.0.0/16", "fd00:1::/64"], ["fd00:1::fe", "10.1.0.9"],
                       ["fd00:1::/80"]) == [
        {"Subnet": "10.1.0.0/16", "Gateway": "10.1.0.9"},
        {"Subnet": "fd00:1::/64", "Gateway": "fd00:1::fe", "IPRange": "fd00:1::/80"}]
    with pytest.raises(StatusError, match="no matching subnet for ip-range 10.1.0.0/24"):
        ipam_config(["fd00:1::/64"], [], ["10.1.0.0/24"])
    assert endpoint_config([], None, ip6="fd00:1::5") == {
        "IPAMConfig": {"IPv6Address": "fd00:1::5"}}
    assert endpoint_config(["a"], "10.1.0.5", ip6="fd00:1::5")["IPAMConfig"] == {
        "IPv4Address": "10.1.0.5", "IPv6Address": "fd00:1::5"}
