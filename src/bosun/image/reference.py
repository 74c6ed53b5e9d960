"""Docker image references (`busybox`, `localhost:5000/app:1`, `name@sha256:…`), parsed and
normalized as Docker does, with Docker's error messages.

Grammar (distribution/reference):

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path
    domain     := host [ ":" port ]      host: DNS-like name, IPv4, or [IPv6]
    path       := component ( "/" component )*
    component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex

Normalization (what `docker pull busybox` does): the part before the first "/" is a registry
host only if it contains "." or ":", is "localhost", or has an uppercase letter; otherwise
the domain is docker.io, and a single-component Docker Hub path gets the "library/" prefix.
"index.docker.io" is an alias of docker.io. The path (library/ included) is at most 255
characters.

The pieces are matched separately (the name split at "@", the tag after the last ":" that
follows the last "/") rather than with one big regular expression: it is the same language,
but each regex stays small and linear, so a hostile string through the API costs little.

Two deliberate differences from Docker: sha384 digests are refused (bosun's content store
keeps sha256 and sha512), and so is a name whose first part is taken for a host but is no
valid one ("exa_mple.com/a": Docker keeps it as a name without a registry, unpullable).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
# Docker checks the path (after "library/" is added), not the domain.
MAX_PATH_LENGTH = 255

# Docker's messages, word for word (distribution/reference and go-digest).
ERR_FORMAT = "invalid reference format"
ERR_TAG_FORMAT = "invalid tag format"
ERR_UPPERCASE = "repository name must be lowercase"
ERR_TOO_LONG = f"repository name must not be more than {MAX_PATH_LENGTH} characters"
ERR_DIGEST_FORMAT = "invalid checksum digest format"
ERR_DIGEST_LENGTH = "invalid checksum digest length"
ERR_DIGEST_UNSUPPORTED = "unsupported digest algorithm"
ERR_TAG_WITH_DIGEST = "refusing to create a tag with a digest reference"

# The algorithms OCI registers, with their hex lengths: what bosun's content store keeps.
# (Docker's go-digest also takes sha384; bosun refuses it as "unsupported digest algorithm".)
DIGEST_ALGORITHMS = {"sha256": 64, "sha512": 128}

# Classes are spelled out ([A-Za-z0-9_], not \w): Go's \w is ASCII-only, Python's is not.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HOST_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = re.compile(rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# What the reference grammar accepts as a digest; go-digest then validates it further.
_DIGEST_SYNTAX = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
# go-digest's own (looser) syntax, used only to choose between its two error messages.
_GO_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_LOWER_HEX = re.compile(r"[a-f0-9]+")
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")


class InvalidReference(ValueError):
    """A string that is not a valid image reference; str() is Docker's message."""


def validate_digest(digest: str) -> str:
    """Check `algorithm:hex` as go-digest does (lowercase hex of the algorithm's length) and
    return it; raise InvalidReference with go-digest's message otherwise."""
    if not isinstance(digest, str):
        raise InvalidReference(ERR_DIGEST_FORMAT)
    algorithm, sep, encoded = digest.partition(":")
    if not algorithm or not sep or not encoded:
        raise InvalidReference(ERR_DIGEST_FORMAT)
    length = DIGEST_ALGORITHMS.get(algorithm)
    if length is None:
        if not _GO_DIGEST.fullmatch(digest):
            raise InvalidReference(ERR_DIGEST_FORMAT)
        raise InvalidReference(ERR_DIGEST_UNSUPPORTED)
    if len(encoded) != length:
        raise InvalidReference(ERR_DIGEST_LENGTH)
    if not _LOWER_HEX.fullmatch(encoded):
        raise InvalidReference(ERR_DIGEST_FORMAT)
    return digest


def is_valid_tag(tag: str) -> bool:
    return isinstance(tag, str) and _TAG.fullmatch(tag) is not None


def is_valid_domain(domain: str) -> bool:
    """A registry host as a reference names it: host[:port] or [ipv6][:port], port ≤ 65535."""
    if not isinstance(domain, str) or _DOMAIN.fullmatch(domain) is None:
        return False
    port = domain.rpartition("]")[2].partition(":")[2] if domain.startswith("[") \
        else domain.partition(":")[2]
    return not port or int(port) <= 65535


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference: always a domain and a path; tag and digest may both be set
    (`name:tag@digest`, as Docker keeps them). parse() returns normalized ones; the
    constructor checks the syntax of every part but normalizes nothing."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.domain, str) or not _DOMAIN.fullmatch(self.domain):
            raise InvalidReference(ERR_FORMAT)
        if not isinstance(self.path, str) or not _PATH.fullmatch(self.path):
            raise InvalidReference(ERR_FORMAT)
        if len(self.path) > MAX_PATH_LENGTH:
            raise InvalidReference(ERR_TOO_LONG)
        if self.tag is not None and not is_valid_tag(self.tag):
            raise InvalidReference(ERR_TAG_FORMAT)
        if self.digest is not None:
            validate_digest(self.digest)

    @property
    def name(self) -> str:
        """`docker.io/library/busybox`: domain and path, no tag or digest."""
        return f"{self.domain}/{self.path}"

    def familiar(self) -> str:
        """The name as `docker images` shows it: docker.io and a one-level "library/" dropped
        (busybox, user/app, localhost:5000/app; docker.io/library/a/b stays library/a/b)."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_PREFIX) and "/" not in self.path[len(OFFICIAL_PREFIX):]:
            return self.path[len(OFFICIAL_PREFIX):]
        return self.path

    def familiar_string(self) -> str:
        """The familiar name with tag and digest: what RepoTags/RepoDigests list."""
        return self.familiar() + self._suffix()

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag is not None else "") + (
            f"@{self.digest}" if self.digest is not None else "")

    def __str__(self) -> str:
        return self.name + self._suffix()

    def with_default_tag(self) -> Reference:
        """Add `:latest` when there is neither a tag nor a digest (Docker's TagNameOnly)."""
        if self.tag is None and self.digest is None:
            return dataclasses.replace(self, tag=DEFAULT_TAG)
        return self

    def with_tag(self, tag: str) -> Reference:
        if not is_valid_tag(tag):
            raise InvalidReference(ERR_TAG_FORMAT)
        return dataclasses.replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        return dataclasses.replace(self, digest=validate_digest(digest))

    def name_only(self) -> Reference:
        """The repository alone, tag and digest dropped (Docker's TrimNamed)."""
        return Reference(self.domain, self.path)


def _split_docker_domain(text: str) -> tuple[str, str]:
    """Docker's splitDockerDomain: (domain, rest) with docker.io and library/ filled in."""
    first, slash, rest = text.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_PREFIX + text
    if first == "localhost" or any(c in first for c in ".:") or first.lower() != first:
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, text
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def _match(text: str) -> tuple[str, str, str | None, str | None] | None:
    """(domain, path, tag, digest) if `text` is in the reference grammar, else None. Domain
    is "" when the name has no host part."""
    name, at, digest = text.partition("@")
    if at and not _DIGEST_SYNTAX.fullmatch(digest):
        return None
    tag = None
    colon = name.rfind(":")
    if colon != -1 and "/" not in name[colon + 1:]:  # a ":" before a "/" is a port
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.fullmatch(tag):
            return None
    # A host is the first component when it looks like one and a valid path follows; the
    # grammar tries that reading first.
    first, slash, rest = name.partition("/")
    if slash and _DOMAIN.fullmatch(first) and _PATH.fullmatch(rest):
        domain, path = first, rest
    elif _PATH.fullmatch(name):
        domain, path = "", name
    else:
        return None
    return domain, path, tag, (digest if at else None)


def parse(text: str) -> Reference:
    """Parse a reference as Docker's ParseNormalizedNamed does: domain and "library/" filled
    in, tag and digest kept as written (None when absent)."""
    if not isinstance(text, str):
        raise InvalidReference(ERR_FORMAT)
    if _IDENTIFIER.fullmatch(text):
        raise InvalidReference(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(text)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReference(f"{ERR_FORMAT}: repository name ({remote}) must be lowercase")
    full = f"{domain}/{remainder}"
    matched = _match(full)
    if matched is None:
        # e.g. "my_Host/app": an uppercase first component is taken for a host, but "_" is
        # not valid in one, and as a path it is uppercase.
        if _match(full.lower()) is not None:
            raise InvalidReference(ERR_UPPERCASE)
        raise InvalidReference(ERR_FORMAT)
    m_domain, path, tag, digest = matched
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidReference(ERR_TOO_LONG)
    if digest is not None:
        validate_digest(digest)
    if not m_domain:
        # Docker keeps e.g. "exa_mple.com/a" as a host-less name it cannot pull from; a
        # bosun Reference always has a registry, so this is refused.
        raise InvalidReference(ERR_FORMAT)
    return Reference(m_domain, path, tag, digest)


def parse_normalized(text: str) -> Reference:
    """parse(), then `:latest` when neither a tag nor a digest was given
    (`busybox` → docker.io/library/busybox:latest)."""
    return parse(text).with_default_tag()


def split_repo_tag(text: str) -> tuple[str, str | None]:
    """Split `repo[:tag]` or `repo@digest` into its two strings without validating, as the
    docker CLI and docker-py do before sending them as separate API parameters
    ("localhost:5000/app" has no tag: a ":" followed by a "/" is a port)."""
    repo, at, digest = text.rpartition("@")
    if at:
        return repo, digest
    repo, colon, tag = text.rpartition(":")
    if colon and "/" not in tag:
        return repo, tag
    return text, None


def for_pull(image: str, tag: str | None = None) -> Reference:
    """The reference `POST /images/create?fromImage=image&tag=tag` pulls: `tag` may be a
    digest, which replaces any tag in `image`; a trailing ":" (sent by `pull -a`) is
    ignored. No default tag is added here (an empty tag means "all tags" to Docker)."""
    ref = parse(image.removesuffix(":"))
    if tag:
        try:
            digest = validate_digest(tag)
        except InvalidReference:
            return ref.with_tag(tag)
        return ref.name_only().with_digest(digest)
    return ref


def for_tag(repo: str, tag: str | None = None) -> Reference:
    """The new name `POST /images/{id}/tag?repo=repo&tag=tag` (and `docker tag`) creates:
    `tag` replaces any tag in `repo`, `:latest` by default; a digest is refused as Docker
    does."""
    ref = parse(repo)
    if tag:
        ref = ref.name_only().with_tag(tag)
    if ref.digest is not None:
        raise InvalidReference(ERR_TAG_WITH_DIGEST)
    return ref.with_default_tag()
