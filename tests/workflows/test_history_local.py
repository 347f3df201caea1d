"""Local run history against the real Docker engine: `caliban run` records its jobs,
`caliban status` and `caliban stop` read and stop them from other processes."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from caliban import history
from caliban.history import states
from tests.docker_helpers import BASE_IMAGE, cleanup, engine_client
from tests.commands.test_history_cli import caliban
from tests import REPO



@pytest.fixture
def project(tmp_path):
    engine_client()  # skip (or fail with CI=true) without an engine
    root = tmp_path / "proj"
    (root / "trainer").mkdir(parents=True)
    (root / "trainer" / "__init__.py").write_text("")
    (root / "trainer" / "train.py").write_text(textwrap.dedent(
        """
        import sys, time
        args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        time.sleep(float(args.get("--sleep", 0)))
        print("done", args)
        sys.exit(int(args.get("--code", 0)))
        """
    ))
    (root / ".calibanconfig.json").write_text(json.dumps({"base_image": BASE_IMAGE}))
    yield root
    cleanup(engine_client(), str(root))


def run(project, db, *argv, wait=True):
    env = dict(os.environ, CALIBAN_DB_URL=str(db), PYTHONPATH=str(REPO), CALIBAN_BASE_IMAGE=BASE_IMAGE)
    cmd = [sys.executable, "-m", "caliban", "run", "--nogpu", *argv]
    if not wait:
        return subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)


def test_run_sweep_is_recorded_with_exit_codes(project, tmp_path):
    db = tmp_path / "h.db"
    # Three distinct argument sets: the same arguments in one group are one experiment.
    (project / "exp.json").write_text(json.dumps([{"code": 0}, {"code": 3}, {"code": 0, "sleep": 0}]))
    dry = run(project, db, "--dry_run", "--experiment_config", "exp.json", "trainer.train")
    assert dry.returncode == 0, dry.stderr
    assert not db.exists()  # --dry_run writes nothing

    out = run(project, db, "--xgroup", "local", "--experiment_config", "exp.json", "trainer.train")
    assert out.returncode == 1, out.stderr[-2000:]  # one job failed
    with history.Store(db) as s:
        jobs = s.jobs(group="local")
        assert [(j.backend, j.status, j.exit_code) for j in jobs] == [
            ("local", states.SUCCEEDED, 0), ("local", states.FAILED, 3), ("local", states.SUCCEEDED, 0)]
        assert all(j.remote_id and j.caliban_key for j in jobs)
        exp = s.experiment(jobs[1].experiment_id)
        assert exp.args == ["--code", "3"] and exp.flags == {"code": 3}
        image = s.image(exp.image_id)
        assert image.docker_id and image.docker_id.startswith("sha256:")
        assert image.build_args["target"] == "trainer.train" and image.build_args["gpu"] is False

    status = caliban(db, "status", "--xgroup", "local", "--format", "json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)["groups"][0]["jobs"]
    # The containers are removed when they end: the recorded statuses stand.
    assert [(j["status"], j["exit_code"]) for j in shown] == [("SUCCEEDED", 0), ("FAILED", 3), ("SUCCEEDED", 0)]


def test_stop_a_running_local_job_from_another_process(project, tmp_path):
    db = tmp_path / "h.db"
    proc = run(project, db, "--xgroup", "long", "trainer.train", "--", "--sleep", "300", wait=False)
    try:
        deadline = time.time() + 300
        running = []
        while time.time() < deadline and proc.poll() is None:
            if db.exists():
                with history.Store(db) as s:
                    running = s.jobs(group="long", statuses=[states.RUNNING])
                if running:
                    break
            time.sleep(0.2)
        assert running, proc.stderr.read() if proc.poll() is not None else "never RUNNING"

        status = caliban(db, "status", "--xgroup", "long", "--format", "json")
        assert json.loads(status.stdout)["groups"][0]["jobs"][0]["status"] == states.RUNNING

        out = caliban(db, "stop", "--xgroup", "long", "--yes")
        assert out.returncode == 0, out.stderr
        assert "container stopped" in out.stdout
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with history.Store(db) as s:
        (job,) = s.jobs(group="long")
        assert job.status == states.STOPPED  # the run's own "exited 137" doesn't overwrite it


def test_resubmit_reruns_failed_local_jobs_after_a_fix(project, tmp_path):
    db = tmp_path / "h.db"
    # Three distinct argument sets: the same arguments in one group are one experiment.
    (project / "exp.json").write_text(json.dumps([{"code": 0}, {"code": 3}, {"code": 0, "sleep": 0}]))
    out = run(project, db, "--xgroup", "fixme", "--experiment_config", "exp.json", "trainer.train")
    assert out.returncode == 1, out.stderr[-2000:]
    # The user fixes the bug; resubmit rebuilds the image from the recorded project.
    (project / "trainer" / "train.py").write_text("print('fixed')\n")
    dry = caliban(db, "resubmit", "--xgroup", "fixme", "--dry_run")
    assert dry.returncode == 0 and "1 job(s) to resubmit" in dry.stdout, dry.stdout + dry.stderr
    out = caliban(db, "resubmit", "--xgroup", "fixme", "--yes", env={"CALIBAN_BASE_IMAGE": BASE_IMAGE})
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    with history.Store(db) as s:
        jobs = s.jobs(group="fixme")
        assert len(jobs) == 4
        latest = sorted(s.jobs(group="fixme", latest_only=True), key=lambda j: j.experiment_id)
        assert [(j.status, j.exit_code) for j in latest] == [(states.SUCCEEDED, 0)] * 3
        assert latest[1].experiment_id == jobs[1].experiment_id and latest[1].id == jobs[3].id
        assert s.job(jobs[1].id).status == states.FAILED  # the first attempt stays in the history
    again = caliban(db, "resubmit", "--xgroup", "fixme", "--yes")
    assert again.returncode == 0 and "Nothing to resubmit" in again.stdout
