"""Multi-node jobs on the real local Docker engine (caliban.docker.cluster).

A tiny image (the test base image plus a standard-library rendezvous script)
runs as 3 replicas on a private network; the tests check what the replicas
printed, how a failing replica ends the job, and that nothing is left on the
engine afterwards. The replica specs are also checked without an engine.
"""

import io
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from caliban.docker.run import ContainerSpec, parse_docker_run_args
from caliban.errors import UsageError
from tests.docker_helpers import BASE_IMAGE, REPO, TEST_LABEL, engine_client

RENDEZVOUS = r'''
import json, os, socket, sys, time

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
task = json.loads(os.environ["CLUSTER_SPEC"])["task"]
print(f"rank {rank} of {world} is {task['type']}/{task['index']} on {socket.gethostname()}", flush=True)
args = sys.argv[1:]
if "--fail-rank" in args:
    if rank == int(args[args.index("--fail-rank") + 1]):
        print("failing", flush=True)
        sys.exit(int(args[args.index("--code") + 1]))
    time.sleep(600)
if "--sleep" in args:
    print("sleeping", flush=True)
    time.sleep(600)
if rank == 0:
    server = socket.create_server(("0.0.0.0", port))
    gathered = [0]
    for _ in range(world - 1):
        conn, _ = server.accept()
        gathered.append(int(conn.makefile().readline()))
        conn.close()
    print("gathered ranks", sorted(gathered), flush=True)
else:
    for _ in range(600):
        try:
            with socket.create_connection((addr, port), timeout=5) as conn:
                conn.sendall(f"{rank}\n".encode())
            break
        except OSError:
            time.sleep(0.1)
    else:
        sys.exit(f"rank {rank}: {addr}:{port} never answered")
    print("sent", rank, "to", f"{addr}:{port}", flush=True)
'''


@pytest.fixture(scope="module")
def engine():
    return engine_client()


@pytest.fixture(scope="module")
def image(engine, tmp_path_factory):
    """The base image with the rendezvous script as its entrypoint."""
    context = tmp_path_factory.mktemp("cluster-image")
    (context / "rendezvous.py").write_text(RENDEZVOUS)
    (context / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {BASE_IMAGE}
        COPY rendezvous.py /app/rendezvous.py
        ENTRYPOINT ["python", "/app/rendezvous.py"]
        """))
    tag = f"caliban-test/cluster:{uuid.uuid4().hex[:8]}"
    built, _ = engine.images.build(path=str(context), tag=tag, labels=dict(TEST_LABEL), rm=True, forcerm=True,
                                   pull=False)
    yield tag
    engine.images.remove(built.id, force=True)


# Replicas carry their own test label: other suites sweep up `caliban.test=1`
# containers when they finish, which would kill a running job's replicas.
# Each job is found (and cleaned) by its unique caliban.job label.
REPLICA_LABELS = {"caliban.test.cluster": "1"}


def _leftovers(engine, job_id):
    flt = {"label": f"caliban.job={job_id}"}
    return engine.containers.list(all=True, filters=flt), engine.networks.list(filters=flt)


def _run(engine, image, nodes, args, job_id):
    """run_cluster_job in a thread; the join bound keeps a broken fail-fast
    from hanging the suite (replicas would sleep 600 s), it measures nothing."""
    from caliban.docker.cluster import run_cluster_job

    out, err, outcome = io.StringIO(), io.StringIO(), {}

    def target():
        try:
            outcome["result"] = run_cluster_job(
                engine, ContainerSpec(image=image, args=args, labels=dict(REPLICA_LABELS)), nodes,
                job_id=job_id, label="2/4", stdout=out, stderr=err)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(300)
    assert not thread.is_alive(), f"the job did not end: {out.getvalue()} {err.getvalue()}"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"], out.getvalue(), err.getvalue()


def test_three_replicas_find_each_other(engine, image):
    job_id = uuid.uuid4().hex[:12]
    try:
        result, out, err = _run(engine, image, 3, [], job_id)
        assert (result.exit_code, result.codes, result.failed_rank) == (0, [0, 0, 0], None), out + err
        lines = out.splitlines()
        assert "[job 2/4 rank 0] gathered ranks [0, 1, 2]" in lines
        assert "[job 2/4 rank 0] rank 0 of 3 is workerpool0/0 on workerpool0-0" in lines
        assert "[job 2/4 rank 2] rank 2 of 3 is workerpool1/1 on workerpool1-1" in lines
        for rank in (1, 2):
            assert f"[job 2/4 rank {rank}] sent {rank} to workerpool0-0:2222" in lines
        assert _leftovers(engine, job_id) == ([], [])
    finally:
        _clean(engine, job_id)


def test_a_failing_replica_stops_the_job_at_once(engine, image):
    job_id = uuid.uuid4().hex[:12]
    try:
        result, out, err = _run(engine, image, 3, ["--fail-rank", "1", "--code", "3"], job_id)
        assert result.failed_rank == 1 and result.exit_code == 3 and result.codes[1] == 3
        # The others were stopped, not left to finish their 600 s sleep (which exits 0).
        assert result.codes[0] not in (0, None) and result.codes[2] not in (0, None), result.codes
        assert "[job 2/4 rank 1] failing" in out.splitlines()
        assert "==> job 2/4 rank 1 exited 3; stopping rank 0, 2" in err.splitlines()
        assert _leftovers(engine, job_id) == ([], [])
    finally:
        _clean(engine, job_id)


def test_sigterm_removes_replicas_and_network(engine, image):
    job_id = uuid.uuid4().hex[:12]
    code = textwrap.dedent(f"""
        import docker
        from caliban.docker.cluster import run_cluster_job
        from caliban.docker.run import ContainerSpec
        run_cluster_job(docker.from_env(), ContainerSpec(image={image!r}, args=["--sleep"],
                        labels={REPLICA_LABELS!r}), 3, job_id={job_id!r})
        """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # all three replicas are up and sleeping
            running = engine.containers.list(filters={"label": f"caliban.job={job_id}", "status": "running"})
            if len(running) == 3 and all(b"sleeping" in c.logs() for c in running):
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the replicas never started"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode != 0 and "KeyboardInterrupt" in err, (proc.returncode, out, err)
        assert _leftovers(engine, job_id) == ([], []), (out, err)
    finally:
        if proc.poll() is None:
            proc.kill()
        _clean(engine, job_id)


def _clean(engine, job_id):
    containers, networks = _leftovers(engine, job_id)
    for container in containers:
        container.remove(force=True)
    for network in networks:
        network.remove()


# -- without an engine: what each replica's container is ------------------------

def test_replica_specs_network_aliases_init_and_labels():
    from caliban.docker.cluster import replica_specs

    spec = ContainerSpec(image="img", args=["--lr", "0.1"], env={"A": "1"}, labels={"caliban.target": "t"})
    specs = replica_specs(spec, 2, "abc123", ["python", "-m", "trainer.train"])
    cmd = specs[1].docker_command()
    assert "--init" in cmd
    assert ["--network", "caliban-abc123", "--network-alias", "workerpool1-0",
            "--hostname", "workerpool1-0"] == cmd[cmd.index("--network"):cmd.index("--network") + 6]
    assert "caliban.job=abc123" in cmd and "caliban.replica=1" in cmd and "caliban.target=t" in cmd
    assert cmd[-5:] == ["python", "-m", "trainer.train", "--lr", "0.1"]
    assert specs[1].env["A"] == "1"
    assert json.loads(specs[1].env["CLUSTER_SPEC"])["task"] == {"type": "workerpool1", "index": 0}
    assert spec.env == {"A": "1"} and spec.network is None  # the template is untouched


def test_replica_gpu_sets_become_device_requests():
    import docker

    from caliban.docker.cluster import replica_specs

    specs = replica_specs(ContainerSpec(image="img", gpu=True), 2, "j1", [], gpu_sets=[["0", "1"], ["2", "3"]])
    assert "device=2,3" in specs[1].docker_command()
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")  # builds configs offline
    host = specs[1].create_kwargs(api)["host_config"]
    assert [(r["DeviceIDs"], r["Capabilities"]) for r in host["DeviceRequests"]] == [(["2", "3"], [["gpu"]])]
    assert host["Init"] is True and host["NetworkMode"] == "caliban-j1"


@pytest.mark.parametrize("run_args, nodes, needle", [
    ("--network host", 2, "runs on its own private network"),
    ("-p 8888:8888", 2, "every replica would publish the same host port"),
])
def test_replica_specs_refuse_conflicting_run_args(run_args, nodes, needle):
    from caliban.docker.cluster import replica_specs

    with pytest.raises(UsageError, match=needle):
        replica_specs(ContainerSpec(image="img", extra=parse_docker_run_args(run_args)), nodes, "j", [])


def test_gpu_job_larger_than_the_machine_is_refused_before_anything_runs(engine):
    from caliban.docker.cluster import run_cluster_job
    from caliban.sweep.gpus import GpuPool

    job_id = uuid.uuid4().hex[:12]
    with pytest.raises(UsageError, match=r"3 nodes x 2 GPUs per node needs 6 GPUs but this machine has only 4"):
        run_cluster_job(engine, ContainerSpec(image=BASE_IMAGE, gpu=True, labels=dict(REPLICA_LABELS)), 3,
                        job_id=job_id, gpu_pool=GpuPool(["0", "1", "2", "3"]), gpus_per_node=2)
    assert _leftovers(engine, job_id) == ([], [])
