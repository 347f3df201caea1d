"""The package's layout rules, checked on every run instead of remembered.

- The pure core (`caliban/sweep`, `caliban/backends`) imports no I/O: no
  Docker, no cloud client, no store, no workflows or commands.
- `caliban/history` is the store only: it imports nothing from the Docker,
  cloud, backend, workflow or command code.
- Nothing outside `caliban/backends` branches on a backend's name.
- No argparse namespace below `caliban/commands`: only `main`, `options` and
  the commands look inside one.
- No function or class that only the tests use: everything defined in the
  package is named somewhere in the package besides its definition (or is an
  entry point in setup.py).
- The tests mirror the package: a test directory per subpackage of
  `caliban/`, named after it, and no test directory without a subpackage
  (tests of the top-level modules sit in `tests/` itself).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "caliban"
TESTS = pathlib.Path(__file__).resolve().parent
BACKEND_NAMES = {"vertex", "ml_v1"}

IO_PACKAGES = ("caliban.docker", "caliban.cloud", "caliban.workflows", "caliban.commands", "caliban.options",
               "caliban.main", "docker", "googleapiclient", "google", "requests", "httplib2", "sqlite3",
               "subprocess", "socket")
FORBIDDEN = {
    "caliban.sweep": IO_PACKAGES + ("caliban.history",),
    "caliban.backends": IO_PACKAGES,
    "caliban.history": ("caliban.docker", "caliban.cloud", "caliban.backends", "caliban.workflows",
                        "caliban.commands", "caliban.options", "caliban.main"),
}
# The one module of the store the backends may read: the status names.
ALLOWED = {"caliban.backends": ("caliban.history.states",)}
NAMESPACE_READERS = ("caliban.main", "caliban.options", "caliban.commands")


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, ast.parse(path.read_text(), str(path))


def imported(tree: ast.AST, module: str) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


ALL = list(modules())


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_what_they_may(layer):
    offences = []
    for module, tree in ALL:
        if not _under(module, layer):
            continue
        for name in imported(tree, module):
            if any(_under(name, allowed) for allowed in ALLOWED.get(layer, ())):
                continue
            if any(_under(name, bad) for bad in FORBIDDEN[layer]):
                offences.append(f"{module} imports {name}")
    assert not offences, "\n".join(offences)


def test_history_does_not_even_name_the_backends_package():
    for module, tree in ALL:
        if _under(module, "caliban.history"):
            assert not any(_under(n, "caliban.backends") for n in imported(tree, module)), module


def test_nothing_outside_backends_branches_on_a_backend_name():
    offences = []
    for module, tree in ALL:
        if _under(module, "caliban.backends"):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            names_backend = any(
                (isinstance(o, ast.Constant) and o.value in BACKEND_NAMES)
                or (isinstance(o, ast.Name) and o.id in ("VERTEX", "ML_V1"))
                or (isinstance(o, ast.Attribute) and o.attr in ("VERTEX", "ML_V1"))
                for o in operands
            )
            mentions_backend = any(
                (isinstance(o, ast.Name) and "backend" in o.id)
                or (isinstance(o, ast.Attribute) and "backend" in o.attr)
                for o in operands
            )
            local = any((isinstance(o, ast.Constant) and o.value == "local")
                        or (isinstance(o, (ast.Name, ast.Attribute)) and getattr(o, "id", getattr(o, "attr", "")) == "LOCAL")
                        for o in operands)  # cloud or local engine: not a choice between APIs
            equality = any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops)
            if names_backend or (mentions_backend and equality and not local):
                offences.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    assert not offences, "\n".join(offences)


def test_no_argparse_namespace_below_the_commands():
    offences = []
    for module, tree in ALL:
        if any(_under(module, reader) for reader in NAMESPACE_READERS):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "Namespace":
                offences.append(f"{module}:{node.lineno}: argparse.Namespace")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                    and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "args"):
                offences.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    assert not offences, "\n".join(offences)


def names_used(tree: ast.AST) -> set[str]:
    """Every name a module mentions: identifiers, attributes, imports, and
    the words of its strings (a `module:function` entry point, a getattr)."""
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.alias):
            used.add(node.name.rsplit(".", 1)[-1])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            used.update(node.value.replace(":", " ").replace(".", " ").split())
    return used


def unused_definitions(trees) -> list[str]:
    used = set().union(*(names_used(tree) for _, tree in trees))
    setup = PACKAGE.parent / "setup.py"
    used |= names_used(ast.parse(setup.read_text()))
    return [
        f"{module}:{node.lineno}: {node.name}"
        for module, tree in trees
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and not (node.name.startswith("__") and node.name.endswith("__"))
        and node.name not in used
    ]


def test_everything_the_package_defines_is_used_by_the_package():
    offences = unused_definitions(ALL)
    assert not offences, "defined but used only by tests (or nothing):\n" + "\n".join(offences)


def test_the_rules_see_real_offences():
    """The checks themselves can fail: a planted offence of each kind is found."""
    planted = ast.parse("from caliban.docker import engine\nif backend == 'vertex': pass\ngetattr(args, 'x')")
    orphan = ast.parse("def only_tests_call_me():\n    pass\n")
    assert unused_definitions([*ALL, ("caliban.planted", orphan)]) == ["caliban.planted:1: only_tests_call_me"]
    assert "caliban.docker.engine" in imported(planted, "caliban.sweep.x")
    compare = next(n for n in ast.walk(planted) if isinstance(n, ast.Compare))
    assert isinstance(compare.comparators[0], ast.Constant) and compare.comparators[0].value in BACKEND_NAMES


def layout_mismatches(package: pathlib.Path, tests: pathlib.Path) -> list[str]:
    subpackages = {p.parent.name for p in package.glob("*/__init__.py")}
    test_dirs = {p.parent.name for p in tests.glob("*/test_*.py")}
    return [f"caliban/{name}/ has no tests/{name}/" for name in sorted(subpackages - test_dirs)] + [
        f"tests/{name}/ mirrors no caliban/{name}/" for name in sorted(test_dirs - subpackages)
    ]


def test_the_tests_mirror_the_package_layout():
    assert layout_mismatches(PACKAGE, TESTS) == []


def test_the_mirror_check_sees_a_stray_test_directory(tmp_path):
    (tmp_path / "caliban" / "sweep").mkdir(parents=True)
    (tmp_path / "caliban" / "sweep" / "__init__.py").touch()
    (tmp_path / "tests" / "misc").mkdir(parents=True)
    (tmp_path / "tests" / "misc" / "test_x.py").touch()
    assert layout_mismatches(tmp_path / "caliban", tmp_path / "tests") == [
        "caliban/sweep/ has no tests/sweep/",
        "tests/misc/ mirrors no caliban/misc/",
    ]
