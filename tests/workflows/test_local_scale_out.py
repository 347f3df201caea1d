"""`caliban run --nodes N` and `--max_parallel K` end to end, on the real engine.

- A 3-node job's replicas find each other through the environment Caliban
  gives them (MASTER_ADDR/RANK/WORLD_SIZE derived from Vertex's CLUSTER_SPEC)
  and rank 0 gathers every rank; the history records one job.
- Two experiments with --max_parallel 2 really run at the same time: each
  waits for the other to start, which one-after-another could never do.
"""

import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from tests.docker_helpers import BASE_IMAGE, cleanup, engine_client
from tests.cloud_helpers import REPO
from tests.docker.test_live_line import screen

RENDEZVOUS = textwrap.dedent(
    """
    import os, socket, sys, time
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    if rank == 0:
        server = socket.create_server(("0.0.0.0", port))
        ranks = [0]
        while len(ranks) < world:
            conn, _ = server.accept()
            ranks.append(int(conn.recv(16)))
            conn.close()
        print("gathered", sorted(ranks), flush=True)
    else:
        for _ in range(300):
            try:
                with socket.create_connection((addr, port), timeout=2) as conn:
                    conn.sendall(str(rank).encode())
                break
            except OSError:
                time.sleep(0.2)
        else:
            sys.exit("rank %d never reached %s:%d" % (rank, addr, port))
    """
)

BARRIER = textwrap.dedent(
    """
    import os, sys, time
    me = sys.argv[sys.argv.index("--me") + 1]
    other = {"a": "b", "b": "a"}[me]
    open("/marks/" + me, "w").close()
    for _ in range(600):
        if os.path.exists("/marks/" + other):
            print("met", other, flush=True)
            sys.exit(0)
        time.sleep(0.1)
    sys.exit("never met " + other)
    """
)


@pytest.fixture
def project(tmp_path):
    engine_client()  # skip (or fail with CI=true) without an engine
    root = tmp_path / "proj"
    (root / "trainer").mkdir(parents=True)
    (root / "trainer" / "__init__.py").write_text("")
    (root / "trainer" / "rendezvous.py").write_text(RENDEZVOUS)
    (root / "trainer" / "barrier.py").write_text(BARRIER)
    (root / ".calibanconfig.json").write_text(json.dumps({"base_image": BASE_IMAGE}))
    yield root
    cleanup(engine_client(), str(root))


def caliban(project, db, *argv):
    env = dict(os.environ, CALIBAN_DB_URL=str(db), PYTHONPATH=str(REPO), CALIBAN_BASE_IMAGE=BASE_IMAGE)
    return subprocess.run([sys.executable, "-m", "caliban", "run", "--nogpu", *argv], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_three_node_local_job_gathers_every_rank(project, tmp_path):
    db = tmp_path / "h.db"
    group = f"nodes-{tmp_path.name}"
    result = caliban(project, db, "--nodes", "3", "--xgroup", group, "trainer.rendezvous")
    assert result.returncode == 0, result.stderr
    assert "gathered [0, 1, 2]" in result.stdout
    assert "[job 1/1 rank 0] gathered [0, 1, 2]" in result.stdout
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT status FROM job")] == ["SUCCEEDED"]
    client = engine_client()
    assert client.containers.list(all=True, filters={"label": f"caliban.xgroup={group}"}) == []
    assert [n for n in client.networks.list() if n.name.startswith("caliban-") and
            n.attrs.get("Labels", {}).get("caliban.xgroup") == group] == []


def test_max_parallel_runs_experiments_at_the_same_time(project, tmp_path):
    db = tmp_path / "h.db"
    marks = tmp_path / "marks"
    marks.mkdir()
    (project / "pair.json").write_text(json.dumps({"me": ["a", "b"]}))
    result = caliban(project, db, "--max_parallel", "2", "--docker_run_args", f"-v {marks}:/marks",
                     "--experiment_config", "pair.json", "trainer.barrier")
    assert result.returncode == 0, result.stderr
    assert "[1/2] met b" in result.stdout and "[2/2] met a" in result.stdout
    assert "2 succeeded, 0 failed" in result.stderr
    assert "\x1b[" not in result.stderr + result.stdout  # no live line on a pipe
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT status FROM job ORDER BY id")] == ["SUCCEEDED", "SUCCEEDED"]


def test_on_a_terminal_a_live_line_follows_the_sweep_and_is_gone_at_the_end(project, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    (project / "pair.json").write_text(json.dumps({"me": ["a", "b"]}))
    env = dict(os.environ, CALIBAN_DB_URL=str(tmp_path / "h.db"), PYTHONPATH=str(REPO), CALIBAN_BASE_IMAGE=BASE_IMAGE)
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "caliban", "run", "--nogpu", "--max_parallel", "2",
                             "--docker_run_args", f"-v {marks}:/marks", "--experiment_config", "pair.json",
                             "trainer.barrier"], cwd=project, env=env, stdin=subprocess.DEVNULL,
                            stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks, deadline = [], time.time() + 600
    while time.time() < deadline:
        if not select.select([primary], [], [], 1)[0]:
            continue
        try:
            data = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.wait(60) == 0
    transcript = b"".join(chunks).decode().replace("\r\n", "\n")  # the terminal's own CR before each LF
    assert "[sweep] 2 running, 0 done, 0 waiting" in transcript
    kept, bottom = screen(transcript)
    assert "[1/2] met b" in kept and "[2/2] met a" in kept and "2 succeeded, 0 failed" in kept
    assert not [line for line in kept if "[sweep]" in line]
    assert bottom == ""
