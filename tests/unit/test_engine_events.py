"""engine.events: Docker's event messages, the kept backlog, since/until replay, live delivery,
Docker's events filters and a slow subscriber that must not block emit()."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from bosun.engine.errors import InvalidParameter
from bosun.engine.events import EventBus, EventFilter

CID = "c0ffee" + "0" * 58
IMG = "sha256:" + "ab" * 32


def test_container_message_shape():
    bus = EventBus()
    before = time.time_ns()
    msg = bus.emit("container", "start", CID, {"image": "busybox", "name": "web"})
    assert list(msg) == ["status", "id", "from", "Type", "Action", "Actor", "scope", "time",
                         "timeNano"]
    assert msg["status"] == "start" and msg["id"] == CID and msg["from"] == "busybox"
    assert msg["Type"] == "container" and msg["Action"] == "start"
    assert msg["Actor"] == {"ID": CID, "Attributes": {"image": "busybox", "name": "web"}}
    assert msg["scope"] == "local"
    assert before <= msg["timeNano"] <= time.time_ns()
    assert msg["time"] == msg["timeNano"] // 1_000_000_000


def test_legacy_fields_only_for_containers_and_images():
    bus = EventBus()
    image = bus.emit("image", "pull", "busybox:latest", {"name": "busybox"})
    assert image["status"] == "pull" and image["id"] == "busybox:latest" and "from" not in image
    network = bus.emit("network", "connect", "n1", {"container": CID, "name": "bridge"})
    assert not {"status", "id", "from"} & set(network)
    assert bus.emit("volume", "create", "v1")["Actor"]["Attributes"] == {}


def test_keeps_the_last_limit_events():
    bus = EventBus(limit=3)
    for i in range(5):
        bus.emit("container", "create", f"c{i}")
    assert [m["Actor"]["ID"] for m in bus.events()] == ["c2", "c3", "c4"]


def test_since_replays_kept_events_then_live_ones():
    bus = EventBus()
    old = bus.emit("container", "create", "old")
    time.sleep(0.002)
    mark = time.time()
    time.sleep(0.002)
    kept = bus.emit("container", "start", "kept")
    stop = threading.Event()
    sub = bus.subscribe(since=mark, filters={}, stop=stop)
    live = bus.emit("container", "die", "live")  # after subscribe, before the first next()
    assert next(sub) is kept
    assert next(sub) is live
    stop.set()
    assert list(sub) == []
    assert old["Actor"]["ID"] == "old"


def test_since_zero_replays_everything_kept():
    bus = EventBus()
    first = bus.emit("container", "create", "a")
    sub = bus.subscribe(since=0.0, until=time.time() + 0.05)
    assert list(sub) == [first]


def test_without_since_or_until_nothing_is_replayed():
    bus = EventBus()
    bus.emit("container", "create", "old")
    stop = threading.Event()
    sub = bus.subscribe(stop=stop)
    threading.Timer(0.05, lambda: bus.emit("container", "start", "new")).start()
    assert next(sub)["Actor"]["ID"] == "new"
    stop.set()
    assert list(sub) == []


def test_until_in_the_past_returns_only_the_backlog():
    bus = EventBus()
    first = bus.emit("container", "create", "a")
    time.sleep(0.002)
    cut = time.time()
    time.sleep(0.002)
    bus.emit("container", "start", "a")
    sub = bus.subscribe(since=1, until=cut)
    assert list(sub) == [first]
    assert bus.subscriber_count() == 0


def test_until_in_the_future_ends_without_any_event():
    bus = EventBus()
    start = time.monotonic()
    assert list(bus.subscribe(until=time.time() + 0.15)) == []
    assert 0.12 < time.monotonic() - start < 1.5
    assert bus.subscriber_count() == 0


def test_since_after_until_is_refused():
    with pytest.raises(InvalidParameter, match="cannot be after `until` time"):
        EventBus().subscribe(since=200.0, until=100.0)


def test_live_events_from_other_threads_in_order():
    bus = EventBus()
    stop = threading.Event()
    sub = bus.subscribe(filters={"type": ["container"]}, stop=stop)

    def produce():
        for i in range(50):
            bus.emit("container", "start", f"c{i}")
            bus.emit("network", "connect", f"n{i}")

    t = threading.Thread(target=produce)
    t.start()
    got = [next(sub)["Actor"]["ID"] for _ in range(50)]
    t.join()
    stop.set()
    assert got == [f"c{i}" for i in range(50)]


def test_slow_subscriber_drops_newest_and_never_blocks_emit():
    bus = EventBus(queue_size=3)
    stop = threading.Event()
    sub = bus.subscribe(stop=stop)
    start = time.monotonic()
    for i in range(100):
        bus.emit("container", "start", f"c{i}")
    assert time.monotonic() - start < 1
    assert sub.dropped == 97
    assert [next(sub)["Actor"]["ID"] for _ in range(3)] == ["c0", "c1", "c2"]
    bus.emit("container", "die", "after")  # room again
    assert next(sub)["Actor"]["ID"] == "after"
    stop.set()
    assert list(sub) == []


def test_a_dropped_subscription_unsubscribes():
    bus = EventBus()
    sub = bus.subscribe(stop=threading.Event())
    assert bus.subscriber_count() == 1
    del sub
    gc.collect()
    assert bus.subscriber_count() == 0
    sub = bus.subscribe(stop=threading.Event())
    sub.close()
    assert bus.subscriber_count() == 0
    assert list(sub) == []


# -- filters ---------------------------------------------------------------------------------

def event(type_="container", action="start", actor=CID, **attributes) -> dict:
    return {"Type": type_, "Action": action, "Actor": {"ID": actor, "Attributes": attributes},
            "scope": "local", "time": 0, "timeNano": 0}


def test_unknown_filter_key():
    with pytest.raises(InvalidParameter, match=r"^invalid filter 'colour'$"):
        EventFilter({"colour": ["red"]})
    with pytest.raises(InvalidParameter, match=r"^invalid filter 'colour'$"):
        EventBus().subscribe(filters={"colour": ["red"]})


def test_type_event_scope():
    f = EventFilter({"type": ["container", "image"], "event": ["start", "die"]})
    assert f.matches(event())
    assert f.matches(event("image", "die", IMG))
    assert not f.matches(event("network", "start", "n1"))
    assert not f.matches(event(action="stop"))
    assert EventFilter({"scope": ["local"]}).matches(event())
    assert not EventFilter({"scope": ["swarm"]}).matches(event())


def test_exec_and_health_actions_match_by_prefix():
    assert EventFilter({"event": ["exec_start"]}).matches(event(action="exec_start: sh -c ls"))
    assert EventFilter({"event": ["health_status"]}).matches(
        event(action="health_status: healthy"))
    # a prefix match only when one of those bare names is asked for, as Docker
    assert not EventFilter({"event": ["exec"]}).matches(event(action="exec_start: sh"))
    assert not EventFilter({"event": ["exec_start: s"]}).matches(event(action="exec_start: sh"))
    assert not EventFilter({"event": ["exec_start"]}).matches(event(action="start"))


def test_container_by_id_prefix_or_name():
    assert EventFilter({"container": ["c0ffee"]}).matches(event())
    assert EventFilter({"container": ["web"]}).matches(event(name="web"))
    assert EventFilter({"container": ["we"]}).matches(event(name="web"))
    assert not EventFilter({"container": ["other"]}).matches(event(name="web"))
    # Docker applies the container filter to every event: other types must match it too
    assert not EventFilter({"container": ["web"]}).matches(event("image", "pull", "busybox"))


def test_image_by_id_name_or_name_without_tag():
    c = event(image="busybox:latest", name="web")
    assert EventFilter({"image": ["busybox:latest"]}).matches(c)
    assert EventFilter({"image": ["busybox"]}).matches(c)
    assert not EventFilter({"image": ["alpine"]}).matches(c)
    pulled = event("image", "pull", "docker.io/library/busybox:1.36",
                   name="docker.io/library/busybox:1.36")
    assert EventFilter({"image": ["busybox"]}).matches(pulled)
    deleted = event("image", "delete", IMG)
    assert EventFilter({"image": [IMG]}).matches(deleted)
    assert not EventFilter({"image": ["busybox"]}).matches(deleted)


def test_label_volume_network_daemon():
    c = event(image="busybox", name="web", **{"com.example.tier": "front", "flag": ""})
    assert EventFilter({"label": ["com.example.tier"]}).matches(c)
    assert EventFilter({"label": ["com.example.tier=front", "flag"]}).matches(c)
    assert not EventFilter({"label": ["com.example.tier=back"]}).matches(c)
    assert EventFilter({"volume": ["data"]}).matches(event("volume", "mount", "data"))
    assert EventFilter({"network": ["bridge"]}).matches(
        event("network", "connect", "a1b2", name="bridge", container=CID))
    assert not EventFilter({"network": ["host"]}).matches(
        event("network", "connect", "a1b2", name="bridge"))
    assert EventFilter({"daemon": ["d1"]}).matches(event("daemon", "reload", "d1"))


def test_filters_apply_to_backlog_and_live_events():
    bus = EventBus()
    bus.emit("container", "create", "a", {"name": "web"})
    bus.emit("container", "create", "b", {"name": "db"})
    stop = threading.Event()
    sub = bus.subscribe(since=1, filters={"container": ["db"]}, stop=stop)
    bus.emit("container", "start", "a", {"name": "web"})
    bus.emit("container", "start", "b", {"name": "db"})
    got = [next(sub), next(sub)]
    assert [(m["Action"], m["Actor"]["ID"]) for m in got] == [("create", "b"), ("start", "b")]
    stop.set()
    assert list(sub) == []
