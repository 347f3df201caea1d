"""Building an image reads the project's git commit without running anything
the project's repository configures (fsmonitor, filter drivers, hooks): the
project directory is input, and git would run those programs on the host."""

from __future__ import annotations

import argparse
import stat
import subprocess

import pytest

from caliban.calibanconfig import CalibanConfig
from caliban.docker.engine import git_commit, plan_image

GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@e"]


def _git(repo, *args, **kw):
    return subprocess.run(["git", "-C", str(repo), *GIT_ID, *args], check=True, capture_output=True, text=True, **kw)


def _marker_script(path, marker):
    """An executable that leaves `marker` behind and passes stdin through, as a filter would."""
    path.write_text(f"#!/bin/sh\necho \"$0 $*\" >> '{marker}'\ncat\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def hostile_repo(tmp_path):
    """A committed project whose .git/config and hooks run a program on `git status`."""
    repo = tmp_path / "proj"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "main.py").write_text("print('v1')\n")
    (repo / ".gitattributes").write_text("* filter=x\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "x")
    head = _git(repo, "rev-parse", "HEAD").stdout.strip()  # before the repo turns hostile
    marker = tmp_path / "ran"
    script = _marker_script(tmp_path / "evil.sh", marker)
    for key, value in (("core.fsmonitor", script), ("filter.x.clean", script), ("filter.x.smudge", "cat"),
                       ("filter.x.required", "true"), ("diff.external", script), ("core.pager", script)):
        _git(repo, "config", key, value)
    hook = repo / ".git" / "hooks" / "post-index-change"
    _marker_script(hook, marker)
    (repo / "main.py").write_text("print('v2, not committed')\n")  # status must run the clean filter on it
    return repo, marker, head


def test_the_hostile_repo_does_run_its_programs_under_plain_git_status(hostile_repo):
    repo, marker, _ = hostile_repo
    subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, timeout=30)
    ran = marker.read_text()
    assert "evil.sh" in ran  # fsmonitor hook and/or clean filter: the hazard is real with this git


def test_planning_a_build_reads_the_commit_and_runs_nothing_from_the_repo(hostile_repo):
    repo, marker, head = hostile_repo
    target = argparse.Namespace(name="main.py", package_dir=".", command=["python", "main.py"])
    plan = plan_image(str(repo), target, gpu=False, config=CalibanConfig(), user=(0, 0))
    assert plan.labels["caliban.git_commit"] == head
    assert len(head) == 40
    assert not marker.exists(), marker.read_text()
    # The index was not rewritten either (no optional locks, no index refresh).
    assert not (repo / ".git" / "index.lock").exists()


def test_callers_git_environment_does_not_redirect_the_lookup(hostile_repo, tmp_path, monkeypatch):
    repo, marker, head = hostile_repo
    other = tmp_path / "other"
    other.mkdir()
    _git(other, "init", "-q")
    _git(other, "commit", "-q", "--allow-empty", "-m", "other")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.fsmonitor'='{tmp_path / 'evil.sh'}'")
    assert git_commit(str(repo)) == head
    assert not marker.exists()


def test_no_commit_outside_a_repository_or_in_a_planted_bare_one(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "main.py").write_text("")
    assert git_commit(str(plain)) is None
    # A project directory laid out as a bare repository (the embedded-bare-repo
    # trick) is not trusted as one.
    bare = tmp_path / "bare"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    _git(work, "commit", "-q", "--allow-empty", "-m", "x")
    _git(work, "push", "-q", "origin", "HEAD")
    assert _git(bare, "rev-parse", "HEAD").stdout.strip()  # git itself would use it when told to
    assert git_commit(str(bare)) is None


def test_a_project_in_a_subdirectory_gets_the_repository_commit(hostile_repo):
    repo, marker, head = hostile_repo
    sub = repo / "sub dir$HOME"
    sub.mkdir()
    assert git_commit(str(sub)) == head
    assert not marker.exists()
