"""Building Caliban images on a Docker engine, through docker-py.

`build_image` is the one entry point the commands (run, shell, notebook,
build, cloud) use; `plan_image` is its pure-ish first half (it reads the
project directory but never talks to the engine), which dry runs show.
docker-py is imported inside functions only, so importing this module is
cheap and works without docker-py installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from caliban import __version__
from caliban.docker.build_context import BuildContext, make_build_context
from caliban.calibanconfig import (
    CalibanConfig,
    base_image_origin,
    load_calibanconfig,
    resolve_apt_packages,
)
from caliban.cloud.auth import ADC_PATH
from caliban.docker.dockerfile import (
    PACKAGING_FILES,
    DockerfileSpec,
    dockerfile_text,
    project_install_instruction,
)
from caliban.errors import CalibanError, UsageError

LABEL_PREFIX = "caliban"
# Same value = same build inputs (project, mode, target, extras, dirs, user,
# jupyter): a newer image with this label supersedes an older untagged one.
BUILD_KEY_LABEL = f"{LABEL_PREFIX}.build_key"


# --------------------------------------------------------------------------
# Engine connection


def connect():
    """A docker-py client for the engine in the environment (DOCKER_HOST...).

    Raises CalibanError when the engine cannot be reached."""
    try:
        import docker
    except ImportError:  # pragma: no cover - a packaging error
        raise CalibanError("docker-py is not installed: pip install docker") from None
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=int(os.environ.get("CALIBAN_DOCKER_TIMEOUT", "600")))
        client.ping()
    except Exception as exc:  # DockerException, requests errors, socket errors
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CalibanError(
            f"cannot reach the Docker engine at {where} ({reason}); start Docker or set DOCKER_HOST"
        ) from None
    return client


def missing_gpu_runtime(client) -> str | None:
    """Why this engine cannot give containers GPUs (its runtimes), or None when it can."""
    runtimes = sorted((client.info().get("Runtimes") or {}).keys())
    if "nvidia" in runtimes:
        return None
    return f"this Docker engine has no NVIDIA container runtime (runtimes: {', '.join(runtimes) or 'none'})"


def check_gpu_support(client) -> None:
    """Fail early, with the --nogpu hint, when the engine cannot give GPUs."""
    problem = missing_gpu_runtime(client)
    if problem:
        raise CalibanError(f"GPU mode needs the NVIDIA container runtime, but {problem}; "
                           "pass --nogpu to run on the CPU")


def host_gpus() -> list[str]:
    """The host's GPUs (UUIDs, as `--gpus device=` takes them), from nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CalibanError(f"cannot list this machine's GPUs with nvidia-smi ({exc}); pass --nogpu to run on "
                           "the CPU") from None
    if out.returncode != 0:
        raise CalibanError(f"nvidia-smi failed ({out.stderr.strip()[:200]}); pass --nogpu to run on the CPU")
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


# --------------------------------------------------------------------------
# Planning: what goes into the image (reads the project, no engine)


# An extra's name as a requirement may spell it: PEP 508's `identifier`
# (https://peps.python.org/pep-0508/#names; PEP 685 compares them normalised).
_EXTRA_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


def declared_extras(project_dir: str) -> set[str]:
    """Extras declared in setup.py / setup.cfg / pyproject.toml (best effort:
    setup.py is read, never executed)."""
    found: set[str] = set()
    setup_py = os.path.join(project_dir, "setup.py")
    if os.path.isfile(setup_py):
        with open(setup_py, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        # The keys of `extras_require={...}` or `extras_require=dict(...)`,
        # or of any dict literal in the file when it is built elsewhere.
        match = re.search(r"extras_require\s*=\s*(\{.*?\n\s*\}|dict\(.*?\n\s*\))", text, re.S)
        body = match.group(1) if match else (text if "extras_require" in text else "")
        found |= set(re.findall(r"""["']([A-Za-z0-9_.\-]+)["']\s*:""", body))
        if body.startswith("dict("):
            found |= set(re.findall(r"""\b([A-Za-z_][A-Za-z0-9_]*)\s*=\s*\[""", body))
    setup_cfg = os.path.join(project_dir, "setup.cfg")
    if os.path.isfile(setup_cfg):
        import configparser

        parser = configparser.ConfigParser()
        try:
            parser.read(setup_cfg, encoding="utf-8")
            if parser.has_section("options.extras_require"):
                found |= set(parser.options("options.extras_require"))
        except configparser.Error:
            pass
    pyproject = os.path.join(project_dir, "pyproject.toml")
    if os.path.isfile(pyproject):
        with open(pyproject, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        try:
            import tomllib  # Python 3.11+

            data = tomllib.loads(text)
            found |= set((data.get("project") or {}).get("optional-dependencies") or {})
        except ImportError:  # Python 3.10: read the table's keys by hand
            table = re.search(r"^\[project\.optional-dependencies\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
            if table:
                found |= set(re.findall(r"""^\s*["']?([A-Za-z0-9_.\-]+)["']?\s*=""", table.group(1), re.M))
        except (ValueError, AttributeError):  # TOMLDecodeError is a ValueError
            pass
    return found


def resolve_ca_bundle(config: CalibanConfig, project_dir: str) -> str | None:
    if config.ca_bundle is False:
        return None
    if config.ca_bundle is True:
        candidates = [
            os.environ.get("SSL_CERT_FILE"),
            ssl.get_default_verify_paths().cafile,
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/cert.pem",
        ]
        for path in candidates:
            if path and os.path.isfile(path):
                return path
        raise UsageError(f"{config.source}: ca_bundle is true but no CA bundle was found on this machine; give its path")
    path = os.path.expanduser(config.ca_bundle)
    path = path if os.path.isabs(path) else os.path.join(project_dir, path)
    if not os.path.isfile(path):
        raise UsageError(f"{config.source}: ca_bundle {config.ca_bundle!r} does not exist")
    return path


def credential_paths(credentials_path: str | None = None) -> list[str]:
    """Files that must never enter an image."""
    paths = [credentials_path, os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"), os.path.expanduser(ADC_PATH)]
    return [os.path.abspath(os.path.expanduser(p)) for p in paths if p]


# A commit id as `git rev-parse` prints it (SHA-1 or SHA-256 object format).
_COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

# Config that could make the one git command below start a program (off for
# `rev-parse` anyway, forced off in case a future git reads them), and no
# discovery of a bare repository planted in the project (git-config(1),
# safe.bareRepository).
_GIT_HARDENING = (
    "-c", "core.fsmonitor=false",
    "-c", "core.hooksPath=/dev/null",
    "-c", "safe.bareRepository=explicit",
)


def git_commit(project_dir: str) -> str | None:
    """The HEAD commit of the repository holding project_dir, for the image label.

    The project (and its .git/config, hooks and .gitattributes) is untrusted
    input that runs on the host here. Only `git rev-parse`, which resolves a
    ref from files and starts no program, is run. Whether the work tree is
    dirty is not recorded: answering it means `git status`, which runs the
    repository's fsmonitor hook, its clean/process filter drivers on modified
    files and, when it refreshes the index, the post-index-change hook; there
    is no switch that turns every repository-defined filter off, and nothing
    reads such a label. Git's own `safe.directory` ownership check stays in
    force: a repository owned by someone else yields no commit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # no GIT_DIR & co from the caller
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", GIT_PAGER="cat")
    try:
        head = subprocess.run(
            ["git", "--no-pager", "--no-optional-locks", *_GIT_HARDENING,
             "-C", project_dir, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
            capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL, env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit if head.returncode == 0 and _COMMIT_ID.fullmatch(commit) else None


@dataclass
class ImagePlan:
    """Everything needed to build one image, decided before talking to Docker."""

    project_dir: str
    spec: DockerfileSpec
    dockerfile: str
    include: list[str]
    labels: dict[str, str]
    ca_bundle_path: str | None = None
    secret_paths: list[str] = field(default_factory=list)
    base_image_origin: str = "Caliban's default"  # where the base image was chosen, for the fix


def plan_image(
    project_dir: str,
    target: Any = None,
    *,
    gpu: bool,
    extras: Iterable[str] = (),
    dirs: Iterable[str] = (),
    config: CalibanConfig | None = None,
    credentials_path: str | None = None,
    user: tuple[int, int] | None = None,
    jupyter: str | None = None,
    labels: dict[str, str] | None = None,
) -> ImagePlan:
    """Decide the Dockerfile and context for `target` (a caliban.sweep.targets.Target,
    or None for a code-less shell/notebook image)."""
    project_dir = os.path.abspath(project_dir)
    if not os.path.isdir(project_dir):
        raise UsageError(f"project directory {project_dir} does not exist")
    config = config if config is not None else load_calibanconfig(project_dir)
    uid, gid = user if user is not None else (os.getuid(), os.getgid())

    has_requirements = os.path.isfile(os.path.join(project_dir, "requirements.txt"))
    packaging = tuple(f for f in PACKAGING_FILES if os.path.isfile(os.path.join(project_dir, f)))
    chosen_extras: list[str] = []
    for extra in extras:
        for piece in str(extra).split(","):
            piece = piece.strip()
            if piece and not _EXTRA_NAME.fullmatch(piece):
                raise UsageError(f"--extras {piece!r} is not an extra name (letters, digits, '.', '_', '-')")
            if piece and piece not in chosen_extras:
                chosen_extras.append(piece)
    if packaging:
        auto = "gpu" if gpu else "cpu"
        if auto in declared_extras(project_dir) and auto not in chosen_extras:
            chosen_extras.append(auto)
    elif chosen_extras:
        raise UsageError(
            f"--extras {','.join(chosen_extras)} given but {project_dir} has no setup.py or pyproject.toml"
        )

    dir_list: list[str] = []
    for d in dirs:
        rel = os.path.relpath(os.path.abspath(d), os.getcwd()) if os.path.isabs(d) else d
        rel = os.path.normpath(rel).replace(os.sep, "/")
        if rel.startswith("..") or not os.path.isdir(os.path.join(project_dir, rel)):
            raise UsageError(f"-d/--dir {d!r}: not a directory inside {project_dir}")
        if rel not in dir_list:
            dir_list.append(rel)

    ca_path = resolve_ca_bundle(config, project_dir)
    package_dir = getattr(target, "package_dir", None) if target is not None else None
    command = tuple(getattr(target, "command", ()) or ()) if target is not None else ()
    commit = git_commit(project_dir)
    all_labels = {
        f"{LABEL_PREFIX}.version": __version__,
        f"{LABEL_PREFIX}.source_dir": project_dir,
        f"{LABEL_PREFIX}.mode": "gpu" if gpu else "cpu",
    }
    if target is not None:
        all_labels[f"{LABEL_PREFIX}.target"] = str(getattr(target, "name", ""))
    if commit:
        all_labels[f"{LABEL_PREFIX}.git_commit"] = commit
    all_labels[BUILD_KEY_LABEL] = hashlib.sha256(json.dumps(
        [project_dir, gpu, all_labels.get(f"{LABEL_PREFIX}.target"), chosen_extras, dir_list, [uid, gid], jupyter]
    ).encode()).hexdigest()[:16]
    all_labels.update(labels or {})
    base_image, origin = base_image_origin(config, gpu)
    spec = DockerfileSpec(
        base_image=base_image,
        uid=uid,
        gid=gid,
        apt_packages=resolve_apt_packages(config, gpu),
        has_requirements=has_requirements,
        packaging_files=packaging,
        extras=tuple(chosen_extras),
        dirs=tuple(dir_list),
        package_dir=package_dir,
        command=command,
        ca_bundle=ca_path is not None,
        jupyter=jupyter,
        labels=tuple(all_labels.items()),
    )
    include = (["requirements.txt"] if has_requirements else []) + list(packaging) + dir_list
    if package_dir is not None:
        include.append(package_dir)

    return ImagePlan(
        project_dir=project_dir,
        spec=spec,
        dockerfile=dockerfile_text(spec),
        include=include,
        labels=all_labels,
        ca_bundle_path=ca_path,
        secret_paths=credential_paths(credentials_path),
        base_image_origin=origin,
    )


# --------------------------------------------------------------------------
# Building


@dataclass
class BuildStep:
    number: int
    total: int
    instruction: str
    cached: bool = False
    output: list[str] = field(default_factory=list)


@dataclass
class BuildResult:
    image_id: str
    steps: list[BuildStep]
    plan: ImagePlan
    context: BuildContext


_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_BUILT = re.compile(r"^Successfully built ([0-9a-f]+)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the engine colours RUN steps' stderr


class BuildDisplay:
    """Build progress on stderr: a tqdm bar on a terminal; plain lines
    otherwise ("steps": for CI logs, `make demo`, pipes), or nothing ("quiet").

    Plain lines name each step as it starts and, while one runs longer than
    `heartbeat` seconds, repeat its number, elapsed time and latest output
    line every `heartbeat` seconds: a slow `pip install` must not look like a
    hang in a log that has no progress bar.
    """

    def __init__(self, mode: str = "auto", stream=None, heartbeat: float = 5.0):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "steps"
        if mode not in ("bar", "steps", "quiet"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self.heartbeat = heartbeat
        self._bar = None
        self._lock = threading.Lock()
        self._running: BuildStep | None = None
        self._started = self._said = 0.0
        self._latest = ""
        self._done = threading.Event()
        self._ticker: threading.Thread | None = None

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def step(self, step: BuildStep) -> None:
        if self.mode == "steps":
            with self._lock:
                self._print(f"[build] step {step.number}/{step.total}: {step.instruction[:100]}")
                self._running, self._latest = step, ""
                self._started = self._said = time.monotonic()
            if self._ticker is None:
                self._done = threading.Event()
                self._ticker = threading.Thread(target=self._tick, name="caliban-build-heartbeat", daemon=True)
                self._ticker.start()
        elif self.mode == "bar":
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=step.total, file=self.stream, unit="step", leave=False, dynamic_ncols=True)
            self._bar.n = step.number - 1
            self._bar.set_description_str(step.instruction[:40])

    def _tick(self) -> None:
        while not self._done.wait(min(1.0, self.heartbeat)):
            with self._lock:
                step, now = self._running, time.monotonic()
                if step is None or step.cached or now - self._said < self.heartbeat:
                    continue
                self._said = now
                latest = f": {self._latest[:120]}" if self._latest else ""
                self._print(f"[build] step {step.number}/{step.total} running for {now - self._started:.0f}s{latest}")

    def line(self, step: BuildStep | None, text: str) -> None:
        if self.mode == "bar" and self._bar is not None and text.strip():
            self._bar.set_postfix_str(text.strip()[:50], refresh=True)
        elif self.mode == "steps" and text.strip():
            with self._lock:
                self._latest = " ".join(text.split())

    def cached(self, step: BuildStep) -> None:
        pass

    def summary(self, steps: list[BuildStep], image_id: str) -> None:
        if self.mode != "quiet":
            cached = sum(1 for s in steps if s.cached)
            short = image_id.split(":")[-1][:12]
            self._print(f"[build] built {short} ({cached}/{len(steps)} steps from cache)")

    def close(self, ok: bool) -> None:
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            self._running = None
        if self._bar is not None:
            if ok:
                self._bar.n = self._bar.total
                self._bar.refresh()
            self._bar.close()
            self._bar = None


def _stream_build(api, result_steps: list[BuildStep], chunks, display: BuildDisplay) -> str:
    image_id = None
    current: BuildStep | None = None
    pending = ""

    def handle(line: str) -> None:
        nonlocal current, image_id
        line = _ANSI.sub("", line)
        m = _STEP.match(line)
        if m:
            current = BuildStep(int(m.group(1)), int(m.group(2)), m.group(3))
            result_steps.append(current)
            display.step(current)
            return
        stripped = line.strip()
        if current is not None and stripped == "---> Using cache":
            current.cached = True
            display.cached(current)
            return
        if stripped.startswith("---> ") or stripped.startswith("Removing intermediate container"):
            return
        m = _BUILT.match(stripped)
        if m:
            image_id = image_id or m.group(1)
            return
        if current is not None:
            current.output.append(line)
        display.line(current, line)

    for chunk in chunks:
        if "error" in chunk:
            if pending:
                handle(pending)
            detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
            raise _BuildFailed(detail.strip(), current)
        if "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
            image_id = chunk["aux"]["ID"]
        text = chunk.get("stream")
        if text is None and chunk.get("status"):
            text = chunk["status"] + ("\n" if not chunk["status"].endswith("\n") else "")
        if text:
            pending += text
            *lines, pending = re.split(r"\r?\n", pending)
            for line in lines:
                handle(line)
    if pending:
        handle(pending)
    if image_id is None:
        raise _BuildFailed("the engine reported no image id", current)
    return image_id


class _BuildFailed(Exception):
    def __init__(self, message: str, step: BuildStep | None):
        super().__init__(message)
        self.step = step


def build_image_detailed(
    project_dir: str,
    target: Any = None,
    *,
    gpu: bool,
    extras: Iterable[str] = (),
    dirs: Iterable[str] = (),
    no_cache: bool = False,
    config: CalibanConfig | None = None,
    credentials_path: str | None = None,
    progress: str | BuildDisplay = "auto",
    user: tuple[int, int] | None = None,
    jupyter: str | None = None,
    labels: dict[str, str] | None = None,
    client=None,
) -> BuildResult:
    """Build the image and report per-step details (cache hits, output)."""
    plan = plan_image(
        project_dir,
        target,
        gpu=gpu,
        extras=extras,
        dirs=dirs,
        config=config,
        credentials_path=credentials_path,
        user=user,
        jupyter=jupyter,
        labels=labels,
    )
    context = make_build_context(
        plan.project_dir,
        plan.dockerfile,
        plan.include,
        ca_bundle_path=plan.ca_bundle_path,
        secret_paths=plan.secret_paths,
    )
    display = progress if isinstance(progress, BuildDisplay) else BuildDisplay(progress)
    if context.secrets_line:
        print(context.secrets_line, file=display.stream, flush=True)
    client = client or connect()
    api = client.api
    steps: list[BuildStep] = []
    ok = False
    try:
        chunks = api.build(
            fileobj=context.fileobj,
            custom_context=True,
            dockerfile="Dockerfile",
            rm=True,
            forcerm=True,
            nocache=no_cache,
            pull=False,
            decode=True,
        )
        image_id = _stream_build(api, steps, chunks, display)
        ok = True
    except _BuildFailed as failure:
        display.close(False)
        raise _build_error(failure, plan, display.stream) from None
    except Exception as exc:
        display.close(False)
        import docker

        if isinstance(exc, (docker.errors.DockerException,)) or exc.__class__.__module__.startswith("requests"):
            raise CalibanError(f"image build failed: {str(exc).splitlines()[0]}") from None
        raise
    finally:
        context.fileobj.close()
        if ok:
            display.close(True)
    full_id = api.inspect_image(image_id)["Id"]
    display.summary(steps, full_id)
    return BuildResult(image_id=full_id, steps=steps, plan=plan, context=context)


# Causes recognised in a failed step's output, and what to do about each; the
# first match wins, so the specific (TLS) comes before the general (network).
_FAILURE_HINTS = (
    (re.compile(r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|SSL certificate problem"),
     "TLS verification failed: behind a TLS-intercepting proxy, set \"ca_bundle\": true in .calibanconfig.json"),
    (re.compile(r"Temporary failure in name resolution|Failed to establish a new connection|Network is unreachable"
                r"|Could not resolve host|Could not resolve '|ProxyError|Connection timed out"),
     "the build could not reach the network: check this machine's connection, or its proxy settings"),
    (re.compile(r"No matching distribution found|Could not find a version that satisfies"),
     "pip found no release matching a requirement: check the package name and version"),
    (re.compile(r"Unable to locate package|has no installation candidate"),
     "apt has no such package in the base image's distribution: check apt_packages in .calibanconfig.json"),
)
_MISSING_FILE = re.compile(r"FileNotFoundError|No such file or directory|can't open file|does not exist")


def _failure_hint(step: BuildStep, plan: ImagePlan) -> str:
    output = "\n".join(step.output)
    for pattern, hint in _FAILURE_HINTS:
        if pattern.search(output):
            return hint
    if step.instruction.strip() == project_install_instruction(plan.spec.extras) and _MISSING_FILE.search(output):
        return ("this step installs the project's dependencies with only "
                f"{'/'.join(plan.spec.packaging_files)} copied in, so the build cache survives code edits; "
                "make the packaging files work without reading other project files")
    return ""


def _missing_base_image_fix(plan: ImagePlan) -> str:
    image, origin = plan.spec.base_image, plan.base_image_origin
    if origin.startswith("base_image in"):
        return f"`docker pull {image}` or change {origin}"
    if origin.startswith("$"):
        return f"build or `docker pull {image}`, or unset {origin}"
    return (f"`docker pull {image}` (needs access to Docker Hub), or set base_image in .calibanconfig.json "
            "to an image this engine has")


def _build_error(failure: _BuildFailed, plan: ImagePlan, stream) -> CalibanError:
    step = failure.step
    message = str(failure)
    if step is None:
        return CalibanError(f"image build failed: {message}")
    if step.number == 1 or step.instruction.startswith("FROM"):
        return CalibanError(
            f"image build failed: base image {plan.spec.base_image!r} ({plan.base_image_origin}) is not available "
            f"({message}); {_missing_base_image_fix(plan)}"
        )
    tail = [line for line in step.output if line.strip()][-40:]
    if tail:
        print(f"--- output of build step {step.number}/{step.total} ({step.instruction[:80]}) ---", file=stream)
        for line in tail:
            print(line, file=stream)
        print("---", file=stream, flush=True)
    hint = _failure_hint(step, plan)
    return CalibanError(
        f"image build failed at step {step.number}/{step.total} `{step.instruction[:120]}`: {message}"
        + (f" ({hint})" if hint else "")
    )


def build_image(project_dir: str, target: Any = None, **options) -> str:
    """Build the Caliban image for `target` in `project_dir`; return its id
    ("sha256:..."). `target` is a caliban.sweep.targets.Target (None: no code, no
    entrypoint, as for shell/notebook); `options` are those of
    `build_image_detailed`. Raises CalibanError (engine unreachable, failed
    step) or UsageError (bad config, missing dirs).

    Caliban's images are untagged, so without cleanup every rebuild after an
    edit would leave a `<none>` image behind: the one this build supersedes is
    removed (see `remove_superseded_images`)."""
    client = options.pop("client", None) or connect()
    engine_time_at_start = _engine_time(client)
    result = build_image_detailed(project_dir, target, client=client, **options)
    if engine_time_at_start is not None:
        remove_superseded_images(client, result.image_id, result.plan.labels[BUILD_KEY_LABEL], engine_time_at_start)
    return result.image_id


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _engine_timestamp(text: Any) -> float | None:
    """An engine's RFC 3339 time (nanoseconds and all) in Unix seconds, or None.

    Sub-second precision matters: an image made in the same second as a new
    build started must still count as older than that build (or newer)."""
    from datetime import datetime

    match = _RFC3339.match(str(text or ""))
    if not match:
        return None
    offset = "+00:00" if match.group(3) == "Z" else match.group(3)
    whole = datetime.fromisoformat(match.group(1) + offset).timestamp()
    return whole + float("0" + (match.group(2) or ".0"))


def _engine_time(client) -> float | None:
    """The engine's clock: it stamps images' `Created`, and the local clock may differ."""
    try:
        return _engine_timestamp(client.info().get("SystemTime"))
    except Exception:  # an engine that won't say: nothing gets removed
        return None


def remove_superseded_images(client, image_id: str, build_key: str, built_since: float) -> list[str]:
    """Remove the untagged images of the same build inputs that this build replaces; their ids.

    Only images that are Caliban's (carry `build_key`), untagged (a tag, e.g.
    from a push, means someone still wants it), created before this build
    started (so a concurrent build's fresh image stays), and used by no
    container, running or stopped. Anything else, or any error, is left alone.
    """
    import docker.errors

    removed = []
    try:
        candidates = client.api.images(filters={"dangling": True, "label": f"{BUILD_KEY_LABEL}={build_key}"})
    except docker.errors.APIError:
        return []
    for image in candidates:
        old_id = image.get("Id", "")
        untagged = image.get("RepoTags") in (None, [], ["<none>:<none>"])
        if old_id == image_id or not untagged:
            continue
        try:
            # The listing's `Created` is whole seconds; the image's own is exact.
            created = _engine_timestamp(client.api.inspect_image(old_id).get("Created"))
            if created is None or created >= built_since:
                continue
            if client.api.containers(all=True, filters={"ancestor": old_id}, quiet=True):
                continue
            client.api.remove_image(old_id, noprune=False)
            removed.append(old_id)
        except docker.errors.APIError:  # in use after all (a container appeared), or already gone
            continue
    return removed
