"""Paths the builder would otherwise split, expand or unquote, built for real
(see tests/docker_helpers.py), and paths no Dockerfile can carry refused
through the CLI before anything is built."""

from __future__ import annotations

import io
import os

import pytest

from caliban.docker.run import ContainerSpec, run_container
from tests.docker_helpers import BASE_IMAGE, TEST_LABEL, caliban, cleanup, engine_client, write

DATA_DIR = "data dir$HOME"  # a space, and a variable the builder would substitute
QUOTED_DIR = "it's \"q\" \\ é${X:-y}"  # quotes, a backslash, non-ASCII, a ${...} form
CODE_DIR = "code $PATH"  # the target's own directory (the last COPY)

LISTING = """
import os, sys
for top in sys.argv[1:]:
    for root, _, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            print("FILE", repr(path), repr(open(path).read()))
"""


@pytest.fixture(scope="module")
def client():
    return engine_client()


def test_directories_with_spaces_dollars_and_quotes_land_at_their_own_paths(client, tmp_path):
    root = str(tmp_path / "proj")
    write(root, ".calibanconfig.json", '{"base_image": "%s"}' % BASE_IMAGE)
    write(root, f"{DATA_DIR}/f.txt", "data\n")
    write(root, f"{QUOTED_DIR}/g.txt", "quoted\n")
    write(root, f"{CODE_DIR}/main.py", LISTING)
    try:
        result = caliban(["build", "--nogpu", "-d", DATA_DIR, "-d", QUOTED_DIR, f"{CODE_DIR}/main.py"], cwd=root)
        assert result.returncode == 0, result.stderr
        image = result.stdout.strip()
        assert image.startswith("sha256:")

        out, err = io.StringIO(), io.StringIO()
        spec = ContainerSpec(image=image, args=[DATA_DIR, QUOTED_DIR, CODE_DIR], labels=dict(TEST_LABEL))
        code, _ = run_container(client, spec, stdout=out, stderr=err)
        assert code == 0, err.getvalue()
        files = sorted(line for line in out.getvalue().splitlines() if line.startswith("FILE "))
        assert files == sorted([
            f"FILE {os.path.join(DATA_DIR, 'f.txt')!r} 'data\\n'",
            f"FILE {os.path.join(QUOTED_DIR, 'g.txt')!r} 'quoted\\n'",
            f"FILE {os.path.join(CODE_DIR, 'main.py')!r} {open(os.path.join(root, CODE_DIR, 'main.py')).read()!r}",
        ])
        # The label keeps the project path byte for byte (no \\uXXXX, no $ expansion).
        assert client.images.get(image).labels["caliban.source_dir"] == root
    finally:
        cleanup(client, root)


@pytest.mark.parametrize("bad", ["data\nRUN touch /pwned", "data\x1b[2Jdir", "data[1]"])
def test_a_directory_no_dockerfile_can_carry_is_refused_in_one_line_before_building(client, tmp_path, bad):
    root = str(tmp_path / "proj")
    write(root, ".calibanconfig.json", '{"base_image": "%s"}' % BASE_IMAGE)
    write(root, "main.py", "print('never')\n")
    write(root, f"{bad}/f.txt", "x\n")
    try:
        result = caliban(["build", "--nogpu", "-d", bad, "main.py"], cwd=root)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert repr(bad) in lines[0] and "-d/--dir" in lines[0] and "Traceback" not in result.stderr
        assert "\x1b" not in result.stderr
        assert result.stdout == ""
        assert client.images.list(filters={"label": f"caliban.source_dir={root}"}) == []
    finally:
        cleanup(client, root)


def test_a_failing_project_install_with_quoted_extras_still_gets_its_hint(client, tmp_path):
    root = str(tmp_path / "proj")
    write(root, ".calibanconfig.json", '{"base_image": "%s"}' % BASE_IMAGE)
    # The hint is for packaging files that read other project files (not yet
    # copied in at this step), so the failure is one: README.md is read.
    write(root, "README.md", "p\n")
    write(root, "setup.py", """
        from setuptools import setup
        setup(name="p", version="0.1", py_modules=[], long_description=open("README.md").read(),
              extras_require={"bad": ["six"]})
        """)
    write(root, "main.py", "print('never')\n")
    before = {image.id for image in client.images.list(all=True)}
    try:
        result = caliban(["build", "--nogpu", "--extras", "bad", "main.py"], cwd=root)
        assert result.returncode == 1
        last = result.stderr.splitlines()[-1]
        assert "RUN python -m pip install '.[bad]'" in last
        assert "so the build cache survives code edits" in last
    finally:
        cleanup(client, root)
        # A failed build leaves its last good layer behind, unlabeled.
        for image in client.images.list(all=True):
            if image.id not in before and not image.labels:
                try:
                    client.images.remove(image.id)
                except Exception:
                    pass
