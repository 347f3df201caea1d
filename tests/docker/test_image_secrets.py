"""Secrets stay out of images: the deny list, content recognition, `!`
opt-ins, the summary line, and one real build whose saved layers are
searched for every planted secret.

Key headers and credential JSON are assembled at run time, so this file does
not itself look like a secret to the screen it tests.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import tarfile
import uuid

import pytest

from caliban.docker.build_context import make_build_context, secrets_summary
from caliban.errors import UsageError
from tests.docker_helpers import BASE_IMAGE, caliban, cleanup, engine_client

BEGIN = "-----BEGIN "
PEM_RSA = BEGIN + "RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n"
OPENSSH = BEGIN + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
SERVICE_ACCOUNT = "service" + "_account"
AUTHORIZED_USER = "authorized" + "_user"
EXTERNAL_ACCOUNT = "external" + "_account"


def service_account_key(marker: str = "id", padding: int = 0) -> str:
    """A service-account key shaped like the ones the Cloud console hands out."""
    key = {
        "type": SERVICE_ACCOUNT,
        "project_id": "p",
        "private_key_id": marker,
        "private_key": BEGIN + "PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
        "client_email": "sa@p.iam.gserviceaccount.com",
    }
    if padding:
        key = {"padding": " " * padding, **key}
    return json.dumps(key, indent=2)


def user_credentials(marker: str = "refresh") -> str:
    return json.dumps({"client_id": "c", "client_secret": "d-secret-value", "refresh_token": "1//" + marker,
                       "type": AUTHORIZED_USER})


def put(root, rel, content) -> None:
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(content, bytes) else "w") as fh:
        fh.write(content)


def build(root, include=(".",), **kw):
    ctx = make_build_context(str(root), "FROM x\n", list(include), **kw)
    with tarfile.open(fileobj=ctx.fileobj) as tar:
        contents = {m.name[len("src/"):]: tar.extractfile(m).read() for m in tar.getmembers()
                    if m.isfile() and m.name.startswith("src/")}
    return ctx, contents


# --------------------------------------------------------------------------
# The deny list, by name


@pytest.mark.parametrize(
    "rel, listed",
    [
        (".env", ".env"),
        (".env.production", ".env.production"),
        ("conf/prod.env", "conf/prod.env"),
        ("conf/.ENV", "conf/.ENV"),  # names compare case-insensitively
        (".envrc", ".envrc"),
        (".ssh/known_hosts", ".ssh/"),
        ("deploy/id_rsa", "deploy/id_rsa"),
        ("deploy/id_ed25519", "deploy/id_ed25519"),
        (".netrc", ".netrc"),
        (".pypirc", ".pypirc"),
        (".npmrc", ".npmrc"),
        (".boto", ".boto"),
        (".git-credentials", ".git-credentials"),
        (".docker/config.json", ".docker/config.json"),
        (".config/gcloud/configurations/config_default", ".config/gcloud/"),
        ("state/credentials.db", "state/credentials.db"),
        ("state/access_tokens.db", "state/access_tokens.db"),
        ("gcloud/legacy_credentials/me@x/adc.json", "gcloud/legacy_credentials/"),
        ("application_default_credentials.json", "application_default_credentials.json"),
        (".aws/credentials", ".aws/"),
        (".azure/msal_token_cache.json", ".azure/"),
        (".kube/config", ".kube/"),
        (".gnupg/pubring.kbx", ".gnupg/"),
        ("keys/legacy.P12", "keys/legacy.P12"),
        ("keys/cert.pfx", "keys/cert.pfx"),
        (".git/config", ".git/"),
        ("vendor/lib/.git/config", "vendor/lib/.git/"),
    ],
)
def test_deny_list_leaves_named_files_out_and_lists_them(tmp_path, rel, listed):
    put(tmp_path, "main.py", "print('hi')\n")
    put(tmp_path, rel, "harmless looking text\n")
    ctx, contents = build(tmp_path)
    assert rel not in contents
    assert "main.py" in contents
    assert ctx.excluded_secrets == [listed]


def test_near_misses_of_the_deny_list_stay_in(tmp_path):
    kept = ["environment.yml", "envs/train.py", "envrc.md", ".venv/lib/x.py", "docs/ssh.md", "id_rsa.pub.txt",
            "docker/config.json", "gitlab.md", "conf/app.environment", "settings.json", "creds/README.md"]
    for rel in kept:
        put(tmp_path, rel, "x\n")
    put(tmp_path, "config.json", json.dumps({"type": "dataset", "private": True}))
    put(tmp_path, "notes.md", "Create a service_account key with gcloud, never commit the refresh_token.\n")
    ctx, contents = build(tmp_path)
    assert ctx.excluded_secrets == []
    assert set(kept + ["config.json", "notes.md"]) <= set(contents)


# --------------------------------------------------------------------------
# Content, whatever the name


@pytest.mark.parametrize(
    "rel, content",
    [
        ("keys/KEY.JSON", service_account_key()),
        ("keys/key.txt", user_credentials()),
        ("notes/token-backup", json.dumps({"type": EXTERNAL_ACCOUNT, "audience": "//iam"})),
        ("padded/big-key.json", service_account_key(padding=300 * 1024)),  # > 256 KB
        ("certs/server.key", PEM_RSA),
        ("deploy/deploy_key", OPENSSH),
        ("trainer/embedded.py", f'KEY = """{PEM_RSA}"""\n'),
        ("data/blob.bin", os.urandom(4096) + PEM_RSA.encode() + os.urandom(4096)),
    ],
)
def test_keys_are_recognised_by_content(tmp_path, rel, content):
    put(tmp_path, "main.py", "print('hi')\n")
    put(tmp_path, rel, content)
    ctx, contents = build(tmp_path)
    assert rel not in contents
    assert ctx.excluded_secrets == [rel]
    assert contents["main.py"] == b"print('hi')\n"


@pytest.mark.parametrize("offset", [(1 << 20) - 20, (1 << 20) - 1, 3 * (1 << 20) + 5])
def test_a_marker_past_or_across_the_scan_chunks_is_caught(tmp_path, offset):
    """Content is read 1 MiB at a time: a header split across two chunks, or
    megabytes into the file, is still seen."""
    put(tmp_path, "weights/ckpt.bin", b"\0" * offset + PEM_RSA.encode() + b"\0" * 1000)
    ctx, contents = build(tmp_path)
    assert ctx.excluded_secrets == ["weights/ckpt.bin"]
    assert contents == {}


def test_members_after_a_dropped_file_are_intact(tmp_path):
    """A secret found while copying is cut out of the tar; what follows must
    still be readable, byte for byte."""
    put(tmp_path, "a_before.bin", os.urandom(700))
    put(tmp_path, "b_secret.json", service_account_key(padding=5000))
    put(tmp_path, "c_after.bin", b"z" * 1025)
    ctx, contents = build(tmp_path)
    assert ctx.excluded_secrets == ["b_secret.json"]
    assert contents["c_after.bin"] == b"z" * 1025
    assert len(contents["a_before.bin"]) == 700


# --------------------------------------------------------------------------
# Including a screened file on purpose


def test_exceptions_in_either_ignore_file_let_a_screened_file_in(tmp_path):
    put(tmp_path, ".env.example", "API_TOKEN=\n")
    put(tmp_path, ".env", "API_TOKEN=real\n")
    put(tmp_path, "fixtures/test-key.pem", PEM_RSA)
    put(tmp_path, "fixtures/other-key.pem", PEM_RSA)
    put(tmp_path, ".calibanignore", "!.env.example\n")
    put(tmp_path, ".dockerignore", "!fixtures/test-key.pem\n")
    ctx, contents = build(tmp_path)
    assert contents[".env.example"] == b"API_TOKEN=\n"
    assert contents["fixtures/test-key.pem"] == PEM_RSA.encode()
    assert ctx.excluded_secrets == [".env", "fixtures/other-key.pem"]


def test_bang_git_brings_the_repository_back(tmp_path):
    put(tmp_path, "main.py", "x\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    ctx, contents = build(tmp_path)
    assert ctx.excluded_secrets == [".git/"] and not any(p.startswith(".git/") for p in contents)
    put(tmp_path, ".dockerignore", "!.git\n")
    ctx, contents = build(tmp_path)
    assert ctx.excluded_secrets == []
    assert ".git/HEAD" in contents and ".git/config" in contents


def test_an_exception_for_one_file_inside_a_screened_directory(tmp_path):
    put(tmp_path, ".ssh/known_hosts", "host ssh-ed25519 AAAA\n")
    put(tmp_path, ".ssh/id_ed25519", OPENSSH)
    put(tmp_path, ".dockerignore", "!.ssh/known_hosts\n")
    ctx, contents = build(tmp_path)
    assert set(contents) == {".dockerignore", ".ssh/known_hosts"}
    assert ctx.excluded_secrets == [".ssh/id_ed25519"]


def test_a_broad_exception_does_not_count_as_asking_for_secrets(tmp_path):
    """`**` then `!src` re-includes src/ (Docker's rules) but only an
    exception naming a secret lets that secret in."""
    put(tmp_path, "src/main.py", "x\n")
    put(tmp_path, "src/.env", "TOKEN=1\n")
    put(tmp_path, "src/key.json", service_account_key())
    put(tmp_path, "README.md", "x\n")
    put(tmp_path, ".dockerignore", "**\n!src\n")
    ctx, contents = build(tmp_path)
    assert set(contents) == {"src/main.py"}
    assert ctx.excluded_secrets == ["src/.env", "src/key.json"]


def test_a_later_pattern_still_ignores_an_opted_in_file(tmp_path):
    put(tmp_path, ".env", "TOKEN=1\n")
    put(tmp_path, ".dockerignore", "!.env\n.env\n")
    ctx, contents = build(tmp_path)
    assert ".env" not in contents
    assert ctx.excluded_secrets == []  # ignored by the user, not by the screen


def test_the_jobs_own_key_stays_out_even_when_named(tmp_path):
    put(tmp_path, "my-key.json", service_account_key())
    put(tmp_path, "plain.cfg", "not a key\n")
    put(tmp_path, ".dockerignore", "!my-key.json\n!plain.cfg\n")
    ctx, contents = build(tmp_path, secret_paths=[str(tmp_path / "my-key.json"), str(tmp_path / "plain.cfg")])
    assert set(contents) == {".dockerignore"}
    assert ctx.excluded_secrets == ["my-key.json", "plain.cfg"]


def test_an_explicitly_included_directory_is_screened_too(tmp_path):
    put(tmp_path, "trainer/train.py", "x\n")
    put(tmp_path, "trainer/.env", "TOKEN=1\n")
    ctx, contents = build(tmp_path, include=["trainer"])
    assert set(contents) == {"trainer/train.py"}
    assert ctx.excluded_secrets == ["trainer/.env"]


def test_a_needed_path_that_looks_like_a_secret_is_a_usage_error(tmp_path):
    put(tmp_path, ".aws/train.py", "x\n")
    with pytest.raises(UsageError, match=r"^'.aws' is needed in the image but looks like a secret; .*'!.aws'"):
        build(tmp_path, include=[".aws"])
    put(tmp_path, ".calibanignore", "!.aws\n")
    ctx, contents = build(tmp_path, include=[".aws"])
    assert set(contents) == {".aws/train.py"} and ctx.excluded_secrets == []


# --------------------------------------------------------------------------
# The summary line


def test_summary_is_one_line_and_truncated():
    paths = [f"keys/k{i:03d}.json" for i in range(300)] + ["bad\nname"]
    line = secrets_summary(paths)
    assert "\n" not in line
    assert line.startswith("caliban: left out of the image, they look like secrets: keys/k000.json, keys/k001.json")
    assert ", ... and 289 more (include one on purpose with '!PATH' in .calibanignore or .dockerignore)" in line
    assert len(line) < 600
    assert secrets_summary(["bad\nname"]).count("\n") == 0
    assert secrets_summary([]) is None


# --------------------------------------------------------------------------
# A real image: search every layer of `docker save` for the planted secrets


def _find_markers(stream, markers: set[str]) -> set[str]:
    """Markers present in a byte stream, read in bounded chunks."""
    found, tail = set(), b""
    encoded = {m: m.encode() for m in markers}
    longest = max(len(e) for e in encoded.values())
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            return found
        window = tail + chunk
        found |= {m for m, e in encoded.items() if e in window}
        tail = window[-longest:]


def _markers_in_saved_image(image, markers: set[str], workdir) -> tuple[set[str], int]:
    saved = os.path.join(str(workdir), "image.tar")
    with open(saved, "wb") as fh:
        for chunk in image.save(named=False):
            fh.write(chunk)
    found, layers = set(), 0
    with tarfile.open(saved) as outer:
        for member in outer:
            if not member.isfile():
                continue
            blob = outer.extractfile(member)
            head = blob.read(2)
            blob.seek(0)
            if head == b"\x1f\x8b":  # a compressed layer
                blob = gzip.GzipFile(fileobj=blob)
            if member.name.endswith("layer.tar") or member.name.startswith("blobs/"):
                layers += 1
            found |= _find_markers(blob, markers)
    return found, layers


def test_built_image_holds_no_planted_secret_but_holds_the_one_asked_for(tmp_path):
    client = engine_client()
    project = tmp_path / "proj"
    tag = uuid.uuid4().hex[:12]

    def mark(name):
        return f"CALIBANMARK{tag}{name}"

    put(project, "main.py", f"print('{mark('code')}')\n")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    put(project, ".git/config", open(project / ".git/config").read()
        + f'[remote "origin"]\n\turl = https://me:{mark("gittoken")}@example.invalid/r.git\n')
    secrets = {
        ".env": f"API_TOKEN={mark('dotenv')}\n",
        ".env.production": f"API_TOKEN={mark('dotenvprod')}\n",
        "conf/prod.env": f"API_TOKEN={mark('starenv')}\n",
        ".ssh/id_rsa": PEM_RSA + mark("sshkey"),
        "deploy/id_ed25519": mark("named-ed25519"),
        ".netrc": f"machine example.invalid login me password {mark('netrc')}\n",
        ".pypirc": f"[pypi]\npassword = {mark('pypirc')}\n",
        ".docker/config.json": json.dumps({"auths": {"r.invalid": {"auth": mark("dockercfg")}}}),
        ".config/gcloud/credentials.db": b"SQLite format 3\0" + mark("gcloudcreds").encode(),
        ".config/gcloud/access_tokens.db": b"SQLite format 3\0" + mark("gcloudtokens").encode(),
        "credentials.db": b"SQLite format 3\0" + mark("rootcredsdb").encode(),
        ".aws/credentials": f"[default]\naws_secret_access_key = {mark('aws')}\n",
        "keys/KEY.JSON": service_account_key(mark("uppercasekey")),
        "notes/key.txt": user_credentials(mark("txtkey")),
        "padded/big-key.json": service_account_key(mark("paddedkey"), padding=300 * 1024),
        "certs/server.key": PEM_RSA + mark("pemkey"),
        "tools/legacy.p12": b"\x30\x82" + mark("p12").encode(),
    }
    for rel, content in secrets.items():
        put(project, rel, content)
    wanted = {
        ".env.example": f"API_TOKEN={mark('example')}\n",
        "fixtures/test-key.pem": PEM_RSA + mark("fixturekey"),
    }
    for rel, content in wanted.items():
        put(project, rel, content)
    put(project, ".calibanignore", "!.env.example\n")
    put(project, ".dockerignore", "!fixtures/test-key.pem\n")

    secret_markers = {mark(n) for n in ("gittoken", "dotenv", "dotenvprod", "starenv", "sshkey", "named-ed25519",
                                        "netrc", "pypirc", "dockercfg", "gcloudcreds", "gcloudtokens", "rootcredsdb",
                                        "aws", "uppercasekey", "txtkey", "paddedkey", "pemkey", "p12")}
    present_markers = {mark("code"), mark("example"), mark("fixturekey")}
    try:
        result = caliban(["build", "--nogpu", "main.py"], cwd=str(project), env={"CALIBAN_BASE_IMAGE": BASE_IMAGE})
        assert result.returncode == 0, result.stderr
        image_id = result.stdout.strip().splitlines()[-1]
        summary = [line for line in result.stderr.splitlines() if "they look like secrets:" in line]
        assert len(summary) == 1
        # 17 screened paths: the first 12 in path order are named, then a count
        for listed in (".aws/", ".config/gcloud/", ".env,", ".git/", ".ssh/", "conf/prod.env"):
            assert listed in summary[0]
        assert "and 5 more" in summary[0]

        found, layers = _markers_in_saved_image(client.images.get(image_id), secret_markers | present_markers,
                                                tmp_path)
        assert layers >= 2
        assert found & secret_markers == set()
        assert found >= present_markers
    finally:
        cleanup(client, str(project))
