"""Hostile experiment configs: each is refused quickly with one stderr line and exit 2.

Every case runs the real command in a subprocess, so a crash of the interpreter
(SIGSEGV in a recursive YAML composer) or a traceback shows up as a failure
instead of taking the test run down with it.
"""

import json
import os
import subprocess
import sys

import pytest

from caliban.sweep.experiments import MAX_CONFIG_BYTES, MAX_CONFIG_VALUES
from tests import REPO

EXAMPLE = os.path.join(REPO, "example")

BILLION_LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi")
)

# name -> (file name, contents, a fragment the one error line must contain)
HOSTILE = {
    "alias_bomb": ("bomb.yaml", BILLION_LAUGHS, f"more than {MAX_CONFIG_VALUES:,} values"),
    "alias_bomb_as_sweep": (
        "bomb_sweep.yaml",
        "x: &x [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
        + "".join(f"k{i}: *x\n" for i in range(12)),
        "expands to 10,000,000,000,000 jobs",
    ),
    "yaml_30000_deep_flow": ("flow.yaml", "a: " + "[" * 30000 + "]" * 30000 + "\n", "more than 100 levels deep at line 1"),
    "yaml_30000_deep_flow_mapping": ("flowmap.yaml", "{a: " * 30000 + "1" + "}" * 30000 + "\n", "more than 100 levels deep"),
    "yaml_30000_deep_block": ("block.yaml", "- " * 30000 + "1\n", "more than 100 levels deep at line 1"),
    "yaml_2000_deep_block_mapping": (
        "blockmap.yaml", "".join(" " * i + f"k{i}:\n" for i in range(2000)) + " " * 2000 + "1\n",
        "more than 100 levels deep at line 101",
    ),
    "json_100000_deep_list": ("deep.json", "[" * 100000 + "]" * 100000, "more than 100 levels deep"),
    "json_100000_deep_object": ("deepobj.json", '{"a": ' * 100000 + "1" + "}" * 100000, "more than 100 levels deep"),
    "json_500_deep": ("deep500.json", "[" * 500 + "]" * 500, "more than 100 levels deep"),
    "json_5000_digit_int": ("bigint.json", '{"a": ' + "9" * 5000 + "}", "integer with 5,000 digits"),
    "yaml_5000_digit_int": ("bigint.yaml", "a: " + "9" * 5000 + "\n", "integer with 5,000 digits (999999999999...) at line 1 column 4"),
    "yaml_huge_hex_int": ("hex.yaml", "a: 0x" + "f" * 4000 + "\n", "integer with more than 4,300 digits"),
    "yaml_long_sexagesimal_int": ("sexa.yaml", "a: 1" + ":30" * 3000 + "\n", "at line 1 column 4"),
    "yaml_binary": ("bin.yaml", "a: !!binary aGVsbG8=\n", "!!binary value 'aGVsbG8=' at line 1 column 4"),
    "yaml_timestamp": ("ts.yaml", "lr: [0.1]\nday: 2024-01-01\n", "!!timestamp value '2024-01-01' at line 2 column 6"),
    "yaml_python_object": ("py.yaml", "a: !!python/object/apply:os.system ['echo owned']\n", "!!python/object/apply:os.system collection at line 1"),
    "yaml_python_name": ("pyname.yaml", "a: !!python/name:os.system ''\n", "!!python/name:os.system value"),
    "yaml_set": ("set.yaml", "a: !!set {x, y}\n", "!!set collection at line 1 column 4"),
    "yaml_omap": ("omap.yaml", "a: !!omap [x: 1]\n", "!!omap collection"),
    "yaml_custom_tag": ("custom.yaml", "a: !secret value\n", "!secret value 'value'"),
    "yaml_value_tag": ("eq.yaml", "a: =\n", "!!value value '='"),
    "yaml_bad_explicit_int": ("badint.yaml", "a: !!int twelve\n", "'twelve' tagged !!int at line 1 column 4"),
    "yaml_bad_explicit_bool": ("badbool.yaml", "a: !!bool maybe\n", "'maybe' tagged !!bool"),
    "yaml_recursive_alias": ("rec.yaml", "a: &x [1, *x]\n", "alias *x at line 1 column 11 inside the list"),
    "yaml_undefined_alias": ("undef.yaml", "a: *nowhere\n", "alias *nowhere at line 1 column 4 before any anchor"),
    "product_of_10_to_the_12": (
        "sweep.json", json.dumps({f"k{i}": list(range(10)) for i in range(12)}),
        "sweep.json expands to 1,000,000,000,000 jobs, over the limit of 100,000 for expansion; "
        "pass --max_experiments N to allow more",
    ),
    "product_beyond_10_to_the_30": (
        "astro.json", json.dumps({f"k{i}": list(range(10)) for i in range(400)}),
        "expands to more than 1e+30 jobs",
    ),
    "wrong_type_nested_dict": ("dict.yaml", "a: {b: 1}\n", "invalid value for key 'a'"),
    "null_value": ("null.json", '{"a": [1, null]}', "null is not allowed"),
}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run(argv, cwd=None, stdin=None, timeout=60):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(argv, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=timeout)


def expansion(*args, **kwargs):
    return run([sys.executable, "-m", "caliban.commands.expansion", *args], **kwargs)


def assert_one_line_refusal(result, fragment):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert len(result.stderr) < 400, result.stderr
    assert fragment in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_expansion_refuses_hostile_config_in_one_line(tmp_path, case):
    name, text, fragment = HOSTILE[case]
    assert_one_line_refusal(expansion(write(tmp_path, name, text), timeout=30), fragment)


def test_the_same_hostile_yaml_from_stdin(tmp_path):
    result = expansion("stdin", stdin="- " * 30000 + "1\n", timeout=30)
    assert_one_line_refusal(result, "experiment config from stdin nests lists and mappings more than 100 levels")
    result = expansion("-", stdin="[" * 100000 + "]" * 100000, timeout=30)
    assert_one_line_refusal(result, "more than 100 levels deep")


def test_oversized_config_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "w") as handle:  # flat and valid, just far too big
        handle.write('{"a": "' + "x" * MAX_CONFIG_BYTES + '"}')
    assert_one_line_refusal(expansion(str(path)), "huge.json is larger than 10 MB (10,485,760 bytes)")
    assert_one_line_refusal(expansion("stdin", stdin=path.read_text()), "from stdin is larger than 10 MB")


def test_too_many_values_in_flat_json(tmp_path):
    path = write(tmp_path, "flat.json", json.dumps({"a": [[]] * (MAX_CONFIG_VALUES + 1)}))
    assert_one_line_refusal(expansion(path), f"has more than {MAX_CONFIG_VALUES:,} values")


def test_max_experiments_raises_and_lowers_the_limit(tmp_path):
    path = write(tmp_path, "grid.json", json.dumps({"a": list(range(20)), "b": list(range(10))}))
    assert_one_line_refusal(
        expansion("--max_experiments", "199", path),
        "grid.json expands to 200 jobs, over the limit of 199 for expansion",
    )
    result = expansion("--max_experiments", "200", "--print_flags", path)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 200
    assert_one_line_refusal(expansion("--max_experiments", "0", path), "--max_experiments must be a positive whole number")
    big = write(tmp_path, "big.json", json.dumps({"a": list(range(1000)), "b": list(range(101))}))
    assert_one_line_refusal(expansion(big), "expands to 101,000 jobs, over the limit of 100,000")
    allowed = expansion("--max_experiments", "101000", "--print_flags", big)
    assert allowed.returncode == 0 and len(allowed.stdout.splitlines()) == 101000


def test_nan_and_infinities_render_as_the_original_did(tmp_path):
    path = write(tmp_path, "nan.json", '{"clip": [NaN, Infinity, -Infinity]}')
    result = expansion("--print_flags", path)
    assert result.stdout.splitlines() == ["--clip nan", "--clip inf", "--clip -inf"]
    yaml_path = write(tmp_path, "nan.yaml", "clip: [.nan, .inf, -.inf]\n")
    assert expansion("--print_flags", yaml_path).stdout == result.stdout
    assert expansion(path).stdout == '[{"clip": NaN}, {"clip": Infinity}, {"clip": -Infinity}]\n'


# ------------------------------------------- caliban cloud / run --dry_run

THROUGH_CALIBAN = [
    "alias_bomb", "yaml_30000_deep_flow", "yaml_30000_deep_block", "json_100000_deep_list",
    "json_5000_digit_int", "yaml_binary", "yaml_timestamp", "yaml_python_object", "wrong_type_nested_dict",
]


@pytest.mark.parametrize("command", ["cloud", "run"])
@pytest.mark.parametrize("case", THROUGH_CALIBAN)
def test_caliban_dry_run_refuses_hostile_config_in_one_line(tmp_path, command, case):
    name, text, fragment = HOSTILE[case]
    path = write(tmp_path, name, text)
    argv = [sys.executable, "-m", "caliban", command, "--dry_run", "--nogpu"]
    if command == "cloud":
        argv += ["--project_id", "p"]
    result = run([*argv, "--experiment_config", path, "trainer.train"], cwd=EXAMPLE, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert fragment in result.stderr


# ------------------------------------------------------ streaming memory


def expansion_max_rss_kb(*args):
    """Peak RSS of one `expansion` run, measured in a fresh parent so no other child counts."""
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
        "assert done.returncode == 0, done.stderr\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    result = run([sys.executable, "-c", probe, sys.executable, "-m", "caliban.commands.expansion", *args], timeout=300)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.parametrize("flags", [[], ["--pprint"], ["--print_flags"]])
def test_expansion_memory_stays_flat_as_the_sweep_grows(tmp_path, flags):
    def sweep(jobs):
        return write(tmp_path, f"s{jobs}.json", json.dumps({
            "a": list(range(100)), "b": list(range(jobs // 100)), "msg": "a constant shared by every job",
        }))

    small = expansion_max_rss_kb(*flags, sweep(1000))
    large = expansion_max_rss_kb(*flags, sweep(100_000))
    assert large < 100 * 1024, f"max RSS {large} KB for 100,000 jobs"
    assert large - small < 10 * 1024, f"max RSS grew from {small} KB (1,000 jobs) to {large} KB (100,000 jobs)"
