"""No import cycles in the package: every module's imports (lazy ones too) form a DAG.

import-linter's ``acyclic_siblings`` contract (pyproject.toml) checks cycles between sibling
packages; this checks every module, a package and its own modules included.
"""

from __future__ import annotations

import grimp
import pytest

#: Cycles known today, each with the line that ends it (none: keep it that way).
KNOWN_CYCLES: set[frozenset[str]] = set()


def import_cycles(graph: grimp.ImportGraph) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[frozenset[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(frozenset(component))
    return cycles


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("imgcomp", cache_dir=None)


def test_the_package_has_no_new_import_cycles(graph: grimp.ImportGraph) -> None:
    cycles = set(import_cycles(graph))
    assert not cycles - KNOWN_CYCLES, f"import cycles: {sorted(map(sorted, cycles))}"
    assert not KNOWN_CYCLES - cycles, "a known cycle is gone: remove it from KNOWN_CYCLES"


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "a.b", "a.c", "a.d"):
        graph.add_module(module)
    graph.add_import(importer="a.b", imported="a.c")
    graph.add_import(importer="a.c", imported="a.b")
    graph.add_import(importer="a.d", imported="a.b")
    assert import_cycles(graph) == [frozenset({"a.b", "a.c"})]


def test_the_registry_imports_no_codec(graph: grimp.ImportGraph) -> None:
    imported = graph.find_modules_directly_imported_by("imgcomp.registry")
    # imgcomp.codecs.base and imgcomp.families.spec only under TYPE_CHECKING (the Codec type of
    # the factories, the FamilySpec type of the families)
    allowed = {"imgcomp.bitstream", "imgcomp.errors", "imgcomp.limits", "imgcomp.codecs.base"}
    assert imported <= allowed | {"imgcomp.families.spec"}
    # the built-in list is loaded by name, at the registry's first lookup, by nothing else
    assert not graph.find_modules_that_directly_import("imgcomp.builtin")
