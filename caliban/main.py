"""The `caliban` command line: builds the argparse tree and dispatches.

Nothing heavy is imported here: each subcommand lives in
`caliban/commands/<name>.py` and is imported only when it runs, so
`caliban --help` never loads docker-py or the Google API client.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import sys

from caliban import __version__
from caliban.backends import NAMES as BACKEND_NAMES
from caliban.errors import CalibanError
from caliban.sweep.machine_tables import CREATE_JOBS_PER_MINUTE as DEFAULT_RATE_LIMIT
from caliban.sweep.machine_tables import DEFAULT_REGION

COMMANDS = ("run", "cloud", "build", "shell", "notebook", "status", "stop", "resubmit", "logs")


# ------------------------------------------------------------ flag types


def _accelerator_type(kind: str):
    def parse(text: str):
        from caliban.sweep.accelerators import parse_accelerator_spec

        try:
            return parse_accelerator_spec(text, kind)
        except CalibanError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    parse.__name__ = f"{kind}_spec"
    return parse


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"label {text!r} must look like KEY=VALUE (e.g. -l epochs=2)")
    return key, value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _watch_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 2 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 2 to 3600")
    return value


def _env_var(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(
            f"{text!r} must look like NAME=VALUE with NAME made of letters, digits and '_' (e.g. --env SEED=1)")
    return name, value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of lines (0 or more)")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"port {text!r} is out of range (1-65535)")
    return value


class _HelpFull(argparse.Action):
    """`--helpfull`, as in the original: this command's help plus the global flags."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        print(
            "\nglobal flags:\n"
            "  --version             print Caliban's version and exit\n"
            "\nenvironment:\n"
            "  PROJECT_ID                      default for --project_id\n"
            "  REGION                          default for --region\n"
            "  GOOGLE_APPLICATION_CREDENTIALS  default for --cloud_key\n"
            "  CALIBAN_API_ENDPOINT            default for --api_endpoint\n"
            "  CALIBAN_DB_URL                  where the job history lives (~/.caliban/caliban.db)\n"
            "  CALIBAN_BASE_IMAGE              override the base image of built images"
        )
        parser.exit()


# ------------------------------------------------------------ flag groups


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--helpfull", action=_HelpFull, help="show full help message and exit")


def _add_build_flags(parser: argparse.ArgumentParser, gpu_help: str = "Disable GPU mode and force CPU-only.") -> None:
    parser.add_argument("--nogpu", action="store_true", help=gpu_help)
    parser.add_argument(
        "--cloud_key",
        help="Path to a Google Cloud service account key. (Defaults to $GOOGLE_APPLICATION_CREDENTIALS.)",
    )
    parser.add_argument(
        "--extras", action="append", default=[],
        help="setup.py / pyproject.toml dependency extras to install (repeatable).",
    )
    parser.add_argument(
        "-d", "--dir", action="append", default=[],
        help="Extra directories to include. List these from large to small to take full "
        "advantage of Docker's build cache.",
    )
    parser.add_argument("--no_cache", action="store_true", help="Build the image without Docker's layer cache.")


def _add_job_flags(parser: argparse.ArgumentParser) -> None:
    """What both `run` and `cloud` give every job."""
    parser.add_argument(
        "--nodes", type=_positive_int, default=1, metavar="N",
        help="Machines per job: a primary and N-1 workers, with the environment Vertex AI's distributed "
             "training gives them. (Defaults to 1.)",
    )
    parser.add_argument(
        "--env", action="append", default=[], type=_env_var, metavar="NAME=VALUE",
        help="An environment variable for the job's containers (repeatable).",
    )
    parser.add_argument(
        "--output_dir", metavar="URI",
        help="Where jobs write their results: each job gets its own folder under it and the AIP_MODEL_DIR, "
             "AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR variables pointing into it. A gs:// URI on "
             "the cloud; a host directory locally (defaults to caliban_outputs in the project, never "
             "copied into an image; '' for none).",
    )


def _add_sweep_flags(parser: argparse.ArgumentParser, dry_run_help: str) -> None:
    parser.add_argument(
        "--experiment_config",
        help="Path to an experiment config (.json, .yaml or .yml), or 'stdin' (or '-') to read "
        "from standard input.",
    )
    parser.add_argument("--dry_run", action="store_true", help=dry_run_help)
    parser.add_argument(
        "--max_experiments", type=_positive_int, metavar="N",
        help="Refuse a sweep of more than N jobs. (Defaults to 10,000.)",
    )
    parser.add_argument(
        "--format", choices=("text", "json"), default="text",
        help="Output of --dry_run: a readable preview, or one JSON array on stdout.",
    )
    parser.add_argument(
        "--xgroup", help="Experiment group recorded in the job history. (Defaults to <user>-<time>.)"
    )


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "module",
        help="Code to execute, in either 'trainer.train' or 'trainer/train.py' format. "
        "Accepts python scripts, modules or a path to an arbitrary script.",
    )


def _add_cloud_api_flags(parser: argparse.ArgumentParser, recorded_defaults: bool) -> None:
    """Where and how to reach the cloud API; `status`/`stop` default to what the store recorded."""

    parser.add_argument(
        "--project_id",
        help="ID of the Google Cloud project for job submission and images. (Defaults to "
        "$PROJECT_ID" + (", or what the job history recorded" if recorded_defaults else
                          "; errors if both the argument and $PROJECT_ID are empty") + ".)",
    )
    parser.add_argument(
        "--region",
        help="Region for cloud job submission and image persistence. (Defaults to "
        + ("what the job history recorded" if recorded_defaults else f"$REGION or '{DEFAULT_REGION}'") + ".)",
    )
    if recorded_defaults:
        parser.add_argument(
            "--cloud_key", default=None,
            help="Path to a service account key. (Defaults to $GOOGLE_APPLICATION_CREDENTIALS, "
            "else Application Default Credentials.)",
        )
    parser.add_argument(
        "--api_endpoint",
        help="Send API requests to this URL instead of Google's (private endpoints, tests). "
        "(Defaults to $CALIBAN_API_ENDPOINT.)",
    )
    parser.add_argument(
        "--backend", choices=BACKEND_NAMES, default=None,
        help="Vertex AI custom jobs (default), or the legacy AI Platform Training API (ml v1).",
    )


def _add_submission_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image_repo",
        help="Push images to HOST/PATH. (Defaults to the .calibanconfig 'image_repo' key, else "
        "Artifact Registry {region}-docker.pkg.dev/{project_id}/caliban.)",
    )
    parser.add_argument(
        "--rate_limit", type=_positive_int, default=DEFAULT_RATE_LIMIT,
        help=f"Job creations per minute per region. (Defaults to {DEFAULT_RATE_LIMIT}, the API quota.)",
    )


# --------------------------------------------------------------- parsers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caliban",
        description="Run your research code in Docker: locally, or as training jobs on Google Cloud.",
        epilog="Everything after '--' is passed through to your code. Flags may be spelled with dashes, "
        "as gcloud does: --gpu-spec is --gpu_spec.",
    )
    parser.add_argument("--version", action="version", version=f"caliban {__version__}")
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="Run a job (or a sweep of jobs) in a local Docker container.")
    _add_common(run)
    _add_build_flags(run)
    _add_sweep_flags(run, "Print the docker commands that would run, and run nothing.")
    _add_job_flags(run)
    run.add_argument(
        "--max_parallel", type=_positive_int, default=1, metavar="K",
        help="Run up to K experiments at once. (Defaults to 1: one after another.)",
    )
    run.add_argument(
        "--gpus_per_job", type=_positive_int, metavar="G",
        help="In GPU mode, GPUs each job gets, disjoint from the others'. (Defaults to 1 with --max_parallel > 1.)",
    )
    run.add_argument(
        "--gpus_per_node", type=_positive_int, metavar="G",
        help="In GPU mode, GPUs each replica of a --nodes job gets. (Defaults to 1 with --nodes > 1.)",
    )
    run.add_argument("--image_id", help="Run this existing image instead of building one.")
    run.add_argument(
        "--docker_run_args", default="",
        help="Extra arguments for each container, as for `docker run` (e.g. \"--shm-size 2g\").",
    )
    _add_target(run)

    cloud = sub.add_parser(
        "cloud", help="Submit a job (or a sweep of jobs) to Vertex AI (or AI Platform) training."
    )
    _add_common(cloud)
    _add_build_flags(cloud)
    _add_sweep_flags(cloud, "Don't actually submit; show every job that would be submitted. "
                     "Builds nothing, pushes nothing, reads no credentials.")
    cloud.add_argument(
        "--image_tag",
        help="Docker image tag accessible to your project. If supplied, Caliban skips the build "
        "and push steps and uses this image.",
    )
    _add_cloud_api_flags(cloud, recorded_defaults=False)
    _add_job_flags(cloud)
    cloud.add_argument(
        "--machine_type",
        help="Cloud machine type to request. Defaults to 'n1-standard-8' in GPU mode, or "
        "'n1-highcpu-32' if --nogpu is passed.",
    )
    cloud.add_argument(
        "--gpu_spec", metavar="NUMxGPU_TYPE", type=_accelerator_type("gpu"),
        help="Type and number of GPUs for each job, e.g. 2xV100 or 1xL4. Defaults to 1xP100 in "
        "GPU mode or None if --nogpu is passed.",
    )
    cloud.add_argument(
        "--tpu_spec", metavar="NUMxTPU_TYPE", type=_accelerator_type("tpu"),
        help="Type and number of TPUs to request for each job, e.g. 8xV3. Defaults to None.",
    )
    cloud.add_argument(
        "--force", action="store_true",
        help="Force past validations of region, machine type and accelerator combinations and "
        "submit the job as specified.",
    )
    cloud.add_argument("--name", help="Job name for cloud jobs. (Defaults to caliban_<user>.)")
    cloud.add_argument(
        "-l", "--label", metavar="KEY=VALUE", action="append", default=[], type=_label,
        help="Extra label k=v pair to submit to Cloud (repeatable).",
    )
    _add_submission_flags(cloud)
    cloud.add_argument("--service_account", help="Service account email the job runs as (Vertex).")
    cloud.add_argument("--spot", action="store_true", help="Run on Spot VMs (Vertex scheduling strategy SPOT).")
    cloud.add_argument(
        "--flex_start", action="store_true",
        help="Wait for capacity with the Dynamic Workload Scheduler (Vertex scheduling strategy FLEX_START).",
    )
    cloud.add_argument(
        "--max_wait", metavar="DURATION",
        help="With --flex_start: how long the job may wait for its machines, e.g. 2h; 0 waits as long as it "
             "takes. (Defaults to the API's: 1 day.)",
    )
    cloud.add_argument(
        "--restart_on_worker_restart", action="store_true",
        help="Restart the whole job when a worker restarts (e.g. a Spot VM was preempted); for "
             "multi-node code that cannot survive losing a worker.",
    )
    cloud.add_argument("--reservation", metavar="NAME",
                       help="Run on this Compute Engine reservation (its name or resource name).")
    cloud.add_argument("--boot_disk_size", metavar="GB", type=_positive_int, help="Boot disk size of each machine.")
    cloud.add_argument("--boot_disk_type", metavar="TYPE", help="Boot disk type, e.g. pd-ssd or pd-standard.")
    cloud.add_argument("--timeout", help="Maximum job run time, e.g. 3600s, 90m or 2h (Vertex).")
    _add_target(cloud)

    build = sub.add_parser("build", help="Build the Docker image for a target and print its id.")
    _add_common(build)
    _add_build_flags(build)
    _add_target(build)

    for name, help_text in (
        ("shell", "Open an interactive shell in the project's image, with the current directory mounted."),
        ("notebook", "Start a Jupyter notebook server in the project's image."),
    ):
        interactive = sub.add_parser(name, help=help_text)
        _add_common(interactive)
        _add_build_flags(interactive)
        interactive.add_argument(
            "--bare", action="store_true", help="Don't mount your $HOME directory into the container."
        )
        interactive.add_argument("--image_id", help="Use this existing image instead of building one.")
        if name == "shell":
            interactive.add_argument("--shell", default="bash", choices=("bash", "sh", "zsh"),
                                     help="Shell to start. (Defaults to bash.)")
        else:
            interactive.add_argument("--lab", action="store_true", help="Start JupyterLab instead of Jupyter Notebook.")
            interactive.add_argument("-p", "--port", type=_port,
                                     help="Port for the server. (Defaults to the first free port from 8888.)")
            interactive.add_argument("--jupyter_version", help="Version of jupyter to install (pip spec).")

    status = sub.add_parser("status", help="Show the job history: groups, experiments and their latest jobs.")
    _add_common(status)
    status.add_argument("--xgroup", help="Only this experiment group.")
    status.add_argument("--max_jobs", type=_positive_int, default=8,
                        help="Most recent experiments the table shows per group (--format json lists all). "
                             "(Defaults to 8.)")
    status.add_argument("--format", choices=("text", "json"), default="text", help="A table, or JSON.")
    status.add_argument("--watch", action="store_true",
                        help="Refresh until every job shown has finished, then exit: the table is redrawn "
                             "on a terminal and printed again when a status changes elsewhere; with "
                             "--format json, the JSON is printed once, at the end.")
    status.add_argument("--interval", type=_watch_interval, metavar="SECONDS",
                        help="Seconds between refreshes with --watch, 2 to 3600. (Defaults to 10.)")
    _add_cloud_api_flags(status, recorded_defaults=True)

    stop = sub.add_parser("stop", help="Stop the running jobs of an experiment group (or all of yours).")
    _add_common(stop)
    stop.add_argument("--xgroup", help="Only this experiment group.")
    stop.add_argument("--dry_run", action="store_true", help="Show what would be stopped.")
    stop.add_argument("--yes", action="store_true", help="Don't ask for confirmation.")
    _add_cloud_api_flags(stop, recorded_defaults=True)
    stop.add_argument(
        "--rate_limit", type=_positive_int, default=DEFAULT_RATE_LIMIT,
        help=f"Cancel requests per minute; they count against the same quota as creates. "
             f"(Defaults to {DEFAULT_RATE_LIMIT}.)",
    )

    resubmit = sub.add_parser(
        "resubmit", help="Resubmit the failed, stopped and never-sent jobs of an experiment group."
    )
    _add_common(resubmit)
    resubmit.add_argument("--xgroup", required=True, help="The experiment group to resubmit.")
    resubmit.add_argument("--all_jobs", action="store_true", help="Resubmit every job, not only the unfinished ones.")
    resubmit.add_argument("--dry_run", action="store_true", help="Show what would be resubmitted.")
    resubmit.add_argument("--yes", action="store_true", help="Don't ask for confirmation.")
    _add_cloud_api_flags(resubmit, recorded_defaults=True)
    _add_submission_flags(resubmit)

    logs = sub.add_parser("logs", help="Print what a job (or every job of an experiment group) printed.")
    _add_common(logs)
    logs.add_argument(
        "target", metavar="TARGET",
        help="A job (its id or remote id as `caliban status` shows it, its name or caliban_key) or an "
        "experiment group (--xgroup name: every job's lines, prefixed with [job ID]).",
    )
    logs.add_argument("-f", "--follow", action="store_true",
                      help="Keep printing new lines until the job (every job of the group) ends.")
    logs.add_argument("--tail", metavar="N", type=_non_negative_int,
                      help="Only the last N lines (of each job). (Defaults to all.)")
    logs.add_argument("--timestamps", action="store_true", help="Start each line with when it was printed.")
    _add_cloud_api_flags(logs, recorded_defaults=True)
    return parser


# -------------------------------------------------------------- dispatch


def _split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1:]
    return argv, []


def _underscore_spelling(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """gcloud's dash spelling of every flag (`--experiment-config`, `--gpu-spec`) as an alias.

    Rewriting the command line, rather than registering a second option string
    per flag, keeps argparse's prefix matching unambiguous (`--gpu` must still
    mean `--gpu_spec`, as it did in 0.4.2) and the help text unchanged. Only
    tokens that name a flag of the chosen command are touched, so values and
    anything after `--` pass unchanged.
    """
    commands = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
    options: set[str] = set(parser._option_string_actions)
    command_seen = False
    rewritten = []
    for token in argv:
        if token in commands and not command_seen:  # global flags take no values: the first word is the command
            options, command_seen = set(commands[token]._option_string_actions), True
        if token.startswith("--") and "-" in token[2:].split("=", 1)[0]:
            name, eq, value = token.partition("=")
            alias = "--" + name[2:].replace("-", "_")
            if alias in options or any(o.startswith(alias) for o in options if o.startswith("--")):
                token = alias + eq + value
        rewritten.append(token)
    return rewritten


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    own_args, script_args = _split_passthrough(argv)
    own_args = _underscore_spelling(parser, own_args)
    args, unknown = parser.parse_known_args(own_args)
    if unknown:
        flags_like = [u for u in unknown if u.startswith("-")]
        target = getattr(args, "module", None)
        if target is None or (flags_like and own_args.index(flags_like[0]) < own_args.index(target)):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        kept = list(own_args)
        for item in unknown:
            kept.remove(item)
        corrected = " ".join(shlex.quote(a) for a in ["caliban", *kept, "--", *unknown, *script_args])
        parser.error(
            f"arguments after the target must follow '--' to reach your code: "
            f"{' '.join(unknown)}. Did you mean: {corrected}"
        )
    args.script_args = script_args
    if args.command not in ("run", "cloud", "build") and script_args:
        parser.error(f"caliban {args.command} takes no pass-through arguments after '--'")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        command = importlib.import_module(f"caliban.commands.{args.command}")
    except ModuleNotFoundError as exc:
        if exc.name != f"caliban.commands.{args.command}":
            raise
        print(f"caliban {args.command}: not available yet in this version of Caliban.", file=sys.stderr)
        return 3
    try:
        return int(command.main(args) or 0)
    except CalibanError as exc:
        print(f"caliban {args.command}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"caliban {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    except OSError as exc:  # a broken environment (disk full, permissions): one line, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"caliban {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


def _reader_went_away() -> int:
    """`caliban status --format json | head -1`: the reader closed the pipe; end quietly, as `cat` does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, the shell's status for a writer whose reader left
