"""Builds and runs against the real Docker engine (see tests/docker_helpers.py)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from caliban.docker.engine import build_image_detailed
from caliban.docker.run import ContainerSpec, Mount, run_container
from caliban.errors import CalibanError
from caliban.sweep.targets import classify_target
from tests.docker_helpers import (
    BASE_IMAGE,
    PYTHON,
    TEST_LABEL,
    caliban,
    cleanup,
    engine_client,
    make_project,
    write,
)


@pytest.fixture(scope="module")
def client():
    return engine_client()


@pytest.fixture(scope="module")
def project(client, tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("proj"))
    subprocess.run(["git", "init", "-q", root], check=True)
    subprocess.run(
        ["git", "-C", root, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m", "x"],
        check=True,
    )
    yield root
    cleanup(client, root)


@pytest.fixture(scope="module")
def module_build(client, project):
    """One image of the module target, shared by the tests of this module."""
    target = classify_target("trainer.train", project)
    return build_image_detailed(
        project, target, gpu=False, extras=["fancy"], dirs=["data"], progress="quiet", labels=TEST_LABEL,
        client=client,
    )


def _run(client, image, args=(), **kw):
    out, err = io.StringIO(), io.StringIO()
    code, _ = run_container(client, ContainerSpec(image=image, args=list(args), labels=dict(TEST_LABEL), **kw),
                            stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_module_target_runs_with_dependencies_extras_and_apt(client, module_build):
    code, out, err = _run(client, module_build.image_id, ["--epochs", "2", "--name", "a b"])
    assert code == 0, err
    assert "module-target v1 args=--epochs 2 --name a b" in out
    assert "six 1." in out
    assert "extras ['idna', 'toolz']" in out  # automatic [cpu] plus --extras fancy
    assert "tree True" in out
    assert "python /opt/venv/bin/python" in out
    assert "extra-dir True False" in out  # -d data, minus the .dockerignored big file
    assert "to-stderr" in err and "to-stderr" not in out


def test_image_labels_record_source_and_commit(client, project, module_build):
    labels = client.images.get(module_build.image_id).labels
    assert labels["caliban.source_dir"] == project
    head = subprocess.run(["git", "-C", project, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert labels["caliban.git_commit"] == head
    assert labels["caliban.target"] == "trainer.train"


def test_script_target_through_the_cli(project, module_build):
    result = caliban(["run", "--nogpu", "scripts/hello.py", "--", "--x", "1"], cwd=project)
    assert result.returncode == 0, result.stderr
    assert "script-target ['--x', '1']" in result.stdout
    assert "1 succeeded, 0 failed" in result.stderr


def test_shell_script_target_whole_project_honors_dockerignore_and_keeps_keys_out(project, module_build):
    result = caliban(["run", "--nogpu", "run.sh", "--", "a", "b"], cwd=project)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "shell-target a b" in out
    assert "present data/small.txt" in out and "present keep.log" in out
    assert "absent data/big.bin" in out and "absent notes.log" in out
    assert "absent sa-key.json" in out
    screened = [line for line in result.stderr.splitlines() if "left out of the image, they look like secrets:" in line]
    assert len(screened) == 1 and "sa-key.json" in screened[0]


def test_build_prints_image_id(client, project, module_build):
    result = caliban(["build", "--nogpu", "--extras", "fancy", "trainer.train"], cwd=project)
    assert result.returncode == 0, result.stderr
    image_id = result.stdout.strip()
    assert image_id.startswith("sha256:")
    assert client.images.get(image_id).labels["caliban.target"] == "trainer.train"


def test_editing_a_source_file_reuses_the_dependency_layers(client, project, module_build, tmp_path):
    copy = str(tmp_path / "proj-copy")
    shutil.copytree(project, copy)
    try:
        target = classify_target("trainer.train", copy)
        first = build_image_detailed(copy, target, gpu=False, extras=["fancy"], dirs=["data"],
                                     progress="quiet", labels=TEST_LABEL, client=client)
        write(copy, "trainer/util.py", "VERSION = 'v2'\n")
        second = build_image_detailed(copy, target, gpu=False, extras=["fancy"], dirs=["data"],
                                      progress="quiet", labels=TEST_LABEL, client=client)
        by_instruction = {s.instruction: s for s in second.steps}
        for needle in ("apt-get install", "pip install -r requirements.txt", "pip install '.[fancy,cpu]'",
                       "python3 -m venv", '["src/data"'):
            step = next(s for text, s in by_instruction.items() if needle in text)
            assert step.cached, f"{needle!r} was rebuilt"
        code_step = next(s for text, s in by_instruction.items() if '["src/trainer"' in text)
        assert not code_step.cached
        assert first.image_id != second.image_id
        code, out, _ = _run(client, second.image_id)
        assert code == 0 and "module-target v2" in out
    finally:
        cleanup(client, copy)


def test_sweep_runs_each_job_reports_failures_and_exits_nonzero(project, module_build):
    write(project + "/..", "sweep.json", '{"fail": [0, 3], "lr": 0.5}')
    result = caliban(
        ["run", "--nogpu", "--extras", "fancy", "--experiment_config", "../sweep.json", "trainer.train", "--", "--k", "v"],
        cwd=project,
    )
    assert result.returncode == 1, result.stderr
    assert "[1/2] module-target v1 args=--k v --fail 0 --lr 0.5" in result.stdout
    assert "[2/2] module-target v1 args=--k v --fail 3 --lr 0.5" in result.stdout
    assert "==> job 2/2 FAILED (exit 3)" in result.stderr
    assert "1 succeeded, 1 failed" in result.stderr
    assert "failed job 2/2 (exit 3): --k v --fail 3 --lr 0.5" in result.stderr


def test_dry_run_prints_docker_commands_without_building(project):
    write(project + "/..", "sweep2.json", '{"lr": [1, 2]}')
    result = caliban(["run", "--nogpu", "--dry_run", "--experiment_config", "../sweep2.json",
                      "--docker_run_args", "--shm-size 1g -e A=1", "trainer.train"], cwd=project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("docker run --rm") and lines[0].endswith("--lr 1")
    assert "--shm-size 1g -e A=1" in lines[0]
    result = caliban(["run", "--nogpu", "--dry_run", "--format", "json", "--image_id", "img:1", "trainer.train",
                      "--", "--z"], cwd=project)
    import json

    data = json.loads(result.stdout)
    assert isinstance(data, list) and len(data) == 1
    assert data[0]["image"] == "img:1" and data[0]["args"] == ["--z"] and data[0]["job"] == 1
    assert data[0]["command"][-2:] == ["img:1", "--z"]


def test_credentials_are_mounted_read_only_not_copied(client, project, module_build, tmp_path):
    key = tmp_path / "key.json"
    key.write_text('{"type": "service_account"}')
    result = caliban(["run", "--nogpu", "--extras", "fancy", "--image_id", module_build.image_id,
                      "--cloud_key", str(key), "trainer.train"], cwd=project)
    assert result.returncode == 0, result.stderr
    assert "creds /var/caliban/credentials/key.json True" in result.stdout


def test_failing_build_shows_the_failing_step(client, tmp_path):
    root = str(tmp_path / "broken")
    write(root, ".calibanconfig.json", '{"base_image": "%s"}' % BASE_IMAGE)
    write(root, "requirements.txt", "this-package-does-not-exist-caliban-xyz==1.0\n")
    write(root, "main.py", "print('never')\n")
    before = {image.id for image in client.images.list(all=True)}
    try:
        result = caliban(["build", "--nogpu", "main.py"], cwd=root)
        assert result.returncode == 1
        err = result.stderr
        assert "image build failed at step" in err and "pip install -r requirements.txt" in err
        assert "--- output of build step" in err
        assert "this-package-does-not-exist-caliban-xyz" in err  # pip's own message
    finally:
        cleanup(client, root)
        # A failed build leaves its last good layer behind, unlabeled. Only such
        # layers of a Caliban build (a parent, Caliban's workdir) are removed: an
        # image someone else imported meanwhile has neither.
        for image in client.images.list(all=True):
            config = image.attrs.get("Config") or {}
            if (image.id not in before and not image.labels and image.attrs.get("Parent")
                    and config.get("WorkingDir") == "/usr/app"):
                try:
                    client.images.remove(image.id)
                except Exception:
                    pass


def test_missing_base_image_is_explained(client, tmp_path):
    root = str(tmp_path / "nobase")
    write(root, ".calibanconfig.json", '{"base_image": "caliban-test/absent:none"}')
    write(root, "main.py", "print('never')\n")
    result = caliban(["build", "--nogpu", "main.py"], cwd=root)
    assert result.returncode == 1
    assert "base image 'caliban-test/absent:none' (base_image in .calibanconfig.json) is not available" in result.stderr
    assert "`docker pull caliban-test/absent:none` or change base_image in .calibanconfig.json" in result.stderr


def test_gpu_mode_without_nvidia_runtime_fails_with_hint(client, project):
    if "nvidia" in (client.info().get("Runtimes") or {}):
        pytest.skip("this engine has an NVIDIA runtime")
    result = caliban(["run", "trainer.train"], cwd=project)
    assert result.returncode == 1
    assert "NVIDIA" in result.stderr and "--nogpu" in result.stderr


def test_non_root_user_owns_files_written_to_mounts(client, tmp_path):
    root = str(tmp_path / "owner")
    write(root, ".calibanconfig.json", '{"base_image": "%s"}' % BASE_IMAGE)
    write(root, "job.sh", 'id -u; id -g; echo "$HOME"; touch /out/made-by-job\n')
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    os.chmod(out_dir, 0o777)
    try:
        build = build_image_detailed(root, classify_target("job.sh", root), gpu=False, progress="quiet",
                                     user=(4321, 4322), labels=TEST_LABEL, client=client)
        code, out, err = _run(client, build.image_id, mounts=[Mount(str(out_dir), "/out")])
        assert code == 0, err
        assert out.split()[:2] == ["4321", "4322"]
        st = os.stat(out_dir / "made-by-job")
        assert (st.st_uid, st.st_gid) == (4321, 4322)
    finally:
        cleanup(client, root)


def _own_containers(client, xgroup: str, **filters):
    """This test's containers only: others' tests share the engine and may run the same target meanwhile."""
    return client.containers.list(all=True, filters={"label": f"caliban.xgroup={xgroup}", **filters})


def test_ctrl_c_stops_the_container_and_leaves_none_behind(client, project, module_build):
    import pexpect

    xgroup = f"ctrl-c-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, CALIBAN_DB_URL=os.path.join(os.path.dirname(project), "history.db"))
    child = pexpect.spawn(PYTHON, ["-m", "caliban", "run", "--nogpu", "--image_id", module_build.image_id,
                                   "--xgroup", xgroup, "trainer.train", "--", "--sleep", "1"],
                          cwd=project, env=env, encoding="utf-8", timeout=120)
    child.expect("sleeping")
    assert _own_containers(client, xgroup, status="running")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130 or child.signalstatus == signal.SIGINT
    deadline = time.time() + 30
    while time.time() < deadline and _own_containers(client, xgroup):
        time.sleep(0.5)
    assert not _own_containers(client, xgroup)


def test_unreachable_engine_is_a_clear_error(monkeypatch):
    from caliban.docker.engine import connect

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(CalibanError, match="cannot reach the Docker engine at unix:///nonexistent/docker.sock"):
        connect()


def test_run_jobs_calls_hooks_and_labels_each_container(client, module_build, tmp_path, monkeypatch):
    from caliban.docker.run import Job, JobHooks, run_jobs

    monkeypatch.setenv("CALIBAN_DB_URL", str(tmp_path / "history.db"))  # job logs go beside it, not in ~

    events = []

    class Recorder(JobHooks):
        def on_job_start(self, job):
            events.append(("start", job.index))

        def on_container_start(self, job, container_id):
            labels = client.api.inspect_container(container_id)["Config"]["Labels"]
            events.append(("container", job.index, labels.get("caliban.job") == job.job_id))

        def on_job_end(self, job, exit_code, container_id):
            events.append(("end", job.index, exit_code, container_id == job.container_id))

    jobs = [Job(1, 2, ["--fail", "0"]), Job(2, 2, ["--fail", "4"])]
    out, err = io.StringIO(), io.StringIO()
    own = {**TEST_LABEL, "caliban.test.case": uuid.uuid4().hex}  # this test's containers, not the engine's
    result = run_jobs(client, jobs, lambda job: ContainerSpec(image=module_build.image_id, args=job.args,
                                                              labels=dict(own)),
                      hooks=Recorder(), stdout=out, stderr=err)
    assert events == [
        ("start", 1), ("container", 1, True), ("end", 1, 0, True),
        ("start", 2), ("container", 2, True), ("end", 2, 4, True),
    ]
    assert [j.exit_code for j in result.failed] == [4]
    assert "[2/2] module-target v1 args=--fail 4" in out.getvalue()
    assert not client.containers.list(all=True, filters={"label": f"caliban.test.case={own['caliban.test.case']}"})


def test_sigterm_also_stops_the_container(client, project, module_build):
    xgroup = f"sigterm-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, CALIBAN_DB_URL=os.path.join(os.path.dirname(project), "history.db"))
    proc = subprocess.Popen(
        [PYTHON, "-m", "caliban", "run", "--nogpu", "--image_id", module_build.image_id, "--xgroup", xgroup,
         "trainer.train", "--", "--sleep", "1", "--tag", "sigterm"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for line in proc.stdout:
            if "sleeping" in line:
                break
        assert _own_containers(client, xgroup, status="running")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    deadline = time.time() + 30
    while time.time() < deadline and _own_containers(client, xgroup):
        time.sleep(0.5)
    assert not _own_containers(client, xgroup)


def test_opt_in_ca_bundle_is_trusted_in_the_image(client, tmp_path):
    root = str(tmp_path / "ca")
    pem = tmp_path / "corp-ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nnot-a-real-cert\n-----END CERTIFICATE-----\n")
    write(root, ".calibanconfig.json", '{"base_image": "%s", "ca_bundle": "%s"}' % (BASE_IMAGE, pem))
    write(root, "show.sh", 'echo "bundle=$SSL_CERT_FILE pip=$PIP_CERT"; cat "$SSL_CERT_FILE"\n')
    try:
        build = build_image_detailed(root, classify_target("show.sh", root), gpu=False, progress="quiet",
                                     labels=TEST_LABEL, client=client)
        code, out, err = _run(client, build.image_id)
        assert code == 0, err
        assert "bundle=/usr/local/share/caliban/ca-bundle.crt pip=/usr/local/share/caliban/ca-bundle.crt" in out
        assert "not-a-real-cert" in out
    finally:
        cleanup(client, root)


def test_no_cache_rebuilds_every_step(client, tmp_path):
    root = str(tmp_path / "nocache")
    write(root, ".calibanconfig.json", '{"base_image": "%s"}' % BASE_IMAGE)
    write(root, "main.py", "print('hi')\n")
    target = classify_target("main.py", root)
    try:
        build_image_detailed(root, target, gpu=False, progress="quiet", labels=TEST_LABEL, client=client)
        again = build_image_detailed(root, target, gpu=False, progress="quiet", labels=TEST_LABEL, client=client)
        assert sum(1 for s in again.steps if s.cached) == len(again.steps) - 1  # all but FROM
        fresh = build_image_detailed(root, target, gpu=False, progress="quiet", no_cache=True, labels=TEST_LABEL,
                                     client=client)
        assert not any(s.cached for s in fresh.steps)
    finally:
        cleanup(client, root)
