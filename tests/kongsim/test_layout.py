"""kongsim's imports point one way: config → request → pdk → protocol → http, no cycles.

Read from the source (``ast``), so an import inside a function or under ``TYPE_CHECKING`` counts
too. Root modules: ``errors``, ``loglevels``, ``emulated`` and ``recorder`` sit below every
package; ``cli``, ``testing`` and ``__main__`` above them all.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "kongsim"

#: Lower first: a package may import only packages before it (and the bottom root modules).
LAYERS = ("config", "request", "pdk", "protocol", "http")
BOTTOM = {"kongsim.errors", "kongsim.loglevels", "kongsim.emulated", "kongsim.recorder"}
TOP = {"kongsim.cli", "kongsim.testing", "kongsim.__main__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(path: Path) -> Iterator[str]:
    """Every module named by an import in ``path`` (``from a import b`` gives ``a.b`` when that
    is a module, else ``a``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield full if full in MODULES else node.module


GRAPH = {
    name: {m for m in _imports(path) if m.split(".")[0] == "kongsim"}
    for name, path in MODULES.items()
}


def _layer(module: str) -> int:
    parts = module.split(".")
    if module in BOTTOM:
        return -1
    if module in TOP:
        return len(LAYERS)
    assert len(parts) > 1 and parts[1] in LAYERS, f"{module} belongs to no layer"
    return LAYERS.index(parts[1])


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        if module != "kongsim":
            _layer(module)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "kongsim"))
def test_imports_point_down_the_layers(module: str) -> None:
    for target in GRAPH[module]:
        if target == "kongsim":
            continue
        assert _layer(target) <= _layer(module), f"{module} imports {target}, a higher layer"


def test_no_module_import_cycle() -> None:
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if seen.get(target) == 1:
                cycle = [*path[path.index(target) :], target] if target in path else [target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in seen:
                visit(target, [*path, target])
        seen[module] = 2

    for module in sorted(GRAPH):
        if module not in seen:
            visit(module, [module])


def test_proxy_and_endpoints_do_not_import_the_gateway() -> None:
    for module in ("kongsim.http.proxy", "kongsim.http.exchange", "kongsim.http.admin"):
        assert "kongsim.http.gateway" not in GRAPH[module]


def test_kongsim_imports_neither_the_plugin_nor_the_sidecar() -> None:
    for name, path in MODULES.items():
        roots = {m.split(".")[0] for m in _imports(path)}
        assert not roots & {"kong_plugin", "sidecar"}, name


def test_the_product_does_not_import_kongsim() -> None:
    repo = ROOT.parent
    for package in ("kong_plugin", "sidecar"):
        for path in (repo / package).rglob("*.py"):
            roots = {m.split(".")[0] for m in _imports(path)}
            assert "kongsim" not in roots, path
