"""Job statuses of the history store, and how each backend's states map onto them.

Caliban keeps one small set of statuses for every backend, so `caliban
status`, `stop` and `resubmit` can reason about a sweep without knowing
where each job ran.

    Status     Meaning                                          Terminal
    ---------  -----------------------------------------------  --------
    PENDING    row written, create request maybe sent (WAL)     no
    SUBMITTED  the backend accepted the job; not running yet    no
    RUNNING    the job is running                               no
    STOPPING   a cancel was requested; the backend is on it     no
    SUCCEEDED  finished with success                            yes
    FAILED     create failed, or the job failed                 yes
    STOPPED    cancelled (by `caliban stop` or elsewhere)       yes

PENDING is the write-ahead state: a submitter writes the row before it
sends the create request, and moves it to SUBMITTED (with the remote id) or
FAILED after the answer. A PENDING row left behind by a crash or Ctrl-C
means "maybe sent": `resubmit` looks the job up by its `caliban_key` label
before sending it again.

Vertex AI customJobs (`JobState`), aiplatform.googleapis.com v1:

    JOB_STATE_UNSPECIFIED          SUBMITTED
    JOB_STATE_QUEUED               SUBMITTED
    JOB_STATE_PENDING              SUBMITTED
    JOB_STATE_RUNNING              RUNNING
    JOB_STATE_UPDATING             RUNNING
    JOB_STATE_PAUSED               RUNNING
    JOB_STATE_CANCELLING           STOPPING
    JOB_STATE_SUCCEEDED            SUCCEEDED
    JOB_STATE_PARTIALLY_SUCCEEDED  FAILED   (some work failed: treat as failed)
    JOB_STATE_FAILED               FAILED
    JOB_STATE_EXPIRED              FAILED
    JOB_STATE_CANCELLED            STOPPED

AI Platform Training (`Job.State`), ml.googleapis.com v1:

    STATE_UNSPECIFIED  SUBMITTED
    QUEUED             SUBMITTED
    PREPARING          SUBMITTED
    RUNNING            RUNNING
    CANCELLING         STOPPING
    SUCCEEDED          SUCCEEDED
    FAILED             FAILED
    CANCELLED          STOPPED

Docker containers of local runs (`State.Status`):

    created             SUBMITTED
    running, restarting RUNNING
    paused              RUNNING
    removing            (keep the recorded status)
    exited              SUCCEEDED if the exit code is 0, else FAILED
    dead                FAILED

A state missing from these tables (a newer API) maps to None: the caller
keeps the recorded status rather than guessing.
"""

PENDING = "PENDING"
SUBMITTED = "SUBMITTED"
RUNNING = "RUNNING"
STOPPING = "STOPPING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
STOPPED = "STOPPED"

ALL_STATUSES = (PENDING, SUBMITTED, RUNNING, STOPPING, SUCCEEDED, FAILED, STOPPED)
TERMINAL = frozenset({SUCCEEDED, FAILED, STOPPED})
# What `caliban stop` cancels.
STOPPABLE = frozenset({SUBMITTED, RUNNING})

BACKENDS = ("vertex", "ml_v1", "local")
CLOUD_BACKENDS = ("vertex", "ml_v1")

VERTEX_STATES = {
    "JOB_STATE_UNSPECIFIED": SUBMITTED,
    "JOB_STATE_QUEUED": SUBMITTED,
    "JOB_STATE_PENDING": SUBMITTED,
    "JOB_STATE_RUNNING": RUNNING,
    "JOB_STATE_UPDATING": RUNNING,
    "JOB_STATE_PAUSED": RUNNING,
    "JOB_STATE_CANCELLING": STOPPING,
    "JOB_STATE_SUCCEEDED": SUCCEEDED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": FAILED,
    "JOB_STATE_FAILED": FAILED,
    "JOB_STATE_EXPIRED": FAILED,
    "JOB_STATE_CANCELLED": STOPPED,
}

ML_V1_STATES = {
    "STATE_UNSPECIFIED": SUBMITTED,
    "QUEUED": SUBMITTED,
    "PREPARING": SUBMITTED,
    "RUNNING": RUNNING,
    "CANCELLING": STOPPING,
    "SUCCEEDED": SUCCEEDED,
    "FAILED": FAILED,
    "CANCELLED": STOPPED,
}

DOCKER_STATES = {
    "created": SUBMITTED,
    "running": RUNNING,
    "restarting": RUNNING,
    "paused": RUNNING,
    "dead": FAILED,
}

_CLOUD_TABLES = {"vertex": VERTEX_STATES, "ml_v1": ML_V1_STATES}


def cloud_status(backend: str, state: str | None) -> str | None:
    """The store status for a cloud API job state, or None when unknown."""
    if not state:
        return None
    return _CLOUD_TABLES[backend].get(state)


def docker_status(state: str | None, exit_code: int | None = None) -> str | None:
    """The store status for a container state (docker-py `attrs['State']['Status']`)."""
    if state == "exited":
        return SUCCEEDED if exit_code == 0 else FAILED
    return DOCKER_STATES.get(state or "")
