"""Experiment configs: the expansion rules of Caliban 0.4.2, on real files."""

import io
import json
import subprocess
import sys

import pytest

from caliban.errors import UsageError
from caliban.sweep.experiments import (
    count_experiments,
    expand_as_json,
    expand_as_shell_lines,
    expand_experiments,
    experiment_to_args,
    load_experiment_config,
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def expand(config):
    return list(expand_experiments(config))


def test_dict_is_cartesian_product_of_lists_with_constants_first_key_fastest():
    assert expand({"a": [1, 2], "b": ["x", "y"], "c": 0.5}) == [
        {"a": 1, "b": "x", "c": 0.5},
        {"a": 2, "b": "x", "c": 0.5},
        {"a": 1, "b": "y", "c": 0.5},
        {"a": 2, "b": "y", "c": 0.5},
    ]


# What Caliban 0.4.2's expand_experiment_config + experiment_to_args produce for
# these configs (recorded by running 0.4.2 itself), so job numbering matches.
ORIGINAL_CALIBAN_ARGS = [
    ({"x": 0, "[a,b]": [[1, 2], [3, 4]], "z": [9, 10]}, [
        ["--x", "0", "--a", "1", "--b", "2", "--z", "9"],
        ["--x", "0", "--a", "3", "--b", "4", "--z", "9"],
        ["--x", "0", "--a", "1", "--b", "2", "--z", "10"],
        ["--x", "0", "--a", "3", "--b", "4", "--z", "10"],
    ]),
    ({"[a, b]": [[1, 2], [3, 4]]}, [["--a", "1", "--b", "2"], ["--a", "3", "--b", "4"]]),
    ({"[a]": [[1], [2]]}, [["--a", "1"], ["--a", "2"]]),
    ({"a": [[1, 2], [3]]}, [["--a", "[1, 2]"], ["--a", "[3]"]]),
    ({"[a,b]": [1, [2, 3]]}, [["--a", "1", "--b", "[2, 3]"]]),
    ({"flag": [True, False], "lr": [1e-05, 0.1]}, [
        ["--flag", "--lr", "1e-05"], ["--lr", "1e-05"], ["--flag", "--lr", "0.1"], ["--lr", "0.1"],
    ]),
    ({"big": 1e20, "neg": -3, "f": 2.50}, [["--big", "1e+20", "--neg", "-3", "--f", "2.5"]]),
]


@pytest.mark.parametrize("config, expected", ORIGINAL_CALIBAN_ARGS)
def test_same_experiments_in_the_same_order_as_caliban_0_4_2(config, expected):
    assert [experiment_to_args(e) for e in expand(config)] == expected


def test_list_concatenates_and_nested_lists_flatten():
    config = [{"a": [1, 2]}, [{"b": 3}, [{"c": [4]}]]]
    assert expand(config) == [{"a": 1}, {"a": 2}, {"b": 3}, {"c": 4}]


def test_booleans_become_bare_flags_or_nothing():
    experiments = expand({"flag": [True, False], "lr": 1})
    assert [experiment_to_args(e) for e in experiments] == [["--flag", "--lr", "1"], ["--lr", "1"]]


def test_compound_keys_sweep_jointly_and_keep_position():
    assert expand({"x": 0, "[a,b]": [[1, 2], [3, 4]], "z": 9}) == [
        {"x": 0, "a": 1, "b": 2, "z": 9},
        {"x": 0, "a": 3, "b": 4, "z": 9},
    ]


def test_compound_key_with_one_joint_value():
    assert expand({"[a,b]": [1, "two"]}) == [{"a": 1, "b": "two"}]


def test_empty_dict_is_one_job_and_empty_axis_is_zero_jobs():
    assert expand({}) == [{}]
    assert experiment_to_args({}) == []
    assert expand({"a": [], "b": [1, 2]}) == []
    assert expand({"[a,b]": []}) == []
    assert expand([]) == []
    assert count_experiments([{"a": []}, {}]) == 1


def test_values_render_with_str_like_the_original():
    (experiment,) = expand({"lr": 1e-05, "big": 1e20, "f": 0.1, "s": "a b"})
    assert experiment_to_args(experiment, ["--pass", "through"]) == [
        "--pass", "through", "--lr", "1e-05", "--big", "1e+20", "--f", "0.1", "--s", "a b",
    ]


def test_fast_paths_agree_with_the_dict_expansion():
    config = [{"a": [1, 2.5], "[b,c]": [["x", True], ["y z", False]], "d": [True, False]}, {}]
    dicts = expand(config)
    assert list(expand_as_json(config)) == [json.dumps(d) for d in dicts]
    lines = list(expand_as_shell_lines(config))
    assert lines[0] == "--a 1 --b x --c --d"
    assert lines[2] == "--a 1 --b 'y z' --d"
    assert lines[-1] == ""


def test_expansion_is_lazy():
    huge = {f"k{i}": list(range(10)) for i in range(12)}  # 10**12 experiments
    first = next(iter(expand_experiments(huge)))
    assert first == {f"k{i}": 0 for i in range(12)}
    assert count_experiments(huge) == 10**12


@pytest.mark.parametrize(
    "config, fragment",
    [
        ({"a b": 1}, "'a b'"),
        ({"a,b": 1}, "'a,b'"),
        ({"[a,b": [1, 2]}, "'[a,b'"),
        ({"[a b,c]": [1, 2]}, "'[a b,c]'"),
        ({"[a,,b]": [1, 2]}, "'[a,,b]'"),
        ({"": 1}, "''"),
        ({"a": None}, "'a'"),
        ({"a": {"b": 1}}, "'a'"),
        ({"a": [1, None]}, "'a'"),
        ({"a": [{"b": 1}]}, "'a'"),
        ({"[a]": [1, 2]}, "'[a]'"),
        ({"[a,b]": [[1, 2, 3]]}, "'[a,b]'"),
        ({"[a,b]": [1, 2, 3]}, "'[a,b]'"),
        ({"[a,b]": [[1, 2], 3]}, "'[a,b]'"),
        ({"[a,b]": 1}, "'[a,b]'"),
        ({"a": 1, "[a,b]": [1, 2]}, "'a'"),
        ("just a string", "just a string"),
        (3, "3"),
        ([{"a": 1}, 7], "7"),
    ],
)
def test_invalid_configs_name_the_offending_key_or_value(tmp_path, config, fragment):
    path = write(tmp_path, "bad.json", json.dumps(config))
    with pytest.raises(UsageError) as info:
        load_experiment_config(path)
    assert fragment in info.value.message
    assert info.value.exit_code == 2


def test_json_with_comment_lines(tmp_path):
    path = write(tmp_path, "c.json", '// sweep\n{\n  # learning rates\n  "lr": [0.1, 0.01]\n}\n')
    assert expand(load_experiment_config(path)) == [{"lr": 0.1}, {"lr": 0.01}]


def test_yaml_configs(tmp_path):
    for name in ("c.yaml", "c.yml"):
        path = write(tmp_path, name, "- lr: [0.1, 0.01]\n  '[a,b]': [[1, 2]]\n- flag: true\n")
        assert expand(load_experiment_config(path)) == [
            {"lr": 0.1, "a": 1, "b": 2}, {"lr": 0.01, "a": 1, "b": 2}, {"flag": True},
        ]


def test_stdin_json_and_yaml():
    for name in ("stdin", "-"):
        config = load_experiment_config(name, stdin=io.StringIO('{"a": [1, 2]}'))
        assert expand(config) == [{"a": 1}, {"a": 2}]
    config = load_experiment_config("stdin", stdin=io.StringIO("a: [x, y]\n"))
    assert expand(config) == [{"a": "x"}, {"a": "y"}]


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_experiment_config(str(tmp_path / "missing.json"))
    with pytest.raises(UsageError, match="not valid JSON.*line 1"):
        load_experiment_config(write(tmp_path, "bad.json", '{"a": [1,'))
    with pytest.raises(UsageError, match="not valid YAML"):
        load_experiment_config(write(tmp_path, "bad.yaml", "a: [1, 2\n"))
    with pytest.raises(UsageError, match="is a directory"):
        load_experiment_config(str(tmp_path))


# ------------------------------------------------------------ the CLI


def run_expansion(*args, stdin=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "caliban.commands.expansion", *args],
        input=stdin, capture_output=True, text=True, cwd=cwd,
    )


def test_expansion_cli_prints_json_list(tmp_path):
    path = write(tmp_path, "c.json", '{"a": [1, 2], "msg": "hi there"}')
    result = run_expansion(path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"a": 1, "msg": "hi there"}, {"a": 2, "msg": "hi there"}]
    pretty = run_expansion(path, "--pprint")
    assert pretty.stdout == json.dumps(json.loads(result.stdout), indent=2) + "\n"


def test_expansion_cli_print_flags_survive_the_shell(tmp_path):
    path = write(tmp_path, "c.json", '{"msg": ["it\'s a test", "plain"], "on": true}')
    result = run_expansion("--print_flags", path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    echoed = subprocess.run(
        ["bash", "-c", f"{sys.executable} -c 'import sys, json; print(json.dumps(sys.argv[1:]))' {lines[0]}"],
        capture_output=True, text=True,
    )
    assert json.loads(echoed.stdout) == ["--msg", "it's a test", "--on"]


def test_expansion_cli_empty_and_stdin(tmp_path):
    assert run_expansion(write(tmp_path, "e.json", '{"a": []}')).stdout == "[]\n"
    result = run_expansion("stdin", stdin="[{}, {\"b\": false}]")
    assert json.loads(result.stdout) == [{}, {"b": False}]


def test_expansion_cli_bad_config_prints_nothing_on_stdout(tmp_path):
    result = run_expansion(write(tmp_path, "c.json", '{"bad key": 1}'))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "bad key" in result.stderr and result.stderr.count("\n") == 1


# ------------------------------------------- streamed output = materialised output

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ATOMS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=8),
)
VALUES = st.one_of(ATOMS, st.lists(st.one_of(ATOMS, st.lists(ATOMS, max_size=2)), max_size=3))
KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)


@st.composite
def sweep_dicts(draw):
    config = {}
    for index, key in enumerate(draw(st.lists(KEYS, unique=True, max_size=4))):
        if draw(st.booleans()):
            config[key] = draw(VALUES)
        else:  # a compound key over two fresh flag names
            width = 2
            joint = st.lists(ATOMS, min_size=width, max_size=width)
            config[f"[{key}_{index}a,{key}_{index}b]"] = draw(st.one_of(joint, st.lists(joint, max_size=3)))
    return config


CONFIGS = st.one_of(sweep_dicts(), st.lists(st.one_of(sweep_dicts(), st.lists(sweep_dicts(), max_size=2)), max_size=3))


def materialised_output(config, flags):
    """What the expansion would print if it built the whole list first, as Caliban 0.4.2 did."""
    import shlex

    experiments = list(expand_experiments(config))
    if "--print_flags" in flags:
        return "".join(shlex.join(experiment_to_args(e)) + "\n" for e in experiments)
    return json.dumps(experiments, indent=2 if "--pprint" in flags else None) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=CONFIGS, flags=st.sampled_from([[], ["--pprint"], ["--print_flags"]]))
def test_streamed_expansion_prints_exactly_the_materialised_list(tmp_path, capsys, config, flags):
    from caliban.commands import expansion

    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    capsys.readouterr()
    assert expansion.main([*flags, str(path)]) == 0
    assert capsys.readouterr().out == materialised_output(config, flags)


@pytest.mark.parametrize("flags", [[], ["--pprint"], ["--print_flags"]])
def test_streamed_expansion_cli_on_a_10000_job_sweep(tmp_path, flags):
    config = [{"lr": [0.1, 1e-05, float("inf")], "[a,b]": [[1, "x y"], [True, False]], "s": list(range(1000))},
              {"on": [True, False], "n": ["it's", "ünï"]}, {}]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    result = run_expansion(*flags, str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == materialised_output(config, flags)
    assert len(result.stdout) > 100_000  # 6,006 experiments: several chunks of writes


# ---------------------------------------------------------- sweep size


def test_check_sweep_size_counts_without_expanding_and_names_the_command():
    from caliban.sweep.experiments import check_sweep_size

    huge = [{f"k{i}": list(range(10)) for i in range(12)}, {"a": [1, 2]}]
    with pytest.raises(UsageError) as info:
        check_sweep_size(huge, "sweep.yaml", 10_000, "caliban cloud")
    assert info.value.message == (
        "experiment config sweep.yaml expands to 1,000,000,000,002 jobs, over the limit of 10,000 "
        "for caliban cloud; pass --max_experiments N to allow more"
    )
    assert info.value.exit_code == 2
    assert check_sweep_size({"a": [1, 2], "b": [3, 4, 5]}, "s.json", 6, "caliban run") == 6
    with pytest.raises(UsageError, match="more than 1e\\+30 jobs"):
        check_sweep_size({f"k{i}": [1, 2] for i in range(5000)}, "s.json", 10, "caliban run")


def test_count_saturates_instead_of_multiplying_huge_numbers():
    config = {f"k{i}": [1, 2, 3] for i in range(20000)}
    assert count_experiments(config) == 10**30 + 1
    assert count_experiments([{"a": [], **config}, {"b": [1, 2]}]) == 2


# ------------------------------------------------------- bounded loading


def test_yaml_aliases_merge_keys_and_core_tags_still_work(tmp_path):
    path = write(tmp_path, "c.yaml", (
        "- &base {opt: adam, lr: [0.1, 0.01]}\n"
        "- <<: *base\n"
        "  seed: !!int '3'\n"
        "  name: !!str 12\n"
        "  scale: !!float 1\n"
        "  steps: 0x10\n"
        "  again: *base\n"
    ))
    with pytest.raises(UsageError, match="'again'"):  # an alias of a mapping is still no flag value
        load_experiment_config(path)
    write(tmp_path, "c.yaml", open(path).read().replace("  again: *base\n", ""))
    assert load_experiment_config(path) == [
        {"opt": "adam", "lr": [0.1, 0.01]},
        {"opt": "adam", "lr": [0.1, 0.01], "seed": 3, "name": "12", "scale": 1.0, "steps": 16},
    ]


def test_integers_up_to_the_digit_limit_render_exactly(tmp_path):
    from caliban.sweep.experiments import MAX_INT_DIGITS

    digits = "7" * MAX_INT_DIGITS
    for name, text in (("c.json", '{"n": %s}' % digits), ("c.yaml", "n: %s\n" % digits)):
        (experiment,) = expand_experiments(load_experiment_config(write(tmp_path, name, text)))
        assert experiment_to_args(experiment) == ["--n", digits]


def test_in_memory_stdin_is_bounded_too():
    from caliban.sweep.experiments import MAX_CONFIG_BYTES

    with pytest.raises(UsageError, match="from stdin is larger than 10 MB"):
        load_experiment_config("stdin", stdin=io.StringIO("[" + " " * MAX_CONFIG_BYTES + "]"))


def test_error_lines_stay_short_for_huge_bad_values(tmp_path):
    path = write(tmp_path, "c.json", json.dumps({"a": [None] + ["x" * 1000] * 1000, "k" * 5000: 1}))
    with pytest.raises(UsageError) as info:
        load_experiment_config(path)
    assert "'a'" in info.value.message and len(info.value.message) < 300
    path = write(tmp_path, "k.json", json.dumps({"k y" * 5000: 1}))
    with pytest.raises(UsageError) as info:
        load_experiment_config(path)
    assert len(info.value.message) < 300
