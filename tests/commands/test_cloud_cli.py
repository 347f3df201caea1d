"""`python -m caliban cloud` end to end: real google-auth, googleapiclient, emulator, engine and registry."""

import json
import os
import sqlite3
import subprocess
import sys
import urllib.request

import pytest

from tests import cloud_emulator as ce
from tests.docker_helpers import BASE_IMAGE, REGISTRY, engine_and_registry, remove_pushed
from tests import REPO

IMAGE_TAG = "us-central1-docker.pkg.dev/caliban-test/caliban/trainer:v1"


@pytest.fixture
def project(tmp_path):
    """A tiny research project with a three-experiment sweep."""
    root = tmp_path / "proj"
    (root / "trainer").mkdir(parents=True)
    (root / "trainer" / "__init__.py").write_text("")
    (root / "trainer" / "train.py").write_text("import sys\nprint('args', sys.argv[1:])\n")
    (root / "experiment.json").write_text(json.dumps({"lr": [0.1, 0.01, 0.001]}))
    return root


@pytest.fixture
def emu(tmp_path):
    with ce.CloudEmulator(gpu_quota={"NVIDIA_TESLA_P100": 2}) as emulator:
        emulator.key_path = emulator.write_service_account_key(tmp_path / "key.json")
        yield emulator


def caliban(project, tmp_path, *argv, env_extra=None, drop=()):
    env = dict(os.environ, CALIBAN_DB_URL=str(tmp_path / "history.db"), PYTHONPATH=str(REPO),
               CALIBAN_BASE_IMAGE=BASE_IMAGE)
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "CALIBAN_API_ENDPOINT", "PROJECT_ID", *drop):
        env.pop(name, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "caliban", "cloud", *argv], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


def history_rows(tmp_path):
    conn = sqlite3.connect(tmp_path / "history.db")
    try:
        return conn.execute("SELECT status, caliban_key, remote_id FROM job ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("backend", ["vertex", "ml_v1"])
def test_sweep_with_image_tag_submits_each_job_once(emu, project, tmp_path, backend):
    emu.inject(ce.DROP_AFTER_CREATE)
    emu.inject(ce.RATE_LIMIT)
    r = caliban(project, tmp_path, "--api_endpoint", emu.url, "--cloud_key", emu.key_path,
                "--project_id", "caliban-test", "--backend", backend, "--image_tag", IMAGE_TAG, "--nogpu",
                "--experiment_config", "experiment.json", "trainer.train")
    assert r.returncode == 0, r.stderr
    assert "Submitted 3 of 3 jobs (1 found by label after an unanswered request); 0 failed; 0 skipped." in r.stdout
    logs = "gcloud ai custom-jobs stream-logs" if backend == "vertex" else "gcloud ai-platform jobs stream-logs"
    assert r.stdout.count(logs) == 3
    counts = emu.counts_by_key(backend=backend)
    assert len(counts) == 3 and set(counts.values()) == {1}
    stored = emu.jobs(backend)
    image = (stored[0]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] if backend == "vertex"
             else stored[0]["trainingInput"]["masterConfig"]["imageUri"])
    assert image == IMAGE_TAG
    rows = history_rows(tmp_path)
    assert [status for status, _, _ in rows] == ["SUBMITTED"] * 3
    assert {key for _, key, _ in rows} == set(counts)


def test_quota_stop_reports_quota_and_how_to_resume(emu, project, tmp_path):
    (project / "experiment.json").write_text(json.dumps({"lr": [1, 2, 3, 4]}))
    r = caliban(project, tmp_path, "--api_endpoint", emu.url, "--cloud_key", emu.key_path,
                "--project_id", "caliban-test", "--image_tag", IMAGE_TAG, "--gpu_spec", "1xP100",
                "--rate_limit", "600", "--experiment_config", "experiment.json", "trainer.train")
    assert r.returncode == 1
    assert "aiplatform.googleapis.com/custom_model_training_nvidia_tesla_p100_gpus" in r.stdout
    assert "Submitted 2 of 4 jobs" in r.stdout
    assert "Not submitted (2)" in r.stdout and "caliban resubmit --xgroup" in r.stdout
    assert len(emu.jobs()) == 2
    # Workers take limiter slots in any order: which two jobs got the GPUs is not fixed.
    rows = history_rows(tmp_path)
    submitted = {key for status, key, _ in rows if status == "SUBMITTED"}
    assert len(rows) == 4 and submitted == {j["labels"]["caliban_key"] for j in emu.jobs()}


def test_no_credentials_fails_before_any_build(emu, project, tmp_path):
    r = caliban(project, tmp_path, "--api_endpoint", emu.url, "--project_id", "caliban-test", "--nogpu",
                "--image_repo", f"{REGISTRY}/test/caliban", "trainer.train",
                env_extra={"HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
                           "NO_GCE_CHECK": "True", "DOCKER_HOST": "unix:///nonexistent.sock"})
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "gcloud auth application-default login" in lines[0], r.stderr
    assert emu.requests == []


# -- build + push to the loopback registry ----------------------------------------


def test_build_push_and_submit_through_the_loopback_registry(emu, project, tmp_path):
    client = engine_and_registry()
    repo = f"{REGISTRY}/test/caliban"
    argv = ("--api_endpoint", emu.url, "--cloud_key", emu.key_path, "--project_id", "caliban-test", "--nogpu",
            "--image_repo", repo, "--experiment_config", "experiment.json", "trainer.train")
    pushed = None
    try:
        r = caliban(project, tmp_path, *argv)
        assert r.returncode == 0, r.stderr[-3000:]
        images = {j["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] for j in emu.jobs()}
        assert len(images) == 1 and len(emu.jobs()) == 3
        pushed = images.pop()
        assert pushed.startswith(f"{repo}/proj:c")
        name, tag = pushed[len(REGISTRY) + 1:].rsplit(":", 1)
        tags = json.loads(urllib.request.urlopen(f"http://{REGISTRY}/v2/{name}/tags/list", timeout=10).read())
        assert tag in tags["tags"]
        assert f"Pushed {pushed}" in r.stderr

        # Same project, same image content: the registry already has it.
        again = caliban(project, tmp_path, *argv)
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(emu.jobs()) == 6
        second = {j["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] for j in emu.jobs()} - {pushed}
        if not second:  # the rebuild hit the build cache: same image id, same tag
            assert "already in the registry: not pushed again" in again.stderr
        else:  # another test on this shared engine evicted the cache: a new image, pushed
            assert f"Pushed {second.pop()}" in again.stderr
    finally:
        for uri in {j["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] for j in emu.jobs()}:
            remove_pushed(client, uri)


def test_plain_status_after_a_sweep_reaches_the_jobs_with_the_recorded_key(emu, project, tmp_path):
    r = caliban(project, tmp_path, "--api_endpoint", emu.url, "--cloud_key", emu.key_path,
                "--project_id", "caliban-test", "--image_tag", IMAGE_TAG, "--nogpu", "--xgroup", "g1",
                "--experiment_config", "experiment.json", "trainer.train")
    assert r.returncode == 0, r.stderr
    first = emu.jobs("vertex")[0]["name"]
    emu.set_state(first, "JOB_STATE_RUNNING")
    env = dict(os.environ, CALIBAN_DB_URL=str(tmp_path / "history.db"), PYTHONPATH=str(REPO))
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "CALIBAN_API_ENDPOINT", "PROJECT_ID", "REGION"):
        env.pop(name, None)
    status = subprocess.run([sys.executable, "-m", "caliban", "status", "--format", "json"], cwd=project,
                            env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "cannot refresh" not in status.stderr
    jobs = json.loads(status.stdout)["groups"][0]["jobs"]
    assert [j["status"] for j in jobs] == ["RUNNING", "SUBMITTED", "SUBMITTED"]
    with sqlite3.connect(tmp_path / "history.db") as conn:
        assert {row[0] for row in conn.execute("SELECT cloud_key FROM job")} == {os.path.abspath(emu.key_path)}
