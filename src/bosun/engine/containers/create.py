"""create: a container record, its writable snapshot and its /etc files — all or nothing."""

from __future__ import annotations

import os
import shutil
import socket

from bosun.engine import names
from bosun.engine.container import Container, new_state, now_rfc3339
from bosun.engine.errors import Conflict, InvalidParameter, NotFound

BUILTIN_NET = ("bridge", "none", "host")
# Config keys of a create body (the rest of the body is HostConfig/NetworkingConfig).
_CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout",
                "AttachStderr", "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd",
                "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint",
                "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
                "StopTimeout", "Shell")


def image_error(e: Exception) -> Exception:
    """The image store's errors as engine errors."""
    from bosun.image import metadata, reference

    if isinstance(e, metadata.NotFound):
        return NotFound(str(e))
    if isinstance(e, (metadata.AmbiguousPrefix, reference.InvalidReference, ValueError)):
        return InvalidParameter(str(e))
    if isinstance(e, metadata.Conflict):
        return Conflict(str(e))
    return e


def create(engine, body: dict, name: str | None, platform: str | None = None) -> dict:
    from bosun.engine import gotypes
    from bosun.engine.createconfig import merge_image_config, normalize_host_config

    if not isinstance(body, dict):
        raise InvalidParameter("Config cannot be empty in order to create a container")
    body = gotypes.check(body, gotypes.CONTAINER_CREATE, "ContainerConfigWrapper")
    image = body.get("Image")
    if not image or not isinstance(image, str):
        raise InvalidParameter("No image specified" if not image else "invalid Image")
    try:
        image_id = engine.images.resolve(image)
        image_config = engine.images.config(image_id)
        chain = engine.images.layer_chain(image_id)
    except Exception as e:  # noqa: BLE001
        raise image_error(e) from None
    request = {k: body[k] for k in _CONFIG_KEYS if body.get(k) is not None}
    config = merge_image_config(request, image_config.config.legacy_dict())
    config["Image"] = image
    host_config = normalize_host_config(body.get("HostConfig"), cgroups_v2=_cgroup_v2(),
                                        network_name=lambda ref: _network_name(engine, ref))
    networking = _networking_config(engine, body.get("NetworkingConfig"), host_config)
    _fill_defaults(engine, host_config)

    cid = engine.new_id()
    name = _reserve_name(engine, name, cid)
    if not config.get("Hostname"):
        config["Hostname"] = (socket.gethostname() if host_config.get("NetworkMode") == "host"
                              else cid[:12])
    cmd = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    cdir = engine.container_dir(cid)
    made_snapshot = made_ref = False
    made_volumes: list[str] | None = None
    try:
        from bosun.engine import volumes

        mounts, made_volumes = volumes.resolve(engine, cid, config, host_config)
        os.makedirs(cdir, 0o700)
        rootfs = engine.images.snapshots.mount_container(cid, chain)
        made_snapshot = True
        engine.images.db.add_container_ref(cid, image_id)
        made_ref = True
        from bosun.engine import etcfiles

        paths = etcfiles.paths(cdir)  # written by start
        log_path = ""
        if host_config["LogConfig"]["Type"] == "json-file":
            log_path = os.path.join(cdir, f"{cid}-json.log")
        doc = {
            "Id": cid,
            "Created": now_rfc3339(),
            "Path": cmd[0] if cmd else "",
            "Args": cmd[1:],
            "State": new_state(),
            "Image": image_id,
            "ResolvConfPath": paths["ResolvConfPath"],
            "HostnamePath": paths["HostnamePath"],
            "HostsPath": paths["HostsPath"],
            "LogPath": log_path,
            "Name": "/" + name,
            "RestartCount": 0,
            "Driver": _driver_name(engine),
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": host_config,
            "GraphDriver": _graph_driver(engine, cid, rootfs),
            "Mounts": volumes.public(mounts),
            "Config": config,
            "NetworkSettings": _network_settings(host_config, networking),
        }
        meta = {"rootfs": rootfs, "chain": chain, "manual_stop": False,
                "networking": networking, "mounts": mounts}
        engine.store.insert(doc, meta)
    except BaseException:
        with engine.lock:
            if engine.names.get(name) == cid:
                del engine.names[name]
        if made_ref:
            engine.images.db.remove_container_ref(cid)
        if made_snapshot:
            engine.images.snapshots.remove_container(cid)
        shutil.rmtree(cdir, ignore_errors=True)
        if made_volumes is not None:
            volumes.unresolve(engine, cid, made_volumes)
        raise
    c = Container(doc, meta)
    with engine.lock:
        engine.containers[cid] = c
    engine.emit(c, "create")
    return {"Id": cid, "Warnings": []}


def _reserve_name(engine, name: str | None, cid: str) -> str:
    """Claim the name in the index at once, so a concurrent create sees it taken."""
    with engine.lock:
        if name:
            name = names.check(name)
            holder = engine.names.get(name)
            if holder is not None:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                               f'container "{holder}". You have to remove (or rename) that '
                               "container to be able to reuse that name.")
        else:
            for attempt in range(20):
                name = names.generate(attempt)
                if name not in engine.names:
                    break
        engine.names[name] = cid
    return name


def _cgroup_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _fill_defaults(engine, hc: dict) -> None:
    lc = hc.get("LogConfig") or {}
    if not lc.get("Type"):
        hc["LogConfig"] = {"Type": engine.config.log_driver,
                           "Config": dict(engine.config.log_opts)}
    if not hc.get("Ulimits") and engine.config.default_ulimits:
        hc["Ulimits"] = [dict(v, Name=k) for k, v in engine.config.default_ulimits.items()]


def _driver_name(engine) -> str:
    from bosun.image.snapshot import OverlaySnapshotter

    return "overlay2" if isinstance(engine.images.snapshots, OverlaySnapshotter) else "vfs"


def _graph_driver(engine, cid: str, rootfs: str) -> dict:
    data = {"MergedDir": rootfs}
    try:
        data["UpperDir"] = engine.images.snapshots.upper_dir(cid)
        data["WorkDir"] = os.path.join(os.path.dirname(data["UpperDir"]), "work")
    except Exception:  # noqa: BLE001
        pass
    return {"Data": data, "Name": _driver_name(engine)}


def _network_name(engine, ref: str) -> str | None:
    from bosun.network import NetworkError

    try:
        return engine.networks.get(ref).name
    except NetworkError:
        return None


def _networking_config(engine, nc: dict | None, hc: dict) -> dict:
    """NetworkingConfig, checked as Docker checks it at create: static addresses and aliases
    only on user-defined networks. One entry is the mode's network's, however it is keyed
    (id, prefix, "default"); several (API >= 1.44; the API layer refuses them before) are
    keyed by network, all attached at start, the mode's network first."""
    if nc is not None and not isinstance(nc, dict):
        raise InvalidParameter("invalid NetworkingConfig")
    given = dict((nc or {}).get("EndpointsConfig") or {})
    mode = hc["NetworkMode"]
    eps: dict[str, dict] = {}
    for key, conf in given.items():
        conf = conf or {}
        if not isinstance(conf, dict):
            raise InvalidParameter(f"invalid EndpointsConfig for network {key}")
        name = mode
        if len(given) > 1:
            name = key if key in BUILTIN_NET else _network_name(engine, key)
            if name is None:
                raise NotFound(f"network {key} not found")
            if name != mode and not _joinable(mode, name):
                raise InvalidParameter("Container cannot be connected to network endpoints: "
                                       + ", ".join(given))
        if name in BUILTIN_NET or name.startswith("container:"):
            ipam = conf.get("IPAMConfig") or {}
            if ipam.get("IPv4Address") or ipam.get("IPv6Address"):
                raise InvalidParameter("user specified IP address is supported on user "
                                       "defined networks only")
            if conf.get("Aliases"):
                raise InvalidParameter("network-scoped alias is supported only for "
                                       "containers in user defined networks")
        else:
            from bosun.engine.netattach import check_static_addresses

            check_static_addresses(engine, name, conf)
        eps[name] = conf
    if mode in eps:
        eps = {mode: eps.pop(mode), **eps}
    return {"EndpointsConfig": eps} if eps else {}


def _joinable(mode: str, name: str) -> bool:
    """Whether a container of network mode `mode` may also be on network `name`."""
    return mode not in ("host", "none") and not mode.startswith("container:") and \
        name not in ("host", "none")


def _network_settings(hc: dict, networking: dict) -> dict:
    from bosun.engine.netattach import empty_endpoint

    mode = hc.get("NetworkMode") or "bridge"
    networks = {}
    if not mode.startswith("container:"):
        eps = networking.get("EndpointsConfig") or {}
        for name in dict.fromkeys([mode, *eps]):
            conf = eps.get(name) or {}
            networks[name] = empty_endpoint(conf.get("IPAMConfig"), conf.get("Aliases"))
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {},
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": networks}
