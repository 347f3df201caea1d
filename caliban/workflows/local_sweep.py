"""Running a sweep of containers on the local engine, durably: `caliban run` and `caliban resubmit`.

Every job of the sweep is written to the history as PENDING before the
first container starts, so an interrupted sweep shows what never ran and
`caliban resubmit --xgroup G` finishes it. Before each job starts its row is
read again: a job that `caliban stop` marked STOPPED meanwhile is skipped,
so stopping a sweep stops the running container and the rest of the sweep.
Containers run with an init process, so SIGTERM from a stop reaches the
training code, which gets `caliban.docker.run.STOP_GRACE_SECONDS` before
SIGKILL.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from caliban.docker.build_context import OUTPUT_MARKER
from caliban.errors import UsageError
from caliban.history import NewJob, Store, states
from caliban.options import Parallelism

LOCAL = "local"


# Where a job's output directory appears inside its container.
CONTAINER_OUTPUT_DIR = "/caliban/output"


def output_environment(base: str) -> dict[str, str]:
    """The variables Vertex AI sets from a job's base output directory, pointing under `base`.

    https://cloud.google.com/vertex-ai/docs/training/code-requirements#environment-variables
    """
    base = base.rstrip("/")
    return {"AIP_MODEL_DIR": f"{base}/model/", "AIP_CHECKPOINT_DIR": f"{base}/checkpoints/",
            "AIP_TENSORBOARD_LOG_DIR": f"{base}/logs/"}


def prepare_output_root(output_dir: str | None) -> None:
    """Before anything is built or run: the --output_dir root exists, made by
    the user (so the user owns it, not the engine's root), and is marked so
    that no image copies it (OUTPUT_MARKER)."""
    if not output_dir:
        return
    root = os.path.abspath(output_dir)
    try:
        os.makedirs(root, mode=0o755, exist_ok=True)
        marker = os.path.join(root, OUTPUT_MARKER)
        if not os.path.exists(marker):
            with open(marker, "w") as fh:
                fh.write("Results of Caliban jobs: never copied into an image (see --output_dir).\n")
    except OSError as exc:
        raise UsageError(f"--output_dir {output_dir}: cannot create {root}: {exc.strerror}; pass "
                         "--output_dir with a folder you can write, or --output_dir '' for none") from None


@dataclass(frozen=True)
class Container:
    """What every container of one sweep shares."""

    image: str
    target_name: str
    xgroup: str | None
    gpu: bool
    cloud_key: str | None
    run_options: Any  # caliban.docker.run.RunOptions
    env: tuple[tuple[str, str], ...] = ()
    output_dir: str | None = None  # host directory; each job gets <output_dir>/<group>/<job>/

    def job_output(self, job_name: str) -> str | None:
        if not self.output_dir:
            return None
        return os.path.join(os.path.abspath(self.output_dir), self.xgroup or "caliban", job_name)

    def make_job_output(self, job_name: str) -> None:
        output = self.job_output(job_name)
        if output:
            try:
                os.makedirs(output, mode=0o755, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"--output_dir: cannot create {output}: {exc.strerror}") from None

    def spec(self, args: Sequence[str], job_name: str | None = None):
        from caliban.docker.run import ContainerSpec, Mount, credential_mounts

        mounts, env = credential_mounts(self.cloud_key)
        env = {**env, **dict(self.env)}
        output = self.job_output(job_name or "job")
        if output:
            mounts = [*mounts, Mount(output, CONTAINER_OUTPUT_DIR)]
            env.update(output_environment(CONTAINER_OUTPUT_DIR))
        labels = {"caliban.target": self.target_name}
        if self.xgroup:
            labels["caliban.xgroup"] = self.xgroup
        return ContainerSpec(image=self.image, args=list(args), env=env, mounts=list(mounts),
                             labels=labels, gpu=self.gpu, extra=self.run_options)


class _Recorder:
    """The `caliban.docker.run.JobHooks` that keep the history's rows in step with the containers."""

    def __init__(self, store: Store, rows: dict[str, int]):
        self.store = store
        self.rows = rows  # docker_run Job.job_id -> job row id

    def should_start(self, job) -> bool:
        row = self.store.job(self.rows[job.job_id])
        return row is not None and row.status == states.PENDING

    def on_job_start(self, job) -> None:
        pass

    def on_container_start(self, job, container_id: str) -> None:
        self.store.start_local(self.rows[job.job_id], container_id)

    def on_job_end(self, job, exit_code: int, container_id: str | None) -> None:
        row = self.rows[job.job_id]
        if exit_code == 130:  # Ctrl-C or SIGTERM: run_jobs stopped the container
            self.store.mark_stopped(row)
        else:
            self.store.finish_local(row, exit_code)  # keeps a STOPPED set by `caliban stop`


def _run_rows(store: Store, client, container: Container, entries: Sequence[tuple[int, list[str], dict | None]],
              key_of: Callable[[int], str], parallelism: Parallelism | None = None) -> int:
    """Runs recorded PENDING rows (K at a time); exit status (1 if any failed)."""
    from caliban.docker.run import Job, run_jobs, summary_lines

    parallelism = parallelism or Parallelism()

    total = len(entries)
    jobs = [Job(index=i, total=total, args=list(args), experiment=flags, job_id=key_of(row))
            for i, (row, args, flags) in enumerate(entries, start=1)]
    recorder = _Recorder(store, {job.job_id: row for job, (row, _, _) in zip(jobs, entries)})

    def make_spec(job):
        name = f"job_{recorder.rows[job.job_id]}"
        container.make_job_output(name)
        return container.spec(job.args, name)

    try:
        if parallelism.max_parallel > 1 or parallelism.nodes > 1:
            from caliban.docker.scheduler import run_parallel
            from caliban.sweep.gpus import GpuPool

            pool = None
            if container.gpu and parallelism.gpus_per_node:
                from caliban.docker.engine import host_gpus

                pool = GpuPool(host_gpus())
            result = run_parallel(client, jobs, make_spec, hooks=recorder, max_parallel=parallelism.max_parallel,
                                  nodes=parallelism.nodes, gpu_pool=pool, gpus_per_job=parallelism.gpus_per_node)
        else:
            result = run_jobs(client, jobs, make_spec, hooks=recorder)
    except KeyboardInterrupt:
        for job in jobs:
            if recorder.should_start(job):
                store.mark_stopped(recorder.rows[job.job_id])
        raise
    for line in summary_lines(result):
        print(line, file=sys.stderr)
    return 1 if result.failed else 0


def _connect(gpu: bool):
    from caliban.docker.engine import check_gpu_support, connect

    client = connect()
    if gpu:
        check_gpu_support(client)
    return client


def run_local_sweep(options) -> int:
    """`caliban run` without --dry_run; `options` is `caliban.options.LocalRun`."""
    from caliban import history
    from caliban.workflows import image as images

    build = options.build
    history.check_store()  # a broken history is found before anything is built or run
    prepare_output_root(options.job.output_dir)
    client = _connect(build.gpu)
    image = options.image_id or images.build(build, cloud_key=options.cloud_key, client=client)
    recorded_build = {**build.recorded(), **options.parallelism.recorded(), "image_id": options.image_id,
                      "docker_run_args": options.docker_run_args, "env": [list(kv) for kv in options.job.env],
                      "output_dir": options.job.output_dir and os.path.abspath(options.job.output_dir)}
    with history.open_store() as store:
        group = store.create_group(options.xgroup)
        container = Container(image, build.classified_target().name, group.name, build.gpu,
                              options.cloud_key, options.run_options, options.job.env, options.job.output_dir)
        # Held while the sweep runs: `resubmit` won't start its PENDING jobs meanwhile.
        store.lock_group(group, exclusive=False)
        image_row = store.record_image(docker_id=image, build_args=recorded_build)
        pieces = list(options.sweep.pieces())
        keys = [os.urandom(6).hex() for _ in pieces]
        rows = store.add_jobs(
            group.id,
            [NewJob(args=list(args), flags=flags, caliban_key=key) for (args, flags), key in zip(pieces, keys)],
            backend=LOCAL, image_id=image_row,
        )
        key_by_row = dict(zip(rows, keys))
        entries = [(row, args, flags) for row, (args, flags) in zip(rows, pieces)]
        return _run_rows(store, client, container, entries, key_by_row.__getitem__, options.parallelism)


def _recorded_env(pairs) -> tuple[tuple[str, str], ...]:
    """The recorded --env pairs; a secret was stored without its value, which the environment gives again."""
    return tuple((name, os.environ.get(name, "") if value is None else value) for name, value in pairs or ())


def rerun_local(store: Store, jobs: Sequence, *, cloud_key: str | None) -> int:
    """`caliban resubmit` of local jobs: the recorded image rebuilt (or the recorded
    `--image_id` reused), a new PENDING job on each experiment, then the same runner."""
    from caliban.docker.run import parse_docker_run_args
    from caliban.errors import CalibanError
    from caliban.options import BuildSpec
    from caliban.workflows import image as images

    by_image: dict[int | None, list] = {}
    for job in jobs:
        experiment = store.experiment(job.experiment_id)
        by_image.setdefault(experiment.image_id, []).append((job, experiment))
    failed = 0
    for image_id, experiments in by_image.items():
        recorded = store.image(image_id).build_args if image_id is not None else {}
        if not recorded.get("target") or not recorded.get("project_dir"):
            raise CalibanError("no build arguments recorded for these local jobs; rerun them with `caliban run`")
        build = BuildSpec.from_recorded(recorded)
        prepare_output_root(recorded.get("output_dir"))
        client = _connect(build.gpu)
        image = recorded.get("image_id") or images.build(build, cloud_key=cloud_key, client=client)
        group = jobs[0].group_name
        container = Container(image, build.classified_target().name, group, build.gpu, cloud_key,
                              parse_docker_run_args(recorded.get("docker_run_args") or ""),
                              _recorded_env(recorded.get("env")), recorded.get("output_dir"))
        keys: dict[int, str] = {}
        entries = []
        for job, experiment in experiments:
            if job.status == states.PENDING and job.caliban_key:  # never started: this row runs it
                row, key = job.id, job.caliban_key
            else:
                key = os.urandom(6).hex()
                row = store.add_job(experiment.id, backend=LOCAL, caliban_key=key)
            keys[row] = key
            entries.append((row, list(experiment.args), experiment.flags or None))
        failed = max(failed, _run_rows(store, client, container, entries, keys.__getitem__,
                                       Parallelism.from_recorded(recorded)))
    return failed
