"""Image manifests, indexes and configs: media types, strict parsing of untrusted JSON,
platform selection, and the shapes `docker image inspect` and `docker history` return.

Everything read from a registry or a tarball is hostile until checked: parse() and
ImageConfig.parse() take raw bytes and either return fully typed objects or raise
ManifestError (a ValueError) whose message says what is wrong and where — never a
KeyError/TypeError from a missing or mistyped field. Values are read as Docker's Go
decoder reads them: JSON null is the zero value, wrong types are errors, unknown fields are
ignored (as the OCI spec requires).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bosun.image.reference import InvalidReference, validate_digest

# -- media types -----------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
# Deprecated in OCI 1.1 but still served: the same tar, "do not push it elsewhere".
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = OCI_LAYER_NONDIST + "+gzip"
OCI_LAYER_NONDIST_ZSTD = OCI_LAYER_NONDIST + "+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = DOCKER_LAYER + ".gzip"
DOCKER_LAYER_ZSTD = DOCKER_LAYER + ".zstd"
# Foreign layers (Windows base images) are fetched from descriptor.urls, not the registry.
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_FOREIGN_LAYER_GZIP = DOCKER_FOREIGN_LAYER + ".gzip"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
# What a registry client sends as Accept, most preferred first (schema 1 deliberately absent).
ACCEPTED_MANIFEST_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

# Layer media type -> (compression or None, foreign/non-distributable).
LAYER_TYPES: Mapping[str, tuple[str | None, bool]] = {
    OCI_LAYER: (None, False),
    OCI_LAYER_GZIP: ("gzip", False),
    OCI_LAYER_ZSTD: ("zstd", False),
    OCI_LAYER_NONDIST: (None, True),
    OCI_LAYER_NONDIST_GZIP: ("gzip", True),
    OCI_LAYER_NONDIST_ZSTD: ("zstd", True),
    DOCKER_LAYER: (None, False),
    DOCKER_LAYER_GZIP: ("gzip", False),
    DOCKER_LAYER_ZSTD: ("zstd", False),
    DOCKER_FOREIGN_LAYER: (None, True),
    DOCKER_FOREIGN_LAYER_GZIP: ("gzip", True),
}

SCHEMA1_MESSAGE = ("image uses the deprecated Docker Image Manifest V2 Schema 1 format, "
                   "which bosun does not support")

# Docker's registry client refuses manifests above 4 MiB; configs get more room (long
# histories, big labels) but are still read into memory, so they are bounded too.
MAX_MANIFEST_SIZE = 4 << 20
MAX_CONFIG_SIZE = 16 << 20
INT64_MAX = (1 << 63) - 1

# OCI annotation marking an index entry as an attestation (buildx provenance/SBOM), not an image.
ATTESTATION_ANNOTATION = "vnd.docker.reference.type"

# RFC 6838 section 4.2 restricted names, as the OCI descriptor schema has it.
_MEDIA_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(f"{_MEDIA_NAME}/{_MEDIA_NAME}", re.ASCII)
_SURROGATE = re.compile("[\ud800-\udfff]")


class ManifestError(ValueError):
    """Manifest, index or config content that bosun refuses; the message says why."""


def layer_compression(media_type: str) -> str | None:
    """"gzip", "zstd" or None (plain tar) for a layer media type; ManifestError if it is
    not a layer type bosun can unpack."""
    try:
        return LAYER_TYPES[media_type][0]
    except (KeyError, TypeError):
        raise ManifestError(f"unsupported layer media type {_show(media_type)}") from None


def is_foreign_layer(media_type: str) -> bool:
    """True for foreign / non-distributable layers (fetched from urls, never pushed)."""
    entry = LAYER_TYPES.get(media_type)
    return bool(entry and entry[1])


def digest_of(data: bytes) -> str:
    """The sha256 digest of `data`, as `sha256:<hex>` (an image ID is digest_of(config))."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI ChainIDs: ChainID(0) = DiffID(0); ChainID(n) = sha256(ChainID(n-1) + " " +
    DiffID(n)). The last one names the whole stack of layers (the snapshot to run)."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else digest_of(f"{out[-1]} {diff_id}".encode()))
    return out


# -- reading untrusted JSON ------------------------------------------------------------------
# Each helper takes the containing object, the key and a path for messages ("layers[2]"),
# and returns the typed value or raises ManifestError naming the path.

def _fail(what: str, path: str, problem: str) -> ManifestError:
    return ManifestError(f"invalid {what}: {path} {problem}" if path
                         else f"invalid {what}: {problem}")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _show(value: Any) -> str:
    """repr() for messages, cut short: the value may be megabytes of hostile input."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)[:200]
    return text if len(text) <= 100 else text[:97] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load(data: bytes | bytearray | memoryview | str, what: str, limit: int) -> dict[str, Any]:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ManifestError(f"invalid {what}: expected bytes, got {type(data).__name__}")
    if len(data) > limit:
        raise ManifestError(f"invalid {what}: {len(data)} bytes is more than the {limit} allowed")
    try:
        doc = json.loads(bytes(data).decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ManifestError(f"invalid {what}: not UTF-8 text") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, NaN, huge ints, deep nesting
        detail = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply" \
            if isinstance(e, RecursionError) else str(e)
        raise ManifestError(f"invalid {what}: not valid JSON ({detail})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"invalid {what}: expected a JSON object, got {_type_name(doc)}")
    return doc


def _clean(s: str) -> str:
    # Python's json keeps lone UTF-16 surrogates ("\ud800") that cannot be encoded later;
    # Go's decoder turns them into U+FFFD, and so do we.
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", s)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _str(obj: Mapping[str, Any], key: str, what: str, path: str, *, required: bool = False,
         nonempty: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise _fail(what, _join(path, key), "is missing")
        return ""
    if not isinstance(value, str):
        raise _fail(what, _join(path, key), f"must be a string, not {_type_name(value)}")
    if nonempty and not value:
        raise _fail(what, _join(path, key), "must not be empty")
    return _clean(value)


def _opt_str(obj: Mapping[str, Any], key: str, what: str, path: str) -> str | None:
    return _str(obj, key, what, path) if obj.get(key) is not None else None


def _int(obj: Mapping[str, Any], key: str, what: str, path: str, *, required: bool = False,
         minimum: int = 0) -> int:
    value = obj.get(key)
    if value is None:
        if required:
            raise _fail(what, _join(path, key), "is missing")
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(what, _join(path, key), f"must be an integer, not {_type_name(value)}")
    if not minimum <= value <= INT64_MAX:
        raise _fail(what, _join(path, key), f"is out of range ({value})")
    return value


def _bool(obj: Mapping[str, Any], key: str, what: str, path: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(what, _join(path, key), f"must be true or false, not {_type_name(value)}")
    return value


def _object(obj: Mapping[str, Any], key: str, what: str, path: str, *,
            required: bool = False) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _fail(what, _join(path, key), "is missing")
        return None
    if not isinstance(value, dict):
        raise _fail(what, _join(path, key), f"must be an object, not {_type_name(value)}")
    return value


def _array(obj: Mapping[str, Any], key: str, what: str, path: str, *,
           required: bool = False) -> list[Any] | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _fail(what, _join(path, key), "is missing")
        return None
    if not isinstance(value, list):
        raise _fail(what, _join(path, key), f"must be an array, not {_type_name(value)}")
    return value


def _str_list(obj: Mapping[str, Any], key: str, what: str, path: str, *,
              string_ok: bool = False) -> list[str] | None:
    """An array of strings (null items are ""), None when absent. `string_ok`: Docker's
    StrSlice, where a bare string means a one-element list (`"Cmd": "sh"`)."""
    value = obj.get(key)
    if string_ok and isinstance(value, str):
        return [_clean(value)]
    items = _array(obj, key, what, path)
    if items is None:
        return None
    out = []
    for i, item in enumerate(items):
        if item is None:
            item = ""
        elif not isinstance(item, str):
            raise _fail(what, f"{_join(path, key)}[{i}]",
                        f"must be a string, not {_type_name(item)}")
        out.append(_clean(item))
    return out


def _str_map(obj: Mapping[str, Any], key: str, what: str, path: str) -> dict[str, str] | None:
    """An object of string values (null values are ""), None when absent."""
    value = _object(obj, key, what, path)
    if value is None:
        return None
    out = {}
    for k, v in value.items():
        if v is None:
            v = ""
        elif not isinstance(v, str):
            raise _fail(what, f"{_join(path, key)}[{_show(k)}]",
                        f"must be a string, not {_type_name(v)}")
        out[_clean(k)] = _clean(v)
    return out


def _key_set(obj: Mapping[str, Any], key: str, what: str, path: str) -> list[str] | None:
    """A Go map[string]struct{} (`"Volumes": {"/data": {}}`): the keys, None when absent."""
    value = _object(obj, key, what, path)
    if value is None:
        return None
    for k, v in value.items():
        if v is not None and not isinstance(v, dict):
            raise _fail(what, f"{_join(path, key)}[{_show(k)}]",
                        f"must be an object, not {_type_name(v)}")
    return [_clean(k) for k in value]


def _digest(obj: Mapping[str, Any], key: str, what: str, path: str) -> str:
    value = _str(obj, key, what, path, required=True)
    try:
        return validate_digest(value)
    except InvalidReference as e:
        raise _fail(what, _join(path, key), f"{_show(value)} is not a valid digest ({e})") from None


def _media_type(obj: Mapping[str, Any], key: str, what: str, path: str, *,
                required: bool = True) -> str | None:
    value = _str(obj, key, what, path, required=required)
    if not value and not required:
        return None
    if not _MEDIA_TYPE.fullmatch(value):
        raise _fail(what, _join(path, key), f"{_show(value)} is not a media type")
    return value


# -- platforms -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform. `variant` (arm's v7, arm64's v8) and `os_version` are None if unset."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p) or "unknown"

    def normalized(self) -> Platform:
        """containerd's Normalize: lowercase, aliases resolved (x86_64→amd64, aarch64→arm64,
        armhf→arm/v7), and the default variants made implicit-equal (arm64 v8 is "")."""
        arch, variant = _normalize_arch(self.architecture, self.variant or "")
        os_name = (self.os or "linux").lower()
        if os_name == "macos":
            os_name = "darwin"
        return Platform(os_name, arch, variant or None, self.os_version, self.os_features)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        if self.variant:
            d["variant"] = self.variant
        return d


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return arch, variant


_HOST_ARCH = {  # uname -m → (GOARCH, variant)
    "x86_64": ("amd64", None), "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"), "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"), "armv7": ("arm", "v7"), "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"), "armv5l": ("arm", "v5"),
    "i386": ("386", None), "i486": ("386", None), "i586": ("386", None), "i686": ("386", None),
    "ppc64le": ("ppc64le", None), "ppc64": ("ppc64", None), "s390x": ("s390x", None),
    "riscv64": ("riscv64", None), "mips64": ("mips64", None), "loongarch64": ("loong64", None),
}


def host_platform(machine: str | None = None) -> Platform:
    """The platform this host runs, as Docker names it (x86_64→linux/amd64, aarch64→
    linux/arm64/v8, armv7l→linux/arm/v7). `machine` overrides `uname -m` for tests."""
    machine = machine if machine is not None else os.uname().machine
    arch, variant = _HOST_ARCH.get(machine, (machine.lower(), None))
    return Platform("linux", arch, variant)


_KNOWN_OS = frozenset((  # Go's GOOS values
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux",
    "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos"))
_KNOWN_ARCH = frozenset((  # Go's GOARCH values
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le", "loong64",
    "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "riscv", "riscv64",
    "s390", "s390x", "sparc", "sparc64", "wasm"))
_SPEC_PART = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
_SPEC_OS = re.compile(r"([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.-]*)\))?", re.ASCII)


def parse_platform(spec: str, host: Platform | None = None) -> Platform:
    """A `--platform` specifier, as containerd parses it: `os`, `arch`, `os/arch` or
    `os/arch/variant` (`linux/arm64/v8`, `arm64`, `linux`, `windows(10.0.17763)/amd64`).
    A lone OS gets the host's architecture; a lone architecture gets the host's OS."""
    if not isinstance(spec, str):
        raise ManifestError("platform specifier must be a string")
    host = host or host_platform()
    if "*" in spec:
        raise ManifestError(f"{_show(spec)}: wildcards not yet supported: invalid argument")
    parts = spec.split("/", 3)
    m = _SPEC_OS.fullmatch(parts[0])
    if m is None:
        raise ManifestError(f"{_show(parts[0])} is an invalid OS component of {_show(spec)}: "
                            "invalid argument")
    for part in parts[1:]:
        if not _SPEC_PART.fullmatch(part):
            raise ManifestError(f"{_show(part)} is an invalid component of {_show(spec)}: "
                                "invalid argument")
    os_name = m.group(1).lower()
    os_name = "darwin" if os_name == "macos" else os_name
    os_version = m.group(2) or None
    if len(parts) == 1:
        if os_name in _KNOWN_OS:
            keep = host.architecture == "arm" and host.variant != "v7"  # v7 is implied
            return Platform(os_name, host.architecture, host.variant if keep else None, os_version)
        arch, variant = _normalize_arch(parts[0], "")
        if arch in _KNOWN_ARCH:
            implied = arch == "arm" and variant == "v7"
            return Platform(host.os, arch, None if implied else variant or None)
        raise ManifestError(f"{_show(spec)}: unknown operating system or architecture: "
                            "invalid argument")
    if len(parts) == 2:
        arch, variant = _normalize_arch(parts[1], "")
        if arch == "arm" and variant == "v7":
            variant = ""
        return Platform(os_name, arch, variant or None, os_version)
    if len(parts) == 3:
        arch, variant = _normalize_arch(parts[1], parts[2])
        if arch == "arm64" and not variant:
            variant = "v8"
        return Platform(os_name, arch, variant or None, os_version)
    raise ManifestError(f"{_show(spec)}: cannot parse platform specifier: invalid argument")


# arm64 variant -> the (major, newest minor) ranges it can run, best first (containerd's
# table): v8.x runs v8.x down to v8; v9.x also runs v8.(x+5) and below.
_ARM64_VERSIONS: dict[str, list[tuple[int, int]]] = {
    "v8": [(8, 0)], "v8.0": [(8, 0)], "v8.1": [(8, 1)], "v8.2": [(8, 2)], "v8.3": [(8, 3)],
    "v8.4": [(8, 4)], "v8.5": [(8, 5)], "v8.6": [(8, 6)], "v8.7": [(8, 7)], "v8.8": [(8, 8)],
    "v8.9": [(8, 9)],
    "v9": [(9, 0), (8, 5)], "v9.0": [(9, 0), (8, 5)], "v9.1": [(9, 1), (8, 6)],
    "v9.2": [(9, 2), (8, 7)], "v9.3": [(9, 3), (8, 8)], "v9.4": [(9, 4), (8, 9)],
    "v9.5": [(9, 5), (8, 9)], "v9.6": [(9, 6), (8, 9)], "v9.7": [(9, 7), (8, 9)],
}


def _compatible(want: Platform) -> list[Platform]:
    """What an image for `want` may be replaced with, best first (containerd's
    platformVector, behind Docker's platforms.Only): amd64/vN → older vN, then 386;
    arm/vN → older arm down to v5; arm64 → older arm64, then arm/v8 and below."""
    p = want.normalized()
    out = [p]
    variant = p.variant or ""
    digits = variant.removeprefix("v")
    # (two digits at most: a user's "v99999999" must not become a list of 10^8 platforms)
    level = int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 2 else 0
    if p.architecture == "amd64":
        out += [dataclasses.replace(p, variant=f"v{v}" if v > 1 else None)
                for v in range(level - 1, 0, -1)]
        out.append(dataclasses.replace(p, architecture="386", variant=None))
    elif p.architecture == "arm":
        out += [dataclasses.replace(p, variant=f"v{v}") for v in range(level - 1, 4, -1)]
    elif p.architecture == "arm64":
        variant = variant or "v8"
        versions = _ARM64_VERSIONS.get(variant)
        if versions is None:  # an unknown variant: only itself (containerd would match nothing)
            return out
        out = []
        for major, top in versions:
            for minor in range(top, -1, -1):
                v = f"v{major}.{minor}" if minor else f"v{major}"
                out.append(dataclasses.replace(p, variant=None if v == "v8" else v))
        arm_variant = "v8" if variant.startswith(("v8", "v9")) else variant
        out += _compatible(dataclasses.replace(p, architecture="arm", variant=arm_variant))
    return out


def _same(a: Platform, b: Platform) -> bool:
    return (a.os, a.architecture, a.variant or "") == (b.os, b.architecture, b.variant or "")


def platform_matches(want: Platform, have: Platform) -> bool:
    """Whether an image built for `have` runs where `want` is asked for (Docker's rules)."""
    h = have.normalized()
    return any(_same(c, h) for c in _compatible(want))


# -- descriptors, manifests, indexes ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Descriptor:
    """A typed, sized, content-addressed pointer (OCI descriptor)."""

    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict, hash=False)
    platform: Platform | None = None
    artifact_type: str | None = None
    data: bytes | None = None  # embedded content (OCI 1.1), already checked against digest

    def to_dict(self) -> dict[str, Any]:
        """The descriptor as OCI JSON (for writing an index.json or a manifest)."""
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            d["urls"] = list(self.urls)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.data is not None:
            d["data"] = base64.b64encode(self.data).decode()
        if self.platform is not None:
            d["platform"] = self.platform.to_dict()
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d

    def is_attestation(self) -> bool:
        """A buildx attestation manifest (provenance, SBOM) listed beside the images."""
        if ATTESTATION_ANNOTATION in self.annotations:
            return True
        p = self.platform
        return p is not None and p.os == "unknown" and p.architecture == "unknown"


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2): one config, the layers bottom-up."""

    config: Descriptor
    layers: list[Descriptor]
    media_type: str
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def check_image(self) -> None:
        """Refuse what parses as a manifest but is no runnable image: an artifact (Helm
        chart, signature), a Docker plugin, or layers bosun cannot unpack."""
        if self.config.media_type == DOCKER_PLUGIN_CONFIG:
            raise ManifestError("this is a Docker plugin, not an image")
        if self.config.media_type not in CONFIG_TYPES:
            raise ManifestError(f"not a container image: config media type is "
                                f"{_show(self.config.media_type)}")
        for i, layer in enumerate(self.layers):
            if layer.media_type not in LAYER_TYPES:
                raise ManifestError(f"unsupported layer media type {_show(layer.media_type)} "
                                    f"(layers[{i}])")


@dataclass(frozen=True)
class Index:
    """An image index / Docker manifest list: one manifest per platform."""

    manifests: list[Descriptor]
    media_type: str
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None


def _parse_platform_obj(obj: Mapping[str, Any], what: str, path: str) -> Platform:
    return Platform(
        os=_str(obj, "os", what, path, required=True, nonempty=True),
        architecture=_str(obj, "architecture", what, path, required=True, nonempty=True),
        variant=_str(obj, "variant", what, path) or None,
        os_version=_str(obj, "os.version", what, path) or None,
        os_features=tuple(_str_list(obj, "os.features", what, path) or ()),
    )


def _parse_descriptor(obj: Any, what: str, path: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise _fail(what, path, f"must be an object, not {_type_name(obj)}")
    media_type = _media_type(obj, "mediaType", what, path)
    digest = _digest(obj, "digest", what, path)
    size = _int(obj, "size", what, path, required=True)
    urls = _str_list(obj, "urls", what, path) or []
    for i, url in enumerate(urls):
        if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
            raise _fail(what, f"{_join(path, 'urls')}[{i}]", f"{_show(url)} is not an http(s) URL")
    platform_obj = _object(obj, "platform", what, path)
    platform = (None if platform_obj is None
                else _parse_platform_obj(platform_obj, what, _join(path, "platform")))
    data = None
    encoded = _opt_str(obj, "data", what, path)
    if encoded is not None:
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _fail(what, _join(path, "data"), "is not base64") from None
        if len(data) != size or not _digest_matches(data, digest):
            raise _fail(what, _join(path, "data"),
                        "does not match the descriptor's size and digest")
    return Descriptor(
        media_type=media_type or "",
        digest=digest,
        size=size,
        urls=tuple(urls),
        annotations=_str_map(obj, "annotations", what, path) or {},
        platform=platform,
        artifact_type=_media_type(obj, "artifactType", what, path, required=False),
        data=data,
    )


def _digest_matches(data: bytes, digest: str) -> bool:
    algorithm, _, hex_value = digest.partition(":")
    return hashlib.new(algorithm, data).hexdigest() == hex_value


def _descriptor_list(doc: Mapping[str, Any], key: str, what: str) -> list[Descriptor]:
    items = _array(doc, key, what, "", required=True)
    assert items is not None
    return [_parse_descriptor(item, what, f"{key}[{i}]") for i, item in enumerate(items)]


def _normalize_hint(hint: str | None) -> str | None:
    if not hint or not isinstance(hint, str):
        return None
    return hint.split(";", 1)[0].strip().lower() or None


def parse(data: bytes, media_type_hint: str | None = None) -> Manifest | Index:
    """Parse a manifest or index. `media_type_hint` is the Content-Type the registry sent
    (or the descriptor's media type); the document's own mediaType must agree with it. An
    OCI document may omit mediaType: the hint, or else its shape, decides."""
    hint = _normalize_hint(media_type_hint)
    if hint in SCHEMA1_TYPES:
        raise ManifestError(SCHEMA1_MESSAGE)
    doc = _load(data, "manifest", MAX_MANIFEST_SIZE)
    version = doc.get("schemaVersion")
    if version == 1 and not isinstance(version, bool):
        raise ManifestError(SCHEMA1_MESSAGE)
    if version is None:
        raise _fail("manifest", "schemaVersion", "is missing")
    if isinstance(version, bool) or version != 2 or not isinstance(version, int):
        raise _fail("manifest", "schemaVersion", f"must be 2, not {_show(version)}")
    declared = _media_type(doc, "mediaType", "manifest", "", required=False)
    if declared in SCHEMA1_TYPES:
        raise ManifestError(SCHEMA1_MESSAGE)
    known_hint = hint if hint in MANIFEST_TYPES | INDEX_TYPES else None
    if declared and known_hint and declared != known_hint:
        raise ManifestError(f"invalid manifest: mediaType {_show(declared)} does not match the "
                            f"content type {_show(known_hint)} it was served as")
    has_index_keys = "manifests" in doc
    has_manifest_keys = "config" in doc or "layers" in doc
    if has_index_keys and has_manifest_keys:  # OCI: ambiguous documents must be refused
        raise ManifestError("invalid manifest: it has both manifests and config/layers")
    media_type = declared or known_hint
    if media_type is None:
        if has_index_keys:
            media_type = OCI_INDEX
        elif has_manifest_keys:
            media_type = OCI_MANIFEST
        else:
            raise ManifestError("invalid manifest: neither an image manifest nor an index "
                                "(no config, layers or manifests)")
    if media_type in (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST) and not declared:
        raise _fail("manifest", "mediaType", f"is missing (a Docker schema 2 document must "
                                              f"declare {_show(media_type)})")
    if media_type in MANIFEST_TYPES:
        if has_index_keys:
            raise ManifestError(f"invalid manifest: a {media_type} has no manifests list")
        config_obj = doc.get("config")
        if config_obj is None:
            raise _fail("manifest", "config", "is missing")
        return Manifest(
            config=_parse_descriptor(config_obj, "manifest", "config"),
            layers=_descriptor_list(doc, "layers", "manifest"),
            media_type=media_type,
            annotations=_str_map(doc, "annotations", "manifest", "") or {},
            subject=_parse_subject(doc, "manifest"),
            artifact_type=_media_type(doc, "artifactType", "manifest", "", required=False),
        )
    if media_type in INDEX_TYPES:
        if has_manifest_keys:
            raise ManifestError(f"invalid manifest: a {media_type} has no config or layers")
        return Index(
            manifests=_descriptor_list(doc, "manifests", "index"),
            media_type=media_type,
            annotations=_str_map(doc, "annotations", "index", "") or {},
            subject=_parse_subject(doc, "index"),
            artifact_type=_media_type(doc, "artifactType", "index", "", required=False),
        )
    raise ManifestError(f"unsupported manifest media type {_show(media_type)}")


def _parse_subject(doc: Mapping[str, Any], what: str) -> Descriptor | None:
    subject = doc.get("subject")
    return None if subject is None else _parse_descriptor(subject, what, "subject")


def select(index: Index, platform: Platform | None = None) -> Descriptor:
    """The manifest Docker would pull from `index` for `platform` (default: this host):
    os and architecture must match, the variant exactly or by compatibility (arm64 with no
    variant is v8; an arm/v7 host takes v6 if that is all there is; amd64 takes 386), the
    closest wins and ties go to the first listed. Attestations and nested indexes are
    skipped; entries without a platform are a last resort, as in containerd."""
    want = platform or host_platform()
    ladder = _compatible(want)
    best: tuple[int, Descriptor] | None = None
    for desc in index.manifests:
        if desc.media_type not in MANIFEST_TYPES or desc.is_attestation():
            continue
        if desc.platform is None:
            rank = len(ladder)
        else:
            have = desc.platform.normalized()
            rank = next((i for i, c in enumerate(ladder) if _same(c, have)), -1)
            if rank < 0:
                continue
        if best is None or rank < best[0]:
            best = (rank, desc)
    if best is None:
        available = []
        for desc in index.manifests:
            name = str(desc.platform)
            if desc.platform is not None and not desc.is_attestation() and name not in available:
                available.append(name)
        listed = ", ".join(available) if available else "none"
        raise ManifestError(f"no matching manifest for {want} in the manifest list entries "
                            f"(available: {listed})")
    return best[1]


# -- time ------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})", re.ASCII)


@dataclass(frozen=True, slots=True)
class Timestamp:
    """An RFC 3339 time with Go's nanosecond precision and the offset it was written with
    (Python's datetime stops at microseconds; `docker inspect` prints all nine digits)."""

    seconds: int  # Unix time, whole seconds (floor)
    nanos: int = 0
    offset: int = 0  # seconds east of UTC

    @classmethod
    def parse(cls, text: str) -> Timestamp:
        m = _RFC3339.fullmatch(text)
        if m is None:
            raise ValueError(f"{_show(text)} is not an RFC 3339 time")
        year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
        frac, zone = m.group(7) or "", m.group(8)
        offset = 0
        if zone != "Z":
            oh, om = int(zone[1:3]), int(zone[4:6])
            if oh > 23 or om > 59:
                raise ValueError(f"{_show(text)} has an invalid time zone offset")
            offset = (oh * 3600 + om * 60) * (-1 if zone[0] == "-" else 1)
        try:
            local = _dt.datetime(year, month, day, hour, minute, second, tzinfo=_dt.UTC)
        except ValueError as e:
            raise ValueError(f"{_show(text)} is not a valid time ({e})") from None
        epoch = int((local - _EPOCH).total_seconds()) - offset
        return cls(epoch, int(frac[:9].ljust(9, "0")) if frac else 0, offset)

    @classmethod
    def from_unix(cls, t: float) -> Timestamp:
        seconds, nanos = divmod(round(t * 1_000_000_000), 1_000_000_000)
        return cls(seconds, nanos)

    def rfc3339nano(self) -> str:
        """Go's time.RFC3339Nano: fraction without trailing zeros, "Z" for UTC."""
        t = _EPOCH + _dt.timedelta(seconds=self.seconds + self.offset)
        # (not strftime: glibc's %Y does not pad years below 1000, and Go's zero time is year 1)
        text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        if self.nanos:
            text += "." + f"{self.nanos:09d}".rstrip("0")
        if self.offset == 0:
            return text + "Z"
        sign = "+" if self.offset > 0 else "-"
        hours, minutes = divmod(abs(self.offset) // 60, 60)
        return f"{text}{sign}{hours:02d}:{minutes:02d}"


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, what Docker prints for "never"


def _time(obj: Mapping[str, Any], key: str, what: str, path: str) -> Timestamp | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(what, _join(path, key), f"must be a string, not {_type_name(value)}")
    try:
        return Timestamp.parse(value)
    except ValueError as e:
        raise _fail(what, _join(path, key), str(e)) from None


# -- image config ----------------------------------------------------------------------------

# Container-only fields that the legacy builder wrote into image configs; Docker shows them in
# `image inspect` before API 1.50. Name -> Python type expected.
_LEGACY_FIELDS: Mapping[str, type] = {
    "Hostname": str, "Domainname": str, "AttachStdin": bool, "AttachStdout": bool,
    "AttachStderr": bool, "Tty": bool, "OpenStdin": bool, "StdinOnce": bool, "Image": str,
    "NetworkDisabled": bool, "MacAddress": str, "StopTimeout": int,
}
_HEALTH_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


@dataclass(frozen=True)
class RunConfig:
    """The image's defaults for containers (the config's "config" object). None means the
    field was absent or null, which Docker reports as null rather than []/{}."""

    user: str = ""
    exposed_ports: list[str] | None = None  # "80/tcp"
    env: list[str] | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    volumes: list[str] | None = None
    working_dir: str = ""
    labels: dict[str, str] | None = None
    stop_signal: str = ""
    healthcheck: dict[str, Any] | None = None  # Test, Interval/Timeout/... (ns), Retries
    on_build: list[str] | None = None
    shell: list[str] | None = None
    args_escaped: bool = False
    legacy: dict[str, Any] = field(default_factory=dict)  # see _LEGACY_FIELDS

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], what: str, path: str) -> RunConfig:
        legacy: dict[str, Any] = {}
        for name, kind in _LEGACY_FIELDS.items():
            if kind is str:
                value: Any = _str(obj, name, what, path)
            elif kind is bool:
                value = _bool(obj, name, what, path)
            elif obj.get(name) is not None:  # StopTimeout: a Go *int, so 0 is shown
                legacy[name] = _int(obj, name, what, path, minimum=-(1 << 63))
                continue
            else:
                continue
            if value:
                legacy[name] = value
        return cls(
            user=_str(obj, "User", what, path),
            exposed_ports=_key_set(obj, "ExposedPorts", what, path),
            env=_str_list(obj, "Env", what, path),
            entrypoint=_str_list(obj, "Entrypoint", what, path, string_ok=True),
            cmd=_str_list(obj, "Cmd", what, path, string_ok=True),
            volumes=_key_set(obj, "Volumes", what, path),
            working_dir=_str(obj, "WorkingDir", what, path),
            labels=_str_map(obj, "Labels", what, path),
            stop_signal=_str(obj, "StopSignal", what, path),
            healthcheck=_healthcheck(obj, what, path),
            on_build=_str_list(obj, "OnBuild", what, path),
            shell=_str_list(obj, "Shell", what, path, string_ok=True),
            args_escaped=_bool(obj, "ArgsEscaped", what, path),
            legacy=legacy,
        )

    def legacy_dict(self) -> dict[str, Any]:
        """Docker's container.Config shape (API < 1.50): every field present, in Go's order,
        the omitempty ones only when set."""
        g = self.legacy.get
        d: dict[str, Any] = {
            "Hostname": g("Hostname", ""), "Domainname": g("Domainname", ""), "User": self.user,
            "AttachStdin": g("AttachStdin", False), "AttachStdout": g("AttachStdout", False),
            "AttachStderr": g("AttachStderr", False),
        }
        if self.exposed_ports:
            d["ExposedPorts"] = _set_dict(self.exposed_ports)
        d.update({"Tty": g("Tty", False), "OpenStdin": g("OpenStdin", False),
                  "StdinOnce": g("StdinOnce", False), "Env": _copy(self.env),
                  "Cmd": _copy(self.cmd)})
        if self.healthcheck:
            d["Healthcheck"] = dict(self.healthcheck)
        if self.args_escaped:
            d["ArgsEscaped"] = True
        d.update({"Image": g("Image", ""), "Volumes": _set_dict(self.volumes),
                  "WorkingDir": self.working_dir, "Entrypoint": _copy(self.entrypoint)})
        if g("NetworkDisabled"):
            d["NetworkDisabled"] = True
        if g("MacAddress"):
            d["MacAddress"] = g("MacAddress")
        d.update({"OnBuild": _copy(self.on_build), "Labels": _copy(self.labels)})
        if self.stop_signal:
            d["StopSignal"] = self.stop_signal
        if g("StopTimeout") is not None:
            d["StopTimeout"] = g("StopTimeout")
        if self.shell:
            d["Shell"] = list(self.shell)
        return d

    def image_dict(self, backfill: bool) -> dict[str, Any]:
        """The image-spec shape (API >= 1.50): empty fields omitted; with `backfill` (API
        1.50-1.51) the fields that had no omitempty before come back as null/""."""
        d: dict[str, Any] = {}
        values = [("User", self.user), ("ExposedPorts", _set_dict(self.exposed_ports)),
                  ("Env", self.env), ("Entrypoint", self.entrypoint), ("Cmd", self.cmd),
                  ("Volumes", _set_dict(self.volumes)), ("WorkingDir", self.working_dir),
                  ("Labels", self.labels), ("StopSignal", self.stop_signal),
                  ("ArgsEscaped", self.args_escaped), ("Healthcheck", self.healthcheck),
                  ("OnBuild", self.on_build), ("Shell", self.shell)]
        for key, value in values:
            if value:
                d[key] = _copy(value)
        if backfill:
            for key in ("Cmd", "Entrypoint", "Env", "Labels", "OnBuild", "Volumes"):
                d.setdefault(key, None)
            for key in ("User", "WorkingDir"):
                d.setdefault(key, "")
        return d


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):  # Go writes map keys sorted
        return {k: value[k] for k in sorted(value)}
    return value


def _set_dict(keys: list[str] | None) -> dict[str, dict] | None:
    return None if keys is None else {k: {} for k in sorted(keys)}


def _healthcheck(obj: Mapping[str, Any], what: str, path: str) -> dict[str, Any] | None:
    hc = _object(obj, "Healthcheck", what, path)
    if hc is None:
        return None
    where = _join(path, "Healthcheck")
    out: dict[str, Any] = {}
    test = _str_list(hc, "Test", what, where)
    if test:
        out["Test"] = test
    for key in _HEALTH_DURATIONS:  # Go time.Duration: integer nanoseconds
        if value := _int(hc, key, what, where):
            out[key] = value
    if retries := _int(hc, "Retries", what, where):
        out["Retries"] = retries
    return out


@dataclass(frozen=True)
class History:
    """One step of the image's build history; `empty_layer` steps add no layer."""

    created: Timestamp | None = None
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False


DEFAULT_API_VERSION = "1.47"


def _api(version: str) -> tuple[int, int]:
    try:
        major, minor = version.split(".", 1)
        return int(major), int(minor)
    except (AttributeError, ValueError):
        raise ValueError(f"bad API version {_show(version)}") from None


@dataclass(frozen=True)
class ImageConfig:
    """An image configuration (OCI image config / Docker container image v1), everything
    Docker reads from it."""

    architecture: str = ""
    os: str = ""
    variant: str = ""
    os_version: str = ""
    os_features: list[str] = field(default_factory=list)
    created: Timestamp | None = None
    author: str = ""
    config: RunConfig = field(default_factory=RunConfig)
    rootfs_type: str = "layers"
    diff_ids: list[str] = field(default_factory=list)
    history: list[History] = field(default_factory=list)
    # Docker-only fields, written by `docker commit`/`import` and the legacy builder.
    comment: str = ""
    docker_version: str = ""
    container: str = ""
    container_config: RunConfig | None = None
    parent: str = ""

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        what = "image config"
        doc = _load(data, what, MAX_CONFIG_SIZE)
        rootfs = _object(doc, "rootfs", what, "", required=True)
        assert rootfs is not None
        rootfs_type = _str(rootfs, "type", what, "rootfs", required=True)
        if rootfs_type != "layers":
            raise _fail(what, "rootfs.type", f"must be \"layers\", not {_show(rootfs_type)}")
        diff_ids = _str_list(rootfs, "diff_ids", what, "rootfs") or []
        for i, d in enumerate(diff_ids):
            try:
                validate_digest(d)
            except InvalidReference as e:
                raise _fail(what, f"rootfs.diff_ids[{i}]",
                            f"{_show(d)} is not a valid digest ({e})") from None
        history = []
        for i, h in enumerate(_array(doc, "history", what, "") or []):
            where = f"history[{i}]"
            if not isinstance(h, dict):
                raise _fail(what, where, f"must be an object, not {_type_name(h)}")
            history.append(History(
                created=_time(h, "created", what, where),
                created_by=_str(h, "created_by", what, where),
                author=_str(h, "author", what, where),
                comment=_str(h, "comment", what, where),
                empty_layer=_bool(h, "empty_layer", what, where),
            ))
        run = _object(doc, "config", what, "")
        container_config = _object(doc, "container_config", what, "")
        parent = _str(doc, "parent", what, "")
        if parent:
            try:
                validate_digest(parent)
            except InvalidReference as e:
                raise _fail(what, "parent",
                            f"{_show(parent)} is not a valid digest ({e})") from None
        return cls(
            architecture=_str(doc, "architecture", what, ""),
            os=_str(doc, "os", what, ""),
            variant=_str(doc, "variant", what, ""),
            os_version=_str(doc, "os.version", what, ""),
            os_features=_str_list(doc, "os.features", what, "") or [],
            created=_time(doc, "created", what, ""),
            author=_str(doc, "author", what, ""),
            config=RunConfig.from_json(run, what, "config") if run is not None else RunConfig(),
            rootfs_type=rootfs_type,
            diff_ids=diff_ids,
            history=history,
            comment=_str(doc, "comment", what, ""),
            docker_version=_str(doc, "docker_version", what, ""),
            container=_str(doc, "container", what, ""),
            container_config=(RunConfig.from_json(container_config, what, "container_config")
                              if container_config is not None else None),
            parent=parent,
        )

    @property
    def platform(self) -> Platform:
        return Platform(self.os or "linux", self.architecture, self.variant or None,
                        self.os_version or None, tuple(self.os_features))

    def check_layers(self, manifest: Manifest) -> None:
        """The config's diff_ids must pair one-to-one with the manifest's layers (Docker's
        "layers from manifest don't match image configuration")."""
        if len(self.diff_ids) != len(manifest.layers):
            raise ManifestError(f"layers from manifest don't match image configuration: the "
                                f"manifest has {len(manifest.layers)} layers, the config "
                                f"{len(self.diff_ids)} diff_ids")

    def inspect_dict(self, image_id: str, repo_tags: Sequence[str] = (),
                     repo_digests: Sequence[str] = (), size: int = 0, *,
                     api_version: str = DEFAULT_API_VERSION, parent: str = "",
                     graph_driver: Mapping[str, Any] | None = None,
                     last_tag_time: float | str | None = None) -> dict[str, Any]:
        """`docker image inspect` / GET /images/{name}/json, shaped as Docker does for
        `api_version`: before 1.44 VirtualSize and a zero Created; before 1.45 Container and
        ContainerConfig; before 1.50 Config as container.Config (Hostname, AttachStdin, …);
        from 1.50 the image-spec Config, empty fields omitted (null-backfilled until 1.52).
        `last_tag_time`: Unix time or RFC 3339 string of the last tag, None if never."""
        api = _api(api_version)
        comment = self.comment or (self.history[-1].comment if self.history else "")
        created = self.created.rfc3339nano() if self.created else ""
        modern = api >= (1, 50)
        d: dict[str, Any] = {
            "Id": image_id,
            "RepoTags": list(repo_tags),
            "RepoDigests": list(repo_digests),
        }
        for key, value in (("Parent", parent or self.parent), ("Comment", comment)):
            if value or not modern:
                d[key] = value
        if created or api < (1, 44):
            d["Created"] = created or ZERO_TIME
        if api < (1, 45):
            d["Container"] = self.container
            d["ContainerConfig"] = (self.container_config or RunConfig()).legacy_dict()
        for key, value in (("DockerVersion", self.docker_version), ("Author", self.author)):
            if value or not modern:
                d[key] = value
        d["Config"] = self.config.image_dict(api < (1, 52)) if modern else self.config.legacy_dict()
        d["Architecture"] = self.architecture
        if self.variant:
            d["Variant"] = self.variant
        d["Os"] = self.os or "linux"
        if self.os_version:
            d["OsVersion"] = self.os_version
        d["Size"] = size
        if api < (1, 44):
            d["VirtualSize"] = size
        d["GraphDriver"] = (dict(graph_driver) if graph_driver is not None
                            else {"Data": None, "Name": "overlay2"})
        rootfs: dict[str, Any] = {"Type": self.rootfs_type}
        if self.diff_ids:
            rootfs["Layers"] = list(self.diff_ids)
        d["RootFS"] = rootfs
        if last_tag_time is None:
            tagged = ZERO_TIME
        elif isinstance(last_tag_time, str):
            tagged = last_tag_time
        else:
            tagged = Timestamp.from_unix(last_tag_time).rfc3339nano()
        d["Metadata"] = {"LastTagTime": tagged}
        return d

    def history_rows(self, image_id: str, tags: Sequence[str] = (),
                     layer_sizes: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """GET /images/{name}/history (what `docker history` prints), newest first.
        `layer_sizes[i]` is the unpacked size of diff_ids[i]. The newest row carries the
        image ID and its tags; the others are "<missing>", as for any pulled image."""
        rows: list[dict[str, Any]] = []
        layer = 0
        for h in self.history:
            size = 0
            if not h.empty_layer:
                if layer >= len(self.diff_ids):
                    raise ManifestError("too many non-empty layers in History section")
                if layer_sizes is not None and layer < len(layer_sizes):
                    size = layer_sizes[layer]
                layer += 1
            rows.append({
                "Comment": h.comment,
                "Created": h.created.seconds if h.created else 0,
                "CreatedBy": h.created_by,
                "Id": "<missing>",
                "Size": size,
                "Tags": None,
            })
        rows.reverse()
        if rows:
            rows[0]["Id"] = image_id
            rows[0]["Tags"] = list(tags) or None
        return rows
