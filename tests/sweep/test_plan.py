"""The sweep plan (caliban.sweep.plan) and the names, keys and durations of
caliban.sweep.jobs, as plain functions: no CLI, no files, no network."""

import itertools
import time

import pytest

from caliban.errors import UsageError
from caliban.sweep.accelerators import validate_cloud_machine
from caliban.sweep.jobs import (
    CALIBAN_KEY_LABEL, RUN_LABEL, JobOptions, caliban_key, parse_duration, run_token_of,
)
from caliban.sweep.plan import CloudPlan, Sweep, prepare_jobs, sweep_warnings


def plan_for(config=None, backend="vertex", user_labels=(), options=JobOptions(), name="exp"):
    sweep = Sweep(base_args=("--epochs", "3"), config_path=None if config is None else "cfg.json",
                  config=config)
    return CloudPlan(
        backend=backend, project_id="p", region="us-central1",
        machine=validate_cloud_machine("us-central1", None, None, None, nogpu=True, backend=backend),
        name=name, timestamp="20261206_120000", run_token="0123456789abcdef",
        user_labels=tuple(user_labels), sweep=sweep, image="gcr.io/p/img:PLACEHOLDER",
        image_is_placeholder=True, command=("python", "-m", "trainer.train"), options=options,
    )


def test_one_job_per_experiment_in_config_order_with_the_base_args_first():
    jobs = list(prepare_jobs(plan_for({"lr": [0.1, 0.2], "seed": [1, 2]})))
    assert [j.index for j in jobs] == [1, 2, 3, 4]
    assert [list(j.job.args) for j in jobs] == [
        ["--epochs", "3", "--lr", "0.1", "--seed", "1"],
        ["--epochs", "3", "--lr", "0.2", "--seed", "1"],
        ["--epochs", "3", "--lr", "0.1", "--seed", "2"],
        ["--epochs", "3", "--lr", "0.2", "--seed", "2"],
    ]


def test_every_job_carries_the_sweeps_run_token_and_a_key_of_its_own():
    jobs = list(prepare_jobs(plan_for({"lr": [1, 2, 3]})))
    assert {j.job.labels[RUN_LABEL] for j in jobs} == {"0123456789abcdef"}
    assert [j.caliban_key for j in jobs] == [f"0123456789abcdef-{i}" for i in (1, 2, 3)]
    assert len({j.job.name for j in jobs}) == 3
    assert all(run_token_of(j.caliban_key) == "0123456789abcdef" for j in jobs)


def test_the_request_is_the_backends_body_for_the_image_asked_for():
    plan = plan_for(backend="vertex")
    (placeholder,) = prepare_jobs(plan)
    (pushed,) = prepare_jobs(plan, image="gcr.io/p/img@sha256:" + "a" * 64)
    spec = lambda job: job.request["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]  # noqa: E731
    assert spec(placeholder)["imageUri"] == "gcr.io/p/img:PLACEHOLDER"
    assert spec(pushed)["imageUri"] == "gcr.io/p/img@sha256:" + "a" * 64
    assert placeholder.request["labels"][CALIBAN_KEY_LABEL] == pushed.caliban_key

    (ml_job,) = prepare_jobs(plan_for(backend="ml_v1"))
    assert ml_job.request["trainingInput"]["masterConfig"]["imageUri"] == "gcr.io/p/img:PLACEHOLDER"


def test_jobs_are_made_one_at_a_time_so_a_huge_sweep_starts_at_once():
    # 10^12 experiments: materialising them would never finish.
    plan = plan_for({f"k{i}": list(range(10)) for i in range(12)})
    started = time.perf_counter()
    first = list(itertools.islice(prepare_jobs(plan), 3))
    assert [j.index for j in first] == [1, 2, 3]
    assert time.perf_counter() - started < 5


def test_argument_labels_past_the_cap_warn_once_per_sweep_not_once_per_job():
    many_flags = {f"flag_{i:02d}": [1, 2] if i == 0 else [1] for i in range(70)}
    plan = plan_for(many_flags)
    warnings = sweep_warnings(plan)
    assert len(warnings) == 1 and "label" in warnings[0]
    assert all(len(j.job.labels) <= 64 for j in prepare_jobs(plan))


def test_too_many_user_labels_are_refused_before_any_job():
    plan = plan_for(user_labels=[(f"l{i}", "v") for i in range(70)])
    with pytest.raises(UsageError, match="at most 64"):
        next(prepare_jobs(plan))


def test_each_job_writes_under_its_own_folder_of_the_output_dir():
    jobs = list(prepare_jobs(plan_for({"lr": [1, 2]}, options=JobOptions(output_dir="gs://b/runs/"))))
    assert [j.job.output_uri() for j in jobs] == [f"gs://b/runs/{j.job.name}/" for j in jobs]
    assert jobs[0].job.output_uri() != jobs[1].job.output_uri()


@pytest.mark.parametrize("text, seconds", [
    ("3600", 3600), ("3600s", 3600), ("90m", 5400), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
    (" 2H ", 7200),
])
def test_durations_in_the_spellings_users_type(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, message", [
    ("", "is not a duration"), ("1.5h", "is not a duration"), ("2 hours", "is not a duration"),
    ("1h-30m", "is not a duration"), ("0", "longer than zero"), ("0s0m", "longer than zero"),
])
def test_bad_durations_name_the_flag_and_the_value(text, message):
    with pytest.raises(UsageError, match=message) as error:
        parse_duration(text, "--max_wait")
    assert str(error.value).startswith(f"--max_wait {text!r}")


@pytest.mark.parametrize("key, token", [
    (caliban_key("abc", 7), "abc"), ("a-b-12", "a-b"), ("abc-", None), ("-3", None), ("abc", None),
    (None, None), ("abc-x1", None),
])
def test_the_run_token_is_read_back_only_from_keys_of_caliban_shape(key, token):
    assert run_token_of(key) == token
