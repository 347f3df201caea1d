"""The API client without a server: endpoints, error classification, light imports."""

import subprocess
import sys

import pytest

from caliban.cloud import client as cloud_client
from tests import REPO



class _NoCredentials:
    """Enough of a credentials object to build requests (nothing is sent)."""

    universe_domain = "googleapis.com"
    token = None
    valid = True

    def before_request(self, *args):
        raise AssertionError("no request may be sent in this test")


def request_uri(backend, region, endpoint=None):
    client = cloud_client.CloudClient(backend, "proj", region, _NoCredentials(), api_endpoint=endpoint)
    return client._jobs().create(parent=client.parent, body={}).uri


def test_vertex_uses_the_regional_endpoint():
    assert request_uri("vertex", "europe-west4").startswith(
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/proj/locations/europe-west4/customJobs?")


def test_ml_v1_uses_the_global_endpoint():
    assert request_uri("ml_v1", "us-central1").startswith("https://ml.googleapis.com/v1/projects/proj/jobs?")


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8080", "http://127.0.0.1:8080/"])
def test_api_endpoint_overrides(endpoint):
    assert request_uri("vertex", "us-central1", endpoint).startswith(
        "http://127.0.0.1:8080/v1/projects/proj/locations/us-central1/customJobs?")


def test_unknown_backend_is_an_error():
    with pytest.raises(cloud_client.CalibanError, match="is not one of"):
        cloud_client.CloudClient("gke", "p", "r", _NoCredentials())


@pytest.mark.parametrize(
    "code, status, message, kind",
    [
        (429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Resource management (CRUD) requests' and "
                                    "limit 'Resource management (CRUD) requests per minute per region'", cloud_client.RATE_LIMITED),
        (429, "RESOURCE_EXHAUSTED", "The following quota metrics exceed quota limits: "
                                    "aiplatform.googleapis.com/custom_model_training_nvidia_l4_gpus", cloud_client.QUOTA_EXHAUSTED),
        (429, "RESOURCE_EXHAUSTED", "The following quota metrics exceed quota limits: "
                                    "aiplatform.googleapis.com/custom_model_training_cpus", cloud_client.QUOTA_EXHAUSTED),
        (429, "RESOURCE_EXHAUSTED", "Too many requests", cloud_client.RATE_LIMITED),
        (503, "UNAVAILABLE", "The service is currently unavailable.", cloud_client.SERVER_ERROR),
        (500, "INTERNAL", "Internal error", cloud_client.SERVER_ERROR),
        (409, "ALREADY_EXISTS", "exists", cloud_client.CONFLICT),
        (403, "PERMISSION_DENIED", "denied", cloud_client.UNAUTHENTICATED),
        (400, "INVALID_ARGUMENT", "bad", cloud_client.REJECTED),
    ],
)
def test_classify(code, status, message, kind):
    assert cloud_client.classify(code, status, message) == kind


def test_quota_metric_is_parsed():
    error = cloud_client.CloudApiError(
        429, "RESOURCE_EXHAUSTED",
        "The following quota metrics exceed quota limits: aiplatform.googleapis.com/custom_model_training_cpus",
        cloud_client.QUOTA_EXHAUSTED)
    assert error.quota_metric == "aiplatform.googleapis.com/custom_model_training_cpus"


def error_info(reason, **metadata):
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com",
            "metadata": metadata}


def quota_failure(**violation):
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]}


A100 = "aiplatform.googleapis.com/custom_model_training_nvidia_a100_gpus"


@pytest.mark.parametrize(
    "message, details, kind",
    [
        # The details decide, whatever the wording says.
        ("Quota exceeded for custom_model_training_nvidia_a100_gpus", [error_info("RATE_LIMIT_EXCEEDED")],
         cloud_client.RATE_LIMITED),
        ("Too many requests", [error_info("RESOURCE_QUOTA_EXCEEDED", quota_metric=A100)],
         cloud_client.QUOTA_EXHAUSTED),
        ("Quota exceeded", [quota_failure(quotaMetric=A100, quotaId="CustomModelTrainingA100GPUsPerProjectPerRegion")],
         cloud_client.QUOTA_EXHAUSTED),
        ("The following quota metrics exceed quota limits: gpus",
         [quota_failure(quotaMetric="aiplatform.googleapis.com/job_submissions",
                        quotaId="JobSubmissionRequestsPerMinutePerProjectPerRegion")],
         cloud_client.RATE_LIMITED),
        ("Quota exceeded for gpus", [error_info("OTHER", quota_limit="GpuRequestsPerMinutePerProject"),
                                     quota_failure(quotaMetric="x/gpu_requests")], cloud_client.RATE_LIMITED),
        # Details that say nothing about quotas: the wording is all there is.
        ("The following quota metrics exceed quota limits: " + A100,
         [{"@type": "type.googleapis.com/google.rpc.Help", "links": []}], cloud_client.QUOTA_EXHAUSTED),
        # Malformed details are ignored, not fatal.
        ("Too many requests", ["junk", {"@type": 3}, error_info(None)], cloud_client.RATE_LIMITED),
    ],
)
def test_classify_from_details(message, details, kind):
    assert cloud_client.classify(429, "RESOURCE_EXHAUSTED", message, details) == kind


def http_error(status: int, payload) -> Exception:
    import json

    import httplib2
    from googleapiclient.errors import HttpError

    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return HttpError(httplib2.Response({"status": str(status)}), content)


def test_api_error_reads_reason_and_metric_from_the_details():
    error = cloud_client.api_error_from_http_error(http_error(429, {"error": {
        "code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": "Quota exceeded. Mentions gpus, but the details say it is a rate limit.",
        "details": [error_info("RATE_LIMIT_EXCEEDED", quota_metric="aiplatform.googleapis.com/job_requests")],
    }}))
    assert (error.kind, error.reason, error.quota_metric) == (
        cloud_client.RATE_LIMITED, "RATE_LIMIT_EXCEEDED", "aiplatform.googleapis.com/job_requests")

    error = cloud_client.api_error_from_http_error(http_error(429, {"error": {
        "code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded.",
        "details": [quota_failure(quotaMetric=A100, quotaDimensions={"region": "us-east1"})],
    }}))
    assert (error.kind, error.reason, error.quota_metric) == (cloud_client.QUOTA_EXHAUSTED, None, A100)


def test_api_error_text_cannot_drive_the_terminal():
    error = cloud_client.api_error_from_http_error(http_error(429, {"error": {
        "code": 429, "status": "RESOURCE_EXHAUSTED\x1b[2J", "message": "bad\x1b]0;title\x07 news",
        "details": [quota_failure(quotaMetric="m\x1b[31mred")],
    }}))
    assert "\x1b" not in error.message and "\x07" not in error.message
    assert error.quota_metric == "m?[31mred"


def test_api_error_without_json_keeps_the_text():
    error = cloud_client.api_error_from_http_error(http_error(502, b"<html>Bad Gateway</html>"))
    assert (error.code, error.kind, error.details) == (502, cloud_client.SERVER_ERROR, [])
    assert "Bad Gateway" in error.api_message


def test_importing_the_cloud_modules_stays_light():
    code = ("import sys, caliban.cloud.client, caliban.cloud.submit, caliban.cloud.auth, caliban.cloud.schema, "
            "caliban.docker.push\n"
            "heavy = [m for m in ('googleapiclient', 'google.auth', 'docker', 'httplib2', 'requests', 'tqdm') "
            "if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_private_endpoint_traffic_stays_on_that_endpoint(tmp_path):
    """google-auth's background boundary lookup would reach public Google; not with --api_endpoint."""
    script = f"""
import socket, sys, time
sys.path.insert(0, {str(REPO)!r})
hosts = set()
real = socket.getaddrinfo
def spy(host, *args, **kwargs):
    hosts.add(host)
    return real(host, *args, **kwargs)
socket.getaddrinfo = spy
from tests.cloud_emulator import CloudEmulator
from tests.cloud_helpers import client_for
with CloudEmulator() as emu:
    key = emu.write_service_account_key({str(tmp_path / 'key.json')!r})
    client_for(emu, key).list_by_label("caliban_key", "x")
    time.sleep(1.0)  # the lookup runs in a background thread
print(sorted(hosts))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['127.0.0.1']"
