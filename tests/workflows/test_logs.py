"""`caliban logs`: local jobs through the files `caliban run` keeps (real engine), cloud jobs
through Cloud Logging `entries.list` on the emulator (real google-auth, real HTTP)."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from caliban import history
from caliban.docker import job_logs
from caliban.history import states
from tests.cloud_emulator import CloudEmulator
from tests.cloud_helpers import PROJECT, REGION, FakeClock, client_for, ml_body, vertex_body
from tests.docker_helpers import BASE_IMAGE, cleanup, engine_client
from tests.history_helpers import record_job
from tests import REPO

STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z ")


def caliban(db, *argv, env=None, cwd=REPO, timeout=600):
    full_env = dict(os.environ, CALIBAN_DB_URL=str(db), PYTHONPATH=str(REPO), CALIBAN_BASE_IMAGE=BASE_IMAGE)
    full_env.pop("CALIBAN_API_ENDPOINT", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "caliban", *argv], cwd=cwd, env=full_env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def popen(db, *argv, cwd=REPO):
    env = dict(os.environ, CALIBAN_DB_URL=str(db), PYTHONPATH=str(REPO), CALIBAN_BASE_IMAGE=BASE_IMAGE)
    return subprocess.Popen([sys.executable, "-m", "caliban", *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Lines:
    """A process's stdout, line by line, with a deadline for each line (a hang fails, not blocks)."""

    def __init__(self, stream):
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def next(self, deadline_s=180):
        return self.q.get(timeout=deadline_s)


# ------------------------------------------------------------------ the log files


def test_writer_and_reader_keep_lines_private_and_tail_from_the_end(tmp_path):
    db = tmp_path / "h.db"
    path = job_logs.log_path("abc123", db)
    writer = job_logs.JobLogWriter(path)
    assert not path.exists()  # created at the first line
    for i in range(5000):  # far more than one read chunk
        (writer.stdout if i % 2 == 0 else writer.stderr)(f"line {i} " + "x" * 40)
    writer.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    everything = list(job_logs.JobLogReader(path).read_new())
    assert [l.text.split()[1] for l in everything] == [str(i) for i in range(5000)]
    assert everything[1].stream == "stderr" and STAMP.match(everything[0].timestamp + " ")

    tail = job_logs.JobLogReader(path)
    tail.seek_last(3)
    assert [l.text.split()[1] for l in tail.read_new()] == ["4997", "4998", "4999"]
    # A record still being written is not a line yet.
    with open(path, "ab") as f:
        f.write(b"2024-01-01T00:00:00.000000Z stdout half a li")
    assert [l.text.split()[1] for l in tail.read_new()] == []
    with open(path, "ab") as f:
        f.write(b"ne\n")
    assert [l.text for l in tail.read_new()] == ["half a line"]


def test_log_names_come_only_from_job_keys(tmp_path):
    for bad in ("../../etc/passwd", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(ValueError):
            job_logs.log_path(bad, tmp_path / "h.db")


def test_a_symlink_at_the_log_name_is_not_followed(tmp_path):
    target = tmp_path / "victim"
    target.write_text("untouched\n")
    path = job_logs.log_path("k1", tmp_path / "h.db")
    path.parent.mkdir()
    path.symlink_to(target)
    warnings = []
    writer = job_logs.JobLogWriter(path, warn=warnings.append)
    writer.stdout("secret")
    writer.stdout("more")
    writer.close()
    assert target.read_text() == "untouched\n"
    assert len(warnings) == 1 and str(path) in warnings[0]


# ------------------------------------------------------------------ local jobs, real engine


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    engine_client()  # skip (or fail with CI=true) without an engine
    root = tmp_path_factory.mktemp("logs") / "proj"
    (root / "trainer").mkdir(parents=True)
    (root / "trainer" / "__init__.py").write_text("")
    (root / "trainer" / "train.py").write_text(textwrap.dedent(
        """
        import os, sys, time
        opts = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        tag = opts.get("--tag", "")
        for i in range(int(opts.get("--lines", 3))):
            print(f"out {tag} {i}", flush=True)
        print(f"err {tag}", file=sys.stderr, flush=True)
        if "--wait_for" in opts:
            deadline = time.time() + 300
            while not os.path.exists(opts["--wait_for"]) and time.time() < deadline:
                time.sleep(0.05)
            print(f"after {tag}", flush=True)
        """
    ))
    (root / ".calibanconfig.json").write_text(json.dumps({"base_image": BASE_IMAGE}))
    yield root
    cleanup(engine_client(), str(root))


def test_logs_of_finished_local_jobs_outlive_their_containers(project, tmp_path):
    db = tmp_path / "h.db"
    (project / "exp.json").write_text(json.dumps({"tag": ["a", "b"]}))
    run = caliban(db, "run", "--nogpu", "--xgroup", "local", "--experiment_config", "exp.json",
                  "trainer.train", "--", "--lines", "3", cwd=project)
    assert run.returncode == 0, run.stderr[-3000:]
    with history.Store(db) as s:
        first, second = s.jobs(group="local")
    assert not engine_client().containers.list(all=True, filters={"label": f"caliban.job={first.caliban_key}"})

    out = caliban(db, "logs", str(first.id))
    assert out.returncode == 0, out.stderr
    full = out.stdout.splitlines()
    # Docker reads stdout and stderr separately: each stream keeps its order, not their mix.
    assert sorted(full) == ["err a", "out a 0", "out a 1", "out a 2"]
    assert [l for l in full if l.startswith("out")] == ["out a 0", "out a 1", "out a 2"]

    path = job_logs.log_path(first.caliban_key, db)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    out = caliban(db, "logs", "--tail", "2", "--timestamps", first.caliban_key)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [STAMP.sub("", l) for l in lines] == full[-2:]
    assert all(STAMP.match(l) for l in lines)

    out = caliban(db, "logs", "local")
    assert out.returncode == 0, out.stderr
    group = out.stdout.splitlines()
    assert group[:4] == [f"[job {first.id}] {l}" for l in full]
    assert sorted(group[4:]) == [f"[job {second.id}] {l}" for l in ("err b", "out b 0", "out b 1", "out b 2")]
    out = caliban(db, "logs", "--tail", "1", "local")
    assert out.stdout.splitlines() == [group[3], group[7]]


def test_parallel_and_multi_node_jobs_keep_their_output_too(project, tmp_path):
    db = tmp_path / "h.db"
    (project / "par.json").write_text(json.dumps({"tag": ["p", "q"]}))
    run = caliban(db, "run", "--nogpu", "--xgroup", "par", "--max_parallel", "2", "--experiment_config",
                  "par.json", "trainer.train", "--", "--lines", "2", cwd=project)
    assert run.returncode == 0, run.stderr[-3000:]
    run = caliban(db, "run", "--nogpu", "--xgroup", "nodes", "--nodes", "2", "trainer.train", "--",
                  "--lines", "1", "--tag", "n", cwd=project)
    assert run.returncode == 0, run.stderr[-3000:]
    with history.Store(db) as s:
        p_job, q_job = s.jobs(group="par")
        (n_job,) = s.jobs(group="nodes")
    for job, tag in ((p_job, "p"), (q_job, "q")):
        out = caliban(db, "logs", str(job.id))
        assert sorted(out.stdout.splitlines()) == [f"err {tag}", f"out {tag} 0", f"out {tag} 1"], out.stderr
    out = caliban(db, "logs", str(n_job.id))
    assert sorted(out.stdout.splitlines()) == ["[rank 0] err n", "[rank 0] out n 0",
                                               "[rank 1] err n", "[rank 1] out n 0"], out.stderr


def test_follow_a_running_local_job_until_it_ends(project, tmp_path):
    db = tmp_path / "h.db"
    sync = tmp_path / "sync"
    sync.mkdir()
    runner = popen(db, "run", "--nogpu", "--xgroup", "live", "--docker_run_args", f"-v {sync}:/sync",
                   "trainer.train", "--", "--tag", "live", "--wait_for", "/sync/go", cwd=project)
    follower = job = None
    try:
        deadline = time.time() + 300
        while time.time() < deadline and runner.poll() is None:
            if db.exists():
                with history.Store(db) as s:
                    running = s.jobs(group="live", statuses=[states.RUNNING])
                if running:
                    job = running[0]
                    break
            time.sleep(0.1)
        assert job is not None, runner.stderr.read() if runner.poll() is not None else "never RUNNING"

        follower = popen(db, "logs", "--follow", str(job.id))
        lines = Lines(follower.stdout)
        # Everything printed so far arrives while the job still runs (it waits for us).
        first = [lines.next() for _ in range(4)]
        assert sorted(first) == ["err live", "out live 0", "out live 1", "out live 2"]
        assert [l for l in first if l.startswith("out")] == ["out live 0", "out live 1", "out live 2"]
        assert runner.poll() is None
        (sync / "go").write_text("")
        assert lines.next() == "after live"
        assert lines.next() is None  # the follow ended with the job
        assert follower.wait(timeout=120) == 0, follower.stderr.read()
        assert runner.wait(timeout=120) == 0
    finally:
        (sync / "go").write_text("")  # a failed test still lets its job end
        for proc in (follower, runner):
            if proc is not None and proc.poll() is None:
                proc.terminate()  # caliban stops and removes the container on SIGTERM
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for container in engine_client().containers.list(
                all=True, filters={"label": [f"caliban.source_dir={project}", "caliban.xgroup=live"]}):
            container.remove(force=True)
    with history.Store(db) as s:
        assert s.job(job.id).status == states.SUCCEEDED


def test_a_local_job_without_kept_output_says_so(tmp_path):
    db = tmp_path / "h.db"
    with history.Store(db) as s:
        g = s.create_group("old")
        j = record_job(s, g.id, caliban_key="feedfacecafe")
        s.start_local(j, "c" * 64)
        s.finish_local(j, 0)
    out = caliban(db, "logs", str(j))
    assert out.returncode == 0 and out.stdout == ""
    assert out.stderr.strip() == f"no output was kept for job {j} (it printed nothing, or ran before Caliban kept local logs)"


# ------------------------------------------------------------------ cloud jobs, emulator


def record_cloud_jobs(db, emu, group, backends):
    """Jobs as `caliban cloud` records them (PENDING, create, SUBMITTED); returns their rows."""
    rows = []
    with history.Store(db) as s:
        g = s.create_group(group)
        for i, backend in enumerate(backends):
            key = f"{group}-{i}"
            body = (vertex_body if backend == "vertex" else ml_body)(key, i)
            j = record_job(s, g.id, ["--i", str(i)], backend=backend, request=body, caliban_key=key,
                           project=PROJECT, region=REGION, api_endpoint=emu.url,
                           name=body.get("displayName") or body["jobId"])
            created = client_for(emu, emu.key_path, backend).create(body)
            s.mark_submitted(j, created["name"] if backend == "vertex" else created["jobId"])
            rows.append(s.job(j))
    return rows


def cloud_env(emu):
    return {"GOOGLE_APPLICATION_CREDENTIALS": emu.key_path}


def test_cloud_job_logs_across_pages_each_line_once_in_order(tmp_path, emulator):
    db = tmp_path / "h.db"
    (job,) = record_cloud_jobs(db, emulator, "big", ["vertex"])
    lines = [f"step {i} loss {1 / (i + 1):.4f}" for i in range(2345)]
    emulator.add_log_entries(job.remote_id, lines)
    other = record_cloud_jobs(db, emulator, "noise", ["vertex"])[0]
    emulator.add_log_entries(other.remote_id, ["not mine"])

    out = caliban(db, "logs", job.remote_id.rsplit("/", 1)[-1], env=cloud_env(emulator))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == lines
    # 1000 entries a page: three requests, each one checked against the discovery document.
    assert emulator.log_list_calls() == 3
    assert all(r.status == 200 for r in emulator.requests if r.path == "/v2/entries:list")

    out = caliban(db, "logs", "--tail", "3", str(job.id), env=cloud_env(emulator))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == lines[-3:]
    assert emulator.log_list_calls() == 4  # the newest first, one page of 3


def test_cloud_group_lines_are_prefixed_with_their_job(tmp_path, emulator):
    db = tmp_path / "h.db"
    vertex_job, ml_job = record_cloud_jobs(db, emulator, "sweep", ["vertex", "ml_v1"])
    emulator.add_log_entries(vertex_job.remote_id, ["v one", "v two"])
    emulator.add_log_entries(ml_job.remote_id, ["m one"], task="master-replica-0")
    out = caliban(db, "logs", "--timestamps", "sweep", env=cloud_env(emulator))
    assert out.returncode == 0, out.stderr
    assert [re.sub(r"\] \S+Z ", "] ", l) for l in out.stdout.splitlines()] == [
        f"[job {vertex_job.id}] v one", f"[job {vertex_job.id}] v two", f"[job {ml_job.id}] m one"]
    assert all(re.match(rf"^\[job \d+\] \d{{4}}-\d\d-\d\dT[\d:.]+Z ", l) for l in out.stdout.splitlines())
    out = caliban(db, "logs", ml_job.remote_id, env=cloud_env(emulator))  # the ml v1 jobId
    assert out.stdout.splitlines() == ["m one"]
    out = caliban(db, "logs", vertex_job.name, env=cloud_env(emulator))  # the display name
    assert out.stdout.splitlines() == ["v one", "v two"]


@pytest.fixture
def clocked_emulator(tmp_path, monkeypatch):
    """An emulator on a fake clock, so a follow's pacing costs no wall time; credentials set."""
    clock = FakeClock()
    with CloudEmulator(clock=clock) as emu:
        emu.key_path = emu.write_service_account_key(tmp_path / "key.json", PROJECT)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", emu.key_path)
        yield emu, clock


def follow(db, target, clock, sleep):
    """`caliban logs --follow TARGET` in process, on the given clock: (exit code, what it printed)."""
    from caliban.options import Environment, RecordedJobs
    from caliban.workflows.logs import LogsRequest, LogStreamer
    from caliban.workflows.refresh import Remotes

    out = io.StringIO()
    with history.Store(db) as store:
        code = LogStreamer(store, Remotes(RecordedJobs(environment=Environment.read())),
                           LogsRequest(target, follow=True), out=out, err=io.StringIO(),
                           clock=clock, sleep=sleep).run()
    return code, out.getvalue()


def test_following_a_cloud_job_prints_new_lines_once_and_stops_when_it_ends(tmp_path, clocked_emulator):
    emu, clock = clocked_emulator
    db = tmp_path / "h.db"
    (job,) = record_cloud_jobs(db, emu, "live", ["vertex"])
    emu.set_state(job.remote_id, "JOB_STATE_RUNNING")
    before = [f"early {i}" for i in range(2100)]  # three pages at the start
    emu.add_log_entries(job.remote_id, before)
    # What the job prints while followed: two entries sharing a timestamp, then
    # one more at that same timestamp on a later poll, then the end.
    script = [
        lambda: emu.add_log_entries(job.remote_id, ["c", "d"], timestamp="2099-01-01T00:00:00.5Z"),
        lambda: emu.add_log_entries(job.remote_id, ["e"], timestamp="2099-01-01T00:00:00.500000000Z"),
        lambda: (emu.add_log_entries(job.remote_id, ["f"], timestamp="2099-01-01T00:00:01Z"),
                 emu.set_state(job.remote_id, "JOB_STATE_SUCCEEDED")),
    ]
    seen_calls = [3]  # the script starts once the three pages of the start are read

    def sleep(seconds):
        clock.sleep(seconds)
        calls = emu.log_list_calls()
        if script and calls > seen_calls[-1]:
            seen_calls.append(calls)
            script.pop(0)()

    code, out = follow(db, str(job.id), clock, sleep)
    assert code == 0
    assert out.splitlines() == [*before, "c", "d", "e", "f"]
    assert not script
    # Never faster than Cloud Logging's 60 entries.list a minute per project.
    times = [r.time for r in emu.requests if r.path == "/v2/entries:list"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) >= 6 and min(gaps) >= 60 / 60
    # The grace period after the end is read once more, then the follow stops.
    assert times[-1] - times[0] <= 60


def test_an_unknown_target_is_one_line_naming_it(tmp_path):
    db = tmp_path / "h.db"
    out = caliban(db, "logs", "no-such-thing")
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith("caliban logs: error: no job or experiment group 'no-such-thing' in ")
    assert "job id" in out.stderr and "--xgroup name" in out.stderr


def test_entries_list_rejects_what_the_api_rejects(emulator):
    from tests.cloud.test_cloud_emulator import raw, token_for

    token = token_for(emulator)
    ok = {"resourceNames": [f"projects/{PROJECT}"], "filter": 'resource.type="ml_job"', "pageSize": 5}
    assert raw(emulator, "POST", "/v2/entries:list", ok, token)[0] == 200
    assert raw(emulator, "POST", "/v2/entries:list", ok)[0] == 401
    for bad, code in (({**ok, "pageSize": "many"}, 400), ({**ok, "orderBy": "insertId"}, 400),
                      ({**ok, "unknownField": 1}, 400), ({**ok, "filter": "textPayload:loss"}, 400),
                      ({**ok, "resourceNames": ["projects/someone-else"]}, 403),
                      ({**ok, "pageToken": "bm9wZQ"}, 400)):
        assert raw(emulator, "POST", "/v2/entries:list", bad, token)[0] == code, bad


def test_following_a_cloud_group_ends_when_its_jobs_end_and_nothing_is_being_sent(tmp_path, clocked_emulator):
    emu, clock = clocked_emulator
    db = tmp_path / "h.db"
    first, second = record_cloud_jobs(db, emu, "pair", ["vertex", "ml_v1"])
    with history.Store(db) as s:  # a third job whose sweep died before sending it
        never = record_job(s, s.group("pair").id, backend="vertex", caliban_key="pair-x")
    emu.set_state(first.remote_id, "JOB_STATE_RUNNING")
    emu.set_state(second.remote_id, "RUNNING")
    emu.add_log_entries(first.remote_id, ["v start"])
    script = [
        lambda: emu.add_log_entries(second.remote_id, ["m middle"]),
        lambda: (emu.add_log_entries(first.remote_id, ["v end"]),
                 emu.set_state(first.remote_id, "JOB_STATE_SUCCEEDED"),
                 emu.set_state(second.remote_id, "FAILED")),
    ]
    seen = [emu.log_list_calls()]

    def sleep(seconds):
        clock.sleep(seconds)
        assert clock() < 1000 + 600, "the follow did not end with the jobs"
        if script and emu.log_list_calls() >= seen[-1] + 2:
            seen.append(emu.log_list_calls())
            script.pop(0)()

    _, out = follow(db, "pair", clock, sleep)
    lines = out.splitlines()
    assert sorted(lines) == sorted([f"[job {first.id}] v start", f"[job {second.id}] m middle",
                                    f"[job {first.id}] v end"])
    assert lines.index(f"[job {first.id}] v start") < lines.index(f"[job {first.id}] v end")
    assert not script
    with history.Store(db) as store:
        assert store.job(never).status == states.PENDING  # never sent, and not waited for
