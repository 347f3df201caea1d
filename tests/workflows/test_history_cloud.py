"""`caliban status` / `stop` against the cloud emulator: real google-auth, real HTTP."""

import contextlib
import json
import subprocess
import sys
import threading
import time

import pytest

from caliban import history
from caliban.history import states
from tests.cloud_helpers import BODIES, PROJECT, REGION, REPO, caliban, client_for, history_env
from tests.history_helpers import record_job


def submit_recorded(db, emu, backend, group, n, send=True):
    """A sweep as `caliban cloud` records it: PENDING row, create, SUBMITTED."""
    client = client_for(emu, emu.key_path, backend)
    ids = []
    with history.Store(db) as s:
        g = s.create_group(group)
        for i in range(n):
            key = f"{group}-{i}"
            body = BODIES[backend](key, i)
            j = record_job(s, g.id, ["--i", str(i)], flags={"i": i}, backend=backend, request=body,
                           caliban_key=key, project=PROJECT, region=REGION, api_endpoint=emu.url)
            if send:
                created = client.create(body)
                s.mark_submitted(j, created["name"] if backend == "vertex" else created["jobId"])
            ids.append(j)
    return ids


@pytest.mark.parametrize("backend", ["vertex", "ml_v1"])
def test_status_refreshes_from_the_api(tmp_path, emulator, backend):
    db = tmp_path / "h.db"
    ids = submit_recorded(db, emulator, backend, "sweep", 4)
    with history.Store(db) as s:
        remote = [s.job(j).remote_id for j in ids]
    if backend == "vertex":
        emulator.set_state(remote[0], "JOB_STATE_RUNNING")
        emulator.set_state(remote[1], "JOB_STATE_SUCCEEDED")
        emulator.set_state(remote[2], "JOB_STATE_FAILED")
    else:
        emulator.set_state(remote[0], "RUNNING")
        emulator.set_state(remote[1], "SUCCEEDED")
        emulator.set_state(remote[2], "FAILED")
    out = caliban(db, emulator, "status", "--xgroup", "sweep", "--format", "json")
    assert out.returncode == 0, out.stderr
    jobs = json.loads(out.stdout)["groups"][0]["jobs"]
    assert [j["status"] for j in jobs] == [states.RUNNING, states.SUCCEEDED, states.FAILED,
                                           states.SUBMITTED]
    with history.Store(db) as s:  # recorded, and terminal jobs are not asked again
        assert s.job(ids[1]).status == states.SUCCEEDED and s.job(ids[1]).finished is not None
    gets = sum(1 for r in emulator.requests if r.method == "GET" and not r.path.endswith(("customJobs", "/jobs")))
    caliban(db, emulator, "status", "--xgroup", "sweep")
    gets_after = sum(1 for r in emulator.requests if r.method == "GET" and not r.path.endswith(("customJobs", "/jobs")))
    assert gets_after - gets == 2  # only RUNNING and SUBMITTED are refreshed


def test_status_with_unreachable_api_keeps_recorded_status(tmp_path, emulator):
    db = tmp_path / "h.db"
    submit_recorded(db, emulator, "vertex", "sweep", 2)
    out = caliban(db, emulator, "status", "--format", "json", "--api_endpoint", "http://127.0.0.1:9")
    assert out.returncode == 0, out.stderr
    assert "warning: cannot refresh vertex jobs" in out.stderr
    jobs = json.loads(out.stdout)["groups"][0]["jobs"]
    assert [j["status"] for j in jobs] == [states.SUBMITTED] * 2


@pytest.mark.parametrize("backend", ["vertex", "ml_v1"])
def test_stop_cancels_through_the_api(tmp_path, emulator, backend):
    db = tmp_path / "h.db"
    ids = submit_recorded(db, emulator, backend, "sweep", 3)
    with history.Store(db) as s:
        remote = [s.job(j).remote_id for j in ids]
    emulator.set_state(remote[2], "JOB_STATE_SUCCEEDED" if backend == "vertex" else "SUCCEEDED")
    out = caliban(db, emulator, "stop", "--xgroup", "sweep", "--yes")
    assert out.returncode == 0, out.stderr + out.stdout
    assert "Stopped 2 of 2" in out.stdout
    cancelled = "JOB_STATE_CANCELLED" if backend == "vertex" else "CANCELLED"
    by_key = {j["labels"]["caliban_key"]: j["state"] for j in emulator.jobs(backend)}
    assert by_key == {"sweep-0": cancelled, "sweep-1": cancelled,
                      "sweep-2": "JOB_STATE_SUCCEEDED" if backend == "vertex" else "SUCCEEDED"}
    with history.Store(db) as s:
        assert [s.job(j).status for j in ids] == [states.STOPPED, states.STOPPED, states.SUCCEEDED]


@contextlib.contextmanager
def watching(db, emu, *argv):
    """`caliban status --watch ARGV` in the background: (process, its stdout lines as they come).
    Leaving the block kills it if it still runs, and waits for the last of its output."""
    proc = subprocess.Popen([sys.executable, "-m", "caliban", "status", "--watch", "--interval", "2", *argv],
                            cwd=REPO, env=history_env(db, emu), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(10)


def one_job_in(db, emu, backend, group, state) -> str:
    """A one-job sweep sent to the emulator and moved to `state`; its remote id."""
    (job,) = submit_recorded(db, emu, backend, group, 1)
    with history.Store(db) as s:
        remote = s.job(job).remote_id
    emu.set_state(remote, state)
    return remote


def wait_for(condition, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_status_watch_refreshes_until_every_job_has_finished(tmp_path, emulator):
    db = tmp_path / "h.db"
    ids = submit_recorded(db, emulator, "vertex", "watched", 2)
    with history.Store(db) as s:
        first, second = (s.job(j).remote_id for j in ids)
    emulator.set_state(first, "JOB_STATE_RUNNING")
    emulator.set_state(second, "JOB_STATE_SUCCEEDED")
    with watching(db, emulator, "--xgroup", "watched") as (proc, lines):
        # Not a terminal: the table is printed once per change, not every refresh.
        assert wait_for(lambda: any("1 RUNNING, 1 SUCCEEDED" in line for line in lines)), lines
        time.sleep(4.5)  # two more refreshes, nothing changed
        assert proc.poll() is None
        assert sum("xgroup watched" in line for line in lines) == 1
        emulator.set_state(first, "JOB_STATE_FAILED")
        assert proc.wait(30) == 0, proc.stderr.read()
    assert any("1 SUCCEEDED, 1 FAILED" in line for line in lines), lines
    assert sum("xgroup watched" in line for line in lines) == 2


def test_status_watch_json_prints_once_when_all_have_finished(tmp_path, emulator):
    db = tmp_path / "h.db"
    remote = one_job_in(db, emulator, "ml_v1", "waited", "RUNNING")
    with watching(db, emulator, "--xgroup", "waited", "--format", "json") as (proc, lines):
        time.sleep(3)
        assert proc.poll() is None and lines == []
        emulator.set_state(remote, "SUCCEEDED")
        assert proc.wait(30) == 0, proc.stderr.read()
    (group,) = json.loads("".join(lines))["groups"]
    assert [j["status"] for j in group["jobs"]] == [states.SUCCEEDED]


def test_status_watch_flags_are_checked(tmp_path, emulator):
    db = tmp_path / "h.db"
    out = caliban(db, emulator, "status", "--interval", "5")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "add --watch" in out.stderr, out.stderr
    out = caliban(db, emulator, "status", "--watch", "--interval", "0.5")
    assert out.returncode == 2 and "'0.5' is not a number of seconds from 2 to 3600" in out.stderr, out.stderr
    out = caliban(db, emulator, "status", "--watch")  # nothing recorded: nothing to wait for
    assert out.returncode == 0 and "No jobs recorded yet" in out.stdout


def test_status_watch_on_a_terminal_redraws_in_place(tmp_path, emulator):
    import os
    import pty
    import select

    db = tmp_path / "h.db"
    remote = one_job_in(db, emulator, "vertex", "drawn", "JOB_STATE_RUNNING")
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "caliban", "status", "--watch", "--interval", "2",
                             "--xgroup", "drawn"], cwd=REPO, env=history_env(db, emulator),
                            stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary)
    os.close(secondary)
    transcript = b""
    try:
        deadline = time.time() + 60
        while time.time() < deadline and transcript.count(b"(refreshed") < 2:
            if select.select([primary], [], [], 1)[0]:
                transcript += os.read(primary, 65536)
        emulator.set_state(remote, "JOB_STATE_SUCCEEDED")
        assert proc.wait(30) == 0
        while select.select([primary], [], [], 1)[0]:
            try:
                data = os.read(primary, 65536)
            except OSError:
                break
            if not data:
                break
            transcript += data
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
    text = transcript.decode()
    frames = text.split("\x1b[H\x1b[2J")
    assert len(frames) >= 4  # two refreshes while RUNNING, then the final table, each on a cleared screen
    assert all("1 RUNNING" in frame for frame in frames[1:3])
    assert "1 SUCCEEDED" in frames[-1] and "(refreshed" not in frames[-1]
