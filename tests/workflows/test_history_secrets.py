"""Secret --env values of cloud jobs: sent to the API, never written to the history.

`caliban cloud --env HF_TOKEN=...` must reach the job, and `resubmit` must send
it again, but the history file (which `status --format json` prints and which
outlives the token's rotation) keeps only the name; resubmit reads the value
from its own environment and refuses, before building or sending anything,
when it is not there.
"""

import json

import pytest

from caliban import history
from tests.history_helpers import record_job
from tests.workflows.test_history_scale import IMAGE_TAG, caliban, emu  # noqa: F401 (emu is a fixture)

TOKEN = "hf_s3cretValueThatMustNotBeStored"


def vertex_env(body):
    return body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]


def test_the_store_keeps_names_of_secret_env_values_and_resubmit_fills_them_back(tmp_path):
    body = {"jobSpec": {"workerPoolSpecs": [{"containerSpec": {"imageUri": "x", "env": [
        {"name": "HF_TOKEN", "value": TOKEN}, {"name": "SEED", "value": "1"},
        {"name": "REPO_URL", "value": "https://me:ghp_abc@example.org/r.git"}]}}]}}
    db = tmp_path / "h.db"
    with history.Store(db) as s:
        job = record_job(s, s.create_group("g").id, backend="vertex", request=body, caliban_key="k")
        stored = s.job(job).request
    assert vertex_env(stored) == [{"name": "HF_TOKEN", "value": None}, {"name": "SEED", "value": "1"},
                                  {"name": "REPO_URL", "value": None}]
    assert vertex_env(body)[0]["value"] == TOKEN  # the caller's body is left as it was
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert TOKEN.encode() not in on_disk and b"ghp_abc" not in on_disk
    filled, missing = history.restore_secret_env(stored, {"HF_TOKEN": TOKEN})
    assert vertex_env(filled)[0] == {"name": "HF_TOKEN", "value": TOKEN} and missing == ["REPO_URL"]


def test_cloud_sends_the_secret_and_resubmit_needs_it_from_the_environment(tmp_path, emu, monkeypatch):
    project = tmp_path / "proj"
    (project / "trainer").mkdir(parents=True)
    (project / "trainer" / "__init__.py").write_text("")
    (project / "trainer" / "train.py").write_text("")
    sent = caliban(tmp_path, emu, "cloud", "--nogpu", "--image_tag", IMAGE_TAG, "--xgroup", "tok",
                   "--env", f"HF_TOKEN={TOKEN}", "--env", "SEED=1", "trainer.train")
    assert sent.returncode == 0, sent.stderr
    (job,) = emu.jobs("vertex")
    assert {"name": "HF_TOKEN", "value": TOKEN} in vertex_env(job)  # the job gets it
    assert TOKEN.encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    status = caliban(tmp_path, emu, "status", "--xgroup", "tok", "--format", "json")
    assert TOKEN not in status.stdout and "HF_TOKEN" in status.stdout

    emu.set_state(job["name"], "JOB_STATE_FAILED")
    refused = caliban(tmp_path, emu, "resubmit", "--xgroup", "tok", "--yes")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "$HF_TOKEN" in refused.stderr and "export it" in refused.stderr
    assert len(emu.jobs("vertex")) == 1  # nothing sent
    with history.Store(tmp_path / "history.db") as s:
        assert len(s.jobs(group="tok")) == 1  # nothing recorded

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    again = caliban(tmp_path, emu, "resubmit", "--xgroup", "tok", "--yes")
    assert again.returncode == 0, again.stderr
    first, second = emu.jobs("vertex")
    assert vertex_env(second) == vertex_env(first)
    assert TOKEN.encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
