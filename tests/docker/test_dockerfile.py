"""Dockerfile text: layer order for the build cache, users, venv, extras, and
that no path or value can add instructions or be expanded by the builder or
a RUN line's shell."""

import json

import pytest

from caliban.docker.dockerfile import DockerfileSpec, dockerfile_text
from caliban.errors import UsageError


def _spec(**kw):
    base = dict(
        base_image="example/base:1",
        uid=1000,
        gid=1001,
        apt_packages=("libsm6", "tree"),
        has_requirements=True,
        packaging_files=("setup.py", "pyproject.toml"),
        extras=("fancy", "cpu"),
        dirs=("data", "configs"),
        package_dir="trainer",
        command=("python", "-m", "trainer.train"),
    )
    base.update(kw)
    return DockerfileSpec(**base)


def _index(lines, needle):
    return next(i for i, line in enumerate(lines) if needle in line)


def test_layers_are_ordered_from_stable_to_volatile():
    lines = dockerfile_text(_spec()).splitlines()
    order = [
        "FROM example/base:1",
        "useradd",
        "apt-get install",
        "python3 -m venv",
        "src/requirements.txt",
        "pip install -r requirements.txt",
        '"src/setup.py", "src/pyproject.toml", "/usr/app/"',
        "pip install '.[fancy,cpu]'",
        '["src/data", "/usr/app/data"]',
        '["src/configs", "/usr/app/configs"]',
        'ENTRYPOINT ["python", "-m", "trainer.train"]',
        '["src/trainer", "/usr/app/trainer"]',
    ]
    positions = [_index(lines, needle) for needle in order]
    assert positions == sorted(positions), list(zip(order, positions))


def test_only_dependency_files_are_copied_before_installs():
    text = dockerfile_text(_spec())
    before_code = text.split('COPY --chown=1000:1001 ["src/data"')[0]
    copies = [l for l in before_code.splitlines() if l.startswith("COPY")]
    assert copies == [
        'COPY --chown=1000:1001 ["src/requirements.txt", "/usr/app/requirements.txt"]',
        'COPY --chown=1000:1001 ["src/setup.py", "src/pyproject.toml", "/usr/app/"]',
    ]


def test_first_line_is_from_and_venv_is_on_path_created_with_python3():
    text = dockerfile_text(_spec())
    assert text.splitlines()[1] == "FROM example/base:1"
    assert "PATH=/opt/venv/bin:$PATH" in text
    assert "RUN python3 -m venv --system-site-packages /opt/venv" in text
    # Installs use the venv's python, never the externally-managed system one.
    assert "pip3 install" not in text and "--break-system-packages" not in text


def test_non_root_user_is_created_reusing_existing_ids_and_used():
    text = dockerfile_text(_spec())
    assert "getent group 1001 >/dev/null || groupadd --gid 1001 caliban" in text
    assert "getent passwd 1000 >/dev/null" in text
    assert "useradd --uid 1000 --gid 1001 --create-home" in text
    assert "chown -R 1000:1001 /opt/venv /usr/app" in text
    assert "\nUSER 1000:1001\n" in text
    # apt runs before dropping root
    assert text.index("apt-get install") < text.index("USER 1000:1001")


def test_root_user_creates_no_account():
    text = dockerfile_text(_spec(uid=0, gid=0))
    assert "useradd" not in text and "groupadd" not in text
    assert "--chown" not in text
    assert "USER 0" not in text


def test_minimal_project_without_dependencies_or_apt():
    text = dockerfile_text(
        DockerfileSpec(base_image="b", package_dir=".", command=("/bin/bash", "run.sh"))
    )
    assert "apt-get" not in text and "requirements.txt" not in text and "pip install" not in text
    assert text.rstrip().endswith('COPY ["src/", "/usr/app/"]')
    assert 'ENTRYPOINT ["/bin/bash", "run.sh"]' in text


def test_no_target_means_no_code_and_no_entrypoint():
    text = dockerfile_text(_spec(package_dir=None, command=(), dirs=()))
    assert "src/trainer" not in text and "ENTRYPOINT" not in text


def test_setup_without_extras_installs_plain_dot():
    text = dockerfile_text(_spec(extras=()))
    assert "RUN python -m pip install .\n" in text


def test_ca_bundle_is_copied_and_trusted_before_any_download():
    text = dockerfile_text(_spec(ca_bundle=True))
    assert 'COPY ["__caliban__/ca-bundle.crt", "/usr/local/share/caliban/ca-bundle.crt"]' in text
    for var in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        assert f"{var}=/usr/local/share/caliban/ca-bundle.crt" in text
    assert text.index("ca-bundle.crt") < text.index("apt-get")
    assert "ca-bundle" not in dockerfile_text(_spec())


def test_jupyter_is_installed_after_dependencies_before_code():
    text = dockerfile_text(_spec(jupyter="jupyterlab==4.2.0"))
    assert text.index("pip install '.[fancy,cpu]'") < text.index("pip install jupyterlab==4.2.0")
    assert text.index("jupyterlab") < text.index("src/trainer")


def test_script_and_whole_project_targets():
    text = dockerfile_text(_spec(package_dir=".", command=("python", "train.py")))
    assert 'COPY --chown=1000:1001 ["src/", "/usr/app/"]' in text
    assert 'ENTRYPOINT ["python", "train.py"]' in text


def test_labels_are_one_final_instruction_after_the_code_and_entrypoint_before_it():
    text = dockerfile_text(
        DockerfileSpec(
            base_image="b",
            package_dir="trainer",
            command=("python", "-m", "trainer.train"),
            labels=(("caliban.source_dir", '/home/a $HOME "q"'), ("caliban.mode", "cpu")),
        )
    )
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[-1] == 'LABEL "caliban.source_dir"="/home/a \\$HOME \\"q\\"" "caliban.mode"="cpu"'
    assert lines[-2] == 'COPY ["src/trainer", "/usr/app/trainer"]'
    assert lines[-3] == 'ENTRYPOINT ["python", "-m", "trainer.train"]'
    assert sum(line.startswith("LABEL") for line in lines) == 1


# --------------------------------------------------------------------------
# Hostile paths and values


def _copy_arrays(text):
    """The decoded JSON arrays of the COPY lines."""
    return [json.loads(l[l.index("["):]) for l in text.splitlines() if l.startswith("COPY")]


def test_copy_uses_the_json_form_and_escapes_what_the_builder_would_expand():
    text = dockerfile_text(_spec(dirs=("data dir$HOME",), package_dir="it's \"q\" \\ x"))
    # JSON keeps the spaces in one element; `\` guards `$`, quotes and `\` from
    # the builder's substitution and quote removal.
    copies = _copy_arrays(text)
    assert ["src/data dir\\$HOME", "/usr/app/data dir\\$HOME"] in copies
    assert ["src/it\\'s \\\"q\\\" \\\\ x", "/usr/app/it\\'s \\\"q\\\" \\\\ x"] in copies
    assert 'COPY --chown=1000:1001 ["src/data dir\\\\$HOME", "/usr/app/data dir\\\\$HOME"]' in text


def test_a_directory_named_like_an_instruction_stays_one_copy_element():
    text = dockerfile_text(_spec(dirs=('x", "/etc/",',)))
    assert ['src/x\\", \\"/etc/\\",', '/usr/app/x\\", \\"/etc/\\",'] in _copy_arrays(text)


@pytest.mark.parametrize(
    "field, value, named, shown",
    [
        ("dirs", ("data\nRUN touch /pwned",), "-d/--dir directory", "'data\\nRUN touch /pwned'"),
        ("dirs", ("a\x00b",), "-d/--dir directory", "'a\\x00b'"),
        ("dirs", ("tab\there",), "-d/--dir directory", "'tab\\there'"),
        # A file name that is not UTF-8, as os.listdir hands it over (surrogate-escaped).
        ("dirs", ("caf\udce9",), "-d/--dir directory", "'caf\\udce9'"),
        ("package_dir", "pkg\r", "target directory", "'pkg\\r'"),
        ("extras", ("cpu\n",), "--extras", "'cpu\\n'"),
        ("jupyter", "notebook==7\nRUN touch /pwned", "--jupyter_version", "'notebook==7\\nRUN"),
        ("apt_packages", ("curl\n",), "apt package", "'curl\\n'"),
        ("base_image", "busybox\nRUN touch /pwned", "base image", "'busybox\\nRUN touch /pwned'"),
        ("command", ("python", "a\nb.py"), "target command word", "'a\\nb.py'"),
        ("labels", (("caliban.source_dir", "/home/a\nb"),), "image label caliban.source_dir", "'/home/a\\nb'"),
    ],
)
def test_values_a_dockerfile_cannot_carry_are_refused_in_one_line(field, value, named, shown):
    with pytest.raises(UsageError) as err:
        dockerfile_text(_spec(**{field: value}))
    message = err.value.message
    assert named in message and shown in message
    assert "\n" not in message and "\r" not in message
    assert err.value.exit_code == 2


@pytest.mark.parametrize("name", ["data[1]", "a*b", "what?"])
def test_copy_sources_with_wildcards_are_refused(name):
    with pytest.raises(UsageError) as err:
        dockerfile_text(_spec(dirs=(name,)))
    assert repr(name) in err.value.message and "wildcard" in err.value.message


@pytest.mark.parametrize("image", ["busybox $X", "${IMG}", "busybox:1 AS x", "-busybox"])
def test_base_image_must_be_a_plain_reference(image):
    with pytest.raises(UsageError) as err:
        dockerfile_text(_spec(base_image=image))
    assert repr(image) in err.value.message and "CALIBAN_BASE_IMAGE" in err.value.message


def _shell_words(command_line):
    """The words /bin/sh makes of `command_line` (a RUN line's shell part)."""
    import subprocess

    out = subprocess.run(["sh", "-c", "printf '%s\\0' " + command_line], capture_output=True, text=True, check=True)
    return out.stdout.split("\0")[:-1]


def test_run_line_values_reach_the_shell_as_single_literal_words(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"$(touch {marker})`touch {marker}`;touch {marker}"
    text = dockerfile_text(
        _spec(extras=("a b", evil), jupyter=f"notebook>=7 {evil}", apt_packages=(f"x{evil}", "tree"))
    )
    lines = text.splitlines()
    prefix = "RUN python -m pip install "
    project = next(l for l in lines if l.startswith(prefix + "'.["))
    jupyter = next(l for l in lines if l.startswith(prefix + "'notebook"))
    apt = next(l for l in lines if "apt-get install" in l)
    assert _shell_words(project[len(prefix):]) == [f".[a b,{evil}]"]
    assert _shell_words(jupyter[len(prefix):]) == [f"notebook>=7 {evil}"]
    packages = apt.split("--no-install-recommends ", 1)[1].rstrip(" \\")
    assert _shell_words(packages) == [f"x{evil}", "tree"]
    assert not marker.exists()


def test_plain_values_are_written_as_before():
    text = dockerfile_text(_spec(extras=(), jupyter="jupyterlab==4.2.0"))
    assert "apt-get install -y --no-install-recommends libsm6 tree \\" in text
    assert "RUN python -m pip install .\n" in text
    assert "RUN python -m pip install jupyterlab==4.2.0\n" in text


def test_labels_keep_non_ascii_and_escape_quotes_and_dollars():
    text = dockerfile_text(_spec(labels=(("caliban.source_dir", '/home/josé/"p" $HOME \\'),)))
    assert text.splitlines()[-1] == 'LABEL "caliban.source_dir"="/home/josé/\\"p\\" \\$HOME \\\\"'
