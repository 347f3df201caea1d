"""The emulator itself: auth, REST paths from the discovery documents, validation, quotas, faults."""

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from caliban.cloud import client as cloud_client
from tests import cloud_emulator as ce
from tests.cloud_helpers import PROJECT, REGION, client_for, ml_body, vertex_body
from tests import REPO



def raw(emu, method, path, body=None, token=None):
    """A request without googleapiclient, to see the emulator's exact answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(emu.url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def token_for(emu):
    from google.auth.transport.requests import Request

    from caliban.cloud import auth as cloud_auth

    credentials, _ = cloud_auth.load_credentials(emu.key_path)
    credentials.refresh(Request())
    return credentials.token


def test_key_file_points_google_auth_at_the_emulator(emu):
    info = json.load(open(emu.key_path))
    assert info["type"] == "service_account" and info["token_uri"] == f"{emu.url}/token"
    token = token_for(emu)
    assert token.startswith("ya29.emulator-")
    assert emu.token_grants == 1
    assert [r.path for r in emu.requests] == ["/token"]


def test_calls_without_a_valid_token_are_401(emu):
    path = f"/v1/projects/{PROJECT}/locations/{REGION}/customJobs"
    status, body = raw(emu, "GET", path)
    assert status == 401 and body["error"]["status"] == "UNAUTHENTICATED"
    status, body = raw(emu, "GET", path, token="ya29.forged")
    assert status == 401 and body["error"]["code"] == 401
    assert emu.jobs() == []


def test_token_endpoint_rejects_a_bad_signature(emu):
    import base64

    header = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": "nope"}).encode()).decode().rstrip("=")
    form = f"grant_type={ce.JWT_BEARER}&assertion={header}.e30.c2ln".encode()
    req = urllib.request.Request(emu.url + "/token", data=form, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400 and json.loads(err.value.read())["error"] == "invalid_grant"


def test_paths_are_those_of_the_discovery_documents(emu):
    from caliban.cloud.schema import load_document

    vertex = load_document("aiplatform.v1.json")["resources"]["projects"]["resources"]["locations"]["resources"]["customJobs"]["methods"]
    ml = load_document("ml.v1.json")["resources"]["projects"]["resources"]["jobs"]["methods"]
    assert vertex["create"]["flatPath"] == "v1/projects/{projectsId}/locations/{locationsId}/customJobs"
    assert vertex["cancel"]["path"] == "v1/{+name}:cancel"
    assert ml["create"]["flatPath"] == "v1/projects/{projectsId}/jobs"
    client = client_for(emu, emu.key_path)
    client.create(vertex_body("k-1", 1))
    client_for(emu, emu.key_path, "ml_v1").create(ml_body("k-2", 2))
    paths = [r.path for r in emu.requests if r.method == "POST" and r.path != "/token"]
    assert paths == [f"/v1/projects/{PROJECT}/locations/{REGION}/customJobs", f"/v1/projects/{PROJECT}/jobs"]


def test_vertex_create_get_list_cancel(emu):
    client = client_for(emu, emu.key_path)
    created = [client.create(vertex_body(f"key-{i}", i)) for i in range(5)]
    first = created[0]
    assert first["name"].startswith(f"projects/{emu.project_number}/locations/{REGION}/customJobs/")
    assert first["name"].rsplit("/", 1)[1].isdigit()
    assert first["state"] in ("JOB_STATE_PENDING", "JOB_STATE_QUEUED") and first["createTime"].endswith("Z")
    assert len({j["name"] for j in created}) == 5
    assert client.get(first["name"])["displayName"] == "caliban_test_0"
    assert client.get(client.short_id(first))["name"] == first["name"]
    assert [j["name"] for j in client.list_by_label("caliban_key", "key-3")] == [created[3]["name"]]
    assert client.list_by_label("caliban_key", "key-9") == []
    assert len(client.list(page_size=2)) == 5  # follows nextPageToken
    assert len(client.list('labels.caliban_key=key-1')) == 1
    client.cancel(first["name"])
    assert client.get(first["name"])["state"] == "JOB_STATE_CANCELLED"
    with pytest.raises(cloud_client.CloudApiError) as err:
        client.get("999")
    assert err.value.code == 404


def test_ml_v1_create_get_list_cancel_and_duplicate_id(emu):
    client = client_for(emu, emu.key_path, "ml_v1")
    job = client.create(ml_body("key-1", 1))
    assert job["state"] == "QUEUED" and job["jobId"] == "caliban_test_key_1"
    assert client.get("caliban_test_key_1")["labels"] == {"caliban_key": "key-1"}
    assert [j["jobId"] for j in client.list_by_label("caliban_key", "key-1")] == ["caliban_test_key_1"]
    with pytest.raises(cloud_client.CloudApiError) as err:
        client.create(ml_body("key-1", 1))
    assert err.value.code == 409 and err.value.status == "ALREADY_EXISTS" and err.value.kind == cloud_client.CONFLICT
    client.cancel("caliban_test_key_1")
    assert client.get("caliban_test_key_1")["state"] == "CANCELLED"
    assert len(emu.jobs("ml_v1")) == 1


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda b: b.update(bogus=1), 'Unknown name "bogus"'),
        (lambda b: b["jobSpec"]["workerPoolSpecs"][0].update(replicaCount="two"), "replicaCount"),
        (lambda b: b["jobSpec"]["workerPoolSpecs"][0]["machineSpec"].update(acceleratorType="GTX_1080"), "GTX_1080"),
        (lambda b: b["jobSpec"].update(scheduling={"timeout": "an hour"}), "scheduling.timeout"),
        (lambda b: b["jobSpec"].update(enableWebAccess="yes"), "enableWebAccess"),
        (lambda b: b.pop("displayName"), "displayName"),
        (lambda b: b.pop("jobSpec"), "jobSpec"),
        (lambda b: b["labels"].update({"Bad Key": "x"}), "label key"),
    ],
)
def test_vertex_bodies_are_checked_against_the_schema(emu, mutate, expected):
    body = vertex_body("k-1", 1)
    mutate(body)
    client = client_for(emu, emu.key_path)
    with pytest.raises(cloud_client.CloudApiError) as err:
        client.create(body)
    assert err.value.code == 400 and err.value.status == "INVALID_ARGUMENT"
    assert expected in err.value.api_message
    assert emu.jobs() == []


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda b: b.pop("jobId"), "jobId"),
        (lambda b: b.pop("trainingInput"), "trainingInput"),
        (lambda b: b["trainingInput"].update(scaleTier="HUGE"), "scaleTier"),
        (lambda b: b["trainingInput"].update(masterConfig={"imageUri": "x", "gpus": 2}), 'Unknown name "gpus"'),
    ],
)
def test_ml_v1_bodies_are_checked_against_the_schema(emu, mutate, expected):
    body = ml_body("k-1", 1)
    mutate(body)
    with pytest.raises(cloud_client.CloudApiError) as err:
        client_for(emu, emu.key_path, "ml_v1").create(body)
    assert err.value.code == 400 and expected in err.value.api_message


def test_valid_bodies_pass_the_schema():
    from caliban.cloud.schema import job_body_errors

    body = vertex_body("k", 1, gpus=2)
    body["jobSpec"]["scheduling"] = {"strategy": "SPOT", "timeout": "3600s"}
    body["jobSpec"]["serviceAccount"] = "sa@p.iam.gserviceaccount.com"
    assert job_body_errors("vertex", body) == []
    assert job_body_errors("ml_v1", ml_body("k", 1, gpus=1)) == []


def test_create_quota_per_minute(tmp_path):
    from tests.cloud_helpers import FakeClock

    clock = FakeClock()
    with ce.CloudEmulator(quota_per_minute=3, clock=clock) as emu:
        key = emu.write_service_account_key(tmp_path / "key.json")
        client = client_for(emu, key)
        for i in range(3):
            client.create(vertex_body(f"k-{i}", i))
        with pytest.raises(cloud_client.CloudApiError) as err:
            client.create(vertex_body("k-3", 3))
        assert err.value.code == 429 and err.value.status == "RESOURCE_EXHAUSTED"
        assert "per minute per region" in err.value.api_message
        assert err.value.kind == cloud_client.RATE_LIMITED
        clock.sleep(60)
        client.create(vertex_body("k-3", 3))
        other_region = cloud_client.CloudClient("vertex", PROJECT, "europe-west4", client._http.credentials,
                                                api_endpoint=emu.url)
        other_region.create(vertex_body("k-4", 4))  # quotas are per region


def test_gpu_quota_counts_active_jobs(tmp_path):
    with ce.CloudEmulator(gpu_quota={"NVIDIA_TESLA_P100": 4}) as emu:
        client = client_for(emu, emu.write_service_account_key(tmp_path / "key.json"))
        a = client.create(vertex_body("k-1", 1, gpus=2))
        client.create(vertex_body("k-2", 2, gpus=2))
        with pytest.raises(cloud_client.CloudApiError) as err:
            client.create(vertex_body("k-3", 3, gpus=1))
        assert err.value.code == 429 and err.value.kind == cloud_client.QUOTA_EXHAUSTED
        assert err.value.api_message == ("The following quota metrics exceed quota limits: "
                                         "aiplatform.googleapis.com/custom_model_training_nvidia_tesla_p100_gpus")
        assert err.value.quota_metric == "aiplatform.googleapis.com/custom_model_training_nvidia_tesla_p100_gpus"
        emu.set_state(a["name"], "JOB_STATE_SUCCEEDED")  # finished jobs free their GPUs
        client.create(vertex_body("k-3", 3, gpus=1))


@pytest.mark.parametrize(
    "fault, code, kind, created",
    [
        (ce.RATE_LIMIT, 429, cloud_client.RATE_LIMITED, 0),
        (ce.RESOURCE_QUOTA, 429, cloud_client.QUOTA_EXHAUSTED, 0),
        (ce.UNAVAILABLE, 503, cloud_client.SERVER_ERROR, 0),
        (ce.ERROR_AFTER_CREATE, 503, cloud_client.SERVER_ERROR, 1),
    ],
)
def test_injected_error_faults(emu, fault, code, kind, created):
    client = client_for(emu, emu.key_path)
    emu.inject(fault)
    with pytest.raises(cloud_client.CloudApiError) as err:
        client.create(vertex_body("k-1", 1))
    assert (err.value.code, err.value.kind) == (code, kind)
    assert len(emu.jobs()) == created
    client.create(vertex_body("k-2", 2))  # one fault, used up
    assert len(emu.jobs()) == created + 1


def test_injected_drop_creates_the_job_and_closes_the_socket(emu):
    client = client_for(emu, emu.key_path, "ml_v1")
    emu.inject(ce.DROP_AFTER_CREATE, api="ml_v1")
    with pytest.raises(cloud_client.TransportError):
        client.create(ml_body("k-1", 1))
    assert emu.counts_by_key() == {"k-1": 1}
    assert emu.requests[-1].status == "dropped"


def test_set_state_is_visible_through_the_api(emu):
    client = client_for(emu, emu.key_path)
    job = client.create(vertex_body("k-1", 1))
    emu.set_state(job["name"], "JOB_STATE_RUNNING")
    got = client.get(job["name"])
    assert got["state"] == "JOB_STATE_RUNNING" and "startTime" in got
    assert client.list('state="JOB_STATE_RUNNING"')[0]["name"] == job["name"]


def test_standalone_prints_its_url_and_writes_a_key(tmp_path):
    key = tmp_path / "key.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.cloud_emulator", "--port", "0", "--quota-per-minute", "5", "--key-out", str(key)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        info = json.loads(key.read_text())
        assert info["token_uri"] == url + "/token"
        from caliban.cloud import auth as cloud_auth

        credentials, project = cloud_auth.load_credentials(str(key))
        client = cloud_client.CloudClient("vertex", project, REGION, credentials, api_endpoint=url)
        assert client.list() == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cancel_bodies_are_checked_too(emu):
    client = client_for(emu, emu.key_path)
    job = client.create(vertex_body("k-1", 1))
    token = token_for(emu)
    status, body = raw(emu, "POST", f"/v1/{job['name']}:cancel", {"force": True}, token=token)
    assert status == 400 and 'Unknown name "force"' in body["error"]["message"]
    assert client.get(job["name"])["state"] == "JOB_STATE_PENDING"
    status, _ = raw(emu, "POST", f"/v1/{job['name']}:cancel", {}, token=token)
    assert status == 200 and client.get(job["name"])["state"] == "JOB_STATE_CANCELLED"
