"""The pure parts of the image endpoints: X-Registry-Auth, Docker's progress messages, the
list/prune filters, commit's config merge, error mapping, and the streaming of a worker's
output (early errors keep their status, late ones end the stream)."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from bosun.api import images as api
from bosun.api.http import Request, Router
from bosun.engine import errors
from bosun.engine import images as ops
from bosun.registry.auth import Credentials


def _b64url(doc, pad: bool = True) -> str:
    text = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    return text if pad else text.rstrip("=")


# -- X-Registry-Auth --------------------------------------------------------------------------

def test_registry_auth_username_password():
    doc = {"username": "alice", "password": "pa?s>w~rd", "serveraddress": "localhost:5000"}
    c = api.decode_registry_auth(_b64url(doc))
    assert c == Credentials("alice", "pa?s>w~rd", "")


def test_registry_auth_unpadded_and_standard_alphabet():
    doc = {"username": "bob", "password": "??>>??>>"}  # encodes with + and / in std base64
    std = base64.b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    assert "+" in std or "/" in std
    assert api.decode_registry_auth(std) == Credentials("bob", "??>>??>>", "")
    assert api.decode_registry_auth(_b64url(doc, pad=False)) == Credentials("bob", "??>>??>>")


def test_registry_auth_identity_token_and_config_auth_field():
    assert api.decode_registry_auth(_b64url({"identitytoken": "tok"})) == Credentials(
        identity_token="tok")
    auth = base64.b64encode(b"carol:se:cret").decode()
    assert api.decode_registry_auth(_b64url({"auth": auth})) == Credentials("carol", "se:cret")


def test_registry_auth_absent_is_none_and_garbage_is_anonymous():
    assert api.decode_registry_auth(None) is None
    assert api.decode_registry_auth("") is None
    anonymous = api.decode_registry_auth("%%%not base64")
    assert anonymous is not None and not anonymous
    assert not api.decode_registry_auth(_b64url(["a", "list"]))
    assert not api.decode_registry_auth(_b64url({"serveraddress": "x"}))  # docker CLI, no login


def test_registry_host():
    assert ops.registry_host("https://index.docker.io/v1/") == "docker.io"
    assert ops.registry_host("") == "docker.io"
    assert ops.registry_host("http://LocalHost:5000/v2/") == "localhost:5000"
    assert ops.registry_host("127.0.0.1:5000") == "127.0.0.1:5000"
    assert ops.registry_host("[::1]:5000") == "[::1]:5000"


@pytest.mark.parametrize("address", ["::", "http://[::1", "\0", "host:99999", "a b"])
def test_registry_host_refuses_what_is_no_host(address):
    with pytest.raises(errors.InvalidParameter, match="invalid registry address"):
        ops.registry_host(address)


# -- progress messages ------------------------------------------------------------------------

def test_human_size_as_go_units():
    assert api.human_size(0) == "0B"
    assert api.human_size(999) == "999B"
    assert api.human_size(1000) == "1kB"
    assert api.human_size(2155000) == "2.155MB"
    assert api.human_size(1_234_567_890) == "1.235GB"


def test_progress_bar_as_docker_renders_it():
    assert api.progress_bar(0, 0) == ""
    half = api.progress_bar(1_000_000, 2_000_000)
    assert half == "[" + "=" * 25 + ">" + " " * 25 + "] " + "     1MB/2MB"
    done = api.progress_bar(2155000, 2155000)
    assert done == "[" + "=" * 50 + ">] " + " 2.155MB/2.155MB"
    assert api.progress_bar(3000, 0) == "     3kB"  # no total: the count alone
    assert api.progress_bar(5000, 1000).endswith("]      5kB")  # wonky total dropped


def test_docker_message_shapes():
    assert api.docker_message({"status": "Pulling from library/busybox",
                               "progressDetail": {}, "id": "latest"}) == {
        "status": "Pulling from library/busybox", "id": "latest"}
    m = api.docker_message({"status": "Downloading", "progressDetail": {
        "current": 500, "total": 1000}, "id": "abc"})
    assert list(m) == ["status", "progressDetail", "progress", "id"]
    assert m["progress"].startswith("[" + "=" * 25 + ">")
    assert api.docker_message({"status": "Pull complete", "progressDetail": {},
                               "id": "abc"}) == {"status": "Pull complete",
                                                 "progressDetail": {}, "id": "abc"}
    aux = {"progressDetail": {}, "aux": {"Tag": "v1", "Digest": "sha256:x", "Size": 1}}
    assert api.docker_message(aux) == aux
    assert api.docker_message({"stream": "Loaded image: a:b\n"}) == {
        "stream": "Loaded image: a:b\n"}


def test_json_lines_end_as_dockers():
    assert api.json_line(api.error_message("boom")) == (
        b'{"errorDetail":{"message":"boom"},"error":"boom"}\r\n')


# -- filters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern, name, hit", [
    ("busy*", "busybox", True),
    ("*", "library/busybox", False),  # * stops at /
    ("*/*", "library/busybox", True),
    ("b?sybox", "busybox", True),
    ("[a-c]usybox", "busybox", True),
    ("[^a-c]usybox", "busybox", False),
    ("localhost:5000/*", "localhost:5000/app", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
])
def test_path_match_is_gos(pattern, name, hit):
    assert ops.path_match(pattern, name) is hit


@pytest.mark.parametrize("bad", ["[", "[]", "a[b-", "x\\"])
def test_path_match_bad_pattern(bad):
    with pytest.raises(errors.InvalidParameter):
        ops.path_match(bad, "anything")


def test_reference_matches_name_without_tag():
    assert ops.reference_matches("busybox", "busybox:latest")
    assert ops.reference_matches("busybox:lat*", "busybox:latest")
    assert not ops.reference_matches("busybox:v*", "busybox:latest")
    assert ops.reference_matches("localhost:5000/app", "localhost:5000/app:1")


def _summary(image_id, tags=(), digests=(), labels=None):
    return {"Id": image_id, "RepoTags": list(tags), "RepoDigests": list(digests),
            "Labels": labels, "Created": 0, "Size": 1, "SharedSize": -1, "Containers": -1,
            "ParentId": ""}


IMAGES = [  # newest first, as the store lists them
    _summary("sha256:c", ["app:2", "other:1"], labels={"tier": "web"}),
    _summary("sha256:b", [], ["app@sha256:" + "1" * 64]),
    _summary("sha256:a", ["app:1"], labels={"tier": "db", "x": ""}),
    _summary("sha256:0"),
]
CREATED = {"sha256:c": 300.5, "sha256:b": 200.0, "sha256:a": 100.0, "sha256:0": 50.0}
BY_NAME = {"app:1": "sha256:a", "app:2": "sha256:c"}


def _list(filters, now=1000.0):
    out = ops.filter_images(IMAGES, filters, CREATED, lambda r: BY_NAME[r], now=now)
    return [(s["Id"], s["RepoTags"]) for s in out]


def test_filter_dangling():
    assert _list({"dangling": ["true"]}) == [("sha256:b", []), ("sha256:0", [])]
    assert _list({"dangling": ["false"]}) == [
        ("sha256:c", ["app:2", "other:1"]), ("sha256:b", []), ("sha256:a", ["app:1"])]
    with pytest.raises(errors.InvalidParameter, match=r"invalid filter 'dangling=\[maybe\]'"):
        _list({"dangling": ["maybe"]})


def test_filter_reference_keeps_matching_names_only():
    assert _list({"reference": ["app"]}) == [("sha256:c", ["app:2"]), ("sha256:b", []),
                                             ("sha256:a", ["app:1"])]
    assert _list({"reference": ["other:*"]}) == [("sha256:c", ["other:1"])]


def test_filter_label_before_since_until():
    assert _list({"label": ["tier"]}) == [("sha256:c", ["app:2", "other:1"]),
                                         ("sha256:a", ["app:1"])]
    assert _list({"label": ["tier=db"]}) == [("sha256:a", ["app:1"])]
    assert _list({"before": ["app:2"]}) == [("sha256:b", []), ("sha256:a", ["app:1"]),
                                           ("sha256:0", [])]
    assert _list({"since": ["app:1"]}) == [("sha256:c", ["app:2", "other:1"]),
                                          ("sha256:b", [])]
    assert _list({"until": ["150"]}) == [("sha256:a", ["app:1"]), ("sha256:0", [])]
    with pytest.raises(errors.InvalidParameter, match="invalid filter 'bogus'"):
        _list({"bogus": ["1"]})


def test_prune_candidates():
    def prune(filters, in_use=frozenset()):
        return ops.prune_candidates(IMAGES, filters, CREATED, set(in_use), now=1000.0)

    assert prune({}) == ["sha256:0", "sha256:b"]  # oldest first, digests are not tags
    assert prune({}, {"sha256:0"}) == ["sha256:b"]
    assert prune({"dangling": ["false"]}) == ["sha256:0", "sha256:a", "sha256:b", "sha256:c"]
    assert prune({"dangling": ["0"], "label": ["tier"]}) == ["sha256:a", "sha256:c"]
    assert prune({"dangling": ["FALSE"], "label!": ["tier=db"]}) == [
        "sha256:0", "sha256:b", "sha256:c"]
    assert prune({"dangling": ["false"], "until": ["250"]}) == [
        "sha256:0", "sha256:a", "sha256:b"]
    with pytest.raises(errors.InvalidParameter, match="invalid filter 'reference'"):
        prune({"reference": ["x"]})


# -- commit config ----------------------------------------------------------------------------

CONTAINER = {"Hostname": "abc", "User": "nobody", "Env": ["A=1", "B=2"], "Cmd": ["sh"],
             "Image": "busybox", "Labels": {"l": "c"}, "WorkingDir": "/w",
             "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}}


def test_commit_config_without_override_is_the_containers():
    c = ops.commit_config(CONTAINER, None, [])
    assert c["Hostname"] == "abc" and c["Image"] == "busybox"
    assert c["Env"] == ["A=1", "B=2"] and c["Cmd"] == ["sh"] and c["User"] == "nobody"


def test_commit_config_changes_and_merge():
    c = ops.commit_config(CONTAINER, None, ['ENV B=3 C=4', 'CMD ["true"]', "EXPOSE 53/udp"])
    assert c["Env"] == ["A=1", "B=3", "C=4"]
    assert c["Cmd"] == ["true"]
    assert c["ExposedPorts"] == {"53/udp": {}, "80/tcp": {}}


def test_commit_config_override_merged_with_container():
    c = ops.commit_config(CONTAINER, {"Env": ["B=9"], "Labels": {"n": "o"},
                                      "Entrypoint": ["/x"]}, [])
    assert c["Env"] == ["B=9", "A=1"]  # the container's other keys added after
    assert c["Labels"] == {"l": "c", "n": "o"}
    assert c["Entrypoint"] == ["/x"] and c["Cmd"] is None  # Cmd only comes with Entrypoint
    assert c["User"] == "nobody" and c["WorkingDir"] == "/w"
    assert c["Volumes"] == {"/data": {}}
    assert c["Hostname"] == ""  # not merged: a body config replaces it


def test_commit_config_bad_change():
    with pytest.raises(errors.InvalidParameter, match="RUN is not a valid change command"):
        ops.commit_config(CONTAINER, None, ["RUN true"])


# -- errors -----------------------------------------------------------------------------------

def test_image_errors_map_to_engine_kinds():
    from bosun.image import metadata, reference
    from bosun.registry import errors as reg

    assert isinstance(ops.image_error(metadata.NotFound("No such image: x")), errors.NotFound)
    assert isinstance(ops.image_error(metadata.Conflict("c")), errors.Conflict)
    assert isinstance(ops.image_error(reference.InvalidReference("invalid reference format")),
                      errors.InvalidParameter)
    assert isinstance(ops.image_error(reg.UnauthorizedError("u")), errors.Forbidden)
    assert isinstance(ops.image_error(reg.NameUnknownError("n")), errors.NotFound)
    err = ops.image_error(reg.RegistryConnectionError("x: connection refused"))
    assert isinstance(err, errors.SystemErr) and str(err) == "x: connection refused"
    other = KeyError("k")
    assert ops.image_error(other) is other


# -- streaming --------------------------------------------------------------------------------

def _chunks(stream) -> list[bytes]:
    out = [c for c in stream.iterable if c]
    stream.iterable.close()
    return out


def test_progress_stream_early_error_is_a_plain_error():
    from bosun.image.metadata import NotFound

    def work(progress):
        raise NotFound("No such image: x")
    with pytest.raises(errors.NotFound, match="No such image: x"):
        api.progress_stream(work)


def test_progress_stream_holds_the_first_message():
    from bosun.registry.errors import RegistryConnectionError

    def work(progress):
        progress({"status": "Pulling from a/b", "progressDetail": {}, "id": "v1"})
        raise RegistryConnectionError("manifest: connection refused")
    with pytest.raises(errors.SystemErr, match="connection refused"):
        api.progress_stream(work, hold=1)


def test_progress_stream_late_error_ends_the_stream():
    from bosun.registry.errors import DeniedError

    def work(progress):
        progress({"status": "The push refers to repository [x]"})
        raise DeniedError("denied: requested access to the resource is denied")
    lines = [json.loads(c) for c in _chunks(api.progress_stream(work))]
    assert lines[0] == {"status": "The push refers to repository [x]"}
    assert lines[-1]["error"] == "denied: requested access to the resource is denied"
    assert lines[-1]["errorDetail"] == {"message": lines[-1]["error"]}


def test_closing_the_stream_stops_the_work():
    stopped = threading.Event()

    def work(progress):
        try:
            while True:
                progress({"status": "tick"})
        finally:
            stopped.set()
    stream = api.progress_stream(work)
    it = iter(stream.iterable)
    assert json.loads(next(it)) == {"status": "tick"}
    stream.iterable.close()
    assert stopped.wait(5)


# -- routes -----------------------------------------------------------------------------------

class _Store:
    def inspect(self, name, api_version):
        return {"Id": "sha256:x", "Name": name, "Api": api_version}

    def history(self, name):
        return [{"Id": name}]


class _Engine:
    images = _Store()


def _dispatch(method, target):
    router = Router()
    api.register(router, _Engine())
    return router.dispatch(Request(method, target))


def test_routes_names_with_registry_port_and_slashes():
    r = _dispatch("GET", "/v1.44/images/localhost:5000/a/b:tag/json")
    assert json.loads(r.body) == {"Id": "sha256:x", "Name": "localhost:5000/a/b:tag",
                                  "Api": "1.44"}
    r = _dispatch("GET", "/images/json/history")  # an image called "json"
    assert json.loads(r.body) == [{"Id": "json"}]


def test_build_and_search_are_not_implemented():
    with pytest.raises(errors.NotImplementedErr, match="the builder is not implemented yet"):
        _dispatch("POST", "/build")
    with pytest.raises(errors.NotImplementedErr, match="search"):
        _dispatch("GET", "/images/search?term=x")


# -- rmi's conflict rules -----------------------------------------------------------------------

IMAGE_ID = "sha256:" + "ab" * 32


class _DB:
    def __init__(self, keys):
        self.keys = list(keys)

    def untag(self, key):
        self.keys.remove(key)
        return IMAGE_ID

    def tags_for(self, image_id):
        return list(self.keys)


class _RmiStore:
    def __init__(self, keys):
        self.db = _DB(keys)
        self.removed = []

    def resolve(self, ref):
        return IMAGE_ID

    def config(self, ref):
        raise KeyError(ref)  # no labels

    def remove(self, ref, force=False, noprune=False):
        self.removed.append((ref, force))
        return [{"Untagged": ref}, {"Deleted": IMAGE_ID}]


class _Container:
    def __init__(self, cid, running):
        self.id, self.running, self.doc = cid, running, {"Image": IMAGE_ID}


class _Bus:
    def __init__(self):
        self.events = []

    def emit(self, kind, action, actor, attributes):
        self.events.append((kind, action, actor))


class _RmiEngine:
    def __init__(self, containers, keys=("docker.io/library/app:1",)):
        self.images = _RmiStore(keys)
        self.events = _Bus()
        self._containers = containers

    def all(self):
        return list(self._containers)


def test_rmi_by_id_running_container_cannot_be_forced():
    engine = _RmiEngine([_Container("c" * 64, True)])
    with pytest.raises(errors.Conflict, match=r"^conflict: unable to delete abababababab "
                       r"\(cannot be forced\) - image is being used by running container "
                       r"cccccccccccc$"):
        ops.remove_image(engine, "ababab", force=True)
    assert engine.images.removed == []


def test_rmi_by_id_stopped_container_must_be_forced():
    engine = _RmiEngine([_Container("d" * 64, False)])
    with pytest.raises(errors.Conflict, match=r"\(must be forced\) - image is being used by "
                       r"stopped container dddddddddddd"):
        ops.remove_image(engine, IMAGE_ID)
    assert ops.remove_image(engine, IMAGE_ID, force=True)[-1] == {"Deleted": IMAGE_ID}
    assert engine.images.removed == [(IMAGE_ID, True)]
    assert [a for _, a, _ in engine.events.events] == ["untag", "delete"]


def test_rmi_force_of_a_reference_a_running_container_uses_only_untags():
    keys = ["docker.io/library/app:1", "docker.io/library/app@sha256:" + "1" * 64,
            "docker.io/library/other:2"]
    engine = _RmiEngine([_Container("e" * 64, True)], keys)
    records = ops.remove_image(engine, "app:1", force=True)
    assert records == [{"Untagged": "app:1"}, {"Untagged": "app@sha256:" + "1" * 64}]
    assert engine.images.db.keys == ["docker.io/library/other:2"]
    assert engine.images.removed == []  # the image stays
    assert [a for _, a, _ in engine.events.events] == ["untag", "untag"]
