"""Bad input and broken environments: one line on stderr, a non-zero exit, nothing half-done.

Each case runs the real `caliban` in a subprocess (so a crash or a traceback
is seen as the user would see it). The cases are the inputs that used to
give tracebacks, plus the ones found since; the config cases live in
tests/sweep/test_config_limits.py.
"""

import os
import subprocess
import sys

import pytest

from caliban import history
from tests.cloud_helpers import REPO
from tests.history_helpers import record_job

EXAMPLE = REPO / "example"


def caliban(*argv, cwd=EXAMPLE, env_extra=None, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "caliban", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, **kwargs)


def one_line(result, code=None):
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.returncode != 0 if code is None else result.returncode == code, result.stderr
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["cloud", "--dry_run", "--nogpu", "-d", "nope", "trainer.train"], "not a directory"),
    (["cloud", "--dry_run", "--nogpu", "--extras", "x", "trainer.train"], "--extras x"),
    (["cloud", "--dry_run", "--nogpu", "--timeout", "forever", "trainer.train"], "--timeout 'forever'"),
    (["cloud", "--dry_run", "--gpu_spec", "1xV100", "--machine_type", "n1-standard-96", "trainer.train"],
     "n1-standard-96"),
    (["cloud", "--dry_run", "--nogpu", "--region", "mars-north1", "trainer.train"], "mars-north1"),
    (["run", "--dry_run", "--nogpu", "--docker_run_args=--rm-all", "trainer.train"], "--docker_run_args"),
    (["run", "--dry_run", "--nogpu", "--docker_run_args", "'unclosed", "trainer.train"], "No closing quotation"),
    (["cloud", "--dry_run", "--nogpu", "missing_module.train"], "missing_module"),
    (["status", "--xgroup", "no-such-group"], "no-such-group"),
])
def test_bad_flags_are_one_line(argv, message, tmp_path):
    line = one_line(caliban(*argv, env_extra={"CALIBAN_DB_URL": str(tmp_path / "h.db")}))
    assert message in line


def test_a_closed_pipe_on_stdout_ends_quietly(tmp_path):
    db = tmp_path / "h.db"
    with history.Store(db) as store:
        group = store.create_group("piped")
        for i in range(300):
            record_job(store, group.id, [f"--i={i}" * 20])
    env = dict(os.environ, PYTHONPATH=str(REPO), CALIBAN_DB_URL=str(db))
    status = subprocess.Popen([sys.executable, "-m", "caliban", "status", "--xgroup", "piped", "--format", "json",
                               "--max_jobs", "300"], cwd=EXAMPLE, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    first = status.stdout.readline()  # `| head -1`
    status.stdout.close()
    _, err = status.communicate(timeout=60)
    assert first.startswith(b"{")
    assert err == b"", err.decode()
    assert status.returncode in (0, 141)
