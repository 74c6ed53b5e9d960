"""The engine's event bus: what `GET /events` streams (moby's daemon/events).

`emit()` builds Docker's event message, keeps the last `limit` of them and hands it to every
subscriber whose filters match. A subscriber has a bounded queue: when it is full the new
event is dropped for that subscriber only (and counted in `Subscription.dropped`), so a slow
reader never blocks `emit()`, as Docker's publisher skips a listener that does not keep up.
"""

from __future__ import annotations

import collections
import threading
import time
import weakref

from bosun.engine.errors import InvalidParameter

_NS = 1_000_000_000

# The filter keys Docker's events filter knows; the last group match Actor.ID or its "name"
# attribute by prefix.
_NAME_KEYS = ("container", "daemon", "plugin", "volume", "network", "service", "node",
              "secret", "config")
EVENT_FILTERS = frozenset({"type", "event", "image", "label", "scope", *_NAME_KEYS})
# Actions with a detail after ":" ("exec_start: sh -c …") that a bare name matches by prefix.
_PREFIX_ACTIONS = frozenset({"health_status", "exec_create", "exec_start"})
# How long a subscriber sleeps between looks at `stop` when nothing happens.
_POLL = 0.1


def _familiar_name(image: str) -> str:
    """An image reference without its tag or digest, as `docker images` names it
    (busybox:latest → busybox); the value itself when it is not a reference."""
    if not image or image.startswith("sha256:"):
        return image
    from bosun.image.reference import InvalidReference, parse

    try:
        return parse(image).familiar()
    except InvalidReference:
        return image


class EventFilter:
    """Docker's events filters over {key: [values]}; an absent key matches everything."""

    def __init__(self, filters: dict[str, list[str]] | None):
        filters = {k: list(v) for k, v in (filters or {}).items()}
        for key in filters:
            if key not in EVENT_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        self.filters = filters
        # as Docker: one bare health_status/exec_create/exec_start turns every event value
        # into a prefix match
        self._event_prefix = bool(_PREFIX_ACTIONS.intersection(filters.get("event", ())))
        self._images = set(filters.get("image", ()))

    def __bool__(self) -> bool:
        return bool(self.filters)

    def _exact(self, key: str, value: str) -> bool:
        values = self.filters.get(key)
        return not values or value in values

    def _fuzzy(self, key: str, value: str) -> bool:
        values = self.filters.get(key)
        return not values or any(value.startswith(v) for v in values)

    def _labels(self, attributes: dict) -> bool:
        for item in self.filters.get("label", ()):
            key, eq, value = item.partition("=")
            if key not in attributes or (eq and attributes[key] != value):
                return False
        return True

    def _image(self, message: dict) -> bool:
        if not self._images:
            return True
        actor = message["Actor"]
        name = actor["Attributes"].get("name" if message["Type"] == "image" else "image", "")
        candidates = {actor["ID"], name, _familiar_name(actor["ID"]), _familiar_name(name)}
        return bool(self._images & candidates)

    def matches(self, message: dict) -> bool:
        action, actor = message["Action"], message["Actor"]
        attributes = actor["Attributes"]
        match_event = self._fuzzy if self._event_prefix else self._exact
        return (match_event("event", action)
                and self._exact("type", message["Type"])
                and self._exact("scope", message["scope"])
                and all(self._fuzzy(k, actor["ID"]) or self._fuzzy(k, attributes.get("name", ""))
                        for k in _NAME_KEYS if k in self.filters)
                and self._image(message)
                and self._labels(attributes))


class Subscription:
    """An iterator over the events of one `GET /events` request; see EventBus.subscribe."""

    def __init__(self, bus: EventBus, backlog: list[dict], until_ns: int | None,
                 past_only: bool, stop: threading.Event | None, size: int):
        self._bus = bus
        self._backlog = collections.deque(backlog)
        self._until_ns = until_ns
        self._past_only = past_only
        self._stop = stop
        self._size = size
        self._queue: collections.deque[dict] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._closed = False
        self.dropped = 0

    def _offer(self, message: dict) -> None:
        """Called by emit() with the bus lock held: never blocks."""
        with self._ready:
            if len(self._queue) >= self._size:
                self.dropped += 1
                return
            self._queue.append(message)
            self._ready.notify()

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> dict:
        if self._closed:
            raise StopIteration
        if self._backlog:
            return self._backlog.popleft()
        if self._past_only:
            self.close()
            raise StopIteration
        while True:
            if self._stop is not None and self._stop.is_set():
                break
            timeout = _POLL
            if self._until_ns is not None:
                left = (self._until_ns - time.time_ns()) / _NS
                if left <= 0:
                    break
                timeout = min(timeout, left)
            with self._ready:
                if not self._queue:
                    self._ready.wait(timeout)
                if self._queue:
                    message = self._queue.popleft()
                    if self._until_ns is None or message["timeNano"] <= self._until_ns:
                        return message
                    break
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Stop receiving; a subscription dropped without close() goes away with it too."""
        if not self._closed:
            self._closed = True
            self._bus._unsubscribe(self)


class EventBus:
    """The engine's events. Thread-safe; `limit` events are kept for `since` replays and each
    subscriber queues at most `queue_size` undelivered ones."""

    def __init__(self, limit: int = 256, queue_size: int = 1024):
        self._lock = threading.Lock()
        self._events: collections.deque[dict] = collections.deque(maxlen=limit)
        # weak: a subscription its reader dropped unsubscribes itself
        self._subscribers: weakref.WeakKeyDictionary[Subscription, EventFilter] = (
            weakref.WeakKeyDictionary())
        self._queue_size = queue_size

    def emit(self, type: str, action: str, actor_id: str,
             attributes: dict[str, str] | None = None) -> dict:
        """Build, keep and publish one event; returns the message."""
        attributes = dict(attributes or {})
        now = time.time_ns()
        message: dict = {}
        # Docker still fills the pre-1.22 fields for container and image events
        if type in ("container", "image"):
            message["status"] = action
            message["id"] = actor_id
            if attributes.get("image") and type == "container":
                message["from"] = attributes["image"]
        message.update({
            "Type": type,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": attributes},
            "scope": "local",
            "time": now // _NS,
            "timeNano": now,
        })
        with self._lock:
            self._events.append(message)
            for subscriber, event_filter in list(self._subscribers.items()):
                if event_filter.matches(message):
                    subscriber._offer(message)
        return message

    def events(self) -> list[dict]:
        """The kept events, oldest first."""
        with self._lock:
            return list(self._events)

    def subscribe(self, *, since: float | None = None, until: float | None = None,
                  filters: dict[str, list[str]] | None = None,
                  stop: threading.Event | None = None) -> Subscription:
        """Events as `GET /events` sends them: with `since` or `until`, first the kept events
        from `since` (inclusive) to `until`; then, unless `until` is already past, live
        events until `until` is reached (even if none arrives) or `stop` is set. Unknown
        filter keys and `since` after `until` raise InvalidParameter. The subscription starts
        here, not at the first next(): nothing emitted after this call is missed."""
        event_filter = EventFilter(filters)
        # 0 is a time (1970), not "unset": `--since 0` replays everything, as in Docker
        since_ns = int(since * _NS) if since is not None else None
        until_ns = int(until * _NS) if until is not None else None
        if since_ns is not None and until_ns is not None and since_ns > until_ns:
            raise InvalidParameter(
                f"`since` time ({since}) cannot be after `until` time ({until})")
        with self._lock:
            backlog = []
            if since_ns is not None or until_ns is not None:  # Docker replays only then
                backlog = [m for m in self._events
                           if m["timeNano"] >= (since_ns or 0)
                           and (until_ns is None or m["timeNano"] <= until_ns)
                           and event_filter.matches(m)]
            past_only = until_ns is not None and until_ns < time.time_ns()
            subscription = Subscription(self, backlog, until_ns, past_only, stop,
                                        self._queue_size)
            if not past_only:
                self._subscribers[subscription] = event_filter
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.pop(subscription, None)

    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)
