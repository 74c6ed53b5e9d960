"""Hostile and malformed input to the Engine API over its unix socket: every answer is a
Docker-shaped error (`{"message": ...}`, a status below 500), the daemon keeps answering, and a
rejected request leaves nothing behind (no container, image, network or volume)."""

from __future__ import annotations

import http.client
import io
import json
import random
import socket
import tarfile

import pytest

pytestmark = pytest.mark.usefixtures("no_containers_after")

TIMEOUT = 20


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=TIMEOUT)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(self._path)


def api(daemon, method: str, path: str, body=None, headers: dict | None = None
        ) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body). A dict/list body is sent as JSON,
    bytes as they are."""
    conn = _UnixConnection(str(daemon.socket))
    try:
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def raw(daemon, data: bytes, shut: bool = True) -> bytes:
    """Bytes straight onto the socket; what came back until the daemon closed (or timed out)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect(str(daemon.socket))
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered (or hung up) before reading it all
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:  # closed with our bytes unread: what came is all
                return out
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def problem(status: int, body: bytes) -> str | None:
    """Why an answer to a bad request is wrong, or None when it is fine."""
    if status >= 500 and status != 501:  # 501: what bosun does not implement (search, build)
        return f"{status} {body[:300]!r}"
    if status >= 400 and body:  # HEAD answers have none
        try:
            doc = json.loads(body)
        except ValueError:
            return f"{status} with a non-JSON body {body[:200]!r}"
        if not isinstance(doc, dict) or not isinstance(doc.get("message"), str):
            return f"{status} without a message: {body[:200]!r}"
    return None


def listing(daemon) -> dict[str, list]:
    out = {}
    for what, path in (("containers", "/containers/json?all=1"), ("images", "/images/json"),
                       ("networks", "/networks"), ("volumes", "/volumes")):
        status, body = api(daemon, "GET", path)
        assert status == 200, (what, status, body)
        doc = json.loads(body)
        if what == "volumes":
            doc = doc["Volumes"] or []
        out[what] = sorted(x.get("Id") or x.get("Name") for x in doc)
    return out


class Checker:
    """Collects every wrong answer, so one run shows them all."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.failures: list[str] = []

    def __call__(self, method, path, body=None, headers=None, ok=()) -> tuple[int, bytes]:
        try:
            status, out = api(self.daemon, method, path, body, headers)
        except (OSError, http.client.HTTPException) as e:
            self.failures.append(f"{method} {path} {_short(body)}: {type(e).__name__}: {e}")
            return 0, b""
        why = problem(status, out)
        if why and status not in ok:
            self.failures.append(f"{method} {path} {_short(body)}: {why}")
        return status, out

    def alive(self):
        status, _ = api(self.daemon, "GET", "/_ping")
        assert status == 200

    def done(self):
        self.alive()
        assert not self.failures, "\n".join(self.failures)


def _short(body) -> str:
    text = body if isinstance(body, (bytes, bytearray)) else json.dumps(body)
    text = repr(text) if isinstance(text, (bytes, bytearray)) else text
    return text if len(text) < 200 else text[:200] + "…"


# -- container create ---------------------------------------------------------------------------

BAD_VALUES = [
    "x", "", -1, -(2 ** 63), 2 ** 64, 1.5, True, None, [], {}, [["x"]], {"a": {"b": []}},
    [None], [1], {"x": 1}, "\x00", "a" * 70000, "-1", "999999999999999999999",
]

CONFIG_FIELDS = [
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
    "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled",
    "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell",
    "HostConfig", "NetworkingConfig",
]

HOST_CONFIG_FIELDS = [
    "CpuShares", "Memory", "CgroupParent", "BlkioWeight", "BlkioWeightDevice",
    "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime",
    "CpusetCpus", "CpusetMems", "Devices", "DeviceCgroupRules", "DeviceRequests",
    "MemoryReservation", "MemorySwap", "MemorySwappiness", "NanoCpus", "OomKillDisable",
    "Init", "PidsLimit", "Ulimits", "Binds", "ContainerIDFile", "LogConfig", "NetworkMode",
    "PortBindings", "RestartPolicy", "AutoRemove", "VolumeDriver", "VolumesFrom", "Mounts",
    "ConsoleSize", "Annotations", "CapAdd", "CapDrop", "CgroupnsMode", "Dns", "DnsOptions",
    "DnsSearch", "ExtraHosts", "GroupAdd", "IpcMode", "Cgroup", "Links", "OomScoreAdj",
    "PidMode", "Privileged", "PublishAllPorts", "ReadonlyRootfs", "SecurityOpt", "StorageOpt",
    "Tmpfs", "UTSMode", "UsernsMode", "ShmSize", "Sysctls", "Runtime", "Isolation",
    "MaskedPaths", "ReadonlyPaths", "ShmSize",
]

# values of the right outer type whose insides are wrong
NESTED = {
    "Healthcheck": [{"Test": "true", "Interval": "1s"},
                    {"Test": ["CMD"], "Interval": -5, "Retries": "3"}, {"Test": [1, 2]}],
    "ExposedPorts": [{"80/tcp": [], "bogus/proto": {}, "99999/tcp": {}}],
    "Volumes": [{"relative": {}}, {"/x": "y"}],
    "Labels": [{"a": 1}],
    "Env": [["=x", "A", 5], ["A=\x00"]],
    "Cmd": [[None]],
    "NetworkingConfig": [{"EndpointsConfig": []}, {"EndpointsConfig": {"bridge": []}},
                         {"EndpointsConfig": {"bridge": {"IPAMConfig": "x"}}},
                         {"EndpointsConfig": {"bridge": {"Aliases": "x"}}},
                         {"EndpointsConfig": {"nope": {}}}],
    "StopSignal": ["SIGBOGUS"],
    "MacAddress": ["zz:zz"],
    "Image": ["UPPER/case", "busybox@sha256:xyz", "a" * 300],
    "User": ["nobody:nogroup:extra", "99999999999999999999"],
    "WorkingDir": ["relative/dir"],
}

HOST_NESTED = {
    "RestartPolicy": [{"Name": "sometimes"}, {"Name": "on-failure", "MaximumRetryCount": -3},
                      {"Name": "on-failure", "MaximumRetryCount": "3"}, {"Name": 5}],
    "LogConfig": [{"Type": "bogus"}, {"Type": "json-file", "Config": {"max-size": "lots"}},
                  {"Type": "json-file", "Config": []},
                  {"Type": "json-file", "Config": {"max-size": 5}}],
    "PortBindings": [{"80/tcp": {"HostPort": "8080"}}, {"80/tcp": [{"HostPort": "notaport"}]},
                     {"80/tcp": [{"HostPort": 8080}]},
                     {"80/tcp": [{"HostIp": "nope", "HostPort": "1"}]}, {"80/tcp": ["x"]},
                     {"bogus": [{}]}, {"80/tcp": [{"HostPort": "70000"}]}],
    "Mounts": [[{"Type": "bind"}], [{"Type": "bind", "Source": "relative", "Target": "/x"}],
               [{"Type": "volume", "Target": "relative"}], [{"Type": "bogus", "Target": "/x"}],
               [{"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"SizeBytes": "big"}}],
               [{"Type": "tmpfs", "Target": "/x", "TmpfsOptions": []}],
               [{"Type": "volume", "Target": "/x", "VolumeOptions": {"Labels": []}}],
               [{"Type": "volume", "Source": "../../etc", "Target": "/x"}],
               [{"Type": "bind", "Source": "/no/such", "Target": "/x",
                 "BindOptions": {"Propagation": "sideways"}}],
               ["/x"], [{"Type": "volume", "Target": "/x", "ReadOnly": "yes"}]],
    "Binds": [["rel/ative:/x"], ["/a:/b:c:d:e"], ["/a:relative"], ["/a:/b:bogusmode"], [":"],
              ["../../etc:/x"], [5]],
    "Tmpfs": [{"relative": ""}, {"/x": "size=lots"}, {"/x": 5}],
    "Ulimits": [[{"Name": "bogus", "Soft": 1, "Hard": 1}],
                [{"Name": "nofile", "Soft": 10, "Hard": 5}],
                [{"Name": "nofile", "Soft": "10", "Hard": "x"}], ["nofile=10"]],
    "Devices": [[{"PathOnHost": "/dev/nope", "PathInContainer": "/dev/x",
                  "CgroupPermissions": "rwm"}],
                [{"PathOnHost": "/dev/null", "PathInContainer": "relative",
                  "CgroupPermissions": "xyz"}],
                ["/dev/null"]],
    "DeviceCgroupRules": [["garbage"]],
    "DeviceRequests": [[{"Driver": "nvidia", "Count": -1}]],
    "CapAdd": [["CAP_BOGUS"], [5]],
    "CapDrop": [["BOGUS"]],
    "SecurityOpt": [["bogus"], ["seccomp=not json"], ["seccomp={\"defaultAction\": 5}"],
                    ["apparmor"], ["label=bogus:x"], ["no-new-privileges=maybe"]],
    "Sysctls": [{"vm.swappiness": "10"}, {"net.ipv4.ip_forward": 1}, {"kernel.bogus/../x": "1"}],
    "ExtraHosts": [["nocolon"], ["host:notanip"]],
    "Dns": [["not-an-ip"]],
    "CpusetCpus": ["0-", "99999"],
    "CpusetMems": ["a,b"],
    "NetworkMode": ["container:nope", "nosuchnetwork", "bogus:x"],
    "IpcMode": ["bogus", "container:nope"],
    "PidMode": ["container:nope", "bogus"],
    "UTSMode": ["bogus"],
    "UsernsMode": ["bogus"],
    "CgroupnsMode": ["bogus"],
    "Cgroup": ["container:nope"],
    "VolumesFrom": [["nope"], ["nope:bogusmode"]],
    "Links": [["nope:alias"], ["::"]],
    "GroupAdd": [["nosuchgroup"]],
    "ConsoleSize": [[1], [-1, -1], ["a", "b"]],
    "Runtime": ["nosuchruntime"],
    "Isolation": ["hyperv"],
    "CgroupParent": ["../../../escape"],
    "ShmSize": [-1],
    "Memory": [1],
    "MemorySwap": [-5],
    "MemorySwappiness": [101],
    "OomScoreAdj": [5000],
    "CpuShares": [-1],
    "NanoCpus": [-1, 10 ** 18],
    "CpuQuota": [1],
    "CpuPeriod": [1],
    "BlkioWeight": [5],
    "BlkioWeightDevice": [[{"Path": "/dev/nope", "Weight": 5}]],
    "BlkioDeviceReadBps": [[{"Path": 5, "Rate": "x"}]],
    "PidsLimit": [-5],
    "StorageOpt": [{"size": "1G"}],
    "MaskedPaths": [["relative"]],
    "ReadonlyPaths": [[5]],
    "Annotations": [{"a": 5}],
}

ACCEPTABLE = (400, 404, 409, 501)


def created(checker, daemon, body, query="") -> None:
    status, out = checker("POST", "/containers/create" + query, body)
    if status == 201:  # Docker accepts it too (or defers the check to start): clean it up
        cid = json.loads(out)["Id"]
        s, o = api(daemon, "DELETE", f"/containers/{cid}?force=1&v=1")
        assert s == 204, (s, o)
    elif status and status not in ACCEPTABLE:
        checker.failures.append(f"create {_short(body)}: unexpected {status} {out[:200]!r}")


def base():
    return {"Image": "busybox", "Cmd": ["true"]}


def _create_each(daemon, config: dict[str, list], host_config: dict[str, list]) -> None:
    """A create per field and value (Config's fields at the top, HostConfig's inside it):
    each answered as Docker would, and none leaves anything behind."""
    before = listing(daemon)
    check = Checker(daemon)
    for name, values in config.items():
        for value in values:
            created(check, daemon, {**base(), name: value})
    for name, values in host_config.items():
        for value in values:
            created(check, daemon, {**base(), "HostConfig": {name: value}})
    check.done()
    assert listing(daemon) == before


def test_create_with_wrong_types_in_every_field(daemon):
    _create_each(daemon, dict.fromkeys(CONFIG_FIELDS, BAD_VALUES),
                 dict.fromkeys(HOST_CONFIG_FIELDS, BAD_VALUES))


def test_create_with_wrong_insides(daemon):
    _create_each(daemon, NESTED, HOST_NESTED)


def test_create_with_random_bodies(daemon):
    """Seeded: structures mixing the fields and bad values above."""
    rng = random.Random(20261127)
    before = listing(daemon)
    check = Checker(daemon)
    for _ in range(150):
        body = base()
        for _ in range(rng.randint(1, 4)):
            body[rng.choice(CONFIG_FIELDS)] = _random_value(rng)
        hc = {}
        for _ in range(rng.randint(0, 4)):
            hc[rng.choice(HOST_CONFIG_FIELDS)] = _random_value(rng)
        if hc:
            body["HostConfig"] = hc
        created(check, daemon, body)
    check.done()
    assert listing(daemon) == before


_STRINGS = ["", "/", "..", "../../etc", "/proc/self", "x" * 300, "\x00", "a=b", ":::", "-1",
            "container:x", "host", "none", "private", "bridge", "1.2.3.4", "80/tcp", "0-999",
            "SIGKILL", "caf\u00e9", "/dev/null", "rw,z", "on-failure", "json-file", "size=1k"]
_INTS = [0, -1, 1, 5, 1000, 2 ** 31, 2 ** 63 - 1, -(2 ** 63)]


def _typed_value(rng, schema, depth=0):
    """A value of Go type `schema` (so it passes the type check), with hostile contents."""
    from bosun.engine import gotypes as G

    if rng.random() < 0.1:
        return None
    if isinstance(schema, G.Struct):
        keys = rng.sample(sorted(schema.fields), min(len(schema.fields), rng.randint(0, 4)))
        return {k: _typed_value(rng, schema.fields[k], depth + 1) for k in keys}
    if isinstance(schema, G.List) or schema == G.STRSLICE:
        elem = "string" if schema == G.STRSLICE else schema.elem
        return [_typed_value(rng, elem, depth + 1) for _ in range(rng.randint(0, 3))]
    if isinstance(schema, G.Map):
        return {rng.choice(_STRINGS): _typed_value(rng, schema.elem, depth + 1)
                for _ in range(rng.randint(0, 3))}
    if schema == "string":
        return rng.choice(_STRINGS)
    if schema == "bool":
        return rng.random() < 0.5
    if schema.startswith("uint"):
        return rng.choice([v for v in _INTS if 0 <= v < 2 ** 16])
    return rng.choice(_INTS)


def test_create_with_random_well_typed_bodies(daemon):
    """Seeded: bodies of the right Go types (past the type check) with hostile values, so the
    engine's own validation is what answers."""
    from bosun.engine import gotypes as G

    rng = random.Random(1127)
    fields = {**G.CONFIG_FIELDS, "HostConfig": G.HOST_CONFIG}
    before = listing(daemon)
    check = Checker(daemon)
    for _ in range(300):
        body = base()
        for name in rng.sample(sorted(fields), rng.randint(1, 3)):
            if name != "Image":
                body[name] = _typed_value(rng, fields[name])
        created(check, daemon, body)
    check.done()
    assert listing(daemon) == before


def _random_value(rng, depth=0):
    kind = rng.randrange(7 if depth < 2 else 4)
    if kind == 0:
        return rng.choice(BAD_VALUES[:19] if depth else BAD_VALUES)
    if kind == 1:
        return rng.choice(["", "/", "..", "x" * rng.randint(1, 300), "\udcff".encode(
            "utf-8", "surrogatepass").decode("latin-1"), "container:x", "host", "none"])
    if kind == 2:
        return rng.choice([0, -1, 1, 2 ** 31, 2 ** 63, -(2 ** 63) - 1, 10 ** 30])
    if kind == 3:
        return rng.choice([None, True, False, 0.5, float(2 ** 70)])
    if kind == 4:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == 5:
        return {rng.choice(["Name", "Type", "Path", "x", "Config", "Source", "Target"]):
                _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.choice(CONFIG_FIELDS + HOST_CONFIG_FIELDS)


def test_create_with_bad_bodies_and_queries(daemon):
    before = listing(daemon)
    check = Checker(daemon)
    for body in [b"", b"{", b"[]", b"null", b"5", b'"x"', b"\xff\xfe{}", b'{"Image": "busy',
                 b'{"Image": "busybox"} trailing', b'{"Image": "\\ud800"}',
                 b'{"Image": "busybox", "Image": 5}', b"{" * 10000 + b"}" * 10000,
                 b'[' * 100000, b'{"Image": "busybox", "Cmd": ["true"], "x": 1e400}',
                 b'{"Image": "busybox", "Cmd": ["true"], "StopTimeout": NaN}',
                 b'{"Image": "busybox", "Cmd": ["true"], "StopTimeout": Infinity}']:
        created(check, daemon, body)
    for query in ["?name=", "?name=/", "?name=a/b", "?name=..", "?name=" + "x" * 5000,
                  "?name=%00", "?name=%ff", "?name=-x", "?platform=windows/amd64",
                  "?platform=nonsense", "?platform=linux/bogus", "?name=a&name=b",
                  "?name=%", "?%zz=1"]:
        created(check, daemon, base(), query)
    check.done()
    assert listing(daemon) == before


# -- query parameters ------------------------------------------------------------------------

BAD_FILTERS = ["not json", "[]", "5", "null", '"x"', '{"status": "x"}', '{"status": ["bogus"]}',
               '{"bogus": ["x"]}', '{"label": [5]}', '{"label": {"a": "x"}}',
               '{"label": {"a": true}}', '{"id": [null]}', '{"since": ["nope"]}',
               '{"before": ["nope"]}', '{"exited": ["x"]}', '{"health": ["x"]}',
               '{"dangling": ["maybe"]}', '{"until": ["x"]}', '{"reference": ["[[["]}',
               '{"driver": [["x"]]}', '{"type": ["bogus"]}', '{"scope": ["x"]}',
               '{"name": ["("]}', '{"publish": ["x/y/z"]}', '{"expose": ["bogus"]}',
               '{"network": [{}]}', '{"volume": [1]}', '{"ancestor": ["::"]}',
               '{"is-task": ["x"]}', '{"isolation": ["x"]}', '{"event": [5]}',
               '{"label": ["a=b=c"]}', "{" * 5000, "[" * 5000]

LISTS = ["/containers/json?all=1", "/images/json", "/networks", "/volumes", "/events?until=1",
         "/system/df"]
PRUNES = ["/containers/prune", "/images/prune", "/networks/prune", "/volumes/prune",
          "/build/prune"]


def test_bad_filters(daemon):
    from urllib.parse import quote

    before = listing(daemon)
    check = Checker(daemon)
    for f in BAD_FILTERS:
        for path in LISTS:
            sep = "&" if "?" in path else "?"
            check("GET", f"{path}{sep}filters={quote(f)}", ok=(404,))
        for path in PRUNES:
            check("POST", f"{path}?filters={quote(f)}", ok=(404,))
    check.done()
    assert listing(daemon) == before


def test_bad_numbers_in_queries(daemon):
    check = Checker(daemon)
    cid = json.loads(api(daemon, "POST", "/containers/create",
                         {"Image": "busybox", "Cmd": ["sleep", "60"]})[1])["Id"]
    assert api(daemon, "POST", f"/containers/{cid}/start")[0] == 204
    numbers = ["-1", "-99999999999999999999", "99999999999999999999999", "x", "1.5", "",
               "%00", "1e9", "0x10", "%205"]
    for n in numbers:
        check("GET", f"/containers/json?limit={n}")
        check("GET", f"/containers/{cid}/logs?stdout=1&tail={n}")
        check("GET", f"/containers/{cid}/logs?stdout=1&since={n}")
        check("GET", f"/containers/{cid}/logs?stdout=1&until={n}")
        if not n.lstrip("-").isdigit() and n != "":  # else a real (long) wait for events
            check("GET", f"/events?since={n}&until=1")
            check("GET", f"/events?since=0&until={n}")
        check("POST", f"/containers/{cid}/resize?h={n}&w={n}")
        if not n.strip().lstrip("-").isdigit():  # a number is a real (long) timeout
            check("POST", f"/containers/{cid}/restart?t={n}")
        check("GET", f"/images/search?term=x&limit={n}", ok=(404,))
        check("GET", f"/containers/{cid}/stats?stream=0&one-shot={n}")
        check("GET", f"/images/json?all={n}")
    for args in ["-x", "%00", "aux;%20rm%20-rf%20/", "x" * 10000]:
        check("GET", f"/containers/{cid}/top?ps_args={args}")
    for sig in ["SIGBOGUS", "-1", "999", "65", "0", "x" * 1000, "%00", "SIG", "KILL%20",
                "99999999999999999999"]:
        check("POST", f"/containers/{cid}/kill?signal={sig}")
        check("POST", f"/containers/{cid}/stop?t=0&signal={sig}")
    for name in ["", "/", "a/b", "..", "x" * 5000, "%00", "%ff", "-x", "caf%C3%A9"]:
        check("POST", f"/containers/{cid}/rename?name={name}")
    for cond in ["bogus", "", "%00"]:
        check("POST", f"/containers/nosuch/wait?condition={cond}")
    for keys in ["ctrl-", "bogus", "ctrl-1,ctrl-"]:
        check("POST", f"/containers/{cid}/attach?stream=1&detachKeys={keys}")
        check("POST", f"/containers/{cid}/start?detachKeys={keys}", ok=(304,))
    check.done()
    api(daemon, "DELETE", f"/containers/{cid}?force=1")


# -- exec, update, archive ---------------------------------------------------------------------

def test_exec_and_update_with_bad_bodies(daemon):
    check = Checker(daemon)
    cid = json.loads(api(daemon, "POST", "/containers/create",
                         {"Image": "busybox", "Cmd": ["sleep", "60"]})[1])["Id"]
    assert api(daemon, "POST", f"/containers/{cid}/start")[0] == 204
    fields = ["Cmd", "Env", "User", "WorkingDir", "Tty", "AttachStdin", "AttachStdout",
              "AttachStderr", "Privileged", "DetachKeys", "ConsoleSize"]
    for name in fields:
        for value in BAD_VALUES:
            status, out = check("POST", f"/containers/{cid}/exec",
                                {"Cmd": ["true"], name: value})
            if status == 201 and name != "User":  # Docker: no such user at start is a 500
                eid = json.loads(out)["Id"]
                check("POST", f"/exec/{eid}/start", {"Detach": True})
    for body in [b"", b"[]", b"{", b"5", b'{"Cmd": []}', b'{"Cmd": "true"}',
                 b'{"Cmd": [""]}', b'{"Cmd": ["\\u0000"]}']:
        check("POST", f"/containers/{cid}/exec", body)
    eid = json.loads(api(daemon, "POST", f"/containers/{cid}/exec",
                         {"Cmd": ["true"]})[1])["Id"]
    for body in [b"[]", b"5", b"{", b'{"Detach": "x", "Tty": 5}', b'{"ConsoleSize": "x"}',
                 b'{"ConsoleSize": [1]}', b'{"ConsoleSize": [-1, "a"]}']:
        check("POST", f"/exec/{eid}/start", body)
    check("POST", "/exec/nosuch/start", {"Detach": True})
    check("POST", f"/exec/{eid}/resize?h=x&w=-1")
    update_fields = ["CpuShares", "Memory", "MemorySwap", "MemoryReservation", "KernelMemory",
                     "NanoCpus", "CpuPeriod", "CpuQuota", "CpusetCpus", "CpusetMems",
                     "PidsLimit", "BlkioWeight", "RestartPolicy", "Ulimits", "Devices",
                     "OomKillDisable"]
    for name in update_fields:
        for value in BAD_VALUES:
            check("POST", f"/containers/{cid}/update", {name: value}, ok=(200,))
    for body in [b"[]", b"5", b"{", b'"x"', b'{"RestartPolicy": {"Name": "bogus"}}',
                 b'{"RestartPolicy": {"Name": "always", "MaximumRetryCount": "x"}}']:
        check("POST", f"/containers/{cid}/update", body)
    check.done()
    api(daemon, "DELETE", f"/containers/{cid}?force=1")


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name, kind=tarfile.REGTYPE, size=0, link=""):
    i = tarfile.TarInfo(name)
    i.type, i.size, i.linkname = kind, size, link
    return i


def test_archive_put_with_hostile_tars(daemon, tmp_path):
    check = Checker(daemon)
    cid = json.loads(api(daemon, "POST", "/containers/create",
                         {"Image": "busybox", "Cmd": ["sleep", "60"]})[1])["Id"]
    good = _tar([(_info("ok.txt", size=2), b"ok")])
    tars = [
        b"", b"garbage" * 1000, good[:700], good[:-1024] + b"\xff" * 1024,
        _tar([(_info("../../escape.txt", size=1), b"x")]),
        _tar([(_info("/abs/escape.txt", size=1), b"x")]),
        _tar([(_info("link", tarfile.SYMTYPE, link="/../../../tmp"), None),
              (_info("link/escape.txt", size=1), b"x")]),
        _tar([(_info("hard", tarfile.LNKTYPE, link="../../../etc/passwd"), None)]),
        _tar([(_info("dev", tarfile.CHRTYPE), None)]),
        _tar([(_info("fifo", tarfile.FIFOTYPE), None)]),
        _tar([(_info("x" * 5000, size=1), b"x")]),
        _tar([(_info("a/" * 2000 + "f", size=1), b"x")]),
    ]
    for path in ["/tmp", "/", "/../../..", "/etc/passwd", "/no/such/dir", "relative", "%00"]:
        for data in tars:
            check("PUT", f"/containers/{cid}/archive?path={path}", data,
                  headers={"Content-Type": "application/x-tar"}, ok=(200,))
    for path in ["", "/no/such", "%00", "/../../etc/shadow", "x" * 5000]:
        check("GET", f"/containers/{cid}/archive?path={path}")
        check("HEAD", f"/containers/{cid}/archive?path={path}")
    check("PUT", "/containers/nosuch/archive?path=/tmp", good)
    check.done()
    # with the 2000-level tree in its layer (the daemon's teardown checks it is all gone)
    assert api(daemon, "DELETE", f"/containers/{cid}?force=1")[0] == 204
    assert not (tmp_path.parent / "escape.txt").exists()


# -- images, networks, volumes ---------------------------------------------------------------

def test_images_networks_volumes_with_bad_input(daemon):
    from urllib.parse import quote

    before = listing(daemon)
    check = Checker(daemon)
    for ref in ["", "UPPER", "a" * 300, "busybox:bad tag", "busybox@sha256:short", "::",
                "%00", "http://x/y", "-x", "x/../y"]:
        check("POST", f"/images/create?fromImage={quote(ref)}&tag=latest", ok=(404,))
        if ref not in ("", "UPPER"):  # valid tags: a pull, which needs a registry
            check("POST", f"/images/create?fromImage=busybox&tag={quote(ref)}")
        check("POST", f"/images/busybox/tag?repo={quote(ref)}&tag=x")
        check("POST", f"/images/busybox/tag?repo=x&tag={quote(ref)}")
        check("GET", f"/images/{quote(ref, safe='')}/json")
        check("DELETE", f"/images/{quote(ref, safe='')}")
        check("GET", f"/images/{quote(ref, safe='')}/history")
        check("POST", f"/images/{quote(ref, safe='')}/push")
        check("GET", f"/images/get?names={quote(ref)}")
    check("POST", "/images/create?fromSrc=-", b"garbage")
    check("POST", "/images/create?fromSrc=-&repo=x", b"garbage")
    check("POST", "/images/create?fromSrc=http%3A%2F%2F127.0.0.1%3A1%2Fx")
    check("POST", "/images/create")
    check("POST", "/images/load", b"garbage", headers={"Content-Type": "application/x-tar"})
    check("POST", "/images/load", _tar([(_info("manifest.json", size=2), b"[{")]))
    check("POST", "/images/load", _tar([(_info("manifest.json", size=2), b"{}")]))
    check("POST", "/images/load", _tar([(_info("index.json", size=1), b"x")]))
    check("POST", "/build", b"garbage", ok=(404,))
    check("POST", "/commit?container=nosuch")
    check("POST", "/commit?container=", {"Cmd": 5})
    for body in [b"[]", b"5", b"{", {"Name": ""}, {"Name": 5}, {"Name": "x" * 5000},
                 {"Name": "a/b"}, {"Name": "fz", "Driver": "bogus"},
                 {"Name": "fz", "Driver": 5}, {"Name": "fz", "IPAM": "x"},
                 {"Name": "fz", "IPAM": {"Config": "x"}}, {"Name": "fz", "IPAM": {"Config": [5]}},
                 {"Name": "fz", "IPAM": {"Config": [{"Subnet": "nope"}]}},
                 {"Name": "fz", "IPAM": {"Config": [{"Subnet": "10.99.0.0/33"}]}},
                 {"Name": "fz", "IPAM": {"Config": [{"Subnet": "10.99.0.0/24",
                                                     "Gateway": "10.98.0.1"}]}},
                 {"Name": "fz", "IPAM": {"Config": [{"Subnet": "10.99.0.0/24",
                                                     "IPRange": "x"}]}},
                 {"Name": "fz", "IPAM": {"Driver": "bogus"}},
                 {"Name": "fz", "Options": "x"}, {"Name": "fz", "Options": {"a": 5}},
                 {"Name": "fz", "Options": {"com.docker.network.bridge.name": "x" * 30}},
                 {"Name": "fz", "Options": {"com.docker.network.driver.mtu": "lots"}},
                 {"Name": "fz", "Labels": []}, {"Name": "fz", "Labels": {"a": 5}},
                 {"Name": "fz", "EnableIPv6": "yes"}, {"Name": "fz", "Internal": 5},
                 {"Name": "fz", "CheckDuplicate": "x"}, {"Name": "fz", "Attachable": []},
                 {"Name": "fz", "Scope": "global"}, {"Name": "fz", "ConfigFrom": 5},
                 {"Name": "host"}, {"Name": "bridge"}, {"Name": "none"}, {"Name": "\x00"}]:
        status, out = check("POST", "/networks/create", body)
        if status == 201:
            api(daemon, "DELETE", f"/networks/{json.loads(out)['Id']}")
    for body in [b"[]", b"{", {}, {"Container": 5}, {"Container": "nosuch"},
                 {"Container": ["x"]}, {"Container": "nosuch", "EndpointConfig": "x"}]:
        check("POST", "/networks/bridge/connect", body)
        check("POST", "/networks/bridge/disconnect", body)
        check("POST", "/networks/nosuch/connect", body)
    for body in [b"[]", b"5", b"{", {"Name": 5}, {"Name": "a/b"}, {"Name": ".."},
                 {"Name": "x" * 5000}, {"Name": "\x00"}, {"Name": "fz", "Driver": "bogus"},
                 {"Name": "fz", "Driver": 5}, {"Name": "fz", "DriverOpts": "x"},
                 {"Name": "fz", "DriverOpts": {"type": "bogus", "device": "/x"}},
                 {"Name": "fz", "DriverOpts": {"a": 5}}, {"Name": "fz", "DriverOpts": {"o": 5}},
                 {"Name": "fz", "Labels": "x"}, {"Name": "fz", "Labels": {"a": []}},
                 {"Name": "fz", "ClusterVolumeSpec": {}}]:
        status, out = check("POST", "/volumes/create", body)
        if status == 201:
            assert api(daemon, "DELETE", f"/volumes/{json.loads(out)['Name']}")[0] == 204
    for name in ["nosuch", "..", "%00", "x" * 5000]:
        check("GET", f"/volumes/{name}")
        check("DELETE", f"/volumes/{name}?force=x")
        check("GET", f"/networks/{name}")
        check("DELETE", f"/networks/{name}")
    check.done()
    assert listing(daemon) == before


# -- the wire ---------------------------------------------------------------------------

def test_version_prefixes_and_methods(daemon):
    check = Checker(daemon)
    for prefix in ["/v9.99", "/v1.0", "/v1.23", "/v0", "/v1.", "/v.", "/v1.47.1", "/v1.24",
                   "/v99999999999999999999.1", "/v1.47abc", "/v" + "1." * 5000 + "1"]:
        check("GET", f"{prefix}/_ping", ok=(200,))
        check("GET", f"{prefix}/containers/json", ok=(200,))
        check("POST", f"{prefix}/containers/create", base(), ok=(201,))
    for method in ["PATCH", "OPTIONS", "BREW", "TRACE", "CONNECT"]:
        check(method, "/containers/json", ok=(404, 405))
    for path in ["/", "//", "/containers//json", "/%00", "/%ff", "/containers/%2e%2e/json",
                 "/images/../../etc/json", "/" + "a" * 100000]:
        check("GET", path)
    for ct in ["text/plain", "application/x-www-form-urlencoded", "garbage;;;", "\x01"]:
        check("POST", "/containers/create?name=fuzz-ct", base(),
              headers={"Content-Type": ct}, ok=(201,))
        api(daemon, "DELETE", "/containers/fuzz-ct?force=1")
    check.done()


def test_broken_framing(daemon):
    """Truncated, oversized, chunked and garbled requests: an error answer or a closed
    connection, never a hang or a dead daemon."""
    before = listing(daemon)
    body = json.dumps(base()).encode()
    cases = [
        b"GET /_ping HTTP/1.1\r\n\r\n",  # no Host
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64,  # TLS on a unix socket
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"Im",
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
        b"Content-Length: 2\r\n\r\n{}",
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n",
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\n{\"Ima\r\n",
        b"POST /containers/create?name=fuzz-chunked HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (2 << 20) + b"\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 100000 + b"\r\n",
        b"GET /_ping HTTP/1.0\r\n\r\n",
        b"GET /_ping HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET /_ping?\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /containers/json?filters=%7B HTTP/1.1\r\nHost: x\r\n\r\n" * 3,
        b"POST /containers/nosuch/attach?stream=1 HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: tcp\r\nConnection: Upgrade\r\n\r\n",
        b"GET /containers/nosuch/attach/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: bad\r\n\r\n",
        b"POST /exec/nosuch/start HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    ]
    for data in cases:
        try:
            out = raw(daemon, data)
        except TimeoutError:
            pytest.fail(f"no answer nor close for {data[:80]!r}")
        if out:
            head, _, rest = out.partition(b"\r\n")
            assert head.startswith(b"HTTP/1."), (data[:80], out[:200])
            code = int(head.split()[1])
            assert code < 500 or code == 501, (data[:80], out[:300])  # 501: unknown coding
        assert api(daemon, "GET", "/_ping")[0] == 200
    # the one well-framed create (chunked) made its container
    assert api(daemon, "DELETE", "/containers/fuzz-chunked?force=1")[0] == 204
    assert listing(daemon) == before


def test_bad_input_about_an_existing_container(daemon):
    before = listing(daemon)
    check = Checker(daemon)
    cid = json.loads(api(daemon, "POST", "/containers/create",
                         {"Image": "busybox", "Cmd": ["sleep", "60"]})[1])["Id"]
    assert api(daemon, "POST", f"/containers/{cid}/start")[0] == 204
    for cond in ["bogus", "%00", "x" * 5000]:
        check("POST", f"/containers/{cid}/wait?condition={cond}")
    for query in ["changes=BOGUS", "changes=CMD", "changes=EXPOSE%20x/y", "changes=ENV",
                  "repo=UPPER", "repo=a&tag=bad%20tag", "pause=maybe", "changes=%00"]:
        check("POST", f"/commit?container={cid}&{query}", ok=(201,))
    for body in [b"[]", {"Cmd": 5}, {"Env": "x"}, {"ExposedPorts": []}, {"Labels": [1]}]:
        check("POST", f"/commit?container={cid}&repo=fuzz-commit", body, ok=(201,))
    for body in [{"Container": cid, "EndpointConfig": "x"},
                 {"Container": cid, "EndpointConfig": {"IPAMConfig": "x"}},
                 {"Container": cid, "EndpointConfig": {"IPAMConfig": {"IPv4Address": "bad"}}},
                 {"Container": cid, "EndpointConfig": {"Aliases": "x"}},
                 {"Container": cid, "EndpointConfig": {"Aliases": [5]}},
                 {"Container": cid, "EndpointConfig": {"MacAddress": "zz"}},
                 {"Container": cid, "Force": "x"}]:
        check("POST", "/networks/bridge/connect", body, ok=(200,))
        check("POST", "/networks/none/connect", body, ok=(200,))
        check("POST", "/networks/bridge/disconnect", body, ok=(200,))
    check.done()
    api(daemon, "DELETE", f"/containers/{cid}?force=1")
    for image in json.loads(api(daemon, "GET", "/images/json")[1]):
        if image["Id"] not in before["images"]:  # commits that were accepted
            api(daemon, "DELETE", f"/images/{image['Id']}?force=1")
    assert listing(daemon) == before


def test_bad_headers_and_auth(daemon):
    """Registry credentials arrive base64 JSON in headers, and /auth takes a body: garbage
    there is the client's mistake. Every request fails before it would reach a registry
    (this machine may have no network)."""
    import base64

    before = listing(daemon)
    check = Checker(daemon)
    auths = ["", "!!!", "e30", base64.b64encode(b"[]").decode(), base64.b64encode(b"5").decode(),
             base64.b64encode(b'{"username": 5}').decode(), base64.b64encode(b"\xff").decode(),
             base64.urlsafe_b64encode(b'{"auth": "!!!"}').decode(), "a" * 100000]
    for auth in auths:
        check("POST", "/images/nosuch-image/push", headers={"X-Registry-Auth": auth})
        check("POST", "/images/create?fromSrc=-&repo=x", b"garbage",
              headers={"X-Registry-Auth": auth})
        check("POST", "/build", b"", headers={"X-Registry-Config": auth}, ok=(404,))
    for body in [b"", b"[]", b"5", b"{", {"username": 5}, {"serveraddress": ["x"]},
                 {"serveraddress": "::"}, {"serveraddress": "host:99999"},
                 {"username": "u", "password": "p", "serveraddress": "http://[::1"},
                 {"username": "u", "password": "p", "serveraddress": "\x00"}]:
        check("POST", "/auth", body)
    check.done()
    assert listing(daemon) == before


def test_other_bodies_random_and_well_typed(daemon):
    """Seeded, as above, for network, volume, exec and update bodies."""
    from bosun.engine import gotypes as G

    rng = random.Random(2711)
    before = listing(daemon)
    check = Checker(daemon)
    cid = json.loads(api(daemon, "POST", "/containers/create",
                         {"Image": "busybox", "Cmd": ["sleep", "60"]})[1])["Id"]
    assert api(daemon, "POST", f"/containers/{cid}/start")[0] == 204
    for _ in range(100):
        body = _typed_value(rng, G.NETWORK_CREATE) or {}
        body["Name"] = "fuzz-net"
        status, out = check("POST", "/networks/create", body, ok=(403,))
        if status == 201:
            assert api(daemon, "DELETE", "/networks/fuzz-net")[0] == 204
        body = _typed_value(rng, G.VOLUME_CREATE) or {}
        status, out = check("POST", "/volumes/create", body)
        if status == 201:
            assert api(daemon, "DELETE", f"/volumes/{json.loads(out)['Name']}")[0] == 204
        body = _typed_value(rng, G.UPDATE_CONFIG) or {}
        check("POST", f"/containers/{cid}/update", body, ok=(200,))
        body = _typed_value(rng, G.EXEC_CREATE) or {}
        status, out = check("POST", f"/containers/{cid}/exec", body)
        if status == 201 and not body.get("User"):  # Docker: no such user is a 500
            check("POST", f"/exec/{json.loads(out)['Id']}/start", {"Detach": True})
    check.done()
    api(daemon, "DELETE", f"/containers/{cid}?force=1")
    assert listing(daemon) == before


def test_a_block_io_weight_starts_whatever_the_io_scheduler(daemon):
    """Docker discards a weight the kernel cannot take (no CFQ/BFQ): create, start and update
    succeed rather than fail on the cgroup write."""
    status, out = api(daemon, "POST", "/containers/create",
                      {"Image": "busybox", "Cmd": ["sleep", "60"],
                       "HostConfig": {"BlkioWeight": 500}})
    assert status == 201, out
    cid = json.loads(out)["Id"]
    try:
        assert api(daemon, "POST", f"/containers/{cid}/start") == (204, b"")
        status, out = api(daemon, "POST", f"/containers/{cid}/update", {"BlkioWeight": 600})
        assert status == 200, out
    finally:
        api(daemon, "DELETE", f"/containers/{cid}?force=1")


def test_a_relative_volume_is_refused_at_create(daemon):
    """Not a container no start can mount (it was made, and start answered 500)."""
    before = listing(daemon)
    status, out = api(daemon, "POST", "/containers/create",
                      {"Image": "busybox", "Cmd": ["true"], "Volumes": {"data": {}}})
    assert (status, json.loads(out)) == (
        400, {"message": "invalid mount path: 'data' mount path must be absolute"})
    assert listing(daemon) == before


@pytest.mark.parametrize("body", [
    {"Volumes": {"data": {}}},
    {"HostConfig": {"MaskedPaths": ["proc/kcore"]}},
    {"HostConfig": {"ReadonlyPaths": ["/ok", "rel"]}},
    {"HostConfig": {"BlkioDeviceWriteIOps": [{}]}},
    {"HostConfig": {"BlkioDeviceReadBps": [{"Path": "..", "Rate": 1000}]}},
    {"HostConfig": {"BlkioDeviceReadBps": [{"Path": "/dev/null", "Rate": 1000}]}},
    {"HostConfig": {"BlkioWeightDevice": [{"Path": None, "Weight": 100}]}},
], ids=["relative-volume", "relative-masked-path", "relative-readonly-path",
        "throttle-without-path", "throttle-outside-dev", "throttle-char-device",
        "weight-device-null-path"])
def test_what_no_start_can_do_is_refused_before_it(daemon, body):
    """Refused at create, or at start with a 400: these used to be containers whose every
    start failed with a 500 (a KeyError, the runtime's or the cgroup's refusal)."""
    status, out = api(daemon, "POST", "/containers/create?name=fuzz-start",
                      {"Image": "busybox", "Cmd": ["true"], **body})
    if status == 201:
        try:
            status, out = api(daemon, "POST", "/containers/fuzz-start/start")
        finally:
            api(daemon, "DELETE", "/containers/fuzz-start?force=1")
    assert status == 400 and problem(status, out) is None, (status, out)
