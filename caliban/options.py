"""Command lines and the environment, turned into typed, validated options.

Every subcommand starts here: its argparse namespace goes in, frozen option
objects come out, and nothing below `caliban.commands` ever sees a
namespace. All checking that can happen before any work happens here, dry
runs included: the target, `-d` directories, `--extras` against the
project's packaging metadata, `.calibanconfig`, machine and accelerator
combinations, the experiment config and its size. So a bad flag is one line
and exit 2 before an image is built or a request is sent.

This is also the one place that reads Google settings from the environment
($PROJECT_ID, $REGION, $GOOGLE_APPLICATION_CREDENTIALS,
$CALIBAN_API_ENDPOINT); a variable that is set but empty counts as unset,
as in Caliban 0.4.2. The project's `.calibanconfig` `gcloud` section sits
between the two: flags, then the config file, then the environment.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime
from typing import Any, Mapping

from caliban.errors import UsageError

# ------------------------------------------------------------------ environment


@dataclasses.dataclass(frozen=True)
class Environment:
    """The Google settings the environment supplies when no flag does."""

    project_id: str | None = None
    region: str | None = None
    cloud_key: str | None = None
    api_endpoint: str | None = None

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> "Environment":
        environ = os.environ if environ is None else environ

        def value(name: str) -> str | None:
            return (environ.get(name) or "").strip() or None

        return cls(
            project_id=value("PROJECT_ID"),
            region=value("REGION"),
            cloud_key=value("GOOGLE_APPLICATION_CREDENTIALS"),
            api_endpoint=value("CALIBAN_API_ENDPOINT"),
        )

    def under(self, config) -> "Environment":
        """These settings beneath a `caliban.calibanconfig.CalibanConfig`'s gcloud section."""
        return dataclasses.replace(self, project_id=config.project_id or self.project_id,
                                   cloud_key=config.cloud_key or self.cloud_key)


def project_config(project_dir: str | None = None):
    """The `.calibanconfig` of the project (the current directory): read and validated, dry runs too."""
    from caliban.calibanconfig import load_calibanconfig

    return load_calibanconfig(project_dir or os.getcwd())


def _flag(args: Any, name: str, default: Any = None) -> Any:
    value = getattr(args, name, None)
    return default if value in (None, "") else value


# ------------------------------------------------------------------ images


@dataclasses.dataclass(frozen=True)
class BuildSpec:
    """What an image is built from. Recorded with every job, so `resubmit`
    rebuilds exactly the image the first build made."""

    project_dir: str
    target: str | None  # as typed: 'trainer.train'; None for shell/notebook images
    gpu: bool
    extras: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    no_cache: bool = False

    def recorded(self) -> dict:
        return {
            "project_dir": self.project_dir,
            "target": self.target,
            "gpu": self.gpu,
            "extras": list(self.extras),
            "dirs": list(self.dirs),
            "no_cache": self.no_cache,
        }

    @classmethod
    def from_recorded(cls, recorded: Mapping[str, Any]) -> "BuildSpec":
        return cls(
            project_dir=recorded["project_dir"],
            target=recorded.get("target"),
            gpu=bool(recorded.get("gpu", True)),
            extras=tuple(recorded.get("extras") or ()),
            dirs=tuple(recorded.get("dirs") or ()),
            no_cache=bool(recorded.get("no_cache", False)),
        )

    def classified_target(self):
        if self.target is None:
            return None
        from caliban.sweep.targets import classify_target

        return classify_target(self.target, self.project_dir)

    def check(self, credentials_path: str | None = None) -> None:
        """Plan the image without building it: bad `-d`, `--extras` or
        `.calibanconfig` fail here, before any other work."""
        from caliban.docker.engine import plan_image

        plan_image(self.project_dir, self.classified_target(), gpu=self.gpu, extras=self.extras,
                   dirs=self.dirs, credentials_path=credentials_path)


def build_spec(args: Any, *, target: str | None, gpu: bool | None = None, config=None) -> BuildSpec:
    """`gpu` defaults to the command line's mode: --nogpu, else the config's `default_mode`."""
    if gpu is None:
        gpu = (config or project_config()).gpu_enabled(bool(_flag(args, "nogpu", False)))
    return BuildSpec(
        project_dir=os.getcwd(),
        target=target,
        gpu=gpu,
        extras=tuple(_flag(args, "extras", ()) or ()),
        dirs=tuple(_flag(args, "dir", ()) or ()),
        no_cache=bool(_flag(args, "no_cache", False)),
    )


# ------------------------------------------------------------------ sweeps


def sweep(args: Any, command: str):
    """The command's `caliban.sweep.plan.Sweep`: the experiment config loaded,
    validated and counted; a sweep over the limit is refused at once."""
    from caliban.sweep.plan import Sweep

    base = tuple(_flag(args, "script_args", ()) or ())
    path = _flag(args, "experiment_config")
    if path is None:
        return Sweep(base)
    from caliban.sweep import experiments

    config = experiments.load_experiment_config(path)
    limit = _flag(args, "max_experiments", experiments.MAX_JOBS_PER_SWEEP)
    total = experiments.check_sweep_size(config, path, limit, f"caliban {command}")
    return Sweep(base, path, config, total)


# ------------------------------------------------------------------ caliban run


@dataclasses.dataclass(frozen=True)
class LocalRun:
    """`caliban run`: a sweep of containers on the local engine."""

    build: BuildSpec
    sweep: Any  # caliban.sweep.plan.Sweep
    cloud_key: str | None
    image_id: str | None
    docker_run_args: str
    run_options: Any  # caliban.docker.run.RunOptions
    xgroup: str | None
    dry_run: bool
    output_format: str
    job: Any  # caliban.sweep.jobs.JobOptions: nodes, env, output_dir
    parallelism: Parallelism


# `caliban run`'s --output_dir unless one is given ('' for none): relative to the
# project, and never copied into an image (caliban.docker.build_context.OUTPUT_MARKER).
DEFAULT_LOCAL_OUTPUT_DIR = "caliban_outputs"


def local_run(args: Any, env: Environment | None = None) -> LocalRun:
    from caliban.docker.run import parse_docker_run_args

    config = project_config()
    env = (env or Environment.read()).under(config)
    build = build_spec(args, target=args.module, config=config)
    cloud_key = _flag(args, "cloud_key", env.cloud_key)
    image_id = _flag(args, "image_id")
    build.classified_target()  # a bad target fails first
    if image_id is None:
        build.check(cloud_key)
    docker_run_args = _flag(args, "docker_run_args", "")
    run_options = parse_docker_run_args(docker_run_args)
    jobs = sweep(args, "run")
    if jobs.total == 0:
        raise UsageError(f"experiment config {jobs.config_path!r} expands to zero experiments")
    job = job_options(args)
    if getattr(args, "output_dir", None) is None:  # not given ('' is "none"): results land where the user finds them
        job = dataclasses.replace(job, output_dir=DEFAULT_LOCAL_OUTPUT_DIR)
    return LocalRun(build, jobs, cloud_key, image_id, docker_run_args, run_options,
                    _flag(args, "xgroup"), bool(_flag(args, "dry_run", False)),
                    _flag(args, "format", "text"), job, parallelism(args, job.nodes, build.gpu))


def parallelism(args: Any, nodes: int, gpu: bool):
    """`--max_parallel`, `--nodes` and the GPUs each node gets. In GPU mode a job
    that shares the machine (K > 1 or N > 1) gets one GPU per node by default."""
    from caliban.sweep.cluster import MAX_NODES

    max_parallel = _flag(args, "max_parallel", 1)
    if nodes > MAX_NODES:
        raise UsageError(f"--nodes {nodes}: a local job runs at most {MAX_NODES} containers")
    per_node = _flag(args, "gpus_per_node") or _flag(args, "gpus_per_job")
    if per_node and not gpu:
        raise UsageError("--gpus_per_node/--gpus_per_job give GPUs to jobs, but this run is in CPU mode (--nogpu "
                         "or default_mode cpu); drop them, or run in GPU mode")
    if gpu and not per_node and (max_parallel > 1 or nodes > 1):
        per_node = 1
    return Parallelism(max_parallel, nodes, per_node or 0)


@dataclasses.dataclass(frozen=True)
class Parallelism:
    """How a local sweep uses the machine: jobs at once, nodes per job, GPUs per node."""

    max_parallel: int = 1
    nodes: int = 1
    gpus_per_node: int = 0  # 0: every GPU for a lone job (today's behaviour), or CPU mode

    def recorded(self) -> dict:
        return {"max_parallel": self.max_parallel, "nodes": self.nodes, "gpus_per_node": self.gpus_per_node}

    @classmethod
    def from_recorded(cls, recorded: dict) -> "Parallelism":
        return cls(int(recorded.get("max_parallel") or 1), int(recorded.get("nodes") or 1),
                   int(recorded.get("gpus_per_node") or 0))


# ------------------------------------------------------------------ build, shell, notebook


@dataclasses.dataclass(frozen=True)
class Interactive:
    """`caliban build`, `shell` and `notebook`: one image, maybe one container."""

    build: BuildSpec
    cloud_key: str | None
    image_id: str | None = None
    bare: bool = False
    dry_run: bool = False
    output_format: str = "text"


def interactive(args: Any, *, target: str | None, env: Environment | None = None) -> Interactive:
    config = project_config()
    env = (env or Environment.read()).under(config)
    build = build_spec(args, target=target, config=config)
    cloud_key = _flag(args, "cloud_key", env.cloud_key)
    image_id = _flag(args, "image_id")
    if image_id is None:
        build.check(cloud_key)
    return Interactive(build, cloud_key, image_id, bool(_flag(args, "bare", False)),
                       bool(_flag(args, "dry_run", False)), _flag(args, "format", "text"))


# ------------------------------------------------------------------ caliban cloud


@dataclasses.dataclass(frozen=True)
class CloudSubmit:
    """`caliban cloud`: the validated plan, and how to reach the API and registry."""

    plan: Any  # caliban.sweep.plan.CloudPlan
    build: BuildSpec | None  # None with --image_tag: nothing is built
    cloud_key: str | None
    api_endpoint: str | None
    image_repo: str | None
    rate_limit: int
    xgroup: str | None
    dry_run: bool
    output_format: str


def cloud_submit(args: Any, env: Environment | None = None, now: datetime | None = None,
                 user: str | None = None) -> CloudSubmit:
    from caliban import backends
    from caliban.docker.push import planned_image
    from caliban.history import current_user
    from caliban.sweep import jobs as job_names
    from caliban.sweep.accelerators import validate_cloud_machine
    from caliban.sweep.machine_tables import CREATE_JOBS_PER_MINUTE, DEFAULT_REGION
    from caliban.sweep.plan import CloudPlan

    config = project_config()
    env = (env or Environment.read()).under(config)
    backend = backends.get(_flag(args, "backend"))
    region = _flag(args, "region", env.region or DEFAULT_REGION)
    project_id = _flag(args, "project_id", env.project_id)
    cloud_key = _flag(args, "cloud_key", env.cloud_key)
    build = build_spec(args, target=args.module, config=config)
    machine = validate_cloud_machine(
        region=region,
        machine_type=_flag(args, "machine_type"),
        gpu_spec=_flag(args, "gpu_spec"),
        tpu_spec=_flag(args, "tpu_spec"),
        nogpu=not build.gpu,
        force=bool(_flag(args, "force", False)),
        backend=backend.NAME,
    )
    timeout = _flag(args, "timeout")
    timeout_seconds = job_names.parse_duration(timeout, "--timeout") if timeout else None
    target = build.classified_target()
    image_tag = _flag(args, "image_tag")
    image_repo = _flag(args, "image_repo")
    warnings = list(machine.warnings)
    if image_tag:
        image, placeholder, build_or_none = image_tag, False, None
        if build.dirs or build.extras:
            warnings.append("--image_tag skips the build, so --dir and --extras are ignored")
    else:
        build.check(cloud_key)
        repo = image_repo or config.image_repo
        image, placeholder, build_or_none = planned_image(region, project_id, repo, build.project_dir), True, build
    jobs = sweep(args, "cloud")
    if jobs.total == 0:
        warnings.append("the experiment config expands to zero experiments: no jobs")
    plan = CloudPlan(
        backend=backend.NAME,
        project_id=project_id,
        region=region,
        machine=machine,
        name=_flag(args, "name") or job_names.default_job_name(user or current_user(fallback="user")),
        timestamp=job_names.job_timestamp(now or datetime.now()),
        run_token=job_names.new_run_token(),
        user_labels=tuple(_flag(args, "label", ()) or ()),
        sweep=jobs,
        image=image,
        image_is_placeholder=placeholder,
        command=tuple(target.command),
        options=job_options(args, machine, timeout_seconds),
        warnings=tuple(warnings),
    )
    plan.check_backend_options()
    if plan.options.output_dir and not plan.options.output_dir.startswith("gs://"):
        raise UsageError(f"--output_dir {plan.options.output_dir!r}: cloud jobs write to Cloud Storage; "
                         "give a gs://BUCKET/PATH URI")
    dry_run = bool(_flag(args, "dry_run", False))
    if not dry_run and not project_id:
        raise UsageError("no project id: pass --project_id or set $PROJECT_ID (not needed with --dry_run)")
    return CloudSubmit(plan, build_or_none, cloud_key, _flag(args, "api_endpoint", env.api_endpoint),
                       image_repo, _flag(args, "rate_limit", CREATE_JOBS_PER_MINUTE), _flag(args, "xgroup"),
                       dry_run, _flag(args, "format", "text"))


def job_options(args: Any, machine=None, timeout_seconds: int | None = None):
    """The `caliban.sweep.jobs.JobOptions` of a command line: what every job of the sweep is given.

    With a validated cloud `machine`, the scheduling (Spot, Dynamic Workload
    Scheduler, reservation) and boot disk are checked against it too.
    """
    from caliban.sweep.jobs import JobOptions

    output_dir = _flag(args, "output_dir")
    if output_dir is not None and "\n" in output_dir:
        raise UsageError(f"--output_dir {output_dir!r}: a path cannot contain a newline")
    common = dict(nodes=_flag(args, "nodes", 1), env=tuple(_flag(args, "env", ()) or ()), output_dir=output_dir)
    if machine is None:
        return JobOptions(**common)
    from caliban.sweep.accelerators import validate_disk, validate_scheduling

    scheduling = validate_scheduling(
        machine, spot=bool(_flag(args, "spot", False)), flex_start=bool(_flag(args, "flex_start", False)),
        max_wait=_flag(args, "max_wait"), reservation=_flag(args, "reservation"), nodes=common["nodes"],
        timeout_seconds=timeout_seconds, force=bool(_flag(args, "force", False)),
    )
    disk = validate_disk(_flag(args, "boot_disk_size"), _flag(args, "boot_disk_type"))
    return JobOptions(
        **common,
        boot_disk_size_gb=disk.size_gb,
        boot_disk_type=disk.disk_type,
        service_account=_flag(args, "service_account"),
        spot=scheduling.strategy == "SPOT",
        flex_start=scheduling.strategy == "FLEX_START",
        max_wait_seconds=scheduling.max_wait_seconds,
        restart_on_worker_restart=bool(_flag(args, "restart_on_worker_restart", False)),
        reservation=scheduling.reservation,
        timeout_seconds=timeout_seconds,
    )


# ------------------------------------------------------------------ status, stop, resubmit


@dataclasses.dataclass(frozen=True)
class RecordedJobs:
    """Where the jobs of the history live. Flags win; otherwise each job keeps
    what the store recorded when it was sent; then the environment."""

    project_id: str | None = None
    region: str | None = None
    cloud_key: str | None = None
    api_endpoint: str | None = None
    backend: str | None = None
    environment: Environment = dataclasses.field(default_factory=Environment)


def recorded_jobs(args: Any, env: Environment | None = None) -> RecordedJobs:
    backend = _flag(args, "backend")
    if backend is not None:
        from caliban import backends

        backends.get(backend)  # an unknown name is a usage error here
    return RecordedJobs(
        project_id=_flag(args, "project_id"),
        region=_flag(args, "region"),
        cloud_key=_flag(args, "cloud_key"),
        api_endpoint=_flag(args, "api_endpoint"),
        backend=backend,
        environment=env or Environment.read(),
    )
