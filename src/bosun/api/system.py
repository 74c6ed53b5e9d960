"""System endpoints: _ping, version, info, events, system/df."""

from __future__ import annotations

import json
import os
import platform
import socket
import threading

from bosun.api.http import Response, Stream
from bosun.api.http import MAX_API_VERSION, MIN_API_VERSION

VERSION = "0.1.0"


def _ping_headers() -> list[tuple[str, str]]:
    return [("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache"),
            ("Builder-Version", "1")]


def register(router, engine) -> None:
    def ping(req):
        body = None if req.method == "HEAD" else "OK"
        return Response(200, body, headers=_ping_headers(), content_type="text/plain; charset=utf-8")

    def version(req):
        uname = os.uname()
        return Response(200, {
            "Platform": {"Name": "bosun"},
            "Components": [{"Name": "Engine", "Version": VERSION, "Details": {
                "ApiVersion": MAX_API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux", "Arch": _arch(), "KernelVersion": uname.release,
                "Experimental": "false", "GoVersion": f"python{platform.python_version()}",
                "GitCommit": "", "BuildTime": ""}}],
            "Version": VERSION, "ApiVersion": MAX_API_VERSION,
            "MinAPIVersion": MIN_API_VERSION, "GitCommit": "",
            "GoVersion": f"python{platform.python_version()}", "Os": "linux",
            "Arch": _arch(), "KernelVersion": uname.release, "BuildTime": ""})

    def info(req):
        return Response(200, system_info(engine))

    def events(req):
        from bosun.engine.logs import parse_time
        from bosun.engine.views import parse_filters

        since = parse_time(req.q("since")) if req.q("since") else None
        until = parse_time(req.q("until")) if req.q("until") else None
        filters = parse_filters(req.q("filters"))
        stop = threading.Event()
        it = engine.events.subscribe(since=since, until=until, filters=filters, stop=stop)

        def gen():
            try:
                for ev in it:
                    yield json.dumps(ev) + "\n"
            finally:
                stop.set()
                it.close()
        return Stream(gen(), content_type="application/json")

    def df(req):
        return Response(200, disk_usage(engine))

    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
    router.add("GET", "/events", events)
    router.add("GET", "/system/df", df)


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def system_info(engine) -> dict:
    cs = engine.all()
    running = sum(1 for c in cs if c.status == "running")
    paused = sum(1 for c in cs if c.status == "paused")
    uname = os.uname()
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    cfg = engine.config
    return {
        "ID": engine.daemon_id(), "Containers": len(cs), "ContainersRunning": running,
        "ContainersPaused": paused, "ContainersStopped": len(cs) - running - paused,
        "Images": len(engine.images.images()),
        "Driver": "overlay2" if type(engine.images.snapshots).__name__.startswith("Overlay")
        else "vfs",
        "DriverStatus": [["Backing Filesystem", "extfs"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                    "Authorization": None, "Log": ["json-file", "local", "none"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True,
        "BridgeNfIptables": False, "BridgeNfIp6tables": False, "Debug": cfg.debug,
        "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": not v2,
        "NGoroutines": 0, "SystemTime": _now(), "LoggingDriver": cfg.log_driver,
        "CgroupDriver": "cgroupfs", "CgroupVersion": "2" if v2 else "1",
        "NEventsListener": 0, "KernelVersion": uname.release,
        "OperatingSystem": _os_name(), "OSVersion": "", "OSType": "linux",
        "Architecture": platform.machine(), "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": None,
                           "AllowNondistributableArtifactsHostnames": None,
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                           "IndexConfigs": {"docker.io": {"Name": "docker.io",
                                                          "Mirrors": cfg.registry_mirrors,
                                                          "Secure": True, "Official": True}},
                           "Mirrors": cfg.registry_mirrors},
        "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(), "GenericResources": None,
        "DockerRootDir": engine.data_root, "HttpProxy": os.environ.get("HTTP_PROXY", ""),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", ""), "NoProxy": os.environ.get("NO_PROXY", ""),
        "Name": socket.gethostname(), "Labels": [], "ExperimentalBuild": False,
        "ServerVersion": VERSION,
        "Runtimes": {"bosun": {"path": "bosun-runtime"}}, "DefaultRuntime": "bosun",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": cfg.live_restore, "Isolation": "",
        "InitBinary": "tini-static", "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"] + (["name=cgroupns"] if v2 else []),
        "CDISpecDirs": [], "Warnings": None,
    }


def _now() -> str:
    from bosun.engine.container import now_rfc3339

    return now_rfc3339()


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def disk_usage(engine) -> dict:
    from bosun.engine.containers.inspect import sizes
    from bosun.engine.views import summary

    images = engine.images.images()
    containers = []
    for c in engine.all():
        item = summary(c.view())
        item["SizeRw"], item["SizeRootFs"] = sizes(engine, c)
        containers.append(item)
    for img in images:
        img["Containers"] = sum(1 for c in engine.all() if c.doc["Image"] == img["Id"])
    return {"LayersSize": sum(i.get("Size", 0) for i in images), "Images": images,
            "Containers": containers, "Volumes": engine.volume_usage(), "BuildCache": []}
