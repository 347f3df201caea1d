"""Each backend: request bodies checked field by field against the discovery documents googleapiclient
ships, job names, resource names and state tables."""

import json
import os
import re
from datetime import datetime

import pytest

from caliban import backends
from caliban.history import states
from caliban.sweep import jobs as jr
from caliban.sweep.accelerators import parse_accelerator_spec, validate_cloud_machine
from caliban.errors import UsageError

googleapiclient = pytest.importorskip("googleapiclient")

DOCUMENTS = os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents")
SCHEMAS = {
    "vertex": ("aiplatform.v1.json", "GoogleCloudAiplatformV1CustomJob"),
    "ml_v1": ("ml.v1.json", "GoogleCloudMlV1__Job"),
}
_INT64 = re.compile(r"-?\d+")
_DURATION = re.compile(r"\d+(\.\d{1,9})?s")


def load_schemas(filename):
    with open(os.path.join(DOCUMENTS, filename)) as fh:
        return json.load(fh)["schemas"]


def schema_errors(schemas, schema, value, path="body"):
    """Every key must be a documented property, every enum value listed, every type right."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"]]
    kind = schema.get("type")
    errors = []
    if kind == "object" or "properties" in schema:
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        properties = schema.get("properties")
        for key, item in value.items():
            if properties is not None and key in properties:
                errors += schema_errors(schemas, properties[key], item, f"{path}.{key}")
            elif "additionalProperties" in schema:
                errors += schema_errors(schemas, schema["additionalProperties"], item, f"{path}.{key}")
            else:
                errors.append(f"{path}.{key}: not a field of {schema.get('id', 'this object')}")
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        for i, item in enumerate(value):
            errors += schema_errors(schemas, schema["items"], item, f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string, got {value!r}"]
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{path}: {value!r} not in the enum")
        if schema.get("format") in ("int64", "uint64") and not _INT64.fullmatch(value):
            errors.append(f"{path}: {value!r} is not an int64 string")
        if schema.get("format") == "google-duration" and not _DURATION.fullmatch(value):
            errors.append(f"{path}: {value!r} is not a duration")
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected an integer, got {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected a boolean")
    return errors


def body_errors(backend, body):
    filename, root = SCHEMAS[backend]
    schemas = load_schemas(filename)
    return schema_errors(schemas, schemas[root], body)


def machine(gpu=None, tpu=None, nogpu=False, machine_type=None, backend="vertex", region="us-central1", force=False):
    return validate_cloud_machine(
        region, machine_type,
        parse_accelerator_spec(gpu, "gpu") if gpu else None,
        parse_accelerator_spec(tpu, "tpu") if tpu else None,
        nogpu, force, backend,
    )


def job(backend="vertex", **kwargs):
    settings = {k: kwargs.pop(k) for k in list(kwargs) if k in jr.JobOptions.__slots__}
    return jr.CloudJob(
        name=backends.get(backend).job_name("caliban_sam", "20250101_120000", 1),
        region=kwargs.get("region", "us-central1"),
        image="us-central1-docker.pkg.dev/proj/caliban/img:abc",
        args=["--epochs", "2", "--lr", "0.01"],
        labels={"gpu_enabled": "true", "caliban_key": "0123abcd-1"},
        machine=machine(backend=backend, **kwargs),
        options=jr.JobOptions(**settings),
    )


# ---------------------------------------------------------------- the schema checker itself


def test_schema_checker_catches_unknown_fields_and_bad_enums():
    body = backends.get("vertex").request_body(job())
    body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorType"] = "NVIDIA_TESLA_Z9"
    body["jobSpec"]["workerPoolSpec"] = []
    errors = body_errors("vertex", body)
    assert any("acceleratorType" in e for e in errors) and any("workerPoolSpec:" in e for e in errors)


# ---------------------------------------------------------------- Vertex


VERTEX_CASES = [
    {}, {"nogpu": True}, {"gpu": "2xL4"}, {"gpu": "8xH100"}, {"gpu": "4xV100"}, {"tpu": "8xV3"},
    {"tpu": "4xV5E"}, {"service_account": "sa@p.iam.gserviceaccount.com", "spot": True, "timeout_seconds": 7200},
]


@pytest.mark.parametrize("case", VERTEX_CASES)
def test_vertex_bodies_match_the_discovery_document(case):
    assert body_errors("vertex", backends.get("vertex").request_body(job(**dict(case)))) == []


def test_vertex_body_shape():
    body = backends.get("vertex").request_body(job(gpu="2xT4"))
    assert body == {
        "displayName": "caliban_sam_20250101_120000_1",
        "labels": {"gpu_enabled": "true", "caliban_key": "0123abcd-1"},
        "jobSpec": {"workerPoolSpecs": [{
            "machineSpec": {"machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 2},
            "replicaCount": "1",
            "containerSpec": {"imageUri": "us-central1-docker.pkg.dev/proj/caliban/img:abc",
                              "args": ["--epochs", "2", "--lr", "0.01"]},
        }]},
    }


def test_vertex_cpu_job_has_no_accelerator():
    spec = backends.get("vertex").request_body(job(nogpu=True))["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    assert spec == {"machineType": "n1-highcpu-32"}


def test_vertex_tpu_job_runs_on_cloud_tpu():
    spec = backends.get("vertex").request_body(job(tpu="8xV2"))["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    assert spec == {"machineType": "cloud-tpu", "acceleratorType": "TPU_V2", "acceleratorCount": 8}


def test_vertex_service_account_spot_and_timeout():
    job_spec = backends.get("vertex").request_body(job(service_account="sa@x", spot=True, timeout_seconds=7200))["jobSpec"]
    assert job_spec["serviceAccount"] == "sa@x"
    assert job_spec["scheduling"] == {"strategy": "SPOT", "timeout": "7200s"}


# ---------------------------------------------------------------- ml v1


ML_V1_CASES = [{}, {"nogpu": True}, {"gpu": "4xT4"}, {"tpu": "8xV3"}, {"tpu": "8xV2", "gpu": "1xV100"},
               {"service_account": "sa@p.iam.gserviceaccount.com", "timeout_seconds": 60}]


@pytest.mark.parametrize("case", ML_V1_CASES)
def test_ml_v1_bodies_match_the_discovery_document(case):
    assert body_errors("ml_v1", backends.get("ml_v1").request_body(job("ml_v1", **dict(case)))) == []


def test_ml_v1_body_shape():
    body = backends.get("ml_v1").request_body(job("ml_v1"))
    assert body == {
        "jobId": "caliban_sam_20250101_120000_1",
        "labels": {"gpu_enabled": "true", "caliban_key": "0123abcd-1"},
        "trainingInput": {
            "scaleTier": "CUSTOM",
            "masterType": "n1-standard-8",
            "masterConfig": {"imageUri": "us-central1-docker.pkg.dev/proj/caliban/img:abc",
                             "acceleratorConfig": {"count": "1", "type": "NVIDIA_TESLA_P100"}},
            "region": "us-central1",
            "args": ["--epochs", "2", "--lr", "0.01"],
        },
    }


def test_ml_v1_tpu_job_adds_a_cloud_tpu_worker():
    training = backends.get("ml_v1").request_body(job("ml_v1", tpu="8xV3"))["trainingInput"]
    assert training["masterType"] == "n1-highcpu-32"
    assert "acceleratorConfig" not in training["masterConfig"]
    assert training["workerType"] == "cloud_tpu" and training["workerCount"] == "1"
    assert training["workerConfig"]["acceleratorConfig"] == {"count": "8", "type": "TPU_V3"}


def test_ml_v1_timeout_is_max_running_time():
    training = backends.get("ml_v1").request_body(job("ml_v1", timeout_seconds=90))["trainingInput"]
    assert training["scheduling"] == {"maxRunningTime": "90s"}


def test_spot_is_vertex_only():
    assert "--spot" in backends.get("ml_v1").unsupported_options(job("ml_v1", spot=True))[0]
    assert backends.get("vertex").unsupported_options(job(spot=True)) == []


# ---------------------------------------------------------------- names, keys, durations


def test_job_names_carry_timestamp_and_index():
    stamp = jr.job_timestamp(datetime(2025, 3, 4, 5, 6, 7))
    assert stamp == "20250304_050607"
    assert backends.get("vertex").job_name(jr.default_job_name("sam"), stamp, 12) == "caliban_sam_20250304_050607_12"


@pytest.mark.parametrize("name", ["my-job.v2", "1st run", "ÉTÉ", "", "a" * 300, "_x"])
def test_ml_v1_job_ids_are_api_valid(name):
    job_id = backends.get("ml_v1").job_name(name, "20250101_120000", 10000)
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,127}", job_id), job_id
    assert job_id.endswith("_20250101_120000_10000")


def test_vertex_display_names_keep_the_name_but_fit_128_characters():
    assert backends.get("vertex").job_name("my-job.v2", "20250101_120000", 1) == "my-job.v2_20250101_120000_1"
    long_name = backends.get("vertex").job_name("é" * 300, "20250101_120000", 7)
    assert len(long_name) == 128 and long_name.endswith("_7")


def test_caliban_keys_are_unique_label_values():
    token = jr.new_run_token()
    keys = {jr.caliban_key(token, i) for i in range(1, 1001)}
    assert len(keys) == 1000
    assert all(re.fullmatch(r"[a-z0-9_-]{1,63}", key) for key in keys)
    assert jr.new_run_token() != token


@pytest.mark.parametrize("text, seconds", [("3600", 3600), ("3600s", 3600), ("90m", 5400), ("2h", 7200),
                                           ("1d", 86400), ("1h30m", 5400), (" 2H ", 7200)])
def test_durations(text, seconds):
    assert jr.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "2 hours", "h", "-5s", "1.5h", "30x"])
def test_bad_durations_are_usage_errors(text):
    with pytest.raises(UsageError, match="--timeout"):
        jr.parse_duration(text)


def test_request_parents():
    assert backends.get("vertex").parent("p", "europe-west4") == "projects/p/locations/europe-west4"
    assert backends.get("ml_v1").parent("p", "europe-west4") == "projects/p"


def test_vertex_tpu_vm_machine_types_imply_their_chips():
    spec = backends.get("vertex").request_body(job(tpu="8xV5E"))["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    assert spec == {"machineType": "ct5lp-hightpu-8t", "tpuTopology": "2x4"}


@pytest.mark.parametrize(
    "backend, state, expected",
    [
        ("vertex", "JOB_STATE_QUEUED", states.SUBMITTED),
        ("vertex", "JOB_STATE_PENDING", states.SUBMITTED),
        ("vertex", "JOB_STATE_RUNNING", states.RUNNING),
        ("vertex", "JOB_STATE_SUCCEEDED", states.SUCCEEDED),
        ("vertex", "JOB_STATE_PARTIALLY_SUCCEEDED", states.FAILED),
        ("vertex", "JOB_STATE_FAILED", states.FAILED),
        ("vertex", "JOB_STATE_CANCELLING", states.STOPPING),
        ("vertex", "JOB_STATE_CANCELLED", states.STOPPED),
        ("vertex", "JOB_STATE_EXPIRED", states.FAILED),
        ("vertex", "JOB_STATE_SOMETHING_NEW", None),
        ("ml_v1", "QUEUED", states.SUBMITTED),
        ("ml_v1", "PREPARING", states.SUBMITTED),
        ("ml_v1", "RUNNING", states.RUNNING),
        ("ml_v1", "SUCCEEDED", states.SUCCEEDED),
        ("ml_v1", "FAILED", states.FAILED),
        ("ml_v1", "CANCELLING", states.STOPPING),
        ("ml_v1", "CANCELLED", states.STOPPED),
    ],
)
def test_state_tables(backend, state, expected):
    assert backends.get(backend).STATES.get(state) == expected


def test_every_state_table_maps_to_known_statuses_and_names_the_api_enum():
    """Every mapped state is a value of the API's own JobState/State enum in the discovery document."""
    for name in backends.NAMES:
        table = backends.get(name).STATES
        assert set(table.values()) <= set(states.ALL_STATUSES)
        filename, schema = SCHEMAS[name]
        enum = load_schemas(filename)[schema]["properties"]["state"]["enum"]
        assert set(table) == set(enum), name


def test_container_states():
    from caliban.docker.run import container_status

    assert container_status("exited", 0) == states.SUCCEEDED
    assert container_status("exited", 2) == states.FAILED
    assert container_status("running") == states.RUNNING
    assert container_status("removing") is None


def test_unknown_backend_is_a_usage_error():
    with pytest.raises(UsageError, match="'gke' is not one of: vertex, ml_v1"):
        backends.get("gke")
