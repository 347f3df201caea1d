"""Running Caliban containers locally through docker-py.

One neutral description of a container (`ContainerSpec`) is turned either
into docker-py calls (`run_container`, `run_interactive`) or into the
equivalent `docker run` command line for --dry_run. `run_jobs` runs a sweep,
one container per job, calling a `JobHooks` object at every job's start and
end so the job history can record them.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import io
import os
import shlex
import signal
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from caliban.cloud.auth import ADC_PATH
from caliban.docker.job_logs import JobLogWriter
from caliban.errors import CalibanError, UsageError

CREDENTIALS_DIR = "/var/caliban/credentials"
JOB_LABEL = "caliban.job"
# How long a stopped container gets between SIGTERM and SIGKILL: time for
# training code to write a checkpoint. (`docker stop`'s own default is 10 s.)
STOP_GRACE_SECONDS = 10


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False

    def cli_flags(self) -> list[str]:
        """The `docker run` flags for the dry run: `-v SRC:DST:MODE` where the
        paths allow it, `--mount` (comma-separated fields, CSV-quoted) for a
        path with ':' that -v would split in the wrong place."""
        if ":" not in self.source + self.target:
            return ["-v", f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"]
        fields = ["type=bind", f"source={self.source}", f"target={self.target}"]
        if self.read_only:
            fields.append("readonly")
        text = io.StringIO()
        csv.writer(text, lineterminator="").writerow(fields)
        return ["--mount", text.getvalue()]

    def api_mount(self):
        """The engine's own mount object: source and target travel as separate
        fields, so no character in a path (':' and ',' included) is special."""
        import docker

        return docker.types.Mount(target=self.target, source=self.source, type="bind", read_only=self.read_only)


@dataclass
class ContainerSpec:
    """What one `docker run` does. `args` are appended to the entrypoint
    (the image's, unless `entrypoint` overrides it)."""

    image: str
    args: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    workdir: str | None = None
    gpu: bool = False
    ports: dict[int, int] = field(default_factory=dict)  # container port -> host port
    interactive: bool = False  # stdin + tty
    ipc_mode: str | None = "host"  # as the original: shared memory for data loaders
    # An init process as PID 1 (`docker run --init`): the training code is not
    # PID 1, so SIGTERM from a stop reaches it instead of being ignored.
    init: bool = True
    extra: "RunOptions" = None  # parsed --docker_run_args
    gpu_devices: list[str] | None = None  # with `gpu`: only these GPUs (indices or UUIDs), not all
    network: str | None = None  # a user-defined network to join, reachable there as `network_aliases`
    network_aliases: list[str] = field(default_factory=list)
    hostname: str | None = None

    def __post_init__(self):
        if self.extra is None:
            self.extra = RunOptions()

    # -- the docker CLI equivalent, for --dry_run --------------------------
    def docker_command(self) -> list[str]:
        cmd = ["docker", "run", "--rm"]
        if self.interactive:
            cmd.append("-it")
        if self.init:
            cmd.append("--init")
        if self.ipc_mode and not self.extra.ipc:
            cmd += ["--ipc", self.ipc_mode]
        if self.gpu:
            cmd += ["--gpus", f"device={','.join(self.gpu_devices)}" if self.gpu_devices else "all"]
        if self.network and not self.extra.network:
            cmd += ["--network", self.network]
            for alias in self.network_aliases:
                cmd += ["--network-alias", alias]
        if self.hostname:
            cmd += ["--hostname", self.hostname]
        if self.user:
            cmd += ["--user", self.user]
        if self.workdir:
            cmd += ["-w", self.workdir]
        for key, value in sorted(self.labels.items()):
            cmd += ["--label", f"{key}={value}"]
        for mount in self.mounts:
            cmd += mount.cli_flags()
        for key, value in self.env.items():
            cmd += ["-e", f"{key}={value}"]
        for cport, hport in self.ports.items():
            cmd += ["-p", f"{hport}:{cport}"]
        cmd += self.extra.tokens
        if self.entrypoint is not None:
            cmd += ["--entrypoint", self.entrypoint[0]]
        cmd.append(self.image)
        if self.entrypoint is not None:
            cmd += self.entrypoint[1:]
        return cmd + list(self.args)

    # -- docker-py ---------------------------------------------------------
    def create_kwargs(self, api) -> dict:
        import docker

        port_bindings = {cport: hport for cport, hport in self.ports.items()}
        port_bindings.update(self.extra.ports)
        host = dict(
            mounts=[m.api_mount() for m in self.mounts] or None,
            binds=list(self.extra.volumes) or None,  # the user's own -v, as docker would read them
            port_bindings=port_bindings or None,
            ipc_mode=self.extra.ipc or self.ipc_mode,
            mem_limit=self.extra.memory,
            shm_size=self.extra.shm_size,
            network_mode=self.extra.network or self.network,
            privileged=self.extra.privileged,
            init=self.init,
        )
        if self.extra.cpus:
            host["nano_cpus"] = int(float(self.extra.cpus) * 1e9)
        if self.gpu and self.gpu_devices:
            host["device_requests"] = [docker.types.DeviceRequest(device_ids=list(self.gpu_devices),
                                                                  capabilities=[["gpu"]])]
        elif self.gpu:
            host["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        host = {k: v for k, v in host.items() if v not in (None, False)}
        env = dict(self.env)
        env.update(self.extra.env)
        networking = None
        if self.network and not self.extra.network and self.network_aliases:
            networking = api.create_networking_config(
                {self.network: api.create_endpoint_config(aliases=list(self.network_aliases))})
        return dict(
            image=self.image,
            command=list(self.args) if self.entrypoint is None else list(self.entrypoint[1:]) + list(self.args),
            entrypoint=[self.entrypoint[0]] if self.entrypoint is not None else None,
            environment=env or None,
            labels=self.labels or None,
            user=self.extra.user or self.user or "",
            working_dir=self.extra.workdir or self.workdir,
            ports=list(port_bindings) or None,
            tty=self.interactive,
            stdin_open=self.interactive,
            hostname=self.hostname,
            networking_config=networking,
            host_config=api.create_host_config(**host),
        )


# --------------------------------------------------------------------------
# --docker_run_args


@dataclass
class RunOptions:
    """The `docker run` flags --docker_run_args may carry."""

    tokens: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    ports: dict = field(default_factory=dict)
    memory: str | None = None
    shm_size: str | None = None
    cpus: str | None = None
    network: str | None = None
    ipc: str | None = None
    user: str | None = None
    workdir: str | None = None
    privileged: bool = False


SUPPORTED_RUN_FLAGS = (
    "-e/--env", "-v/--volume", "-p/--publish", "-m/--memory", "--shm-size", "--cpus",
    "--network", "--ipc", "-u/--user", "-w/--workdir", "--privileged",
)


def parse_docker_run_args(text: str | Sequence[str] | None) -> RunOptions:
    """Parse --docker_run_args ("--shm-size 2g -e A=1"); unknown flags are
    rejected with the list of supported ones."""
    if not text:
        return RunOptions()
    try:
        tokens = shlex.split(text) if isinstance(text, str) else list(text)
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"--docker_run_args {text!r}: {exc}") from None
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False, allow_abbrev=False)
    parser.add_argument("-e", "--env", action="append", default=[])
    parser.add_argument("-v", "--volume", action="append", default=[])
    parser.add_argument("-p", "--publish", action="append", default=[])
    parser.add_argument("-m", "--memory")
    parser.add_argument("--shm-size", dest="shm_size")
    parser.add_argument("--cpus")
    parser.add_argument("--network", "--net", dest="network")
    parser.add_argument("--ipc")
    parser.add_argument("-u", "--user")
    parser.add_argument("-w", "--workdir")
    parser.add_argument("--privileged", action="store_true")
    try:
        ns, unknown = parser.parse_known_args(tokens)
    except argparse.ArgumentError as exc:
        raise UsageError(f"--docker_run_args: {exc}") from None
    if unknown:
        raise UsageError(
            f"--docker_run_args: unsupported argument {unknown[0]!r}; supported: {', '.join(SUPPORTED_RUN_FLAGS)}"
        )
    opts = RunOptions(tokens=tokens, memory=ns.memory, shm_size=ns.shm_size, cpus=ns.cpus,
                      network=ns.network, ipc=ns.ipc, user=ns.user, workdir=ns.workdir,
                      privileged=ns.privileged)
    for item in ns.env:
        key, sep, value = item.partition("=")
        if not sep:
            value = os.environ.get(key, "")
        opts.env[key] = value
    opts.volumes = list(ns.volume)
    for item in ns.publish:
        parts = item.split(":")
        if len(parts) == 1:
            opts.ports[parts[0]] = None
        elif len(parts) == 2:
            opts.ports[parts[1]] = parts[0]
        else:
            opts.ports[parts[2]] = (parts[0], parts[1])
    if ns.cpus:
        try:
            float(ns.cpus)
        except ValueError:
            raise UsageError(f"--docker_run_args: --cpus {ns.cpus!r} is not a number") from None
    return opts


# --------------------------------------------------------------------------
# Credentials


def credential_mounts(cloud_key: str | None) -> tuple[list[Mount], dict[str, str]]:
    """Mount the service-account key (or, without one, the user's application
    default credentials) read-only, and point GOOGLE_APPLICATION_CREDENTIALS
    at it. Nothing is copied into the image."""
    if cloud_key:
        path = os.path.abspath(os.path.expanduser(cloud_key))
        if not os.path.isfile(path):
            raise UsageError(f"--cloud_key {cloud_key!r}: no such file")
        target = f"{CREDENTIALS_DIR}/key.json"
    else:
        path = os.path.expanduser(ADC_PATH)
        if not os.path.isfile(path):
            return [], {}
        target = f"{CREDENTIALS_DIR}/application_default_credentials.json"
    return [Mount(path, target, read_only=True)], {"GOOGLE_APPLICATION_CREDENTIALS": target}


# --------------------------------------------------------------------------
# Running


class _LineWriter:
    """Decodes a byte stream and writes whole lines with a prefix (and to `sink`, unprefixed)."""

    def __init__(self, out, prefix: str, sink: Callable[[str], None] | None = None):
        self.out, self.prefix, self.sink = out, prefix, sink
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""

    def feed(self, data: bytes) -> None:
        self.pending += self.decoder.decode(data)
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.out.write(f"{self.prefix}{line}\n")
            if self.sink:
                self.sink(line)
        if lines:
            self.out.flush()

    def close(self) -> None:
        self.pending += self.decoder.decode(b"", final=True)
        if self.pending:
            self.out.write(f"{self.prefix}{self.pending}\n")
            self.out.flush()
            if self.sink:
                self.sink(self.pending)
            self.pending = ""


def _api_error(exc: Exception) -> CalibanError:
    text = getattr(exc, "explanation", None) or str(exc)
    text = text.decode() if isinstance(text, bytes) else str(text)
    if "could not select device driver" in text:
        return CalibanError("the Docker engine cannot give this container GPUs (no NVIDIA runtime); pass --nogpu")
    return CalibanError(f"Docker engine: {text.splitlines()[0] if text else type(exc).__name__}")


def _remove(api, container_id: str, stop_first: bool = False) -> None:
    try:
        if stop_first:
            api.stop(container_id, timeout=STOP_GRACE_SECONDS)
        api.remove_container(container_id, force=True)
    except Exception:  # already gone; nothing more to clean
        pass


def run_container(
    client,
    spec: ContainerSpec,
    *,
    stdout=None,
    stderr=None,
    prefix: str = "",
    on_started: Callable[[str], None] | None = None,
    log=None,
) -> tuple[int, str]:
    """Create, start and follow one container; return (exit code, id).

    Output goes to `stdout`/`stderr` line by line with `prefix`, and to
    `log` (a `caliban.docker.job_logs.JobLogWriter`, closed here) if given. The
    container is removed when it ends, and stopped and removed on Ctrl-C
    (KeyboardInterrupt is re-raised)."""
    import docker

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    api = client.api
    try:
        container_id = api.create_container(**spec.create_kwargs(api))["Id"]
    except docker.errors.ImageNotFound:
        raise CalibanError(f"image {spec.image} not found on the Docker engine") from None
    except docker.errors.APIError as exc:
        raise _api_error(exc) from None
    started = False
    try:
        out = _LineWriter(stdout, prefix, log.stdout if log else None)
        err = _LineWriter(stderr, prefix, log.stderr if log else None)
        stream = api.attach(container_id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
        try:
            api.start(container_id)
        except docker.errors.APIError as exc:
            raise _api_error(exc) from None
        started = True
        if on_started:
            on_started(container_id)
        for chunk_out, chunk_err in stream:
            if chunk_out:
                out.feed(chunk_out)
            if chunk_err:
                err.feed(chunk_err)
        out.close()
        err.close()
        code = api.wait(container_id).get("StatusCode", 1)
        return int(code), container_id
    except KeyboardInterrupt:
        if started:
            print(f"caliban: stopping: the container gets SIGTERM, and SIGKILL after {STOP_GRACE_SECONDS} s",
                  file=stderr, flush=True)
        _remove(api, container_id, stop_first=started)
        raise
    finally:
        _remove(api, container_id)
        if log:
            log.close()


def run_interactive(client, spec: ContainerSpec) -> int:
    """Run `spec` attached to this terminal (stdin, tty, resizes); return its
    exit code. Without a terminal, stdin is still forwarded, without a tty."""
    import select
    import signal

    import docker

    api = client.api
    is_tty = sys.stdin.isatty() and sys.stdout.isatty()
    spec.interactive = is_tty
    kwargs = spec.create_kwargs(api)
    kwargs["stdin_open"] = True
    try:
        container_id = api.create_container(**kwargs)["Id"]
    except docker.errors.ImageNotFound:
        raise CalibanError(f"image {spec.image} not found on the Docker engine") from None
    except docker.errors.APIError as exc:
        raise _api_error(exc) from None

    old_attrs = None
    old_winch = None
    try:
        sock = api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        raw = getattr(sock, "_sock", sock)
        try:
            api.start(container_id)
        except docker.errors.APIError as exc:
            raise _api_error(exc) from None

        stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
        if is_tty:
            import termios
            import tty

            def resize(*_):
                try:
                    size = os.get_terminal_size(stdout_fd)
                    api.resize(container_id, height=size.lines, width=size.columns)
                except Exception:
                    pass

            resize()
            old_winch = signal.signal(signal.SIGWINCH, resize)
            old_attrs = termios.tcgetattr(stdin_fd)
            tty.setraw(stdin_fd)

        demux = None if is_tty else _Demuxer()
        stdin_open = True
        while True:
            watch = [raw] + ([stdin_fd] if stdin_open else [])
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            if raw in ready:
                data = raw.recv(65536)
                if not data:
                    break
                if demux is None:
                    os.write(stdout_fd, data)
                else:
                    for fd, payload in demux.feed(data):
                        os.write(stdout_fd if fd != 2 else sys.stderr.fileno(), payload)
            if stdin_open and stdin_fd in ready:
                data = os.read(stdin_fd, 65536)
                if data:
                    raw.sendall(data)
                else:
                    stdin_open = False
                    try:
                        import socket

                        raw.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
        return int(api.wait(container_id).get("StatusCode", 1))
    finally:
        if old_attrs is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, old_attrs)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        _remove(api, container_id)


class _Demuxer:
    """Splits Docker's multiplexed (non-tty) attach stream into (fd, bytes)."""

    def __init__(self):
        self.buf = b""

    def feed(self, data: bytes):
        self.buf += data
        while len(self.buf) >= 8:
            size = int.from_bytes(self.buf[4:8], "big")
            if len(self.buf) < 8 + size:
                break
            fd, payload = self.buf[0], self.buf[8 : 8 + size]
            self.buf = self.buf[8 + size :]
            yield fd, payload


# --------------------------------------------------------------------------
# Sweeps


@dataclass
class Job:
    """One container of a `caliban run`: `args` follow the entrypoint."""

    index: int  # 1-based position in the sweep
    total: int
    args: list[str]
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    experiment: dict | None = None
    container_id: str | None = None
    exit_code: int | None = None

    @property
    def label(self) -> str:
        return f"{self.index}/{self.total}"


class JobHooks:
    """Called around every job of `run_jobs`; the no-op default. The job
    history subclasses this to record jobs."""

    def should_start(self, job: Job) -> bool:
        """False skips the job (e.g. `caliban stop` stopped the sweep before it started)."""
        return True

    def on_job_start(self, job: Job) -> None:
        """Before the job's container is created."""

    def on_container_start(self, job: Job, container_id: str) -> None:
        """The container runs (it carries the label caliban.job=<job.job_id>)."""

    def on_job_end(self, job: Job, exit_code: int, container_id: str | None) -> None:
        """The container ended (exit 130: interrupted with Ctrl-C, then stopped)."""


@dataclass
class SweepResult:
    jobs: list[Job]

    @property
    def succeeded(self) -> list[Job]:
        return [j for j in self.jobs if j.exit_code == 0]

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.exit_code not in (0, None)]


def run_jobs(
    client,
    jobs: Iterable[Job],
    make_spec: Callable[[Job], ContainerSpec],
    *,
    hooks: JobHooks | None = None,
    stdout=None,
    stderr=None,
) -> SweepResult:
    """Run each job in its own container, one after the other."""
    hooks = hooks or JobHooks()
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    with _sigterm_as_interrupt():
        return _run_jobs(client, jobs, make_spec, hooks, stdout, stderr)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """`kill` of caliban cleans up like Ctrl-C: the container is stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def begin_job(job: Job, make_spec, hooks: JobHooks, stderr) -> ContainerSpec | None:
    """What comes before a job's container, one at a time or in parallel: skip it
    when it was stopped meanwhile (None), else label its spec and announce it."""
    if not hooks.should_start(job):
        print(f"==> job {job.label}: stopped before it started", file=stderr, flush=True)
        return None
    spec = make_spec(job)
    spec.labels[JOB_LABEL] = job.job_id
    print(f"==> job {job.label}: {shlex.join(job.args) if job.args else '(no args)'}", file=stderr, flush=True)
    hooks.on_job_start(job)
    return spec


def _run_jobs(client, jobs, make_spec, hooks, stdout, stderr) -> SweepResult:
    done: list[Job] = []
    for job in jobs:
        spec = begin_job(job, make_spec, hooks, stderr)
        if spec is None:
            continue
        prefix = f"[{job.label}] " if job.total > 1 else ""

        def started(container_id: str, job=job) -> None:
            job.container_id = container_id
            hooks.on_container_start(job, container_id)

        try:
            code, container_id = run_container(client, spec, stdout=stdout, stderr=stderr, prefix=prefix,
                                               on_started=started, log=JobLogWriter.for_job(job.job_id))
        except KeyboardInterrupt:
            job.exit_code = 130
            hooks.on_job_end(job, 130, job.container_id)
            print(f"==> job {job.label}: interrupted; container stopped and removed", file=stderr, flush=True)
            if done:
                for line in summary_lines(SweepResult(done)):
                    print(f"before the interruption: {line.strip()}", file=stderr, flush=True)
            raise
        except CalibanError:
            job.exit_code = 125  # as `docker run` when the container cannot start
            hooks.on_job_end(job, 125, job.container_id)
            raise
        job.exit_code = code
        hooks.on_job_end(job, code, container_id)
        verdict = "succeeded" if code == 0 else f"FAILED (exit {code})"
        print(f"==> job {job.label} {verdict}", file=stderr, flush=True)
        done.append(job)
    return SweepResult(done)


# Container `State.Status` -> history status; "removing" keeps the recorded status.
_CONTAINER_STATES = {
    "created": "SUBMITTED",
    "running": "RUNNING",
    "restarting": "RUNNING",
    "paused": "RUNNING",
    "dead": "FAILED",
}


def container_status(state: str | None, exit_code: int | None = None) -> str | None:
    """The history status of a container of a local job (None: unknown, keep what is recorded)."""
    if state == "exited":
        return "SUCCEEDED" if exit_code == 0 else "FAILED"
    return _CONTAINER_STATES.get(state or "")


def summary_lines(result: SweepResult) -> list[str]:
    lines = [f"{len(result.succeeded)} succeeded, {len(result.failed)} failed"]
    for job in result.failed:
        lines.append(f"  failed job {job.label} (exit {job.exit_code}): {shlex.join(job.args) or '(no args)'}")
    return lines
