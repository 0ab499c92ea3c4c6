"""The import direction of the packages, read from the source (every import, those inside functions too).

* ``services/`` never imports ``trainer``: the servers and their images work without the client.
* ``trainer/`` imports nothing from ``services``: a training job needs httpx (and TRL), not the renderers.
* ``services/`` has no import cycle, not even through an import inside a function (``evaluate`` and
  ``report`` had one, ``cli`` and ``audit.cli`` another).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.conftest import REPO


def _modules(package: str) -> dict[str, Path]:
    root = REPO / package.replace(".", "/")
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """``(line, imported module)`` for every import statement anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:  # `from pkg import module` imports pkg.module
                yield node.lineno, f"{base}.{alias.name}"


def _offending(package: str, forbidden: str) -> list[str]:
    return [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for module, path in _modules(package).items()
        for line, name in _imports(module, path)
        if name == forbidden or name.startswith(forbidden + ".")
    ]


def _cycles(graph: Mapping[str, set[str]]) -> list[str]:
    """Every cycle a depth-first walk of ``graph`` (module: modules it imports) runs into."""
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_services_never_import_the_trainer() -> None:
    assert _offending("services", "trainer") == []


def test_the_trainer_imports_nothing_from_services() -> None:
    assert _offending("trainer", "services") == []


def test_services_have_no_import_cycle() -> None:
    modules = _modules("services")
    graph = {
        module: {name for _, name in _imports(module, path) if name in modules and name != module}
        for module, path in modules.items()
    }
    assert _cycles(graph) == []


def test_the_checks_see_imports_inside_functions_and_cycles(tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from trainer.x import y\n    import services.a\n    from . import b\n")
    found = {name for _, name in _imports("pkg.probe", path)}
    assert found >= {"trainer.x", "trainer.x.y", "services.a", "pkg", "pkg.b"}
    assert _cycles({"run": {"report"}, "report": {"summary", "run"}, "summary": set()}) == ["report -> run -> report"]
