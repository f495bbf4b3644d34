"""The package's shape, read from its imports with ``ast``: folders are the stages of the
data flow and imports point down the flow only.

    cli ──► integrations ──► run ──► engine ──► hardware ──► core
     │            │            └──► analyse ──► core
     └──► report ─┴──► analyse

* no stage imports a stage above it (``core`` imports no other stage; ``analyse`` only
  ``core``; ``report`` only ``analyse`` and ``core``; ...);
* no import circle between modules;
* no ``_private`` name imported from another module;
* ``analyse/``, ``core/`` and ``report/`` import no torch at module level.

Imports inside functions count too (they are real dependencies); only module-level
imports count for the torch rule (a lazy import is the point of it).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "batchscope"

#: stage -> the stages it may import (besides itself and the top-level helpers)
ALLOWED = {
    "core": set(),
    "hardware": {"core"},
    "workloads": {"core"},
    "analyse": {"core"},
    "engine": {"core", "hardware", "workloads"},
    "report": {"core", "analyse"},
    "run": {"core", "hardware", "workloads", "engine", "analyse"},
    "integrations": {"core", "hardware", "workloads", "engine", "run", "analyse"},
    "cli": {"core", "hardware", "workloads", "engine", "run", "analyse", "report", "integrations"},
}
#: top-level modules every stage may use: plain helpers with no dependencies of their own
SHARED = {"errors", "units"}
#: imports allowed against the flow, inside functions only: the result's convenience
#: API (``run.analysis``, ``run.to_pandas()``, a notebook's view) computes on demand
LAZY_UP = {("batchscope.core.results", "analyse"), ("batchscope.core.results", "report")}
#: stages that must not import torch at module level
TORCH_FREE = {"core", "analyse", "report"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports(path: Path) -> list[tuple[str, list[str], bool]]:
    """(imported module, imported names, at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    # if TYPE_CHECKING: blocks at module level are module-level too (for the layer rules)
    for node in tree.body:
        if isinstance(node, ast.If):
            top_level |= {id(n) for n in ast.walk(node)}
    out = []
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((alias.name, [], id(node) in top_level))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names], id(node) in top_level))
    return out


def stage(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "batchscope":
        return None
    return parts[1]


def test_imports_point_down_the_flow() -> None:
    problems = []
    for name, path in modules().items():
        own = stage(name)
        if own is None or own not in ALLOWED:
            continue
        for target, _, top in imports(path):
            other = stage(target)
            if other is None or other == own or other in SHARED:
                continue
            if not top and (name, other) in LAZY_UP:
                continue
            if other not in ALLOWED[own]:
                problems.append(f"{name} imports {target} ({own} → {other})")
    assert problems == [], "\n".join(problems)


def test_no_private_name_is_imported_from_another_module() -> None:
    problems = []
    for name, path in modules().items():
        for target, names, _ in imports(path):
            if not target.startswith("batchscope") or target == name:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private or any(part.startswith("_") for part in target.split(".")[1:]):
                problems.append(f"{name} imports {private or target} from {target}")
    assert problems == [], "\n".join(problems)


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = {}
    known = modules()
    for name, path in known.items():
        deps = set()
        for target, names, top in imports(path):
            if not top and (name, stage(target)) in LAZY_UP:
                continue
            if target in known:
                deps.add(target)
            for n in names:  # "from batchscope.engine import trial" imports a module
                if f"{target}.{n}" in known:
                    deps.add(f"{target}.{n}")
        graph[name] = deps - {name}
    # a package's __init__ importing its own submodules is not a circle of the data flow
    for name in graph:
        graph[name] = {d for d in graph[name] if not d.startswith(name + ".")}
    circles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                circles.append(" → ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert circles == [], "\n".join(circles)


def test_analysis_core_and_reports_import_no_torch_at_module_level() -> None:
    problems = []
    for name, path in modules().items():
        if stage(name) not in TORCH_FREE:
            continue
        for target, _, top in imports(path):
            if top and target.split(".")[0] == "torch":
                problems.append(f"{name} imports {target} at module level")
    assert problems == [], "\n".join(problems)
