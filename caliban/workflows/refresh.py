"""Reaching the jobs a history row points at (cloud APIs, the local engine); refreshing and stopping them.

`status`, `stop` and `resubmit` go through `Remotes`, which opens at most
one client per (backend, project, region, endpoint, key) and one docker-py
client, lazily, so a `caliban status` over finished jobs touches no network.

Options given on the command line win; otherwise each job uses what the
store recorded when it was submitted (project, region, api endpoint,
backend), then the environment (`caliban.options.Environment`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from caliban import errors
from caliban.errors import CalibanError
from caliban.history import Job, states
from caliban.options import RecordedJobs


@dataclasses.dataclass(frozen=True)
class Target:
    """Where one recorded cloud job lives, after applying the options."""

    backend: str
    project: str | None
    region: str | None
    api_endpoint: str | None
    cloud_key: str | None


class Remotes:
    def __init__(self, options: RecordedJobs | None = None, warn=None):
        self.options = options or RecordedJobs()
        self._clients: dict[Target, Any] = {}
        self._docker: Any = None
        self._docker_error: str | None = None
        self._warn = warn or errors.warn
        self._warned: set[str] = set()

    def warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self._warn(message)

    # -- cloud ----------------------------------------------------------------

    def target(self, job: Job) -> Target:
        o, env = self.options, self.options.environment
        return Target(
            backend=o.backend or job.backend,
            project=o.project_id or job.project or env.project_id,
            region=o.region or job.region or env.region,
            api_endpoint=o.api_endpoint or job.api_endpoint or env.api_endpoint,
            cloud_key=o.cloud_key or job.cloud_key or env.cloud_key,
        )

    def cloud(self, job: Job):
        return self.adapter(self.target(job))

    def adapter(self, target: Target):
        """The `caliban.cloud.client.CloudClient` for a target, opened once."""
        client = self._clients.get(target)
        if client is None:
            try:
                client = _open_client(target)
            except CalibanError as exc:
                client = exc  # don't ask for credentials again for every job
            self._clients[target] = client
        if isinstance(client, CalibanError):
            raise client
        return client

    def cloud_status(self, job: Job) -> tuple[str | None, str | None]:
        """(store status, error message) read from the API with one GET; status None = unknown state."""
        client = self.cloud(job)
        return _status_of(client.backend, _answered(f"get {job.remote_id}", client.get, job.remote_id))

    def sweep_statuses(self, target: Target, run_token: str) -> dict[str, tuple[str | None, str | None]]:
        """Remote id -> (status, error) of every job of one sweep, from filtered list calls (one per page)."""
        from caliban.sweep.jobs import RUN_LABEL

        client = self.adapter(target)
        listed = _answered(f"list {RUN_LABEL}={run_token}", client.list,
                           f'labels.{RUN_LABEL}="{run_token}"', LIST_PAGE_SIZE)
        return {client.backend.remote_id(resource): _status_of(client.backend, resource) for resource in listed}

    def cancel_cloud(self, job: Job) -> None:
        _answered(f"cancel {job.remote_id}", self.cloud(job).cancel, job.remote_id)

    # -- local ----------------------------------------------------------------

    def docker(self):
        """A docker-py client, or None (with one warning) when no engine is reachable."""
        if self._docker is None and self._docker_error is None:
            from caliban.docker.engine import connect

            try:
                self._docker = connect()
            except CalibanError as exc:  # engine down, socket missing, ...
                self._docker_error = exc.message
                self.warn_once(f"{exc.message}; local jobs keep their recorded status")
        return self._docker

    def _container(self, job: Job):
        client = self.docker()
        if client is None or not job.remote_id:
            return None
        import docker.errors

        try:
            return client.containers.get(job.remote_id)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise CalibanError(f"Docker engine: {exc.explanation or exc}") from exc

    def local_status(self, job: Job) -> tuple[str | None, int | None]:
        """(store status, exit code) of the job's container; (None, None) when it is gone."""
        container = self._container(job)
        if container is None:
            return None, None
        state = container.attrs.get("State", {})
        exit_code = state.get("ExitCode") if state.get("Status") in ("exited", "dead") else None
        from caliban.docker.run import container_status

        return container_status(state.get("Status"), exit_code), exit_code

    def stop_local(self, job: Job) -> bool:
        """Stops the job's containers (every replica of a multi-node job; SIGTERM, then SIGKILL
        after the grace period); False when they are already gone."""
        from caliban.docker.run import JOB_LABEL, STOP_GRACE_SECONDS

        client = self.docker()
        if client is None or not job.remote_id:
            return False
        import docker.errors

        containers = [self._container(job)]
        if job.caliban_key:
            try:
                containers += client.containers.list(filters={"label": f"{JOB_LABEL}={job.caliban_key}"})
            except docker.errors.APIError as exc:
                raise CalibanError(f"Docker engine: {exc.explanation or exc}") from exc
        stopped = False
        for container in {c.id: c for c in containers if c is not None}.values():
            try:
                container.stop(timeout=STOP_GRACE_SECONDS)
                stopped = True
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError as exc:
                raise CalibanError(f"Docker engine: {exc.explanation or exc}") from exc
        return stopped


REFRESH_WORKERS = 8
# Jobs per list page when a sweep is read by its label: one request reads this many jobs.
LIST_PAGE_SIZE = 500


def _status_of(backend, resource: dict) -> tuple[str | None, str | None]:
    error = resource.get("error")
    if isinstance(error, dict):
        error = error.get("message") or str(error)
    error = error or resource.get("errorMessage") or None
    return backend.status_of(resource), error


def _read_sweeps(remotes: Remotes, jobs: list[Job], readings: dict[int, tuple]) -> None:
    """Reads the jobs of each sweep with filtered list calls: O(pages), not O(jobs).

    Every job carries its sweep's run token as a label (`caliban.sweep.jobs.RUN_LABEL`);
    jobs the lists did not return (older jobs without the label) are left for single GETs.
    """
    from caliban.sweep.jobs import run_token_of

    sweeps: dict[tuple, list[Job]] = {}
    for job in jobs:
        token = run_token_of(job.caliban_key)
        if token:
            sweeps.setdefault((remotes.target(job), token), []).append(job)
    for (target, token), members in sweeps.items():
        if len(members) < 2:
            continue  # one GET is as cheap as one list
        try:
            statuses = remotes.sweep_statuses(target, token)
        except CalibanError:
            continue  # the single GETs below report what is wrong
        for job in members:
            if job.remote_id in statuses:
                status, error = statuses[job.remote_id]
                readings[job.id] = (status, None, error)


# A local job is RUNNING while its sweep's process follows its container; the
# process removes the container, then records the end, holding its group's lock
# throughout. A container that is gone while no process holds the group was
# removed behind Caliban's back (docker rm, prune, an engine reset), or the
# sweep died in between: the job will never end by itself.
LOST_LOCAL_JOB = (
    "its container is gone and no caliban process is running its sweep "
    "(removed outside Caliban, or the engine was reset); its outcome is unknown"
)


def _lost(store, remotes: Remotes, job: Job, busy: dict[str, bool]) -> bool:
    """Whether a local job whose container is gone is lost (see LOST_LOCAL_JOB).

    `busy` remembers, per group, whether some process holds its lock. The
    row is read again after that check: a sweep that recorded the job's end
    and exited since `job` was read has not lost it.
    """
    if remotes.docker() is None:  # no engine answered: "gone" is not known
        return False
    name = job.group_name
    if name not in busy:
        group = store.group(name) if name else None
        busy[name] = group is None or store.group_busy(group)
    if busy[name]:
        return False
    current = store.job(job.id)
    return current is not None and current.status == job.status


def refresh(store, remotes: Remotes, jobs: list[Job]) -> list[Job]:
    """Reads the live status of every non-terminal job, records changes, returns fresh rows.

    PENDING rows are left alone (they have no remote id yet; `resubmit`
    reconciles them). Failures to reach a backend are warnings: the recorded
    status is kept and shown. Cloud jobs are read a few at a time in worker
    threads (the client keeps one HTTP session per thread); the store is
    written from this thread only.
    """
    live = [
        job for job in jobs
        if not job.terminal and job.status != states.PENDING and job.remote_id
    ]
    readings: dict[int, tuple] = {}

    def read(job: Job):
        try:
            if job.is_cloud:
                status, error = remotes.cloud_status(job)
                return status, None, error
            status, exit_code = remotes.local_status(job)
            return status, exit_code, None
        except CalibanError as exc:
            return None, None, exc

    cloud = [j for j in live if j.is_cloud]
    # Open each client (credentials, discovery) on this thread, before fanning out.
    openable = []
    for job in cloud:
        try:
            remotes.cloud(job)
            openable.append(job)
        except CalibanError as exc:
            readings[job.id] = (None, None, exc)
    _read_sweeps(remotes, openable, readings)
    openable = [job for job in openable if job.id not in readings]
    if len(openable) > 1:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(max_workers=REFRESH_WORKERS) as pool:
            for job, reading in zip(openable, pool.map(read, openable)):
                readings[job.id] = reading
    else:
        for job in openable:
            readings[job.id] = read(job)
    busy_groups: dict[str, bool] = {}
    for job in live:
        if not job.is_cloud:
            readings[job.id] = read(job)
            if readings[job.id] == (None, None, None) and _lost(store, remotes, job, busy_groups):
                readings[job.id] = (states.FAILED, None, LOST_LOCAL_JOB)

    fresh = []
    for job in jobs:
        if job.id in readings:
            status, exit_code, error = readings[job.id]
            if isinstance(error, CalibanError):
                remotes.warn_once(f"cannot refresh {job.backend} jobs: {error.message}")
            elif status is not None and status != job.status:
                store.set_status(job.id, status, exit_code=exit_code, error=error)
                job = store.job(job.id)
        fresh.append(job)
    return fresh


def _open_client(target: Target):
    from caliban.cloud import auth as cloud_auth
    from caliban.cloud.client import CloudClient
    from caliban.sweep.machine_tables import DEFAULT_REGION

    credentials, key_project = cloud_auth.load_credentials(target.cloud_key)
    project = target.project or key_project
    if not project:
        raise CalibanError(
            "no project id recorded for this job and none given; pass --project_id or set $PROJECT_ID"
        )
    return CloudClient(target.backend, project, target.region or DEFAULT_REGION, credentials,
                       api_endpoint=target.api_endpoint)


def _answered(what: str, call, *args):
    """A call whose lost answer is a CalibanError: the job's state stays as recorded."""
    from caliban.cloud.client import TransportError

    try:
        return call(*args)
    except TransportError as exc:
        raise CalibanError(f"{what}: no answer from the API ({exc})") from exc
