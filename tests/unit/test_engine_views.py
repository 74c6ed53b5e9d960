"""engine.views: `docker ps` items, the Status column and the list filters, against the
behaviour of go-units' HumanDuration and moby's container/state.go and daemon/list.go."""

from __future__ import annotations

import copy

import pytest

from bosun.engine.errors import InvalidParameter, NotFound
from bosun.engine.views import (
    command_text,
    filter_containers,
    human_duration,
    parse_filters,
    rfc3339_ns,
    status_text,
    summary,
)

MIN, HOUR, DAY = 60, 3600, 86400
WEEK, MONTH, YEAR = 7 * DAY, 30 * DAY, 365 * DAY
NOW = 1_767_323_045.0  # 2026-01-02T03:04:05Z
ZERO = "0001-01-01T00:00:00Z"


def iso(t: float) -> str:
    """Unix seconds → RFC 3339 with nanoseconds, as Docker writes State times."""
    import time as _time

    whole = int(t)
    nanos = round((t - whole) * 1e9)
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(whole)) + f".{nanos:09d}Z"


# -- human_duration: go-units' own test table (the version that rounds days and longer) -----

@pytest.mark.parametrize("seconds, text", [
    (0.45, "Less than a second"), (-5, "Less than a second"), (1, "1 second"),
    (1.9, "1 second"), (45, "45 seconds"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (3 * MIN, "3 minutes"), (35 * MIN + 40, "35 minutes"),
    (59 * MIN, "59 minutes"), (HOUR, "About an hour"), (HOUR + 29 * MIN, "About an hour"),
    (HOUR + 31 * MIN, "2 hours"), (3 * HOUR + 29 * MIN, "3 hours"),
    (3 * HOUR + 31 * MIN, "4 hours"), (DAY, "24 hours"), (DAY + 12 * HOUR, "36 hours"),
    (2 * DAY, "2 days"), (7 * DAY, "7 days"), (13 * DAY + 5 * HOUR, "13 days"),
    (2 * DAY + 17 * HOUR, "3 days"), (13 * DAY + 12 * HOUR, "14 days"),
    (2 * WEEK, "2 weeks"), (2 * WEEK + 4 * DAY, "3 weeks"), (4 * WEEK + 3 * DAY, "4 weeks"),
    (MONTH, "4 weeks"), (8 * WEEK + 3 * DAY, "8 weeks"), (MONTH + 2 * WEEK, "6 weeks"),
    (2 * MONTH, "2 months"), (3 * MONTH + WEEK, "3 months"), (3 * MONTH + 20 * DAY, "4 months"),
    (13 * MONTH, "13 months"), (24 * MONTH, "24 months"), (24 * MONTH + 2 * WEEK, "2 years"),
    (3 * YEAR + 2 * MONTH, "3 years"), (3 * YEAR + 8 * MONTH, "4 years"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


# -- status_text -----------------------------------------------------------------------------

def state(status: str, **kw) -> dict:
    base = {"Status": status, "Running": False, "Paused": False, "Restarting": False,
            "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
            "StartedAt": ZERO, "FinishedAt": ZERO}
    base.update(kw)
    return base


@pytest.mark.parametrize("st, text", [
    (state("running", Running=True, StartedAt=iso(NOW - 3)), "Up 3 seconds"),
    (state("running", Running=True, StartedAt=iso(NOW - 0.2)), "Up Less than a second"),
    (state("paused", Running=True, Paused=True, StartedAt=iso(NOW - 3)), "Up 3 seconds (Paused)"),
    (state("running", Running=True, StartedAt=iso(NOW - 150),
           Health={"Status": "healthy", "FailingStreak": 0, "Log": []}), "Up 2 minutes (healthy)"),
    (state("running", Running=True, StartedAt=iso(NOW - 1), Health={"Status": "starting"}),
     "Up 1 second (health: starting)"),
    (state("running", Running=True, StartedAt=iso(NOW - 7200), Health={"Status": "unhealthy"}),
     "Up 2 hours (unhealthy)"),
    (state("restarting", Running=True, Restarting=True, ExitCode=1, StartedAt=iso(NOW - 60),
           FinishedAt=iso(NOW - 2)), "Restarting (1) 2 seconds ago"),
    (state("exited", ExitCode=0, StartedAt=iso(NOW - 600), FinishedAt=iso(NOW - 300)),
     "Exited (0) 5 minutes ago"),
    (state("exited", ExitCode=137, StartedAt=iso(NOW - 9 * DAY), FinishedAt=iso(NOW - 3 * DAY)),
     "Exited (137) 3 days ago"),
    (state("created"), "Created"),
    (state("removing", StartedAt=iso(NOW - 9), FinishedAt=iso(NOW - 5)), "Removal In Progress"),
    (state("dead", Dead=True, StartedAt=iso(NOW - 9), FinishedAt=iso(NOW - 5)), "Dead"),
    (state("exited", StartedAt=iso(NOW - 9)), ""),  # started, never finished: moby says ""
])
def test_status_text(st, text):
    assert status_text(st, NOW) == text


def test_rfc3339_keeps_nanoseconds_and_zones():
    assert rfc3339_ns("2026-01-02T03:04:05.123456789Z") == 1_767_323_045_123_456_789
    assert rfc3339_ns("2026-01-02T04:04:05.5+01:00") == 1_767_323_045_500_000_000
    assert rfc3339_ns(ZERO) is None
    assert rfc3339_ns("") is None
    assert rfc3339_ns("yesterday") is None


# -- summary ---------------------------------------------------------------------------------

def container(cid: str, name: str, created: float, st: dict | None = None, **extra) -> dict:
    c = {
        "Id": cid, "Name": f"/{name}", "Created": iso(created), "Path": "sh",
        "Args": ["-c", "sleep 1000"], "State": st or state("running", Running=True,
                                                          StartedAt=iso(created + 1)),
        "Image": "sha256:" + "ab" * 32,
        "Config": {"Image": "busybox", "Labels": {}, "Cmd": ["sh"]},
        "HostConfig": {"NetworkMode": "bridge"},
        "Mounts": [],
        "NetworkSettings": {"Ports": {}, "Networks": {}},
        "RestartCount": 0, "LogPath": "",
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(c.get(key), dict):
            c[key] = {**c[key], **value}
        else:
            c[key] = value
    return c


def test_summary_shape():
    c = container("c" * 64, "web", NOW - 3600,
                  state("running", Running=True, StartedAt=iso(NOW - 3600)),
                  Config={"Image": "nginx:1.25", "Labels": {"app": "web"}},
                  NetworkSettings={
                      "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"},
                                           {"HostIp": "::", "HostPort": "8080"}],
                                "53/udp": None, "bogus": None},
                      "Networks": {"bridge": {"NetworkID": "n1", "EndpointID": "e1",
                                              "Gateway": "172.17.0.1", "IPAddress": "172.17.0.2",
                                              "IPPrefixLen": 16, "MacAddress": "02:42:ac:11:00:02",
                                              "Aliases": ["x"]}}},
                  Mounts=[{"Type": "volume", "Name": "data", "Source": "/var/lib/v/data/_data",
                           "Destination": "/data", "Driver": "local", "Mode": "z", "RW": True,
                           "Propagation": ""}])
    c["Created"] = "2026-01-02T02:04:05.999999999Z"
    item = summary(c, NOW)
    assert item["Id"] == "c" * 64
    assert item["Names"] == ["/web"]
    assert item["Image"] == "nginx:1.25"
    assert item["ImageID"] == "sha256:" + "ab" * 32
    assert item["Command"] == "sh -c 'sleep 1000'"
    assert item["Created"] == 1_767_319_445
    assert item["Ports"] == [
        {"PrivatePort": 53, "Type": "udp"},
        {"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp", "IP": "0.0.0.0"},
        {"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp", "IP": "::"},
    ]
    assert item["Labels"] == {"app": "web"}
    assert item["State"] == "running"
    assert item["Status"] == "Up About an hour"
    assert item["HostConfig"] == {"NetworkMode": "bridge"}
    bridge = item["NetworkSettings"]["Networks"]["bridge"]
    assert bridge["IPAddress"] == "172.17.0.2" and bridge["NetworkID"] == "n1"
    assert bridge["Aliases"] is None  # not copied, as moby
    assert item["Mounts"] == c["Mounts"]
    assert "SizeRw" not in item
    assert summary(c, NOW, sizes=(12, 3400))["SizeRw"] == 12
    assert summary(c, NOW, sizes=(12, 3400))["SizeRootFs"] == 3400


def test_summary_defaults():
    c = container("d" * 64, "x", NOW, st=state("created"))
    c["Name"] = ""
    c["Config"] = {"Image": ""}
    c["Args"] = []
    item = summary(c, NOW)
    assert item["Names"] == []
    assert item["Image"] == c["Image"]  # no Config.Image: the ID
    assert item["Command"] == "sh"
    assert item["Ports"] == [] and item["Labels"] == {}
    assert item["State"] == "created" and item["Status"] == "Created"


def test_command_text_quotes_only_args_with_spaces():
    assert command_text("/bin/echo", ["a b", "c", ""]) == "/bin/echo 'a b' c "
    assert command_text("top", None) == "top"


# -- parse_filters ---------------------------------------------------------------------------

def test_parse_filters_both_forms():
    assert parse_filters('{"status": ["running", "exited"]}') == {"status": ["running", "exited"]}
    assert parse_filters('{"label": {"a=b": true, "c": true, "off": false}}') == {
        "label": ["a=b", "c"]}
    assert parse_filters("") == {} and parse_filters(None) == {}


@pytest.mark.parametrize("raw", ["{", "[1]", '{"a": "b"}', '{"a": [1]}', '{"a": {"b": "yes"}}',
                                 "[" * 100000])
def test_parse_filters_invalid(raw):
    with pytest.raises(InvalidParameter, match="^invalid filter$"):
        parse_filters(raw)


# -- filter_containers -----------------------------------------------------------------------

def fleet() -> list[dict]:
    """Six containers, oldest first: a..f."""
    t = NOW - 1000
    return [
        container("aaa111" + "0" * 58, "alpha", t + 1,
                  state("exited", ExitCode=0, StartedAt=iso(t + 2), FinishedAt=iso(t + 3)),
                  Config={"Labels": {"tier": "db", "env": "prod"}}),
        container("bbb222" + "0" * 58, "beta", t + 2,
                  Config={"Labels": {"tier": "web"}},
                  NetworkSettings={"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
                                   "Networks": {"front": {"NetworkID": "f00d" * 16}}}),
        container("bbb333" + "0" * 58, "gamma", t + 3,
                  state("paused", Running=True, Paused=True, StartedAt=iso(t + 4)),
                  Mounts=[{"Type": "volume", "Name": "data", "Source": "/v/data",
                           "Destination": "/data", "RW": True}]),
        container("ccc444" + "0" * 58, "delta", t + 4, state("created")),
        container("ddd555" + "0" * 58, "epsilon", t + 5,
                  state("exited", ExitCode=137, StartedAt=iso(t + 6), FinishedAt=iso(t + 7))),
        container("eee666" + "0" * 58, "zeta", t + 6,
                  state("restarting", Running=True, Restarting=True, ExitCode=1,
                        StartedAt=iso(t + 7), FinishedAt=iso(t + 8)),
                  Image="sha256:" + "cd" * 32, Config={"Image": "redis"}),
    ]


def names(result: list[dict]) -> list[str]:
    return [c["Name"].lstrip("/") for c in result]


def test_default_lists_running_paused_restarting_newest_first():
    cs = fleet()
    shuffled = [cs[3], cs[0], cs[5], cs[1], cs[4], cs[2]]
    assert names(filter_containers(shuffled, None)) == ["zeta", "gamma", "beta"]
    assert names(filter_containers(shuffled, {}, all=True)) == [
        "zeta", "epsilon", "delta", "gamma", "beta", "alpha"]


def test_limit_implies_all_and_applies_last():
    assert names(filter_containers(fleet(), None, limit=2)) == ["zeta", "epsilon"]
    assert names(filter_containers(fleet(), {"status": ["exited"]}, limit=1)) == ["epsilon"]


def test_status_filter_implies_all():
    assert names(filter_containers(fleet(), {"status": ["exited", "created"]})) == [
        "epsilon", "delta", "alpha"]
    assert names(filter_containers(fleet(), {"status": ["paused"]})) == ["gamma"]
    assert names(filter_containers(fleet(), {"status": ["restarting"]})) == ["zeta"]


def test_invalid_status_and_unknown_key_use_dockers_words():
    with pytest.raises(InvalidParameter, match=r"^Invalid filter 'status=sleeping'$"):
        filter_containers(fleet(), {"status": ["sleeping"]})
    with pytest.raises(InvalidParameter, match=r"^invalid filter 'colour'$"):
        filter_containers(fleet(), {"colour": ["red"]})
    with pytest.raises(InvalidParameter, match="Unrecognised filter value for health: ok"):
        filter_containers(fleet(), {"health": ["ok"]})
    with pytest.raises(InvalidParameter, match='parsing "x"'):
        filter_containers(fleet(), {"exited": ["x"]})


def test_exited_filter_only_matches_started_stopped_containers():
    cs = fleet()
    assert names(filter_containers(cs, {"exited": ["137"]}, all=True)) == ["epsilon"]
    # delta (created, never started) has ExitCode 0 but is not "exited (0)"
    assert names(filter_containers(cs, {"exited": ["0"]}, all=True)) == ["alpha"]
    assert names(filter_containers(cs, {"exited": ["0"]})) == []  # no all: only running ones


def test_id_prefix_and_name_regexp():
    cs = fleet()
    assert names(filter_containers(cs, {"id": ["bbb"]}, all=True)) == ["gamma", "beta"]
    assert names(filter_containers(cs, {"id": ["bbb2"]}, all=True)) == ["beta"]
    assert names(filter_containers(cs, {"id": ["222"]}, all=True)) == []  # prefix, not substring
    assert names(filter_containers(cs, {"name": ["eta"]}, all=True)) == ["zeta", "beta"]
    assert names(filter_containers(cs, {"name": ["^/?[ab]"]}, all=True)) == ["beta", "alpha"]
    assert names(filter_containers(cs, {"name": ["/delta"]}, all=True)) == ["delta"]
    assert names(filter_containers(cs, {"name": ["alpha$", "zeta"]}, all=True)) == ["zeta", "alpha"]
    assert names(filter_containers(cs, {"name": ["("]}, all=True)) == []  # bad regexp: no match


def test_label_filter_all_must_match():
    cs = fleet()
    assert names(filter_containers(cs, {"label": ["tier"]}, all=True)) == ["beta", "alpha"]
    assert names(filter_containers(cs, {"label": ["tier=db"]}, all=True)) == ["alpha"]
    assert names(filter_containers(cs, {"label": ["tier", "env=prod"]}, all=True)) == ["alpha"]
    assert names(filter_containers(cs, {"label": ["tier=db", "env=dev"]}, all=True)) == []


def test_before_and_since():
    cs = fleet()
    assert names(filter_containers(cs, {"before": ["delta"]}, all=True)) == [
        "gamma", "beta", "alpha"]
    assert names(filter_containers(cs, {"since": ["/delta"]}, all=True)) == ["zeta", "epsilon"]
    assert names(filter_containers(cs, {"since": [cs[1]["Id"]]}, all=True)) == [
        "zeta", "epsilon", "delta", "gamma"]
    # a unique ID prefix works too; without all only running ones are kept, as moby
    assert names(filter_containers(cs, {"before": ["ddd5"]})) == ["gamma", "beta"]
    with pytest.raises(NotFound, match="^No such container: nosuch$"):
        filter_containers(cs, {"before": ["nosuch"]})


def test_health_filter():
    cs = fleet()
    cs[1]["State"]["Health"] = {"Status": "healthy", "FailingStreak": 0, "Log": []}
    cs[2]["State"]["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
    assert names(filter_containers(cs, {"health": ["healthy"]})) == ["beta"]
    assert names(filter_containers(cs, {"health": ["starting", "healthy"]})) == ["gamma", "beta"]
    assert names(filter_containers(cs, {"health": ["none"]})) == ["zeta"]


def test_volume_network_publish_expose():
    cs = fleet()
    assert names(filter_containers(cs, {"volume": ["data"]})) == ["gamma"]
    assert names(filter_containers(cs, {"volume": ["/data"]})) == ["gamma"]
    assert names(filter_containers(cs, {"volume": ["/v/data"]})) == []  # named: by name only
    assert names(filter_containers(cs, {"network": ["front"]})) == ["beta"]
    assert names(filter_containers(cs, {"network": ["f00df00d"]})) == ["beta"]
    assert names(filter_containers(cs, {"network": ["back"]})) == []
    assert names(filter_containers(cs, {"publish": ["8080"]})) == ["beta"]
    assert names(filter_containers(cs, {"publish": ["8000-8100/tcp"]})) == ["beta"]
    assert names(filter_containers(cs, {"publish": ["8080/udp"]})) == []
    assert names(filter_containers(cs, {"expose": ["80"]})) == ["beta"]
    assert names(filter_containers(cs, {"expose": ["8080"]})) == []
    with pytest.raises(InvalidParameter, match="filter for 'publish' should not contain ':'"):
        filter_containers(cs, {"publish": ["0.0.0.0:80"]})


def test_ancestor_uses_callback_or_image_identity():
    cs = fleet()
    assert names(filter_containers(cs, {"ancestor": ["redis"]}, all=True)) == ["zeta"]
    assert names(filter_containers(cs, {"ancestor": ["cdcdcd"]}, all=True)) == ["zeta"]
    seen = []

    def matcher(c, ref):
        seen.append(ref)
        return c["Name"] == "/beta"

    assert names(filter_containers(cs, {"ancestor": ["anything"]}, image_matches=matcher)) == [
        "beta"]
    assert set(seen) == {"anything"}


def test_is_task_and_isolation_are_accepted():
    cs = fleet()
    assert filter_containers(cs, {"is-task": ["true"]}) == []
    assert names(filter_containers(cs, {"is-task": ["false"]})) == ["zeta", "gamma", "beta"]
    assert names(filter_containers(cs, {"isolation": ["default"]})) == ["zeta", "gamma", "beta"]


def test_filtering_does_not_modify_the_records():
    cs = fleet()
    before = copy.deepcopy(cs)
    filter_containers(cs, {"status": ["running"], "label": ["tier"]}, limit=3)
    summary(cs[1], NOW)
    assert cs == before
