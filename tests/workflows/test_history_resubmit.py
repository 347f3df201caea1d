"""`caliban resubmit` against the cloud emulator: interrupted sweeps end with every job exactly once."""

import collections
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from caliban import history

from caliban.sweep import labels
from caliban.history import states
from caliban.workflows import resubmit as resend
from tests import cloud_helpers
from tests.cloud_helpers import (
    BODIES, IMAGE, PROJECT, REGION, REPO, client_for, history_env, ml_body, vertex_body,
)
from tests.docker_helpers import BASE_IMAGE, REGISTRY, cleanup, engine_and_registry, remove_pushed

# What `caliban cloud` does once wired to the history: record the sweep, then
# submit through the engine with the recorder's callbacks.
SWEEP = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from caliban import history
    from caliban.cloud import auth as cloud_auth
    from caliban.cloud import client as cloud_client
    from caliban.cloud import submit as cloud_submit
    from caliban.workflows import submit
    from tests.cloud_helpers import BODIES
    db, url, key, backend, group, n, rate = sys.argv[1:8]
    n, rate = int(n), float(rate)
    make = BODIES[backend]
    bodies = [make(f"{{group}}-{{i}}", i) for i in range(n)]
    with history.Store(db) as store:
        _, rows = submit.record_sweep(
            store, xgroup=group, backend=backend, project="caliban-test", region="us-central1",
            api_endpoint=url, cloud_key=None, build_args={{"image_tag": {image!r}}}, image_uri={image!r},
            docker_id=None, digest=None, jobs=[history.NewJob(args=["--i", str(i)], flags={{"i": i}}, request=b,
                                 caliban_key=b["labels"]["caliban_key"]) for i, b in enumerate(bodies)])
        print("recorded", flush=True)
        creds, _ = cloud_auth.load_credentials(key)
        client = cloud_client.CloudClient(backend, "caliban-test", "us-central1", creds, api_endpoint=url)
        jobs = [cloud_submit.SubmitJob(key=b["labels"]["caliban_key"], body=b, display_name=str(i), payload=j)
                for i, (b, j) in enumerate(zip(bodies, rows))]
        cb = submit.CloudSweepRecorder(store)
        result = cloud_submit.Submitter(client, rate_limit=rate).submit(
            jobs, on_before_send=cb.on_before_send, on_result=cb.on_result)
        sys.exit(result.exit_code)
    """
)


def caliban(db, emu, *argv):
    return cloud_helpers.caliban(db, emu, *argv, timeout=300)


def args_count(emu, backend):
    return collections.Counter(
        tuple(j["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]) if backend == "vertex"
        else tuple(j["trainingInput"]["args"])
        for j in emu.jobs(backend)
    )


@pytest.mark.parametrize("backend", ["vertex", "ml_v1"])
def test_sweep_killed_midway_then_resubmit_sends_every_job_exactly_once(tmp_path, emulator, backend):
    db, n = tmp_path / "h.db", 24
    script = SWEEP.format(repo=str(REPO), image=IMAGE)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(db), emulator.url, emulator.key_path, backend, "sweep", str(n), "240"],
        env=history_env(db, emulator), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 60
    while len(emulator.jobs(backend)) < 6 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    created_before = len(emulator.jobs(backend))
    assert 6 <= created_before < n, proc.stderr.read()

    with history.Store(db) as s:
        jobs = s.jobs(group="sweep")
        assert len(jobs) == n  # the whole sweep was recorded before the first send
        by_status = collections.Counter(j.status for j in jobs)
        assert by_status[states.PENDING] >= n - created_before

    status = caliban(db, emulator, "status", "--xgroup", "sweep", "--max_jobs", "100")
    assert "PENDING" in status.stdout and "caliban resubmit --xgroup sweep" in status.stdout

    dry = caliban(db, emulator, "resubmit", "--xgroup", "sweep", "--dry_run")
    assert dry.returncode == 0, dry.stderr
    assert len(emulator.jobs(backend)) == created_before

    out = caliban(db, emulator, "resubmit", "--xgroup", "sweep", "--yes", "--rate_limit", "6000")
    assert out.returncode == 0, out.stdout + out.stderr

    assert emulator.counts_by_key(backend=backend) == {f"sweep-{i}": 1 for i in range(n)}
    assert args_count(emulator, backend) == {("--i", str(i)): 1 for i in range(n)}
    with history.Store(db) as s:
        jobs = s.jobs(group="sweep")
        assert len(jobs) == n  # unanswered rows were completed in place, not duplicated
        assert all(j.status == states.SUBMITTED and j.remote_id for j in jobs)
        remote_ids = {j["name"] if backend == "vertex" else j["jobId"] for j in emulator.jobs(backend)}
        assert {j.remote_id for j in jobs} == remote_ids

    again = caliban(db, emulator, "resubmit", "--xgroup", "sweep", "--yes")
    assert again.returncode == 0 and "Nothing to resubmit" in again.stdout
    assert len(emulator.jobs(backend)) == n


def test_resubmit_refuses_while_the_sweep_is_still_sending(tmp_path, emulator):
    db, n = tmp_path / "h.db", 20
    proc = subprocess.Popen(
        [sys.executable, "-c", SWEEP.format(repo=str(REPO), image=IMAGE), str(db), emulator.url,
         emulator.key_path, "vertex", "live", str(n), "30"],
        env=history_env(db, emulator), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 60
        while not emulator.jobs() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert emulator.jobs(), proc.stderr.read() if proc.poll() is not None else "nothing sent"
        status = caliban(db, emulator, "status", "--xgroup", "live")
        assert "still submitting them" in status.stdout, status.stdout
        out = caliban(db, emulator, "resubmit", "--xgroup", "live", "--yes")
        assert out.returncode == 1 and "still submitting to group live" in out.stderr
    finally:
        proc.kill()
        proc.wait()
    out = caliban(db, emulator, "resubmit", "--xgroup", "live", "--yes", "--rate_limit", "6000")
    assert out.returncode == 0, out.stdout + out.stderr
    assert emulator.counts_by_key() == {f"live-{i}": 1 for i in range(n)}


def test_created_but_unrecorded_job_is_adopted_not_sent_twice(tmp_path, emulator):
    """The worst moment to die: the create went through, the answer was never recorded."""
    db = tmp_path / "h.db"
    client = client_for(emulator, emulator.key_path, "vertex")
    with history.Store(db) as s:
        g = s.create_group("g")
        ids = s.add_jobs(g.id, [history.NewJob(args=["--i", str(i)], request=vertex_body(f"g-{i}", i),
                                               caliban_key=f"g-{i}") for i in range(3)],
                         backend="vertex", project=PROJECT, region=REGION, api_endpoint=emulator.url)
        for j in ids:
            s.mark_sending(j)
        client.create(vertex_body("g-0", 0))  # sent; the process died before mark_submitted
        s.mark_failed(ids[1], "unknown whether the job was created (connection dropped)")
        client.create(vertex_body("g-1", 1))
    out = caliban(db, emulator, "resubmit", "--xgroup", "g", "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert emulator.counts_by_key() == {"g-0": 1, "g-1": 1, "g-2": 1}
    with history.Store(db) as s:
        assert [s.job(j).status for j in ids] == [states.SUBMITTED] * 3


@pytest.mark.parametrize("backend", ["vertex", "ml_v1"])
def test_failed_and_stopped_jobs_get_a_new_attempt(tmp_path, emulator, backend):
    db = tmp_path / "h.db"
    client = client_for(emulator, emulator.key_path, backend)
    with history.Store(db) as s:
        g = s.create_group("g")
        image = s.record_image(uri=IMAGE, build_args={"image_tag": IMAGE})
        bodies = [BODIES[backend](f"g-{i}", i) for i in range(4)]
        ids = s.add_jobs(g.id, [history.NewJob(args=["--i", str(i)], request=b, caliban_key=f"g-{i}")
                                for i, b in enumerate(bodies)],
                         backend=backend, image_id=image, project=PROJECT, region=REGION,
                         api_endpoint=emulator.url)
        for j, b in zip(ids, bodies):
            created = client.create(b)
            s.mark_submitted(j, created["name"] if backend == "vertex" else created["jobId"])
        remote = [s.job(j).remote_id for j in ids]
    final = {"vertex": ("JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED"), "ml_v1": ("FAILED", "SUCCEEDED")}[backend]
    emulator.set_state(remote[0], final[0])  # failed while running
    emulator.set_state(remote[1], final[1])
    client.cancel(remote[2])
    with history.Store(db) as s:
        s.mark_stopped(ids[2])
    # ids[3] stays queued/submitted

    out = caliban(db, emulator, "resubmit", "--xgroup", "g", "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 job(s) to resubmit" in out.stdout
    assert args_count(emulator, backend) == {("--i", "0"): 2, ("--i", "1"): 1, ("--i", "2"): 2, ("--i", "3"): 1}
    assert len(set(emulator.counts_by_key(backend=backend))) == 6  # every attempt has its own key
    with history.Store(db) as s:
        latest = sorted(s.jobs(group="g", latest_only=True), key=lambda j: j.experiment_id)
        assert [j.status for j in latest] == [states.SUBMITTED, states.SUCCEEDED, states.SUBMITTED,
                                              states.SUBMITTED]
        assert [s.job(j).status for j in ids] == [states.FAILED, states.SUCCEEDED, states.STOPPED,
                                                  states.SUBMITTED]
        retry = latest[0]
        assert retry.id not in ids and retry.experiment_id == s.job(ids[0]).experiment_id
        assert retry.request["labels"]["caliban_key"] != "g-0"
        if backend == "ml_v1":
            assert retry.request["jobId"] != bodies[0]["jobId"]
        else:
            assert retry.request["displayName"] == bodies[0]["displayName"]

    everything = caliban(db, emulator, "resubmit", "--xgroup", "g", "--yes", "--all_jobs")
    assert everything.returncode == 0, everything.stdout + everything.stderr
    assert len(emulator.jobs(backend)) == 10


def one_unsent_vertex_job(tmp_path, emulator):
    """A history with group g holding one vertex job, recorded and never sent."""
    db = tmp_path / "h.db"
    with history.Store(db) as s:
        g = s.create_group("g")
        s.add_jobs(g.id, [history.NewJob(args=[], request=vertex_body("g-0", 0), caliban_key="g-0")],
                   backend="vertex", project=PROJECT, region=REGION, api_endpoint=emulator.url)
    return db


def test_resubmit_refuses_without_tty_and_unknown_group(tmp_path, emulator):
    db = one_unsent_vertex_job(tmp_path, emulator)
    out = caliban(db, emulator, "resubmit", "--xgroup", "g")
    assert out.returncode == 2 and "pass --yes" in out.stderr
    out = caliban(db, emulator, "resubmit", "--xgroup", "nope", "--yes")
    assert out.returncode == 1 and "no experiment group named 'nope'" in out.stderr
    assert emulator.jobs() == []


def test_select_resends_table():
    def job(status, remote_id=None, sent=None):
        return history.Job(id=1, experiment_id=1, group_name="g", backend="vertex", status=status,
                           user="u", name=None, remote_id=remote_id, caliban_key="k", project=None,
                           region=None, api_endpoint=None, request=None, error=None, exit_code=None,
                           created=0, updated=0, submitted=None, finished=None, sent=sent)

    cases = [
        (job(states.PENDING), False, "never sent"),
        (job(states.PENDING, sent=1.0), False, "maybe sent: looked up by label first"),
        (job(states.FAILED), False, "create failed: looked up by label first"),
        (job(states.FAILED, "r"), True, "failed"),
        (job(states.STOPPED, "r"), True, "stopped"),
    ]
    chosen, left = resend.select_resends([c[0] for c in cases], all_jobs=False)
    assert [(r.new_attempt, r.reason) for r in chosen] == [(c[1], c[2]) for c in cases]
    live = [job(s, "r") for s in (states.SUBMITTED, states.RUNNING, states.SUCCEEDED)]
    assert resend.select_resends(live, all_jobs=False) == ([], live)
    assert all(r.new_attempt for r in resend.select_resends(live, all_jobs=True)[0])


def test_retarget_request_keeps_everything_else():
    body = ml_body("k-1", 1)
    body["labels"]["docker_image"] = "old"
    out = resend.retarget_request("ml_v1", body, image="reg/x:new", caliban_key="k-2", job_id_suffix="abcdef12")
    assert out["trainingInput"]["masterConfig"]["imageUri"] == "reg/x:new"
    assert out["labels"]["caliban_key"] == "k-2" and out["labels"]["docker_image"] == labels.sanitize_labels([("docker_image", "reg/x:new")])["docker_image"]
    assert out["jobId"].endswith("_rabcdef12") and out["trainingInput"]["args"] == ["--i", "1"]
    again = resend.retarget_request("ml_v1", out, job_id_suffix="00000000")
    assert again["jobId"] == body["jobId"] + "_r00000000"
    assert body["labels"]["caliban_key"] == "k-1"  # the input is not modified
    v = resend.retarget_request("vertex", vertex_body("k", 0), image="reg/y:1")
    assert v["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] == "reg/y:1"


# ---------------------------------------------------- end to end: real `caliban cloud`

def test_real_cloud_sweep_killed_then_resubmitted_rebuilds_and_finishes(tmp_path, emulator):
    import json
    import uuid

    client = engine_and_registry()
    project = tmp_path / "proj"
    (project / "trainer").mkdir(parents=True)
    (project / "trainer" / "__init__.py").write_text("")
    (project / "trainer" / "train.py").write_text("import sys\nprint(sys.argv[1:])\n")
    n = 10
    (project / "exp.json").write_text(json.dumps({"seed": list(range(n))}))
    db = tmp_path / "h.db"
    env = dict(history_env(db, emulator), CALIBAN_BASE_IMAGE=BASE_IMAGE)
    repo = f"{REGISTRY}/test-history/{uuid.uuid4().hex[:8]}"
    cloud_argv = [sys.executable, "-m", "caliban", "cloud", "--xgroup", "e2e", "--api_endpoint", emulator.url,
                  "--project_id", PROJECT, "--nogpu", "--image_repo", repo, "--rate_limit", "60",
                  "--experiment_config", "exp.json", "trainer.train"]
    pushed = set()
    try:
        proc = subprocess.Popen(cloud_argv, cwd=project, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 400  # includes the first image build
        while len(emulator.jobs()) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        before = len(emulator.jobs())
        assert 3 <= before < n, err[-3000:]
        pushed |= {j["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] for j in emulator.jobs()}

        out = subprocess.run([sys.executable, "-m", "caliban", "resubmit", "--xgroup", "e2e", "--yes",
                              "--rate_limit", "6000"], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr[-3000:]
        # Rebuilt and pushed (an unchanged project normally gives the same content tag, which the
        # registry already has; a layer cache pruned meanwhile gives a new tag, pushed).
        assert "[build] step 1/" in out.stderr
        assert "already in the registry: not pushed again" in out.stderr or "Pushed " in out.stderr
        jobs = emulator.jobs()
        pushed |= {j["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] for j in jobs}
        assert all(uri.startswith(f"{repo}/proj:c") for uri in pushed)
        assert sorted(j["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"][-1] for j in jobs) == \
            sorted(str(i) for i in range(n))
        assert set(emulator.counts_by_key().values()) == {1} and len(jobs) == n
        with history.Store(db) as s:
            rows = s.jobs(group="e2e")
            assert len(rows) == n and all(r.status == states.SUBMITTED for r in rows)
            image = s.image(s.experiment(rows[0].experiment_id).image_id)
            assert image.build_args["target"] == "trainer.train" and image.build_args["gpu"] is False
    finally:
        for uri in pushed:
            remove_pushed(client, uri)
        cleanup(client, str(project))


def test_resubmit_refuses_another_backend(tmp_path, emulator):
    db = one_unsent_vertex_job(tmp_path, emulator)
    out = caliban(db, emulator, "resubmit", "--xgroup", "g", "--yes", "--backend", "ml_v1")
    assert out.returncode == 2 and "was sent to vertex" in out.stderr
    assert emulator.jobs() == []
