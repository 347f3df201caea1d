"""`.calibanconfig.json/.yaml` validation and base-image resolution."""

import json

import pytest

from caliban.calibanconfig import (
    DEFAULT_BASE_IMAGES,
    base_image_origin,
    load_calibanconfig,
    parse_calibanconfig,
    resolve_apt_packages,
)
from caliban.errors import UsageError


def test_empty_config_uses_defaults_and_env_override():
    cfg = parse_calibanconfig({})
    assert base_image_origin(cfg, gpu=False, environ={})[0] == DEFAULT_BASE_IMAGES["cpu"]
    assert base_image_origin(cfg, gpu=True, environ={})[0] == DEFAULT_BASE_IMAGES["gpu"]
    env = {"CALIBAN_BASE_IMAGE": "local/base:1"}
    assert base_image_origin(cfg, gpu=True, environ=env)[0] == "local/base:1"
    assert resolve_apt_packages(cfg, gpu=False) == ()


def test_string_and_per_mode_values():
    cfg = parse_calibanconfig({"base_image": "a/b:1", "apt_packages": ["tree", "libsm6", "tree"]})
    assert base_image_origin(cfg, True, {"CALIBAN_BASE_IMAGE": "x"})[0] == "a/b:1"
    assert resolve_apt_packages(cfg, True) == ("tree", "libsm6")
    cfg = parse_calibanconfig(
        {"base_image": {"gpu": "g:1"}, "apt_packages": {"cpu": ["curl=7.88.1-10"], "gpu": ["nvtop"]}}
    )
    assert base_image_origin(cfg, True, {})[0] == "g:1"
    assert base_image_origin(cfg, False, {})[0] == DEFAULT_BASE_IMAGES["cpu"]
    assert resolve_apt_packages(cfg, False) == ("curl=7.88.1-10",)
    assert resolve_apt_packages(cfg, True) == ("nvtop",)


def test_image_repo_and_ca_bundle():
    cfg = parse_calibanconfig({"image_repo": "gcr.io/p/caliban", "ca_bundle": True})
    assert cfg.image_repo == "gcr.io/p/caliban" and cfg.ca_bundle is True
    assert parse_calibanconfig({"ca_bundle": "/etc/corp.pem"}).ca_bundle == "/etc/corp.pem"
    assert parse_calibanconfig({}).ca_bundle is False


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"base_imag": "x"}, "unknown key 'base_imag'"),
        ({"base_image": 3}, "base_image"),
        ({"base_image": {"tpu": "x"}}, "unknown mode 'tpu'"),
        ({"apt_packages": "tree"}, "apt_packages: expected a list"),
        ({"apt_packages": ["tree; rm -rf /"]}, "not a Debian package name"),
        ({"apt_packages": {"cpu": [1]}}, "apt_packages.cpu"),
        ({"image_repo": ["x"]}, "image_repo"),
        ({"ca_bundle": 5}, "ca_bundle"),
        (["not", "a", "dict"], "mapping"),
    ],
)
def test_bad_values_name_the_key(data, needle):
    with pytest.raises(UsageError) as err:
        parse_calibanconfig(data, ".calibanconfig.json")
    assert needle in err.value.message
    assert err.value.message.startswith(".calibanconfig.json")
    assert "\n" not in err.value.message


def test_load_json_yaml_and_conflicts(tmp_path):
    assert load_calibanconfig(str(tmp_path)).base_image == {"cpu": None, "gpu": None}
    (tmp_path / ".calibanconfig.yaml").write_text("base_image: a/b:2\napt_packages: [tree]\n")
    cfg = load_calibanconfig(str(tmp_path))
    assert base_image_origin(cfg, False, {})[0] == "a/b:2" and cfg.source == ".calibanconfig.yaml"
    (tmp_path / ".calibanconfig.json").write_text(json.dumps({"base_image": "c:1"}))
    with pytest.raises(UsageError, match="keep one"):
        load_calibanconfig(str(tmp_path))
    (tmp_path / ".calibanconfig.yaml").unlink()
    (tmp_path / ".calibanconfig.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_calibanconfig(str(tmp_path))


# ---------------------------------------------------------------- Caliban 0.4.2 configs

from caliban.calibanconfig import DLC_REPOSITORY, dlvm_names  # noqa: E402

# Every key Caliban 0.4.2 documented, with the values its tutorials used.
CONFIG_042 = {
    "build_time_credentials": True,
    "default_mode": "cpu",
    "julia_version": "1.5.0",
    "mlflow_config": {"project": "my-project", "region": "us-central1", "db": "mlflow",
                      "user": "postgres", "password": "mlflow", "artifact_root": "gs://bucket/mlflow",
                      "debug": False},
    "uv": {"mlflow": {"experiment_name": "exp"}},
    "gcloud": {"project_id": "google.com:my-project", "cloud_key": "keys/sa.json"},
    "base_image": "dlvm:pytorch-{}-2.4",
    "apt_packages": {"cpu": ["libsndfile1"], "gpu": ["libsndfile1", "nvtop"]},
    "image_repo": "gcr.io/google.com:my-project/images",
}


def test_every_042_key_loads_and_the_retired_ones_warn_once_with_the_reason(tmp_path, capsys):
    (tmp_path / ".calibanconfig.json").write_text(json.dumps(CONFIG_042))
    cfg = load_calibanconfig(str(tmp_path))
    again = load_calibanconfig(str(tmp_path))  # commands read it several times
    assert cfg == again
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and err.count("\n") == 1
    for key in ("build_time_credentials", "julia_version", "mlflow_config", "uv"):
        assert key in err
    assert "never go into images" in err and "MLflow" in err
    assert cfg.default_mode == "cpu" and not cfg.gpu_enabled(nogpu=False)
    assert cfg.project_id == "google.com:my-project"
    assert cfg.cloud_key == str(tmp_path / "keys" / "sa.json")  # relative to the project
    assert base_image_origin(cfg, False, {})[0] == f"{DLC_REPOSITORY}/pytorch-cpu.2-4.py310"
    assert base_image_origin(cfg, True, {})[0] == f"{DLC_REPOSITORY}/pytorch-cu124.2-4.py310"
    assert resolve_apt_packages(cfg, True) == ("libsndfile1", "nvtop")


def test_a_config_without_retired_keys_prints_nothing(tmp_path, capsys):
    (tmp_path / ".calibanconfig.json").write_text(json.dumps({"default_mode": "gpu"}))
    assert load_calibanconfig(str(tmp_path)).gpu_enabled(nogpu=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "default_mode, nogpu, gpu",
    [(None, False, True), (None, True, False), ("gpu", False, True), ("gpu", True, False),
     ("cpu", False, False), ("cpu", True, False), ("CPU", False, False)],
)
def test_nogpu_always_wins_and_default_mode_decides_otherwise(default_mode, nogpu, gpu):
    data = {} if default_mode is None else {"default_mode": default_mode}
    assert parse_calibanconfig(data).gpu_enabled(nogpu) is gpu


@pytest.mark.parametrize(
    "base_image, cpu, gpu",
    [
        ("dlvm:pytorch-{}-2.3", "pytorch-cpu.2-3.py310", "pytorch-cu121.2-3.py310"),
        ("dlvm:pytorch-{}", "pytorch-cpu.2-4.py310", "pytorch-cu124.2-4.py310"),  # versionless: the newest
        ("dlvm:tf2-{}-2.17", "tf2-cpu.2-17.py310", "tf2-gpu.2-17.py310"),
        ({"cpu": "dlvm:base-cpu", "gpu": "dlvm:base-gpu"}, "base-cpu.py310", "base-cu124.py310"),
    ],
)
def test_dlvm_names_map_to_deep_learning_containers(base_image, cpu, gpu):
    cfg = parse_calibanconfig({"base_image": base_image})
    assert base_image_origin(cfg, False, {})[0] == f"{DLC_REPOSITORY}/{cpu}"
    assert base_image_origin(cfg, True, {})[0] == f"{DLC_REPOSITORY}/{gpu}"


def test_braces_become_the_mode_in_any_base_image():
    cfg = parse_calibanconfig({"base_image": "registry.example/team/base:{}-latest"})
    assert base_image_origin(cfg, False, {})[0] == "registry.example/team/base:cpu-latest"
    assert base_image_origin(cfg, True, {})[0] == "registry.example/team/base:gpu-latest"


@pytest.mark.parametrize("name", ["pytorch-gpu-1.4", "tf-cpu-1.15", "tf2-gpu-2.1", "pytorch-{}-1.4", "caffe-gpu",
                                  "pytorch-tpu-2.4"])
def test_dlvm_names_that_no_longer_exist_name_the_valid_ones(name):
    with pytest.raises(UsageError) as err:
        parse_calibanconfig({"base_image": f"dlvm:{name}"})
    message = err.value.message
    assert f"dlvm:{name}" in message and "no longer published" in message
    assert ", ".join(dlvm_names()) in message and "pytorch-gpu-2.4" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"default_mode": "tpu"}, "default_mode: 'tpu' is not a mode; valid modes: cpu, gpu"),
        ({"gcloud": {"project": "x"}}, "gcloud: unknown key 'project'; valid keys: project_id, cloud_key"),
        ({"gcloud": {"project_id": "Bad Project"}}, "gcloud.project_id: 'Bad Project' is not a Google Cloud project id"),
        ({"gcloud": "my-project"}, "gcloud: expected a mapping"),
        ({"base_image": "dlvm:pytorch-{}-9.9"}, "'dlvm:pytorch-cpu-9.9'"),
    ],
)
def test_bad_042_values_name_the_key(data, needle):
    with pytest.raises(UsageError) as err:
        parse_calibanconfig(data, ".calibanconfig.json")
    assert needle in err.value.message
