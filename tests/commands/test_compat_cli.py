"""Caliban 0.4.2 projects and command lines, through `python -m caliban`: a
`.calibanconfig.json` with every 0.4.2 key, dash-spelled flags, targets
that are typos, and domain-scoped project ids, on real files and the cloud
emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from caliban.calibanconfig import DLC_REPOSITORY
from tests.test_calibanconfig import CONFIG_042
from tests import REPO



@pytest.fixture
def project(tmp_path):
    """A 0.4.2 tutorial project: trainer package, a shell script, a sweep and the 0.4.2 config."""
    root = tmp_path / "mnist"
    (root / "trainer").mkdir(parents=True)
    (root / "trainer" / "__init__.py").write_text("")
    (root / "trainer" / "train.py").write_text("import sys\nprint('args', sys.argv[1:])\n")
    (root / "scripts").mkdir()
    (root / "scripts" / "hello.sh").write_text("echo hello\n")
    (root / "experiment.json").write_text(json.dumps({"learning_rate": [0.1, 0.01]}))
    (root / ".calibanconfig.json").write_text(json.dumps(CONFIG_042))
    (root / "keys").mkdir()
    (root / "keys" / "sa.json").write_text("{}")  # gcloud.cloud_key; mounted by `run`, never built in
    return root


def caliban(cwd, *argv, env_extra=None):
    env = dict(os.environ, CALIBAN_DB_URL=str(Path(cwd).parent / "history.db"), PYTHONPATH=str(REPO))
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "CALIBAN_API_ENDPOINT", "PROJECT_ID", "REGION"):
        env.pop(name, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "caliban", *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


def test_cloud_dry_run_of_a_042_project_uses_its_config(project):
    r = caliban(project, "cloud", "--dry_run", "--format", "json", "--experiment_config", "experiment.json",
                "trainer.train", env_extra={"PROJECT_ID": "env-project"})
    assert r.returncode == 0, r.stderr
    # One warning, naming the keys that no longer do anything.
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "build_time_credentials" in warnings[0] and "mlflow_config" in warnings[0]
    jobs = json.loads(r.stdout)
    assert len(jobs) == 2
    # default_mode "cpu": no --nogpu needed, a CPU machine and no accelerator.
    assert {job["labels"]["gpu_enabled"] for job in jobs} == {"false"}
    pool = jobs[0]["request"]["jobSpec"]["workerPoolSpecs"][0]
    assert "acceleratorType" not in pool["machineSpec"]
    # The config's image_repo (a domain-scoped project in a gcr.io path) becomes a valid repository.
    assert pool["containerSpec"]["imageUri"].startswith("gcr.io/google.com/my-project/images/mnist:")


def test_gcloud_section_sits_between_the_flags_and_the_environment(project):
    config = dict(CONFIG_042)
    del config["image_repo"]
    project.joinpath(".calibanconfig.json").write_text(json.dumps(config))

    def image_of(*flags, env=None):
        r = caliban(project, "cloud", "--dry_run", "--format", "json", *flags, "trainer.train", env_extra=env)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)[0]["request"]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"]

    # The config beats $PROJECT_ID, and its domain-scoped id becomes google.com/my-project.
    assert image_of(env={"PROJECT_ID": "env-project"}).startswith(
        "us-central1-docker.pkg.dev/google.com/my-project/caliban/mnist:")
    # The flag beats the config.
    assert image_of("--project_id", "flag-project").startswith("us-central1-docker.pkg.dev/flag-project/caliban/")
    # Without the section, the environment counts again.
    del config["gcloud"]
    project.joinpath(".calibanconfig.json").write_text(json.dumps(config))
    assert image_of(env={"PROJECT_ID": "env-project"}).startswith("us-central1-docker.pkg.dev/env-project/")


def test_run_dry_run_reads_the_config_and_default_mode(project):
    r = caliban(project, "run", "--dry_run", "--experiment_config", "experiment.json", "trainer.train")
    assert r.returncode == 0, r.stderr
    commands = r.stdout.splitlines()
    assert len(commands) == 2 and all("--gpus" not in c for c in commands)
    assert all(f"{project}/keys/sa.json:" in c for c in commands)  # the config's cloud_key is mounted
    assert sum("warning" in line for line in r.stderr.splitlines()) == 1
    # Without default_mode, GPU mode is the default again, as in 0.4.2.
    config = dict(CONFIG_042)
    del config["default_mode"]
    project.joinpath(".calibanconfig.json").write_text(json.dumps(config))
    r = caliban(project, "run", "--dry_run", "trainer.train")
    assert r.returncode == 0, r.stderr
    assert "--gpus all" in r.stdout
    r = caliban(project, "run", "--dry_run", "--nogpu", "trainer.train")
    assert "--gpus" not in r.stdout


@pytest.mark.parametrize("command", [
    ["run", "--dry_run"], ["cloud", "--dry_run"], ["build"], ["shell"], ["notebook"],
    ["cloud", "--dry_run", "--image_tag", "gcr.io/p/img:1"], ["run", "--dry_run", "--image_id", "sha256:abc"],
])
def test_every_command_validates_the_config_before_doing_anything(project, command):
    config = dict(CONFIG_042, base_image="dlvm:pytorch-{}-1.4")
    project.joinpath(".calibanconfig.json").write_text(json.dumps(config))
    r = caliban(project, *command, *([] if command[0] in ("shell", "notebook") else ["trainer.train"]))
    assert r.returncode == 2, r.stdout + r.stderr
    error = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and "'dlvm:pytorch-cpu-1.4' is no longer published" in error[0]
    assert "pytorch-cpu-2.4" in error[0] and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_dlvm_base_image_appears_in_the_planned_dockerfile(project):
    from caliban.docker.engine import plan_image
    from caliban.sweep.targets import classify_target

    target = classify_target("trainer.train", str(project))
    cpu = plan_image(str(project), target, gpu=False, user=(0, 0))
    gpu = plan_image(str(project), target, gpu=True, user=(0, 0))
    assert f"\nFROM {DLC_REPOSITORY}/pytorch-cpu.2-4.py310\n" in cpu.dockerfile
    assert f"\nFROM {DLC_REPOSITORY}/pytorch-cu124.2-4.py310\n" in gpu.dockerfile
    assert "build_time_credentials" not in cpu.dockerfile and "sa.json" not in cpu.dockerfile


def test_gcloud_cloud_key_and_project_reach_the_api(project, tmp_path, emulator):
    """A real submission: project and key come from the config's gcloud section only."""
    emulator.write_service_account_key(project / "sa-key.json", "caliban-test")
    config = dict(CONFIG_042, gcloud={"project_id": "caliban-test", "cloud_key": "sa-key.json"})
    project.joinpath(".calibanconfig.json").write_text(json.dumps(config))
    r = caliban(project, "cloud", "--api-endpoint", emulator.url, "--image-tag", "gcr.io/caliban-test/img:1",
                "--experiment-config", "experiment.json", "trainer.train",
                env_extra={"PROJECT_ID": "not-this-project", "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent.json"})
    assert r.returncode == 0, r.stderr
    assert len(emulator.jobs("vertex")) == 2
    creates = [req.path for req in emulator.requests if req.method == "POST" and req.path.endswith("customJobs")]
    assert creates and all("/projects/caliban-test/" in path for path in creates)


# ---------------------------------------------------------------- dash-spelled flags


def test_flags_accept_gcloud_dash_spelling(project):
    r = caliban(project, "cloud", "--dry-run", "--format", "json", "--experiment-config", "experiment.json",
                "--gpu-spec", "2xV100", "--machine-type", "n1-standard-16", "--project-id", "p", "--nogpu",
                "trainer.train")
    assert r.returncode == 2 and "--nogpu and --gpu_spec contradict" in r.stderr  # parsed as the real flags
    r = caliban(project, "cloud", "--dry-run", "--format", "json", "--experiment-config", "experiment.json",
                "--machine-type=n1-standard-16", "--project-id", "p", "trainer.train", "--", "--keep-me-as-is", "1")
    assert r.returncode == 0, r.stderr
    jobs = json.loads(r.stdout)
    assert len(jobs) == 2  # the config path was not taken for the target
    assert jobs[0]["request"]["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["machineType"] == "n1-standard-16"
    assert jobs[0]["args"][:2] == ["--keep-me-as-is", "1"]  # pass-through arguments are untouched


def test_042_abbreviations_still_work_beside_the_dash_spelling(project):
    config = dict(CONFIG_042)
    del config["default_mode"]
    project.joinpath(".calibanconfig.json").write_text(json.dumps(config))
    r = caliban(project, "cloud", "--dry_run", "--format", "json", "--gpu", "2xV100", "--project", "p",
                "trainer.train")
    assert r.returncode == 0, r.stderr
    spec = json.loads(r.stdout)[0]["request"]["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    assert (spec["acceleratorType"], spec["acceleratorCount"]) == ("NVIDIA_TESLA_V100", 2)


def test_dash_spelling_of_an_unknown_flag_is_still_an_error(project):
    r = caliban(project, "run", "--dry_run", "--no-such-flag", "trainer.train")
    assert r.returncode == 2 and "--no-such-flag" in r.stderr


# ---------------------------------------------------------------- targets that are typos


def test_a_missing_script_is_a_missing_file_with_the_closest_names(project):
    r = caliban(project, "run", "--dry_run", "scripts/helo.sh")
    assert r.returncode == 2
    assert "no file scripts/helo.sh" in r.stderr and "closest existing: scripts/hello.sh" in r.stderr
    assert "helo/sh.py" not in r.stderr and len(r.stderr.strip().splitlines()) == 2  # the config warning + this


# ---------------------------------------------------------------- domain-scoped projects


@pytest.mark.parametrize(
    "project_id, image_repo, planned",
    [
        ("google.com:my-project", None, "us-central1-docker.pkg.dev/google.com/my-project/caliban/mnist:"),
        ("my-project", None, "us-central1-docker.pkg.dev/my-project/caliban/mnist:"),
        (None, "gcr.io/google.com:my-project", "gcr.io/google.com/my-project/mnist:"),
        (None, "eu.gcr.io/google.com:my-project/team", "eu.gcr.io/google.com/my-project/team/mnist:"),
        (None, "europe-docker.pkg.dev/example.com:p-1/repo", "europe-docker.pkg.dev/example.com/p-1/repo/mnist:"),
        (None, "127.0.0.1:5000/images", "127.0.0.1:5000/images/mnist:"),  # a port, not a project
    ],
)
def test_domain_scoped_project_ids_become_repository_paths(project_id, image_repo, planned):
    from caliban.docker.push import planned_image

    image = planned_image("us-central1", project_id, image_repo, "/somewhere/mnist")
    assert image.startswith(planned)
    repository = image.rsplit(":", 1)[0]
    assert ":" not in repository.split("/", 1)[1]  # no colon left in the path part


def test_the_resubmit_repository_of_a_domain_scoped_project(project):
    from caliban.options import BuildSpec
    from caliban.workflows.image import push_repository

    spec = BuildSpec(project_dir=str(project), target="trainer.train", gpu=False)
    repo = push_repository(spec, image_repo=None, recorded_repo=None, project="google.com:my-project",
                           region="europe-west4", recorded_uri=None)
    assert repo == "gcr.io/google.com/my-project/images/mnist"  # the config's image_repo wins
