"""Container names: Docker's rule for what is valid, and generated "adjective_scientist" names
for containers created without one."""

from __future__ import annotations

import re
import secrets

from bosun.engine.errors import InvalidParameter

VALID = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_ADJECTIVES = (
    "agile", "amber", "ancient", "bold", "brave", "bright", "calm", "clever", "cosmic",
    "crisp", "curious", "daring", "eager", "earnest", "electric", "epic", "fearless", "fervent",
    "gentle", "glad", "golden", "grand", "happy", "hardy", "humble", "jolly", "keen", "kind",
    "lively", "loyal", "lucid", "merry", "mighty", "modest", "nimble", "noble", "patient",
    "placid", "polite", "proud", "quick", "quiet", "radiant", "rapid", "serene", "sharp",
    "silent", "sleek", "smart", "snug", "solid", "steady", "stoic", "sunny", "swift", "tender",
    "tidy", "upbeat", "valiant", "vivid", "warm", "wise", "witty", "zealous",
)
_SCIENTISTS = (
    "agnesi", "archimedes", "babbage", "bohr", "boole", "cannon", "carson", "cerf", "curie",
    "darwin", "dijkstra", "einstein", "euclid", "euler", "faraday", "fermat", "feynman",
    "franklin", "galileo", "gauss", "goodall", "hamilton", "hawking", "hopper", "hypatia",
    "johnson", "kepler", "knuth", "lamarr", "lovelace", "maxwell", "meitner", "mendel",
    "newton", "noether", "pascal", "pasteur", "planck", "ritchie", "shannon", "somerville",
    "tesla", "thompson", "turing", "volta", "wiles", "wozniak", "yalow",
)


def check(name: str) -> str:
    """The name without its leading slash, or InvalidParameter in Docker's words."""
    if not isinstance(name, str) or not VALID.match(name):
        raise InvalidParameter(f"Invalid container name ({name}), only "
                               "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def generate(retry: int = 0) -> str:
    name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_SCIENTISTS)}"
    return f"{name}{secrets.randbelow(10)}" if retry else name
