"""bosun.image.reference: Docker's reference grammar, normalization and error messages.

The expected messages are Docker's own; every row of the tables below was checked against
the docker 28.2 CLI (`docker pull <ref>` with no daemon reachable validates the reference
first). Where bosun deliberately differs from Docker, the row says so."""

from __future__ import annotations

import dataclasses

import pytest

from bosun.image.reference import (
    InvalidReference,
    Reference,
    for_pull,
    for_tag,
    parse,
    parse_normalized,
    split_repo_tag,
    validate_digest,
)

H64 = "0123456789abcdef" * 4
H128 = H64 * 2
D256 = f"sha256:{H64}"
D512 = f"sha512:{H128}"

# input -> (str(parse(input)), .familiar(), .familiar_string())
VALID = {
    "busybox": ("docker.io/library/busybox", "busybox", "busybox"),
    "busybox:1.36": ("docker.io/library/busybox:1.36", "busybox", "busybox:1.36"),
    "busybox:Latest": ("docker.io/library/busybox:Latest", "busybox", "busybox:Latest"),
    "busybox:_x": ("docker.io/library/busybox:_x", "busybox", "busybox:_x"),
    "user/app": ("docker.io/user/app", "user/app", "user/app"),
    "user/app:v1.2_x-3": ("docker.io/user/app:v1.2_x-3", "user/app", "user/app:v1.2_x-3"),
    "docker.io/busybox": ("docker.io/library/busybox", "busybox", "busybox"),
    "docker.io/library/busybox": ("docker.io/library/busybox", "busybox", "busybox"),
    "index.docker.io/busybox:1": ("docker.io/library/busybox:1", "busybox", "busybox:1"),
    "index.docker.io/user/app": ("docker.io/user/app", "user/app", "user/app"),
    # only a one-level library/ name is shortened
    "docker.io/library/a/b": ("docker.io/library/a/b", "library/a/b", "library/a/b"),
    # registry-1.docker.io is a host like any other: no normalization
    "registry-1.docker.io/busybox": ("registry-1.docker.io/busybox",
                                     "registry-1.docker.io/busybox",
                                     "registry-1.docker.io/busybox"),
    "localhost/app": ("localhost/app", "localhost/app", "localhost/app"),
    "localhost:5000/app:1": ("localhost:5000/app:1", "localhost:5000/app", "localhost:5000/app:1"),
    "127.0.0.1:5000/a/b": ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b"),
    "[::1]:5000/a": ("[::1]:5000/a", "[::1]:5000/a", "[::1]:5000/a"),
    "[::1]/a": ("[::1]/a", "[::1]/a", "[::1]/a"),
    "example.com/a/b/c:v1": ("example.com/a/b/c:v1", "example.com/a/b/c", "example.com/a/b/c:v1"),
    "xn--bcher-kva.example/a": ("xn--bcher-kva.example/a", "xn--bcher-kva.example/a",
                                "xn--bcher-kva.example/a"),
    # an uppercase first component can only be a host
    "Foo/bar": ("Foo/bar", "Foo/bar", "Foo/bar"),
    "LOCALHOST/app": ("LOCALHOST/app", "LOCALHOST/app", "LOCALHOST/app"),
    # without a "/", "localhost" is a Docker Hub name and ":5000" a tag
    "localhost": ("docker.io/library/localhost", "localhost", "localhost"),
    "localhost:5000": ("docker.io/library/localhost:5000", "localhost", "localhost:5000"),
    # ... and so is "sha256" with a 64-character tag
    f"sha256:{H64}": (f"docker.io/library/sha256:{H64}", "sha256", f"sha256:{H64}"),
    "a__b": ("docker.io/library/a__b", "a__b", "a__b"),
    "a--b": ("docker.io/library/a--b", "a--b", "a--b"),
    "a_b-c/e---f.g": ("docker.io/a_b-c/e---f.g", "a_b-c/e---f.g", "a_b-c/e---f.g"),
    f"busybox@{D256}": (f"docker.io/library/busybox@{D256}", "busybox", f"busybox@{D256}"),
    f"busybox@{D512}": (f"docker.io/library/busybox@{D512}", "busybox", f"busybox@{D512}"),
    # tag and digest both kept
    f"busybox:1@{D256}": (f"docker.io/library/busybox:1@{D256}", "busybox", f"busybox:1@{D256}"),
    f"localhost:5000/a/b:t@{D256}": (f"localhost:5000/a/b:t@{D256}", "localhost:5000/a/b",
                                     f"localhost:5000/a/b:t@{D256}"),
    "busybox:" + "t" * 128: ("docker.io/library/busybox:" + "t" * 128, "busybox",
                             "busybox:" + "t" * 128),
    # the 255 limit is on the path, library/ included
    "a" * 247: ("docker.io/library/" + "a" * 247, "a" * 247, "a" * 247),
    "example.com/" + "a" * 255: ("example.com/" + "a" * 255, "example.com/" + "a" * 255,
                                 "example.com/" + "a" * 255),
}

FORMAT = "invalid reference format"
INVALID = {
    "": FORMAT,
    ":": FORMAT,
    "busybox:": FORMAT,
    "busybox@": FORMAT,
    "/busybox": FORMAT,
    "busybox/": FORMAT,
    "a//b": FORMAT,
    "busybox:-x": FORMAT,
    "busybox:.x": FORMAT,
    "busybox:" + "t" * 129: FORMAT,
    "a___b": FORMAT,
    "a..b": FORMAT,
    "a._b": FORMAT,
    "a-": FORMAT,
    "a_": FORMAT,
    "example-.com/a": FORMAT,
    "[fe80::1%eth0]/a": FORMAT,
    "1.2.3.4:/a": FORMAT,
    "host:abc/a": FORMAT,
    "a b": FORMAT,
    "busybox ": FORMAT,
    "busybox\n": FORMAT,
    "a/b:c:d": FORMAT,
    "a:b/c": FORMAT,
    "foo/bar@sha256:x": FORMAT,
    f"a/b@{D256}:x": FORMAT,
    f"a/b@{D256}@{D256}": FORMAT,
    "busybox:tag\u00e9": FORMAT,  # Go's \w is ASCII
    "Busybox": "invalid reference format: repository name (library/Busybox) must be lowercase",
    "Foo": "invalid reference format: repository name (library/Foo) must be lowercase",
    "a/B": "invalid reference format: repository name (a/B) must be lowercase",
    "foo/Bar": "invalid reference format: repository name (foo/Bar) must be lowercase",
    "library/Busybox:1": "invalid reference format: repository name (library/Busybox) must be "
                         "lowercase",
    "localhost:5000/Foo": "invalid reference format: repository name (Foo) must be lowercase",
    "example.com:5000/UPPER/x": "invalid reference format: repository name (UPPER/x) must be "
                                "lowercase",
    # the name is cut at the first ":", which here is inside the digest
    f"foo/Bar@{D256}": "invalid reference format: repository name (foo/Bar@sha256) must be "
                       "lowercase",
    f"busybox@SHA256:{H64}": "invalid reference format: repository name (library/busybox@SHA256) "
                             "must be lowercase",
    # uppercase first component = host, but "_" is not valid in a host, and as a path it is
    # uppercase
    "b_Ba-09/9b0-b": "repository name must be lowercase",
    H64: f"invalid repository name ({H64}), cannot specify 64-byte hexadecimal strings",
    "a" * 248: "repository name must not be more than 255 characters",
    "example.com/" + "a" * 256: "repository name must not be more than 255 characters",
    "busybox@sha256:" + "a" * 40: "invalid checksum digest length",
    f"busybox@sha512:{H64}": "invalid checksum digest length",
    "busybox@md5:" + "a" * 40: "unsupported digest algorithm",
    "busybox@sha256:" + "A" * 64: "invalid checksum digest format",
    # bosun: Docker takes sha384 too; bosun's content store keeps sha256 and sha512 only
    "busybox@sha384:" + "a" * 96: "unsupported digest algorithm",
    # bosun: Docker keeps this as a name without a registry (exa_mple.com is no valid host);
    # bosun refuses it since it could never pull it
    "exa_mple.com/a": FORMAT,
}


def _id(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} chars)"


@pytest.mark.parametrize("text", VALID, ids=_id)
def test_valid_reference(text):
    full, familiar, familiar_string = VALID[text]
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert ref.familiar_string() == familiar_string
    # the normalized string parses back to the same reference
    assert parse(full) == ref


@pytest.mark.parametrize("text", INVALID, ids=_id)
def test_invalid_reference(text):
    with pytest.raises(InvalidReference) as ei:
        parse(text)
    assert str(ei.value) == INVALID[text]
    assert isinstance(ei.value, ValueError)


def test_parts():
    ref = parse(f"localhost:5000/a/b:t@{D256}")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("localhost:5000", "a/b", "t", D256)
    assert ref.name == "localhost:5000/a/b"
    bare = parse("busybox")
    assert (bare.domain, bare.path, bare.tag, bare.digest) == ("docker.io", "library/busybox",
                                                                None, None)


@pytest.mark.parametrize("text,expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("user/app", "docker.io/user/app:latest"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("busybox:1", "docker.io/library/busybox:1"),
    (f"busybox@{D256}", f"docker.io/library/busybox@{D256}"),  # a digest gets no tag
    (f"busybox:1@{D256}", f"docker.io/library/busybox:1@{D256}"),
])
def test_parse_normalized_adds_latest_only_without_tag_or_digest(text, expected):
    assert str(parse_normalized(text)) == expected


def test_familiar_string_of_normalized_name_is_what_repo_tags_show():
    assert parse_normalized("busybox").familiar_string() == "busybox:latest"
    assert parse_normalized("docker.io/user/app").familiar_string() == "user/app:latest"


def test_parse_refuses_non_strings():
    for bad in (None, 5, b"busybox", ["busybox"]):
        with pytest.raises(InvalidReference, match="^invalid reference format$"):
            parse(bad)  # type: ignore[arg-type]


def test_reference_is_immutable_hashable_and_compares_by_value():
    a, b = parse("busybox:1"), parse("docker.io/library/busybox:1")
    assert a == b and hash(a) == hash(b)
    assert len({a, b, parse("busybox:2")}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.tag = "2"  # type: ignore[misc]


@pytest.mark.parametrize("kwargs,message", [
    ({"domain": "docker.io", "path": "Library/x"}, FORMAT),
    ({"domain": "", "path": "x"}, FORMAT),
    ({"domain": "bad_host", "path": "x"}, FORMAT),
    ({"domain": "docker.io", "path": "x/"}, FORMAT),
    ({"domain": "docker.io", "path": "a" * 256},
     "repository name must not be more than 255 characters"),
    ({"domain": "docker.io", "path": "x", "tag": "-bad"}, "invalid tag format"),
    ({"domain": "docker.io", "path": "x", "tag": ""}, "invalid tag format"),
    ({"domain": "docker.io", "path": "x", "digest": "sha256:abc"},
     "invalid checksum digest length"),
])
def test_constructor_validates_every_part(kwargs, message):
    with pytest.raises(InvalidReference) as ei:
        Reference(**kwargs)
    assert str(ei.value) == message


def test_with_tag_with_digest_name_only():
    ref = parse("busybox:1")
    assert str(ref.with_tag("2")) == "docker.io/library/busybox:2"
    assert str(ref.with_digest(D256)) == f"docker.io/library/busybox:1@{D256}"
    assert str(parse(f"busybox:1@{D256}").name_only()) == "docker.io/library/busybox"
    assert ref.with_default_tag() is ref
    with pytest.raises(InvalidReference, match="^invalid tag format$"):
        ref.with_tag("a/b")
    with pytest.raises(InvalidReference, match="^unsupported digest algorithm$"):
        ref.with_digest("md5:" + "a" * 32)


@pytest.mark.parametrize("digest,message", [
    ("sha256", "invalid checksum digest format"),
    ("sha256:", "invalid checksum digest format"),
    (":" + H64, "invalid checksum digest format"),
    ("sha256:" + H64[:-1], "invalid checksum digest length"),
    ("sha256:" + H64 + "0", "invalid checksum digest length"),
    ("sha256:" + "g" * 64, "invalid checksum digest format"),
    ("sha256:../../../../etc/passwd" + "a" * 42, "invalid checksum digest format"),
    ("SHA256:" + H64, "invalid checksum digest format"),
    ("blake3:" + H64, "unsupported digest algorithm"),
    (None, "invalid checksum digest format"),
])
def test_validate_digest(digest, message):
    with pytest.raises(InvalidReference) as ei:
        validate_digest(digest)  # type: ignore[arg-type]
    assert str(ei.value) == message


def test_validate_digest_accepts_sha256_and_sha512():
    assert validate_digest(D256) == D256
    assert validate_digest(D512) == D512


@pytest.mark.parametrize("text,expected", [
    ("busybox", ("busybox", None)),
    ("busybox:1", ("busybox", "1")),
    ("localhost:5000/app", ("localhost:5000/app", None)),
    ("localhost:5000/app:1", ("localhost:5000/app", "1")),
    (f"app@{D256}", ("app", D256)),
    (f"app:1@{D256}", ("app:1", D256)),
])
def test_split_repo_tag(text, expected):
    assert split_repo_tag(text) == expected


@pytest.mark.parametrize("image,tag,expected", [
    ("busybox", None, "docker.io/library/busybox"),  # no tag: Docker pulls all tags
    ("busybox", "", "docker.io/library/busybox"),
    ("busybox", "1", "docker.io/library/busybox:1"),
    ("busybox:1", "2", "docker.io/library/busybox:2"),
    ("busybox:", "", "docker.io/library/busybox"),  # `pull -a` sends a trailing ":"
    ("busybox", D256, f"docker.io/library/busybox@{D256}"),
    ("busybox:1", D256, f"docker.io/library/busybox@{D256}"),  # a digest replaces the tag
    (f"busybox@{D256}", "1", f"docker.io/library/busybox:1@{D256}"),
])
def test_for_pull(image, tag, expected):
    assert str(for_pull(image, tag)) == expected


@pytest.mark.parametrize("image,tag,message", [
    ("busybox", "bad tag", "invalid tag format"),
    ("busybox", "sha256:abc", "invalid tag format"),  # not a digest, and ":" is no tag
    ("Busybox", "1", ("invalid reference format: repository name (library/Busybox) must be "
                     "lowercase")),
])
def test_for_pull_errors(image, tag, message):
    with pytest.raises(InvalidReference) as ei:
        for_pull(image, tag)
    assert str(ei.value) == message


@pytest.mark.parametrize("repo,tag,expected", [
    ("myrepo", None, "docker.io/library/myrepo:latest"),
    ("myrepo", "v1", "docker.io/library/myrepo:v1"),
    ("myrepo:old", "v1", "docker.io/library/myrepo:v1"),
    ("localhost:5000/x:old", None, "localhost:5000/x:old"),
    (f"myrepo@{D256}", "v1", "docker.io/library/myrepo:v1"),
])
def test_for_tag(repo, tag, expected):
    assert str(for_tag(repo, tag)) == expected


@pytest.mark.parametrize("repo,tag,message", [
    (f"myrepo@{D256}", None, "refusing to create a tag with a digest reference"),
    (f"myrepo:1@{D256}", None, "refusing to create a tag with a digest reference"),
    ("myrepo", "-x", "invalid tag format"),
    ("MyRepo", None, ("invalid reference format: repository name (library/MyRepo) must be "
                     "lowercase")),
])
def test_for_tag_errors(repo, tag, message):
    with pytest.raises(InvalidReference) as ei:
        for_tag(repo, tag)
    assert str(ei.value) == message


@pytest.mark.parametrize("text", [
    "a" * 1_000_000 + "!",
    "a-" * 500_000,
    "a." * 300_000 + "/",
    "a/" * 500_000,
    ("a" * 50 + "-") * 20_000 + "!",
    "x@sha256:" + "a" * 1_000_000 + "g",
], ids=["alnum", "dashes", "dots", "slashes", "long-components", "long-digest"])
def test_hostile_long_input_is_rejected_quickly(text):
    import time

    start = time.perf_counter()
    with pytest.raises(InvalidReference):
        parse(text)
    assert time.perf_counter() - start < 3  # linear-time matching (~0.5 s at worst here)
