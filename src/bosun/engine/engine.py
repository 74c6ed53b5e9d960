"""The Engine: the one object the daemon (or any other host) drives.

It owns the container records (SQLite + an in-memory index), the image store, the event bus,
the fork-server that shims are forked from, and the monitor that hears from the shims. The verbs
live one per module in `bosun.engine.containers`; the methods here are their front door.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
from dataclasses import dataclass, field

from bosun.engine.container import Container
from bosun.engine.errors import InvalidParameter, NotFound
from bosun.engine.events import EventBus
from bosun.engine.store import ContainerStore

log = logging.getLogger("bosun.engine")


@dataclass
class EngineConfig:
    data_root: str = "/var/lib/bosun"
    exec_root: str = "/run/bosun"
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    default_ulimits: dict[str, dict] = field(default_factory=dict)
    live_restore: bool = True
    debug: bool = False
    storage_driver: str | None = None
    cgroup_parent: str = "/bosun"
    bridge: str = "bosun0"  # the `bridge` network's Linux bridge (dockerd's --bridge)
    bip: str = ""  # its gateway address/prefix, e.g. 172.30.0.1/16 (dockerd's --bip)
    address_pools: list = field(default_factory=list)  # default-address-pools [{base, size}]

    @property
    def nft_table(self) -> str:
        """bosun's nftables table (and the owner tag of its links): one per default bridge,
        so daemons with different bridges (tests) never touch each other's rules."""
        if self.bridge == "bosun0":
            return "bosun"
        return "bosun_" + "".join(ch if ch.isalnum() else "_" for ch in self.bridge)


class Engine:
    def __init__(self, config: EngineConfig, *, forkserver=None, images=None) -> None:
        self.config = config
        self.data_root = os.path.abspath(config.data_root)
        self.exec_root = os.path.abspath(config.exec_root)
        for d in (self.data_root, self.exec_root):
            os.makedirs(d, 0o711, exist_ok=True)
        for d in (self.containers_dir, self.bundles_dir, self.runtime_root):
            os.makedirs(d, 0o700, exist_ok=True)
        if images is None:
            from bosun.image.store import ImageStore

            images = ImageStore(os.path.join(self.data_root, "image"),
                                driver=config.storage_driver,
                                mirrors=config.registry_mirrors,
                                insecure_registries=config.insecure_registries)
        self.images = images
        self.forkserver = forkserver
        self.store = ContainerStore(os.path.join(self.data_root, "containers.db"))
        self.events = EventBus()
        self.lock = threading.RLock()  # guards the two indexes below
        self.containers: dict[str, Container] = {}
        self.names: dict[str, str] = {}
        self.execs: dict = {}
        self._networks = None
        self._volumes = None
        self._dns = None
        from bosun.engine.monitor import Monitor

        self.monitor = Monitor(self)

    # -- paths ------------------------------------------------------------------------------

    @property
    def containers_dir(self) -> str:
        return os.path.join(self.data_root, "containers")

    @property
    def bundles_dir(self) -> str:
        return os.path.join(self.exec_root, "containers")

    @property
    def runtime_root(self) -> str:
        return os.path.join(self.exec_root, "runtime")

    def daemon_id(self) -> str:
        """A stable ID for this data root (Docker keeps one in its engine-id file)."""
        path = os.path.join(self.data_root, "engine-id")
        try:
            with open(path) as f:
                return f.read().strip()
        except FileNotFoundError:
            import uuid

            from bosun.runtime.state import atomic_write

            value = str(uuid.uuid4())
            atomic_write(path, value.encode(), 0o600)
            return value

    def container_dir(self, cid: str) -> str:
        return os.path.join(self.containers_dir, cid)

    def bundle_dir(self, cid: str) -> str:
        return os.path.join(self.bundles_dir, cid)

    @property
    def networks(self):
        """The network layer (bosun.network.Networks), made on first use: importing it costs
        ~0.25 s (pyroute2), which a daemon pays once at start."""
        if self._networks is None:
            with self.lock:
                if self._networks is None:
                    from bosun.network.manager import Networks

                    self._networks = Networks(
                        os.path.join(self.data_root, "network", "network.db"),
                        os.path.join(self.exec_root, "network"),
                        table=self.config.nft_table, default_bridge=self.config.bridge,
                        address_pools=self.config.address_pools)
        return self._networks

    @property
    def volumes(self):
        """The volume service (bosun.volume.Volumes) under <data-root>/volumes, made on
        first use."""
        if self._volumes is None:
            with self.lock:
                if self._volumes is None:
                    from bosun.volume.local import Volumes

                    self._volumes = Volumes(os.path.join(self.data_root, "volumes"))
        return self._volumes

    @property
    def dns(self):
        """The embedded DNS server (bosun.network.dns), started on first use."""
        if self._dns is None:
            with self.lock:
                if self._dns is None:
                    from bosun.network import netlink
                    from bosun.network.dns import DnsServer, NameTable

                    self._dns = DnsServer(NameTable(), in_netns=netlink.in_netns)
        return self._dns

    @property
    def has_dns(self) -> bool:
        return self._dns is not None

    # -- life -------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the records and reconcile them with the kernel (live-restore)."""
        from bosun.engine.restore import restore

        self.monitor.start()
        self.ensure_default_network()
        restore(self)

    def ensure_default_network(self) -> None:
        from bosun.engine.netattach import engine_error

        subnet = gateway = None
        if self.config.bip:
            import ipaddress

            try:
                iface = ipaddress.IPv4Interface(self.config.bip)
            except ValueError as e:
                raise InvalidParameter(f"invalid bip {self.config.bip!r}: {e}") from None
            subnet, gateway = str(iface.network), str(iface.ip)
        try:
            self.networks.ensure_default_network(subnet, gateway)
        except Exception as e:  # noqa: BLE001
            raise engine_error(e) from None

    def close(self) -> None:
        """Stop serving; running containers keep running (their shims outlive us)."""
        self.monitor.stop()
        if self._dns is not None:
            self._dns.close()  # live-restored containers get their listeners back at start
        self.store.close()
        if self._volumes is not None:
            self._volumes.close()
        if self._networks is not None:
            self._networks.store.close()
        self.images.close()

    # -- lookup -----------------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        """By full ID, name (with or without the leading /) or unique ID prefix, as Docker."""
        if not isinstance(ref, str) or not ref:
            raise NotFound(f"No such container: {ref}")
        with self.lock:
            c = self.containers.get(ref)
            if c is not None:
                return c
            cid = self.names.get(ref.lstrip("/") if ref.startswith("/") else ref)
            if cid is not None:
                return self.containers[cid]
            hits = [c for i, c in self.containers.items() if i.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        with self.lock:
            return list(self.containers.values())

    def new_id(self) -> str:
        while True:
            cid = secrets.token_hex(32)
            if not cid[:12].isdigit():  # Docker avoids all-digit short IDs
                with self.lock:
                    if cid not in self.containers:
                        return cid

    def save(self, c: Container) -> None:
        self.store.update(c.doc, c.meta)

    def emit(self, c: Container, action: str, **extra: str) -> dict:
        attrs = {"image": c.doc["Config"].get("Image", ""), "name": c.name}
        attrs.update(c.doc["Config"].get("Labels") or {})
        attrs.update(extra)
        return self.events.emit("container", action, c.id, attrs)

    def forget(self, c: Container) -> None:
        """Drop a removed container from the indexes and disk records."""
        with self.lock:
            self.containers.pop(c.id, None)
            if self.names.get(c.name) == c.id:
                del self.names[c.name]
        self.store.delete(c.id)
        for d in (self.container_dir(c.id), self.bundle_dir(c.id)):
            shutil.rmtree(d, ignore_errors=True)

    # -- verbs ------------------------------------------------------------------------------

    def create_container(self, body: dict, name: str | None = None,
                         platform: str | None = None) -> dict:
        from bosun.engine.containers.create import create

        return create(self, body, name, platform)

    def start_container(self, ref: str, detach_keys: str | None = None) -> None:
        from bosun.engine.containers.start import start

        start(self, self.get(ref))

    def stop_container(self, ref: str, timeout: int | None = None,
                       signal: str | None = None) -> None:
        from bosun.engine.containers.stop import stop

        stop(self, self.get(ref), timeout, signal)

    def restart_container(self, ref: str, timeout: int | None = None,
                          signal: str | None = None) -> None:
        from bosun.engine.containers.stop import restart

        restart(self, self.get(ref), timeout, signal)

    def kill_container(self, ref: str, signal: str | None = None) -> None:
        from bosun.engine.containers.kill import kill

        kill(self, self.get(ref), signal)

    def remove_container(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        from bosun.engine.containers.remove import remove

        remove(self, self.get(ref), force=force, volumes=volumes)

    def wait_container(self, ref: str, condition: str = "not-running",
                       timeout: float | None = None) -> dict | None:
        from bosun.engine.containers.wait import wait

        return wait(self, self.get(ref), condition, timeout)

    def attach_container(self, ref: str, sock, **opts) -> None:
        from bosun.engine.containers.attach import attach

        attach(self, self.get(ref), sock, **opts)

    def resize_container(self, ref: str, h: int, w: int) -> None:
        from bosun.engine.containers.attach import resize

        resize(self, self.get(ref), h, w)

    def logs(self, ref: str, **opts):
        from bosun.engine.containers.logs import logs

        return logs(self, self.get(ref), **opts)

    def inspect_container(self, ref: str, size: bool = False) -> dict:
        from bosun.engine.containers.inspect import inspect

        return inspect(self, self.get(ref), size)

    def list_containers(self, **opts) -> list[dict]:
        from bosun.engine.containers.inspect import list_containers

        return list_containers(self, **opts)

    def rename_container(self, ref: str, new_name: str) -> None:
        from bosun.engine.containers.rename import rename

        rename(self, self.get(ref), new_name)

    def pause_container(self, ref: str) -> None:
        from bosun.engine.containers.pause import pause

        pause(self, self.get(ref))

    def unpause_container(self, ref: str) -> None:
        from bosun.engine.containers.pause import unpause

        unpause(self, self.get(ref))

    def top(self, ref: str, ps_args: str | None = None) -> dict:
        from bosun.engine.containers.top import top

        return top(self, self.get(ref), ps_args)

    def exec_create(self, ref: str, body: dict) -> str:
        from bosun.engine.containers.exec import create

        return create(self, self.get(ref), body)

    def exec_start(self, exec_id: str, sock=None, detach: bool = False,
                   tty: bool | None = None) -> None:
        from bosun.engine.containers.exec import start

        start(self, exec_id, sock, detach)

    def exec_inspect(self, exec_id: str) -> dict:
        from bosun.engine.containers.exec import inspect

        return inspect(self, exec_id)

    def exec_resize(self, exec_id: str, h: int, w: int) -> None:
        from bosun.engine.containers.exec import resize

        resize(self, exec_id, h, w)

    def prune_containers(self, filters: dict | None = None) -> dict:
        from bosun.engine.containers.prune import prune

        return prune(self, filters or {})

    def container_changes(self, ref: str) -> list[dict]:
        from bosun.engine.containers.changes import changes

        return changes(self, self.get(ref))

    # -- networks -------------------------------------------------------------------------

    def list_networks(self, filters: dict | None = None) -> list[dict]:
        from bosun.engine import networks

        return networks.list_networks(self, filters or {})

    def inspect_network(self, ref: str) -> dict:
        from bosun.engine import networks

        return networks.inspect(self, ref)

    def create_network(self, body: dict) -> dict:
        from bosun.engine import networks

        return networks.create(self, body)

    def remove_network(self, ref: str) -> None:
        from bosun.engine import networks

        networks.remove(self, ref)

    def connect_network(self, ref: str, container: str, endpoint_config: dict | None) -> None:
        from bosun.engine import networks

        networks.connect(self, ref, self.get(container), endpoint_config or {})

    def disconnect_network(self, ref: str, container: str, force: bool = False) -> None:
        from bosun.engine import networks

        networks.disconnect(self, ref, container, force)

    def prune_networks(self, filters: dict | None = None) -> dict:
        from bosun.engine import networks

        return networks.prune(self, filters or {})

    # -- volumes --------------------------------------------------------------------------

    def list_volumes(self, filters: dict | None = None) -> dict:
        from bosun.engine import volumes

        return volumes.list_volumes(self, filters or {})

    def inspect_volume(self, name: str) -> dict:
        from bosun.engine import volumes

        return volumes.inspect(self, name)

    def create_volume(self, body: dict) -> dict:
        from bosun.engine import volumes

        return volumes.create(self, body)

    def remove_volume(self, name: str, force: bool = False) -> None:
        from bosun.engine import volumes

        volumes.remove(self, name, force)

    def prune_volumes(self, filters: dict | None = None) -> dict:
        from bosun.engine import volumes

        return volumes.prune(self, filters or {})

    def volume_usage(self) -> list[dict]:
        from bosun.engine import volumes

        return volumes.usage(self)
