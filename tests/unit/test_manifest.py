"""bosun.image.manifest: media types, strict parsing of hostile manifests and configs,
platform selection, Docker's inspect/history shapes, chain IDs — plus real OCI layouts
made by umoci and converted by skopeo (skipped when those tools are missing)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from bosun.image import manifest as M
from bosun.image.manifest import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    ManifestError,
    Platform,
    Timestamp,
    chain_ids,
    digest_of,
    host_platform,
    parse,
    parse_platform,
    platform_matches,
    select,
)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


CONFIG_DIGEST = sha(b"config")
LAYER1, LAYER2 = sha(b"layer1"), sha(b"layer2")


def enc(doc) -> bytes:
    return json.dumps(doc).encode()


def oci_manifest(**extra) -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": M.OCI_MANIFEST,
        "config": {"mediaType": M.OCI_CONFIG, "digest": CONFIG_DIGEST, "size": 1469},
        "layers": [
            {"mediaType": M.OCI_LAYER_GZIP, "digest": LAYER1, "size": 2_000_000},
            {"mediaType": M.OCI_LAYER_ZSTD, "digest": LAYER2, "size": 31},
        ],
        **extra,
    }


def docker_manifest() -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": M.DOCKER_MANIFEST,
        "config": {"mediaType": M.DOCKER_CONFIG, "size": 1469, "digest": CONFIG_DIGEST},
        "layers": [{"mediaType": M.DOCKER_LAYER_GZIP, "size": 100, "digest": LAYER1}],
    }


def entry(os_, arch, variant=None, media_type=M.OCI_MANIFEST, seed=None, **extra) -> dict:
    platform = {"architecture": arch, "os": os_}
    if variant:
        platform["variant"] = variant
    name = seed or f"{os_}/{arch}/{variant}"
    return {"mediaType": media_type, "digest": sha(name.encode()), "size": 500,
            "platform": platform, **extra}


def index(*entries, media_type=M.OCI_INDEX) -> Index:
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}
    result = parse(enc(doc))
    assert isinstance(result, Index)
    return result


def rejects(data, *fragments, hint=None) -> str:
    """parse() must raise ManifestError (and nothing else) naming every fragment."""
    with pytest.raises(ManifestError) as ei:
        parse(data if isinstance(data, (bytes, str)) else enc(data), hint)
    msg = str(ei.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# -- media types and well-formed documents ---------------------------------------------------

def test_oci_manifest():
    doc = oci_manifest(annotations={"org.opencontainers.image.title": "x"})
    m = parse(enc(doc), M.OCI_MANIFEST)
    assert isinstance(m, Manifest)
    assert m.media_type == M.OCI_MANIFEST
    assert m.config == Descriptor(M.OCI_CONFIG, CONFIG_DIGEST, 1469)
    assert [(layer.media_type, layer.digest, layer.size) for layer in m.layers] == [
        (M.OCI_LAYER_GZIP, LAYER1, 2_000_000), (M.OCI_LAYER_ZSTD, LAYER2, 31)]
    assert m.annotations == {"org.opencontainers.image.title": "x"}
    m.check_image()


def test_oci_manifest_without_media_type_is_typed_by_hint_or_shape():
    doc = oci_manifest()
    del doc["mediaType"]
    assert parse(enc(doc), M.OCI_MANIFEST).media_type == M.OCI_MANIFEST
    assert parse(enc(doc)).media_type == M.OCI_MANIFEST
    assert parse(enc(doc), "application/json; charset=utf-8").media_type == M.OCI_MANIFEST
    idx = {"schemaVersion": 2, "manifests": []}
    assert parse(enc(idx)).media_type == M.OCI_INDEX


def test_docker_schema2_manifest():
    m = parse(enc(docker_manifest()), M.DOCKER_MANIFEST + "; charset=utf-8")
    assert isinstance(m, Manifest)
    assert m.media_type == M.DOCKER_MANIFEST
    assert m.config.media_type == M.DOCKER_CONFIG
    assert m.layers[0].media_type == M.DOCKER_LAYER_GZIP
    m.check_image()


def test_docker_manifest_list_and_oci_index():
    for media_type in (M.DOCKER_MANIFEST_LIST, M.OCI_INDEX):
        child = M.DOCKER_MANIFEST if media_type == M.DOCKER_MANIFEST_LIST else M.OCI_MANIFEST
        idx = index(entry("linux", "amd64", media_type=child),
                    entry("linux", "arm", "v7", media_type=child), media_type=media_type)
        assert idx.media_type == media_type
        assert [str(d.platform) for d in idx.manifests] == ["linux/amd64", "linux/arm/v7"]
        assert idx.manifests[1].platform == Platform("linux", "arm", "v7")


def test_empty_layers_are_allowed():  # `umoci new` makes exactly this
    doc = oci_manifest(layers=[])
    assert parse(enc(doc)).layers == []


def test_descriptor_optional_fields():
    data = b'{"hello": 1}'
    layer = {"mediaType": M.DOCKER_FOREIGN_LAYER_GZIP, "digest": sha(data), "size": len(data),
             "urls": ["https://mcr.microsoft.com/blob/x"], "annotations": {"a": "b"},
             "data": base64.b64encode(data).decode(), "artifactType": "application/x.y+json"}
    m = parse(enc(oci_manifest(layers=[layer])))
    d = m.layers[0]
    assert d.urls == ("https://mcr.microsoft.com/blob/x",)
    assert d.annotations == {"a": "b"}
    assert d.data == data
    assert d.artifact_type == "application/x.y+json"
    assert d.to_dict() == layer


@pytest.mark.parametrize("media_type,compression,foreign", [
    (M.OCI_LAYER, None, False),
    (M.OCI_LAYER_GZIP, "gzip", False),
    (M.OCI_LAYER_ZSTD, "zstd", False),
    (M.OCI_LAYER_NONDIST, None, True),
    (M.OCI_LAYER_NONDIST_GZIP, "gzip", True),
    (M.OCI_LAYER_NONDIST_ZSTD, "zstd", True),
    (M.DOCKER_LAYER, None, False),
    (M.DOCKER_LAYER_GZIP, "gzip", False),
    (M.DOCKER_LAYER_ZSTD, "zstd", False),
    (M.DOCKER_FOREIGN_LAYER, None, True),
    (M.DOCKER_FOREIGN_LAYER_GZIP, "gzip", True),
])
def test_layer_media_types(media_type, compression, foreign):
    assert M.layer_compression(media_type) == compression
    assert M.is_foreign_layer(media_type) is foreign
    doc = oci_manifest(layers=[{"mediaType": media_type, "digest": LAYER1, "size": 1}])
    parse(enc(doc)).check_image()


def test_media_type_strings_are_the_registered_ones():
    assert M.OCI_LAYER_GZIP == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert M.OCI_LAYER_ZSTD == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert M.DOCKER_LAYER_GZIP == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert M.DOCKER_FOREIGN_LAYER_GZIP == \
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    assert M.DOCKER_MANIFEST_LIST == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert M.OCI_INDEX == "application/vnd.oci.image.index.v1+json"
    assert M.DOCKER_SCHEMA1 not in M.ACCEPTED_MANIFEST_TYPES


@pytest.mark.parametrize("media_type", ["application/vnd.oci.image.layer.v1.tar+bzip2",
                                        "application/octet-stream", "", None])
def test_unknown_layer_types(media_type):
    with pytest.raises(ManifestError, match="unsupported layer media type"):
        M.layer_compression(media_type)  # type: ignore[arg-type]
    assert M.is_foreign_layer(media_type) is False  # type: ignore[arg-type]


def test_check_image_refuses_artifacts_plugins_and_unknown_layers():
    helm = oci_manifest(config={"mediaType": "application/vnd.cncf.helm.config.v1+json",
                                "digest": CONFIG_DIGEST, "size": 1})
    with pytest.raises(ManifestError, match="not a container image.*helm"):
        parse(enc(helm)).check_image()
    plugin = docker_manifest()
    plugin["config"]["mediaType"] = M.DOCKER_PLUGIN_CONFIG
    with pytest.raises(ManifestError, match="Docker plugin"):
        parse(enc(plugin)).check_image()
    odd = oci_manifest(layers=[{"mediaType": "application/x-tar+lz4", "digest": LAYER1, "size": 1}])
    with pytest.raises(ManifestError, match=r"unsupported layer media type.*layers\[0\]"):
        parse(enc(odd)).check_image()


# -- schema 1 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("hint", [M.DOCKER_SCHEMA1, M.DOCKER_SCHEMA1_SIGNED,
                                  M.DOCKER_SCHEMA1_SIGNED + "; charset=utf-8"])
def test_schema1_refused_by_content_type(hint):
    assert rejects(enc(docker_manifest()), hint=hint) == M.SCHEMA1_MESSAGE


def test_schema1_refused_by_body():
    body = {"schemaVersion": 1, "name": "library/busybox", "tag": "1", "architecture": "amd64",
            "fsLayers": [{"blobSum": LAYER1}], "history": [{"v1Compatibility": "{}"}],
            "signatures": []}
    assert rejects(body) == M.SCHEMA1_MESSAGE
    assert rejects(body, hint="application/json") == M.SCHEMA1_MESSAGE
    assert rejects({"schemaVersion": 2, "mediaType": M.DOCKER_SCHEMA1}) == M.SCHEMA1_MESSAGE
    assert "Schema 1" in M.SCHEMA1_MESSAGE and "bosun does not support" in M.SCHEMA1_MESSAGE


# -- malformed input: always a ManifestError that says what and where ------------------------

def _without(doc, *path):
    doc = copy.deepcopy(doc)
    target = doc
    for p in path[:-1]:
        target = target[p]
    del target[path[-1]]
    return doc


def _with(doc, value, *path):
    doc = copy.deepcopy(doc)
    target = doc
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    return doc


BASE = oci_manifest()


@pytest.mark.parametrize("doc,fragments", [
    (_without(BASE, "schemaVersion"), ["schemaVersion is missing"]),
    (_with(BASE, 3, "schemaVersion"), ["schemaVersion must be 2, not 3"]),
    (_with(BASE, "2", "schemaVersion"), ["schemaVersion must be 2"]),
    (_with(BASE, True, "schemaVersion"), ["schemaVersion must be 2, not true"]),
    (_with(BASE, 2.0, "schemaVersion"), ["schemaVersion must be 2"]),
    (_without(BASE, "config"), ["config is missing"]),
    (_with(BASE, None, "config"), ["config is missing"]),
    (_with(BASE, [], "config"), ["config must be an object, not an array"]),
    (_without(BASE, "layers"), ["layers is missing"]),
    (_with(BASE, {}, "layers"), ["layers must be an array, not an object"]),
    (_with(BASE, ["x"], "layers"), ["layers[0] must be an object, not a string"]),
    (_without(BASE, "config", "digest"), ["config.digest is missing"]),
    (_without(BASE, "config", "size"), ["config.size is missing"]),
    (_without(BASE, "layers", 1, "mediaType"), ["layers[1].mediaType is missing"]),
    (_with(BASE, "not a type", "layers", 0, "mediaType"),
     ["layers[0].mediaType", "not a media type"]),
    (_with(BASE, 5, "layers", 0, "mediaType"),
     ["layers[0].mediaType must be a string, not a number"]),
    (_with(BASE, -1, "layers", 0, "size"), ["layers[0].size is out of range (-1)"]),
    (_with(BASE, 1 << 63, "layers", 0, "size"), ["layers[0].size is out of range"]),
    (_with(BASE, 1.5, "layers", 0, "size"), ["layers[0].size must be an integer, not a number"]),
    (_with(BASE, 10.0, "layers", 0, "size"), ["layers[0].size must be an integer"]),
    (_with(BASE, "10", "layers", 0, "size"), ["layers[0].size must be an integer, not a string"]),
    (_with(BASE, True, "layers", 0, "size"), ["layers[0].size must be an integer, not a boolean"]),
    (_with(BASE, "sha256:" + "A" * 64, "config", "digest"), ["config.digest", "not a valid digest",
                                                             "invalid checksum digest format"]),
    (_with(BASE, "sha256:abc", "config", "digest"), ["invalid checksum digest length"]),
    (_with(BASE, "md5:" + "a" * 32, "config", "digest"), ["unsupported digest algorithm"]),
    (_with(BASE, "sha256:../../../../etc/shadow" + "a" * 42, "layers", 1, "digest"),
     ["layers[1].digest", "not a valid digest"]),
    (_with(BASE, "sha256" + "a" * 64, "config", "digest"), ["invalid checksum digest format"]),
    (_with(BASE, 12, "config", "digest"), ["config.digest must be a string, not a number"]),
    (_with(BASE, "file:///etc/passwd", "layers", 0, "urls"), ["layers[0].urls must be an array"]),
    (_with(BASE, ["file:///etc/passwd"], "layers", 0, "urls"),
     ["layers[0].urls[0]", "http(s) URL"]),
    (_with(BASE, [7], "layers", 0, "urls"), ["layers[0].urls[0] must be a string"]),
    (_with(BASE, {"a": 1}, "layers", 0, "annotations"),
     ["layers[0].annotations['a'] must be a string"]),
    (_with(BASE, ["a"], "annotations"), ["annotations must be an object, not an array"]),
    (_with(BASE, {"os": "linux"}, "config", "platform"),
     ["config.platform.architecture is missing"]),
    (_with(BASE, {"os": "", "architecture": "amd64"}, "config", "platform"),
     ["config.platform.os must not be empty"]),
    (_with(BASE, "!!!", "layers", 0, "data"), ["layers[0].data is not base64"]),
    (_with(BASE, base64.b64encode(b"other").decode(), "layers", 0, "data"),
     ["layers[0].data does not match"]),
    (_with(BASE, "not/a type", "artifactType"), ["artifactType", "not a media type"]),
    (_with(BASE, [], "manifests"), ["both manifests and config/layers"]),
    (_with(BASE, "application/vnd.example.thing.v1+json", "mediaType"),
     ["unsupported manifest media type", "vnd.example.thing"]),
])
def test_malformed_manifest(doc, fragments):
    config = doc.get("config")
    docker = isinstance(config, dict) and config.get("mediaType") == M.DOCKER_CONFIG
    hint = M.DOCKER_MANIFEST if docker else None
    msg = rejects(doc, *fragments, hint=hint)
    assert msg.startswith(("invalid manifest", "unsupported manifest media type"))
    assert "\n" not in msg


def test_messages_quote_hostile_values_briefly():
    msg = rejects(_with(BASE, "sha256:" + "x" * 1_000_000, "config", "digest"), "config.digest",
                  "invalid checksum digest length")
    assert len(msg) < 300


def test_docker_manifest_must_declare_its_media_type():
    doc = _without(docker_manifest(), "mediaType")
    rejects(doc, "mediaType is missing", M.DOCKER_MANIFEST, hint=M.DOCKER_MANIFEST)


def test_media_type_must_match_the_content_type():
    rejects(oci_manifest(), "does not match the content type", hint=M.DOCKER_MANIFEST)
    rejects(oci_manifest(), "does not match", hint=M.OCI_INDEX)


def test_index_errors():
    doc = {"schemaVersion": 2, "mediaType": M.OCI_INDEX}
    rejects(doc, "invalid index: manifests is missing")
    rejects(dict(doc, manifests=[{"mediaType": M.OCI_MANIFEST, "digest": LAYER1}]),
            "manifests[0].size is missing")
    rejects(dict(doc, manifests=[dict(entry("linux", "amd64"), platform="linux/amd64")]),
            "manifests[0].platform must be an object, not a string")
    rejects(dict(doc, mediaType=M.OCI_MANIFEST, manifests=[]), "has no manifests list")
    rejects({"schemaVersion": 2, "mediaType": M.OCI_INDEX, "layers": []}, "has no config or layers")
    rejects({"schemaVersion": 2}, "neither an image manifest nor an index")


@pytest.mark.parametrize("data,fragment", [
    (b"", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    ("\ufeff{}".encode(), "not valid JSON"),  # a BOM, which Go refuses too
    (b"[]", "expected a JSON object, got an array"),
    (b'"manifest"', "expected a JSON object, got a string"),
    (b"null", "expected a JSON object, got null"),
    (b"42", "expected a JSON object, got a number"),
    (b'{"schemaVersion": NaN}', "not valid JSON"),
    (b'{"schemaVersion": Infinity}', "not valid JSON"),
    (b'{"schemaVersion": 2, "size": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "not valid JSON"),
    (b" " * (M.MAX_MANIFEST_SIZE + 1), "more than the 4194304 allowed"),
], ids=["empty", "truncated", "utf16", "bom", "array", "string", "null", "number", "nan",
        "infinity", "huge-int", "deep-array", "deep-object", "too-big"])
def test_garbage_input(data, fragment):
    rejects(data, fragment)


def test_not_bytes():
    with pytest.raises(ManifestError, match="expected bytes"):
        parse(12345)  # type: ignore[arg-type]
    assert parse(json.dumps(oci_manifest())).media_type == M.OCI_MANIFEST  # str is accepted


def test_lone_surrogates_become_replacement_characters():
    doc = oci_manifest(annotations={"k": "\ud800x"})
    m = parse(enc(doc))  # json.dumps escapes it as \ud800
    assert m.annotations == {"k": "\ufffdx"}
    m.annotations["k"].encode("utf-8")


def test_random_mutations_only_ever_raise_manifest_error():
    """Take valid documents, break them at random (types swapped, keys dropped, garbage
    spliced in): parse() and ImageConfig.parse() return or raise ManifestError, nothing else."""
    rng = random.Random(20240611)
    junk = [None, True, -1, 1.5, 1 << 70, "", "x", "sha256:" + "z" * 64, [], [1, None], {},
            {"a": [1]}, "\ud800"]
    docs = [oci_manifest(), docker_manifest(),
            {"schemaVersion": 2, "mediaType": M.OCI_INDEX,
             "manifests": [entry("linux", "amd64"), entry("linux", "arm64", "v8")]},
            FULL_CONFIG]

    def paths(node, prefix=()):
        yield prefix
        if isinstance(node, dict):
            for k, v in node.items():
                yield from paths(v, prefix + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from paths(v, prefix + (i,))

    outcomes = {"ok": 0, "error": 0}
    for _ in range(3000):
        doc = copy.deepcopy(rng.choice(docs))
        for _ in range(rng.randint(1, 3)):
            path = rng.choice([p for p in paths(doc) if p])
            parent = doc
            for p in path[:-1]:
                parent = parent[p]
            if rng.random() < 0.25 and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = copy.deepcopy(rng.choice(junk))
        data = json.dumps(doc).encode()
        if rng.random() < 0.1:  # and sometimes corrupt the bytes themselves
            cut = rng.randrange(len(data))
            data = data[:cut] + bytes([rng.randrange(256)]) + data[cut + 1:]
        for fn in (parse, ImageConfig.parse):
            try:
                fn(data)
                outcomes["ok"] += 1
            except ManifestError:
                outcomes["error"] += 1
    assert outcomes["ok"] > 100 and outcomes["error"] > 1000  # both paths were exercised


# -- platforms -------------------------------------------------------------------------------

@pytest.mark.parametrize("machine,expected", [
    ("x86_64", Platform("linux", "amd64")),
    ("aarch64", Platform("linux", "arm64", "v8")),
    ("armv7l", Platform("linux", "arm", "v7")),
    ("armv6l", Platform("linux", "arm", "v6")),
    ("i686", Platform("linux", "386")),
    ("ppc64le", Platform("linux", "ppc64le")),
    ("s390x", Platform("linux", "s390x")),
    ("riscv64", Platform("linux", "riscv64")),
])
def test_host_platform(machine, expected):
    assert host_platform(machine) == expected


def test_host_platform_of_this_machine():
    p = host_platform()
    assert p.os == "linux" and p.architecture and p.architecture != "x86_64"


AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")


@pytest.mark.parametrize("spec,expected", [
    ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
    ("linux/arm64", Platform("linux", "arm64")),
    ("linux/aarch64", Platform("linux", "arm64")),
    ("linux/arm64/8", Platform("linux", "arm64", "v8")),
    ("linux/amd64", Platform("linux", "amd64")),
    ("linux/x86_64", Platform("linux", "amd64")),
    ("Linux/AMD64", Platform("linux", "amd64")),
    ("linux/arm", Platform("linux", "arm")),  # v7 is implied and left out
    ("linux/arm/v7", Platform("linux", "arm", "v7")),
    ("linux/arm/6", Platform("linux", "arm", "v6")),
    ("linux/armhf", Platform("linux", "arm")),
    ("linux/i386", Platform("linux", "386")),
    ("linux", Platform("linux", "amd64")),  # the host's architecture (amd64 here)
    ("arm64", Platform("linux", "arm64")),  # the host's OS
    ("macos/arm64", Platform("darwin", "arm64")),
    ("windows(10.0.17763)/amd64", Platform("windows", "amd64", os_version="10.0.17763")),
])
def test_parse_platform(spec, expected):
    assert parse_platform(spec, host=AMD64) == expected


def test_parse_platform_lone_os_on_an_arm_host_keeps_a_non_v7_variant():
    armv6 = Platform("linux", "arm", "v6")
    assert parse_platform("linux", host=armv6) == armv6
    assert parse_platform("linux", host=Platform("linux", "arm", "v7")) == Platform("linux", "arm")
    assert parse_platform("linux", host=ARM64) == Platform("linux", "arm64")


@pytest.mark.parametrize("spec,fragment", [
    ("linux/amd64/v2/x", "cannot parse platform specifier"),
    ("linux/amd64/v2/x/y", "invalid component"),
    ("linux/*", "wildcards not yet supported"),
    ("linux/amd 64", "invalid component"),
    ("linux/", "invalid component"),
    ("", "invalid OS component"),
    ("(x)/amd64", "invalid OS component"),
    ("frobnix", "unknown operating system or architecture"),
])
def test_parse_platform_errors(spec, fragment):
    with pytest.raises(ManifestError, match=fragment.replace("*", r"\*")):
        parse_platform(spec, host=AMD64)


def test_platform_str_and_dict():
    p = Platform("windows", "amd64", None, "10.0.17763.1", ("win32k",))
    assert str(p) == "windows/amd64"
    assert p.to_dict() == {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1",
                           "os.features": ["win32k"]}
    assert str(Platform("linux", "arm64", "v8")) == "linux/arm64/v8"


@pytest.mark.parametrize("want,have,ok", [
    (ARM64, Platform("linux", "arm64"), True),            # missing variant is v8
    (Platform("linux", "arm64"), Platform("linux", "arm64", "v8"), True),
    (ARM64, Platform("linux", "aarch64"), True),
    (ARM64, Platform("linux", "arm", "v7"), True),         # arm64 runs 32-bit arm
    (ARM64, Platform("linux", "arm64", "v9"), False),
    (Platform("linux", "arm64", "v9"), ARM64, True),
    (Platform("linux", "arm", "v7"), Platform("linux", "arm", "v6"), True),
    (Platform("linux", "arm", "v6"), Platform("linux", "arm", "v7"), False),
    (Platform("linux", "arm"), Platform("linux", "arm", "v7"), True),
    (AMD64, Platform("linux", "386"), True),
    (AMD64, Platform("linux", "x86_64"), True),
    (AMD64, Platform("linux", "amd64", "v2"), False),
    (Platform("linux", "amd64", "v3"), Platform("linux", "amd64", "v2"), True),
    (Platform("linux", "amd64", "v3"), AMD64, True),        # v1 is the plain amd64
    (AMD64, Platform("windows", "amd64"), False),
    (AMD64, Platform("linux", "arm64"), False),
])
def test_platform_matches(want, have, ok):
    assert platform_matches(want, have) is ok


def test_absurd_variants_are_cheap():
    import time

    start = time.perf_counter()
    assert not platform_matches(parse_platform("linux/amd64/v99999999999"), AMD64)
    assert not platform_matches(parse_platform("linux/arm/v99999999999"), Platform("linux", "arm"))
    assert platform_matches(parse_platform("linux/arm/v9"), Platform("linux", "arm", "v5"))
    assert time.perf_counter() - start < 1


def test_select_exact_match():
    idx = index(entry("linux", "arm64", "v8"), entry("linux", "amd64"), entry("linux", "arm", "v7"))
    assert select(idx, AMD64) is idx.manifests[1]
    assert select(idx, ARM64) is idx.manifests[0]
    assert select(idx, Platform("linux", "arm", "v7")) is idx.manifests[2]


def test_select_arm64_without_variant_matches_v8_and_back():
    idx = index(entry("linux", "amd64"), entry("linux", "arm64"))
    assert select(idx, ARM64) is idx.manifests[1]
    idx = index(entry("linux", "arm64", "v8"))
    assert select(idx, Platform("linux", "arm64")) is idx.manifests[0]


def test_select_prefers_the_closest_variant_whatever_the_order():
    v6, v7 = entry("linux", "arm", "v6"), entry("linux", "arm", "v7")
    armv7 = Platform("linux", "arm", "v7")
    assert select(index(v6, v7), armv7).platform.variant == "v7"
    assert select(index(v7, v6), armv7).platform.variant == "v7"
    assert select(index(v6), armv7).platform.variant == "v6"  # an older arm still runs
    # arm64 falls back to 32-bit arm only when there is no arm64 image
    assert select(index(v7, entry("linux", "arm64", "v8")), ARM64).platform.architecture == "arm64"
    assert select(index(v6, v7), ARM64).platform.variant == "v7"
    both = index(entry("linux", "386"), entry("linux", "amd64"))
    assert select(both, AMD64).platform.architecture == "amd64"
    assert select(index(entry("linux", "386")), AMD64).platform.architecture == "386"


def test_select_ties_go_to_the_first_listed():
    a = entry("linux", "amd64", seed="first")
    b = entry("linux", "amd64", seed="second")
    assert select(index(a, b), AMD64).digest == sha(b"first")


def test_select_skips_attestations_and_nested_indexes():
    attestation = entry("unknown", "unknown", seed="att",
                        annotations={"vnd.docker.reference.type": "attestation-manifest",
                                     "vnd.docker.reference.digest": sha(b"x")})
    annotated = entry("linux", "amd64", seed="sbom",
                      annotations={"vnd.docker.reference.type": "attestation-manifest"})
    nested = entry("linux", "amd64", media_type=M.OCI_INDEX, seed="nested")
    real = entry("linux", "amd64", seed="real")
    idx = index(attestation, annotated, nested, real)
    assert select(idx, AMD64).digest == sha(b"real")
    assert idx.manifests[0].is_attestation() and idx.manifests[1].is_attestation()
    assert not idx.manifests[3].is_attestation()


def test_select_uses_a_platformless_manifest_as_last_resort():
    bare = {"mediaType": M.OCI_MANIFEST, "digest": sha(b"bare"), "size": 10}
    assert select(index(bare), ARM64).digest == sha(b"bare")
    chosen = select(index(bare, entry("linux", "arm64")), ARM64)
    assert chosen.platform == Platform("linux", "arm64")


def test_select_error_lists_available_platforms():
    idx = index(entry("linux", "amd64"), entry("linux", "arm", "v7"),
                entry("linux", "amd64", seed="dup"), entry("unknown", "unknown", seed="att"),
                entry("windows", "amd64"))
    with pytest.raises(ManifestError) as ei:
        select(idx, Platform("linux", "s390x"))
    assert str(ei.value) == ("no matching manifest for linux/s390x in the manifest list entries "
                             "(available: linux/amd64, linux/arm/v7, windows/amd64)")
    with pytest.raises(ManifestError, match=r"for linux/arm64/v8 .*\(available: none\)"):
        select(index(), ARM64)


def test_select_defaults_to_the_host():
    host = host_platform()
    idx = index(entry("plan9", "mips"), entry(host.os, host.architecture, host.variant))
    assert select(idx) is idx.manifests[1]


# -- image config ----------------------------------------------------------------------------

DIFF1, DIFF2 = sha(b"diff1"), sha(b"diff2")
FULL_CONFIG = {
    "architecture": "amd64", "os": "linux", "created": "2024-03-05T10:11:12.1234567+02:00",
    "author": "Jane <j@x>", "docker_version": "24.0.7", "comment": "",
    "container": "abc123",
    "container_config": {"Hostname": "abc123", "Cmd": ["/bin/sh", "-c", "#(nop) CMD"],
                         "Image": "sha256:" + "1" * 64},
    "config": {
        "User": "1000:1000", "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Env": ["PATH=/bin", "A="], "Entrypoint": ["/entry"], "Cmd": "run me",
        "Volumes": {"/data": {}}, "WorkingDir": "/w", "Labels": {"b": "", "a": "1"},
        "StopSignal": "SIGQUIT", "OnBuild": ["RUN x"], "Shell": ["/bin/bash", "-c"],
        "ArgsEscaped": True, "Hostname": "h1", "Image": "sha256:" + "2" * 64, "StopTimeout": 7,
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30_000_000_000, "Retries": 3,
                        "StartPeriod": 0},
    },
    "rootfs": {"type": "layers", "diff_ids": [DIFF1, DIFF2]},
    "history": [
        {"created": "2024-03-05T08:00:00Z", "created_by": "ADD a.txt", "comment": "first"},
        {"created": "2024-03-05T08:00:01.5Z", "created_by": "ENV A=", "empty_layer": True,
         "author": "bob"},
        {"created": "2024-03-05T08:00:02Z", "created_by": "ADD b.txt", "comment": "last"},
        {"created_by": "CMD", "empty_layer": True},
    ],
}
IMAGE_ID = digest_of(enc(FULL_CONFIG))


def test_config_fields():
    c = ImageConfig.parse(enc(FULL_CONFIG))
    assert (c.architecture, c.os, c.author, c.docker_version) == \
        ("amd64", "linux", "Jane <j@x>", "24.0.7")
    assert c.created == Timestamp(1709626272, 123456700, 7200)
    assert c.diff_ids == [DIFF1, DIFF2]
    r = c.config
    assert r.user == "1000:1000"
    assert r.exposed_ports == ["80/tcp", "53/udp"]
    assert r.env == ["PATH=/bin", "A="]
    assert r.cmd == ["run me"]  # Docker's StrSlice: a string is a one-element list
    assert r.entrypoint == ["/entry"]
    assert r.volumes == ["/data"]
    assert r.labels == {"b": "", "a": "1"}
    assert r.healthcheck == {"Test": ["CMD", "true"], "Interval": 30_000_000_000, "Retries": 3}
    assert (r.stop_signal, r.on_build, r.shell, r.args_escaped) == ("SIGQUIT", ["RUN x"],
                                                                    ["/bin/bash", "-c"], True)
    assert r.legacy == {"Hostname": "h1", "Image": "sha256:" + "2" * 64, "StopTimeout": 7}
    assert [h.empty_layer for h in c.history] == [False, True, False, True]
    assert c.history[1].author == "bob" and c.history[3].created is None
    assert c.platform == Platform("linux", "amd64")


def test_minimal_config_and_nulls_are_zero_values():
    c = ImageConfig.parse(b'{"rootfs": {"type": "layers", "diff_ids": null}, "history": null, '
                          b'"config": {"Env": null, "Cmd": null, "Labels": {"a": null}, '
                          b'"Env2": 5, "User": null}}')
    assert c.diff_ids == [] and c.history == []
    assert c.config.env is None and c.config.cmd is None and c.config.user == ""
    assert c.config.labels == {"a": ""}
    assert c.os == "" and c.platform.os == "linux"


@pytest.mark.parametrize("mutate,fragment", [
    (lambda c: c.pop("rootfs"), "rootfs is missing"),
    (lambda c: c.__setitem__("rootfs", []), "rootfs must be an object"),
    (lambda c: c["rootfs"].__setitem__("type", "overlay"), 'rootfs.type must be "layers"'),
    (lambda c: c["rootfs"].pop("type"), "rootfs.type is missing"),
    (lambda c: c["rootfs"].__setitem__("diff_ids", ["sha256:zz"]), "rootfs.diff_ids[0]"),
    (lambda c: c["rootfs"].__setitem__("diff_ids", "sha256:x"), "rootfs.diff_ids must be an array"),
    (lambda c: c.__setitem__("created", "yesterday"),
     "created 'yesterday' is not an RFC 3339 time"),
    (lambda c: c.__setitem__("created", ""), "is not an RFC 3339 time"),
    (lambda c: c.__setitem__("created", 1700000000), "created must be a string"),
    (lambda c: c.__setitem__("created", "2024-13-01T00:00:00Z"), "is not a valid time"),
    (lambda c: c.__setitem__("created", "2024-01-01T00:00:00+25:00"), "invalid time zone offset"),
    (lambda c: c.__setitem__("architecture", ["amd64"]), "architecture must be a string"),
    (lambda c: c.__setitem__("config", "x"), "config must be an object"),
    (lambda c: c["config"].__setitem__("Env", "A=1"), "config.Env must be an array"),
    (lambda c: c["config"].__setitem__("Env", ["A=1", 2]), "config.Env[1] must be a string"),
    (lambda c: c["config"].__setitem__("Cmd", 5), "config.Cmd must be an array"),
    (lambda c: c["config"].__setitem__("Labels", {"a": 1}), "config.Labels['a'] must be a string"),
    (lambda c: c["config"].__setitem__("ExposedPorts", ["80/tcp"]),
     "config.ExposedPorts must be an object"),
    (lambda c: c["config"].__setitem__("Volumes", {"/d": "yes"}),
     "config.Volumes['/d'] must be an object"),
    (lambda c: c["config"]["Healthcheck"].__setitem__("Interval", "30s"),
     "config.Healthcheck.Interval must be an integer"),
    (lambda c: c["config"].__setitem__("ArgsEscaped", "true"),
     "config.ArgsEscaped must be true or false"),
    (lambda c: c["config"].__setitem__("Tty", 1), "config.Tty must be true or false"),
    (lambda c: c.__setitem__("history", {}), "history must be an array"),
    (lambda c: c["history"].append("x"), "history[4] must be an object"),
    (lambda c: c["history"][0].__setitem__("empty_layer", "yes"),
     "history[0].empty_layer must be true or false"),
    (lambda c: c["history"][0].__setitem__("created", "2024"), "history[0].created"),
    (lambda c: c.__setitem__("parent", "abc"), "parent 'abc' is not a valid digest"),
])
def test_malformed_config(mutate, fragment):
    doc = copy.deepcopy(FULL_CONFIG)
    mutate(doc)
    with pytest.raises(ManifestError) as ei:
        ImageConfig.parse(enc(doc))
    assert fragment in str(ei.value)
    assert str(ei.value).startswith("invalid image config")


def test_config_size_limit_and_garbage():
    with pytest.raises(ManifestError, match="more than the 16777216 allowed"):
        ImageConfig.parse(b" " * (M.MAX_CONFIG_SIZE + 1))
    with pytest.raises(ManifestError, match="not UTF-8 text"):
        ImageConfig.parse(b"\x1f\x8b\x08\x00")  # a gzipped config
    with pytest.raises(ManifestError, match="not valid JSON"):
        ImageConfig.parse(b"\x1f{}")


def test_check_layers():
    c = ImageConfig.parse(enc(FULL_CONFIG))
    c.check_layers(parse(enc(oci_manifest())))  # 2 and 2
    with pytest.raises(ManifestError, match="layers from manifest don't match image configuration"):
        c.check_layers(parse(enc(oci_manifest(layers=[]))))


# What Docker's GET /images/{name}/json answers for FULL_CONFIG at API 1.41 (this exact output
# was compared with a dockerd 20.10 that had loaded the image).
EXPECTED_1_41 = {
    "Id": IMAGE_ID,
    "RepoTags": ["check/img:1"],
    "RepoDigests": [],
    "Parent": "",
    "Comment": "",
    "Created": "2024-03-05T10:11:12.1234567+02:00",
    "Container": "abc123",
    "ContainerConfig": {
        "Hostname": "abc123", "Domainname": "", "User": "", "AttachStdin": False,
        "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
        "StdinOnce": False, "Env": None, "Cmd": ["/bin/sh", "-c", "#(nop) CMD"],
        "Image": "sha256:" + "1" * 64, "Volumes": None, "WorkingDir": "", "Entrypoint": None,
        "OnBuild": None, "Labels": None,
    },
    "DockerVersion": "24.0.7",
    "Author": "Jane <j@x>",
    "Config": {
        "Hostname": "h1", "Domainname": "", "User": "1000:1000", "AttachStdin": False,
        "AttachStdout": False, "AttachStderr": False,
        "ExposedPorts": {"53/udp": {}, "80/tcp": {}},
        "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": ["PATH=/bin", "A="],
        "Cmd": ["run me"],
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000, "Retries": 3},
        "ArgsEscaped": True, "Image": "sha256:" + "2" * 64, "Volumes": {"/data": {}},
        "WorkingDir": "/w", "Entrypoint": ["/entry"], "OnBuild": ["RUN x"],
        "Labels": {"a": "1", "b": ""}, "StopSignal": "SIGQUIT", "StopTimeout": 7,
        "Shell": ["/bin/bash", "-c"],
    },
    "Architecture": "amd64",
    "Os": "linux",
    "Size": 5006,
    "VirtualSize": 5006,
    "GraphDriver": {"Data": {"MergedDir": "/m"}, "Name": "overlay2"},
    "RootFS": {"Type": "layers", "Layers": [DIFF1, DIFF2]},
    "Metadata": {"LastTagTime": "2024-06-01T12:00:00.5Z"},
}


def _inspect(api_version, **kw):
    c = ImageConfig.parse(enc(FULL_CONFIG))
    return c.inspect_dict(IMAGE_ID, ["check/img:1"], [], 5006, api_version=api_version,
                          graph_driver={"Data": {"MergedDir": "/m"}, "Name": "overlay2"},
                          last_tag_time=1717243200.5, **kw)


def test_inspect_api_1_41_is_dockers_shape_key_for_key():
    got = _inspect("1.41")
    assert got == EXPECTED_1_41
    assert list(got) == list(EXPECTED_1_41)  # Go's field order
    assert list(got["Config"]) == list(EXPECTED_1_41["Config"])
    assert json.loads(json.dumps(got)) == got  # plain JSON types only


def test_inspect_api_1_45_drops_container_fields_and_virtual_size():
    got = _inspect("1.45")
    expected = {k: v for k, v in EXPECTED_1_41.items()
                if k not in ("Container", "ContainerConfig", "VirtualSize")}
    assert got == expected
    assert _inspect(M.DEFAULT_API_VERSION) == expected


def test_inspect_api_1_44_has_container_fields_but_no_virtual_size():
    got = _inspect("1.44")
    assert got == {k: v for k, v in EXPECTED_1_41.items() if k != "VirtualSize"}


def test_inspect_api_1_50_uses_the_image_spec_config():
    got = _inspect("1.50")
    assert got["Config"] == {
        "User": "1000:1000", "ExposedPorts": {"53/udp": {}, "80/tcp": {}},
        "Env": ["PATH=/bin", "A="], "Entrypoint": ["/entry"], "Cmd": ["run me"],
        "Volumes": {"/data": {}}, "WorkingDir": "/w", "Labels": {"a": "1", "b": ""},
        "StopSignal": "SIGQUIT", "ArgsEscaped": True,
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000, "Retries": 3},
        "OnBuild": ["RUN x"], "Shell": ["/bin/bash", "-c"],
    }
    assert "Parent" not in got and "Comment" not in got  # omitted when empty from 1.50
    assert got["Author"] == "Jane <j@x>" and got["DockerVersion"] == "24.0.7"


def test_inspect_empty_config_per_api_version():
    c = ImageConfig.parse(b'{"rootfs": {"type": "layers"}, "architecture": "arm64", '
                          b'"variant": "v8"}')
    old = c.inspect_dict("sha256:" + "a" * 64, api_version="1.43")
    assert old["Created"] == "0001-01-01T00:00:00Z" and old["VirtualSize"] == 0
    assert old["Variant"] == "v8" and old["Os"] == "linux"
    assert old["RootFS"] == {"Type": "layers"}  # no Layers key without layers
    assert old["Metadata"] == {"LastTagTime": "0001-01-01T00:00:00Z"}
    assert old["GraphDriver"] == {"Data": None, "Name": "overlay2"}
    assert old["Config"]["Env"] is None and old["Config"]["Hostname"] == ""
    assert "Created" not in c.inspect_dict("sha256:" + "a" * 64, api_version="1.44")
    backfilled = c.inspect_dict("sha256:" + "a" * 64, api_version="1.51")["Config"]
    assert backfilled == {"Cmd": None, "Entrypoint": None, "Env": None, "Labels": None,
                          "OnBuild": None, "User": "", "Volumes": None, "WorkingDir": ""}
    assert c.inspect_dict("sha256:" + "a" * 64, api_version="1.52")["Config"] == {}


def test_inspect_comment_falls_back_to_the_last_history_entry():
    doc = copy.deepcopy(FULL_CONFIG)
    doc["history"][-1]["comment"] = "from history"
    got = ImageConfig.parse(enc(doc)).inspect_dict("x", api_version="1.41")
    assert got["Comment"] == "from history"
    doc["comment"] = "own"
    assert ImageConfig.parse(enc(doc)).inspect_dict("x", api_version="1.41")["Comment"] == "own"


def test_history_rows_newest_first_with_layer_sizes():
    c = ImageConfig.parse(enc(FULL_CONFIG))
    rows = c.history_rows(IMAGE_ID, ["check/img:1"], [6, 5000])
    assert rows == [
        {"Comment": "", "Created": 0, "CreatedBy": "CMD", "Id": IMAGE_ID, "Size": 0,
         "Tags": ["check/img:1"]},
        {"Comment": "last", "Created": 1709625602, "CreatedBy": "ADD b.txt", "Id": "<missing>",
         "Size": 5000, "Tags": None},
        {"Comment": "", "Created": 1709625601, "CreatedBy": "ENV A=", "Id": "<missing>",
         "Size": 0, "Tags": None},
        {"Comment": "first", "Created": 1709625600, "CreatedBy": "ADD a.txt", "Id": "<missing>",
         "Size": 6, "Tags": None},
    ]
    assert c.history_rows(IMAGE_ID)[0]["Tags"] is None  # untagged: null, as Docker sends


def test_history_with_more_layer_steps_than_layers_is_refused():
    doc = copy.deepcopy(FULL_CONFIG)
    doc["rootfs"]["diff_ids"] = [DIFF1]
    with pytest.raises(ManifestError, match="too many non-empty layers in History section"):
        ImageConfig.parse(enc(doc)).history_rows(IMAGE_ID)


@pytest.mark.parametrize("text,seconds,nanos,formatted", [
    ("2024-03-05T08:00:00Z", 1709625600, 0, "2024-03-05T08:00:00Z"),
    ("2024-03-05T08:00:00.500000000Z", 1709625600, 500_000_000, "2024-03-05T08:00:00.5Z"),
    ("2023-05-09T23:11:10.132147526Z", 1683673870, 132147526, "2023-05-09T23:11:10.132147526Z"),
    ("2024-03-05T10:00:00+02:00", 1709625600, 0, "2024-03-05T10:00:00+02:00"),
    ("2024-03-05T05:30:00-02:30", 1709625600, 0, "2024-03-05T05:30:00-02:30"),
    ("2024-03-05T08:00:00+00:00", 1709625600, 0, "2024-03-05T08:00:00Z"),
    ("0001-01-01T00:00:00Z", -62135596800, 0, "0001-01-01T00:00:00Z"),
    ("1969-12-31T23:59:59.25Z", -1, 250_000_000, "1969-12-31T23:59:59.25Z"),
    ("2024-03-05T08:00:00.1234567891234Z", 1709625600, 123456789, "2024-03-05T08:00:00.123456789Z"),
])
def test_timestamps(text, seconds, nanos, formatted):
    t = Timestamp.parse(text)
    assert (t.seconds, t.nanos) == (seconds, nanos)
    assert t.rfc3339nano() == formatted


@pytest.mark.parametrize("text", [
    "2024-03-05 08:00:00Z", "2024-03-05T08:00:00", "2024-3-5T08:00:00Z", "2024-03-05t08:00:00z",
    "2024-02-30T00:00:00Z", "2024-03-05T24:00:00Z", "2024-03-05T08:00:60Z", "0000-01-01T00:00:00Z",
    "\uff12\uff10\uff12\uff14-03-05T08:00:00Z",  # fullwidth digits are not ASCII digits
])
def test_bad_timestamps(text):
    with pytest.raises(ValueError):
        Timestamp.parse(text)


def test_timestamp_from_unix():
    assert Timestamp.from_unix(1717243200.5).rfc3339nano() == "2024-06-01T12:00:00.5Z"
    assert Timestamp.from_unix(0).rfc3339nano() == "1970-01-01T00:00:00Z"


# -- digests and chain IDs -------------------------------------------------------------------

def test_digest_of():
    empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert digest_of(b"") == empty  # sha256sum < /dev/null


def test_chain_ids():
    d = ["sha256:" + c * 64 for c in "abc"]
    # computed outside Python: printf '%s %s' "$A" "$B" | sha256sum, then with the result and C
    c1 = "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c"
    c2 = "sha256:c1377126441fb2f5ec2c21ae2a60255331d639e830f0ee1b40a36e52d4c40588"
    assert chain_ids(d) == [d[0], c1, c2]
    assert chain_ids(d[:1]) == [d[0]]
    assert chain_ids([]) == []


def test_chain_ids_by_hand():
    d = [sha(b"one"), sha(b"two"), sha(b"three")]
    c1 = "sha256:" + hashlib.sha256((d[0] + " " + d[1]).encode("ascii")).hexdigest()
    c2 = "sha256:" + hashlib.sha256((c1 + " " + d[2]).encode("ascii")).hexdigest()
    assert chain_ids(d) == [d[0], c1, c2]
    assert chain_ids(d)[1] != chain_ids([d[1], d[0], d[2]])[1]  # order matters


# -- real OCI layouts from umoci and skopeo ----------------------------------------------------

needs_tools = pytest.mark.skipif(shutil.which("umoci") is None or shutil.which("skopeo") is None,
                                 reason="umoci and skopeo are needed (Debian: umoci, skopeo)")


def _run(*args):
    subprocess.run(list(map(str, args)), check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    """An OCI layout with one image made by umoci: a layer, a config, three history steps."""
    tmp = tmp_path_factory.mktemp("oci")
    root, src = tmp / "layout", tmp / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hello").write_text("hi\n")
    _run("umoci", "init", "--layout", root)
    _run("umoci", "new", "--image", f"{root}:t")
    _run("umoci", "insert", "--image", f"{root}:t", src / "etc", "/etc")
    _run("umoci", "config", "--image", f"{root}:t", "--config.cmd", "sh", "--config.env", "A=1",
         "--config.label", "k=v", "--config.exposedports", "80/tcp", "--config.volume", "/data",
         "--config.workingdir", "/w", "--config.user", "1000", "--author", "me",
         "--history.created_by", "umoci config")
    return root


def _blob(root: Path, digest: str) -> bytes:
    algorithm, _, hex_value = digest.partition(":")
    return (root / "blobs" / algorithm / hex_value).read_bytes()


@needs_tools
def test_real_umoci_layout(layout):
    idx = parse((layout / "index.json").read_bytes())
    assert isinstance(idx, Index) and idx.media_type == M.OCI_INDEX
    desc = select(idx)  # umoci writes no platform: the last-resort rule picks it
    assert desc.annotations["org.opencontainers.image.ref.name"] == "t"
    raw = _blob(layout, desc.digest)
    assert digest_of(raw) == desc.digest and len(raw) == desc.size
    m = parse(raw, desc.media_type)
    assert isinstance(m, Manifest)
    m.check_image()
    assert [M.layer_compression(layer.media_type) for layer in m.layers] == ["gzip"]
    config_bytes = _blob(layout, m.config.digest)
    assert digest_of(config_bytes) == m.config.digest
    c = ImageConfig.parse(config_bytes)
    c.check_layers(m)
    assert c.platform.os == "linux" and c.architecture
    assert c.config.cmd == ["sh"] and c.config.env == ["A=1"] and c.config.labels == {"k": "v"}
    assert c.config.exposed_ports == ["80/tcp"] and c.config.volumes == ["/data"]
    assert (c.config.user, c.config.working_dir, c.author) == ("1000", "/w", "me")
    assert c.created is not None
    inspect = c.inspect_dict(m.config.digest, ["t:latest"], [], 10)
    assert inspect["RootFS"]["Layers"] == c.diff_ids and inspect["Author"] == "me"
    assert inspect["Config"]["Cmd"] == ["sh"] and inspect["Config"]["Hostname"] == ""
    rows = c.history_rows(m.config.digest, ["t:latest"], [123])
    assert [r["CreatedBy"] for r in rows] == ["umoci config", "umoci insert"]
    assert [r["Size"] for r in rows] == [0, 123]
    # the layer's diff ID really is the sha256 of the uncompressed tar
    import gzip

    tar = gzip.decompress(_blob(layout, m.layers[0].digest))
    assert chain_ids(c.diff_ids) == [digest_of(tar)]


@needs_tools
def test_real_skopeo_conversions(layout, tmp_path):
    """skopeo rewrites the image as Docker schema 2, OCI with zstd layers, and schema 1."""
    v2s2 = tmp_path / "v2s2"
    _run("skopeo", "copy", "--format", "v2s2", f"oci:{layout}:t", f"dir:{v2s2}")
    m = parse((v2s2 / "manifest.json").read_bytes(), M.DOCKER_MANIFEST)
    assert m.media_type == M.DOCKER_MANIFEST and m.config.media_type == M.DOCKER_CONFIG
    assert [layer.media_type for layer in m.layers] == [M.DOCKER_LAYER_GZIP]
    m.check_image()
    config = ImageConfig.parse((v2s2 / m.config.digest.partition(":")[2]).read_bytes())
    config.check_layers(m)

    zstd = tmp_path / "zstd"
    _run("skopeo", "copy", "--format", "oci", "--dest-compress", "--dest-compress-format", "zstd",
         f"oci:{layout}:t", f"dir:{zstd}")
    m = parse((zstd / "manifest.json").read_bytes())
    assert [layer.media_type for layer in m.layers] == [M.OCI_LAYER_ZSTD]
    assert M.layer_compression(m.layers[0].media_type) == "zstd"

    v2s1 = tmp_path / "v2s1"
    _run("skopeo", "copy", "--format", "v2s1", f"oci:{layout}:t", f"dir:{v2s1}")
    with pytest.raises(ManifestError) as ei:
        parse((v2s1 / "manifest.json").read_bytes())
    assert str(ei.value) == M.SCHEMA1_MESSAGE
