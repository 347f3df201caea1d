"""`caliban status` / `stop` against the cloud emulator: real google-auth, real HTTP."""

import json

import pytest

from caliban import history
from caliban.history import states
from tests.cloud_helpers import BODIES, PROJECT, REGION, caliban, client_for
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
