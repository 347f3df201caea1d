""".calibanconfig.json / .calibanconfig.yaml: per-project image settings.

Keys (all optional):

    base_image    "img:tag" or {"cpu": "img:tag", "gpu": "img:tag"}; "{}" in the
                  text becomes the mode ("dlvm:pytorch-{}-2.4"), and "dlvm:NAME"
                  names a Google Deep Learning Containers image (docs/compat.md)
    apt_packages  ["pkg", ...] or {"cpu": [...], "gpu": [...]}
    image_repo    where `caliban cloud` pushes, e.g. "gcr.io/my-project/caliban"
    ca_bundle     true (the host's default CA bundle) or a path to a PEM file:
                  added to built images and trusted by pip/requests/curl, for
                  TLS-intercepting corporate proxies. Off by default.
    default_mode  "cpu" or "gpu": the mode when no --nogpu is given. A CPU-only
                  project says "cpu" once instead of --nogpu on every command.
    gcloud        {"project_id": ..., "cloud_key": ...}: defaults below the
                  flags and above $PROJECT_ID / $GOOGLE_APPLICATION_CREDENTIALS.

Caliban 0.4.2 keys that cannot work any more are accepted and ignored with one
warning saying why (`build_time_credentials`, `julia_version`, `mlflow_config`,
`uv`): a 0.4.2 project starts unchanged.

Default base images (public, Docker Hub), when the config names none:

    cpu  python:3.11-slim-bookworm                     Python 3.11 (Debian 12)
    gpu  pytorch/pytorch:2.2.2-cuda12.1-cudnn8-runtime Python 3.10 (CUDA 12.1)

$CALIBAN_BASE_IMAGE replaces the default in both modes (tests point it at a
locally built image); a base_image in the config file still wins over it.
`Dockerfile.base` builds Caliban's own CPU/GPU base images.

`parse_calibanconfig` and `resolve_*` are pure; only `load_calibanconfig`
reads files (and prints the ignored-keys warning, once per process).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from caliban.errors import UsageError, warn

DEFAULT_BASE_IMAGES = {
    "cpu": "python:3.11-slim-bookworm",
    "gpu": "pytorch/pytorch:2.2.2-cuda12.1-cudnn8-runtime",
}
BASE_IMAGE_ENV = "CALIBAN_BASE_IMAGE"
CONFIG_FILES = (".calibanconfig.json", ".calibanconfig.yaml", ".calibanconfig.yml")
MODES = ("cpu", "gpu")
GCLOUD_KEYS = ("project_id", "cloud_key")

# Caliban 0.4.2 keys that have no effect here, and why (the warning's words).
RETIRED_KEYS = {
    "build_time_credentials": "credentials never go into images; `caliban run` mounts them read-only at run time",
    "julia_version": "Julia is not installed into images; use a base_image that has it, or apt_packages",
    "mlflow_config": "the MLflow integration was removed",
    "uv": "the MLflow integration (uv-metrics) was removed",
}
VALID_KEYS = ("apt_packages", "base_image", "ca_bundle", "default_mode", "gcloud", "image_repo",
              *sorted(RETIRED_KEYS))

# Google's Deep Learning Containers, which replaced the images 0.4.2's
# `dlvm:` names pointed at (gcr.io/deeplearning-platform-release/...). Names
# follow https://cloud.google.com/deep-learning-containers/docs/choosing-container;
# `gcloud container images list --repository=us-docker.pkg.dev/deeplearning-platform-release/gcr.io`
# lists what is published today. The mapping is documented in docs/compat.md.
DLC_REPOSITORY = "us-docker.pkg.dev/deeplearning-platform-release/gcr.io"
DLC_IMAGES: dict[str, dict[str | None, dict[str, str]]] = {
    # framework -> version (None: versionless) -> mode -> image name
    "pytorch": {
        "2.4": {"cpu": "pytorch-cpu.2-4.py310", "gpu": "pytorch-cu124.2-4.py310"},
        "2.3": {"cpu": "pytorch-cpu.2-3.py310", "gpu": "pytorch-cu121.2-3.py310"},
    },
    "tf2": {
        "2.17": {"cpu": "tf2-cpu.2-17.py310", "gpu": "tf2-gpu.2-17.py310"},
    },
    "base": {
        None: {"cpu": "base-cpu.py310", "gpu": "base-cu124.py310"},
    },
}
_DLVM_NAME = re.compile(r"^(?P<framework>[a-z0-9]+)-(?P<mode>cpu|gpu)(?:-(?P<version>\d+(?:\.\d+)*))?\Z")

# Debian package names, optionally pinned (`pkg=1.2-3`); nothing a shell reads.
_APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?(=[A-Za-z0-9.+~:\-]+)?\Z")
_IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:@]*\Z")
_PROJECT_ID = re.compile(r"^([a-z0-9][a-z0-9.\-]*[a-z0-9]:)?[a-z][a-z0-9\-]{4,28}[a-z0-9]\Z")


@dataclass(frozen=True)
class CalibanConfig:
    """Validated settings; `base_image` values are None where not configured,
    and already resolved (`{}` filled in, `dlvm:` names mapped)."""

    base_image: Mapping[str, str | None] = field(
        default_factory=lambda: {"cpu": None, "gpu": None}
    )
    apt_packages: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {"cpu": (), "gpu": ()}
    )
    image_repo: str | None = None
    ca_bundle: bool | str = False
    default_mode: str | None = None  # "cpu" or "gpu"; None: GPU unless --nogpu
    project_id: str | None = None  # the gcloud section
    cloud_key: str | None = None
    ignored: tuple[str, ...] = ()  # retired 0.4.2 keys present in the file
    source: str = "(defaults)"

    def gpu_enabled(self, nogpu: bool) -> bool:
        """--nogpu always wins; without it, `default_mode` decides (GPU when unset, as in 0.4.2)."""
        return not nogpu and self.default_mode != "cpu"

    def ignored_warning(self) -> str | None:
        if not self.ignored:
            return None
        reasons = "; ".join(f"{key}: {RETIRED_KEYS[key]}" for key in self.ignored)
        return f"{self.source}: ignoring Caliban 0.4.2 key{'s' if len(self.ignored) > 1 else ''} ({reasons})"


def _mode(gpu: bool) -> str:
    return "gpu" if gpu else "cpu"


def base_image_origin(
    config: CalibanConfig, gpu: bool, environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """(image, where it was chosen): the config file's, else $CALIBAN_BASE_IMAGE, else the default.

    Where it was chosen travels with it because a missing base image is fixed there.
    """
    environ = os.environ if environ is None else environ
    configured = config.base_image.get(_mode(gpu))
    if configured:
        return configured, f"base_image in {config.source}"
    if environ.get(BASE_IMAGE_ENV):
        return environ[BASE_IMAGE_ENV], f"${BASE_IMAGE_ENV}"
    return DEFAULT_BASE_IMAGES[_mode(gpu)], "Caliban's default"


def resolve_apt_packages(config: CalibanConfig, gpu: bool) -> tuple[str, ...]:
    return tuple(config.apt_packages.get(_mode(gpu), ()))


def dlvm_names() -> list[str]:
    """Every `dlvm:` name that maps to a published image, for error messages and docs."""
    names = []
    for framework, versions in DLC_IMAGES.items():
        for mode in MODES:
            if any(mode in images for images in versions.values()):
                names.append(f"{framework}-{mode}")
            names += [f"{framework}-{mode}-{v}" for v, images in versions.items() if v and mode in images]
    return names


def resolve_dlvm(name: str, where: str) -> str:
    """`pytorch-gpu-2.4` -> the Deep Learning Containers image; versionless names take the newest."""
    match = _DLVM_NAME.match(name)
    versions = DLC_IMAGES.get(match.group("framework"), {}) if match else {}
    image = None
    if match:
        mode, version = match.group("mode"), match.group("version")
        if version is None:
            available = [v for v, images in versions.items() if mode in images]
            newest = max(available, key=lambda v: tuple(int(p) for p in (v or "0").split(".")), default=None)
            image = versions[newest][mode] if available else None
        else:
            image = versions.get(version, {}).get(mode)
    if image is None:
        raise UsageError(
            f"{where}: 'dlvm:{name}' is no longer published as a Deep Learning Container; valid dlvm names: "
            f"{', '.join(dlvm_names())} (or give any image reference, see docs/compat.md)"
        )
    return f"{DLC_REPOSITORY}/{image}"


def _check_image(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _IMAGE_REF.match(value):
        raise UsageError(f"{where}: {value!r} is not an image reference like 'python:3.11-slim'")
    return value


def _check_base_image(value: Any, where: str, mode: str) -> str:
    """0.4.2's spellings too: "{}" becomes the mode, "dlvm:NAME" a Deep Learning Container."""
    if not isinstance(value, str):
        return _check_image(value, where)
    image = value.replace("{}", mode)
    if image.startswith("dlvm:"):
        shown = where if image == value else f"{where} {value!r} ({mode} mode)"
        return resolve_dlvm(image[len("dlvm:"):], shown)
    return _check_image(image, where if image == value else f"{where} ({mode} mode)")


def _check_apt_list(value: Any, where: str, mode: str | None = None) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise UsageError(f"{where}: expected a list of package names, got {value!r}")
    out: list[str] = []
    for pkg in value:
        if not isinstance(pkg, str) or not _APT_NAME.match(pkg):
            raise UsageError(f"{where}: {pkg!r} is not a Debian package name (e.g. 'libsm6' or 'curl=7.88.1-10')")
        if pkg not in out:
            out.append(pkg)
    return tuple(out)


def _per_mode(value: Any, where: str, check) -> dict:
    """A value given once for both modes, or as {"cpu": ..., "gpu": ...};
    `check(value, where, mode)` sees each mode's value."""
    if isinstance(value, dict):
        bad = sorted(set(value) - set(MODES))
        if bad:
            raise UsageError(f"{where}: unknown mode {bad[0]!r}; valid modes: cpu, gpu")
        return {m: (check(value[m], f"{where}.{m}", m) if m in value else None) for m in MODES}
    return {m: check(value, where, m) for m in MODES}


def _check_default_mode(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in MODES:
        raise UsageError(f"{where}: {value!r} is not a mode; valid modes: cpu, gpu")
    return value.strip().lower()


def _check_gcloud(value: Any, where: str) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a mapping like {{\"project_id\": \"my-project\"}}, got {value!r}")
    unknown = sorted(k for k in value if k not in GCLOUD_KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(GCLOUD_KEYS)}")
    project_id, cloud_key = value.get("project_id") or None, value.get("cloud_key") or None
    if project_id is not None and (not isinstance(project_id, str) or not _PROJECT_ID.match(project_id)):
        raise UsageError(f"{where}.project_id: {project_id!r} is not a Google Cloud project id "
                         "(6-30 lowercase letters, digits and hyphens, e.g. 'my-project' or 'example.com:my-project')")
    if cloud_key is not None and (not isinstance(cloud_key, str) or "\n" in cloud_key or "\0" in cloud_key):
        raise UsageError(f"{where}.cloud_key: {cloud_key!r} is not a path to a service account key file")
    return project_id, cloud_key


def parse_calibanconfig(data: Any, source: str = ".calibanconfig.json") -> CalibanConfig:
    """Validate the parsed file content; errors name the file and the bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a mapping of settings at the top level, got {type(data).__name__}")
    unknown = sorted(k for k in data if k not in VALID_KEYS)
    if unknown:
        raise UsageError(f"{source}: unknown key {unknown[0]!r}; valid keys: {', '.join(VALID_KEYS)}")

    base = {"cpu": None, "gpu": None}
    if data.get("base_image") is not None:
        base = _per_mode(data["base_image"], f"{source}: base_image", _check_base_image)

    apt = {"cpu": (), "gpu": ()}
    if data.get("apt_packages") is not None:
        apt = {m: v or () for m, v in _per_mode(data["apt_packages"], f"{source}: apt_packages", _check_apt_list).items()}

    repo = data.get("image_repo")
    if repo is not None:
        repo = _check_image(repo, f"{source}: image_repo")

    ca = data.get("ca_bundle", False)
    if ca is None:
        ca = False
    if not isinstance(ca, (bool, str)) or ca == "":
        raise UsageError(f"{source}: ca_bundle must be true, false or a path to a PEM file, got {ca!r}")
    project_id, cloud_key = _check_gcloud(data.get("gcloud"), f"{source}: gcloud")
    return CalibanConfig(
        base_image=base, apt_packages=apt, image_repo=repo, ca_bundle=ca,
        default_mode=_check_default_mode(data.get("default_mode"), f"{source}: default_mode"),
        project_id=project_id, cloud_key=cloud_key,
        ignored=tuple(k for k in sorted(RETIRED_KEYS) if k in data), source=source,
    )


_warned: set[tuple[str, str]] = set()


def load_calibanconfig(project_dir: str) -> CalibanConfig:
    """Read and validate the project's config file; defaults when it has none.

    Commands read the config several times (planning, building, pushing);
    the warning about ignored 0.4.2 keys is printed on the first read only.
    """
    found = [name for name in CONFIG_FILES if os.path.isfile(os.path.join(project_dir, name))]
    if not found:
        return CalibanConfig()
    if len(found) > 1:
        raise UsageError(f"both {found[0]} and {found[1]} exist in {project_dir}; keep one")
    path = os.path.join(project_dir, found[0])
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        if path.endswith(".json"):
            data = json.loads(text) if text.strip() else {}
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # ValueError (JSON), yaml.YAMLError
        kind = "JSON" if path.endswith(".json") else "YAML"
        detail = " ".join(str(exc).split())
        raise UsageError(f"{found[0]}: not valid {kind}: {detail}") from None
    config = parse_calibanconfig(data, found[0])
    if config.cloud_key:
        # Relative to the project, as every other path in the file.
        key = os.path.expanduser(config.cloud_key)
        config = replace(config, cloud_key=os.path.normpath(os.path.join(os.path.abspath(project_dir), key)))
    warning = config.ignored_warning()
    if warning and (path, warning) not in _warned:
        _warned.add((path, warning))
        warn(warning)
    return config
