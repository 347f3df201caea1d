"""Pure parts of local runs: docker commands, --docker_run_args, credentials,
notebook helpers, summaries. No engine needed."""

import argparse
import os
import socket
import subprocess
import sys

import pytest

from caliban.docker.run import (
    ContainerSpec,
    Job,
    Mount,
    SweepResult,
    credential_mounts,
    parse_docker_run_args,
    summary_lines,
)
from caliban.errors import UsageError


def test_docker_command_for_a_job():
    spec = ContainerSpec(
        image="sha256:abc",
        args=["--lr", "0.1"],
        env={"GOOGLE_APPLICATION_CREDENTIALS": "/var/caliban/credentials/key.json"},
        mounts=[Mount("/home/u/key.json", "/var/caliban/credentials/key.json", read_only=True)],
        labels={"caliban.job": "j1"},
        gpu=True,
        extra=parse_docker_run_args("--shm-size 2g"),
    )
    assert spec.docker_command() == [
        "docker", "run", "--rm", "--init", "--ipc", "host", "--gpus", "all", "--label", "caliban.job=j1",
        "-v", "/home/u/key.json:/var/caliban/credentials/key.json:ro",
        "-e", "GOOGLE_APPLICATION_CREDENTIALS=/var/caliban/credentials/key.json",
        "--shm-size", "2g", "sha256:abc", "--lr", "0.1",
    ]


def test_a_path_with_a_colon_is_shown_as_a_mount_the_cli_reads_back_whole():
    plain = Mount("/home/u/out", "/caliban/output").cli_flags()
    assert plain == ["-v", "/home/u/out:/caliban/output:rw"]
    flags = Mount("/home/u/runs:v2,final/out", "/caliban/output", read_only=True).cli_flags()
    assert flags == ["--mount", 'type=bind,"source=/home/u/runs:v2,final/out",target=/caliban/output,readonly']
    # The engine gets source and target as separate fields: no character is special there.
    mount = Mount("/home/u/runs:v2,final/out", "/caliban/output").api_mount()
    assert (mount["Source"], mount["Target"], mount["Type"]) == ("/home/u/runs:v2,final/out", "/caliban/output", "bind")


def test_entrypoint_override_for_shell():
    spec = ContainerSpec(image="img", entrypoint=["jupyter", "lab", "--port=8889"], user="1000:1000",
                         workdir="/usr/app", ports={8889: 8889}, interactive=True)
    cmd = spec.docker_command()
    assert cmd[:4] == ["docker", "run", "--rm", "-it"]
    assert cmd[-4:] == ["--entrypoint", "jupyter", "img", "lab", "--port=8889"][-4:]
    assert ["-p", "8889:8889"] == cmd[cmd.index("-p"):cmd.index("-p") + 2]
    assert "--user" in cmd and "1000:1000" in cmd


def test_docker_run_args_parsing():
    opts = parse_docker_run_args("-e A=1 --env B=two -v /data:/data:ro -p 6006:6006 --memory 4g "
                                 "--cpus 1.5 --network host --privileged")
    assert opts.env == {"A": "1", "B": "two"}
    assert opts.volumes == ["/data:/data:ro"]
    assert opts.ports == {"6006": "6006"}
    assert (opts.memory, opts.cpus, opts.network, opts.privileged) == ("4g", "1.5", "host", True)
    assert parse_docker_run_args("").tokens == []


@pytest.mark.parametrize("text, needle", [
    ("--rm", "unsupported argument '--rm'"),
    ("--name foo", "unsupported argument '--name'"),
    ("--cpus lots", "--cpus 'lots' is not a number"),
])
def test_docker_run_args_rejects_unknown(text, needle):
    with pytest.raises(UsageError, match=needle):
        parse_docker_run_args(text)


def test_credentials_are_mounted_never_copied(tmp_path, monkeypatch):
    key = tmp_path / "key.json"
    key.write_text("{}")
    mounts, env = credential_mounts(str(key))
    assert mounts == [Mount(str(key), "/var/caliban/credentials/key.json", read_only=True)]
    assert env == {"GOOGLE_APPLICATION_CREDENTIALS": "/var/caliban/credentials/key.json"}
    with pytest.raises(UsageError, match="no such file"):
        credential_mounts(str(tmp_path / "missing.json"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert credential_mounts(None) == ([], {})
    adc = tmp_path / ".config" / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir(parents=True)
    adc.write_text("{}")
    mounts, env = credential_mounts(None)
    assert mounts[0].source == str(adc) and mounts[0].read_only
    assert env["GOOGLE_APPLICATION_CREDENTIALS"].endswith("application_default_credentials.json")


def test_summary_names_failed_jobs():
    jobs = [Job(1, 2, ["--a", "1"], exit_code=0), Job(2, 2, ["--a", "x y"], exit_code=3)]
    assert summary_lines(SweepResult(jobs)) == [
        "1 succeeded, 1 failed",
        "  failed job 2/2 (exit 3): --a 'x y'",
    ]


def test_notebook_helpers():
    from caliban.commands.notebook import first_free_port, jupyter_requirement

    assert jupyter_requirement(False, None) == "notebook"
    assert jupyter_requirement(True, "4.2.0") == "jupyterlab==4.2.0"
    assert jupyter_requirement(True, ">=4") == "jupyterlab>=4"
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert first_free_port(port) != port


def test_notebook_and_shell_dry_runs(tmp_path, monkeypatch, capsys):
    from caliban.commands import notebook, shell

    monkeypatch.chdir(tmp_path)
    common = dict(nogpu=True, cloud_key=None, extras=[], dir=[], no_cache=False, bare=True,
                  image_id="img:1", dry_run=True, format="text")
    assert notebook.main(argparse.Namespace(lab=True, port=9999, jupyter_version=None, **common)) == 0
    line = capsys.readouterr().out.strip()
    assert "-p 9999:9999" in line and line.endswith("--entrypoint jupyter img:1 lab --ip=0.0.0.0 --port=9999 "
                                                   "--no-browser" + (" --allow-root" if os.getuid() == 0 else ""))
    assert f"-v {tmp_path}:/usr/app:rw" in line
    assert shell.main(argparse.Namespace(shell="bash", **common)) == 0
    assert capsys.readouterr().out.strip().endswith("--entrypoint bash img:1")


def test_importing_the_cli_and_engine_modules_does_not_import_docker():
    code = ("import sys, caliban.main, caliban.docker.engine, caliban.docker.run, caliban.docker.build_context, "
            "caliban.commands.run, caliban.commands.build, caliban.commands.shell, caliban.commands.notebook; "
            "print('docker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_declared_extras_from_setup_py_cfg_and_pyproject(tmp_path):
    from caliban.docker.engine import declared_extras

    (tmp_path / "setup.py").write_text(
        "from setuptools import setup\n"
        "setup(name='p', extras_require={\n    'cpu': ['a'],\n    \"gpu\": ['b'],\n})\n"
    )
    assert declared_extras(str(tmp_path)) == {"cpu", "gpu"}
    (tmp_path / "setup.py").write_text("from setuptools import setup\nsetup(name='p')\n")
    assert declared_extras(str(tmp_path)) == set()
    (tmp_path / "setup.cfg").write_text("[options.extras_require]\ngpu = torch\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\n[project.optional-dependencies]\ncpu = ["x"]\n')
    assert declared_extras(str(tmp_path)) == {"cpu", "gpu"}


def test_plan_adds_the_automatic_mode_extra_only_when_declared(tmp_path):
    from caliban.calibanconfig import CalibanConfig
    from caliban.docker.engine import plan_image

    (tmp_path / "setup.py").write_text("setup(extras_require={'gpu': ['x']})\n")
    (tmp_path / "main.py").write_text("")
    target = argparse.Namespace(name="main.py", package_dir=".", command=["python", "main.py"])
    cpu = plan_image(str(tmp_path), target, gpu=False, extras=["a,b"], config=CalibanConfig(), user=(0, 0))
    gpu = plan_image(str(tmp_path), target, gpu=True, config=CalibanConfig(), user=(0, 0))
    assert cpu.spec.extras == ("a", "b") and gpu.spec.extras == ("gpu",)
    assert "pip install '.[a,b]'" in cpu.dockerfile
    assert cpu.include == ["setup.py", "."]
    with pytest.raises(UsageError, match="-d/--dir 'nope'"):
        plan_image(str(tmp_path), target, gpu=False, dirs=["nope"], config=CalibanConfig())
