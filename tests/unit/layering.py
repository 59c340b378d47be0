"""The import graph of a package, read from its source (no module is imported), for the
layering contracts in test_layering.py.

Every import counts, at module level or inside a function (a lazy import still ties the
modules together); imports under ``if TYPE_CHECKING:`` do not (they never run). ``from pkg
import name`` is an edge to ``pkg.name`` when that is a module of the package, else to ``pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    module: str  # dotted, as resolved
    line: int
    lazy: bool  # inside a function


@dataclass(frozen=True)
class Call:
    name: str  # the called attribute or name, e.g. "open_connection"
    text: str  # e.g. "asyncio.open_connection"
    line: int


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file, for every module of `package` under `root`."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node with whether it sits inside a function."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, lazy = stack.pop()
        yield node, lazy
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def imports(name: str, path: Path, known: Mapping[str, Path]) -> list[Import]:
    """The imports of module `name` (file `path`), resolved against the `known` modules."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_nodes(tree)
    found = []
    for node, lazy in _walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno, lazy) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                found.append(Import(full if full in known else source, node.lineno, lazy))
    return found


def calls(path: Path, names: Iterable[str]) -> list[Call]:
    """The calls in `path` whose function is a name or attribute in `names`."""
    wanted = set(names)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if called in wanted:
            found.append(Call(called, ast.unparse(func), node.lineno))
    return found


def attributes_of(path: Path, module: str) -> set[str]:
    """The names used from `module` in `path`: ``module.X`` and ``from module import X``."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == module:
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == module:
            used.update(alias.name for alias in node.names)
    return used


def graph(root: Path, package: str) -> dict[str, list[Import]]:
    known = modules(root, package)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import cycles: strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges or w == v:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def closure(edges: Mapping[str, Iterable[str]], start: Iterable[str]) -> set[str]:
    """`start` and every module of the graph they import, directly or not."""
    seen: set[str] = set()
    todo = [m for m in start if m in edges]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [w for w in edges[m] if w in edges and w not in seen]
    return seen
