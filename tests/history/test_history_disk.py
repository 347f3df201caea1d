"""The job history on a real, small tmpfs that fills up or turns read-only.

Needs `mount` (these tests run as root in the project's container). Without
it they skip with the reason, except with CI=true, where they fail: a green
CI means the full-disk paths really ran.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from caliban import history
from caliban.errors import CalibanError
from caliban.history import states
from tests import cloud_emulator as ce
from tests.cloud_helpers import PROJECT, REGION, vertex_body
from tests import REPO

IMAGE_TAG = "us-central1-docker.pkg.dev/caliban-test/caliban/trainer:v1"


def _mount(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *argv], capture_output=True, text=True)


@pytest.fixture
def mount_tmpfs(tmp_path):
    """`mount_tmpfs(size)` -> a fresh tmpfs of that size; all unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        directory = tmp_path / f"disk{len(mounted)}"
        directory.mkdir()
        result = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory))
        if result.returncode != 0:
            reason = f"cannot mount a tmpfs ({result.stderr.strip() or result.returncode}): run as root"
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true but {reason}")
            pytest.skip(reason)
        mounted.append(directory)
        return directory

    yield mount
    for directory in reversed(mounted):
        subprocess.run(["umount", "-l", str(directory)], check=True)


@pytest.fixture
def disk(mount_tmpfs):
    """A 200 KiB tmpfs."""
    return mount_tmpfs("200k")


def fill(directory: Path) -> Path:
    """Takes every free byte of `directory`'s file system; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bfree == 0
    return filler


def free(filler: Path, nbytes: int | None = None) -> None:
    """Gives back `nbytes` of the filler (all of it by default)."""
    size = filler.stat().st_size
    os.truncate(filler, 0 if nbytes is None else max(0, size - nbytes))


def sweep(prefix: str, n: int) -> list:
    """`n` jobs with real Vertex request bodies (a couple of KiB each)."""
    return [
        history.NewJob(args=["--lr", str(i)], flags={"lr": i}, request=vertex_body(f"{prefix}-{i}", i),
                       caliban_key=f"{prefix}-{i}", name=f"{prefix}_{i}")
        for i in range(n)
    ]


def one_line(message: str) -> bool:
    return "\n" not in message.strip() and "Traceback" not in message


def test_check_store_refuses_a_full_disk_before_anything_is_built(mount_tmpfs):
    disk = mount_tmpfs("2m")  # room for history.MIN_FREE_BYTES once freed
    db = disk / "caliban.db"
    with history.Store(db) as s:  # an existing history...
        s.add_jobs(s.create_group("old").id, sweep("old", 3), backend="vertex")
    filler = fill(disk)  # ...on a disk that filled up since
    with pytest.raises(CalibanError) as err:
        history.check_store(str(db))
    assert one_line(err.value.message) and str(db) in err.value.message
    assert "disk is full" in err.value.message and history.DB_URL_ENV in err.value.message

    fresh = disk / "sub" / "new.db"  # a first run on a full disk
    with pytest.raises(CalibanError) as err:
        history.check_store(str(fresh))
    assert one_line(err.value.message) and "disk is full" in err.value.message

    free(filler)
    assert history.check_store(str(db)) == db  # room again: fine, and the data is intact
    with history.Store(db) as s:
        assert len(s.jobs(group="old")) == 3


def test_a_sweep_that_does_not_fit_rolls_back_whole_and_the_store_stays_usable(disk):
    db = disk / "caliban.db"
    with history.Store(db) as s:
        group = s.create_group("g")
        first = s.add_jobs(group.id, sweep("a", 2), backend="vertex")
        filler = fill(disk)
        with pytest.raises(CalibanError) as err:
            s.add_jobs(group.id, sweep("b", 60), backend="vertex")
        message = err.value.message
        assert one_line(message) and str(db) in message and "disk is full" in message
        assert "cannot rollback" not in message
        # Nothing of the failed sweep is there; the earlier rows are.
        assert [j.id for j in s.jobs(group="g")] == first
        assert s.experiment_count(group.id) == 2
        free(filler)
        later = s.add_jobs(group.id, sweep("b", 60), backend="vertex")  # same connection, no wedge
        assert len(s.jobs(group="g")) == 62 and len(later) == 60


def test_a_failed_sweep_leaves_no_empty_group(disk):
    db = disk / "caliban.db"
    with history.Store(db) as s:
        s.add_jobs(s.create_group("warm").id, sweep("w", 1), backend="vertex")
        filler = fill(disk)
        free(filler, 40 * 1024)  # room for a group row, not for a sweep
        # As `recorder.record_cloud_sweep` records today: group, image and jobs in separate writes.
        split = s.create_group("split")
        s.lock_group(split, exclusive=False)
        image = s.record_image(uri=IMAGE_TAG, build_args={"target": "trainer.train"})
        assert s.group("split") == split
        with pytest.raises(CalibanError, match="disk is full"):
            s.add_jobs(split.id, sweep("s", 80), backend="vertex", image_id=image)
        # In one transaction, as `Store.transaction()` lets a recorder do it.
        with pytest.raises(CalibanError, match="disk is full"):
            with s.transaction():
                g = s.create_group("whole")
                image = s.record_image(uri=IMAGE_TAG, build_args={"target": "trainer.train"})
                s.add_jobs(g.id, sweep("t", 80), backend="vertex", image_id=image)
        assert s.group("whole") is None
        assert s.group("split") is None
        free(filler)
    with history.Store(db) as s:
        assert [g.name for g in s.groups()] == ["warm"]


def test_a_job_sent_but_not_recorded_is_named_loudly(disk):
    db = disk / "caliban.db"
    with history.Store(db) as s:
        (job,) = s.add_jobs(s.create_group("g").id, sweep("k", 1), backend="vertex")
        s.mark_sending(job)
        filler = fill(disk)
        remote = f"projects/{PROJECT}/locations/{REGION}/customJobs/4242"
        with pytest.raises(CalibanError) as err:
            s.mark_submitted(job, remote)
        message = err.value.message
        assert one_line(message) and remote in message and str(db) in message
        assert "disk is full" in message and "caliban resubmit" in message
        free(filler)
        # Left "maybe sent": resubmit looks it up by its label instead of sending it again.
        assert s.job(job).maybe_sent and s.job(job).status == states.PENDING


def test_read_only_file_system_is_one_line_before_anything_is_built(disk):
    db = disk / "caliban.db"
    with history.Store(db) as s:
        s.create_group("g")
    assert _mount("-o", "remount,ro", str(disk)).returncode == 0
    with pytest.raises(CalibanError) as err:
        history.check_store(str(db))
    assert one_line(err.value.message) and str(db) in err.value.message
    assert "read-only" in err.value.message
    with pytest.raises(CalibanError) as err:
        history.check_store(str(disk / "fresh.db"))
    assert one_line(err.value.message) and "read-only" in err.value.message


def _cloud(project: Path, db: Path, emu, *argv):
    env = dict(os.environ, CALIBAN_DB_URL=str(db), PYTHONPATH=str(REPO))
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "CALIBAN_API_ENDPOINT", "PROJECT_ID"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "caliban", *argv], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def test_caliban_cloud_on_a_full_disk_sends_nothing_and_says_why(disk, tmp_path):
    project = tmp_path / "proj"
    (project / "trainer").mkdir(parents=True)
    (project / "trainer" / "__init__.py").write_text("")
    (project / "trainer" / "train.py").write_text("print('hi')\n")
    (project / "experiment.json").write_text(json.dumps({"lr": [i / 1000 for i in range(80)]}))
    db = disk / "caliban.db"
    with ce.CloudEmulator() as emu, history.Store(db) as holder:
        # `holder` keeps the history open (as another caliban would), so its
        # -shm file stays; the disk then fills up to a little slack.
        key = emu.write_service_account_key(tmp_path / "key.json", PROJECT)
        holder.add_jobs(holder.create_group("earlier").id, sweep("e", 1), backend="vertex")
        filler = fill(disk)
        free(filler, 40 * 1024)
        out = _cloud(project, db, emu, "cloud", "--api_endpoint", emu.url, "--cloud_key", key,
                     "--project_id", PROJECT, "--image_tag", IMAGE_TAG, "--nogpu", "--xgroup", "big",
                     "--experiment_config", "experiment.json", "trainer.train")
        assert out.returncode == 1, out.stdout + out.stderr
        assert one_line(out.stderr), out.stderr
        assert str(db) in out.stderr and "disk is full" in out.stderr
        assert emu.jobs("vertex") == []  # recorded first: nothing was sent
        status = _cloud(project, db, emu, "status", "--format", "json")
        assert status.returncode == 0, status.stderr
        assert [g["name"] for g in json.loads(status.stdout)["groups"]] == ["earlier"]
        free(filler)
