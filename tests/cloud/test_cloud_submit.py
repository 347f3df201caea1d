"""Sweeps through the emulator with the real google-auth + googleapiclient stack."""

import io
import random

import pytest

from caliban.cloud import auth as cloud_auth

from caliban.cloud import client as cloud_client

from caliban.cloud import submit as cloud_submit
from caliban.cloud.submit import FAILED, SKIPPED, SUBMITTED, RateLimiter, RetryPolicy, Submitter
from caliban.errors import CalibanError, UsageError
from tests import cloud_emulator as ce
from tests.cloud_helpers import REPO, FakeClock, client_for, sweep


def submitter(emu, backend="vertex", clock=None, **options):
    clock = clock or FakeClock()
    options.setdefault("rate_limit", 6000)
    options.setdefault("rng", random.Random(7))
    return Submitter(client_for(emu, emu.key_path, backend), clock=clock, sleep=clock.sleep, **options)


def assert_exactly_once(emu, jobs, result, backend):
    counts = emu.counts_by_key(backend=backend)
    assert {j.key: counts[j.key] for j in jobs} == {j.key: 1 for j in jobs}
    assert sum(counts.values()) == len(jobs)
    assert result.ok and result.exit_code == 0
    stored = {j["labels"]["caliban_key"]: j for j in emu.jobs(backend)}
    for job, outcome in result.outcomes:
        assert outcome.status == SUBMITTED
        expected = stored[job.key]["name"] if backend == "vertex" else stored[job.key]["jobId"]
        assert outcome.remote_id == expected


@pytest.mark.parametrize("backend", ["vertex", "ml_v1"])
def test_clean_sweep_submits_every_job_once(emu, backend):
    jobs = sweep(backend, 12)
    result = submitter(emu, backend, workers=4).submit(jobs)
    assert_exactly_once(emu, jobs, result, backend)
    assert emu.create_calls() == 12
    assert all(o.attempts == 1 and not o.adopted for _, o in result.outcomes)


FAULTS = [ce.RATE_LIMIT, ce.UNAVAILABLE, ce.DROP_AFTER_CREATE, ce.ERROR_AFTER_CREATE]


@pytest.mark.parametrize("backend", ["vertex", "ml_v1"])
@pytest.mark.parametrize("fault", FAULTS)
def test_every_job_exactly_once_under_each_fault(emu, backend, fault):
    jobs = sweep(backend, 10)
    emu.inject(fault, times=4)
    result = submitter(emu, backend, workers=3).submit(jobs)
    assert emu.pending_faults() == 0
    assert_exactly_once(emu, jobs, result, backend)
    if fault in (ce.DROP_AFTER_CREATE, ce.ERROR_AFTER_CREATE):
        # The lost answers were recovered by looking up (Vertex) or by 409 (ml v1), never by a duplicate.
        assert sum(o.adopted for _, o in result.outcomes) == 4
    if fault == ce.DROP_AFTER_CREATE and backend == "vertex":
        # No transport-level resend: each create request reached the server once.
        assert emu.create_calls() == 10
        assert sum(1 for r in emu.requests if r.status == "dropped") == 4


def test_dropped_connection_is_not_resent_by_the_transport(emu):
    client = client_for(emu, emu.key_path)
    emu.inject(ce.DROP_AFTER_CREATE)
    with pytest.raises(cloud_client.TransportError):
        client.create(sweep("vertex", 1)[0].body)
    assert emu.create_calls() == 1
    assert len(emu.jobs()) == 1


@pytest.mark.parametrize("backend", ["vertex", "ml_v1"])
def test_random_faults_mixed_sweep_is_exact(tmp_path, backend):
    rates = {ce.RATE_LIMIT: 0.1, ce.UNAVAILABLE: 0.05, ce.DROP_AFTER_CREATE: 0.05, ce.ERROR_AFTER_CREATE: 0.05}
    with ce.CloudEmulator(fault_rates=rates, seed=3) as emulator:
        emulator.key_path = emulator.write_service_account_key(tmp_path / "key.json")
        jobs = sweep(backend, 40)
        result = submitter(emulator, backend, workers=6).submit(jobs)
        assert_exactly_once(emulator, jobs, result, backend)


@pytest.mark.parametrize("error_details", [True, False], ids=["details", "message-only"])
@pytest.mark.parametrize("backend", ["vertex", "ml_v1"])
def test_resource_quota_stops_the_sweep_and_names_the_quota(tmp_path, backend, error_details):
    with ce.CloudEmulator(gpu_quota={"NVIDIA_TESLA_P100": 4}, error_details=error_details) as emulator:
        emulator.key_path = emulator.write_service_account_key(tmp_path / "key.json")
        jobs = sweep(backend, 10, gpus=1)
        out = io.StringIO()
        result = submitter(emulator, backend, workers=1,
                           reporter=cloud_submit.ConsoleReporter(out, progress=False)).submit(jobs)
    statuses = [o.status for _, o in result.outcomes]
    assert statuses == [SUBMITTED] * 4 + [FAILED] + [SKIPPED] * 5
    assert emulator.create_calls() == 5  # the quota answer was not retried
    metric = ("aiplatform.googleapis.com/custom_model_training_nvidia_tesla_p100_gpus" if backend == "vertex"
              else "ml.googleapis.com/nvidia_tesla_p100_gpus")
    assert result.quota_metric == metric
    assert result.exit_code == 1
    assert [j.display_name for j in result.not_submitted] == [f"job-{i}" for i in range(5, 11)]
    text = out.getvalue()
    assert "Submitted 4 of 10 jobs; 1 failed; 5 skipped." in text
    # Where to move: the other regions that offer P100s (machine_tables.ACCELERATOR_REGIONS).
    assert (f"Stopped: quota {metric} is exhausted in us-central1; P100 is also offered in "
            "asia-east1, europe-west1, europe-west4, us-east1, us-west1 (--region)") in text
    assert "Not submitted (6): job-5, job-6, job-7, job-8, job-9, job-10" in text
    assert "To resume" in text and "quotas?project=caliban-test" in text


def test_injected_resource_quota_with_workers_stops_without_duplicates(emu):
    jobs = sweep("vertex", 30)
    emu.inject(ce.RESOURCE_QUOTA, times=1)
    result = submitter(emu, "vertex", workers=4).submit(jobs)
    assert not result.ok
    assert "custom_model_training_nvidia_tesla_p100_gpus" in result.quota_metric
    counts = emu.counts_by_key()
    assert all(c == 1 for c in counts.values())
    assert {j.key for j, _ in result.submitted} == set(counts)
    assert len(result.failed) == 1 and len(result.skipped) >= 1
    assert len(result.submitted) + len(result.failed) + len(result.skipped) == 30


def test_rate_limiter_keeps_every_minute_under_the_quota(tmp_path):
    clock = FakeClock()
    with ce.CloudEmulator(quota_per_minute=10, clock=clock) as emulator:
        emulator.key_path = emulator.write_service_account_key(tmp_path / "key.json")
        jobs = sweep("vertex", 25)
        result = submitter(emulator, "vertex", clock=clock, rate_limit=10, workers=1).submit(jobs)
    assert result.ok
    creates = [r.time for r in emulator.requests if r.method == "POST" and r.path.endswith("customJobs")]
    assert len(creates) == 25 and all(r.status == 200 for r in emulator.requests if r.path.endswith("customJobs"))
    for t in creates:
        assert sum(1 for u in creates if t - 60 < u <= t) <= 10
    # and it is not slower than the limit: 25 jobs at 10/min take 2.4 minutes of (fake) time
    assert creates[-1] - creates[0] == pytest.approx(24 * 6.0)


def test_rate_limit_answers_are_retried_with_growing_backoff(emu):
    clock = FakeClock()
    emu.inject(ce.RATE_LIMIT, times=4)
    policy = RetryPolicy(initial=1.0, maximum=4.0)
    result = submitter(emu, "vertex", clock=clock, workers=1, retry=policy).submit(sweep("vertex", 1))
    assert result.ok and result.outcomes[0][1].attempts == 5
    backoffs = [s for s in clock.sleeps if s > 0.011]  # limiter waits at 6000/min are 0.01 s
    assert len(backoffs) == 4
    ceilings = [1.0, 2.0, 4.0, 4.0]  # truncated at `maximum`
    for delay, ceiling in zip(backoffs, ceilings):
        assert ceiling / 2 <= delay <= ceiling


def test_rate_limit_answer_is_classified_by_its_error_info(emu):
    client = client_for(emu, emu.key_path)
    emu.inject(ce.RATE_LIMIT)
    with pytest.raises(cloud_client.CloudApiError) as err:
        client.create(sweep("vertex", 1)[0].body)
    assert (err.value.code, err.value.reason, err.value.kind) == (429, "RATE_LIMIT_EXCEEDED", cloud_client.RATE_LIMITED)


def test_gives_up_after_max_attempts(emu):
    emu.inject(ce.UNAVAILABLE, times=50, api="ml_v1")
    result = submitter(emu, "ml_v1", workers=1, retry=RetryPolicy(max_attempts=3)).submit(sweep("ml_v1", 1))
    (_, outcome), = result.outcomes
    assert outcome.status == FAILED and outcome.attempts == 3 and "gave up after 3 attempts" in outcome.error
    assert emu.jobs() == []


def test_rate_limiter_spaces_acquisitions_evenly():
    clock = FakeClock(0.0)
    limiter = RateLimiter(30, clock=clock, sleep=clock.sleep)
    slots = [limiter.acquire() for _ in range(5)]
    assert slots == [0.0, 2.0, 4.0, 6.0, 8.0]
    clock.now = 100.0  # idle time is not banked as a burst
    assert [limiter.acquire() for _ in range(2)] == [100.0, 102.0]


def test_invalid_body_submits_nothing(emu):
    jobs = sweep("vertex", 3)
    jobs[2].body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorType"] = "NVIDIA_TESLA_P1000"
    with pytest.raises(UsageError, match="acceleratorType.*NVIDIA_TESLA_P1000.*nothing was submitted"):
        submitter(emu).submit(jobs)
    jobs = sweep("vertex", 2)
    jobs[1].body["jobSpec"]["workerPoolSpec"] = []
    with pytest.raises(UsageError, match='Unknown name "workerPoolSpec"'):
        submitter(emu).submit(jobs)
    assert emu.requests == [] and emu.jobs() == []


def test_repeated_keys_are_refused(emu):
    jobs = sweep("vertex", 2)
    jobs[1].key = jobs[0].key
    with pytest.raises(UsageError, match="share caliban_key"):
        submitter(emu).submit(jobs)


def test_server_rejection_stops_and_skips_the_rest(emu):
    jobs = sweep("vertex", 5)
    client = client_for(emu, emu.key_path)
    client.project_id = "not-my-project"  # a 403 from the server for every create
    clock = FakeClock()
    result = Submitter(client, clock=clock, sleep=clock.sleep, workers=1).submit(jobs)
    assert [o.status for _, o in result.outcomes] == [FAILED] + [SKIPPED] * 4
    assert "403 PERMISSION_DENIED" in result.stop_reason
    assert emu.create_calls() == 1


def test_callbacks_bracket_every_create(emu):
    events = []

    def before(job):
        assert emu.counts_by_key()[job.key] == 0  # the row is written before the job exists
        events.append(("before", job.key))

    def after(job, outcome):
        events.append(("result", job.key, outcome.status, outcome.remote_id))

    jobs = sweep("vertex", 6)
    emu.inject(ce.DROP_AFTER_CREATE, times=2)
    result = submitter(emu, workers=2).submit(jobs, on_before_send=before, on_result=after)
    assert result.ok
    for job, outcome in result.outcomes:
        before_at = events.index(("before", job.key))
        after_at = events.index(("result", job.key, SUBMITTED, outcome.remote_id))
        assert before_at < after_at


def test_check_existing_adopts_jobs_sent_by_an_earlier_run(emu):
    jobs = sweep("vertex", 4)
    first = submitter(emu).submit(jobs[:2])
    again = submitter(emu).submit(jobs, check_existing=True)
    assert again.ok
    assert [o.adopted for _, o in again.outcomes] == [True, True, False, False]
    assert [o.remote_id for _, o in again.outcomes][:2] == [o.remote_id for _, o in first.outcomes]
    assert_exactly_once(emu, jobs, again, "vertex")


def test_console_reporter_prints_urls_logs_and_summary(emu):
    out = io.StringIO()
    jobs = sweep("vertex", 2)
    result = submitter(emu, reporter=cloud_submit.ConsoleReporter(out, progress=True)).submit(jobs)
    text = out.getvalue()
    job_id = result.outcomes[0][1].remote_id.rsplit("/", 1)[-1]
    assert f"https://console.cloud.google.com/vertex-ai/locations/us-central1/training/{job_id}/cpu?project=caliban-test" in text
    assert f"gcloud ai custom-jobs stream-logs {job_id} --project=caliban-test --region=us-central1" in text
    assert "Submitted 2 of 2 jobs; 0 failed; 0 skipped." in text


def test_ml_v1_console_and_logs(emu):
    result = submitter(emu, "ml_v1").submit(sweep("ml_v1", 1))
    outcome = result.outcomes[0][1]
    assert outcome.logs_command == f"gcloud ai-platform jobs stream-logs {outcome.remote_id} --project=caliban-test"
    assert outcome.console_url == f"https://console.cloud.google.com/ai-platform/jobs/{outcome.remote_id}?project=caliban-test"


def test_ml_v1_conflict_with_a_foreign_job_fails(emu):
    jobs = sweep("ml_v1", 1)
    client = client_for(emu, emu.key_path, "ml_v1")
    foreign = dict(jobs[0].body, labels={"caliban_key": "someone-else"})
    client.create(foreign)
    result = submitter(emu, "ml_v1").submit(jobs)
    assert result.outcomes[0][1].status == FAILED
    assert "already used by another job" in result.outcomes[0][1].error


# -- credentials -------------------------------------------------------------


@pytest.fixture
def no_adc(tmp_path, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")


def test_no_credentials_is_one_clear_error(no_adc):
    with pytest.raises(CalibanError) as info:
        cloud_auth.load_credentials(None)
    assert info.value.exit_code == 1
    assert "gcloud auth application-default login" in info.value.message
    assert "\n" not in info.value.message


def test_missing_key_file_names_it(no_adc, tmp_path):
    with pytest.raises(CalibanError, match="--cloud_key .*nope.json: no such file"):
        cloud_auth.load_credentials(str(tmp_path / "nope.json"))


def test_application_default_credentials_from_env(emu, monkeypatch, no_adc):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", emu.key_path)
    credentials, project = cloud_auth.load_credentials(None)
    assert project == "caliban-test"
    client = cloud_client.CloudClient("vertex", project, "us-central1", credentials, api_endpoint=emu.url)
    assert client.list() == []
    assert emu.token_grants == 1


def test_adc_token_failure_names_the_adc_source(emu, monkeypatch, no_adc, tmp_path):
    token_uri = f"http://127.0.0.1:{closed_port()}/token"
    key = emu.write_service_account_key(tmp_path / "adc.json", token_uri=token_uri)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", key)
    credentials, _ = cloud_auth.load_credentials(None)
    with pytest.raises(cloud_auth.TokenUnavailable) as err:
        cloud_auth.access_token(credentials)  # what the registry login uses
    assert err.value.message.startswith(
        f"no Google Cloud access token from {token_uri} (credentials: GOOGLE_APPLICATION_CREDENTIALS={key}): "
        "could not reach it (connection refused)")
    assert err.value.endpoint == token_uri and err.value.exit_code == 1


def test_rejected_key_is_token_unavailable_naming_the_endpoint(emu, tmp_path):
    other = ce.CloudEmulator().start()
    try:
        key = other.write_service_account_key(tmp_path / "other.json")  # a key the emulator never issued
    finally:
        other.stop()
    import json

    info = json.load(open(key))
    info["token_uri"] = f"{emu.url}/token"
    json.dump(info, open(key, "w"))
    credentials, _ = cloud_auth.load_credentials(key)
    client = cloud_client.CloudClient("vertex", "caliban-test", "us-central1", credentials, api_endpoint=emu.url)
    with pytest.raises(cloud_auth.TokenUnavailable) as err:
        client.list()
    message = err.value.message
    assert message.startswith(f"no Google Cloud access token from {emu.url}/token (credentials: --cloud_key {key}): "
                              "the token endpoint refused the credentials (invalid_grant: Invalid JWT Signature.)")
    assert "gcloud auth application-default login" in message and "\n" not in message
    assert [r.path for r in emu.requests] == ["/token"]  # the list request never left


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_token_endpoint_stops_the_sweep_before_anything_is_sent(emu, tmp_path):
    token_uri = f"http://127.0.0.1:{closed_port()}/token"
    key = emu.write_service_account_key(tmp_path / "dead.json", token_uri=token_uri)
    clock = FakeClock()
    out = io.StringIO()
    handed = []
    sub = Submitter(client_for(emu, key), clock=clock, sleep=clock.sleep, workers=4, rng=random.Random(1),
                    reporter=cloud_submit.ConsoleReporter(out, progress=False))
    result = sub.submit(sweep("vertex", 8), on_before_send=handed.append)
    reason = (f"no Google Cloud access token from {token_uri} (credentials: --cloud_key {key}): "
              f"could not reach it (connection refused); check that this machine can reach "
              f"{token_uri.split('/')[2]} (network, DNS, proxy settings, firewall)")
    assert result.stop_reason == reason
    assert [(o.status, o.attempts, o.error) for _, o in result.outcomes] == [(SKIPPED, 0, f"not sent: {reason}")] * 8
    assert handed == []  # no job was even marked as sending
    assert emu.requests == [] and emu.jobs() == []
    assert clock.sleeps == []  # no retries, no backoff
    text = out.getvalue()
    assert f"Submitted 0 of 8 jobs; 0 failed; 8 skipped.\nStopped: {reason}\n" in text


@pytest.mark.parametrize("fault, attempts, what", [
    (ce.TOKEN_DROP, 1, "could not reach it (the connection closed without an answer)"),
    # google-auth itself tries a 5xx token answer 3 times in all (google/oauth2/_client.py).
    (ce.TOKEN_UNAVAILABLE, 3, "the token endpoint answered with an error (temporarily_unavailable: "
                              "The token service is temporarily unavailable.)"),
])
def test_failing_token_endpoint_is_asked_once_and_sends_no_create(emu, fault, attempts, what):
    emu.fail_tokens(fault, times=50)
    result = submitter(emu, workers=4).submit(sweep("vertex", 6))
    assert emu.token_attempts() == attempts
    assert emu.create_calls() == 0 and emu.jobs() == []
    assert f"no Google Cloud access token from {emu.url}/token" in result.stop_reason
    assert what in result.stop_reason
    assert [o.status for _, o in result.outcomes] == [SKIPPED] * 6


def test_token_failure_mid_sweep_skips_the_rest_without_retrying(tmp_path):
    # Tokens shorter than google-auth's refresh margin: every request fetches a new one.
    with ce.CloudEmulator(token_lifetime=60) as emulator:
        emulator.key_path = emulator.write_service_account_key(tmp_path / "key.json")
        emulator.fail_tokens(ce.TOKEN_DROP, times=50, after_grants=3)  # up front, job 1, job 2
        jobs = sweep("vertex", 6)
        result = submitter(emulator, workers=1).submit(jobs)
        assert [o.status for _, o in result.outcomes] == [SUBMITTED] * 2 + [SKIPPED] * 4
        assert [o.attempts for _, o in result.outcomes] == [1, 1, 0, 0, 0, 0]
        assert emulator.create_calls() == 2 and emulator.token_attempts() == 4
        assert set(emulator.counts_by_key()) == {"k-1", "k-2"}


def test_token_failure_with_many_workers_sends_nothing_and_asks_at_most_once_each(tmp_path):
    with ce.CloudEmulator(token_lifetime=60) as emulator:
        emulator.key_path = emulator.write_service_account_key(tmp_path / "key.json")
        emulator.fail_tokens(ce.TOKEN_DROP, times=50, after_grants=1)  # the up-front token only
        result = submitter(emulator, workers=4).submit(sweep("vertex", 12))
        assert [o.status for _, o in result.outcomes] == [SKIPPED] * 12
        assert emulator.create_calls() == 0
        assert 2 <= emulator.token_attempts() <= 1 + 4  # a stop, not a retry storm


@pytest.mark.parametrize("backend", ["vertex", "ml_v1"])
def test_lost_create_answer_then_token_failure_is_unknown_not_skipped(tmp_path, backend):
    with ce.CloudEmulator(token_lifetime=60) as emulator:
        emulator.key_path = emulator.write_service_account_key(tmp_path / "key.json")
        emulator.inject(ce.DROP_AFTER_CREATE)  # job 1 is created, its answer lost
        # Then no token for the next request: the look-up by label (Vertex) or the resend (ml v1).
        emulator.fail_tokens(ce.TOKEN_DROP, times=1, after_grants=2)
        jobs = sweep(backend, 3)
        result = submitter(emulator, backend, workers=1).submit(jobs)
        first = result.outcomes[0][1]
        assert first.status == FAILED and first.attempts == 1
        assert first.error.startswith("unknown whether the job was created: a create request got no answer, "
                                      f"and then no Google Cloud access token from {emulator.url}")
        assert "labels.caliban_key=k-1" in first.error
        assert [o.status for _, o in result.outcomes[1:]] == [SKIPPED, SKIPPED]
        assert emulator.create_calls() == 1
        # Sending again with a look-up first finds job 1 instead of creating it twice.
        again = submitter(emulator, backend, workers=1).submit(jobs, check_existing=True)
        assert [o.adopted for _, o in again.outcomes] == [True, False, False]
        assert_exactly_once(emulator, jobs, again, backend)


def test_token_failure_is_recorded_as_never_sent_and_resubmit_sends_each_once(emu, tmp_path):
    from caliban import history
    from caliban.workflows import resubmit, submit as sweep_submit

    jobs = sweep("vertex", 4)
    dead = emu.write_service_account_key(tmp_path / "dead.json", token_uri=f"http://127.0.0.1:{closed_port()}/token")
    with history.Store(tmp_path / "h.db") as store:
        _, rows = sweep_submit.record_sweep(
            store, xgroup="g", backend="vertex", project="caliban-test", region="us-central1",
            api_endpoint=emu.url, cloud_key=None, image_uri=None, docker_id=None, digest=None, build_args={},
            jobs=[history.NewJob(args=["--i", str(i)], request=j.body, caliban_key=j.key)
                  for i, j in enumerate(jobs)])
        for job, row in zip(jobs, rows):
            job.payload = row
        out = io.StringIO()
        code = sweep_submit.send(store, client_for(emu, dead), jobs, rate_limit=6000, resume_hint="resume", out=out)
        assert code == 1 and "Submitted 0 of 4 jobs; 0 failed; 4 skipped." in out.getvalue()
        assert emu.requests == []
        latest = store.jobs(group="g", latest_only=True)
        assert [(j.status, j.maybe_sent) for j in latest] == [("PENDING", False)] * 4
        assert all(j.error.startswith("not sent: no Google Cloud access token") for j in latest)
        chosen, left = resubmit.select_resends(latest, all_jobs=False)
        assert [c.reason for c in chosen] == ["never sent"] * 4 and left == []
        # With a working key, sending them again (as resubmit does) creates each job once.
        code = sweep_submit.send(store, client_for(emu, emu.key_path), jobs, rate_limit=6000, resume_hint="resume",
                                 check_existing=True, out=io.StringIO())
        assert code == 0
        assert emu.counts_by_key() == {j.key: 1 for j in jobs}
        assert [j.status for j in store.jobs(group="g", latest_only=True)] == ["SUBMITTED"] * 4


def test_cli_sweep_with_an_unreachable_token_endpoint_says_so_once(emu, tmp_path):
    import os
    import sqlite3
    import subprocess
    import sys

    project = tmp_path / "proj"
    (project / "trainer").mkdir(parents=True)
    (project / "trainer" / "__init__.py").write_text("")
    (project / "trainer" / "train.py").write_text("print('hi')\n")
    (project / "experiment.json").write_text('{"lr": [1, 2, 3]}')
    token_uri = f"http://127.0.0.1:{closed_port()}/token"
    key = emu.write_service_account_key(tmp_path / "dead.json", token_uri=token_uri)
    env = dict(os.environ, CALIBAN_DB_URL=str(tmp_path / "history.db"), PYTHONPATH=str(REPO))
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "CALIBAN_API_ENDPOINT", "PROJECT_ID"):
        env.pop(name, None)
    r = subprocess.run(
        [sys.executable, "-m", "caliban", "cloud", "--api_endpoint", emu.url, "--cloud_key", key,
         "--project_id", "caliban-test", "--image_tag", "us-central1-docker.pkg.dev/caliban-test/c/t:v1",
         "--nogpu", "--experiment_config", "experiment.json", "trainer.train"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    stopped = [line for line in r.stdout.splitlines() if line.startswith("Stopped:")]
    assert stopped == [f"Stopped: no Google Cloud access token from {token_uri} (credentials: --cloud_key {key}): "
                       f"could not reach it (connection refused); check that this machine can reach "
                       f"{token_uri.split('/')[2]} (network, DNS, proxy settings, firewall)"]
    assert "Submitted 0 of 3 jobs; 0 failed; 3 skipped." in r.stdout
    assert emu.requests == []
    conn = sqlite3.connect(tmp_path / "history.db")
    try:
        assert conn.execute("SELECT status, sent FROM job").fetchall() == [("PENDING", None)] * 3
    finally:
        conn.close()


def test_interrupt_sends_nothing_more(emu):
    jobs = sweep("vertex", 40)
    seen = []

    def before(job):
        seen.append(job.key)
        if len(seen) == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        submitter(emu, workers=2).submit(jobs, on_before_send=before)
    created = set(emu.counts_by_key())
    assert created <= set(seen[:5])  # only jobs handed over before the interrupt can exist
    assert all(c == 1 for c in emu.counts_by_key().values())
