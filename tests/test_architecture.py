"""The package's shape, checked from its source with ``ast`` (issue #9).

* The import graph of ``harness/`` (imports inside functions counted) has no circle.
* Imports run down the layers only: CLI -> plan -> backends -> agent/monitor -> results, and
  compare -> results; ``plan`` talks to the backends through ``harness.backends`` alone.
* In-container modules (agent, manifest, monitor/*, optimizer, results/*) import no host-side
  library (click, docker, pydantic, rich, jinja2, matplotlib) at import time, not even through
  another harness module.
* No module over 400 lines, no function over 60.

``python tests/test_architecture.py`` prints the figures (modules, lines, circles, largest module).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "harness"
HOST_ONLY = {"click", "docker", "pydantic", "rich", "jinja2", "matplotlib"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# Which group a module belongs to (longest matching prefix wins) and which groups it may import.
GROUPS = {
    "harness": "core", "harness.errors": "core", "harness.env": "core", "harness.__main__": "cli",
    "harness.safe_json": "core", "harness.hardware": "core", "harness.names": "core", "harness.filemode": "core", "harness.run_numbers": "core", "harness.overrides": "base",
    "harness.config": "base", "harness.experiment": "base", "harness.settings": "base",
    "harness.package_data": "base", "harness.code": "base", "harness.host_gpus": "base",
    "harness.nofollow": "core", "harness.envfilter": "core", "harness.diskspace": "core",
    "harness.results": "results", "harness.monitor": "monitor", "harness.optimizer": "optimizer",
    "harness.agent": "agent", "harness.manifest": "agent", "harness.autoinstrument": "agent",
    "harness.modes": "base",
    "harness.compare": "compare", "harness.engine": "engine", "harness.images": "images",
    "harness.image_context": "images", "harness.backends": "backends", "harness.plan": "plan",
    "harness.check": "check", "harness.scaffold": "scaffold", "harness.cli": "cli", "harness.entry": "cli",
    "harness.fingerprint": "core", "harness.hostload": "core",
}
IN_CONTAINER = {"core", "results", "monitor", "optimizer", "agent"}
ALLOWED = {
    "core": {"core"},
    "results": {"core"},
    "monitor": {"results", "core"},
    "optimizer": {"core"},
    "agent": {"monitor", "results", "core"},
    "base": {"base", "core"},
    "compare": {"results", "base", "core"},
    "engine": {"core"},
    "images": {"engine", "base", "core"},
    "backends": {"agent", "monitor", "results", "images", "engine", "base", "core"},
    "plan": {"backends", "results", "base", "core"},
    "check": {"engine", "images", "base", "core"},
    "scaffold": {"base", "core"},
    "cli": set(GROUPS.values()),
}# plan drives runs through the backends' package API, never one backend's module.
FORBIDDEN_PREFIXES = {"plan": ("harness.backends.",)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, known: dict[str, Path], *, top_level_only: bool = False) -> set[str]:
    """Modules ``path`` imports: harness modules by name, third-party ones by their top package.

    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is a module. Imports under
    ``if TYPE_CHECKING:`` never run and are not counted.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, nested)
                continue
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import) and not (top_level_only and nested):
                for alias in child.names:
                    found.add(alias.name)
            elif isinstance(child, ast.ImportFrom) and not (top_level_only and nested):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in known else base)
            visit(child, inner)

    visit(tree, False)
    out: set[str] = set()
    for name in found:
        if name == "harness" or name.startswith("harness."):
            resolved = _resolve(name, known)
            if resolved and resolved != module_name(path):
                out.add(resolved)
        else:
            out.add(name.split(".")[0])
    return out


def graph(*, top_level_only: bool = False) -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known, top_level_only=top_level_only) for name, path in known.items()}


def group_of(name: str) -> str:
    """The group of a module (longest prefix in GROUPS); a new top-level module must be added there."""
    matches = [p for p in GROUPS if name == p or name.startswith(p + ".")]
    if not matches or max(matches, key=len) == "harness" and name.count(".") == 1:
        raise AssertionError(f"{name} has no group: add it to GROUPS in tests/test_architecture.py")
    return GROUPS[max(matches, key=len)]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in sorted(edges.items()):
        g = group_of(src)
        for dst in sorted(t for t in targets if t in edges):
            if group_of(dst) != g and group_of(dst) not in ALLOWED[g]:
                bad.append(f"{src} -> {dst} ({g} may not import {group_of(dst)})")
            if any(dst.startswith(p) for p in FORBIDDEN_PREFIXES.get(g, ())):
                bad.append(f"{src} -> {dst} ({g} goes through the package's API)")
    return bad


def host_imports_in_container() -> list[str]:
    """In-container modules that pull a host-only library in at import time (directly or through harness)."""
    edges = graph(top_level_only=True)
    bad = []
    for name in sorted(edges):
        if group_of(name) not in IN_CONTAINER:
            continue
        seen, todo = {name}, [name]
        while todo:
            for dep in edges.get(todo.pop(), ()):
                if dep in HOST_ONLY:
                    bad.append(f"{name} imports {dep}" + ("" if dep in edges[name] else " (through harness)"))
                elif dep in edges and dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
    return bad


def long_functions() -> list[str]:
    out = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > MAX_FUNCTION_LINES:
                    out.append(f"{name}.{node.name}: {length} lines")
    return out


def module_lines() -> dict[str, int]:
    return {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}


def test_import_graph_has_no_circle() -> None:
    assert cycles(graph()) == []


def test_imports_run_down_the_layers() -> None:
    assert upward_imports(graph()) == []


def test_every_module_has_a_group() -> None:
    for name in modules():
        assert group_of(name) in ALLOWED, name
    try:
        group_of("harness.unregistered_module")
    except AssertionError as e:
        assert "add it to GROUPS" in str(e)
    else:
        raise AssertionError("an unregistered top-level module must be refused")


def test_in_container_modules_import_nothing_host_side() -> None:
    assert host_imports_in_container() == []


def test_modules_and_functions_stay_small() -> None:
    too_long = {name: n for name, n in module_lines().items() if n > MAX_MODULE_LINES}
    assert too_long == {}
    assert long_functions() == []


def _top_level_names(path: Path) -> set[str]:
    """Names a module defines or imports at its top level (read with ast: nothing is imported)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def test_every_harness_import_resolves() -> None:
    """``from harness.x import y`` names something that exists, also inside functions (lazy imports
    that a move left pointing at the old place fail only when that code path runs)."""
    known = modules()
    missing = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("harness"):
                if node.module not in known:
                    missing.append(f"{name}:{node.lineno} no module {node.module}")
                    continue
                defined = _top_level_names(known[node.module])
                missing += [f"{name}:{node.lineno} {node.module}.{a.name}" for a in node.names
                            if a.name not in defined and f"{node.module}.{a.name}" not in known]
    assert missing == []


def test_the_checker_sees_a_circle_and_an_upward_import() -> None:
    """The checks above can fail: a made-up graph with a circle and an upward import is caught."""
    edges = {"harness.results.io": {"harness.plan"}, "harness.plan": {"harness.results.io"}}
    assert cycles(edges) == [["harness.plan", "harness.results.io"]]
    assert upward_imports(edges) == ["harness.results.io -> harness.plan (results may not import plan)"]


if __name__ == "__main__":
    edges = graph()
    lines = module_lines()
    largest = max(lines, key=lines.__getitem__)
    print(f"modules: {len(lines)}, lines: {sum(lines.values())}, largest: {largest} ({lines[largest]})")
    print(f"over {MAX_MODULE_LINES} lines: " + (", ".join(f"{k} {v}" for k, v in sorted(lines.items())
                                                     if v > MAX_MODULE_LINES) or "none"))
    found = cycles(edges)
    print(f"import circles: {len(found)}")
    for comp in found:
        print("  " + " <-> ".join(comp))
    for kind, items in (("upward imports", upward_imports(edges)),
                        ("host imports in container", host_imports_in_container()),
                        (f"functions over {MAX_FUNCTION_LINES} lines", long_functions())):
        print(f"{kind}: {len(items)}")
        for item in items:
            print("  " + item)
