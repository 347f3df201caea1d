"""`status` and `stop` of a sweep larger than a list page cost O(pages), not O(jobs).

Counted from the emulator's own request log: every job carries its sweep's
run token as a label, so a refresh lists the sweep page by page.
"""

import json
import os
import subprocess
import sys

import pytest

from tests import cloud_emulator as ce
from tests.cloud_helpers import REPO

JOBS = 250
PAGE = 100
IMAGE_TAG = "us-central1-docker.pkg.dev/caliban-test/caliban/trainer:v1"


@pytest.fixture
def emu(tmp_path):
    with ce.CloudEmulator(max_page_size=PAGE) as emulator:
        emulator.key_path = emulator.write_service_account_key(tmp_path / "key.json")
        yield emulator


def caliban(tmp_path, emu, *argv):
    env = dict(os.environ, CALIBAN_DB_URL=str(tmp_path / "history.db"), PYTHONPATH=str(REPO),
               GOOGLE_APPLICATION_CREDENTIALS=emu.key_path, CALIBAN_API_ENDPOINT=emu.url, PROJECT_ID="caliban-test")
    return subprocess.run([sys.executable, "-m", "caliban", *argv], cwd=tmp_path / "proj", env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


def requests_since(emu, start):
    reads = [r for r in emu.requests[start:] if not r.path.endswith("/token")]
    gets = [r for r in reads if r.method == "GET" and "/customJobs/" in r.path]
    lists = [r for r in reads if r.method == "GET" and r.path.endswith("/customJobs")]
    cancels = [r for r in reads if r.method == "POST" and r.path.endswith(":cancel")]
    return gets, lists, cancels


def test_status_and_stop_of_a_sweep_larger_than_a_page(tmp_path, emu):
    (tmp_path / "proj" / "trainer").mkdir(parents=True)
    (tmp_path / "proj" / "trainer" / "__init__.py").write_text("")
    (tmp_path / "proj" / "trainer" / "train.py").write_text("")
    (tmp_path / "proj" / "sweep.json").write_text(json.dumps({"i": list(range(JOBS))}))
    sent = caliban(tmp_path, emu, "cloud", "--nogpu", "--image_tag", IMAGE_TAG, "--rate_limit", "100000",
                   "--xgroup", "big", "--experiment_config", "sweep.json", "trainer.train")
    assert sent.returncode == 0, sent.stderr
    assert len(emu.jobs("vertex")) == JOBS
    for job in emu.jobs("vertex")[:10]:
        emu.set_state(job["name"], "JOB_STATE_RUNNING")

    start = len(emu.requests)
    status = caliban(tmp_path, emu, "status", "--xgroup", "big", "--max_jobs", str(JOBS), "--format", "json")
    assert status.returncode == 0, status.stderr
    jobs = json.loads(status.stdout)["groups"][0]["jobs"]
    assert len(jobs) == JOBS and sum(j["status"] == "RUNNING" for j in jobs) == 10
    gets, lists, _ = requests_since(emu, start)
    assert gets == [] and len(lists) == -(-JOBS // PAGE)  # 3 pages, no per-job GET

    start = len(emu.requests)
    stop = caliban(tmp_path, emu, "stop", "--xgroup", "big", "--yes", "--rate_limit", "100000")
    assert stop.returncode == 0, stop.stderr
    assert f"Stopped {JOBS} of {JOBS} job(s)." in stop.stdout
    gets, lists, cancels = requests_since(emu, start)
    assert gets == [] and len(lists) == -(-JOBS // PAGE) and len(cancels) == JOBS
    assert {j["state"] for j in emu.jobs("vertex")} == {"JOB_STATE_CANCELLED"}


def test_jobs_without_the_run_label_fall_back_to_single_gets(tmp_path, emu):
    """A sweep recorded before the label existed is still refreshed, one GET per job."""
    from caliban import history
    from caliban.workflows.submit import record_sweep
    from tests.cloud_helpers import client_for, vertex_body

    client = client_for(emu, emu.key_path)
    bodies = [vertex_body(f"oldtoken-{i}", i) for i in range(3)]
    db = tmp_path / "history.db"
    (tmp_path / "proj").mkdir()
    with history.Store(db) as store:
        _, rows = record_sweep(store, xgroup="old", backend="vertex", project="caliban-test", region="us-central1",
                               api_endpoint=emu.url, cloud_key=emu.key_path, image_uri=None, docker_id=None,
                               digest=None, build_args={},
                               jobs=[history.NewJob(args=["--i", str(i)], request=b,  # 3 experiments
                                                    caliban_key=b["labels"]["caliban_key"])
                                     for i, b in enumerate(bodies)])
        for row, body in zip(rows, bodies):
            store.mark_submitted(row, client.create(body)["name"])
    start = len(emu.requests)
    status = caliban(tmp_path, emu, "status", "--xgroup", "old", "--format", "json")
    assert status.returncode == 0, status.stderr
    gets, lists, _ = requests_since(emu, start)
    assert len(gets) == 3 and len(lists) == 1  # the list found none of them: one GET each


def test_preempted_jobs_show_as_such_and_resubmit_sends_them_again(tmp_path, emu):
    """A job that failed for want of capacity (Spot reclaimed, stock-out) is PREEMPTED, not FAILED,
    and `resubmit` sends it again by default; a job whose code failed stays FAILED."""
    (tmp_path / "proj" / "trainer").mkdir(parents=True)
    (tmp_path / "proj" / "trainer" / "__init__.py").write_text("")
    (tmp_path / "proj" / "trainer" / "train.py").write_text("")
    (tmp_path / "proj" / "sweep.json").write_text(json.dumps({"i": [1, 2, 3]}))
    sent = caliban(tmp_path, emu, "cloud", "--nogpu", "--spot", "--image_tag", IMAGE_TAG, "--xgroup", "spot",
                   "--experiment_config", "sweep.json", "trainer.train")
    assert sent.returncode == 0, sent.stderr
    first, second, third = emu.jobs("vertex")
    emu.set_state(first["name"], "JOB_STATE_FAILED",
                  error={"code": 8, "message": "The zone does not have enough resources (STOCKOUT)."})
    emu.set_state(second["name"], "JOB_STATE_FAILED", error={"code": 3, "message": "exit status 1"})
    emu.set_state(third["name"], "JOB_STATE_SUCCEEDED")
    status = caliban(tmp_path, emu, "status", "--xgroup", "spot", "--format", "json")
    assert status.returncode == 0, status.stderr
    assert [j["status"] for j in json.loads(status.stdout)["groups"][0]["jobs"]] == [
        "PREEMPTED", "FAILED", "SUCCEEDED"]
    table = caliban(tmp_path, emu, "status", "--xgroup", "spot")
    assert "1 PREEMPTED" in table.stdout
    again = caliban(tmp_path, emu, "resubmit", "--xgroup", "spot", "--yes")
    assert again.returncode == 0, again.stderr
    assert "preempted" in again.stdout and len(emu.jobs("vertex")) == 5  # the preempted and the failed one
