"""What `docker ps` sees: a container's inspect dict turned into an item of
`GET /containers/json`, its Status column, and Docker's list filters.

The container dict is the engine's record, shaped like `GET /containers/{id}/json`. Everything
here is a pure function of those dicts (and of `now`), so it is tested without a daemon.
Behaviour follows moby's daemon/list.go, container/view.go and container/state.go, and
go-units' HumanDuration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime

from bosun.engine.errors import InvalidParameter, NotFound
from bosun.filters import matches

_MINUTE = 60.0
_HOUR = 3600.0
_DAY = 24 * _HOUR
_WEEK = 7 * _DAY
_MONTH = 30 * _DAY
_YEAR = 365 * _DAY

# Go's zero time.Time, as Docker writes it for StartedAt/FinishedAt that never happened.
_ZERO_TIME_PREFIX = "0001-01-01T00:00:00"

STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
HEALTH_FILTER_VALUES = ("starting", "healthy", "unhealthy", "none")
PS_FILTERS = frozenset({
    "ancestor", "before", "exited", "id", "isolation", "label", "name", "status", "health",
    "since", "volume", "network", "is-task", "publish", "expose",
})


# -- durations and the Status column ---------------------------------------------------------

def _round(d: float, unit: float) -> int:
    # go-units rounds half up by truncating d/unit + 0.5
    return int(d / unit + 0.5)


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration: "Less than a second", "1 second", "About a minute", …"""
    d = float(seconds)
    whole = int(d)  # Go's int() truncates toward zero
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(d / _MINUTE)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = _round(d, _HOUR)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if d < 2 * _WEEK:
        return f"{_round(d, _DAY)} days"
    if d < 2 * _MONTH:
        return f"{_round(d, _WEEK)} weeks"
    if d < 2 * _YEAR:
        return f"{_round(d, _MONTH)} months"
    return f"{_round(d, _YEAR)} years"


def rfc3339_ns(value: str | None) -> int | None:
    """An RFC 3339 timestamp as Docker writes them ("2026-01-02T03:04:05.123456789Z") →
    unix nanoseconds; None for Go's zero time, an empty value or something unparsable."""
    if not value or value.startswith(_ZERO_TIME_PREFIX):
        return None
    head, dot, rest = value.partition(".")
    frac = ""
    if dot:
        # datetime keeps at most microseconds: the fraction is counted apart, to the nanosecond
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, rest = rest[:digits], rest[digits:]
        if not frac:
            return None
    else:
        head, rest = value, ""
    try:
        whole = datetime.fromisoformat(head + rest.replace("z", "Z"))
    except ValueError:
        return None
    return int(whole.timestamp()) * 1_000_000_000 + int(frac[:9].ljust(9, "0") or 0)


def parse_rfc3339(value: str | None) -> float | None:
    """rfc3339_ns() in (float) unix seconds."""
    ns = rfc3339_ns(value)
    return None if ns is None else ns / 1e9


def _health_status(state: dict) -> str:
    """The container's health as the `health` filter sees it (moby's view.go)."""
    health = state.get("Health")
    if not health:
        return "none"
    # A monitor not yet set up reports "unhealthy" (moby's Health.Status())
    return health.get("Status") or "unhealthy"


def status_text(state: dict, now: float) -> str:
    """The Status column of `docker ps` (moby's State.String())."""
    started = parse_rfc3339(state.get("StartedAt"))
    finished = parse_rfc3339(state.get("FinishedAt"))
    if state.get("Running"):
        up = human_duration(now - started) if started is not None else human_duration(0)
        if state.get("Paused"):
            return f"Up {up} (Paused)"
        if state.get("Restarting"):
            ago = human_duration(now - finished) if finished is not None else human_duration(0)
            return f"Restarting ({state.get('ExitCode', 0)}) {ago} ago"
        health = (state.get("Health") or {}).get("Status")
        if health == "starting":
            return f"Up {up} (health: starting)"
        if health and health != "none":
            return f"Up {up} ({health})"
        return f"Up {up}"
    if state.get("Status") == "removing":
        return "Removal In Progress"
    if state.get("Dead"):
        return "Dead"
    if started is None:
        return "Created"
    if finished is None:
        return ""
    return f"Exited ({state.get('ExitCode', 0)}) {human_duration(now - finished)} ago"


def state_string(state: dict) -> str:
    """The State column (moby's StateString()); the record's Status when it has one."""
    if state.get("Status") in STATES:
        return state["Status"]
    if state.get("Running"):
        if state.get("Paused"):
            return "paused"
        return "restarting" if state.get("Restarting") else "running"
    if state.get("Dead"):
        return "dead"
    return "created" if parse_rfc3339(state.get("StartedAt")) is None else "exited"


# -- one item of GET /containers/json --------------------------------------------------------

def command_text(path: str, args: list[str] | None) -> str:
    """Path and Args as Docker shows them: an argument with a space is put in single quotes."""
    if not args:
        return path or ""
    shown = [f"'{a}'" if " " in a else a for a in args]
    return f"{path} {' '.join(shown)}"


def _port_number(text: str | int | None) -> int | None:
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def summary_ports(network_settings: dict | None) -> list[dict]:
    """NetworkSettings.Ports ({"80/tcp": [{"HostIp", "HostPort"}] | null}) → Docker's Port
    list, one item per binding (IP and PublicPort only when bound), sorted for stability."""
    ports: list[dict] = []
    for key, bindings in ((network_settings or {}).get("Ports") or {}).items():
        number, _, proto = key.partition("/")
        private = _port_number(number)
        if private is None:
            continue  # moby logs "invalid port map" and skips it
        proto = proto or "tcp"
        if not bindings:
            ports.append({"PrivatePort": private, "Type": proto})
            continue
        for binding in bindings:
            public = _port_number(binding.get("HostPort"))
            if public is None:
                continue
            item = {"PrivatePort": private, "PublicPort": public, "Type": proto}
            if binding.get("HostIp"):
                item["IP"] = binding["HostIp"]
            ports.append(item)
    ports.sort(key=lambda p: (p["PrivatePort"], p["Type"], p.get("IP", ""), p.get("PublicPort", 0)))
    return ports


_ENDPOINT_SUMMARY_KEYS = (
    "IPAMConfig", "NetworkID", "EndpointID", "Gateway", "IPAddress", "IPPrefixLen",
    "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "MacAddress", "GwPriority",
)


def _summary_networks(network_settings: dict | None) -> dict:
    networks = {}
    for name, endpoint in ((network_settings or {}).get("Networks") or {}).items():
        if not endpoint:
            continue
        # moby copies only these fields; the rest of EndpointSettings stays empty
        item: dict = {"Links": None, "Aliases": None, "DriverOpts": None, "DNSNames": None}
        item.update({k: endpoint[k] for k in _ENDPOINT_SUMMARY_KEYS if k in endpoint})
        networks[name] = item
    return networks


_MOUNT_POINT_KEYS = ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation")


def _summary_mounts(mounts: list[dict] | None) -> list[dict]:
    return [{k: m[k] for k in _MOUNT_POINT_KEYS if k in m} for m in mounts or []]


def summary(c: dict, now: float | None = None, *, sizes: tuple[int, int] | None = None) -> dict:
    """One item of `GET /containers/json` from a container's inspect dict. `sizes` is
    (SizeRw, SizeRootFs) when the caller asked for sizes."""
    now = time.time() if now is None else now
    state = c.get("State") or {}
    config = c.get("Config") or {}
    host_config = c.get("HostConfig") or {}
    settings = c.get("NetworkSettings") or {}
    created = rfc3339_ns(c.get("Created"))
    item = {
        "Id": c["Id"],
        "Names": [c["Name"]] if c.get("Name") else [],
        "Image": config.get("Image") or c.get("Image", ""),
        "ImageID": c.get("Image", ""),
        "Command": command_text(c.get("Path", ""), c.get("Args")),
        "Created": created // 1_000_000_000 if created is not None else 0,
        "Ports": summary_ports(settings),
        "Labels": dict(config.get("Labels") or {}),
        "State": state_string(state),
        "Status": status_text(state, now),
        "HostConfig": {"NetworkMode": host_config.get("NetworkMode", "")},
        "NetworkSettings": {"Networks": _summary_networks(settings)},
        "Mounts": _summary_mounts(c.get("Mounts")),
    }
    if host_config.get("Annotations"):
        item["HostConfig"]["Annotations"] = dict(host_config["Annotations"])
    if sizes is not None:
        item["SizeRw"], item["SizeRootFs"] = sizes
    return item


# -- filters ---------------------------------------------------------------------------------

def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """The `filters` query parameter: {"k": ["v", …]} or {"k": {"v": true}} → {"k": ["v"]}.
    Bad JSON or another shape → InvalidParameter("invalid filter"), as Docker."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's stack
        raise InvalidParameter("invalid filter") from None
    if not isinstance(data, dict):
        raise InvalidParameter("invalid filter")
    result: dict[str, list[str]] = {}
    for key, values in data.items():
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            result[key] = list(dict.fromkeys(values))
        elif isinstance(values, dict) and all(isinstance(v, bool) for v in values.values()):
            result[key] = [v for v, on in values.items() if on]
        else:
            raise InvalidParameter("invalid filter")
    return result


_matches = matches  # the name engine modules import


def match_labels(wanted: list[str], labels: dict | None) -> bool:
    """Docker's MatchKVList: every `key` must be present, every `key=value` equal."""
    if not wanted:
        return True
    if not labels:
        return False
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def _port_filter(key: str, values: list[str]) -> set[tuple[int, str]]:
    """publish/expose values: `port[/proto]` or `start-end[/proto]` (tcp by default)."""
    ports: set[tuple[int, str]] = set()
    for value in values:
        if ":" in value:
            raise InvalidParameter(f"filter for '{key}' should not contain ':': {value}")
        spec, _, proto = value.partition("/")
        start, dash, end = spec.partition("-")
        try:
            low = int(start)
            high = int(end) if dash else low
        except ValueError:
            raise InvalidParameter(
                f"error while looking up for {key} {value}: invalid port range: {spec}") from None
        if not 0 <= low <= high <= 65535:
            raise InvalidParameter(
                f"error while looking up for {key} {value}: invalid port range: {spec}")
        ports.update((p, (proto or "tcp").lower()) for p in range(low, high + 1))
    return ports


def _created_ns(c: dict) -> int:
    return rfc3339_ns(c.get("Created")) or 0


def _find(containers: list[dict], ref: str) -> dict:
    """A before/since value: a full ID, a name (with or without "/"), or a unique ID prefix."""
    for c in containers:
        if c["Id"] == ref:
            return c
    name = ref.lstrip("/")
    for c in containers:
        if c.get("Name", "").lstrip("/") == name:
            return c
    found = [c for c in containers if ref and c["Id"].startswith(ref)]
    if len(found) == 1:
        return found[0]
    raise NotFound(f"No such container: {ref}")


def _default_image_matches(c: dict, ref: str) -> bool:
    image_id = c.get("Image", "")
    return ref in (image_id, (c.get("Config") or {}).get("Image")) or (
        len(ref) >= 4 and image_id.removeprefix("sha256:").startswith(ref.removeprefix("sha256:")))


class _Plan:
    """Parsed and validated filters (moby's foldFilter)."""

    def __init__(self, containers: list[dict], filters: dict[str, list[str]]):
        for key in filters:
            if key not in PS_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        self.f = filters
        self.exited: list[int] = []
        for value in filters.get("exited", []):
            try:
                self.exited.append(int(value))
            except ValueError:
                raise InvalidParameter(
                    f'strconv.Atoi: parsing "{value}": invalid syntax') from None
        for value in filters.get("status", []):
            if value not in STATES:
                raise InvalidParameter(f"Invalid filter 'status={value}'")
        self.is_task: bool | None = None
        if "is-task" in filters:
            values = filters["is-task"]
            if "true" in values:
                self.is_task = True
            elif "false" in values:
                self.is_task = False
            else:
                raise InvalidParameter(f"Invalid filter 'is-task=[{' '.join(values)}]'")
        for value in filters.get("health", []):
            if value not in HEALTH_FILTER_VALUES:
                raise InvalidParameter(f"Unrecognised filter value for health: {value}")
        # the last value wins, as moby's WalkValues leaves it
        self.before = _find(containers, filters["before"][-1]) if filters.get("before") else None
        self.since = _find(containers, filters["since"][-1]) if filters.get("since") else None
        self.publish = _port_filter("publish", filters.get("publish", []))
        self.expose = _port_filter("expose", filters.get("expose", []))

    def includes(self, c: dict, all_: bool, image_matches: Callable[[dict, str], bool]) -> bool:
        """Every filter but before/since/limit, which depend on the walk."""
        f = self.f
        state = c.get("State") or {}
        running = bool(state.get("Running"))
        if not running and not all_:
            return False
        name = c.get("Name", "")
        if f.get("name") and not (_matches(f["name"], name)
                                  or _matches(f["name"], name.lstrip("/"))):
            return False
        if f.get("id") and not any(c["Id"].startswith(v) for v in f["id"]):
            return False
        if self.is_task is True:
            return False  # bosun has no swarm tasks
        if not match_labels(f.get("label", []), (c.get("Config") or {}).get("Labels")):
            return False
        if self.exited and not (
                not running and parse_rfc3339(state.get("StartedAt")) is not None
                and state.get("ExitCode") in self.exited):
            return False
        if f.get("status") and state_string(state) not in f["status"]:
            return False
        if f.get("health") and _health_status(state) not in f["health"]:
            return False
        if "volume" in f and not self._volume(c, f["volume"]):
            return False
        if "ancestor" in f and not any(image_matches(c, v) for v in f["ancestor"]):
            return False
        if "network" in f and not self._network(c, f["network"]):
            return False
        return not (self.publish or self.expose) or self._ports(c)

    @staticmethod
    def _volume(c: dict, values: list[str]) -> bool:
        for m in c.get("Mounts") or []:
            if m.get("Destination") in values or (m.get("Name") or m.get("Source")) in values:
                return True
        return False

    @staticmethod
    def _network(c: dict, values: list[str]) -> bool:
        networks = (c.get("NetworkSettings") or {}).get("Networks") or {}
        for value in values:
            if value in networks:
                return True
            if any(((ep or {}).get("NetworkID") or "").startswith(value)
                   for ep in networks.values()):
                return True
        return False

    def _ports(self, c: dict) -> bool:
        for p in summary_ports(c.get("NetworkSettings")):
            if (p.get("PublicPort", 0), p["Type"]) in self.publish:
                return True
            if (p["PrivatePort"], p["Type"]) in self.expose:
                return True
        return False


def filter_containers(containers: list[dict], filters: dict[str, list[str]] | None, *,
                      all: bool = False, limit: int = -1,
                      image_matches: Callable[[dict, str], bool] | None = None) -> list[dict]:
    """The containers `docker ps` lists, newest first (moby's reduceContainers).

    Without `all` only running ones (paused and restarting count as running); a `status`
    filter or `limit` > 0 lists stopped ones too. before/since name a container (full ID,
    name, or unique ID prefix; NotFound otherwise) and keep those created before/after it.
    `ancestor` asks `image_matches(container, value)`; by default the value must be the
    container's image ID (or a prefix of it) or its Config.Image."""
    filters = filters or {}
    plan = _Plan(containers, filters)
    all_ = all or bool(filters.get("status")) or limit > 0
    matcher = image_matches or _default_image_matches
    result = []
    before = plan.before
    for c in sorted(containers, key=_created_ns, reverse=True):
        if before is not None:
            # skip everything newer than the `before` container, and the container itself
            if c["Id"] == before["Id"]:
                before = None
            continue
        if plan.since is not None and c["Id"] == plan.since["Id"]:
            break
        if plan.includes(c, all_, matcher):
            result.append(c)
    return result[:limit] if limit > 0 else result
