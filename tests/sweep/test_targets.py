"""Target classification: module, .py script or shell script, on real files."""

import pytest

from caliban.errors import UsageError
from caliban.sweep.targets import MODULE, SCRIPT, SHELL, classify_target


@pytest.fixture
def project(tmp_path):
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "__init__.py").write_text("")
    (tmp_path / "trainer" / "train.py").write_text("print('hi')\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__main__.py").write_text("")
    (tmp_path / "top.py").write_text("")
    (tmp_path / "run.sh").write_text("echo hi\n")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "go").write_text("echo go\n")
    return str(tmp_path)


@pytest.mark.parametrize(
    "given, kind, name, package_dir, command",
    [
        ("trainer.train", MODULE, "trainer.train", "trainer", ["python", "-m", "trainer.train"]),
        ("trainer/train", MODULE, "trainer.train", "trainer", ["python", "-m", "trainer.train"]),
        ("pkg", MODULE, "pkg", "pkg", ["python", "-m", "pkg"]),
        ("pkg/", MODULE, "pkg", "pkg", ["python", "-m", "pkg"]),
        ("top", MODULE, "top", ".", ["python", "-m", "top"]),
        ("trainer/train.py", SCRIPT, "trainer/train.py", "trainer", ["python", "trainer/train.py"]),
        ("./trainer/train.py", SCRIPT, "trainer/train.py", "trainer", ["python", "trainer/train.py"]),
        ("top.py", SCRIPT, "top.py", ".", ["python", "top.py"]),
        ("run.sh", SHELL, "run.sh", ".", ["/bin/bash", "run.sh"]),
        ("scripts/go", SHELL, "scripts/go", "scripts", ["/bin/bash", "scripts/go"]),
    ],
)
def test_classification(project, given, kind, name, package_dir, command):
    target = classify_target(given, project)
    assert (target.kind, target.name, target.package_dir, target.command) == (kind, name, package_dir, command)


def test_absolute_path_inside_the_project_is_fine(project):
    assert classify_target(f"{project}/run.sh", project).name == "run.sh"


@pytest.mark.parametrize(
    "given, message",
    [
        ("trainer.missing", "not found"),
        ("trainer/missing.py", "not found"),
        ("missing", "not found"),
        ("../outside.py", "outside the current directory"),
        ("/etc/passwd", "outside the current directory"),
        ("not-a.module!", "neither an existing file nor a valid module"),
        ("", "no target"),
    ],
)
def test_bad_targets(project, given, message):
    with pytest.raises(UsageError, match=message):
        classify_target(given, project)


@pytest.mark.parametrize(
    "given, says, suggests",
    [
        ("scripts/og", "neither scripts/og.py nor scripts/og/__main__.py", "scripts/go"),  # no extension: a module
        ("scripts/helo.sh", "no file scripts/helo.sh", "scripts/go"),
        ("zzzz/qqq.sh", "no file zzzz/qqq.sh", None),
        ("rn.sh", "no file rn.sh", "run.sh"),
        ("trainer/trian.py", "no file trainer/trian.py", "trainer/train.py"),
        ("trainer.trian", "neither trainer/trian.py nor trainer/trian/__main__.py", "trainer.train"),
        ("tpo", "neither tpo.py nor tpo/__main__.py", "top"),
    ],
)
def test_missing_targets_say_what_was_meant_and_the_closest_names(project, given, says, suggests):
    with pytest.raises(UsageError) as err:
        classify_target(given, project)
    message = err.value.message
    assert says in message and "\n" not in message
    if suggests:
        assert f"closest existing: {suggests}" in message
    else:
        assert "closest" not in message


def test_a_typo_in_a_script_path_suggests_the_script(project):
    import os

    open(os.path.join(project, "scripts", "hello.sh"), "w").close()
    with pytest.raises(UsageError) as err:
        classify_target("scripts/helo.sh", project)
    assert "no file scripts/helo.sh" in err.value.message
    assert "closest existing: scripts/hello.sh" in err.value.message
    assert "helo/sh.py" not in err.value.message


def test_suggestions_skip_hidden_directories_and_stay_bounded(project):
    import os

    os.makedirs(os.path.join(project, ".venv", "lib"))
    open(os.path.join(project, ".venv", "lib", "run.sh"), "w").close()
    big = os.path.join(project, "data")
    os.makedirs(big)
    for i in range(6000):  # more than the search looks at
        open(os.path.join(big, f"f{i}.txt"), "w").close()
    with pytest.raises(UsageError) as err:
        classify_target("data/f1.tx", project)
    assert ".venv" not in err.value.message
    assert "no file data/f1.tx" in err.value.message
