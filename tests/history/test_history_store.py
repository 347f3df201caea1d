"""The job history store, on real SQLite files in temp dirs."""

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from caliban import history
from caliban.errors import CalibanError, UsageError
from caliban.history import states
from tests.history_helpers import record_job
from tests import REPO



def user_version(path) -> int:
    """The schema version as SQLite holds it, read beside (not through) the store."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def store(tmp_path):
    with history.Store(tmp_path / "h.db") as s:
        yield s


def test_db_path_forms(monkeypatch, tmp_path):
    monkeypatch.delenv(history.DB_URL_ENV, raising=False)
    assert history.db_path() == Path("~/.caliban/caliban.db").expanduser()
    assert history.db_path(str(tmp_path / "a.db")) == tmp_path / "a.db"
    assert history.db_path("sqlite:///" + str(tmp_path / "b.db")) == tmp_path / "b.db"
    assert history.db_path("sqlite:///rel/c.db") == Path("rel/c.db")
    monkeypatch.setenv(history.DB_URL_ENV, "sqlite:///" + str(tmp_path / "env.db"))
    assert history.db_path() == tmp_path / "env.db"
    with pytest.raises(UsageError, match="only sqlite"):
        history.db_path("postgresql://host/db")
    with pytest.raises(UsageError, match="in-memory"):
        history.db_path("sqlite:///:memory:")


def test_fresh_file_is_migrated_and_in_wal_mode(tmp_path):
    path = tmp_path / "sub" / "dir" / "h.db"
    history.Store(path).close()
    assert user_version(path) == history.SCHEMA_VERSION
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"experiment_group", "image", "experiment", "job"} <= tables


def test_migration_from_an_older_version_keeps_data(tmp_path):
    path = tmp_path / "h.db"
    with history.Store(path) as s:  # a file written by the current release
        g = s.create_group("old")
        j = record_job(s, g.id, ["--a", "1"])
    newer = history.MIGRATIONS + (
        "ALTER TABLE job ADD COLUMN note TEXT;\nUPDATE job SET note = 'migrated';",
        "CREATE TABLE tag (job_id INTEGER REFERENCES job(id), tag TEXT);",
    )
    with history.Store(path, migrations=newer) as s:
        assert user_version(path) == len(newer)
        assert s.job(j).status == states.PENDING
        assert s.group("old").id == g.id
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT note FROM job").fetchall() == [("migrated",)]
    assert conn.execute("SELECT COUNT(*) FROM tag").fetchone() == (0,)


def test_migration_from_empty_file_with_extra_steps(tmp_path):
    path = tmp_path / "h.db"
    sqlite3.connect(path).close()  # exists, zero bytes, version 0
    history.Store(path).close()
    assert user_version(path) == history.SCHEMA_VERSION


def test_failed_migration_rolls_back(tmp_path):
    path = tmp_path / "h.db"
    history.Store(path).close()
    broken = history.MIGRATIONS + ("CREATE TABLE ok (x);\nCREATE TABLE job (x);",)
    with pytest.raises(CalibanError):
        history.Store(path, migrations=broken)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='ok'").fetchone() is None


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "h.db"
    history.Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(CalibanError, match="was written by a newer Caliban"):
        history.Store(path)


def test_groups_named_and_auto(store):
    a = store.create_group("sweep")
    assert store.create_group("sweep") == a  # get-or-create
    auto1 = store.create_group(user="ann")
    auto2 = store.create_group(user="ann")
    assert auto1.name.startswith("ann-") and auto1.name != auto2.name
    assert [g.name for g in store.groups(user="ann")] == [auto1.name, auto2.name]
    with pytest.raises(UsageError):
        store.create_group("  ")


def test_write_ahead_lifecycle(store):
    g = store.create_group("g")
    img = store.record_image(docker_id="sha256:abc", uri="reg/x:tag", digest="sha256:d",
                             build_args={"target": "t.py", "gpu": False})
    assert store.image(img).build_args == {"target": "t.py", "gpu": False}
    assert store.image(img).uri == "reg/x:tag"
    body = {"displayName": "x", "labels": {"caliban_key": "k1"}}
    j = record_job(store, g.id, ["--lr", "0.1"], flags={"lr": 0.1}, image_id=img, backend="vertex", request=body,
                   caliban_key="k1", region="us-central1")
    e = store.job(j).experiment_id
    job = store.job(j)
    assert job.status == states.PENDING and job.request == body and job.group_name == "g"
    store.mark_submitted(j, "projects/p/locations/us-central1/customJobs/7")
    job = store.job(j)
    assert job.status == states.SUBMITTED and job.submitted is not None
    assert store.job_by_key("k1").id == j
    j2 = store.add_job(e, backend="vertex", caliban_key="k2")
    store.mark_failed(j2, "HTTP 400: bad")
    assert store.job(j2).status == states.FAILED and store.job(j2).error == "HTTP 400: bad"
    assert [x.id for x in store.jobs(group="g", latest_only=True)] == [j2]
    assert [x.id for x in store.jobs(statuses=[states.SUBMITTED])] == [j]


def test_caliban_key_is_unique(store):
    e = store.job(record_job(store, store.create_group("g").id, backend="vertex", caliban_key="same")).experiment_id
    with pytest.raises(sqlite3.IntegrityError):
        store.add_job(e, backend="vertex", caliban_key="same")


def test_local_finish_and_stop(store):
    g = store.create_group("g")
    ok, bad, stopped = (record_job(store, g.id) for _ in range(3))
    for j in (ok, bad, stopped):
        store.start_local(j, f"container{j}")
    assert store.job(ok).status == states.RUNNING
    store.finish_local(ok, 0)
    store.finish_local(bad, 3)
    store.mark_stopped(stopped)
    store.finish_local(stopped, 137)  # the stop wins over the exit it caused
    assert (store.job(ok).status, store.job(ok).exit_code) == (states.SUCCEEDED, 0)
    assert (store.job(bad).status, store.job(bad).exit_code) == (states.FAILED, 3)
    assert store.job(stopped).status == states.STOPPED


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from caliban import history
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with history.Store(path) as s:
        g = s.create_group("shared")
        for i in range(n):
            (j,) = s.add_jobs(g.id, [history.NewJob(args=["--i", str(i)], flags={{"writer": tag}},
                                                    caliban_key=f"{{tag}}-{{i}}")], backend="vertex")
            s.mark_submitted(j, f"remote-{{tag}}-{{i}}")
    """
)


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    path = tmp_path / "h.db"  # fresh: the writers also race on creating the schema
    script = WRITER.format(repo=str(REPO))
    n = 250
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), tag, str(n)],
                         stderr=subprocess.PIPE, text=True)
        for tag in ("a", "b", "c")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with history.Store(path) as s:
        jobs = s.jobs(group="shared")
        assert len(jobs) == 3 * n
        assert all(j.status == states.SUBMITTED for j in jobs)
        assert {j.caliban_key for j in jobs} == {f"{t}-{i}" for t in "abc" for i in range(n)}
        assert len(s.groups(name="shared")) == 1
    assert user_version(path) == history.SCHEMA_VERSION


def test_real_migration_1_to_2_marks_old_pending_rows_maybe_sent(tmp_path):
    path = tmp_path / "h.db"
    with history.Store(path, migrations=history.MIGRATIONS[:1]) as s:
        assert user_version(path) == 1
        conn = s._conn  # a release-1 file's rows, written as release 1 wrote them
        now = 1.0
        e = conn.execute("INSERT INTO experiment (group_id, created) VALUES (?, ?)",
                         (s.create_group("g").id, now)).lastrowid
        conn.execute(
            "INSERT INTO job (experiment_id, backend, status, user, created, updated)"
            " VALUES (?, 'vertex', 'PENDING', 'u', ?, ?)", (e, now, now))
        conn.execute(
            "INSERT INTO job (experiment_id, backend, status, user, created, updated)"
            " VALUES (?, 'vertex', 'SUBMITTED', 'u', ?, ?)", (e, now, now))
    with history.Store(path) as s:
        assert user_version(path) == history.SCHEMA_VERSION >= 2
        pending, submitted = s.jobs()
        assert pending.maybe_sent and pending.sent == 1.0
        assert submitted.sent is None and not submitted.maybe_sent


def test_add_jobs_writes_a_whole_sweep_then_sending_marks_maybe_sent(store):
    g = store.create_group("sweep")
    image = store.record_image(docker_id="sha256:1", build_args={"target": "t.py"})
    new = [
        history.NewJob(args=["--i", str(i)], flags={"i": i}, request={"n": i},
                       caliban_key=f"k-{i}", name=f"job_{i}")
        for i in range(100)
    ]
    ids = store.add_jobs(g.id, new, backend="vertex", image_id=image, project="p",
                         region="us-central1", api_endpoint="http://x")
    jobs = store.jobs(group="sweep")
    assert [j.id for j in jobs] == ids and len(ids) == 100
    assert all(j.status == states.PENDING and not j.maybe_sent for j in jobs)
    assert store.experiment(jobs[5].experiment_id).flags == {"i": 5}
    assert jobs[5].request == {"n": 5} and jobs[5].region == "us-central1"
    store.mark_sending(ids[0])
    assert store.job(ids[0]).maybe_sent
    store.update_request(ids[1], {"n": "new"})
    assert store.job(ids[1]).request == {"n": "new"}


def test_add_jobs_is_all_or_nothing(store):
    g = store.create_group("sweep")
    record_job(store, g.id, backend="vertex", caliban_key="dup")
    with pytest.raises(sqlite3.IntegrityError):
        store.add_jobs(g.id, [history.NewJob(args=[], caliban_key="a"),
                              history.NewJob(args=[], caliban_key="dup")], backend="vertex")
    assert len(store.jobs(group="sweep")) == 1
    assert len(store.experiments(g.id)) == 1


def test_group_locks_shared_for_sweeps_exclusive_for_resubmit(tmp_path):
    path = tmp_path / "h.db"
    sweep1, sweep2, resubmit = history.Store(path), history.Store(path), history.Store(path)
    try:
        g = sweep1.create_group("g")
        assert not resubmit.group_busy(g)
        sweep1.lock_group(g, exclusive=False)
        sweep2.lock_group(g, exclusive=False)  # two sweeps may share a group
        assert resubmit.group_busy(g)
        with pytest.raises(CalibanError, match="still submitting to group g"):
            resubmit.lock_group(g, exclusive=True)
        sweep1.close()
        sweep2.close()  # closing (or dying) releases the lock
        assert not resubmit.group_busy(g)
        resubmit.lock_group(g, exclusive=True)
        # Under its own exclusive lock no other process works on the group...
        assert not resubmit.group_busy(g)
        late = history.Store(path)
        # ...while to every other process it is busy.
        assert late.group_busy(g)
        with pytest.raises(CalibanError, match="being resubmitted"):
            late.lock_group(g, exclusive=False)
        late.close()
    finally:
        resubmit.close()


def test_resending_a_failed_row_clears_its_end(store):
    j = record_job(store, store.create_group("g").id, backend="vertex", caliban_key="k")
    store.mark_failed(j, "503 and gave up")
    assert store.job(j).finished is not None
    store.mark_submitted(j, "projects/p/locations/r/customJobs/1")
    job = store.job(j)
    assert (job.status, job.error, job.finished) == (states.SUBMITTED, None, None)


# -- check_store: what a submit verifies before building anything -------------


def test_check_store_accepts_a_healthy_history_and_leaves_no_trace(tmp_path):
    path = tmp_path / "h.db"
    with history.Store(path) as s:
        s.record_image(build_args={"target": "t.py"})
    assert history.check_store(f"sqlite:///{path}") == path
    with history.Store(path) as s:  # the write probe was rolled back
        assert s._row("SELECT COUNT(*) FROM image")[0] == 1


def test_check_store_refuses_a_newer_schema_in_one_line(tmp_path):
    path = tmp_path / "h.db"
    history.Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    with pytest.raises(CalibanError) as err:
        history.check_store(str(path))
    message = err.value.message
    assert "\n" not in message and str(path) in message
    assert "was written by a newer Caliban" in message and history.DB_URL_ENV in message


def test_check_store_refuses_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "h.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(CalibanError) as err:
        history.check_store(str(path))
    message = err.value.message
    assert "\n" not in message and str(path) in message
    assert "not a database" in message and f"mv {path} {path}.broken" in message
    assert path.read_bytes().startswith(b"these are my notes")  # left as it was


def _damage(path: Path) -> None:
    """Overwrites every page after the first (the schema) with garbage."""
    page = 4096
    data = bytearray(path.read_bytes())
    assert len(data) > 4 * page
    data[page:] = b"\xa5" * (len(data) - page)
    path.write_bytes(bytes(data))


def test_damaged_history_is_one_line_for_check_store_and_status(tmp_path):
    from tests.commands.test_history_cli import caliban

    path = tmp_path / "h.db"
    with history.Store(path) as s:
        g = s.create_group("g")
        s.add_jobs(g.id, [history.NewJob(args=["--i", str(i)], request={"pad": "x" * 500})
                          for i in range(100)], backend="vertex")
    _damage(path)
    with pytest.raises(CalibanError) as err:
        history.check_store(str(path))
    message = err.value.message
    assert "\n" not in message and str(path) in message and "move it aside" in message
    out = caliban(path, "status", "--format", "json")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr, out.stderr
    assert str(path) in out.stderr and "move it aside" in out.stderr


# -- privacy -------------------------------------------------------------------


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_history_files_are_private_whatever_the_umask(tmp_path):
    path = tmp_path / "fresh" / "h.db"
    old = os.umask(0)
    try:
        with history.Store(path) as s:
            g = s.create_group("g")
            s.lock_group(g, exclusive=False)
            locks = path.parent / "h.db.locks"
            modes = {
                "dir": _mode(path.parent), "db": _mode(path), "wal": _mode(f"{path}-wal"),
                "shm": _mode(f"{path}-shm"), "locks": _mode(locks),
                "lock": _mode(locks / f"group-{g.id}.lock"),
            }
    finally:
        os.umask(old)
    assert modes == {"dir": 0o700, "db": 0o600, "wal": 0o600, "shm": 0o600, "locks": 0o700, "lock": 0o600}


def test_an_existing_readable_history_is_tightened_on_open(tmp_path):
    path = tmp_path / "h.db"
    older = sqlite3.connect(path)  # as an older Caliban left it: 0644, WAL files too
    older.execute("PRAGMA journal_mode = WAL")
    older.execute("CREATE TABLE t (x)")
    for name in (path, f"{path}-wal", f"{path}-shm"):
        os.chmod(name, 0o644)
    shared_dir = _mode(tmp_path)
    try:
        with history.Store(path):
            assert (_mode(path), _mode(f"{path}-wal"), _mode(f"{path}-shm")) == (0o600, 0o600, 0o600)
    finally:
        older.close()
    assert _mode(tmp_path) == shared_dir  # a directory the user chose is not ours to change


# -- secrets in --docker_run_args ---------------------------------------------

SECRETS = ("hf_S3cretHF", "awsS3cret", "pw-S3cret", "keyS3cret", "proxyS3cret", "ghp_S3cretGithub",
           "authS3cret")
RUN_ARGS = (
    "--shm-size 2g -e HF_TOKEN=hf_S3cretHF --env AWS_SECRET_ACCESS_KEY=awsS3cret "
    "--env=DB_PASSWORD=pw-S3cret -eAPI_KEY=keyS3cret -e PROXY=http://me:proxyS3cret@proxy:3128 "
    "-e GH=ghp_S3cretGithub -e 'WANDB_AUTH=authS3cret' -e PLAIN=visible -e FROM_ENV"
)
STORED = (
    "--shm-size 2g -e HF_TOKEN --env AWS_SECRET_ACCESS_KEY --env=DB_PASSWORD -eAPI_KEY -e PROXY "
    "-e GH -e WANDB_AUTH -e PLAIN=visible -e FROM_ENV"
)


def test_secrets_in_docker_run_args_never_reach_the_file(tmp_path, monkeypatch):
    from caliban.docker.run import parse_docker_run_args
    from tests.commands.test_history_cli import caliban

    path = tmp_path / "h.db"
    with history.Store(path) as s:
        image = s.record_image(docker_id="sha256:1", build_args={"target": "t.py", "docker_run_args": RUN_ARGS})
        listed = s.record_image(build_args={"docker_run_args": ["-e", "MY_TOKEN=abcS3cret", "-e", "A=1"]})
        s.finish_local(record_job(s, s.create_group("g").id, ["--x", "1"], image_id=image), 0)
        assert s.image(image).build_args == {"target": "t.py", "docker_run_args": STORED}
        assert s.image(listed).build_args["docker_run_args"] == ["-e", "MY_TOKEN", "-e", "A=1"]
        on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert all(secret.encode() not in on_disk for secret in SECRETS + ("abcS3cret",))
        assert b"PLAIN=visible" in on_disk
    # A rerun takes the values from the environment of whoever reruns it.
    monkeypatch.setenv("HF_TOKEN", "from-the-environment")
    rerun = parse_docker_run_args(STORED)
    assert rerun.env["HF_TOKEN"] == "from-the-environment" and rerun.env["PLAIN"] == "visible"
    assert rerun.shm_size == "2g"
    out = caliban(path, "status", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["groups"][0]["jobs"][0]["status"] == states.SUCCEEDED
    assert not any(secret in out.stdout for secret in SECRETS)


# -- one experiment per set of arguments within a group --------------------------


def _recorded(target="trainer.train") -> dict:
    """Build arguments as `caliban run` / `caliban cloud` record them."""
    from caliban.options import BuildSpec

    return BuildSpec(project_dir="/proj", target=target, gpu=False).recorded()


def test_the_same_arguments_in_a_group_add_a_job_to_one_experiment(store):
    g = store.create_group("g")
    image1 = store.record_image(uri="reg/a/x:1", digest="sha256:1",
                                build_args={**_recorded(), "image_tag": None, "image_repo": "reg/a"})
    first = store.add_jobs(g.id, [history.NewJob(args=["--lr", "1"], caliban_key="a1"),
                                  history.NewJob(args=["--lr", "2"], caliban_key="a2")],
                           backend="vertex", image_id=image1)
    # Code edited, image rebuilt and pushed elsewhere: still the same experiments.
    image2 = store.record_image(uri="reg/b/x:2", digest="sha256:2",
                                build_args={**_recorded(), "image_tag": None, "image_repo": "reg/b"})
    again = store.add_jobs(g.id, [history.NewJob(args=["--lr", "2"], caliban_key="b2"),
                                  history.NewJob(args=["--lr", "3"], caliban_key="b3"),
                                  history.NewJob(args=["--lr", "3"], caliban_key="b3bis")],
                           backend="vertex", image_id=image2)
    exp = [store.job(j).experiment_id for j in first + again]
    assert exp[2] == exp[1] and exp[3] == exp[4] and len(set(exp)) == 3
    assert store.experiment(exp[1]).image_id == image2  # the image its latest job ran
    assert store.experiment(exp[0]).image_id == image1
    assert store.experiment_count(g.id) == 3 and sum(store.status_counts("g").values()) == 3
    assert [j.id for j in store.jobs(experiment_id=exp[1])] == [first[1], again[0]]

    # `caliban run` of the same module and arguments into the group: a local job on it.
    local = store.record_image(docker_id="sha256:l", build_args={
        **_recorded(), "image_id": None, "docker_run_args": "-e A=1", "env": [["B", "2"]], "output_dir": "/o"})
    assert experiment_of(store, g.id, ["--lr", "1"], image_id=local) == exp[0]
    # Another module with the same arguments, or another group: other experiments.
    other = store.record_image(build_args=_recorded("other.py"))
    assert experiment_of(store, g.id, ["--lr", "1"], image_id=other) not in exp
    h = store.create_group("h")
    assert experiment_of(store, h.id, ["--lr", "1"], image_id=local) not in exp
    assert store.experiment_count(g.id) == 4 and store.experiment_count(h.id) == 1


def experiment_of(store, group_id, args, image_id):
    """The experiment a job recorded with these arguments and image lands on."""
    return store.job(record_job(store, group_id, args, image_id=image_id)).experiment_id


def test_finding_an_experiment_by_its_arguments_uses_the_index(store):
    plan = " ".join(
        row[3] for row in store._rows(
            "EXPLAIN QUERY PLAN SELECT experiment.id FROM experiment"
            " WHERE experiment.group_id = ? AND experiment.args = ?", (1, "[]"))
    )
    assert "experiment_group_args" in plan


# -- caliban status: JSON has everything, the table says what it left out ------


def test_status_json_lists_every_experiment_and_the_table_counts_the_rest(tmp_path):
    from tests.commands.test_history_cli import caliban

    path = tmp_path / "h.db"
    with history.Store(path) as s:
        g = s.create_group("big")
        for i in range(20):
            s.finish_local(record_job(s, g.id, ["--i", str(i)]), 0)
    out = caliban(path, "status", "--xgroup", "big", "--format", "json")
    assert out.returncode == 0, out.stderr
    (group,) = json.loads(out.stdout)["groups"]
    assert [j["experiment"]["args"] for j in group["jobs"]] == [["--i", str(i)] for i in range(20)]
    table = caliban(path, "status", "--xgroup", "big")
    shown = [int(line.split()[-1]) for line in table.stdout.splitlines() if "--i" in line]
    assert shown == list(range(12, 20))  # the newest 8
    assert "... 12 more experiments not shown (--max_jobs 8" in table.stdout


def test_secret_env_values_are_stored_without_their_value(tmp_path):
    path = tmp_path / "h.db"
    with history.Store(path) as store:
        image = store.record_image(build_args={"env": [["HF_TOKEN", "hf_abcdefsecret"], ["SEED", "7"]]})
        assert store.image(image).build_args["env"] == [["HF_TOKEN", None], ["SEED", "7"]]
    assert b"hf_abcdefsecret" not in path.read_bytes()
