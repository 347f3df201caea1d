"""Job labels: Caliban 0.4.2's sanitizing, per-flag labels, precedence and the 64-label cap."""

import random
import re
import string

import pytest

from caliban.errors import UsageError
from caliban.sweep.labels import (
    MAX_LABELS,
    args_to_label_pairs,
    fixed_labels,
    sanitize_label_key,
    sanitize_label_value,
    sanitize_labels,
    sweep_labels,
    with_argument_labels,
)

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # the property tests below then run on seeded random samples
    given = None

# What the Cloud APIs accept (ASCII subset; Caliban never emits international characters).
VALID_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
VALID_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def job_labels(*, gpu_enabled, tpu_enabled, job_name, docker_image, user_labels=(), args=(), extra=None):
    """Every label of one job, composed as `caliban.sweep.plan.prepare_jobs` composes them."""
    extra = extra or {}
    base, reserved = sweep_labels(fixed_labels(gpu_enabled, tpu_enabled, job_name, docker_image), user_labels, extra)
    labels, warnings = with_argument_labels(base, args, reserved=reserved)
    labels.update(extra)
    return labels, warnings


def make(args=(), user_labels=(), **overrides):
    fields = dict(gpu_enabled=True, tpu_enabled=False, job_name="caliban_sam", docker_image="gcr.io/p/img:latest")
    fields.update(overrides)
    return job_labels(args=args, user_labels=user_labels, **fields)


# ---------------------------------------------------------------- sanitizing


@pytest.mark.parametrize(
    "raw, key, value",
    [
        ("lr", "lr", "lr"),
        ("0.01", "k0_01", "0_01"),
        ("Learning.Rate", "learning_rate", "learning_rate"),
        ("--flag", "flag", "flag"),
        ("-1e-3", "k1e-3", "1e-3"),
        ("gs://bucket/path", "gsbucketpath", "gsbucketpath"),
        ("_private", "k_private", "_private"),
        ("héllo wörld", "hllowrld", "hllowrld"),
        ("!!!", "", ""),
        ("a" * 100, "a" * 63, "a" * 63),
        ("9" * 100, "k" + "9" * 62, "9" * 63),
    ],
)
def test_sanitizing_matches_caliban(raw, key, value):
    assert sanitize_label_key(raw) == key
    assert sanitize_label_value(raw) == value


def test_empty_keys_are_dropped_and_later_pairs_win():
    assert sanitize_labels([("!!", "x"), ("A", "1"), ("a", "2")]) == {"a": "2"}


def check_idempotent(text):
    assert sanitize_label_key(sanitize_label_key(text)) == sanitize_label_key(text)
    assert sanitize_label_value(sanitize_label_value(text)) == sanitize_label_value(text)


def check_api_valid(text):
    key = sanitize_label_key(text)
    assert key == "" or VALID_KEY.fullmatch(key)
    assert VALID_VALUE.fullmatch(sanitize_label_value(text))


def check_job_labels(args, user, name):
    labels, warnings = make(args=args, user_labels=user, job_name=name, extra={"caliban_key": "abc-1"})
    assert len(labels) <= MAX_LABELS
    for key, value in labels.items():
        assert VALID_KEY.fullmatch(key), key
        assert VALID_VALUE.fullmatch(value), value
    assert labels["caliban_key"] == "abc-1"


def _random_text(rng, max_size=80):
    alphabet = "aZ09_-.-- =/:!é€\t" + string.ascii_letters
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_size)))


def _random_token(rng):
    kind = rng.random()
    if kind < 0.4:
        return "-" * rng.randint(1, 2) + _random_text(rng, 70)
    if kind < 0.6:
        return str(rng.uniform(-1e6, 1e6))
    return _random_text(rng, 20)


if given is not None:

    @given(st.text())
    def test_sanitizing_twice_changes_nothing(text):
        check_idempotent(text)

    @given(st.text())
    def test_sanitized_keys_and_values_are_api_valid(text):
        check_api_valid(text)

    _tokens = st.one_of(
        st.text(max_size=20),
        st.from_regex(r"--?[A-Za-z_.][A-Za-z0-9_.\-]{0,70}", fullmatch=True),
        st.from_regex(r"-?[0-9]+(\.[0-9]+)?", fullmatch=True),
    )

    @settings(max_examples=60, deadline=None)
    @given(
        args=st.lists(_tokens, max_size=80),
        user=st.lists(st.tuples(st.text(max_size=70), st.text(max_size=70)), max_size=20),
        name=st.text(max_size=200),
    )
    def test_every_job_label_is_api_valid_and_within_the_limit(args, user, name):
        check_job_labels(args, user, name)

else:

    def test_sanitizing_twice_changes_nothing():
        rng = random.Random(1)
        for _ in range(2000):
            check_idempotent(_random_text(rng))

    def test_sanitized_keys_and_values_are_api_valid():
        rng = random.Random(2)
        for _ in range(2000):
            check_api_valid(_random_text(rng))

    def test_every_job_label_is_api_valid_and_within_the_limit():
        rng = random.Random(3)
        for _ in range(200):
            args = [_random_token(rng) for _ in range(rng.randint(0, 80))]
            user = [(_random_text(rng, 70), _random_text(rng, 70)) for _ in range(rng.randint(0, 20))]
            check_job_labels(args, user, _random_text(rng, 200))


# ---------------------------------------------------------------- arguments as labels


def test_each_flag_becomes_a_label():
    assert args_to_label_pairs(["--lr", "0.01", "--flag", "--epochs", "2"]) == [
        ("lr", "0.01"), ("flag", ""), ("epochs", "2")]
    labels, _ = make(args=["--lr", "0.01", "--flag"])
    assert labels["lr"] == "0_01" and labels["flag"] == ""


def test_flag_values_that_look_like_negative_numbers_stay_values():
    assert args_to_label_pairs(["--shift", "-1.5", "--x", "-3"]) == [("shift", "-1.5"), ("x", "-3")]


def test_equals_form_and_positionals():
    assert args_to_label_pairs(["data.csv", "--lr=0.1", "pos", "-v"]) == [("lr", "0.1"), ("v", "")]


# ---------------------------------------------------------------- fixed labels and precedence


def test_fixed_labels_use_caliban_keys():
    labels, warnings = make(tpu_enabled=True, gpu_enabled=False)
    assert labels == {
        "gpu_enabled": "false", "tpu_enabled": "true", "job_name": "caliban_sam",
        "docker_image": "gcr_iopimglatest",
    }
    assert warnings == []


def test_later_sources_win_in_order():
    labels, _ = make(args=["--team", "from_args"], user_labels=[("team", "from_l"), ("job_name", "mine")])
    assert labels["team"] == "from_args"
    assert labels["job_name"] == "mine"


def test_extra_labels_always_win():
    labels, _ = make(args=["--caliban_key", "x"], extra={"caliban_key": "real"})
    assert labels["caliban_key"] == "real"


# ---------------------------------------------------------------- the 64-label cap


def test_argument_labels_past_the_limit_are_dropped_with_a_warning():
    args = [token for i in range(100) for token in (f"--f{i}", str(i))]
    labels, warnings = make(args=args, user_labels=[("team", "core")], extra={"caliban_key": "k"})
    assert len(labels) == MAX_LABELS
    assert labels["team"] == "core" and labels["caliban_key"] == "k" and labels["docker_image"]
    assert "f0" in labels and "f99" not in labels
    assert len(warnings) == 1 and "f99" in warnings[0] and "64" in warnings[0]


def test_overriding_an_existing_key_never_counts_against_the_limit():
    args = [token for i in range(59) for token in (f"--f{i}", str(i))] + ["--job_name", "x"]
    labels, warnings = make(args=args, extra={"caliban_key": "k"})
    assert labels["job_name"] == "x" and warnings == []


def test_too_many_user_labels_is_a_usage_error():
    with pytest.raises(UsageError, match="at most 64"):
        make(user_labels=[(f"l{i}", "v") for i in range(61)])
