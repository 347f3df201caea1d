"""`caliban shell` and `caliban notebook` in a pseudo-terminal, against the real engine.

The engine is shared (other test runs may use it at the same time), so each
test looks only at its own containers, found by the unique source directory
its image was built from (containers carry their image's labels), and lets
Caliban pick a free port rather than choosing one itself long before the
container binds it. Jupyter logs its URL a moment before it accepts
connections (the first request is sometimes reset), so the notebook test
waits until the server answers before it sends Ctrl-C.
"""

from __future__ import annotations

import os
import socket

import pytest

from tests.docker_helpers import BASE_IMAGE, PYTHON, cleanup, engine_client, write


@pytest.fixture(scope="module")
def client():
    return engine_client()


def test_shell_opens_a_prompt_in_the_container_with_the_project_mounted(client, tmp_path):
    import pexpect

    root = str(tmp_path / "shellproj")
    write(root, ".calibanconfig.json", '{"base_image": "%s"}' % BASE_IMAGE)
    write(root, "requirements.txt", "six\n")
    write(root, "marker-file.txt", "hello from the host\n")
    env = dict(os.environ, CALIBAN_DB_URL=str(tmp_path / "history.db"), PS1="$ ")
    try:
        child = pexpect.spawn(PYTHON, ["-m", "caliban", "shell", "--nogpu", "--bare"], cwd=root, env=env,
                              encoding="utf-8", timeout=300, dimensions=(40, 200))
        child.expect(r"[#$] ")
        # Inside the container: its hostname is the container's, not ours.
        child.sendline("echo HOST=$(hostname)=; pwd; cat marker-file.txt")
        child.expect(r"HOST=(\S+)=")
        assert child.match.group(1) != socket.gethostname()
        child.expect("hello from the host")
        assert "/usr/app" in child.before
        child.sendline("python -c 'import six, sys; print(\"SIX\", six.__version__, sys.prefix)'")
        child.expect(r"SIX 1\.\S+ /opt/venv")
        # Files written in the mounted directory appear on the host.
        child.sendline("echo from-container > written.txt; exit 7")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 7
        with open(os.path.join(root, "written.txt")) as fh:
            assert fh.read() == "from-container\n"
        st = os.stat(os.path.join(root, "written.txt"))
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
        assert not client.containers.list(all=True, filters={"label": f"caliban.source_dir={root}"})
    finally:
        cleanup(client, root)


def _first_answer(url: str, attempts: int = 240) -> tuple[int, bytes]:
    """The first HTTP answer from a server that has logged its URL but may not accept yet."""
    import http.client
    import time
    import urllib.request

    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.status, resp.read()
        except (OSError, http.client.HTTPException):  # reset or refused behind docker-proxy: not serving yet
            time.sleep(0.25)
    raise AssertionError(f"{url} never answered")


def test_notebook_serves_jupyter_on_the_port_and_ctrl_c_stops_it(client, tmp_path):
    import pexpect

    root = str(tmp_path / "nbproj")
    write(root, ".calibanconfig.json", '{"base_image": "%s"}' % BASE_IMAGE)
    env = dict(os.environ, CALIBAN_DB_URL=str(tmp_path / "history.db"))
    own = {"label": f"caliban.source_dir={root}"}
    try:
        child = pexpect.spawn(PYTHON, ["-m", "caliban", "notebook", "--nogpu", "--bare"],
                              cwd=root, env=env, encoding="utf-8", timeout=600)
        child.expect(r"serving on http://localhost:(\d+)")
        port = int(child.match.group(1))
        child.expect(rf"http://127\.0\.0\.1:{port}/\S*")
        status, body = _first_answer(f"http://127.0.0.1:{port}/api")
        assert status == 200 and b"version" in body
        assert client.containers.list(filters={**own, "status": "running"})
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 130
        assert not client.containers.list(all=True, filters=own)
    finally:
        cleanup(client, root)
