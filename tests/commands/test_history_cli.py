"""`caliban status` and `caliban stop` as users run them: real processes, real SQLite files."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from caliban import history
from caliban.history import states
from tests.docker_helpers import BASE_IMAGE, engine_client
from tests.history_helpers import record_job
from tests import REPO



def caliban(db: Path, *argv, stdin=subprocess.DEVNULL, env=None):
    full_env = dict(os.environ, CALIBAN_DB_URL=f"sqlite:///{db}", PYTHONPATH=str(REPO))
    full_env.pop("CALIBAN_API_ENDPOINT", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "caliban", *argv],
        cwd=REPO, env=full_env, stdin=stdin, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture
def db(tmp_path):
    return tmp_path / "history.db"


# Stores standing in for the `caliban run` processes of seeded sweeps: each holds
# its group's lock, as a live sweep does, until the test ends.
_LIVE_SWEEPS: list = []


@pytest.fixture(autouse=True)
def _end_live_sweeps():
    yield
    while _LIVE_SWEEPS:
        _LIVE_SWEEPS.pop().close()


def seed_local(db: Path, group: str, statuses: list[str], container_ids=None, sweep_alive=True) -> list[int]:
    """Local jobs in the given statuses, as `caliban run` would have recorded them.

    With `sweep_alive` the sweep's process is still there (its group stays
    locked until the test ends), so a job whose container is gone is not lost."""
    ids = []
    with history.Store(db) as s:
        g = s.create_group(group)
        if sweep_alive:
            sweep = history.Store(db)
            sweep.lock_group(g, exclusive=False)
            _LIVE_SWEEPS.append(sweep)
        image = s.record_image(docker_id="sha256:feed", build_args={"target": "train.py"})
        for i, status in enumerate(statuses):
            j = record_job(s, g.id, ["--seed", str(i)], flags={"seed": i}, image_id=image)
            cid = (container_ids or {}).get(i, f"gone-{uuid.uuid4().hex}")
            if status != states.PENDING:
                s.start_local(j, cid)
            if status in (states.SUCCEEDED, states.FAILED):
                s.finish_local(j, 0 if status == states.SUCCEEDED else 1)
            elif status == states.STOPPED:
                s.mark_stopped(j)
            ids.append(j)
    return ids


def test_status_on_an_empty_history(db):
    out = caliban(db, "status")
    assert out.returncode == 0, out.stderr
    assert "No jobs recorded yet" in out.stdout
    assert db.exists()


def test_status_table_and_json(db):
    seed_local(db, "sweep-a", [states.SUCCEEDED, states.FAILED, states.SUCCEEDED])
    text = caliban(db, "status")
    assert text.returncode == 0, text.stderr
    assert "xgroup sweep-a" in text.stdout
    assert "SUCCEEDED" in text.stdout and "FAILED (1)" in text.stdout
    assert "--seed 2" in text.stdout

    out = caliban(db, "status", "--xgroup", "sweep-a", "--format", "json", "--max_jobs", "2")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    (group,) = data["groups"]
    # --max_jobs limits the table only: JSON has every experiment.
    assert group["name"] == "sweep-a" and group["experiments"] == 3 and group["not_shown"] == 0
    assert [j["status"] for j in group["jobs"]] == ["SUCCEEDED", "FAILED", "SUCCEEDED"]
    assert group["jobs"][1]["experiment"]["flags"] == {"seed": 1}
    assert group["jobs"][1]["backend"] == "local"
    table = caliban(db, "status", "--xgroup", "sweep-a", "--max_jobs", "2")
    assert "--seed 0" not in table.stdout and "--seed 1" in table.stdout
    assert "... 1 more experiment not shown (--max_jobs 2" in table.stdout


def test_status_unknown_group_is_one_line_error(db):
    seed_local(db, "g", [states.SUCCEEDED])
    out = caliban(db, "status", "--xgroup", "nope")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "no experiment group named 'nope'" in out.stderr


def test_status_keeps_recorded_status_when_container_is_gone_while_its_sweep_runs(db):
    """The sweep removes a container, then records the job's end: in between, it is not lost."""
    (job,) = seed_local(db, "g", [states.RUNNING])
    out = caliban(db, "status", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["groups"][0]["jobs"][0]["status"] == states.RUNNING
    with history.Store(db) as s:
        assert s.job(job).status == states.RUNNING


def test_status_shows_a_job_lost_when_its_container_and_its_sweep_are_gone(db):
    engine_client()  # "gone" is only known from an engine that answers
    (job,) = seed_local(db, "g", [states.RUNNING], sweep_alive=False)
    out = caliban(db, "status", "--format", "json")
    assert out.returncode == 0, out.stderr
    (shown,) = json.loads(out.stdout)["groups"][0]["jobs"]
    assert shown["status"] == states.FAILED
    assert "its container is gone and no caliban process is running its sweep" in shown["error"]
    stop = caliban(db, "stop", "--xgroup", "g", "--yes")
    assert stop.returncode == 0 and "Nothing to stop" in stop.stdout


def test_stop_refuses_without_tty_and_yes(db):
    seed_local(db, "g", [states.RUNNING])
    out = caliban(db, "stop", "--xgroup", "g")
    assert out.returncode == 2
    assert "pass --yes" in out.stderr
    with history.Store(db) as s:
        assert s.jobs(group="g")[0].status == states.RUNNING


def test_stop_dry_run_changes_nothing(db):
    seed_local(db, "g", [states.RUNNING, states.SUCCEEDED])
    out = caliban(db, "stop", "--xgroup", "g", "--dry_run")
    assert out.returncode == 0, out.stderr
    assert "would stop 1 job" in out.stdout
    with history.Store(db) as s:
        assert [j.status for j in s.jobs(group="g")] == [states.RUNNING, states.SUCCEEDED]


def test_stop_with_yes_records_stopped_only_in_the_group(db):
    ids = seed_local(db, "g", [states.RUNNING, states.SUCCEEDED, states.PENDING])
    (other,) = seed_local(db, "other", [states.RUNNING])
    out = caliban(db, "stop", "--xgroup", "g", "--yes")
    assert out.returncode == 0, out.stderr
    # A local sweep's PENDING job never started: stopping the sweep stops it too.
    assert f"job {ids[2]}: STOPPED (not started)" in out.stdout
    with history.Store(db) as s:
        assert [s.job(j).status for j in ids] == [states.STOPPED, states.SUCCEEDED, states.STOPPED]
        assert s.job(other).status == states.RUNNING
    again = caliban(db, "stop", "--xgroup", "g", "--yes")
    assert again.returncode == 0 and "Nothing to stop" in again.stdout


def test_stop_only_touches_the_current_users_jobs(db):
    with history.Store(db) as s:
        g = s.create_group("shared")
        theirs = record_job(s, g.id, user="somebody-else")
        s.start_local(theirs, "c1")
    out = caliban(db, "stop", "--yes")
    assert out.returncode == 0 and "Nothing to stop" in out.stdout
    with history.Store(db) as s:
        assert s.job(theirs).status == states.RUNNING


# ---------------------------------------------------------------- real engine


@pytest.fixture
def engine():
    client = engine_client()
    created = []
    yield client, created
    for container in created:
        try:
            container.remove(force=True)
        except Exception:
            pass


def test_status_and_stop_against_the_engine(db, engine):
    client, created = engine
    # Our own label: no other test's clean-up can touch these containers.
    labels = {"caliban.test.history": uuid.uuid4().hex}
    running = client.containers.run(BASE_IMAGE, ["sleep", "300"], detach=True, labels=labels)
    done = client.containers.run(BASE_IMAGE, ["sh", "-c", "exit 3"], detach=True, labels=labels)
    created += [running, done]
    done.wait(timeout=60)
    run_job, done_job = seed_local(
        db, "engine", [states.RUNNING, states.RUNNING], {0: running.id, 1: done.id}
    )
    out = caliban(db, "status", "--xgroup", "engine", "--format", "json")
    assert out.returncode == 0, out.stderr
    jobs = {j["id"]: j for j in json.loads(out.stdout)["groups"][0]["jobs"]}
    assert jobs[run_job]["status"] == states.RUNNING
    assert (jobs[done_job]["status"], jobs[done_job]["exit_code"]) == (states.FAILED, 3)

    out = caliban(db, "stop", "--xgroup", "engine", "--yes")
    assert out.returncode == 0, out.stderr
    assert "container stopped" in out.stdout
    import docker.errors

    try:
        running.reload()
        assert running.status == "exited"
    except docker.errors.NotFound:
        pass  # removed after the stop: not running either way
    with history.Store(db) as s:
        assert s.job(run_job).status == states.STOPPED
        assert s.job(done_job).status == states.FAILED


def test_cloud_dry_run_writes_nothing(db, tmp_path):
    project = tmp_path / "proj"
    (project / "trainer").mkdir(parents=True)
    (project / "trainer" / "train.py").write_text("print('hi')\n")
    env = dict(os.environ, CALIBAN_DB_URL=str(db), PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-m", "caliban", "cloud", "--dry_run", "--xgroup", "preview", "--nogpu",
         "--project_id", "p", "trainer/train.py"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Dry run" in out.stdout
    assert not db.exists()


def test_history_is_not_imported_at_startup():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, caliban.main; caliban.main.build_parser(); "
         "print('sqlite3' in sys.modules, 'caliban.history' in sys.modules)"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.parametrize("answer, stopped", [("n", False), ("y", True)])
def test_stop_asks_on_a_terminal(db, answer, stopped):
    import pexpect

    (job,) = seed_local(db, "g", [states.RUNNING])
    env = dict(os.environ, CALIBAN_DB_URL=str(db), PYTHONPATH=str(REPO))
    child = pexpect.spawn(sys.executable, ["-m", "caliban", "stop", "--xgroup", "g"], cwd=str(REPO),
                          env=env, encoding="utf-8", timeout=60)
    child.expect(r"Stop these 1 job\(s\)\? \[y/N\] ")
    child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == (0 if stopped else 1)
    with history.Store(db) as s:
        assert s.job(job).status == (states.STOPPED if stopped else states.RUNNING)
