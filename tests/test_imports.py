"""No import cycle anywhere in src/perflab: every module's imports, read with `ast`, form a DAG."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "perflab"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The perflab modules one file imports, at any depth of its code (function-level too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            # `from . import x` imports the submodule x when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted((SRC / PACKAGE).rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported(p, modules) for p in paths}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def without_package_inits(edges):
    # A package's __init__ re-exports its submodules, and importing a submodule runs the
    # package's __init__ first: that edge is Python's, not a cycle of the code.
    return {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in edges.items()}


def test_no_import_cycle_in_src():
    cycle = find_cycle(without_package_inits(graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_walker_sees_function_level_imports_and_cycles(tmp_path):
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    report = graph()["perflab.report.pipeline"]
    assert {"perflab.report.cells", "perflab.report.render", "perflab._asv"} <= report


def test_report_stages_import_only_earlier_stages():
    order = ["spec", "cells", "comparisons", "tables", "check", "render", "cost", "commits", "pipeline", "cli"]
    edges = graph()
    for i, stage in enumerate(order):
        later = {f"perflab.report.{s}" for s in order[i + 1 :]}
        assert not edges[f"perflab.report.{stage}"] & later, stage


def test_one_meaning_per_name_in_the_report_namespace():
    # A submodule of perflab.report and a re-exported function never share a name.
    import types

    import perflab.report as report

    modules = {p.stem for p in (SRC / PACKAGE / "report").glob("*.py")} - {"__init__"}
    for name in modules:
        assert isinstance(getattr(report, name, None), (types.ModuleType, type(None))), name
