"""`caliban cloud --dry_run` through the real CLI: JSON output, previews, and exit 2 before anything."""

import json
import os
import subprocess
import sys

import pytest

from tests import REPO
from tests.backends.test_backends import body_errors

EXPERIMENTS = {"lr": [0.01, 0.1], "layers": [1, 2, 3], "fast": True}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "__init__.py").write_text("")
    (tmp_path / "trainer" / "train.py").write_text("print('training')\n")
    (tmp_path / "experiments.json").write_text(json.dumps(EXPERIMENTS))
    return tmp_path


def caliban_cloud(project, *argv):
    """Run the CLI with no credentials, no docker on PATH and no reachable network."""
    env = {
        "HOME": str(project),
        "PATH": str(project / "no-bin"),
        "USER": "sam",
        "GOOGLE_APPLICATION_CREDENTIALS": str(project / "missing-key.json"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        [sys.executable, "-m", "caliban", "cloud", *argv],
        capture_output=True, text=True, cwd=project, env=env,
    )


def dry_run_json(project, *argv):
    result = caliban_cloud(project, "--dry_run", "--format", "json", *argv)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result


# ---------------------------------------------------------------- JSON output


def test_json_is_one_object_per_job_with_the_exact_request(project):
    jobs, _ = dry_run_json(project, "--experiment_config", "experiments.json", "-l", "team=Core",
                           "trainer.train", "--", "--epochs", "2")
    assert len(jobs) == 6
    assert {tuple(job) for job in jobs} == {("backend", "args", "labels", "request")}
    assert jobs[0]["args"] == ["--epochs", "2", "--lr", "0.01", "--layers", "1", "--fast"]
    assert jobs[-1]["args"] == ["--epochs", "2", "--lr", "0.1", "--layers", "3", "--fast"]
    names, keys = set(), set()
    for job in jobs:
        request = job["request"]
        assert job["backend"] == "vertex"
        assert body_errors("vertex", request) == []
        assert request["labels"] == job["labels"]
        pool = request["jobSpec"]["workerPoolSpecs"][0]
        assert pool["containerSpec"]["args"] == job["args"]
        assert pool["machineSpec"] == {"machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_P100",
                                       "acceleratorCount": 1}
        labels = job["labels"]
        assert (labels["gpu_enabled"], labels["tpu_enabled"], labels["job_name"]) == ("true", "false", "caliban_sam")
        assert labels["team"] == "core" and labels["epochs"] == "2" and labels["fast"] == ""
        names.add(request["displayName"])
        keys.add(labels["caliban_key"])
    assert jobs[0]["labels"]["lr"] == "0_01"
    assert len(names) == len(keys) == 6
    assert all(name.startswith("caliban_sam_") and name.endswith(f"_{i}") for i, name in
               enumerate((job["request"]["displayName"] for job in jobs), 1))


def test_ml_v1_backend(project):
    jobs, _ = dry_run_json(project, "--backend", "ml_v1", "--gpu_spec", "2xV100", "--region", "europe-west4",
                           "--name", "my-run", "trainer.train")
    [job] = jobs
    assert job["backend"] == "ml_v1"
    assert body_errors("ml_v1", job["request"]) == []
    training = job["request"]["trainingInput"]
    assert job["request"]["jobId"].startswith("my_run_")
    assert training["masterConfig"]["acceleratorConfig"] == {"count": "2", "type": "NVIDIA_TESLA_V100"}
    assert training["region"] == "europe-west4"


def test_image_placeholder_names_the_project_and_image_tag_is_used_as_is(project):
    [job], _ = dry_run_json(project, "--nogpu", "--project_id", "my-proj", "--region", "europe-west4",
                            "trainer.train")
    image = job["request"]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"]
    assert image.startswith("europe-west4-docker.pkg.dev/my-proj/caliban/")
    [job], _ = dry_run_json(project, "--nogpu", "--image_tag", "gcr.io/p/img:v1", "trainer.train")
    assert job["request"]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] == "gcr.io/p/img:v1"
    assert job["labels"]["docker_image"] == "gcr_iopimgv1"


def test_tpu_spot_timeout_and_service_account(project):
    [job], _ = dry_run_json(project, "--tpu_spec", "8xV3", "--spot", "--timeout", "2h",
                            "--service_account", "sa@p.iam.gserviceaccount.com", "trainer.train")
    spec = job["request"]["jobSpec"]
    assert spec["workerPoolSpecs"][0]["machineSpec"] == {"machineType": "cloud-tpu", "acceleratorType": "TPU_V3",
                                                         "acceleratorCount": 8}
    assert spec["scheduling"] == {"strategy": "SPOT", "timeout": "7200s"}
    assert spec["serviceAccount"] == "sa@p.iam.gserviceaccount.com"
    assert job["labels"]["tpu_enabled"] == "true" and job["labels"]["gpu_enabled"] == "false"
    assert body_errors("vertex", job["request"]) == []


def test_force_keeps_stdout_pure_json_and_warns_on_stderr(project):
    jobs, result = dry_run_json(project, "--force", "--machine_type", "n1-standard-32", "--gpu_spec", "1xV100",
                                "trainer.train")
    assert jobs[0]["request"]["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["machineType"] == "n1-standard-32"
    assert "--force" in result.stderr


def test_empty_sweep_is_an_empty_array(project):
    (project / "none.json").write_text(json.dumps({"lr": []}))
    jobs, result = dry_run_json(project, "--experiment_config", "none.json", "trainer.train")
    assert jobs == [] and "zero experiments" in result.stderr


# ---------------------------------------------------------------- text preview


def test_text_preview_shows_every_job_and_a_count(project):
    result = caliban_cloud(project, "--dry_run", "--experiment_config", "experiments.json", "--gpu_spec", "2xL4",
                           "trainer.train", "--", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("Job ") == 6 and "Job 6/6: caliban_sam_" in out
    assert "g2-standard-24, accelerators: 2xL4" in out
    assert "us-central1" in out and "docker.pkg.dev" in out
    assert "--epochs 2 --lr 0.1 --layers 3 --fast" in out
    assert "job_name=caliban_sam" in out and "lr=0_1" in out
    assert "python -m trainer.train" in out
    assert out.rstrip().splitlines()[-1].startswith("Dry run: 6 jobs would be submitted to Vertex AI")


# ---------------------------------------------------------------- invalid input: exit 2, nothing on stdout


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--machine_type", "a2-highgpu-4g", "--gpu_spec", "2xL4"], "g2-standard-24"),
        (["--machine_type", "n1-standard-32", "--gpu_spec", "1xV100"], "12 vCPUs"),
        (["--gpu_spec", "1xK80"], "end of life"),
        (["--gpu_spec", "2xFOO"], "GPU types"),
        (["--nogpu", "--gpu_spec", "1xT4"], "--nogpu"),
        (["--region", "europe-west1", "--gpu_spec", "8xH100"], "regions with H100"),
        (["--region", "asia-northeast1"], "default 1xP100"),
        (["--backend", "ml_v1", "--spot"], "--spot"),
        (["--backend", "ml_v1", "--gpu_spec", "1xL4"], "--backend vertex"),
        (["--timeout", "soon"], "--timeout"),
        (["--tpu_spec", "3xV3"], "8xV3"),
        (["--experiment_config", "missing.json"], "missing.json"),
    ],
)
def test_invalid_combinations_exit_2_with_nothing_on_stdout(project, argv, expected):
    result = caliban_cloud(project, "--dry_run", "--format", "json", *argv, "trainer.train")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert expected in result.stderr


def test_unknown_target_exits_2(project):
    result = caliban_cloud(project, "--dry_run", "no_such.module")
    assert result.returncode == 2 and result.stdout == ""


def test_missing_project_id_is_an_error_only_without_dry_run(project):
    result = caliban_cloud(project, "--nogpu", "trainer.train")
    assert result.returncode == 2 and "--project_id" in result.stderr and result.stdout == ""
    assert caliban_cloud(project, "--dry_run", "--nogpu", "trainer.train").returncode == 0


def test_validation_fails_before_the_project_id_check(project):
    result = caliban_cloud(project, "--gpu_spec", "1xA100", "--machine_type", "n1-standard-8", "trainer.train")
    assert result.returncode == 2 and "a2-highgpu-1g" in result.stderr


def test_image_tag_warns_that_build_flags_are_ignored(project):
    _, result = dry_run_json(project, "--nogpu", "--image_tag", "gcr.io/p/img:v1", "-d", "data", "trainer.train")
    assert "--dir and --extras are ignored" in result.stderr


def test_json_dry_run_streams_the_same_bytes_as_rendering_the_whole_list(tmp_path, monkeypatch):
    """Jobs are written one at a time; the bytes equal rendering the materialised list at once."""
    import io
    import json as json_module

    from caliban import options
    from caliban.commands.cloud import write_json
    from caliban.main import parse_args
    from caliban.sweep.plan import prepare_jobs

    monkeypatch.chdir(REPO / "example")
    config = tmp_path / "sweep.json"
    config.write_text(json_module.dumps({"lr": [0.1, 0.01, 0.001], "layers": list(range(17))}))
    opts = options.cloud_submit(parse_args(["cloud", "--dry_run", "--nogpu", "--project_id", "p",
                                            "--experiment_config", str(config), "trainer.train"]))
    jobs = list(prepare_jobs(opts.plan))
    whole = "[\n" + ",\n".join(json_module.dumps({"backend": "vertex", "args": p.job.args, "labels": p.job.labels,
                                                   "request": p.request}) for p in jobs) + "\n]\n"
    streamed = io.StringIO()
    write_json(iter(jobs), "vertex", streamed)
    assert streamed.getvalue() == whole
    assert len(json_module.loads(whole)) == 51
    empty = io.StringIO()
    write_json(iter([]), "vertex", empty)
    assert empty.getvalue() == "[]\n"


def test_a_100000_job_json_dry_run_stays_small(tmp_path):
    """Peak memory of the whole process, read back from the kernel: flat as the sweep grows."""
    import json as json_module


    config = tmp_path / "big.json"
    config.write_text(json_module.dumps({"a": list(range(1000)), "b": list(range(100))}))
    code = (
        "import resource, subprocess, sys\n"
        "out = subprocess.run([sys.executable, '-m', 'caliban', 'cloud', '--dry_run', '--nogpu', '--format', 'json',"
        f" '--max_experiments', '100000', '--experiment_config', {str(config)!r}, 'trainer.train'],"
        " stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
        "assert out.returncode == 0\n"
        "print(out.stdout.count(b'caliban_key\": '), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO / "example", capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr
    labels, max_rss_kb = map(int, result.stdout.split())
    assert labels == 2 * 100_000  # every job's caliban_key, in its labels and its request
    assert max_rss_kb < 100 * 1024, f"peak RSS {max_rss_kb} KB"

