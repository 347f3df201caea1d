"""Image push: content tags, registry auth choice, and real pushes to the loopback registry."""

import io
import json
import os
import tarfile
import urllib.error
import urllib.request
import uuid

import pytest

from caliban.docker import push as image_push
from caliban.errors import CalibanError
from tests import cloud_emulator as ce

REGISTRY = os.environ.get("CALIBAN_TEST_REGISTRY", "127.0.0.1:5000")


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the Docker tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def docker_client():
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as e:  # no engine, no socket, no permission
        _unavailable(f"no Docker engine reachable: {e}")
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5).read()
    except OSError as e:
        _unavailable(f"no loopback registry at {REGISTRY} (run .ci/test-env.sh): {e}")
    yield client
    client.close()


def tiny_image(client, nonce: str) -> str:
    """A two-file image FROM scratch: builds in a second, pulls nothing."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY nonce /nonce\nLABEL caliban.test=1\n"),
                           ("nonce", nonce.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    image, _ = client.images.build(fileobj=buf, custom_context=True, labels={"caliban.test": "1"}, rm=True,
                                   tag=f"caliban-test/tiny:{nonce[:12]}")
    return image.id


def registry_tags(name: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/{name}/tags/list", timeout=10) as r:
            return json.loads(r.read()).get("tags") or []
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return []
        raise


def delete_from_registry(name: str, tag: str) -> None:
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    req = urllib.request.Request(f"http://{REGISTRY}/v2/{name}/manifests/{tag}", method="HEAD",
                                 headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            digest = r.headers["Docker-Content-Digest"]
        urllib.request.urlopen(urllib.request.Request(f"http://{REGISTRY}/v2/{name}/manifests/{digest}",
                                                      method="DELETE"), timeout=10).read()
    except urllib.error.HTTPError:
        pass


@pytest.fixture
def pushed_repo(docker_client):
    """A fresh repository name; its images and registry content are removed afterwards."""
    name = f"caliban-test/push-{uuid.uuid4().hex[:10]}"
    yield name
    for tag in registry_tags(name):
        delete_from_registry(name, tag)
    for image in docker_client.images.list(filters={"label": "caliban.test=1"}):
        for ref in image.tags:
            if ref.startswith((f"{REGISTRY}/{name}:", "caliban-test/tiny:")):
                docker_client.images.remove(ref, force=True)


def test_push_then_unchanged_image_is_not_pushed_again(docker_client, pushed_repo):
    image_id = tiny_image(docker_client, uuid.uuid4().hex)
    repository = f"{REGISTRY}/{pushed_repo}"
    out = io.StringIO()
    first = image_push.push_image(image_id, repository, client=docker_client, stream=out, progress=True)
    tag = image_push.content_tag(image_id)
    assert first.pushed and first.uri == f"{repository}:{tag}"
    assert first.digest and first.digest.startswith("sha256:")
    assert registry_tags(pushed_repo) == [tag]
    assert f"Pushed {first.uri}" in out.getvalue()

    # The registry, not the local tag, decides: drop the local tag and push again.
    docker_client.images.remove(first.uri)
    second = image_push.push_image(image_id, repository, client=docker_client, stream=io.StringIO(), progress=False)
    assert not second.pushed and second.uri == first.uri
    assert second.digest == first.digest

    # Different content, different tag.
    other = tiny_image(docker_client, uuid.uuid4().hex)
    third = image_push.push_image(other, repository, client=docker_client, stream=io.StringIO(), progress=False)
    assert third.pushed and third.uri != first.uri
    assert sorted(registry_tags(pushed_repo)) == sorted([tag, image_push.content_tag(other)])
    docker_client.images.remove(other, force=True)
    docker_client.images.remove(image_id, force=True)


def test_push_to_an_unreachable_registry_is_a_clear_error(docker_client):
    image_id = tiny_image(docker_client, uuid.uuid4().hex)
    repository = "127.0.0.1:9/caliban-test/nowhere"
    try:
        with pytest.raises(CalibanError, match=r"pushing 127.0.0.1:9/caliban-test/nowhere:c[0-9a-f]{32} failed"):
            image_push.push_image(image_id, repository, client=docker_client, stream=io.StringIO(), progress=False)
    finally:
        docker_client.images.remove(image_id, force=True)


def test_missing_local_image(docker_client):
    with pytest.raises(CalibanError, match="not in the local Docker engine"):
        image_push.push_image("sha256:" + "0" * 64, f"{REGISTRY}/x/y", client=docker_client, stream=io.StringIO())


# -- no engine needed ----------------------------------------------------------


def test_content_tag_is_stable_and_tag_shaped():
    image_id = "sha256:" + "ab" * 32
    assert image_push.content_tag(image_id) == "c" + "ab" * 16
    assert image_push.content_tag(image_id) == image_push.content_tag(image_id)


@pytest.mark.parametrize(
    "repository, host, google",
    [
        ("us-central1-docker.pkg.dev/p/caliban/img", "us-central1-docker.pkg.dev", True),
        ("gcr.io/p/img", "gcr.io", True),
        ("eu.gcr.io/p/img", "eu.gcr.io", True),
        ("127.0.0.1:5000/test/caliban", "127.0.0.1:5000", False),
        ("localhost/x", "localhost", False),
        ("ghcr.io/me/img", "ghcr.io", False),
        ("me/img", "docker.io", False),
    ],
)
def test_registry_host_and_auth_choice(repository, host, google):
    assert image_push.registry_host(repository) == host
    assert image_push.uses_google_auth(host) is google
    if not google:
        assert image_push.registry_auth(repository) is None  # the engine's own login


def test_default_repository_is_artifact_registry():
    assert image_push.default_repository("europe-west4", "proj") == "europe-west4-docker.pkg.dev/proj/caliban"


def test_google_registries_get_the_google_auth_token(tmp_path):
    from caliban.cloud import auth as cloud_auth

    with ce.CloudEmulator() as emu:
        credentials, _ = cloud_auth.load_credentials(emu.write_service_account_key(tmp_path / "key.json"))
        auth = image_push.registry_auth("us-central1-docker.pkg.dev/p/caliban/img", credentials)
        assert auth["username"] == "oauth2accesstoken"
        assert auth["password"].startswith("ya29.emulator-") and emu.token_grants == 1
    with pytest.raises(CalibanError, match="needs Google Cloud credentials"):
        image_push.registry_auth("gcr.io/p/img", None)
