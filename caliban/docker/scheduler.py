"""Running a sweep's jobs side by side on the local engine (`caliban run --max_parallel K`).

Up to K jobs run at once, each in its own worker thread; a job of several
nodes runs through `caliban.docker.cluster`. In GPU mode every running job
holds a disjoint set of the host's GPUs from a `caliban.sweep.gpus.GpuPool`
and a job waits until enough are free. The hooks (the job history) are only
ever called from the calling thread: workers report what happened as events,
so the SQLite store is never touched from two threads. The first Ctrl-C (or
SIGTERM) stops every running job's containers, waits for them, and raises
KeyboardInterrupt for the caller to record what never started.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading

from caliban.docker.job_logs import JobLogWriter
from caliban.docker.run import (
    JOB_LABEL,
    STOP_GRACE_SECONDS,
    JobHooks,
    SweepResult,
    _sigterm_as_interrupt,
    begin_job,
    run_container,
)
from caliban.errors import CalibanError

_POLL_SECONDS = 0.2  # how often the dispatcher wakes to notice Ctrl-C


class _LiveLine:
    """On a terminal, the sweep's state as one line under the jobs' output
    ("[sweep] 2 running, 3 done (1 failed), 5 waiting"), redrawn after every
    line anybody prints: with K jobs interleaving their output, the end of the
    scroll-back is the only place a researcher looks. On a pipe or in a file
    it is never drawn; the per-job lines say the same there.

    Every line goes through `stdout`/`stderr` here, one write under one lock,
    so the line is erased before a job's line and drawn again after it."""

    _ERASE = "\r\x1b[K"

    def __init__(self, stdout, stderr, total: int | None):
        self.enabled = _is_terminal(stdout) and _is_terminal(stderr)
        self.total = total
        self._err = stderr
        self._lock = threading.Lock()
        self._text = ""
        self._shown = False
        self.stdout = _Through(self, stdout)
        self.stderr = _Through(self, stderr)

    def write(self, stream, text: str) -> None:
        with self._lock:
            if self._shown:
                self._err.write(self._ERASE)
                self._err.flush()
                self._shown = False
            stream.write(text)
            stream.flush()
            if self.enabled and self._text and text.endswith("\n"):
                self._draw()

    def update(self, running: int, done: int, failed: int, taken: int) -> None:
        if not self.enabled:
            return
        waiting = f", {self.total - taken} waiting" if self.total is not None else ""
        failures = f" ({failed} failed)" if failed else ""
        text = f"[sweep] {running} running, {done} done{failures}{waiting}"
        with self._lock:
            if text == self._text and self._shown:
                return
            self._text = text
            if self._shown:
                self._err.write(self._ERASE)
            self._draw()

    def close(self) -> None:
        with self._lock:
            if self._shown:
                self._err.write(self._ERASE)
                self._err.flush()
            self._shown, self._text = False, ""

    def _draw(self) -> None:
        self._err.write(self._text)
        self._err.flush()
        self._shown = True


class _Through:
    """A stream whose writes go through the live line (see `_LiveLine`)."""

    def __init__(self, line: _LiveLine, stream):
        self._line, self._stream = line, stream

    def write(self, text: str) -> int:
        self._line.write(self._stream, text)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return _is_terminal(self._stream)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def run_parallel(client, jobs, make_spec, *, hooks: JobHooks | None = None, max_parallel: int = 1,
                 nodes: int = 1, gpu_pool=None, gpus_per_job: int = 0, stdout=None, stderr=None) -> SweepResult:
    """Runs `jobs` (caliban.docker.run.Job) K at a time; each is `nodes` replicas of `make_spec(job)`."""
    hooks = hooks or JobHooks()
    live = _LiveLine(stdout or sys.stdout, stderr or sys.stderr, len(jobs) if hasattr(jobs, "__len__") else None)
    stdout, stderr = live.stdout, live.stderr
    if gpu_pool is not None:
        gpu_pool.check(nodes * gpus_per_job, f"{nodes} node(s) x {gpus_per_job} GPU(s) per job")
    events: queue.Queue = queue.Queue()
    running: dict[str, tuple] = {}  # job_id -> (job, thread)
    done = []
    pending = iter(jobs)

    def work(job, spec):
        try:
            if nodes > 1:
                from caliban.docker.cluster import run_cluster_job

                def started(rank, container_id):
                    if rank == 0:
                        events.put(("started", job, container_id))

                result = run_cluster_job(client, spec, nodes, job_id=job.job_id, label=job.label,
                                         gpu_pool=gpu_pool if gpus_per_job else None, gpus_per_node=gpus_per_job,
                                         stdout=stdout, stderr=stderr, on_started=started, log_key=job.job_id)
                code = result.exit_code
            else:
                gpus = (gpu_pool.lease(gpus_per_job, f"job {job.label}") if gpu_pool and gpus_per_job
                        else contextlib.nullcontext(()))
                with gpus as devices:
                    if devices:
                        spec.gpu, spec.gpu_devices = True, list(devices)
                    code, _ = run_container(client, spec, stdout=stdout, stderr=stderr, prefix=f"[{job.label}] ",
                                            on_started=lambda cid: events.put(("started", job, cid)),
                                            log=JobLogWriter.for_job(job.job_id))
            events.put(("ended", job, code))
        except CalibanError as exc:
            events.put(("error", job, exc))
        except Exception as exc:  # a docker-py or transport failure: reported, not a hung sweep
            events.put(("error", job, CalibanError(f"Docker engine: {type(exc).__name__}: {exc}")))

    failure: CalibanError | None = None
    counts = {"taken": 0, "ended": 0, "failed": 0}

    def start_next() -> bool:
        for job in pending:
            counts["taken"] += 1
            spec = begin_job(job, make_spec, hooks, stderr)
            if spec is None:
                continue
            thread = threading.Thread(target=work, args=(job, spec), daemon=True, name=f"job-{job.label}")
            running[job.job_id] = (job, thread)
            thread.start()
            return True
        return False

    with _sigterm_as_interrupt():
        try:
            while True:
                while failure is None and len(running) < max_parallel and start_next():
                    pass
                live.update(len(running), counts["ended"], counts["failed"], counts["taken"])
                if not running:
                    break
                try:
                    kind, job, value = events.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
                if kind == "started":
                    job.container_id = value
                    hooks.on_container_start(job, value)
                    continue
                running.pop(job.job_id)[1].join()
                counts["ended"] += 1
                counts["failed"] += kind == "error" or value != 0
                if kind == "error":
                    job.exit_code = 125  # as `docker run` when a container cannot start
                    hooks.on_job_end(job, 125, job.container_id)
                    failure = failure or value
                    continue
                job.exit_code = value
                hooks.on_job_end(job, value, job.container_id)
                done.append(job)
                verdict = "succeeded" if value == 0 else f"FAILED (exit {value})"
                stderr.write(f"==> job {job.label} {verdict} ({len(running)} running)\n")
        except KeyboardInterrupt:
            live.close()
            print(f"caliban: stopping {len(running)} running job(s): SIGTERM, and SIGKILL after "
                  f"{STOP_GRACE_SECONDS} s", file=stderr, flush=True)
            _stop_all(client, list(running))
            for job, thread in list(running.values()):
                thread.join(STOP_GRACE_SECONDS + 30)
                job.exit_code = 130
                hooks.on_job_end(job, 130, job.container_id)
            raise
        finally:
            live.close()
    if failure is not None:
        raise failure
    return SweepResult(done)


def _stop_all(client, job_ids) -> None:
    """Stops every container of these jobs (all replicas of a multi-node job carry its label)."""
    api = client.api
    for job_id in job_ids:
        try:
            for container in api.containers(filters={"label": f"{JOB_LABEL}={job_id}"}):
                api.stop(container["Id"], timeout=STOP_GRACE_SECONDS)
        except Exception:  # already gone
            pass
