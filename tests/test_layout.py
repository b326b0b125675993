"""The package's layout rules (docs/design.md), checked on its source.

Modules stay small, functions short, private names private, the layers acyclic:
``core/`` is torch numerics that imports no xarray and nothing of ``surrogates/``
but the protocol.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xlevda"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _imports(name: str) -> list[tuple[str, str | None]]:
    """``(module, imported name or None)`` for every import of an xlevda module in ``name``."""
    out = []
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names]
    return [(m, n) for m, n in out if m == "xlevda" or m.startswith("xlevda.")]


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    body = node.body
    has_doc = isinstance(body[0], ast.Expr) and isinstance(
        getattr(body[0], "value", None), ast.Constant
    )
    start = body[0].end_lineno + 1 if has_doc else body[0].lineno
    return sum(
        1
        for line in lines[start - 1 : node.end_lineno]
        if line.strip() and not line.strip().startswith("#")
    )


def test_modules_are_small():
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_functions_are_short():
    long = {}
    for name, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node in ast.walk(TREES[name]):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if (n := _code_lines(node, lines)) > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} code lines: {long}"


def test_no_private_names_cross_modules():
    private = [
        f"{name} imports {module}.{what}"
        for name in MODULES
        for module, what in _imports(name)
        if what is not None and what.startswith("_") and what != "__version__"
    ]
    assert not private, private


def test_core_is_torch_numerics_behind_the_surrogate_protocol():
    bad = []
    for name in MODULES:
        if not name.startswith("xlevda.core"):
            continue
        for node in ast.walk(TREES[name]):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [node.module] if isinstance(node, ast.ImportFrom) else []
                mods += [a.name for a in node.names] if isinstance(node, ast.Import) else []
                bad += [f"{name} imports {m}" for m in mods if m and m.split(".")[0] == "xarray"]
        for module, _ in _imports(name):
            allowed = module.startswith(("xlevda.core", "xlevda.errors", "xlevda.validate"))
            if not allowed and module != "xlevda.surrogates.protocol":
                bad.append(f"{name} imports {module}")
    assert not bad, bad


def _edges() -> dict[str, set[str]]:
    """Module-level import edges between xlevda modules (a package's own ``__init__`` aside)."""
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for node in TREES[name].body:  # module level only: deferred imports break no cycle rule
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    target = sub if sub in MODULES else node.module
                    if target in MODULES and target != name:
                        edges[name].add(target)
            elif isinstance(node, ast.Import):
                edges[name] |= {a.name for a in node.names if a.name in MODULES}
    for name in edges:  # a submodule's import of its parent package is Python's own import
        edges[name] = {t for t in edges[name] if not name.startswith(t + ".")}
    return edges


def test_no_import_cycles():
    edges, state, cycles = _edges(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_code_lines_skip_docstring_blanks_and_comments():
    source = 'def f():\n    """Doc.\n\n    More."""\n    x = 1\n\n    # note\n    return x\n'
    assert _code_lines(ast.parse(source).body[0], source.splitlines()) == 2
