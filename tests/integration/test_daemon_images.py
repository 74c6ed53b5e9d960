"""The image endpoints of `bosun daemon`, driven by the real docker CLI and the docker SDK:
pull/push against local registries (open and htpasswd with `docker login`), images, tag, rmi
and its conflicts, inspect, history, save | load, import --change, commit, prune, events.
Pushed digests are cross-checked with skopeo."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import time

import pytest

from bosun.demo import CACHE
from bosun.demo import busybox_tar
from bosun.testing.daemon import BosunDaemon
from bosun.testing.dockerd import DOCKER

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(DOCKER is None, reason="no docker CLI")]

SKOPEO = shutil.which("skopeo")


@pytest.fixture(scope="module")
def sdk(daemon):
    client = daemon.client()
    yield client
    client.close()


def out(r: subprocess.CompletedProcess) -> str:
    return r.stdout.decode()


def err(r: subprocess.CompletedProcess) -> str:
    return r.stderr.decode()


def fail(daemon: BosunDaemon, *args: str, input: bytes = b"") -> str:
    """Run a docker command that must fail; its output. stdin is given: a CLI that prompts
    (for a login, say) fails instead of waiting."""
    r = daemon.docker(*args, check=False, input=input)
    assert r.returncode != 0, out(r)
    return out(r) + err(r)


def rootfs_tar(files: dict[str, bytes]) -> bytes:
    """A small root filesystem tarball (for images with layers of their own)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def import_unique(daemon: BosunDaemon, ref: str, *changes: str) -> str:
    """A one-layer image no other image shares a layer with; its ID."""
    data = rootfs_tar({"unique": secrets.token_bytes(64)})
    args = [a for c in changes for a in ("-c", c)]
    return out(daemon.docker("import", *args, "-", ref, input=data)).strip()


def import_busybox_copy(daemon: BosunDaemon, ref: str, label: str) -> str:
    """An image of its own (another config) on busybox's layer; its ID."""
    with open(busybox_tar(CACHE), "rb") as f:
        data = f.read()
    return out(daemon.docker("import", "-c", f"LABEL copy={label}", "-c", 'CMD ["sh"]', "-",
                             ref, input=data)).strip()


@pytest.fixture(scope="module")
def containers_run(daemon) -> None:
    """Whether containers run (one try, cached): the tests that need one fail fast."""
    try:
        r = daemon.docker("run", "--rm", "busybox", "true", check=False, timeout=20)
        ok = r.returncode == 0
    except subprocess.TimeoutExpired:
        ok = False
    assert ok, "containers do not run on this daemon"


def skopeo_digest(ref: str) -> str:
    r = subprocess.run([SKOPEO, "inspect", "--tls-verify=false", f"docker://{ref}"],
                       check=True, capture_output=True, timeout=60)
    return json.loads(r.stdout)["Digest"]


def image_events(sdk, since: float, **filters) -> list[dict]:
    return list(sdk.events(since=since, until=time.time() + 0.1, decode=True,
                           filters={"type": "image", **filters}))


# -- local operations ----------------------------------------------------------------------------

def test_images_inspect_history_tag_rmi(daemon, sdk):
    t0 = time.time()
    image_id = json.loads(out(daemon.docker("image", "inspect", "busybox")))[0]["Id"]
    daemon.docker("tag", "busybox", "localhost:5000/team/app:v1")
    rows = [json.loads(line) for line in out(daemon.docker(
        "images", "--format", "{{json .}}")).splitlines()]
    assert {(r["Repository"], r["Tag"]) for r in rows} >= {
        ("busybox", "latest"), ("localhost:5000/team/app", "v1")}
    info = json.loads(out(daemon.docker("image", "inspect", "localhost:5000/team/app:v1")))[0]
    assert info["Id"] == image_id
    assert sorted(info["RepoTags"]) == ["busybox:latest", "localhost:5000/team/app:v1"]
    assert info["Config"]["Cmd"] == ["sh"] and info["Os"] == "linux"
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) == 1
    history = sdk.api.history("localhost:5000/team/app:v1")
    assert history[0]["Id"] == image_id and history[0]["Comment"] == "Imported from -"
    assert history[0]["Size"] > 1_000_000
    assert out(daemon.docker("rmi", "localhost:5000/team/app:v1")) == (
        "Untagged: localhost:5000/team/app:v1\n")
    assert "No such image: localhost:5000/team/app:v1" in fail(
        daemon, "image", "inspect", "localhost:5000/team/app:v1")
    actions = [(e["Action"], e["Actor"]["Attributes"].get("name")) for e in
               image_events(sdk, t0)]
    assert ("tag", "localhost:5000/team/app:v1") in actions
    assert ("untag", image_id) in actions


def test_api_errors(daemon, sdk):
    import docker

    with pytest.raises(docker.errors.ImageNotFound) as e:
        sdk.images.get("nope:1")
    assert "No such image: nope:1" in str(e.value)
    with pytest.raises(docker.errors.APIError) as e:
        sdk.api.tag("busybox", "Bad/Upper")
    assert e.value.status_code == 400
    with pytest.raises(docker.errors.APIError) as e:
        sdk.api.pull("no/Upper-case")
    assert e.value.status_code == 400 and "invalid reference format" in str(e.value)
    for method, path in (("post", "/build"), ("get", "/images/search?term=x")):
        r = getattr(sdk.api, f"_{method}")(sdk.api._url(path))
        assert r.status_code == 501 and r.json()["message"]
    assert "the builder is not implemented yet" in sdk.api._post(
        sdk.api._url("/build")).json()["message"]


def test_rmi_conflicts_with_a_stopped_container(daemon):
    image_id = import_unique(daemon, "rmi-me:1", 'CMD ["sh"]')
    daemon.docker("tag", "rmi-me:1", "rmi-me:2")
    cid = out(daemon.docker("create", "rmi-me:1")).strip()
    short, ishort = cid[:12], image_id.split(":")[1][:12]
    # another tag remains: untagging is fine
    assert out(daemon.docker("rmi", "rmi-me:2")) == "Untagged: rmi-me:2\n"
    assert (f'conflict: unable to remove repository reference "rmi-me:1" (must force) - '
            f"container {short} is using its referenced image {ishort}") in fail(
        daemon, "rmi", "rmi-me:1")
    assert (f"conflict: unable to delete {ishort} (must be forced) - image is being used by "
            f"stopped container {short}") in fail(daemon, "rmi", ishort)
    r = out(daemon.docker("rmi", "-f", "rmi-me:1"))
    assert r.splitlines() == ["Untagged: rmi-me:1", f"Deleted: {image_id}"]
    daemon.docker("rm", cid)


def test_rmi_conflicts_with_a_running_container(daemon, containers_run):
    image_id = import_busybox_copy(daemon, "rmi-run:1", "rmi-run")
    cid = out(daemon.docker("run", "-d", "rmi-run:1", "sleep", "60", timeout=30)).strip()
    try:
        ishort = image_id.split(":")[1][:12]
        assert (f"conflict: unable to delete {ishort} (cannot be forced) - image is being "
                f"used by running container {cid[:12]}") in fail(daemon, "rmi", "-f", ishort)
        # by reference with force: untagged, the image stays for the container
        assert out(daemon.docker("rmi", "-f", "rmi-run:1")) == "Untagged: rmi-run:1\n"
        assert json.loads(out(daemon.docker("image", "inspect", image_id)))[0]["RepoTags"] == []
    finally:
        daemon.docker("rm", "-f", cid)
    daemon.docker("rmi", image_id)


def test_save_load_round_trip(daemon, sdk):
    t0 = time.time()
    image_id = import_unique(daemon, "roundtrip:1", "LABEL purpose=roundtrip")
    saved = daemon.docker("save", "roundtrip:1").stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert {"index.json", "oci-layout", "manifest.json"} <= set(names)
    assert manifest[0]["RepoTags"] == ["roundtrip:1"]
    assert f"Deleted: {image_id}" in out(daemon.docker("rmi", "roundtrip:1")).splitlines()
    assert out(daemon.docker("load", input=saved)) == "Loaded image: roundtrip:1\n"
    assert json.loads(out(daemon.docker("image", "inspect", "roundtrip:1")))[0]["Id"] == image_id
    # the SDK: GET /images/{name}/get streamed, POST /images/load
    data = b"".join(sdk.images.get("roundtrip:1").save(named=True))
    assert data == saved  # save is deterministic
    daemon.docker("rmi", "roundtrip:1")
    loaded = sdk.images.load(data)
    assert [i.id for i in loaded] == [image_id]
    actions = {e["Action"] for e in image_events(sdk, t0, image=image_id)}
    assert {"import", "save", "delete", "load"} <= actions
    r = daemon.docker("save", "no-such:image", check=False)
    assert r.returncode != 0 and "No such image: no-such:image" in err(r)
    daemon.docker("rmi", "roundtrip:1")


def test_import_with_changes(daemon):
    with open(busybox_tar(CACHE), "rb") as f:
        data = f.read()
    image_id = out(daemon.docker(
        "import", "-c", "ENV GREETING=hello", "-c", 'CMD ["sh", "-c", "echo $GREETING"]',
        "-c", "WORKDIR /tmp", "-m", "made by a test", "-", "imported:v1", input=data)).strip()
    info = json.loads(out(daemon.docker("image", "inspect", "imported:v1")))[0]
    assert info["Id"] == image_id
    assert info["Config"]["Env"] == ["GREETING=hello"]
    assert info["Config"]["Cmd"] == ["sh", "-c", "echo $GREETING"]
    assert info["Config"]["WorkingDir"] == "/tmp"
    assert info["Comment"] == "made by a test"
    assert "RUN is not a valid change command" in fail(
        daemon, "import", "-c", "RUN true", os.devnull)
    daemon.docker("rmi", "imported:v1")


def test_commit_a_containers_changes(daemon, sdk, open_registry, repo_name):
    """The container's writes are simulated by writing into its snapshot's upper dir, so
    that this does not depend on containers running. The committed image can be pushed."""
    t0 = time.time()
    cid = out(daemon.docker("create", "-e", "FOO=bar", "busybox", "sh", "-c", "true")).strip()
    info = json.loads(out(daemon.docker("inspect", cid)))[0]
    with open(os.path.join(info["GraphDriver"]["Data"]["UpperDir"], "hello"), "w") as f:
        f.write("hi from the container\n")
    image_id = out(daemon.docker("commit", "-a", "tester", "-m", "a commit",
                                 "-c", "ENV X=1", "-c", 'CMD ["cat", "/hello"]', cid,
                                 "committed:v1")).strip()
    base = json.loads(out(daemon.docker("image", "inspect", "busybox")))[0]
    img = json.loads(out(daemon.docker("image", "inspect", "committed:v1")))[0]
    assert img["Id"] == image_id and img["Author"] == "tester" and img["Comment"] == "a commit"
    assert img["Config"]["Env"] == ["FOO=bar", "X=1"]
    assert img["Config"]["Cmd"] == ["cat", "/hello"]
    assert img["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"]
    assert len(img["RootFS"]["Layers"]) == 2
    old = sdk.api.__class__(base_url=daemon.host, version="1.44")
    legacy = old.inspect_image(image_id)
    old.close()
    assert legacy["Container"] == cid and legacy["ContainerConfig"]["Env"] == ["FOO=bar"]
    history = sdk.api.history(image_id)
    assert history[0]["CreatedBy"] == "sh -c true" and history[0]["Comment"] == "a commit"
    # the new layer holds the file: read it from a save
    with tarfile.open(fileobj=io.BytesIO(daemon.docker("save", image_id).stdout)) as tar:
        top = json.load(tar.extractfile("manifest.json"))[0]["Layers"][-1]
        with tarfile.open(fileobj=tar.extractfile(top)) as layer:
            assert layer.extractfile("hello").read() == b"hi from the container\n"
    remote = f"{open_registry.host}/{repo_name}:committed"
    daemon.docker("tag", image_id, remote)
    digest = out(daemon.docker("push", remote)).split("digest: ")[1].split()[0]
    if SKOPEO is not None:
        assert skopeo_digest(remote) == digest
    daemon.docker("rmi", remote)
    # no changes: no layer, an empty_layer history step (the SDK's commit, a body config)
    other = sdk.containers.create("busybox", ["true"])
    same = sdk.api.commit(other.id, repository="committed", tag="v2",
                          conf={"Labels": {"k": "v"}})["Id"]
    img2 = json.loads(out(daemon.docker("image", "inspect", same)))[0]
    assert img2["RootFS"]["Layers"] == base["RootFS"]["Layers"]
    assert img2["Config"]["Labels"] == {"k": "v"} and img2["Config"]["Cmd"] == ["true"]
    other.remove()
    daemon.docker("rm", cid)
    events = list(sdk.events(since=t0, until=time.time() + 0.1, decode=True,
                             filters={"type": "container", "event": "commit"}))
    assert [e["Actor"]["Attributes"]["imageID"] for e in events] == [image_id, same]
    assert events[0]["Actor"]["Attributes"]["imageRef"] == "committed:v1"
    daemon.docker("rmi", "committed:v1", "committed:v2")


def test_commit_then_run(daemon, containers_run):
    """A container writes a file; a container of the committed image reads it."""
    daemon.docker("run", "--name", "writer", "busybox", "sh", "-c",
                  "echo written > /made-here", timeout=30)
    daemon.docker("commit", "writer", "written:v1")
    daemon.docker("rm", "writer")
    r = daemon.docker("run", "--rm", "written:v1", "cat", "/made-here", timeout=30)
    assert out(r) == "written\n"
    daemon.docker("rmi", "written:v1")


def test_images_filters_and_prune(daemon, sdk):
    t0 = time.time()
    dangling = import_unique(daemon, "prune-me:1", "LABEL stage=tmp")
    labeled = import_unique(daemon, "prune-me:1", "LABEL stage=tmp")  # the tag moves
    ids = out(daemon.docker("images", "-q", "--no-trunc", "--filter", "dangling=true")).split()
    assert dangling in ids and labeled not in ids
    ids = out(daemon.docker("images", "-q", "--no-trunc", "--filter", "label=stage=tmp")).split()
    assert set(ids) == {dangling, labeled}
    rows = out(daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}",
                             "--filter", "reference=prune*")).split()
    assert rows == ["prune-me:1"]
    ids = out(daemon.docker("images", "-q", "--no-trunc", "--filter",
                            f"since={dangling}")).split()
    assert ids == [labeled]
    assert "invalid filter 'nope'" in fail(daemon, "images", "--filter", "nope=1")
    copy = import_busybox_copy(daemon, "shares-busybox:1", "shared")
    listed = sdk.api._result(sdk.api._get(sdk.api._url("/images/json"),
                                          params={"shared-size": 1}), json=True)
    shared = {i["Id"]: i["SharedSize"] for i in listed}
    assert shared[copy] == shared[sdk.images.get("busybox").id] > 1_000_000
    assert shared[labeled] == 0
    assert {i["SharedSize"] for i in sdk.api.images()} == {-1}
    daemon.docker("rmi", "shares-busybox:1")
    r = sdk.images.prune(filters={"dangling": True, "label": "stage=tmp"})
    assert next(d for d in r["ImagesDeleted"] if "Deleted" in d) == {"Deleted": dangling}
    assert r["SpaceReclaimed"] > 0
    r = sdk.images.prune(filters={"dangling": False, "label": "stage=other"})
    assert r == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    ids = out(daemon.docker("images", "-q", "--no-trunc")).split()
    assert labeled in ids and dangling not in ids
    daemon.docker("rmi", "prune-me:1")
    actions = [e["Action"] for e in image_events(sdk, t0)]
    assert "prune" in actions and "delete" in actions


# -- registries ---------------------------------------------------------------------------------

def test_push_pull_open_registry(daemon, sdk, open_registry, repo_name):
    t0 = time.time()
    ref = f"{open_registry.host}/{repo_name}"
    image_id = import_unique(daemon, f"{ref}:v1")
    pushed = out(daemon.docker("push", f"{ref}:v1"))
    assert pushed.startswith(f"The push refers to repository [{ref}]")
    digest = pushed.split("digest: ")[1].split()[0]
    info = json.loads(out(daemon.docker("image", "inspect", f"{ref}:v1")))[0]
    assert info["RepoDigests"] == [f"{ref}@{digest}"]
    if SKOPEO is not None:
        assert skopeo_digest(f"{ref}:v1") == digest
    # gone locally (layer and all), then pulled back with the SDK: Docker's JSON stream
    daemon.docker("rmi", f"{ref}:v1")
    messages = list(sdk.api.pull(ref, tag="v1", stream=True, decode=True))
    assert messages[0] == {"status": f"Pulling from {repo_name}", "id": "v1"}
    statuses = [m.get("status", "") for m in messages]
    for wanted in ("Pulling fs layer", "Download complete", "Pull complete",
                   f"Digest: {digest}", f"Status: Downloaded newer image for {ref}:v1"):
        assert wanted in statuses, statuses
    downloading = [m for m in messages if m.get("status") == "Downloading"]
    assert downloading and downloading[-1]["progressDetail"]["current"] > 0
    assert "progress" in downloading[-1]
    assert json.loads(out(daemon.docker("image", "inspect", f"{ref}:v1")))[0]["Id"] == image_id
    again = out(daemon.docker("pull", f"{ref}:v1"))
    assert f"Status: Image is up to date for {ref}:v1" in again
    # errors known before anything was streamed are plain API errors
    assert "manifest unknown" in fail(daemon, "pull", f"{ref}:nope").lower()
    actions = {(e["Action"], e["Actor"]["ID"]) for e in image_events(sdk, t0)}
    assert {("push", f"{ref}:v1"), ("pull", f"{ref}:v1")} <= actions
    daemon.docker("rmi", f"{ref}:v1")


def test_login_push_pull_basic_registry(daemon, sdk, basic_registry, repo_name):
    import docker

    host = basic_registry.host
    ref = f"{host}/{repo_name}"
    image_id = import_unique(daemon, f"{ref}:v1")
    denied = fail(daemon, "push", f"{ref}:v1")
    assert "401 Unauthorized" in denied
    msg = fail(daemon, "login", "-u", basic_registry.username, "--password-stdin", host,
               input=b"wrong")
    assert "unauthorized" in msg.lower()
    r = daemon.docker("login", "-u", basic_registry.username, "--password-stdin", host,
                      input=basic_registry.password.encode())
    assert "Login Succeeded" in out(r)
    try:
        digest = out(daemon.docker("push", f"{ref}:v1")).split("digest: ")[1].split()[0]
        daemon.docker("rmi", f"{ref}:v1")
        assert f"Downloaded newer image for {ref}:v1" in out(daemon.docker("pull", f"{ref}:v1"))
    finally:
        daemon.docker("logout", host)
    assert json.loads(out(daemon.docker("image", "inspect", f"{ref}:v1")))[0]["Id"] == image_id
    assert "unauthorized" in fail(daemon, "pull", f"{ref}:v1").lower()
    # the SDK: POST /auth, X-Registry-Auth on push and pull
    auth = {"username": basic_registry.username, "password": basic_registry.password}
    with pytest.raises(docker.errors.APIError) as e:
        sdk.login(basic_registry.username, "wrong", registry=host, reauth=True)
    assert e.value.status_code == 401
    assert sdk.login(registry=host, reauth=True, **auth)["Status"] == "Login Succeeded"
    sdk.api.tag(image_id, ref, "v2")
    lines = list(sdk.api.push(ref, tag="v2", auth_config=auth, stream=True, decode=True))
    assert lines[-1]["aux"]["Digest"] == digest  # the same manifest under another tag
    assert not [m for m in lines if "error" in m]
    if SKOPEO is not None:
        r = subprocess.run([SKOPEO, "inspect", "--tls-verify=false", "--creds",
                            f"{auth['username']}:{auth['password']}", f"docker://{ref}:v2"],
                           check=True, capture_output=True, timeout=60)
        assert json.loads(r.stdout)["Digest"] == digest
    daemon.docker("rmi", f"{ref}:v1", f"{ref}:v2")
    sdk.images.pull(ref, tag="v2", auth_config=auth)
    assert sdk.images.get(f"{ref}:v2").id == image_id
    daemon.docker("rmi", f"{ref}:v2")


def test_token_registry_credentials_per_request(daemon, sdk, token_registry, repo_name):
    """Bearer tokens: POST /auth through the token server; a request's tokens are its own
    (an anonymous pull after an authenticated push is refused); an identity token works."""
    import docker

    host, user, password = token_registry.host, token_registry.username, token_registry.password
    ref = f"{host}/{repo_name}"
    image_id = import_unique(daemon, f"{ref}:v1")
    with pytest.raises(docker.errors.APIError) as e:
        sdk.login(user, "not-the-password", registry=host, reauth=True)
    assert e.value.status_code == 401 and "unauthorized" in str(e.value).lower()
    assert sdk.login(user, password, registry=host, reauth=True)["Status"] == "Login Succeeded"
    lines = list(sdk.api.push(ref, tag="v1", auth_config={"username": user,
                                                           "password": password},
                              stream=True, decode=True))
    assert "aux" in lines[-1], lines
    daemon.docker("rmi", f"{ref}:v1")
    sdk.api.pull(ref, tag="v1", auth_config={"username": user, "password": password})
    daemon.docker("rmi", f"{ref}:v1")
    with pytest.raises(docker.errors.APIError) as e:  # the same scope, anonymously
        sdk.api.pull(ref, tag="v1", auth_config={})
    assert e.value.status_code == 403
    sdk.api.pull(ref, tag="v1", auth_config={"identitytoken": "identity-token-of-bob"})
    assert sdk.images.get(f"{ref}:v1").id == image_id
    assert any(r.method == "POST" and r.user == user for r in token_registry.token_server.requests)
    daemon.docker("rmi", f"{ref}:v1")


def test_docker_io_pulls_go_to_the_registry_mirror(daemon, open_registry, tmp_path):
    """A daemon with a registry mirror pulls Docker Hub names from it (this machine has no
    route to Docker Hub: only the mirror can have served the image)."""
    name = f"bsnmirror-{secrets.token_hex(4)}"
    mirrored = f"{open_registry.host}/library/{name}:v1"
    image_id = import_unique(daemon, mirrored)
    daemon.docker("push", mirrored)
    d = BosunDaemon(str(tmp_path / "mirrored"),
                    extra_args=("--registry-mirror", f"http://{open_registry.host}"))
    d.data_root.mkdir(parents=True)
    d.start()
    try:
        pulled = out(d.docker("pull", f"{name}:v1"))
        assert f"Status: Downloaded newer image for {name}:v1" in pulled
        info = json.loads(out(d.docker("image", "inspect", f"{name}:v1")))[0]
        assert info["Id"] == image_id
        assert info["RepoTags"] == [f"{name}:v1"]  # Docker Hub's name, not the mirror's
        # a name the mirror does not have: the mirror's answer, then the (unreachable)
        # origin's, fail the pull with an error, not a hang or a traceback
        r = d.docker("pull", f"{name}-missing:v1", check=False, timeout=120)
        assert r.returncode != 0 and r.stderr.strip() and b"Traceback" not in r.stderr
    finally:
        problems = d.teardown()
        daemon.docker("rmi", mirrored)
    assert not problems, problems
