"""Docker's filters.Args matching, shared by every layer that lists things (engine views,
networks, volumes)."""

from __future__ import annotations

import re


def matches(values: list[str], source: str) -> bool:
    """Docker's Args.Match: an exact value, or a regular expression found in source. A value
    that is not a valid expression matches only exactly."""
    for value in values:
        if value == source:
            return True
        try:
            if re.search(value, source):
                return True
        except re.error:
            continue
    return False


def labels_match(wanted: list[str], labels: dict) -> bool:
    """Docker's MatchKVList: every "key" present, every "key=value" equal."""
    for w in wanted:
        key, sep, value = w.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True
