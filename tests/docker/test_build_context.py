"""`.dockerignore` matching (Docker CLI rules) and the build-context tar.

The secrets screen has its own file, tests/docker/test_image_secrets.py."""

import json
import signal
import tarfile

import pytest

from caliban.docker.build_context import (
    OUTPUT_MARKER,
    DockerIgnore,
    make_build_context,
    parse_dockerignore,
    walk_context,
)
from caliban.errors import UsageError


def ignored(text, path):
    return DockerIgnore(parse_dockerignore(text)).matches(path)


def test_parse_strips_comments_whitespace_slashes():
    text = "# comment\n\n  *.log  \n/build/\n! keep.log\n #notacomment\n\ufeffx\n"
    assert parse_dockerignore(text) == ["*.log", "build", "!keep.log", "#notacomment", "\ufeffx"]
    assert parse_dockerignore("\ufeff# bom comment\na//b/../c/\n") == ["a/c"]


@pytest.mark.parametrize(
    "patterns, path, expected",
    [
        ("*.log", "a.log", True),
        ("*.log", "dir/a.log", False),  # `*` stays in one segment, anchored at the root
        ("**/*.log", "a.log", True),
        ("**/*.log", "dir/sub/a.log", True),
        ("data/", "data/big.bin", True),  # parent dir excluded -> everything below
        ("data", "data/sub/x", True),
        ("/build", "build/out.o", True),
        ("temp?", "temp1", True),
        ("temp?", "temp12", False),
        ("docs/**", "docs/a/b.md", True),
        ("docs/**", "docs", False),
        ("[a-c].txt", "b.txt", True),
        ("[a-c].txt", "d.txt", False),
        ("*.log\n!keep.log", "keep.log", False),
        ("!keep.log\n*.log", "keep.log", True),  # the last matching pattern wins
        ("data\n!data/keep.txt", "data/keep.txt", False),
        ("data\n!data/keep.txt", "data/other.txt", True),
        ("**\n!src", "src/main.py", False),
        ("**\n!src", "README.md", True),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("**foo", "barfoo", True),  # Docker's suffix fast path
        ("*", "anything", True),
        ("*", "dir/file", True),  # via its parent "dir"
        ("file.txt", "file_txt", False),  # "." is literal
        ("a+b(c)", "a+b(c)", True),
        ("\\*.txt", "*.txt", True),
        ("\\*.txt", "a.txt", False),
        ("#notacomment", "#notacomment", False),  # a comment line, not a pattern
        (" #x", "#x", True),
        ("a**b", "ab", True),  # Docker: "**" not before "/" is (.*/)?, so it spans whole directories only
        ("a**b", "ax/b", True),
        ("a**b", "axb", False),
        ("a[^x]b", "a/b", True),  # a class is one character, the slash included
        ("**", "any/thing", True),
        ("**/a/**/b", "a/b", True),
        ("**/a/**/b", "x/a/y/z/b", True),
        ("**/a/**/b", "x/ab", False),
        ("[\\]]x", "]x", True),
        ("a]b", "a]b", True),
    ],
)
def test_matching_follows_docker(patterns, path, expected):
    assert ignored(patterns, path) is expected


def test_illegal_exclusion_is_rejected():
    with pytest.raises(UsageError, match="illegal exclusion"):
        DockerIgnore(["!"])


@pytest.mark.parametrize(
    "pattern, problem",
    [("data[", "closing"), ("a\\", "lone"), ("[z-a]", "backwards"), ("[]a]", "malformed"), ("[a-]", "malformed")],
)
def test_patterns_docker_refuses_are_usage_errors_naming_the_file(pattern, problem):
    with pytest.raises(UsageError, match=rf"^\.calibanignore: bad pattern .*{problem}"):
        DockerIgnore([pattern], source=".calibanignore")


def test_an_oversized_ignore_file_is_refused(tmp_path):
    (tmp_path / "main.py").write_text("x\n")
    (tmp_path / ".calibanignore").write_text("#" * (1 << 20) + "\n*.log\n")
    with pytest.raises(UsageError, match=r"\.calibanignore is larger than 1 MiB"):
        make_build_context(str(tmp_path), "FROM x\n", ["."])


def _hang_guard(seconds):
    def fail(*_):
        raise AssertionError(f"matching did not finish within {seconds}s")

    signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)


def test_nested_double_star_patterns_match_deep_paths_without_backtracking():
    _hang_guard(60)  # a hang guard only: with backtracking this took minutes
    try:
        deep = "/".join(["d"] * 200)
        ignore = DockerIgnore(["**/**/**/**/**/**/**/**/**/zz", "*a*a*a*a*a*a*a*a*a*a*a*b"])
        assert ignore.matches(deep + "/zz")
        assert ignore.matches(deep + "/zz/below")  # via its parent
        assert not ignore.matches(deep + "/zy")
        assert not ignore.matches("a" * 5000)
        assert ignore.matches("a" * 5000 + "b")
    finally:
        signal.alarm(0)


def test_calibanignore_lines_apply_after_dockerignore(tmp_path):
    root = _project(tmp_path)
    (root / ".calibanignore").write_text("!notes.log\nrequirements.txt\n")
    ctx = make_build_context(str(root), "FROM x\n", ["."])
    with tarfile.open(fileobj=ctx.fileobj) as tar:
        names = set(tar.getnames())
    assert "src/notes.log" in names  # re-included over .dockerignore's *.log
    assert "src/requirements.txt" not in names
    assert "src/trainer/debug.log" not in names


def _project(tmp_path):
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "train.py").write_text("print('hi')\n")
    (tmp_path / "trainer" / "debug.log").write_text("x")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(b"\0" * 1000)
    (tmp_path / "data" / "keep.txt").write_text("keep")
    (tmp_path / "requirements.txt").write_text("six\n")
    (tmp_path / "notes.log").write_text("x")
    (tmp_path / ".dockerignore").write_text("*.log\n**/*.log\ndata\n!data/keep.txt\n")
    return tmp_path


def test_a_marked_output_root_is_never_walked_but_a_same_named_directory_is(tmp_path):
    root = _project(tmp_path)
    results = root / "caliban_outputs" / "sweep" / "job_1" / "model"
    results.mkdir(parents=True)
    (results / "weights.bin").write_bytes(b"w")
    (root / "caliban_outputs" / OUTPUT_MARKER).write_text("")
    (root / "trainer" / "caliban_outputs").mkdir()  # the user's own, unmarked
    (root / "trainer" / "caliban_outputs" / "table.csv").write_text("1")
    paths = walk_context(str(root), DockerIgnore()).paths
    assert not [p for p in paths if p.startswith("caliban_outputs")]
    assert "trainer/caliban_outputs/table.csv" in paths


def test_walk_descends_into_excluded_dirs_only_for_exceptions(tmp_path):
    root = _project(tmp_path)
    ignore = DockerIgnore(parse_dockerignore((root / ".dockerignore").read_text()))
    assert walk_context(str(root), ignore).paths == [
        ".dockerignore",
        "data/keep.txt",
        "requirements.txt",
        "trainer",
        "trainer/train.py",
    ]


def test_context_has_dockerfile_and_only_needed_paths(tmp_path):
    root = _project(tmp_path)
    ctx = make_build_context(str(root), "FROM x\n", ["requirements.txt", "trainer"])
    with tarfile.open(fileobj=ctx.fileobj) as tar:
        names = sorted(tar.getnames())
        assert tar.extractfile("Dockerfile").read() == b"FROM x\n"
    assert names == ["Dockerfile", "src", "src/requirements.txt", "src/trainer", "src/trainer/train.py"]


def test_whole_project_context_honors_dockerignore(tmp_path):
    root = _project(tmp_path)
    ctx = make_build_context(str(root), "FROM x\n", ["."])
    with tarfile.open(fileobj=ctx.fileobj) as tar:
        names = set(tar.getnames())
    assert "src/data/keep.txt" in names and "src/trainer/train.py" in names
    assert not {"src/data/big.bin", "src/notes.log", "src/trainer/debug.log"} & names


def test_credentials_never_enter_the_context(tmp_path):
    root = _project(tmp_path)
    (root / "sa.json").write_text(json.dumps({"type": "service_account", "private_key": "-----"}))
    (root / "adc.json").write_text(json.dumps({"type": "authorized_user", "refresh_token": "t"}))
    (root / "named.key").write_text("secret")
    (root / "config.json").write_text(json.dumps({"lr": 0.1}))
    ctx = make_build_context(str(root), "FROM x\n", ["."], secret_paths=[str(root / "named.key")])
    with tarfile.open(fileobj=ctx.fileobj) as tar:
        names = set(tar.getnames())
    assert "src/config.json" in names
    assert not {"src/sa.json", "src/adc.json", "src/named.key"} & names
    assert sorted(ctx.excluded_secrets) == ["adc.json", "named.key", "sa.json"]


def test_missing_or_ignored_include_is_a_usage_error(tmp_path):
    root = _project(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        make_build_context(str(root), "FROM x\n", ["nope"])
    (root / ".dockerignore").write_text("trainer\n")
    with pytest.raises(UsageError, match="but .dockerignore or .calibanignore excludes it"):
        make_build_context(str(root), "FROM x\n", ["trainer"])


def test_ca_bundle_goes_to_caliban_dir(tmp_path):
    root = _project(tmp_path)
    pem = tmp_path / "corp.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    ctx = make_build_context(str(root), "FROM x\n", ["trainer"], ca_bundle_path=str(pem))
    with tarfile.open(fileobj=ctx.fileobj) as tar:
        assert tar.extractfile("__caliban__/ca-bundle.crt").read().startswith(b"-----BEGIN")
