"""Experiment configs: one config file expands into one job per combination.

The semantics are those of Caliban 0.4.2, to the letter:

- a dict expands to the cartesian product of its list values; other values
  are constants shared by every experiment (`{}` is one experiment, and an
  empty list anywhere is zero experiments);
- a list of configs (lists nest) concatenates their expansions;
- a compound key `"[a,b]"` sweeps several flags jointly: `[[1,2],[3,4]]` is two
  experiments, `[1,2]` is one joint value;
- `true` renders as a bare `--flag` and `false` leaves the flag out; every
  other value renders with `str()`;
- experiments come out with the FIRST key varying fastest, so job numbers
  match the original's.

Validation happens once, up front, and turns the config into a plan of
pre-rendered "axes"; expansion then only walks `itertools.product`, so a sweep
of 100,000 experiments is produced lazily in linear time.

A config is untrusted text (it may come from a colleague or a repository), so
reading it is bounded before any structure is built: at most `MAX_CONFIG_BYTES`
of text, `MAX_NESTING_DEPTH` levels of lists and mappings (deeper YAML crashes
the interpreter in PyYAML's recursive composer, deeper JSON raises
RecursionError), `MAX_CONFIG_VALUES` values once YAML aliases are expanded
(the "billion laughs" bomb is a few hundred bytes), and integers of at most
`MAX_INT_DIGITS` digits. YAML may only produce plain data: strings, numbers,
booleans, null, lists and mappings; any other tag (`!!binary`, `!!set`,
`!!python/...`, custom tags, and plain scalars that YAML 1.1 reads as
timestamps) is refused with its line and column. The sweep's size is then
counted arithmetically and `check_sweep_size` refuses an oversized sweep
before a single job is rendered.

NaN and infinities (`NaN`, `Infinity` in JSON; `.nan`, `.inf` in YAML) are
accepted, as Caliban 0.4.2 accepted them: they render as `nan`, `inf` and
`-inf`, which `float()` in a training script reads back.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import sys
from typing import Any, Callable, Iterable, Iterator

from caliban.errors import UsageError

Experiment = dict
# One choice on one axis: the (flag, value) pairs it sets (several for compound keys).
Choice = tuple
Axis = list

_SIMPLE_KEY = re.compile(r"[^\s,\[\]]+")
_COMPOUND_KEY = re.compile(r"\[\s*([^\s,\[\]]+(?:\s*,\s*[^\s,\[\]]+)*)\s*\]")
_ATOM_TYPES = (str, int, float, bool)


# ---------------------------------------------------------------- loading

# Far beyond any hand-written sweep, and beyond an explicit list of
# MAX_JOBS_PER_SWEEP experiments with a dozen flags each; small enough that
# loading stays within seconds (PyYAML constructs ~100,000 values a second)
# and the parsed structure within a few hundred MB in the worst case.
MAX_CONFIG_BYTES = 10 * 1024 * 1024
MAX_NESTING_DEPTH = 100
MAX_CONFIG_VALUES = 250_000
# CPython's default int <-> str conversion limit: values render with str(), so
# a longer integer could not be rendered anyway (and converting it is quadratic).
MAX_INT_DIGITS = 4300
_INT_CEILING = 10**MAX_INT_DIGITS
_EXHAUSTED = object()

_YAML_CORE = "tag:yaml.org,2002:"
_YAML_SCALAR_TAGS = {_YAML_CORE + name for name in ("str", "int", "float", "bool", "null", "merge")}


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _strip_comment_lines(text: str) -> str:
    """Drop whole-line `//` and `#` comments, as the original's JSON reader allowed."""
    return "\n".join(
        "" if line.lstrip().startswith(("//", "#")) else line for line in text.splitlines()
    )


def _too_large(source: str) -> UsageError:
    return UsageError(
        f"experiment config {source} is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MB "
        f"({MAX_CONFIG_BYTES:,} bytes); split the sweep into several configs"
    )


def _too_deep(source: str, where: str = "") -> UsageError:
    return UsageError(
        f"experiment config {source} nests lists and mappings more than "
        f"{MAX_NESTING_DEPTH} levels deep{where}"
    )


def _int_too_long(source: str, digits: str, where: str = "") -> UsageError:
    return UsageError(
        f"experiment config {source} has an integer with {len(digits):,} digits "
        f"({digits[:12]}...){where}, over the limit of {MAX_INT_DIGITS:,}; "
        "quote it to pass it as text"
    )


def _too_many_values(source: str, where: str = "") -> UsageError:
    if not where:
        return UsageError(
            f"experiment config {source} has more than {MAX_CONFIG_VALUES:,} values; "
            "write the sweep as a product of shorter lists"
        )
    return UsageError(
        f"experiment config {source} has more than {MAX_CONFIG_VALUES:,} values, counting each "
        f"YAML alias as a copy of what it names (the limit is reached{where}); "
        "use fewer values or fewer aliases"
    )


def _at(mark) -> str:
    return f" at line {mark.line + 1} column {mark.column + 1}"


def _parse_json_int(source: str) -> Callable[[str], int]:
    def parse(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_INT_DIGITS:
            raise _int_too_long(source, digits.lstrip("-"))
        return int(digits)

    return parse


def _load_json(text: str, source: str) -> Any:
    """json.loads with over-long integers refused before int() sees them (past
    MAX_INT_DIGITS it raises ValueError, and converting is quadratic)."""
    return json.loads(_strip_comment_lines(text), parse_int=_parse_json_int(source))


def _check_yaml_events(yaml, loader: type, text: str, source: str) -> None:
    """Walk the parser's events (no recursion, no structure built) and refuse
    anything the composer or constructor must not see: deep nesting (the
    composers recurse, the C one until SIGSEGV), alias bombs (counted by the
    size of what each alias repeats), non-plain tags, and over-long integers.
    """
    from yaml.events import AliasEvent, MappingEndEvent, MappingStartEvent, ScalarEvent, SequenceEndEvent, SequenceStartEvent

    resolver = yaml.resolver.Resolver()
    # Plain scalars can only resolve to a refused tag (timestamp, value, ...)
    # when they start with one of these; resolving every scalar twice is slow.
    risky_starts = {
        start for start, resolvers in resolver.yaml_implicit_resolvers.items()
        if any(tag not in _YAML_SCALAR_TAGS for tag, _ in resolvers)
    }
    int_tag = _YAML_CORE + "int"
    anchors: dict[str, int] = {}  # anchor -> values in the node it names, aliases expanded
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, values counted before it)
    values = 0

    def refuse_tag(tag: str, event) -> UsageError:
        short = tag.replace(_YAML_CORE, "!!", 1)
        if isinstance(event, ScalarEvent):
            what, fix = f"value {_shorten(repr(event.value))}", "quote the value to pass it as text"
        else:
            what, fix = "collection", "use a plain list or mapping"
        return UsageError(
            f"experiment config {source} has a YAML {short} {what}{_at(event.start_mark)}; "
            f"only strings, numbers, booleans, lists and mappings are allowed ({fix})"
        )

    def check_scalar(tag: str, event) -> None:
        if tag not in _YAML_SCALAR_TAGS:
            raise refuse_tag(tag, event)
        if tag == int_tag and len(event.value.lstrip("+-").replace("_", "")) > MAX_INT_DIGITS:
            raise _int_too_long(source, event.value.lstrip("+-"), _at(event.start_mark))
        if event.tag in (None, "!"):
            return  # the resolver matched the value's form, so its constructor accepts it
        try:  # `!!int abc`, `!!bool maybe`: the constructors raise non-YAML errors
            yaml.constructor.SafeConstructor().construct_object(
                yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark)
            )
        except (ValueError, KeyError, ArithmeticError):
            raise UsageError(
                f"experiment config {source} has {_shorten(repr(event.value))} tagged "
                f"{tag.replace(_YAML_CORE, '!!', 1)}{_at(event.start_mark)}, "
                "which is not a value of that type (quote it to pass it as text)"
            ) from None

    for event in yaml.parse(text, Loader=loader):
        kind = type(event)
        if kind is ScalarEvent:
            values += 1
            value, tag = event.value, event.tag
            if tag is None or tag == "!":
                if event.implicit[0] and (value[:1] in risky_starts or len(value) > MAX_INT_DIGITS):
                    check_scalar(resolver.resolve(yaml.ScalarNode, value, event.implicit), event)
            else:
                check_scalar(tag, event)
            if event.anchor is not None:
                anchors[event.anchor] = 1
        elif kind is SequenceStartEvent or kind is MappingStartEvent:
            values += 1
            expected = _YAML_CORE + ("seq" if kind is SequenceStartEvent else "map")
            if event.tag not in (None, "!", expected):
                raise refuse_tag(event.tag, event)
            open_nodes.append((event.anchor, values - 1))
            if len(open_nodes) > MAX_NESTING_DEPTH:
                raise _too_deep(source, _at(event.start_mark))
        elif kind is SequenceEndEvent or kind is MappingEndEvent:
            anchor, before = open_nodes.pop()
            if anchor is not None:
                anchors[anchor] = values - before
        elif kind is AliasEvent:
            if event.anchor not in anchors:
                contains = any(name == event.anchor for name, _ in open_nodes)
                raise UsageError(
                    f"experiment config {source} uses alias *{_shorten(event.anchor)}{_at(event.start_mark)} "
                    + ("inside the list or mapping it names" if contains else "before any anchor of that name")
                )
            values += anchors[event.anchor]
        if values > MAX_CONFIG_VALUES:
            raise _too_many_values(source, _at(event.start_mark))


def _load_yaml(text: str, source: str) -> Any:
    import yaml  # only needed for YAML configs

    # libyaml's loader is much faster; the event check above bounds its recursion.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        _check_yaml_events(yaml, loader, text, source)
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        position = _at(where) if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "maximum nesting depth" in problem:
            # libyaml's scanner (PyYAML 6.0.4's wheels) reads ahead through
            # deep flow nesting and stops at its own limit before the event
            # check sees level MAX_NESTING_DEPTH: the same refusal either way.
            raise _too_deep(source, position) from None
        raise UsageError(f"experiment config {source} is not valid YAML: {problem}{position}") from None


def _check_parsed_structure(config: Any, source: str) -> None:
    """Depth, size and integers of the parsed structure, without recursion:
    JSON between 100 and the recursion limit deep, JSON's value count, and
    YAML's hex and sexagesimal integers (short text, huge value) get past the
    parsers' own checks."""
    open_nodes = [iter((config,))]  # one iterator over the children of each open list or mapping
    values = 0
    while open_nodes:
        node = next(open_nodes[-1], _EXHAUSTED)
        if node is _EXHAUSTED:
            open_nodes.pop()
            continue
        values += 1
        if values > MAX_CONFIG_VALUES:
            raise _too_many_values(source)
        if isinstance(node, (dict, list)):
            if len(open_nodes) > MAX_NESTING_DEPTH:
                raise _too_deep(source)
            open_nodes.append(itertools.chain(node.keys(), node.values()) if isinstance(node, dict) else iter(node))
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) >= _INT_CEILING:
            raise UsageError(
                f"experiment config {source} has an integer with more than {MAX_INT_DIGITS:,} digits; "
                "quote it to pass it as text"
            )


def parse_config_text(text: str, source: str, fmt: str = "json") -> Any:
    """Parse config text; `fmt` is "json", "yaml", or "auto" (JSON, else YAML)."""
    config = None
    parsed = False
    if fmt in ("json", "auto"):
        try:
            config, parsed = _load_json(text, source), True
        except json.JSONDecodeError as exc:
            if fmt == "json":
                raise UsageError(
                    f"experiment config {source} is not valid JSON: {exc.msg} "
                    f"at line {exc.lineno} column {exc.colno}"
                ) from None
        except RecursionError:
            # The C decoder stops cleanly at the interpreter's recursion limit.
            if fmt == "json":
                raise _too_deep(source) from None
    if not parsed:
        config = _load_yaml(text, source)
    _check_parsed_structure(config, source)
    return config


def _read_bounded(stream, source: str) -> str:
    """At most MAX_CONFIG_BYTES of text, decoded as open(path, encoding="utf-8") would."""
    binary = getattr(stream, "buffer", None)
    if binary is None and isinstance(stream, io.TextIOBase):
        text = stream.read(MAX_CONFIG_BYTES + 1)  # already text (tests, in-memory streams)
        if len(text) > MAX_CONFIG_BYTES:
            raise _too_large(source)
        return text
    data = (binary or stream).read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_large(source)
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()


def load_experiment_config(path: str, stdin=None) -> Any:
    """Read and validate a config from a .json/.yaml/.yml file, or `stdin` / `-`."""
    if path == "-" or path.lower() == "stdin":
        try:
            text = _read_bounded(stdin or sys.stdin, "from stdin")
        except UnicodeDecodeError as exc:
            raise UsageError(f"cannot read experiment config from stdin: {exc}") from None
        config = parse_config_text(text, "from stdin", fmt="auto")
    else:
        try:
            with open(path, "rb") as handle:
                text = _read_bounded(handle, path)
        except FileNotFoundError:
            raise UsageError(
                f"experiment config {path!r} does not exist "
                "(pass a .json or .yaml file, or 'stdin' to read standard input)"
            ) from None
        except IsADirectoryError:
            raise UsageError(f"experiment config {path!r} is a directory, not a file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read experiment config {path!r}: {exc}") from None
        fmt = "yaml" if path.lower().endswith((".yaml", ".yml")) else "json"
        config = parse_config_text(text, path, fmt=fmt)
    validate_experiment_config(config)
    return config


# ------------------------------------------------------------- validation


def _describe(value: Any) -> str:
    """A value as the user wrote it, cut short: error messages stay one readable line."""
    return _shorten(json.dumps(value, default=repr), 120)


def _parse_key(key: Any) -> tuple[tuple[str, ...], bool]:
    """The flag names a key sets, and whether it is a compound `[a,b]` key."""
    if not isinstance(key, str):
        raise UsageError(f"experiment config key {_shorten(repr(key))} must be a string")
    if _SIMPLE_KEY.fullmatch(key):
        return (key,), False
    compound = _COMPOUND_KEY.fullmatch(key)
    if compound:
        return tuple(name.strip() for name in compound.group(1).split(",")), True
    raise UsageError(
        f"invalid experiment config key {_shorten(repr(key))}: keys may not contain whitespace, "
        "and commas only appear inside a compound key such as \"[a,b]\""
    )


def _check_value(key: str, value: Any, context: Any) -> None:
    """A flag's value: an atom, or (rendered with str(), as the original did) a list."""
    if value is None or not isinstance(value, (*_ATOM_TYPES, list)):
        kind = "null" if value is None else type(value).__name__
        raise UsageError(
            f"invalid value for key {key!r}: {_describe(context)} ({kind} is not allowed; "
            "use a string, number, boolean or a list of them)"
        )


def _axis_for(key: str, value: Any) -> Axis:
    names, compound = _parse_key(key)
    if not compound:
        (name,) = names
        if isinstance(value, list):
            for item in value:
                _check_value(key, item, value)
            return [((name, item),) for item in value]
        _check_value(key, value, value)
        return [((name, value),)]

    # Compound key: a list of joint values, or one list that is itself the joint
    # value; as in the original, the first element tells which.
    if not isinstance(value, list):
        raise UsageError(
            f"compound key {key!r} needs a list of {len(names)} values "
            f"(or a list of such lists), got {_describe(value)}"
        )
    if not value or isinstance(value[0], list):
        joint_values = value  # [] is an empty axis: zero experiments
        for joint in joint_values:
            if not isinstance(joint, list):
                raise UsageError(
                    f"compound key {key!r} mixes lists and single values: {_describe(value)}"
                )
    else:
        joint_values = [value]
    axis = []
    for joint in joint_values:
        if len(joint) != len(names):
            raise UsageError(
                f"compound key {key!r} names {len(names)} flag{'s' if len(names) != 1 else ''} "
                f"but value {_describe(joint)} has {len(joint)}"
            )
        for item in joint:
            _check_value(key, item, joint)
        axis.append(tuple(zip(names, joint)))
    return axis


def _dict_axes(config: dict) -> list[Axis]:
    axes = []
    seen: dict[str, str] = {}
    for key, value in config.items():
        axis = _axis_for(key, value)
        for name in _parse_key(key)[0]:
            if name in seen:
                raise UsageError(
                    f"flag {name!r} is set by both {seen[name]!r} and {key!r} in one experiment config"
                )
            seen[name] = key
        axes.append(axis)
    return axes


def experiment_plan(config: Any) -> list[list[Axis]]:
    """Validate a config; return one list of axes per dict, in expansion order."""
    plans: list[list[Axis]] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            plans.append(_dict_axes(node))
        elif isinstance(node, list):
            for item in node:
                visit(item)
        else:
            raise UsageError(
                f"an experiment config must be a dict or a list of dicts, got {_describe(node)}"
            )

    visit(config)
    return plans


def validate_experiment_config(config: Any) -> None:
    experiment_plan(config)


# -------------------------------------------------------------- expansion


def _expand(config: Any, render: Callable[[Choice], Any], join: Callable[[tuple], Any]) -> Iterator:
    """Walk the product with the FIRST key varying fastest, as Caliban 0.4.2 orders jobs."""
    for axes in experiment_plan(config):
        rendered = [[render(choice) for choice in axis] for axis in reversed(axes)]
        for combination in itertools.product(*rendered):
            yield join(combination[::-1])


def expand_experiments(config: Any) -> Iterator[Experiment]:
    """Lazily yield each experiment as an ordered dict of flag -> value."""
    return _expand(config, lambda choice: choice, lambda combo: dict(itertools.chain.from_iterable(combo)))


# Beyond this a sweep's exact size only matters as "too many"; multiplying on
# would cost seconds for a config with 100,000 axes.
_COUNT_CEILING = 10**30

# Default --max_experiments: each job of `caliban cloud`/`caliban run` costs a
# container or a cloud job, so a typo in a sweep must not submit millions;
# `expansion` only prints, so it allows more.
MAX_JOBS_PER_SWEEP = 10_000
MAX_EXPERIMENTS_TO_EXPAND = 100_000


def count_experiments(config: Any) -> int:
    """The number of experiments, by arithmetic only (nothing is expanded);
    saturates just above 10**30."""
    total = 0
    for axes in experiment_plan(config):
        count = 1
        for axis in axes:
            count *= len(axis)
            if count > _COUNT_CEILING or count == 0:
                break
        total = min(total + count, _COUNT_CEILING + 1)
    return total


def check_sweep_size(config: Any, source: str, limit: int, command: str) -> int:
    """Refuse a sweep over `limit` experiments before any job is rendered;
    returns the number of experiments. `command` names who refuses, e.g.
    "caliban cloud", for the message."""
    if limit < 1:
        raise UsageError(f"--max_experiments must be a positive whole number, got {limit}")
    count = count_experiments(config)
    if count > limit:
        size = f"{count:,}" if count <= _COUNT_CEILING else f"more than {_COUNT_CEILING:,.0e}"
        raise UsageError(
            f"experiment config {source} expands to {size} jobs, over the limit of {limit:,} "
            f"for {command}; pass --max_experiments N to allow more"
        )
    return count


def _flag_tokens(pairs: Iterable[tuple[str, Any]]) -> tuple[str, ...]:
    tokens: list[str] = []
    for key, value in pairs:
        if value is True:
            tokens.append(f"--{key}")
        elif value is not False:
            tokens += (f"--{key}", str(value))
    return tuple(tokens)


def experiment_to_args(experiment: Experiment, base: Iterable[str] = ()) -> list[str]:
    """argv for one experiment: the pass-through args first, then `--key value` pairs."""
    return [*base, *_flag_tokens(experiment.items())]


def expand_as_json(config: Any) -> Iterator[str]:
    """Each experiment rendered as `json.dumps(experiment)` would render it."""

    def render(choice: Choice) -> str:
        return ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in choice)

    return _expand(config, render, lambda combo: "{" + ", ".join(part for part in combo if part) + "}")


def expand_as_shell_lines(config: Any) -> Iterator[str]:
    """Each experiment's flags as one shell-quoted line, ready to paste."""
    import shlex

    def render(choice: Choice) -> str:
        return " ".join(shlex.quote(token) for token in _flag_tokens(choice))

    return _expand(config, render, lambda combo: " ".join(part for part in combo if part))
