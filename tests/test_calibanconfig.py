"""`.calibanconfig.json/.yaml` validation and base-image resolution."""

import json

import pytest

from caliban.calibanconfig import (
    DEFAULT_BASE_IMAGES,
    load_calibanconfig,
    parse_calibanconfig,
    resolve_apt_packages,
    resolve_base_image,
)
from caliban.errors import UsageError


def test_empty_config_uses_defaults_and_env_override():
    cfg = parse_calibanconfig({})
    assert resolve_base_image(cfg, gpu=False, environ={}) == DEFAULT_BASE_IMAGES["cpu"]
    assert resolve_base_image(cfg, gpu=True, environ={}) == DEFAULT_BASE_IMAGES["gpu"]
    env = {"CALIBAN_BASE_IMAGE": "local/base:1"}
    assert resolve_base_image(cfg, gpu=True, environ=env) == "local/base:1"
    assert resolve_apt_packages(cfg, gpu=False) == ()


def test_string_and_per_mode_values():
    cfg = parse_calibanconfig({"base_image": "a/b:1", "apt_packages": ["tree", "libsm6", "tree"]})
    assert resolve_base_image(cfg, True, {"CALIBAN_BASE_IMAGE": "x"}) == "a/b:1"
    assert resolve_apt_packages(cfg, True) == ("tree", "libsm6")
    cfg = parse_calibanconfig(
        {"base_image": {"gpu": "g:1"}, "apt_packages": {"cpu": ["curl=7.88.1-10"], "gpu": ["nvtop"]}}
    )
    assert resolve_base_image(cfg, True, {}) == "g:1"
    assert resolve_base_image(cfg, False, {}) == DEFAULT_BASE_IMAGES["cpu"]
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
    assert resolve_base_image(cfg, False, {}) == "a/b:2" and cfg.source == ".calibanconfig.yaml"
    (tmp_path / ".calibanconfig.json").write_text(json.dumps({"base_image": "c:1"}))
    with pytest.raises(UsageError, match="keep one"):
        load_calibanconfig(str(tmp_path))
    (tmp_path / ".calibanconfig.yaml").unlink()
    (tmp_path / ".calibanconfig.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_calibanconfig(str(tmp_path))
