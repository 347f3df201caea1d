"""The three cloud calls the history needs, over `caliban.cloud_client`.

`get(remote_id)` -> the job resource (with its "state"), `cancel(remote_id)`,
and `find_by_label(key, value)` -> the remote id of the job carrying that
label, for both backends. Remote ids are what the store records: the Vertex
resource name (`projects/.../locations/.../customJobs/N`) or the ml v1
`jobId`.
"""

from __future__ import annotations

from caliban.errors import CalibanError

DEFAULT_REGION = "us-central1"


def remote_id_of(backend: str, job: dict) -> str:
    """The id the store records for a job resource returned by the API."""
    if backend == "ml_v1":
        return job["jobId"]
    return job["name"]


class HistoryCloud:
    def __init__(self, client):
        self.client = client

    def _call(self, what: str, fn, *args):
        from caliban import cloud_client

        try:
            return fn(*args)
        except cloud_client.TransportError as exc:
            raise CalibanError(f"{what}: no answer from the API ({exc})") from exc

    def get(self, remote_id: str) -> dict:
        return self._call(f"get {remote_id}", self.client.get, remote_id)

    def cancel(self, remote_id: str) -> None:
        self._call(f"cancel {remote_id}", self.client.cancel, remote_id)

    def find_by_label(self, key: str, value: str) -> str | None:
        found = self._call(f"list jobs by {key}={value}", self.client.list_by_label, key, value)
        if not found:
            return None
        if len(found) > 1:
            # Never expected (the key is unique per job); adopt the oldest, loudly.
            found.sort(key=lambda j: j.get("createTime", ""))
        return remote_id_of(self.client.backend, found[0])


def open_client(target) -> HistoryCloud:
    from caliban import cloud_auth, cloud_client

    credentials, key_project = cloud_auth.load_credentials(target.cloud_key)
    project = target.project or key_project
    if not project:
        raise CalibanError(
            "no project id recorded for this job and none given; pass --project_id or set $PROJECT_ID"
        )
    client = cloud_client.CloudClient(
        target.backend,
        project,
        target.region or DEFAULT_REGION,
        credentials,
        api_endpoint=target.api_endpoint,
    )
    return HistoryCloud(client)
