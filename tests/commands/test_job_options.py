"""Job options on both sides: --env, --output_dir, --boot_disk_*, --nodes, scheduling.

Dry-run bodies are checked against the discovery documents google-api-python-client
ships (the same check the emulator and the submitter use); the local side runs on
the real engine.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from caliban import history
from caliban.cloud.schema import job_body_errors
from tests.docker_helpers import BASE_IMAGE, cleanup, engine_client
from tests.cloud_helpers import REPO


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    (root / "trainer").mkdir(parents=True)
    (root / "trainer" / "__init__.py").write_text("")
    (root / "trainer" / "train.py").write_text(textwrap.dedent(
        """
        import os
        model_dir = os.environ["AIP_MODEL_DIR"]
        os.makedirs(model_dir, exist_ok=True)
        with open(os.path.join(model_dir, "weights.txt"), "w") as fh:
            fh.write(os.environ.get("SEED", "none"))
        print("wrote", model_dir)
        """
    ))
    (root / ".calibanconfig.json").write_text(json.dumps({"base_image": BASE_IMAGE}))
    return root


def caliban(project, tmp_path, *argv):
    env = dict(os.environ, CALIBAN_DB_URL=str(tmp_path / "h.db"), PYTHONPATH=str(REPO), CALIBAN_BASE_IMAGE=BASE_IMAGE)
    return subprocess.run([sys.executable, "-m", "caliban", *argv], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


def dry_run(project, tmp_path, *flags, backend="vertex"):
    result = caliban(project, tmp_path, "cloud", "--dry_run", "--format", "json", "--backend", backend,
                     *flags, "trainer.train")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_option_reaches_a_valid_vertex_body(project, tmp_path):
    (job,) = dry_run(project, tmp_path, "--nogpu", "--env", "SEED=7", "--env", "MODE=a=b", "--output_dir",
                     "gs://bucket/runs", "--boot_disk_size", "250", "--boot_disk_type", "pd-ssd", "--nodes", "4",
                     "--restart_on_worker_restart", "--reservation",
                     "projects/my-project/zones/us-central1-a/reservations/my-res", "--timeout", "2h")
    body = job["request"]
    assert job_body_errors("vertex", body) == []
    spec = body["jobSpec"]
    pools = spec["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == ["1", "3"]
    assert pools[0]["containerSpec"] == pools[1]["containerSpec"]
    assert pools[0]["containerSpec"]["env"] == [{"name": "SEED", "value": "7"}, {"name": "MODE", "value": "a=b"}]
    assert pools[0]["diskSpec"] == {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 250}
    assert pools[0]["machineSpec"]["reservationAffinity"] == {
        "reservationAffinityType": "SPECIFIC_RESERVATION", "key": "compute.googleapis.com/reservation-name",
        "values": ["projects/my-project/zones/us-central1-a/reservations/my-res"]}
    assert spec["baseOutputDirectory"] == {"outputUriPrefix": f"gs://bucket/runs/{body['displayName']}/"}
    assert spec["scheduling"] == {"timeout": "7200s", "restartJobOnWorkerRestart": True}


def test_ml_v1_nodes_are_master_plus_workers_and_refuses_what_it_cannot_express(project, tmp_path):
    (job,) = dry_run(project, tmp_path, "--nogpu", "--nodes", "4", "--boot_disk_size", "200", backend="ml_v1")
    training = job["request"]["trainingInput"]
    assert job_body_errors("ml_v1", job["request"]) == []
    assert (training["masterType"], training["workerType"], training["workerCount"]) == (
        "n1-highcpu-32", "n1-highcpu-32", "3")
    assert training["workerConfig"] == training["masterConfig"]
    for flags, word in ((["--env", "A=1"], "--env"), (["--output_dir", "gs://b/o"], "--output_dir"),
                        (["--reservation", "projects/my-project/zones/us-central1-a/reservations/r"], "--reservation"), (["--spot"], "--spot")):
        result = caliban(project, tmp_path, "cloud", "--dry_run", "--backend", "ml_v1", "--nogpu", *flags,
                         "trainer.train")
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert f"{word} needs --backend vertex" in result.stderr


@pytest.mark.parametrize("flags, message", [
    (["--spot", "--flex_start"], "--spot and --flex_start are alternative ways to get capacity"),
    (["--max_wait", "1h"], "pass --flex_start with it"),
    (["--flex_start", "--gpu_spec", "1xT4"], "--flex_start"),
    (["--reservation", "my-res"], "--reservation"),
    (["--boot_disk_size", "50"], "--boot_disk_size 50"),
    (["--boot_disk_type", "floppy"], "--boot_disk_type 'floppy'"),
    (["--output_dir", "runs"], "give a gs://BUCKET/PATH URI"),
    (["--env", "1BAD=x"], "must look like NAME=VALUE"),
    (["--nodes", "0"], "'0' is not a positive integer"),
])
def test_refusals_are_one_line_and_exit_2(project, tmp_path, flags, message):
    gpu = [] if "--gpu_spec" in flags else ["--nogpu"]
    result = caliban(project, tmp_path, "cloud", "--dry_run", *gpu, *flags, "trainer.train")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_local_job_writes_into_its_output_dir_on_the_host(project, tmp_path):
    engine_client()  # skip (or fail with CI=true) without an engine
    result = caliban(project, tmp_path, "run", "--nogpu", "--xgroup", "out-test", "--env", "SEED=42",
                     "--output_dir", "results", "trainer.train")
    try:
        assert result.returncode == 0, result.stderr
        (weights,) = (project / "results" / "out-test").glob("job_*/model/weights.txt")
        assert weights.read_text() == "42"
        assert weights.stat().st_uid == os.getuid()
    finally:
        cleanup(engine_client(), str(project))


def test_results_land_in_caliban_outputs_by_default_and_stay_out_of_the_next_image(project, tmp_path):
    engine_client()
    (project / "trainer" / "look.py").write_text("import os\nprint('copied:', sorted(os.listdir('.')))\n")
    first = caliban(project, tmp_path, "run", "--nogpu", "--xgroup", "default-out", "--env", "SEED=7",
                    "trainer.train")
    try:
        assert first.returncode == 0, first.stderr
        (weights,) = (project / "caliban_outputs" / "default-out").glob("job_*/model/weights.txt")
        assert weights.read_text() == "7" and weights.stat().st_uid == os.getuid()
        # The next image is built from a project that now holds results: they are not copied.
        second = caliban(project, tmp_path, "run", "--nogpu", "--output_dir", "", "trainer.look")
        assert second.returncode == 0, second.stderr
        (line,) = [x for x in second.stdout.splitlines() if "copied:" in x]
        assert "'trainer'" in line and "caliban_outputs" not in line, line
        # '' asked for no folder: the second job wrote nothing next to the first one's.
        assert [p.name for p in (project / "caliban_outputs").iterdir()] in (
            ["default-out", ".caliban-output"], [".caliban-output", "default-out"])
    finally:
        cleanup(engine_client(), str(project))


def test_a_project_whose_path_has_a_colon_keeps_its_results_too(project, tmp_path):
    engine_client()
    odd = tmp_path / "runs:v2,final" / "proj"
    odd.parent.mkdir()
    project.rename(odd)
    result = caliban(odd, tmp_path, "run", "--nogpu", "--xgroup", "colon", "--env", "SEED=3", "trainer.train")
    try:
        assert result.returncode == 0, result.stderr
        (weights,) = (odd / "caliban_outputs" / "colon").glob("job_*/model/weights.txt")
        assert weights.read_text() == "3"
    finally:
        cleanup(engine_client(), str(odd))


def test_an_output_dir_that_cannot_be_made_stops_the_run_before_the_build(project, tmp_path):
    (project / "notes.txt").write_text("a file, not a folder")
    result = caliban(project, tmp_path, "run", "--nogpu", "--output_dir", "notes.txt/runs", "trainer.train")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--output_dir notes.txt/runs: cannot create" in result.stderr and "--output_dir ''" in result.stderr
    assert "[build]" not in result.stderr
    with history.Store(tmp_path / "h.db") as store:
        assert store.groups() == []  # nothing recorded


def test_flex_start_with_8xh100_and_b200_pass_and_validate(project, tmp_path):
    (job,) = dry_run(project, tmp_path, "--gpu_spec", "8xH100", "--flex_start", "--max_wait", "2h")
    assert job_body_errors("vertex", job["request"]) == []
    assert job["request"]["jobSpec"]["scheduling"] == {"strategy": "FLEX_START", "maxWaitDuration": "7200s"}
    (job,) = dry_run(project, tmp_path, "--gpu_spec", "8xB200", "--machine_type", "a4-highgpu-8g", "--nodes", "2")
    pools = job["request"]["jobSpec"]["workerPoolSpecs"]
    assert job_body_errors("vertex", job["request"]) == []
    assert pools[0]["machineSpec"] == {"machineType": "a4-highgpu-8g", "acceleratorType": "NVIDIA_B200",
                                       "acceleratorCount": 8}


def test_tpu_v6e_validates_and_a_v6e_spec_on_a_gpu_machine_is_refused(project, tmp_path):
    (job,) = dry_run(project, tmp_path, "--tpu_spec", "8xV6E")
    assert job_body_errors("vertex", job["request"]) == []
    assert job["request"]["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["machineType"] == "ct6e-standard-8t"
    refused = caliban(project, tmp_path, "cloud", "--dry_run", "--tpu_spec", "8xV6E", "--machine_type",
                      "a2-highgpu-1g", "trainer.train")
    assert refused.returncode == 2 and "ct6e-standard-8t" in refused.stderr, refused.stderr


def test_the_default_p100_warns_that_it_is_old(project, tmp_path):
    result = caliban(project, tmp_path, "cloud", "--dry_run", "trainer.train")
    assert result.returncode == 0, result.stderr
    assert "P100" in result.stderr and "L4" in result.stderr
