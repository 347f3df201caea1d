"""The local job history: every group, image, experiment and job Caliban starts.

An SQLite file (default `~/.caliban/caliban.db`, moved with
`$CALIBAN_DB_URL`), written with plain `sqlite3`:

    experiment_group  1 -- n  experiment  n -- 1  image
                              experiment  1 -- n  job

A group is what `--xgroup NAME` names (auto-named `<user>-<UTC time>` when
omitted). An experiment is one set of arguments of a sweep; a job is one
attempt to run it (a resubmit adds a job to the same experiment), on one
backend (`vertex`, `ml_v1` or `local`).

Several caliban processes may write the same file at once (two sweeps in two
terminals): the file is in WAL mode, every write is one short
`BEGIN IMMEDIATE` transaction, and a busy timeout makes writers wait for each
other instead of failing.

Write-ahead: a sweep is written whole (`add_jobs`, every job PENDING) before
the first create request; `mark_sending` marks a row right before its
request goes out ("maybe sent"), `mark_submitted` / `mark_failed` /
`mark_not_sent` record the answer. A PENDING row left behind by a crash or
Ctrl-C is either "never sent" or "maybe sent"; the job's `caliban_key`
label lets `resubmit` find a maybe-sent job on the backend before sending it
again. A sweep holds a shared lock on its group while it sends (released
when the store closes or the process dies); `resubmit` takes it exclusively.
See `caliban.history.states` for the statuses.

The schema is versioned with `PRAGMA user_version` and an ordered list of
migrations, applied in one transaction when a store is opened.

An experiment is one set of arguments within a group, for one build recipe:
sending the same arguments into the same `--xgroup` again (a retry after a
fix, a second `caliban run`) adds a job to the existing experiment, as
Caliban 0.4.2 did, so `status` counts it once. The recipe (target, project
directory, extras, dirs, GPU or not, a prebuilt `--image_tag`/`--image_id`)
is part of the key, as 0.4.2's container spec was: the same arguments given
to another module are another experiment. The built image's digest is not:
it changes with every code edit, and rerunning after an edit is the usual
reason to send the same arguments again. The experiment then points at the
newest image, the one its latest job ran.

Failures the user can act on are one `CalibanError` line naming the file:
a full disk (SQLITE_FULL, or an I/O error on a disk with no room), a
read-only file or directory, a corrupted or non-SQLite file, a file written
by a newer Caliban. A failed write is rolled back whole. `check_store` runs
these checks up front, so `caliban cloud` / `run` fail before building or
pushing anything.

The history is private: its directory is created 0700, the file (and the
-wal/-shm files SQLite makes with the file's mode, and the group lock files)
0600; an existing file of the user's that others can read is tightened
when opened. Secrets in `--docker_run_args` (`-e NAME=value` where NAME
looks like a token, key, password, ...) are stored as `-e NAME`: docker
then takes the value from the environment of whoever reruns the job, so
`caliban resubmit` of a local job works when NAME is exported there. The
same rule holds for `--env NAME=value`: in a local run's build arguments and
in a cloud job's recorded request body (its container `env`), such a value
is stored as null and `resubmit` reads NAME from its environment again.

The package is the store only: this module and `states` (the statuses).
Reaching the jobs a row points at (cloud APIs, the local engine) and the
workflows that write rows live in `caliban.workflows`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import getpass
import json
import errno
import os
import re
import shlex
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from caliban.errors import CalibanError, UsageError
from caliban.history import states
from caliban.history.states import (
    FAILED,
    PENDING,
    RUNNING,
    STOPPED,
    SUBMITTED,
    SUCCEEDED,
    TERMINAL,
)

DB_URL_ENV = "CALIBAN_DB_URL"
DEFAULT_DB_PATH = Path("~/.caliban/caliban.db")
BUSY_TIMEOUT_S = 30.0
# `check_store` wants this much room next to the file: a sweep of a few
# hundred jobs writes a few hundred KiB (each job row carries its request
# body). A bigger sweep on a nearly full disk still fails cleanly at write
# time, before anything is sent.
MIN_FREE_BYTES = 1 << 20

# Ordered: migration i (1-based) takes the schema from version i-1 to i.
# Never edit a released entry; append a new one.
MIGRATIONS: tuple[str, ...] = (
    # 1: first release.
    """
    CREATE TABLE experiment_group (
        id       INTEGER PRIMARY KEY,
        name     TEXT NOT NULL UNIQUE,
        user     TEXT NOT NULL,
        created  REAL NOT NULL
    );
    CREATE TABLE image (
        id          INTEGER PRIMARY KEY,
        docker_id   TEXT,
        uri         TEXT,
        digest      TEXT,
        build_args  TEXT NOT NULL DEFAULT '{}',
        created     REAL NOT NULL
    );
    CREATE TABLE experiment (
        id        INTEGER PRIMARY KEY,
        group_id  INTEGER NOT NULL REFERENCES experiment_group(id),
        image_id  INTEGER REFERENCES image(id),
        args      TEXT NOT NULL DEFAULT '[]',
        flags     TEXT NOT NULL DEFAULT '{}',
        created   REAL NOT NULL
    );
    CREATE TABLE job (
        id             INTEGER PRIMARY KEY,
        experiment_id  INTEGER NOT NULL REFERENCES experiment(id),
        backend        TEXT NOT NULL CHECK (backend IN ('vertex', 'ml_v1', 'local')),
        status         TEXT NOT NULL,
        user           TEXT NOT NULL,
        name           TEXT,
        remote_id      TEXT,
        caliban_key    TEXT,
        project        TEXT,
        region         TEXT,
        api_endpoint   TEXT,
        request        TEXT,
        error          TEXT,
        exit_code      INTEGER,
        created        REAL NOT NULL,
        updated        REAL NOT NULL,
        submitted      REAL,
        finished       REAL
    );
    CREATE INDEX job_experiment ON job(experiment_id);
    CREATE INDEX job_status ON job(status);
    CREATE UNIQUE INDEX job_caliban_key ON job(caliban_key) WHERE caliban_key IS NOT NULL;
    CREATE INDEX experiment_group_id ON experiment(group_id);
    """,
    # 2: when the create request of a PENDING job was (about to be) sent, so
    # "maybe sent" (look it up by label) and "never sent" can be told apart.
    """
    ALTER TABLE job ADD COLUMN sent REAL;
    UPDATE job SET sent = updated WHERE status = 'PENDING';
    """,
    # 3: the path of the key file a cloud job was submitted with (never its
    # contents), so a plain `caliban status` / `stop` can reach the job again.
    """
    ALTER TABLE job ADD COLUMN cloud_key TEXT;
    """,
    # 4: finding a group's experiment by its arguments, to add a job to it
    # instead of recording the same experiment twice.
    """
    CREATE INDEX experiment_group_args ON experiment(group_id, args);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def current_user(fallback: str = "unknown") -> str:
    """The login name; `fallback` when there is none (no passwd entry or $USER in containers)."""
    try:
        return getpass.getuser()
    except Exception:
        return os.environ.get("USER") or fallback


def db_path(url: str | None = None) -> Path:
    """Where the store lives: `url`, else $CALIBAN_DB_URL, else ~/.caliban/caliban.db.

    Accepts a plain path or an SQLAlchemy-style URL, as the original Caliban
    did: `sqlite:///relative/path` and `sqlite:////absolute/path`.
    """
    if url is None:
        url = os.environ.get(DB_URL_ENV) or ""
    url = url.strip()
    if not url:
        return DEFAULT_DB_PATH.expanduser()
    if "://" in url:
        scheme, _, rest = url.partition("://")
        if scheme != "sqlite" or not rest.startswith("/") or rest == "/":
            raise UsageError(
                f"{DB_URL_ENV}={url!r}: only sqlite:///PATH URLs or a file path are supported"
            )
        url = rest[1:]
        if url == ":memory:":
            raise UsageError(f"{DB_URL_ENV}: an in-memory database keeps no history; give a file")
    return Path(url).expanduser()


def default_group_name(user: str | None = None, now: float | None = None) -> str:
    stamp = datetime.datetime.fromtimestamp(
        time.time() if now is None else now, datetime.timezone.utc
    ).strftime("%Y%m%d-%H%M%S")
    return f"{user or current_user()}-{stamp}"


def migrate(conn: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Bring the schema up to `len(migrations)`; returns the version now in the file.

    Runs inside one BEGIN IMMEDIATE transaction, so two processes opening a
    fresh file at once apply each migration exactly once.
    """
    target = len(migrations)
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version == target:
        return version
    with _transaction(conn):
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > target:
            raise CalibanError(
                f"the job history {_db_name(conn)} was written by a newer Caliban (schema "
                f"version {version}; this one knows up to {target}): upgrade caliban, or set "
                f"{DB_URL_ENV} to another file"
            )
        for number in range(version + 1, target + 1):
            for statement in _statements(migrations[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    return target


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection):
    """One write transaction that takes the write lock up front; rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    """Undo what is left of a failed transaction.

    SQLite has often rolled it back already (a COMMIT that fails with
    SQLITE_FULL or an I/O error does): a second ROLLBACK would raise
    "cannot rollback - no transaction is active" over the real error.
    """
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _statements(script: str) -> Iterable[str]:
    # executescript() would COMMIT our transaction; split on complete statements instead.
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buffer!r}")


def _db_name(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return row[2] if row else "?"


def _now() -> float:
    return time.time()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# -- failures the user can act on ---------------------------------------------

# SQLite primary result codes, https://www.sqlite.org/rescode.html (an
# extended code carries the primary one in its low byte).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR = 5, 6, 8, 10
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 13, 14, 26
# Python < 3.11 has no `sqlite_errorcode`: the messages SQLite gives each code.
_CODE_OF_MESSAGE = (
    ("disk is full", _SQLITE_FULL),
    ("disk i/o error", _SQLITE_IOERR),
    ("readonly database", _SQLITE_READONLY),
    ("not a database", _SQLITE_NOTADB),
    ("malformed", _SQLITE_CORRUPT),
    ("unable to open", _SQLITE_CANTOPEN),
    ("is locked", _SQLITE_BUSY),
)


def _sqlite_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF
    text = str(exc).lower()
    return next((c for needle, c in _CODE_OF_MESSAGE if needle in text), None)


def _free_bytes(directory: Path) -> int | None:
    """Room left for this user next to the file (root may also use the reserved blocks)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


_MAKE_ROOM = (
    f"free some space there, or move the history to another disk with "
    f"{DB_URL_ENV}=/other/disk/caliban.db"
)


def _explain(path: Path, exc: BaseException) -> str:
    """What went wrong with the history file, and what to do about it, in one line."""
    if isinstance(exc, OSError):
        code = {
            errno.ENOSPC: _SQLITE_FULL,
            errno.EDQUOT: _SQLITE_FULL,
            errno.EROFS: _SQLITE_READONLY,
            errno.EACCES: _SQLITE_READONLY,
            errno.EPERM: _SQLITE_READONLY,
        }.get(exc.errno, _SQLITE_IOERR)
        cause = exc.strerror or str(exc)
    else:
        code, cause = _sqlite_code(exc), str(exc)
    if code == _SQLITE_IOERR:
        free = _free_bytes(path.parent)
        if free is not None and free < MIN_FREE_BYTES:
            code = _SQLITE_FULL
    if code == _SQLITE_FULL:
        return f"{cause}: the disk is full; {_MAKE_ROOM}"
    if code in (_SQLITE_READONLY, _SQLITE_CANTOPEN):
        return (
            f"{cause}: the file or its directory {path.parent} is not writable (read-only "
            f"file system or permissions); fix that, or set {DB_URL_ENV} to a writable file"
        )
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return (
            f"{cause}: the file is damaged or not a Caliban history; move it aside "
            f"(mv {path} {path}.broken) and caliban starts a new one, or set {DB_URL_ENV} "
            "to another file"
        )
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return (
            f"{cause}: another process held the write lock for over {BUSY_TIMEOUT_S:.0f}s; "
            "let it finish and try again"
        )
    return f"{cause}; check the disk, or set {DB_URL_ENV} to another file"


def _failure(path: Path, doing: str, exc: BaseException) -> CalibanError:
    return CalibanError(f"cannot {doing} the job history {path}: {_explain(path, exc)}")


# -- privacy -------------------------------------------------------------------

# The store's directory and files: only their owner may read them (the
# history holds request bodies, key file paths and run arguments).
DIR_MODE, FILE_MODE = 0o700, 0o600


def _tighten(path: Path, mode: int) -> None:
    """Takes group/other access away from one of the user's own files or directories."""
    try:
        st = os.stat(path)
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077 | (mode & 0o700))
    except OSError:  # gone, or a read-only file system: nothing to do
        pass


def _private_dir(directory: Path) -> None:
    """Creates `directory` 0700 (its parents as `mkdir -p` would)."""
    if directory.is_dir():
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=DIR_MODE)


def _private_file(path: Path) -> None:
    """Creates `path` 0600 before SQLite does (it would make it 0644), or tightens it."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        _tighten(path, FILE_MODE)


# -- secrets -------------------------------------------------------------------

# `-e NAME=value` where NAME says it is a secret, or the value has the shape
# of a well-known token (GitHub, Hugging Face, OpenAI-style, Slack, GitLab,
# AWS access key ids, Google API keys and OAuth access tokens) or a URL
# with a password in it.
_SECRET_NAME = re.compile(
    r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|AUTH|PRIVATE|COOKIE", re.I
)
_SECRET_VALUE = re.compile(
    r"^(?:gh[pousr]_|github_pat_|hf_|sk-|xox[abpr]-|glpat-|AKIA|ASIA|AIza|ya29\.)"
    r"|://[^/@\s:]*:[^/@\s]+@"
)
_ENV_FLAGS = ("-e", "--env")


def _redact_assignment(item: str) -> str:
    """`NAME=value` -> `NAME` when it holds a secret: docker then reads NAME from the environment."""
    name, sep, value = item.partition("=")
    if sep and (_SECRET_NAME.search(name) or _SECRET_VALUE.search(value)):
        return name
    return item


def _redact_docker_run_args(value: str | Sequence[str]) -> str | list[str]:
    """--docker_run_args with secret `-e`/`--env` values dropped (see the module docstring)."""
    if isinstance(value, str):
        try:
            tokens = shlex.split(value)
        except ValueError:  # unbalanced quotes: still find the assignments
            tokens = value.split()
    else:
        tokens = [str(t) for t in value]
    out: list[str] = []
    env_value_next = False
    for token in tokens:
        if env_value_next:
            token, env_value_next = _redact_assignment(token), False
        elif token in _ENV_FLAGS:
            env_value_next = True
        elif token.startswith("--env="):
            token = "--env=" + _redact_assignment(token[len("--env="):])
        elif token.startswith("-e") and not token.startswith("--"):
            token = "-e" + _redact_assignment(token[2:])
        out.append(token)
    if out == tokens and isinstance(value, str):
        return value
    return shlex.join(out) if isinstance(value, str) else out


def _stored_build_args(build_args: dict | None) -> dict:
    """The store's policy for build arguments: never a secret on disk."""
    stored = dict(build_args or {})
    if stored.get("docker_run_args"):
        stored["docker_run_args"] = _redact_docker_run_args(stored["docker_run_args"])
    if stored.get("env"):  # --env NAME=VALUE pairs: a secret keeps its name, its value is read again at rerun
        stored["env"] = [[name, None if _redact_assignment(f"{name}={value}") == name else value]
                         for name, value in stored["env"]]
    return stored


def _env_lists(request: dict):
    """Every `env` list of {"name", "value"} objects in a request body: the
    container environment in the shape Vertex AI (and Kubernetes) use, wherever
    the body nests it. The store knows the shape, not the API."""
    stack = [request]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "env" and isinstance(value, list):
                    yield [var for var in value if isinstance(var, dict) and isinstance(var.get("name"), str)]
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def _stored_request(request: dict | None) -> dict | None:
    """The store's policy for request bodies: an --env value that looks like a
    secret (the rule of `_redact_assignment`) is stored as null; `resubmit`
    reads it from the environment again (`restore_secret_env`)."""
    if request is None:
        return None
    secret = [
        var for env in _env_lists(request) for var in env
        if isinstance(var.get("value"), str) and _redact_assignment(f"{var['name']}={var['value']}") == var["name"]
    ]
    if not secret:
        return request
    stored = json.loads(json.dumps(request))
    for env in _env_lists(stored):
        for var in env:
            if isinstance(var.get("value"), str) and _redact_assignment(f"{var['name']}={var['value']}") == var["name"]:
                var["value"] = None
    return stored


def restore_secret_env(request: dict, environ: Mapping[str, str]) -> tuple[dict, list[str]]:
    """A stored request body with the secret --env values the store dropped
    filled in from `environ`: (the body, the names `environ` lacks)."""
    if not any(var.get("value", "") is None for env in _env_lists(request) for var in env):
        return request, []
    filled = json.loads(json.dumps(request))
    missing = []
    for env in _env_lists(filled):
        for var in env:
            if "value" in var and var["value"] is None:
                if var["name"] in environ:
                    var["value"] = environ[var["name"]]
                else:
                    missing.append(var["name"])
    return filled, missing


# What decides whether two images run the same code the same way: not where
# the image was pushed, nor how the container was told to run (docker run
# flags, --env, --output_dir), nor cache use.
_NOT_RECIPE = frozenset({"docker_run_args", "env", "output_dir", "image_repo", "no_cache"})


def _recipe(build_args: dict | None) -> str:
    """The part of an image's build arguments that makes an experiment (see the module docstring)."""
    return _dumps(
        {k: v for k, v in (build_args or {}).items() if k not in _NOT_RECIPE and v not in (None, "", [])}
    )


@dataclasses.dataclass(frozen=True)
class Group:
    id: int
    name: str
    user: str
    created: float


@dataclasses.dataclass(frozen=True)
class Image:
    id: int
    docker_id: str | None
    uri: str | None
    digest: str | None
    build_args: dict
    created: float


@dataclasses.dataclass(frozen=True)
class Experiment:
    id: int
    group_id: int
    image_id: int | None
    args: list
    flags: dict
    created: float


@dataclasses.dataclass(frozen=True)
class Job:
    id: int
    experiment_id: int
    group_name: str
    backend: str
    status: str
    user: str
    name: str | None
    remote_id: str | None
    caliban_key: str | None
    project: str | None
    region: str | None
    api_endpoint: str | None
    request: dict | None
    error: str | None
    exit_code: int | None
    created: float
    updated: float
    submitted: float | None
    finished: float | None
    sent: float | None = None
    cloud_key: str | None = None

    @property
    def maybe_sent(self) -> bool:
        """PENDING, and its create request may have reached the backend."""
        return self.status == PENDING and self.sent is not None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_cloud(self) -> bool:
        return self.backend != states.LOCAL

    def as_json(self) -> dict:
        data = dataclasses.asdict(self)
        for key in ("created", "updated", "submitted", "finished", "sent"):
            data[key] = iso_time(data[key])
        return data


@dataclasses.dataclass(frozen=True)
class NewJob:
    """One job of a sweep for `Store.add_jobs`."""

    args: Sequence[str]
    flags: dict | None = None
    request: dict | None = None
    caliban_key: str | None = None
    name: str | None = None


def iso_time(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return (
        datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


_INSERT_GROUP = (
    "INSERT INTO experiment_group (name, user, created) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING"
)
_INSERT_EXPERIMENT = "INSERT INTO experiment (group_id, image_id, args, flags, created) VALUES (?, ?, ?, ?, ?)"
# A new job is always PENDING: see `Store.add_job`.
_INSERT_JOB = (
    "INSERT INTO job (experiment_id, backend, status, user, name, caliban_key, project,"
    " region, api_endpoint, cloud_key, request, created, updated)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_JOB_SELECT = """
    SELECT job.*, experiment_group.name AS group_name
    FROM job
    JOIN experiment ON experiment.id = job.experiment_id
    JOIN experiment_group ON experiment_group.id = experiment.group_id
"""


class _Probed(Exception):
    """Ends `Store.verify`'s write probe: rolled back, nothing kept."""


def _job(row: sqlite3.Row) -> Job:
    data = dict(row)
    data["request"] = json.loads(data["request"]) if data["request"] else None
    return Job(**{f.name: data[f.name] for f in dataclasses.fields(Job)})


class Store:
    """One connection to the history file. Cheap to open; close it when done."""

    def __init__(self, path: Path, migrations: Sequence[str] = MIGRATIONS):
        self.path = Path(path)
        self._locks: list = []
        self._exclusive_groups: set[int] = set()  # groups this store holds exclusively
        self._depth = 0  # nesting of `transaction()` blocks
        # Rows this connection created, so a failed write can take back a
        # group (or experiment) it left empty; see `_discard_empty`.
        self._new_groups: set[int] = set()
        self._new_experiments: set[int] = set()
        try:
            _private_dir(self.path.parent)
            if self.path.parent == DEFAULT_DB_PATH.expanduser().parent:
                _tighten(self.path.parent, DIR_MODE)  # Caliban's own directory
            _private_file(self.path)
            for suffix in ("-wal", "-shm"):  # left 0644 by an older Caliban
                _tighten(Path(f"{self.path}{suffix}"), FILE_MODE)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a
            # writer takes the write lock up front instead of upgrading late
            # (a late upgrade can fail with SQLITE_BUSY without waiting).
            self._conn = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None
            )
        except (OSError, sqlite3.Error) as exc:
            raise _failure(self.path, "open", exc) from None
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise CalibanError(
                    f"the job history {self.path} cannot use WAL mode (got {mode}); "
                    f"put it on a local disk with {DB_URL_ENV}"
                )
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            migrate(self._conn, migrations)
        except sqlite3.IntegrityError:
            self._conn.close()
            raise
        except sqlite3.Error as exc:
            self._conn.close()
            raise _failure(self.path, "open", exc) from None
        except BaseException:
            self._conn.close()
            raise

    # -- plumbing ---------------------------------------------------------

    def close(self) -> None:
        for handle in self._locks:
            handle.close()  # releases the flock
        self._locks = []
        self._exclusive_groups = set()
        self._conn.close()

    def verify(self) -> None:
        """Raises one CalibanError line unless a sweep can be recorded here now.

        Catches before anything is built or pushed what would otherwise
        surface only when the first row is written: a read-only file or
        directory, a damaged file, a full disk. (Opening already refused a
        file that is not SQLite or was written by a newer Caliban.) Cheap
        enough for every submit: `quick_check` reads the file once without
        the index cross-checks of `integrity_check`.
        """
        directory = self.path.parent
        for target, mode in ((self.path, os.W_OK), (directory, os.W_OK | os.X_OK)):
            if not os.access(target, mode):
                raise CalibanError(
                    f"cannot write the job history {self.path}: {target} is read-only "
                    f"(permissions, or a read-only file system); make it writable, or set "
                    f"{DB_URL_ENV} to a writable file"
                )
        try:
            problems = [row[0] for row in self._conn.execute("PRAGMA quick_check(1)")]
        except sqlite3.Error as exc:
            raise _failure(self.path, "read", exc) from None
        if problems != ["ok"]:
            found = " ".join(str(problems[0] if problems else "no answer").split())[:300]
            raise CalibanError(
                f"the job history {self.path} is damaged ({found}); "
                f"move it aside (mv {self.path} {self.path}.broken) and caliban starts a new one, "
                f"or set {DB_URL_ENV} to another file"
            )
        try:
            # Takes the write lock and writes a row, as recording a sweep will.
            with _transaction(self._conn):
                self._conn.execute(
                    "INSERT INTO image (build_args, created) VALUES ('{}', ?)", (_now(),)
                )
                raise _Probed
        except _Probed:
            pass
        except sqlite3.Error as exc:
            raise _failure(self.path, "write", exc) from None
        free = _free_bytes(directory)
        if free is not None and free < MIN_FREE_BYTES:
            raise CalibanError(
                f"cannot write the job history {self.path}: the disk is full (only {free // 1024} "
                f"KiB free, {MIN_FREE_BYTES // 1024} KiB wanted to record a sweep); {_MAKE_ROOM}"
            )

    # -- group locks ----------------------------------------------------------
    #
    # A process submitting a sweep holds a SHARED lock on its group until it
    # closes the store (or dies: the OS releases it); `resubmit` takes an
    # EXCLUSIVE one. So resubmit never sends a PENDING row that a live sweep
    # is about to send, while two sweeps may still share a group.

    def _lock_file(self, group: Group):
        directory = self.path.parent / (self.path.name + ".locks")
        try:
            _private_dir(directory)
            _tighten(directory, DIR_MODE)
            path = directory / f"group-{group.id}.lock"
            return os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, FILE_MODE), "a+")
        except OSError as exc:
            raise _failure(self.path, "lock a group in", exc) from None

    def lock_group(self, group: Group, *, exclusive: bool) -> None:
        """Holds a lock on `group` until `close()`; CalibanError when it conflicts."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform: no protection, no failure
            return
        handle = self._lock_file(group)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            if exclusive:
                raise CalibanError(
                    f"another caliban process is still submitting to group {group.name}; "
                    "wait for it to finish (or stop it) and try again"
                ) from None
            raise CalibanError(
                f"group {group.name} is being resubmitted by another caliban process; "
                "wait for it, or pass another --xgroup"
            ) from None
        self._locks.append(handle)
        if exclusive:
            self._exclusive_groups.add(group.id)

    def group_busy(self, group: Group) -> bool:
        """True while a process is sending or running `group` (holds a lock on it).

        False under this store's own exclusive lock (`resubmit`): then no
        other process can be working on the group.
        """
        if group.id in self._exclusive_groups:
            return False
        try:
            import fcntl
        except ImportError:
            return False
        with self._lock_file(group) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self):
        """Several writes as one: all of them land, or none.

        Recording a sweep is `create_group` + `record_image` + `add_jobs`;
        inside one `transaction()` a failure (a full disk) leaves no empty group
        behind. A `lock_group` inside it is held before the rows become
        visible to `resubmit`. Writes inside join the outer transaction;
        a failure rolls back the whole of it and is one CalibanError line
        (an IntegrityError, a caller's bug, stays as it is).
        """
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _failure(self.path, "write", exc) from None
        self._depth = 1
        created = (set(self._new_groups), set(self._new_experiments))
        try:
            yield self
            self._conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(self._conn)
            self._new_groups, self._new_experiments = created  # rolled back with the rest
            if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
                raise self._write_failed(exc) from None
            raise
        finally:
            self._depth = 0

    def _write_failed(self, exc: sqlite3.Error) -> CalibanError:
        """The one-line error of a failed write, after taking back the empty rows it left."""
        failure = _failure(self.path, "write", exc)
        left = self._discard_empty()
        if left:
            return CalibanError(f"{failure.message} (could not remove the empty {left} either)")
        return failure

    def _discard_empty(self) -> str | None:
        """Deletes the groups and experiments this connection created that are still empty.

        A sweep recorded in separate writes (`create_group`, then `add_jobs`)
        that fails half-way would otherwise leave a group with nothing in
        it. Best effort: on a full disk this small delete usually fits in
        the space the failed write had claimed. Returns what it could not
        remove, if anything.
        """
        if not (self._new_groups or self._new_experiments):
            return None
        experiments, groups = sorted(self._new_experiments), sorted(self._new_groups)
        empty_groups = (
            f"SELECT id, name FROM experiment_group WHERE id IN ({','.join('?' * len(groups))})"
            " AND NOT EXISTS (SELECT 1 FROM experiment WHERE experiment.group_id = experiment_group.id)"
        )
        try:
            with _transaction(self._conn):
                self._conn.execute(
                    f"DELETE FROM experiment WHERE id IN ({','.join('?' * len(experiments))})"
                    " AND NOT EXISTS (SELECT 1 FROM job WHERE job.experiment_id = experiment.id)",
                    experiments,
                )
                self._conn.execute(
                    f"DELETE FROM experiment_group WHERE id IN (SELECT id FROM ({empty_groups}))",
                    groups,
                )
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                names = [r[1] for r in self._conn.execute(empty_groups, groups)]
                if names:
                    return f"group {', '.join(names)}"
            return "rows it had added"
        self._new_groups, self._new_experiments = set(), set()
        return None

    def _write(self, sql: str, params: Sequence | dict = ()) -> sqlite3.Cursor:
        """One statement in its own short write transaction (or the caller's `transaction()`)."""
        with self.transaction():
            return self._conn.execute(sql, params)

    def _rows(self, sql: str, params: Sequence | dict = ()) -> list[sqlite3.Row]:
        """A read; a damaged file is one CalibanError line, not a traceback."""
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _failure(self.path, "read", exc) from None

    def _row(self, sql: str, params: Sequence | dict = ()) -> sqlite3.Row | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    # -- groups, images, experiments ----------------------------------------

    def create_group(self, name: str | None = None, user: str | None = None) -> Group:
        """The group called `name` (created if new), or a fresh auto-named group."""
        user = user or current_user()
        if name is not None:
            name = name.strip()
            if not name:
                raise UsageError("--xgroup: the group name is empty")
            cursor = self._write(_INSERT_GROUP, (name, user, _now()))
            group = self.group(name)
            assert group is not None
            if cursor.rowcount == 1:
                self._new_groups.add(group.id)
            return group
        base = default_group_name(user)
        for attempt in range(1, 1000):
            candidate = base if attempt == 1 else f"{base}-{attempt}"
            cursor = self._write(
                _INSERT_GROUP,
                (candidate, user, _now()),
            )
            if cursor.rowcount == 1:
                self._new_groups.add(cursor.lastrowid)
                return self.group(candidate)  # type: ignore[return-value]
        raise CalibanError(f"could not pick a free group name after {base}")

    def group(self, name: str) -> Group | None:
        row = self._row("SELECT * FROM experiment_group WHERE name = ?", (name,))
        return Group(**dict(row)) if row else None

    def existing_group(self, name: str) -> Group:
        """The group called `name`; CalibanError (naming this history file) when there is none."""
        group = self.group(name)
        if group is None:
            raise CalibanError(f"no experiment group named {name!r} in {self.path}")
        return group

    def groups(self, name: str | None = None, user: str | None = None) -> list[Group]:
        """Groups, oldest first; `name` and `user` filter."""
        sql, params = "SELECT * FROM experiment_group WHERE 1", []
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        if user is not None:
            sql += " AND user = ?"
            params.append(user)
        sql += " ORDER BY created, id"
        return [Group(**dict(r)) for r in self._rows(sql, params)]

    def record_image(
        self,
        *,
        docker_id: str | None = None,
        uri: str | None = None,
        digest: str | None = None,
        build_args: dict | None = None,
    ) -> int:
        """Records an image and the arguments that rebuild it; returns its id.

        `build_args` is whatever the builder needs to build it again (target,
        extras, dirs, gpu, project dir, base image, ...), as JSON; secrets in
        its `docker_run_args` are stored as `-e NAME` (module docstring).
        """
        cursor = self._write(
            "INSERT INTO image (docker_id, uri, digest, build_args, created) VALUES (?, ?, ?, ?, ?)",
            (docker_id, uri, digest, _dumps(_stored_build_args(build_args)), _now()),
        )
        return cursor.lastrowid

    def image(self, image_id: int) -> Image | None:
        row = self._row("SELECT * FROM image WHERE id = ?", (image_id,))
        if row is None:
            return None
        data = dict(row)
        data["build_args"] = json.loads(data["build_args"])
        return Image(**data)

    def _recipe_of(self, image_id: int | None) -> str:
        image = self.image(image_id) if image_id is not None else None
        return _recipe(image.build_args if image else None)

    def _experiment_for(
        self, group_id: int, args: Sequence[str], flags: dict | None, image_id: int | None,
        recipe: str, now: float,
    ) -> int:
        """Inside a transaction: the existing experiment to reuse, or a new one."""
        encoded = json.dumps(list(args))
        candidates = self._conn.execute(
            "SELECT experiment.id, image.build_args FROM experiment"
            " LEFT JOIN image ON image.id = experiment.image_id"
            " WHERE experiment.group_id = ? AND experiment.args = ? ORDER BY experiment.id",
            (group_id, encoded),
        ).fetchall()
        for row in candidates:
            if _recipe(json.loads(row[1]) if row[1] else None) == recipe:
                if image_id is not None:  # it now runs the newest image
                    self._conn.execute(
                        "UPDATE experiment SET image_id = ? WHERE id = ?", (image_id, row[0])
                    )
                return row[0]
        experiment_id = self._conn.execute(
            _INSERT_EXPERIMENT, (group_id, image_id, encoded, _dumps(flags or {}), now)
        ).lastrowid
        self._new_experiments.add(experiment_id)
        return experiment_id

    def experiment(self, experiment_id: int) -> Experiment | None:
        row = self._row("SELECT * FROM experiment WHERE id = ?", (experiment_id,))
        if row is None:
            return None
        data = dict(row)
        data["args"] = json.loads(data["args"])
        data["flags"] = json.loads(data["flags"])
        return Experiment(**data)

    def experiments(self, group_id: int) -> list[Experiment]:
        rows = self._rows("SELECT id FROM experiment WHERE group_id = ? ORDER BY id", (group_id,))
        return [self.experiment(r["id"]) for r in rows]  # type: ignore[misc]

    # -- jobs ---------------------------------------------------------------

    def add_job(
        self,
        experiment_id: int,
        *,
        backend: str,
        request: dict | None = None,
        caliban_key: str | None = None,
        name: str | None = None,
        project: str | None = None,
        region: str | None = None,
        api_endpoint: str | None = None,
        cloud_key: str | None = None,
        user: str | None = None,
    ) -> int:
        """A new attempt at a recorded experiment (resubmit, a rerun): a
        PENDING row, written BEFORE the create request is sent.

        `request` is the exact body about to be sent; `caliban_key` the
        unique label it carries (what `resubmit` looks the job up by).
        """
        if backend not in states.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}")
        now = _now()
        cursor = self._write(
            _INSERT_JOB,
            (
                experiment_id,
                backend,
                PENDING,
                user or current_user(),
                name,
                caliban_key,
                project,
                region,
                api_endpoint,
                cloud_key,
                _dumps(_stored_request(request)) if request is not None else None,
                now,
                now,
            ),
        )
        return cursor.lastrowid

    def add_jobs(
        self,
        group_id: int,
        jobs: Sequence["NewJob"],
        *,
        backend: str,
        image_id: int | None = None,
        project: str | None = None,
        region: str | None = None,
        api_endpoint: str | None = None,
        cloud_key: str | None = None,
        user: str | None = None,
    ) -> list[int]:
        """A whole sweep in ONE transaction: a PENDING job each, on the group's
        experiment with the same arguments (and recipe) or a new one.

        Call it before sending anything, so a sweep interrupted at any point
        leaves a row for every job; then `mark_sending` right before each
        create request and `mark_submitted` / `mark_failed` after it.
        Returns the job ids, in the order of `jobs`.
        """
        if backend not in states.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}")
        user = user or current_user()
        now = _now()
        conn = self._conn
        ids = []
        with self.transaction():
            recipe = self._recipe_of(image_id)
            for job in jobs:
                experiment_id = self._experiment_for(group_id, job.args, job.flags, image_id, recipe, now)
                ids.append(
                    conn.execute(
                        _INSERT_JOB,
                        (
                            experiment_id,
                            backend,
                            PENDING,
                            user,
                            job.name,
                            job.caliban_key,
                            project,
                            region,
                            api_endpoint,
                            cloud_key,
                            _dumps(_stored_request(job.request)) if job.request is not None else None,
                            now,
                            now,
                        ),
                    ).lastrowid
                )
        return ids

    def mark_sending(self, job_id: int) -> None:
        """Right before the create request goes out: from now on the job is "maybe sent"."""
        now = _now()
        self._write("UPDATE job SET sent = ?, updated = ? WHERE id = ?", (now, now, job_id))

    def mark_not_sent(self, job_id: int, reason: str | None = None) -> None:
        """The submitter skipped the job without sending it (e.g. the sweep stopped on a quota)."""
        self._write(
            "UPDATE job SET sent = NULL, error = ?, updated = ? WHERE id = ? AND status = ?",
            (reason, _now(), job_id, PENDING),
        )

    def update_request(self, job_id: int, request: dict) -> None:
        """The body actually about to be sent, when it changed since `add_job` (resubmit)."""
        self._write(
            "UPDATE job SET request = ?, updated = ? WHERE id = ?", (_dumps(_stored_request(request)), _now(), job_id)
        )

    def mark_submitted(self, job_id: int, remote_id: str, *, status: str = SUBMITTED) -> None:
        """The backend accepted the job: `remote_id` is the Vertex resource name
        (`projects/.../customJobs/123`), the ml v1 job id, or the container id.

        The job exists from now on whatever the history says: when this write
        fails, the error names `remote_id` so the user can still find it.
        """
        now = _now()
        try:
            self._write(
                "UPDATE job SET status = ?, remote_id = ?, error = NULL, exit_code = NULL,"
                " finished = NULL, submitted = ?, updated = ? WHERE id = ?",
                (status, remote_id, now, now, job_id),
            )
        except CalibanError as exc:
            raise CalibanError(
                f"job {job_id} IS RUNNING as {remote_id}, but {exc.message}. Its row stays "
                "PENDING (maybe sent): once the history is writable again, `caliban resubmit` "
                "finds it by its label instead of sending it twice"
            ) from None

    def mark_failed(self, job_id: int, error: str) -> None:
        """The create request failed for sure (nothing runs), or the job failed."""
        now = _now()
        self._write(
            "UPDATE job SET status = ?, error = ?, updated = ?, finished = ? WHERE id = ?",
            (FAILED, error, now, now, job_id),
        )

    def start_local(self, job_id: int, container_id: str) -> None:
        """A local container started for this job."""
        self.mark_submitted(job_id, container_id, status=RUNNING)

    def finish_local(self, job_id: int, exit_code: int) -> None:
        """A local container ended with `exit_code` (0 = SUCCEEDED, else FAILED)."""
        now = _now()
        status = SUCCEEDED if exit_code == 0 else FAILED
        self._write(
            "UPDATE job SET status = ?, exit_code = ?, updated = ?, finished = ? WHERE id = ?"
            " AND status != ?",
            (status, exit_code, now, now, job_id, STOPPED),
        )

    def mark_stopped(self, job_id: int) -> None:
        now = _now()
        self._write(
            "UPDATE job SET status = ?, updated = ?, finished = COALESCE(finished, ?) WHERE id = ?",
            (STOPPED, now, now, job_id),
        )

    def set_status(
        self,
        job_id: int,
        status: str,
        *,
        exit_code: int | None = None,
        error: str | None = None,
    ) -> None:
        """Records a status read back from the backend (status refresh)."""
        if status not in states.ALL_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        now = _now()
        finished = now if status in TERMINAL else None
        self._write(
            "UPDATE job SET status = ?, exit_code = COALESCE(?, exit_code),"
            " error = COALESCE(?, error), updated = ?,"
            " finished = COALESCE(finished, ?) WHERE id = ?",
            (status, exit_code, error, now, finished, job_id),
        )

    def job(self, job_id: int) -> Job | None:
        row = self._row(_JOB_SELECT + " WHERE job.id = ?", (job_id,))
        return _job(row) if row else None

    def job_by_key(self, caliban_key: str) -> Job | None:
        row = self._row(_JOB_SELECT + " WHERE job.caliban_key = ?", (caliban_key,))
        return _job(row) if row else None

    def jobs(
        self,
        *,
        group: str | None = None,
        experiment_id: int | None = None,
        statuses: Iterable[str] | None = None,
        user: str | None = None,
        latest_only: bool = False,
        limit: int | None = None,
    ) -> list[Job]:
        """Jobs, oldest first. `latest_only`: the newest job of each experiment;
        `limit`: only the newest `limit` of those."""
        sql = _JOB_SELECT + " WHERE 1"
        params: list[Any] = []
        if group is not None:
            sql += " AND experiment_group.name = ?"
            params.append(group)
        if experiment_id is not None:
            sql += " AND job.experiment_id = ?"
            params.append(experiment_id)
        if statuses is not None:
            statuses = list(statuses)
            sql += f" AND job.status IN ({','.join('?' * len(statuses))})"
            params.extend(statuses)
        if user is not None:
            sql += " AND job.user = ?"
            params.append(user)
        if latest_only:
            sql += " AND job.id = (SELECT MAX(j2.id) FROM job j2 WHERE j2.experiment_id = job.experiment_id)"
        if limit is not None:
            sql += " ORDER BY job.id DESC LIMIT ?"
            params.append(int(limit))
            return [_job(r) for r in reversed(self._rows(sql, params))]
        sql += " ORDER BY job.id"
        return [_job(r) for r in self._rows(sql, params)]

    def status_counts(self, group: str) -> dict[str, int]:
        """How many experiments of a group have their latest job in each status."""
        rows = self._rows(
            "SELECT job.status, COUNT(*) FROM job"
            " JOIN experiment ON experiment.id = job.experiment_id"
            " JOIN experiment_group ON experiment_group.id = experiment.group_id"
            " WHERE experiment_group.name = ?"
            " AND job.id = (SELECT MAX(j2.id) FROM job j2 WHERE j2.experiment_id = job.experiment_id)"
            " GROUP BY job.status",
            (group,),
        )
        return {status: count for status, count in rows}

    def experiment_count(self, group_id: int) -> int:
        return self._row("SELECT COUNT(*) FROM experiment WHERE group_id = ?", (group_id,))[0]


def open_store(url: str | None = None) -> Store:
    """Opens (creating and migrating as needed) the history at `db_path(url)`."""
    return Store(db_path(url))


def check_store(url: str | None = None) -> Path:
    """Fails with one CalibanError line unless the history at `db_path(url)` can record a sweep.

    Call it first thing in `caliban cloud` and `caliban run` (not in dry
    runs), before any build or push: an image built and pushed for jobs
    that then cannot be recorded is wasted time, and a job sent without a
    row is one `status`/`stop`/`resubmit` cannot see. Returns the path.
    """
    with open_store(url) as store:
        store.verify()
        return store.path


__all__ = [
    "DB_URL_ENV",
    "Experiment",
    "Group",
    "Image",
    "Job",
    "MIGRATIONS",
    "NewJob",
    "SCHEMA_VERSION",
    "Store",
    "check_store",
    "current_user",
    "db_path",
    "default_group_name",
    "migrate",
    "open_store",
    "states",
]
