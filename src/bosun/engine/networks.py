"""Networks as Docker's /networks API sees them: the network layer's bridge networks plus
Docker's two pre-defined ones without a bridge (`host`, driver host; `none`, driver null),
with the engine's knowledge added (container names; which containers use host/none); and
connect/disconnect of containers, running or not."""

from __future__ import annotations

import hashlib
import re
import time

from bosun.engine import netattach, netdns
from bosun.engine.errors import Conflict, Forbidden, InvalidParameter, NotFound
from bosun.engine.views import _matches
from bosun.filters import labels_match

_DRIVERLESS = {"host": "host", "none": "null"}  # name → driver
_FILTERS = ("name", "id", "driver", "label", "type", "dangling", "scope")


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _net_call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        raise netattach.engine_error(e) from None


def _driverless(engine, name: str) -> dict:
    bridge = engine.networks.get(netattach.DEFAULT_NETWORK)
    # Stable for the life of the data root without a record of their own: derived from
    # the `bridge` network's random id.
    nid = hashlib.sha256(f"{bridge.id}:{name}".encode()).hexdigest()
    containers = {}
    for c in engine.all():
        if (c.doc["HostConfig"].get("NetworkMode") or "") == name and c.running:
            containers[c.id] = {"Name": c.name, "EndpointID": "", "MacAddress": "",
                                "IPv4Address": "", "IPv6Address": ""}
    return {"Name": name, "Id": nid, "Created": _rfc3339(bridge.created), "Scope": "local",
            "Driver": _DRIVERLESS[name], "EnableIPv4": True, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": []},
            "Internal": False, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
            "Options": {}, "Labels": {}}


def _all(engine) -> list[dict]:
    out = [_net_call(engine.networks.inspect, n.id) for n in engine.networks.list()]
    return out + [_driverless(engine, name) for name in _DRIVERLESS]


def _find(engine, ref: str) -> dict:
    """Docker's order: exact name, exact id, then a unique id prefix."""
    from bosun.network import NetworkError

    if ref in _DRIVERLESS:
        return _driverless(engine, ref)
    try:
        return _net_call(engine.networks.inspect, ref)
    except NotFound:
        pass
    except NetworkError as e:
        raise netattach.engine_error(e) from None
    for name in _DRIVERLESS:
        item = _driverless(engine, name)
        if item["Id"] == ref or (len(ref) >= 1 and item["Id"].startswith(ref)
                                 and re.fullmatch("[0-9a-f]+", ref)):
            return item
    raise NotFound(f"network {ref} not found")


def _with_names(engine, item: dict) -> dict:
    for cid, entry in item["Containers"].items():
        c = engine.containers.get(cid)
        entry["Name"] = c.name if c is not None else ""
    return item


def inspect(engine, ref: str) -> dict:
    return _with_names(engine, _find(engine, ref))


_labels_match = labels_match


def _filtered(items: list[dict], filters: dict[str, list[str]]) -> list[dict]:
    for key in filters:
        if key not in _FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
    for flag in filters.get("dangling", []):
        if flag.lower() not in ("true", "false", "1", "0"):
            raise InvalidParameter(f"invalid filter 'dangling={flag}'")
    for kind in filters.get("type", []):
        if kind not in ("custom", "builtin"):
            raise InvalidParameter(f"invalid filter: 'type'='{kind}'")
    out = []
    for n in items:
        builtin = n["Name"] in netattach.BUILTIN
        if filters.get("name") and not _matches(filters["name"], n["Name"]):
            continue
        if filters.get("id") and not _matches(filters["id"], n["Id"]):
            continue
        if filters.get("driver") and n["Driver"] not in filters["driver"]:
            continue
        if filters.get("scope") and n["Scope"] not in filters["scope"]:
            continue
        if filters.get("label") and not _labels_match(filters["label"], n["Labels"]):
            continue
        if filters.get("type") and ("builtin" if builtin else "custom") not in filters["type"]:
            continue
        if filters.get("dangling"):
            dangling = filters["dangling"][0].lower() in ("true", "1")
            # Docker: the pre-defined networks are never dangling.
            if dangling != (not builtin and not n["Containers"]):
                continue
        out.append(n)
    return out


def list_networks(engine, filters: dict[str, list[str]]) -> list[dict]:
    items = _filtered([_with_names(engine, n) for n in _all(engine)], filters)
    for n in items:
        n["Containers"] = {}  # as Docker's list (API ≥ 1.28): inspect has them
    return items


def create(engine, body: dict) -> dict:
    from bosun.engine import gotypes

    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: the body must be an object")
    body = gotypes.check(body, gotypes.NETWORK_CREATE, "CreateRequest")
    name = body.get("Name")
    if not name or not isinstance(name, str):
        raise InvalidParameter("network name is empty" if not name else "invalid Name")
    if name in netattach.BUILTIN:
        raise Forbidden(f"{name} is a pre-defined network and cannot be created")
    driver = body.get("Driver") or "bridge"
    if driver in ("host", "null"):
        raise Forbidden(f'only one instance of "{driver}" network is allowed')
    if driver != "bridge":
        raise NotFound(f"plugin \"{driver}\" not found")
    if body.get("EnableIPv4") is False:
        raise InvalidParameter("IPv6-only networks (EnableIPv4 false) are not supported by "
                               "bosun")
    if body.get("Ingress") or body.get("ConfigOnly") or body.get("ConfigFrom"):
        raise InvalidParameter("ingress and config-only networks are swarm features, "
                               "not supported by bosun")
    ipam = body.get("IPAM") or {}
    if (ipam.get("Driver") or "default") != "default":
        raise InvalidParameter(f"IPAM driver {ipam['Driver']!r} is not supported")
    configs = [c for c in ipam.get("Config") or [] if c]
    by_family: dict[int, dict] = {}
    for conf in configs:
        if not isinstance(conf, dict):
            raise InvalidParameter("invalid IPAM config")
        # a pool without a subnet (a gateway alone) is IPv4's, as in Docker
        family = 6 if ":" in (conf.get("Subnet") or "") else 4
        if family in by_family:
            raise InvalidParameter(f"bosun supports one IPv{family} subnet per network")
        if conf.get("AuxiliaryAddresses"):
            raise InvalidParameter("auxiliary addresses are not supported by bosun")
        by_family[family] = conf
    v4, v6 = by_family.get(4, {}), by_family.get(6, {})
    options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
    labels = {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}
    net = _net_call(engine.networks.create_network, name, driver, subnet=v4.get("Subnet"),
                    gateway=v4.get("Gateway"), ip_range=v4.get("IPRange"),
                    internal=bool(body.get("Internal")), options=options, labels=labels,
                    ipv6=bool(body.get("EnableIPv6")), subnet6=v6.get("Subnet"),
                    gateway6=v6.get("Gateway"), ip_range6=v6.get("IPRange"))
    engine.events.emit("network", "create", net.id, {"name": net.name, "type": driver})
    return {"Id": net.id, "Warning": ""}


def remove(engine, ref: str) -> None:
    item = _find(engine, ref)
    if item["Name"] in netattach.BUILTIN:
        raise Forbidden(f"{item['Name']} is a pre-defined network and cannot be removed")
    if item["Containers"]:
        raise Forbidden(f"error while removing network: network {item['Name']} id "
                        f"{item['Id']} has active endpoints")
    _net_call(engine.networks.remove_network, item["Id"])
    engine.events.emit("network", "destroy", item["Id"],
                       {"name": item["Name"], "type": item["Driver"]})


def prune(engine, filters: dict[str, list[str]]) -> dict:
    from bosun.engine.logs import parse_time

    for key in filters:
        if key not in ("until", "label", "label!"):
            raise InvalidParameter(f"invalid filter '{key}'")
    until = min((parse_time(u) for u in filters.get("until", [])), default=None)
    deleted = []
    for n in engine.networks.list():
        if n.name in netattach.BUILTIN or engine.networks.store.endpoints(network_id=n.id):
            continue
        if until is not None and n.created >= until:
            continue
        if filters.get("label") and not _labels_match(filters["label"], n.labels):
            continue
        if filters.get("label!") and any(_labels_match([x], n.labels)
                                          for x in filters["label!"]):
            continue
        try:
            remove(engine, n.id)
        except (Forbidden, Conflict, NotFound):
            continue  # a container attached meanwhile, or another prune took it
        deleted.append(n.name)
    return {"NetworksDeleted": deleted or None}


# -- containers -------------------------------------------------------------------------------

def _check_connectable(c, net_name: str) -> None:
    mode = c.doc["HostConfig"].get("NetworkMode") or "bridge"
    if mode == "host" or net_name == "host":
        raise Forbidden("container cannot be disconnected from host network or connected to "
                        "host network")
    if mode == "none" or net_name == "none":
        raise Forbidden("container cannot be connected to multiple networks with one of the "
                        "networks in private (none) mode")
    if mode.startswith("container:"):
        raise Forbidden("container sharing network namespace with another container or host "
                        "cannot be connected to any other network")


def connect(engine, ref: str, c, endpoint_config: dict) -> None:
    item = _find(engine, ref)
    name = item["Name"]
    _check_connectable(c, name)
    if not isinstance(endpoint_config, dict):
        raise InvalidParameter("invalid EndpointConfig")
    ipam = endpoint_config.get("IPAMConfig") or {}
    if name == netattach.DEFAULT_NETWORK and (ipam.get("IPv4Address") or ipam.get("IPv6Address")
                                              or endpoint_config.get("Aliases")):
        raise InvalidParameter("user specified IP address and network-scoped aliases are "
                               "supported on user defined networks only")
    netattach.check_static_addresses(engine, name, endpoint_config)
    with c.lock:
        if c.removed:
            raise NotFound(f"No such container: {c.id}")
        ns = c.doc["NetworkSettings"]
        if name in (ns.get("Networks") or {}):
            raise Forbidden(f"endpoint with name {c.name} already exists in network {name}")
        eps = c.meta.setdefault("networking", {}).setdefault("EndpointsConfig", {})
        eps[name] = {k: v for k, v in endpoint_config.items()
                     if k in ("IPAMConfig", "Aliases", "MacAddress")}
        ns.setdefault("Networks", {})[name] = netattach.empty_endpoint(
            ipam or None, endpoint_config.get("Aliases"))
        if c.running and ns.get("SandboxKey"):
            try:
                netattach.attach(engine, c, name, ns["SandboxKey"])
            except BaseException:
                del ns["Networks"][name]
                del eps[name]
                raise
            netdns.refresh(engine, c)
        engine.save(c)
    engine.events.emit("network", "connect", item["Id"],
                       {"container": c.id, "name": name, "type": item["Driver"]})


def disconnect(engine, ref: str, container: str, force: bool) -> None:
    item = _find(engine, ref)
    name = item["Name"]
    try:
        c = engine.get(container)
    except NotFound:
        if not force:
            raise
        # Docker's --force: drop a vanished container's endpoint
        for ep in engine.networks.store.endpoints(network_id=item["Id"]):
            if ep.container_id.startswith(container):
                _net_call(engine.networks.detach, ep.container_id, item["Id"])
        return
    _check_connectable(c, name)
    with c.lock:
        ns = c.doc["NetworkSettings"]
        if name not in (ns.get("Networks") or {}):
            raise Forbidden(f"container {c.id} is not connected to network {name}")
        if c.running and ns.get("SandboxKey"):
            from bosun.network import NotFound as NetNotFound

            try:
                engine.networks.detach(c.id, item["Id"])
            except NetNotFound:
                pass
            except Exception as e:  # noqa: BLE001
                raise netattach.engine_error(e) from None
            if name == netattach.DEFAULT_NETWORK:
                netattach.clear_top_level(ns)
            if not any(engine.networks.ports(ep) for ep in engine.networks.endpoints(c.id)):
                # its published ports went with the endpoint
                ns["Ports"] = {k: None for k in ns.get("Ports") or {}}
        del ns["Networks"][name]
        ((c.meta.get("networking") or {}).get("EndpointsConfig") or {}).pop(name, None)
        if c.running and ns.get("SandboxKey"):
            netdns.refresh(engine, c)
        engine.save(c)
    engine.events.emit("network", "disconnect", item["Id"],
                       {"container": c.id, "name": name, "type": item["Driver"]})
