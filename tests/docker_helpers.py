"""Shared setup for the tests that use the real Docker engine.

No engine -> the tests skip with the reason, except with CI=true, where a
missing engine (or base image) fails them: a green CI means the engine ran.
Everything the tests create carries the label caliban.test=1 or the unique
source directory of a test project, and is removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import tests

REPO = str(tests.REPO)
PYTHON = sys.executable
BASE_IMAGE = os.environ.get("CALIBAN_TEST_BASE_IMAGE", "caliban-test/base:bookworm")
REGISTRY = os.environ.get("CALIBAN_TEST_REGISTRY", "127.0.0.1:5000")
TEST_LABEL = {"caliban.test": "1"}


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason} (run .ci/test-env.sh)")
    pytest.skip(reason)


def engine_client():
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        _unavailable(f"no Docker engine reachable: {str(exc).splitlines()[0] if str(exc) else exc!r}")
    try:
        client.images.get(BASE_IMAGE)
    except Exception:
        _unavailable(f"base image {BASE_IMAGE} is missing (run .ci/test-env.sh)")
    return client


def engine_and_registry():
    """A docker-py client, for tests that build and push to the loopback registry."""
    import urllib.request

    try:
        import docker

        client = docker.from_env(timeout=300)
        client.ping()
        client.images.get(BASE_IMAGE)
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5).read()
        return client
    except Exception as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Docker engine, {BASE_IMAGE} or registry {REGISTRY} unavailable with CI=true: {e}")
        pytest.skip(f"Docker engine, {BASE_IMAGE} or registry {REGISTRY} unavailable: {e}")


def remove_pushed(client, uri: str) -> None:
    """Delete an image a test pushed, from the loopback registry and the engine; best effort."""
    import urllib.request

    name, tag = uri[len(REGISTRY) + 1:].rsplit(":", 1)
    head = urllib.request.Request(f"http://{REGISTRY}/v2/{name}/manifests/{tag}", method="HEAD",
                                  headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    try:
        with urllib.request.urlopen(head, timeout=10) as resp:
            digest = resp.headers["Docker-Content-Digest"]
        urllib.request.urlopen(urllib.request.Request(f"http://{REGISTRY}/v2/{name}/manifests/{digest}",
                                                      method="DELETE"), timeout=10).read()
    except OSError:
        pass
    try:
        client.images.remove(uri, force=True)
    except Exception:
        pass


def cleanup(client, source_dir: str) -> None:
    """Remove the images built from `source_dir` and the containers of them:
    Caliban's (labelled with the source dir) and the test's own (labelled
    caliban.test=1) that run one of those images. Nothing of another test's,
    so that two suites can share one engine."""
    images = {image.id: image for image in client.images.list(filters={"label": f"caliban.source_dir={source_dir}"})}
    mine = [*client.containers.list(all=True, filters={"label": f"caliban.source_dir={source_dir}"}),
            *(c for c in client.containers.list(all=True, filters={"label": "caliban.test=1"})
              if c.attrs.get("Image") in images)]
    for container in mine:
        try:
            container.remove(force=True)
        except Exception:
            pass
    for image_id in images:
        try:
            client.images.remove(image_id, force=True, noprune=False)
        except Exception:
            pass


def write(root, rel: str, text: str, mode: int | None = None) -> None:
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(textwrap.dedent(text).lstrip("\n"))
    if mode is not None:
        os.chmod(path, mode)


def make_project(root) -> str:
    """A small research project: module, script and shell targets,
    requirements.txt, setup.py with extras, an apt package, a .dockerignore
    excluding a large file, and a key file that must not enter the image."""
    write(root, ".calibanconfig.json", json.dumps({"base_image": BASE_IMAGE, "apt_packages": ["tree"]}))
    write(root, "requirements.txt", "six\n")
    write(
        root,
        "setup.py",
        """
        from setuptools import setup

        setup(
            name="testproj",
            version="0.1",
            py_modules=[],
            install_requires=[],
            extras_require={
                "cpu": ["idna"],
                "gpu": ["this-package-does-not-exist-caliban-gpu"],
                "fancy": ["toolz"],
            },
        )
        """,
    )
    write(root, "trainer/__init__.py", "")
    write(root, "trainer/util.py", "VERSION = 'v1'\n")
    write(
        root,
        "trainer/train.py",
        """
        import importlib.util, os, shutil, sys
        import six
        from trainer import util

        args = sys.argv[1:]
        print("module-target", util.VERSION, "args=" + " ".join(args))
        print("six", six.__version__)
        print("extras", [m for m in ("idna", "toolz") if importlib.util.find_spec(m)])
        print("tree", bool(shutil.which("tree")))
        print("python", sys.executable)
        print("uid", os.getuid())
        print("extra-dir", os.path.exists("data/small.txt"), os.path.exists("data/big.bin"))
        print("creds", os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"),
              os.path.exists(os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or "/nonexistent"))
        print("to-stderr", file=sys.stderr)
        if "--fail" in args:
            sys.exit(int(args[args.index("--fail") + 1]))
        if "--sleep" in args:
            import time
            print("sleeping", flush=True)
            time.sleep(600)
        """,
    )
    write(
        root,
        "scripts/hello.py",
        """
        import sys
        print("script-target", sys.argv[1:])
        """,
    )
    write(
        root,
        "run.sh",
        """
        #!/bin/bash
        echo "shell-target $*"
        for f in data/big.bin data/small.txt notes.log keep.log sa-key.json; do
          if [ -e "$f" ]; then echo "present $f"; else echo "absent $f"; fi
        done
        """,
        mode=0o755,
    )
    write(root, "data/small.txt", "small\n")
    with open(os.path.join(str(root), "data", "big.bin"), "wb") as fh:
        fh.write(os.urandom(1024) * (20 * 1024))  # 20 MB that must not be sent
    write(root, "notes.log", "log\n")
    write(root, "keep.log", "keep\n")
    write(root, "sa-key.json", json.dumps({"type": "service_account", "private_key": "-----BEGIN"}))
    write(root, ".dockerignore", "# big data stays home\ndata/big.bin\n*.log\n!keep.log\n")
    return str(root)


def caliban(args, cwd, timeout=600, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("CALIBAN_DB_URL", os.path.join(os.path.dirname(str(cwd)), "history.db"))
    return subprocess.run(
        [PYTHON, "-m", "caliban", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
