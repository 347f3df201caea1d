"""Dockerfile.base builds (on the local test base) and yields a usable Python."""

from __future__ import annotations

import io
import os
import tarfile
import uuid

from tests.docker_helpers import BASE_IMAGE, REPO, engine_client


def test_dockerfile_base_builds_a_python_image():
    client = engine_client()
    with open(os.path.join(REPO, "Dockerfile.base"), "rb") as fh:
        data = fh.read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    # A label of its own makes this run's image distinct: without it, concurrent
    # runs on a shared engine build the same image id, and one run's removal
    # fails on another run's container.
    labels = {"caliban.test": "1", "caliban.test.case": uuid.uuid4().hex}
    image, _ = client.images.build(
        fileobj=buf, custom_context=True, buildargs={"BASE_IMAGE": BASE_IMAGE}, labels=labels,
        rm=True, forcerm=True,
    )
    try:
        out = client.containers.run(
            image.id, ["sh", "-c", "python --version && python3 -m venv /tmp/v && /tmp/v/bin/pip --version"],
            remove=True, labels={"caliban.test": "1"},
        ).decode()
        assert out.startswith("Python 3.")
        assert "pip " in out
    finally:
        client.images.remove(image.id, force=True)
