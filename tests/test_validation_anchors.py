"""Validators anchor at the true end of the text: Python's `$` also matches
just before a trailing newline, so "ok\\n" used to pass a `^...$` check and
carry the newline on (into a Dockerfile line, a request body, ...)."""

import pytest

from caliban.calibanconfig import parse_calibanconfig
from caliban.cloud.schema import job_body_errors
from caliban.docker.build_context import DockerIgnore, parse_dockerignore
from caliban.errors import UsageError
from tests.cloud_helpers import ml_body, vertex_body


@pytest.mark.parametrize(
    "key, good, bad",
    [
        ("apt_packages", ["curl"], ["curl\n"]),
        ("apt_packages", {"gpu": ["libsm6=1.2"]}, {"gpu": ["libsm6=1.2\n"]}),
        ("base_image", "python:3.11-slim", "python:3.11-slim\n"),
        ("image_repo", "gcr.io/p/caliban", "gcr.io/p/caliban\n"),
    ],
)
def test_calibanconfig_refuses_a_trailing_newline(key, good, bad):
    parse_calibanconfig({key: good})
    with pytest.raises(UsageError) as err:
        parse_calibanconfig({key: bad})
    assert "\\n" in err.value.message and "\n" not in err.value.message


@pytest.mark.parametrize(
    "set_value, field",
    [
        (lambda b, end: b["labels"].update({"caliban_key": "k-1" + end}), "invalid value"),  # label value
        (lambda b, end: b["labels"].update({"epochs" + end: "2"}), "label key"),  # label key
        (lambda b, end: b["jobSpec"].update(scheduling={"timeout": "3600s" + end}), "scheduling.timeout"),
        (lambda b, end: b["jobSpec"]["workerPoolSpecs"][0].update(replicaCount="1" + end), "replicaCount"),
        (lambda b, end: b.update(startTime="2024-01-02T03:04:05Z" + end), "startTime"),  # datetime
    ],
)
def test_request_schema_refuses_a_trailing_newline(set_value, field):
    for end, valid in (("", True), ("\n", False)):
        body = vertex_body("k-1", 1)
        set_value(body, end)
        errors = job_body_errors("vertex", body)
        assert (errors == []) == valid, errors
        assert valid or field in errors[0]


def test_ml_job_id_refuses_a_trailing_newline():
    body = ml_body("k-1", 1)
    assert job_body_errors("ml_v1", body) == []
    body["jobId"] += "\n"
    errors = job_body_errors("ml_v1", body)
    assert errors and "jobId" in errors[0]


def test_dockerignore_wildcards_match_to_the_end_of_the_path_only():
    ignore = DockerIgnore(parse_dockerignore("*.log\ndata/[ab]*.bin\n"))
    assert ignore.matches("x.log") and ignore.matches("data/a1.bin")
    # Go's `$` (the Docker CLI's matcher) ends at the end of the text.
    assert not ignore.matches("x.log\n")
    assert not ignore.matches("data/a1.bin\n")


@pytest.mark.parametrize("bad", ["fan\ncy", "a b", "$(id)", "x]", "-e"])
def test_extras_must_be_extra_names(tmp_path, bad):
    from caliban.calibanconfig import CalibanConfig
    from caliban.docker.engine import plan_image

    (tmp_path / "setup.py").write_text("setup(extras_require={'fancy': ['x']})\n")
    plan = plan_image(str(tmp_path), None, gpu=False, extras=["fancy\n", "b.c_d-e"], config=CalibanConfig())
    assert plan.spec.extras == ("fancy", "b.c_d-e")  # surrounding whitespace of a comma list is not part of a name
    with pytest.raises(UsageError) as err:
        plan_image(str(tmp_path), None, gpu=False, extras=[bad], config=CalibanConfig())
    assert repr(bad) in err.value.message and "\n" not in err.value.message
