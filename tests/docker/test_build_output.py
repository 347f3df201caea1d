"""What a build says and leaves behind: progress without a terminal, failure
hints that fit the failure, base images from 0.4.2 spellings, the GPU-mode
warning, and no `<none>` images piling up. Real engine (see docker_helpers)."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid

import pytest

from caliban.calibanconfig import DLC_REPOSITORY
from caliban.docker.engine import BuildDisplay, BuildStep, _stream_build
from tests.docker_helpers import BASE_IMAGE, caliban, cleanup, engine_client, write


@pytest.fixture(scope="module")
def client():
    return engine_client()


# ---------------------------------------------------------------- progress without a terminal


def test_a_silent_step_repeats_its_number_and_latest_line_while_it_runs():
    """The engine stream stalls inside step 2 (as during a quiet 30 s pip install) until the display speaks."""
    out = io.StringIO()
    display = BuildDisplay("steps", stream=out, heartbeat=0.2)
    spoke = threading.Event()

    def chunks():
        yield {"stream": "Step 1/3 : FROM base\n"}
        yield {"stream": " ---> Using cache\n"}
        yield {"stream": "Step 2/3 : RUN python -m pip install -r requirements.txt\n"}
        yield {"stream": "Collecting six\n"}
        for _ in range(600):  # at most 60 s, far beyond the 0.2 s heartbeat
            if "running for" in out.getvalue():
                spoke.set()
                break
            time.sleep(0.1)
        yield {"stream": "Step 3/3 : COPY . .\n"}
        yield {"stream": "Successfully built 0123456789ab\n"}

    steps: list[BuildStep] = []
    try:
        assert _stream_build(None, steps, chunks(), display) == "0123456789ab"
    finally:
        display.close(True)
    assert spoke.is_set()
    lines = out.getvalue().splitlines()
    beats = [line for line in lines if "running for" in line]
    assert beats and all(line.startswith("[build] step 2/3 running for ") for line in beats)
    assert beats[0].endswith(": Collecting six")
    assert lines[0] == "[build] step 1/3: FROM base"


def test_caliban_build_without_a_terminal_prints_steps_and_a_heartbeat(client, tmp_path):
    root = str(tmp_path / "slow")
    write(root, ".calibanconfig.json", json.dumps({"base_image": BASE_IMAGE}))
    write(root, "setup.py", """
        import time
        from setuptools import setup

        time.sleep(12)  # a slow, silent dependency step
        setup(name="slow", version="0.1", py_modules=[])
        """)
    write(root, "main.py", "print('ok')\n")
    try:
        result = caliban(["build", "--nogpu", "main.py"], cwd=root)
        assert result.returncode == 0, result.stderr
        err = result.stderr
        assert "[build] step 1/" in err and "[build] built " in err
        beats = [line for line in err.splitlines() if "running for" in line]
        assert beats, err
        assert any('pip install' in line for line in err.splitlines()
                   if line.startswith("[build] step ") and ": RUN" in line)
    finally:
        cleanup(client, root)


# ---------------------------------------------------------------- failure hints


def _failed_build(root) -> str:
    result = caliban(["build", "--nogpu", "main.py"], cwd=root)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("caliban build: error:")]
    assert len(errors) == 1 and "caliban/main.py" not in result.stderr  # the build step's own output may hold a trace
    return errors[0]


PACKAGING_HINT = "make the packaging files work without reading other project files"


def test_packaging_hint_when_setup_py_reads_a_file_that_is_not_there_yet(client, tmp_path):
    root = str(tmp_path / "readme")
    write(root, ".calibanconfig.json", json.dumps({"base_image": BASE_IMAGE}))
    write(root, "README.md", "long description\n")
    write(root, "setup.py", """
        from setuptools import setup

        setup(name="readme", version="0.1", py_modules=[], long_description=open("README.md").read())
        """)
    write(root, "main.py", "print('ok')\n")
    try:
        error = _failed_build(root)
        assert "pip install" in error and PACKAGING_HINT in error
    finally:
        cleanup(client, root)


def test_no_packaging_hint_for_other_failures_of_the_dependency_step(client, tmp_path):
    root = str(tmp_path / "badpkg")
    write(root, ".calibanconfig.json", json.dumps({"base_image": BASE_IMAGE}))
    write(root, "setup.py", """
        from setuptools import setup

        setup(name="badpkg", version="0.1", py_modules=[], install_requires=["this-package-does-not-exist-cal-x"])
        """)
    write(root, "main.py", "print('ok')\n")
    try:
        error = _failed_build(root)
        assert "pip install" in error and PACKAGING_HINT not in error
        assert "pip found no release matching a requirement" in error
    finally:
        cleanup(client, root)


# ---------------------------------------------------------------- base images spelled as in 0.4.2


def test_braces_in_base_image_pick_the_mode_on_the_real_engine(client, tmp_path):
    """`"base_image": "REPO:{}"` builds FROM REPO:cpu with --nogpu (a local tag of the test base image)."""
    repo = f"caliban-test/compat-{uuid.uuid4().hex[:8]}"
    client.images.get(BASE_IMAGE).tag(repo, "cpu")
    root = str(tmp_path / "braces")
    write(root, ".calibanconfig.json", json.dumps({"base_image": repo + ":{}", "julia_version": "1.5"}))
    write(root, "main.py", "print('ok')\n")
    try:
        result = caliban(["build", "--nogpu", "main.py"], cwd=root)
        assert result.returncode == 0, result.stderr
        assert f"[build] step 1/" in result.stderr and f"FROM {repo}:cpu" in result.stderr
        assert sum("julia_version" in line for line in result.stderr.splitlines()) == 1
    finally:
        cleanup(client, root)
        client.images.remove(f"{repo}:cpu")  # the tag only: the base image keeps its own


def test_a_dlvm_base_image_that_cannot_be_pulled_says_where_it_came_from(client, tmp_path):
    root = str(tmp_path / "dlvm")
    write(root, ".calibanconfig.json", json.dumps({"base_image": "dlvm:pytorch-{}-2.4"}))
    write(root, "main.py", "print('ok')\n")
    error = _failed_build(root)
    image = f"{DLC_REPOSITORY}/pytorch-cpu.2-4.py310"
    assert f"base image '{image}' (base_image in .calibanconfig.json) is not available" in error
    assert f"`docker pull {image}` or change base_image in .calibanconfig.json" in error


def test_a_missing_base_image_from_the_environment_says_to_build_or_unset_it(client, tmp_path):
    root = str(tmp_path / "envbase")
    write(root, "main.py", "print('ok')\n")
    result = caliban(["build", "--nogpu", "main.py"], cwd=root, env={"CALIBAN_BASE_IMAGE": "caliban-test/absent:x"})
    assert result.returncode == 1
    assert "base image 'caliban-test/absent:x' ($CALIBAN_BASE_IMAGE) is not available" in result.stderr
    assert "unset $CALIBAN_BASE_IMAGE" in result.stderr and ".calibanconfig.json" not in result.stderr


# ---------------------------------------------------------------- GPU mode and default_mode


def test_gpu_build_without_nvidia_runtime_warns_and_builds(client, tmp_path):
    if "nvidia" in (client.info().get("Runtimes") or {}):
        pytest.skip("this engine has an NVIDIA runtime")
    root = str(tmp_path / "gpu")
    write(root, ".calibanconfig.json", json.dumps({"base_image": BASE_IMAGE}))
    write(root, "main.py", "print('ok')\n")
    try:
        result = caliban(["build", "main.py"], cwd=root)
        assert result.returncode == 0, result.stderr
        warning = [line for line in result.stderr.splitlines() if "warning" in line]
        assert len(warning) == 1 and "will only run where there is a GPU" in warning[0] and "--nogpu" in warning[0]
        assert client.images.get(result.stdout.strip()).labels["caliban.mode"] == "gpu"
    finally:
        cleanup(client, root)


def test_default_mode_cpu_builds_a_cpu_image_without_nogpu(client, tmp_path):
    root = str(tmp_path / "cpuonly")
    write(root, ".calibanconfig.json", json.dumps({"base_image": BASE_IMAGE, "default_mode": "cpu"}))
    write(root, "main.py", "print('ok')\n")
    try:
        result = caliban(["build", "main.py"], cwd=root)
        assert result.returncode == 0, result.stderr
        assert "warning" not in result.stderr
        assert client.images.get(result.stdout.strip()).labels["caliban.mode"] == "cpu"
    finally:
        cleanup(client, root)


# ---------------------------------------------------------------- no <none> images left behind


def _exists(client, image_id: str) -> bool:
    import docker.errors

    try:
        client.images.get(image_id)
        return True
    except docker.errors.ImageNotFound:
        return False


def test_a_rebuild_removes_the_image_it_supersedes_and_nothing_else(client, tmp_path):
    root = str(tmp_path / "superseded")
    write(root, ".calibanconfig.json", json.dumps({"base_image": BASE_IMAGE}))
    write(root, "data/x.txt", "x\n")

    def build(*flags, version: str):
        write(root, "main.py", f"print({version!r})\n")
        result = caliban(["build", "--nogpu", *flags, "main.py"], cwd=root)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    container = None
    try:
        first = build(version="v1")
        other_inputs = build("-d", "data", version="v1")  # other build inputs: not superseded by anything below
        second = build(version="v2")
        assert second != first and not _exists(client, first)
        # An image a container uses (even a stopped one) stays.
        container = client.containers.create(second, labels={"caliban.test": "1"})
        third = build(version="v3")
        assert _exists(client, second)
        # A tagged image stays.
        tag = f"caliban-test/keep-{uuid.uuid4().hex[:8]}"
        client.images.get(third).tag(tag, "t")
        fourth = build(version="v4")
        assert _exists(client, third) and _exists(client, fourth) and _exists(client, other_inputs)
        client.images.remove(f"{tag}:t")
        # The same inputs again hit the cache: the same image, kept.
        assert build(version="v4") == fourth and _exists(client, fourth)
    finally:
        if container is not None:
            container.remove(force=True)
        cleanup(client, root)


@pytest.mark.parametrize("text, seconds", [
    ("2026-12-06T17:11:08.250000000Z", 1796577068.25),
    ("2026-12-06T17:11:08.75Z", 1796577068.75),
    ("2026-12-06T19:11:08.5+02:00", 1796577068.5),
    ("2026-12-06T17:11:08Z", 1796577068.0),
    ("yesterday", None),
    (None, None),
])
def test_engine_times_keep_their_fraction_of_a_second(text, seconds):
    """An image made at 17:11:08.25 is older than a build started at 17:11:08.75: whole
    seconds (the image list's `Created`) called them equal and kept the superseded image."""
    from caliban.docker.engine import _engine_timestamp

    assert _engine_timestamp(text) == (pytest.approx(seconds) if seconds is not None else None)
