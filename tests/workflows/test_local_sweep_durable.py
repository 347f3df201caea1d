"""Local sweeps are durable and stoppable like cloud sweeps (real engine, real SQLite).

- Every experiment is recorded PENDING before the first container starts, so an
  interrupted sweep shows what never ran and `resubmit` finishes it: each
  experiment runs exactly once.
- `caliban stop` of a running sweep stops its container and the rest of the
  sweep: no container left, no later experiment started.
- The container's init process hands SIGTERM to the training code.
"""

import json
import signal
import sqlite3
import textwrap
import time

import pytest

from caliban import history
from caliban.history import states
from tests.history_helpers import record_job
from tests.docker_helpers import engine_client
from tests.commands.test_history_cli import caliban as caliban_cli
from tests.workflows.test_history_local import project, run  # noqa: F401  (fixture)


@pytest.fixture
def marked(project):  # noqa: F811
    """The project's trainer leaves a marker per run in a mounted directory, and notes SIGTERM."""
    (project / "trainer" / "train.py").write_text(textwrap.dedent(
        """
        import os, signal, sys, time
        args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        def term(signum, frame):
            open(os.path.join("/marks", "sigterm-" + args["--i"]), "w").close()
            sys.exit(0)
        signal.signal(signal.SIGTERM, term)
        open(os.path.join("/marks", "ran-" + args["--i"] + "-" + str(time.time_ns())), "w").close()
        print("started", args["--i"], flush=True)
        while os.path.exists("/marks/hold"):  # the test decides when a job may end
            time.sleep(0.1)
        """
    ))
    (project / "exp.json").write_text(json.dumps({"i": ["1", "2", "3"]}))
    marks = project.parent / "marks"
    marks.mkdir()
    marks.chmod(0o777)
    (marks / "hold").touch()
    return project, marks


def runs(marks):
    return sorted(p.name.rsplit("-", 1)[0] for p in marks.iterdir() if p.name.startswith("ran-"))


def wait_for(predicate, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def containers_of(group):
    return engine_client().containers.list(all=True, filters={"label": f"caliban.xgroup={group}"})


def statuses(db):
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT status FROM job ORDER BY id")]


def start_sweep_until_job_1_runs(marked, tmp_path):
    """`caliban run` of the 3-experiment sweep, in the background, once job 1 has started."""
    project, marks = marked
    db = tmp_path / "h.db"
    group = f"durable-{tmp_path.name}"
    proc = run(project, db, "--xgroup", group, "--docker_run_args", f"-v {marks}:/marks",
               "--experiment_config", "exp.json", "trainer.train", wait=False)
    assert wait_for(lambda: runs(marks) == ["ran-1"]), proc.stderr.read() if proc.poll() is not None else ""
    return marks, db, group, proc


def test_interrupted_sweep_is_finished_by_resubmit_with_each_experiment_run_once(marked, tmp_path):
    marks, db, group, proc = start_sweep_until_job_1_runs(marked, tmp_path)
    # Every experiment was recorded before the first container started.
    assert statuses(db) == [states.RUNNING, states.PENDING, states.PENDING]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopping" in err and "Traceback" not in err
    # Interrupted: the running job stopped; the two that never ran say so.
    assert statuses(db) == [states.STOPPED, states.STOPPED, states.STOPPED]
    assert containers_of(group) == []

    (marks / "hold").unlink()
    again = caliban_cli(db, "resubmit", "--xgroup", group, "--yes")
    assert again.returncode == 0, again.stderr
    assert runs(marks) == ["ran-1", "ran-1", "ran-2", "ran-3"]


def test_a_killed_sweep_is_finished_by_resubmit_lost_job_included(marked, tmp_path):
    """A sweep killed outright (no chance to clean up) leaves PENDING rows, and a RUNNING row whose
    container may vanish with nobody to record its end: `status` shows that job as lost (FAILED),
    and resubmit runs the never-started rows themselves and the lost job again."""
    marks, db, group, proc = start_sweep_until_job_1_runs(marked, tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    for container in containers_of(group):
        container.remove(force=True)
    assert statuses(db) == [states.RUNNING, states.PENDING, states.PENDING]
    shown = caliban_cli(db, "status", "--xgroup", group)
    assert shown.returncode == 0, shown.stderr
    assert "its container is gone and no caliban process is running its sweep" in shown.stdout
    assert statuses(db) == [states.FAILED, states.PENDING, states.PENDING]
    (marks / "hold").unlink()
    done = caliban_cli(db, "resubmit", "--xgroup", group, "--yes")
    assert done.returncode == 0, done.stderr
    # The two rows that never started ran as themselves; the lost job ran again as a new attempt.
    assert statuses(db) == [states.FAILED, states.SUCCEEDED, states.SUCCEEDED, states.SUCCEEDED]
    assert runs(marks) == ["ran-1", "ran-1", "ran-2", "ran-3"]


def test_a_job_whose_container_is_gone_is_lost_only_when_no_process_runs_its_sweep(tmp_path):
    """Between removing a container and recording its end, a sweep holds its group's lock: refresh
    must not call such a job lost. Real store files, a real engine that has no such container."""
    engine_client()  # skip (or fail with CI=true) without an engine
    from caliban.workflows.refresh import LOST_LOCAL_JOB, Remotes, refresh

    path = tmp_path / "h.db"
    with history.Store(path) as store, history.Store(path) as sweep_process:
        group = store.create_group("lost")
        job_id = record_job(store, group.id, ["--i", "1"])
        store.start_local(job_id, "0" * 64)  # a container id the engine does not have
        sweep_process.lock_group(sweep_process.existing_group("lost"), exclusive=False)

        (alive,) = refresh(store, Remotes(), store.jobs(group="lost"))
        assert alive.status == states.RUNNING

        sweep_process.close()  # the sweep's process ends (or dies): the OS drops its lock
        (lost,) = refresh(store, Remotes(), store.jobs(group="lost"))
        assert (lost.status, lost.error) == (states.FAILED, LOST_LOCAL_JOB)


def test_stop_stops_the_running_job_and_the_rest_of_the_sweep(marked, tmp_path):
    marks, db, group, proc = start_sweep_until_job_1_runs(marked, tmp_path)
    stopped = caliban_cli(db, "stop", "--xgroup", group, "--yes")
    assert stopped.returncode == 0, stopped.stderr
    _, err = proc.communicate(timeout=120)
    assert runs(marks) == ["ran-1"], err  # no later experiment started
    assert "stopped before it started" in err
    assert statuses(db) == [states.STOPPED] * 3
    assert containers_of(group) == []
    # The init process passed SIGTERM on: the training code saw it and could checkpoint.
    assert (marks / "sigterm-1").exists()
