"""`caliban shell` in a pseudo-terminal, against the real engine."""

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
        assert not client.containers.list(all=True, filters={"label": "caliban.shell=1", "status": "running"})
    finally:
        cleanup(client, root)


def test_notebook_serves_jupyter_on_the_port_and_ctrl_c_stops_it(client, tmp_path):
    import socket as _socket
    import urllib.request

    import pexpect

    from caliban.commands.notebook import first_free_port

    root = str(tmp_path / "nbproj")
    write(root, ".calibanconfig.json", '{"base_image": "%s"}' % BASE_IMAGE)
    port = first_free_port(18888)
    env = dict(os.environ, CALIBAN_DB_URL=str(tmp_path / "history.db"))
    try:
        child = pexpect.spawn(PYTHON, ["-m", "caliban", "notebook", "--nogpu", "--bare", "--port", str(port)],
                              cwd=root, env=env, encoding="utf-8", timeout=600)
        child.expect(rf"http://127\.0\.0\.1:{port}/\S*")
        deadline = 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=10) as resp:
                    assert resp.status == 200 and b"version" in resp.read()
                break
            except (OSError, _socket.timeout):
                deadline -= 1
                if deadline == 0:
                    raise
                import time

                time.sleep(1)
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 130
        assert not client.containers.list(all=True, filters={"label": "caliban.notebook=1"})
    finally:
        cleanup(client, root)
