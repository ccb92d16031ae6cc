"""The package's import graph: no module imports itself back through others (function-level and TYPE_CHECKING
imports included), and the core never imports the shells (``gpuplan.cli``, ``gpuplan.web``)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
SHELLS = ("gpuplan.cli", "gpuplan.web")
# Modules that may import a shell: the shells themselves and the entry point.
SHELL_USERS = ("gpuplan.cli", "gpuplan.web", "gpuplan.__main__")
# Known circles still to be removed (each a frozenset of modules); an entry that no longer exists fails the test so
# the list only shrinks.
KNOWN_CIRCLES: set[frozenset[str]] = set()
KNOWN_SHELL_IMPORTS: set[str] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for f in SRC.rglob("*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _owner(name: str, modules: dict[str, Path]) -> str:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def import_graph() -> dict[str, set[str]]:
    """module -> the gpuplan modules it imports anywhere in its body."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                # ``from package import submodule`` depends on the submodule; ``from module import name`` on the
                # module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps.update(_owner(t, modules) for t in targets if t.startswith("gpuplan"))
        deps.discard(name)
        deps.discard("")
        graph[name] = deps
    return graph


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(frozenset(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "gpuplan.train.distributed" in graph["gpuplan.train.engine"]
    assert "gpuplan.train.context" in graph["gpuplan.train.stage"]


def test_no_import_circles():
    found = set(circles(import_graph()))
    assert found <= KNOWN_CIRCLES, sorted(sorted(c) for c in found - KNOWN_CIRCLES)
    assert KNOWN_CIRCLES <= found, f"no longer a circle, drop it from KNOWN_CIRCLES: {KNOWN_CIRCLES - found}"


def test_the_core_never_imports_the_shells():
    bad = {m for m, deps in import_graph().items()
           if not m.startswith(SHELL_USERS) and any(d.startswith(SHELLS) for d in deps)}
    assert bad <= KNOWN_SHELL_IMPORTS, sorted(bad - KNOWN_SHELL_IMPORTS)
    assert KNOWN_SHELL_IMPORTS <= bad, f"no longer imports a shell: {KNOWN_SHELL_IMPORTS - bad}"


def test_a_circle_is_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
