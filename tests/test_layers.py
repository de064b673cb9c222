"""The source tree: which package may import which (the layers), no import cycles, a map of every
package in its docstring that names exactly its modules, and one CLI module per command."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from catdog.cli import COMMAND_MODULES, build_parser

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "catdog"

# The layers, lowest first, as the data flows: a module may import its own unit and the units of
# lower layers, never a unit of its own layer or of a higher one.
LAYERS = (
    ("catdog", "catdog.errors", "catdog.defaults", "catdog.outputs"),
    ("catdog.files", "catdog.environment", "catdog.terminal", "catdog.metrics"),
    ("catdog.data", "catdog.trust", "catdog.formats"),
    ("catdog.models",),
    ("catdog.runs",),
    ("catdog.training", "catdog.audit"),
    ("catdog.report",),
    ("catdog.explain",),
    ("catdog.evaluation",),
    ("catdog.workflow",),
    ("catdog.deploy", "catdog.exercise"),
    ("catdog.review",),
    ("catdog.cli",),
    ("catdog.__main__",),
)
LAYER = {unit: number for number, units in enumerate(LAYERS) for unit in units}
# Besides the layers' order: what training may not know of, and what lies above data and models.
NOT_FOR_TRAINING = ("catdog.evaluation", "catdog.trust", "catdog.explain", "catdog.deploy", "catdog.audit",
                    "catdog.report", "catdog.workflow", "catdog.exercise", "catdog.review")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The catdog modules `path` imports (at any depth in the file, lazily or not)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # A package's own __init__ imports its modules; a module may import its package's parts.
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(paths)) for name, path in paths.items()}


def unit(module: str) -> str:
    """The unit of the layers a module belongs to: its top-level package or module under catdog."""
    return ".".join(module.split(".")[:2])


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a unit of the same or a higher layer than the importing module's."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if unit(target) != unit(module) and LAYER[unit(target)] >= LAYER[unit(module)]:
                found.append(f"{module} imports {target}")
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target, [*stack, target])):
                return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [node])):
            return cycle
    return None


def test_the_graph_sees_lazy_and_relative_imports_and_the_checks_find_what_breaks_them():
    graph = import_graph()
    assert "catdog.training.engine" in graph["catdog.training"]
    assert "catdog.explain.gradcam" in graph["catdog.evaluation.evaluate"]  # imported inside a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    upward = {"catdog.data.scan": {"catdog.models.factory"}, "catdog.models.factory": {"catdog.errors"},
              "catdog.data.splits": {"catdog.trust.ood"}}
    assert layer_violations(upward) == ["catdog.data.scan imports catdog.models.factory",
                                        "catdog.data.splits imports catdog.trust.ood"]


def test_every_unit_has_a_layer():
    assert {unit(module) for module in import_graph()} == set(LAYER)


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    assert layer_violations(import_graph()) == []


@pytest.mark.parametrize("package", ["catdog.data", "catdog.models"])
def test_data_and_models_import_nothing_above_them(package):
    above = {target for module, targets in import_graph().items() if unit(module) == package
             for target in targets if LAYER[unit(target)] > LAYER[package]}
    assert above == set()


def test_training_stops_at_the_model():
    known = {target for module, targets in import_graph().items() if unit(module) == "catdog.training"
             for target in targets}
    assert {unit(target) for target in known} & set(NOT_FOR_TRAINING) == set()


def test_no_module_imports_itself_back():
    assert find_cycle(import_graph()) is None


def test_the_report_is_one_package():
    assert (PACKAGE / "report" / "__init__.py").is_file()
    assert not [name for name in ("report.py", "plots.py", "preview.py", "previews.py") if (PACKAGE / name).exists()]


def packages() -> list[Path]:
    return sorted(path.parent for path in PACKAGE.rglob("__init__.py"))


def mapped(package: Path) -> set[str]:
    """The modules (`name.py`) and subpackages (`name/`) a package's docstring maps, one per line."""
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    return {match[0] + match[1] for match in re.findall(r"^\s*- `(\w+)(\.py|/)`", docstring, re.M)}


def contents(package: Path) -> set[str]:
    modules = {path.name for path in package.glob("*.py") if path.stem not in ("__init__", "__main__")}
    return modules | {f"{path.parent.name}/" for path in package.glob("*/__init__.py")}


@pytest.mark.parametrize("package", packages(), ids=lambda p: module_name(p / "__init__.py"))
def test_each_package_docstring_maps_exactly_its_modules(package):
    assert mapped(package) == contents(package)


def test_the_docstring_map_test_sees_what_is_missing(tmp_path):
    (tmp_path / "__init__.py").write_text('"""A package.\n\n- `one.py`: the first.\n- `sub/`: a folder.\n"""\n')
    for name in ("one.py", "two.py", "sub/__init__.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    assert contents(tmp_path) - mapped(tmp_path) == {"two.py"}


def test_each_command_lives_in_the_module_named_after_it():
    parser = build_parser()
    (commands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    assert sorted(commands.choices) == sorted(COMMAND_MODULES)
    assert {path.stem for path in (PACKAGE / "cli").glob("*.py")} == {*COMMAND_MODULES, "__init__", "common"}
