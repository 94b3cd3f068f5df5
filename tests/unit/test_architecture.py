"""The layers of mailwatch and what each may import (docs/architecture.md holds the same table).

Every module under ``mailwatch/`` is parsed with :mod:`ast` (nothing is imported), every
``import`` statement in it (top level, in functions, under ``TYPE_CHECKING``) becomes an edge of
the import graph, and the graph is checked against :data:`MAY_IMPORT`, :data:`NO_IO`,
:data:`SANDBOX_USERS`, for cycles, and for module length. The checker is also run on fake
modules, to show it fails when the core imports an adapter.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mailwatch"

ALL = frozenset({
    "core", "parsing", "alerting", "config", "store", "sources", "notify", "app", "web", "cli",
    "sandbox", "errors", "logs", "gcpause", "fleet",
})  # fmt: skip
"""The layers: a subpackage of mailwatch, or one of its top-level modules."""

MAY_IMPORT: Mapping[str, frozenset[str]] = {
    "errors": frozenset(),
    "gcpause": frozenset(),
    "core": frozenset({"errors"}),
    "logs": frozenset({"core", "errors"}),
    "parsing": frozenset({"core", "errors"}),
    "alerting": frozenset({"core", "errors"}),
    "config": frozenset({"core", "alerting", "errors"}),
    "store": frozenset({"core", "alerting", "config", "errors", "logs"}),
    "sources": frozenset({"core", "parsing", "config", "store", "errors", "logs", "gcpause"}),
    "notify": frozenset({"core", "alerting", "config", "errors", "logs"}),
    "fleet": frozenset({"core", "config", "errors", "logs"}),
    "sandbox": frozenset({"parsing", "core", "errors"}),
    "app": ALL - {"web", "cli"},
    "web": ALL - {"cli"},
    "cli": ALL,
}
"""What each layer may import besides itself (the table in docs/architecture.md)."""

SANDBOX_USERS = frozenset({"mailwatch.app.demo"})
"""Outside the cli layer, only these modules may import the test servers of mailwatch.sandbox."""

NO_IO = frozenset({
    "asyncio", "sqlite3", "subprocess", "socket", "ssl", "select", "selectors", "signal",
    "threading", "multiprocessing", "shutil", "tempfile", "urllib", "http", "smtplib", "logging",
    "structlog", "aiohttp", "aiosmtplib", "aioimaplib", "prometheus_client", "click",
})  # fmt: skip
"""Modules that do I/O (or log): the pure layers never import them."""

PURE_LAYERS = frozenset({"core", "parsing", "alerting"})
"""Layers that take values and return values: no I/O, no logging, an explicit ``now``."""

MAX_LINES = 400
LONG_MODULES: Mapping[str, str] = {}
"""Modules allowed over :data:`MAX_LINES`, and why they are not split now."""


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``mailwatch.core.model`` for ``mailwatch/core/model.py``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(name: str, source: str, is_package: bool, known: Iterable[str]) -> set[str]:
    """The mailwatch modules (or packages) ``source`` imports, resolved to known modules."""
    known = set(known)
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from mailwatch.app import queries``: the module when it is one
            targets = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t == "mailwatch" or t.startswith("mailwatch."))
    return found


def external_imports(source: str) -> set[str]:
    """The top-level names of the non-mailwatch modules ``source`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found - {"mailwatch", "__future__"}


def layer(module: str) -> str:
    """``core`` for ``mailwatch.core.model``, ``errors`` for ``mailwatch.errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mailwatch"


def sources_of(root: Path = PACKAGE) -> dict[str, tuple[str, bool]]:
    """Every module: its source text and whether it is a package ``__init__``."""
    return {
        module_name(path, root): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
        for path in sorted(root.rglob("*.py"))
    }


def graph_of(sources: Mapping[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module → the mailwatch modules it imports (self-imports dropped)."""
    return {
        name: imports_of(name, text, is_package, sources) - {name}
        for name, (text, is_package) in sources.items()
    }


def rule_violations(sources: Mapping[str, tuple[str, bool]]) -> list[str]:
    """Every import that breaks :data:`MAY_IMPORT`, :data:`SANDBOX_USERS` or :data:`NO_IO`."""
    problems = []
    for module, targets in sorted(graph_of(sources).items()):
        here = layer(module)
        allowed = MAY_IMPORT.get(here)
        for target in sorted(targets):
            there = layer(target)
            if there == here or target == "mailwatch":
                continue  # within a layer; the package root only holds the version
            if allowed is None:
                if here != "mailwatch" and module != "mailwatch.__main__":
                    problems.append(f"{module}: layer {here!r} is not in the table")
                continue
            if there not in allowed:
                problems.append(f"{module} ({here}) imports {target} ({there})")
            elif there == "sandbox" and here != "cli" and module not in SANDBOX_USERS:
                problems.append(f"{module} imports the test servers ({target})")
        if here in PURE_LAYERS:
            problems += [
                f"{module} ({here}, pure) imports {name}"
                for name in sorted(external_imports(sources[module][0]) & NO_IO)
            ]
    return problems


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return found


SOURCES = sources_of()


class TestTheRealPackage:
    """The rules hold for mailwatch as it is."""

    def test_every_layer_is_in_the_table(self) -> None:
        """Each subpackage and top-level module is a known layer (a new one needs a rule)."""
        layers = {layer(m) for m in SOURCES} - {"mailwatch", "__main__"}
        assert layers == ALL

    def test_imports_follow_the_layer_rules(self) -> None:
        """No layer imports one it may not; the pure layers import no I/O module."""
        assert rule_violations(SOURCES) == []

    def test_no_import_cycles(self) -> None:
        """No two modules import each other, directly or through others."""
        assert cycles(graph_of(SOURCES)) == []

    def test_modules_are_short(self) -> None:
        """No module is over 400 lines, except the listed ones (each with its reason)."""
        long = {name for name, (text, _) in SOURCES.items() if len(text.splitlines()) > MAX_LINES}
        assert long <= set(LONG_MODULES), sorted(long - set(LONG_MODULES))
        stale = {n for n in LONG_MODULES if len(SOURCES.get(n, ("",))[0].splitlines()) <= MAX_LINES}
        assert not stale, f"no longer long (or gone): drop them from LONG_MODULES: {stale}"

    def test_the_graph_is_real(self) -> None:
        """The checker sees the package's imports (an empty graph would pass every rule)."""
        graph = graph_of(SOURCES)
        assert "mailwatch.core.model" in graph["mailwatch.core.judgement"]
        assert "mailwatch.app.queries" in graph["mailwatch.web.api"]
        assert "mailwatch.cli.common" in graph["mailwatch.cli.inspection"]


def _fake(**modules: str) -> dict[str, tuple[str, bool]]:
    """A package of fake modules: ``core__fake="..."`` is ``mailwatch.core.fake``."""
    sources = {
        "mailwatch.store.db": ("class Store: ...\n", False),
        "mailwatch.core.model": ("class Message: ...\n", False),
    }
    for key, text in modules.items():
        sources["mailwatch." + key.replace("__", ".")] = (text, False)
    return sources


class TestTheCheckerFails:
    """The checker reports each kind of breach (so a green run means something)."""

    def test_core_importing_the_store(self) -> None:
        """The core importing an adapter is a violation."""
        fake = _fake(core__fake="from mailwatch.store.db import Store\n")
        assert rule_violations(fake) == [
            "mailwatch.core.fake (core) imports mailwatch.store.db (store)"
        ]

    def test_core_importing_it_in_a_function(self) -> None:
        """A deferred import counts as much as one at the top."""
        fake = _fake(core__fake="def f():\n    from mailwatch.store import db\n")
        assert rule_violations(fake) == [
            "mailwatch.core.fake (core) imports mailwatch.store.db (store)"
        ]

    @pytest.mark.parametrize("module", ["sqlite3", "asyncio", "structlog", "subprocess"])
    def test_core_doing_io(self, module: str) -> None:
        """A pure layer importing an I/O module is a violation."""
        fake = _fake(core__fake=f"import {module}\n")
        assert rule_violations(fake) == [f"mailwatch.core.fake (core, pure) imports {module}"]

    def test_web_importing_the_cli(self) -> None:
        """The web layer may not import the command line."""
        fake = _fake(web__fake="import mailwatch.cli.render\n", cli__render="X = 1\n")
        assert rule_violations(fake) == [
            "mailwatch.web.fake (web) imports mailwatch.cli.render (cli)"
        ]

    def test_app_importing_the_sandbox(self) -> None:
        """Only the demo (and the CLI) may start the test servers."""
        fake = _fake(app__fake="from mailwatch.sandbox import postfix\n", sandbox__postfix="")
        assert rule_violations(fake) == [
            "mailwatch.app.fake imports the test servers (mailwatch.sandbox.postfix)"
        ]

    def test_a_cycle(self) -> None:
        """Two modules importing each other (through a third) form a cycle."""
        fake = _fake(
            cli__a="from mailwatch.cli import b\n",
            cli__b="import mailwatch.cli.c\n",
            cli__c="from mailwatch.cli.a import x\n",
        )
        assert cycles(graph_of(fake)) == [["mailwatch.cli.a", "mailwatch.cli.b", "mailwatch.cli.c"]]


def test_the_error_tree_is_in_one_module() -> None:
    """Every MailwatchError subclass is defined in mailwatch/errors.py and drawn in its tree."""
    from mailwatch import errors

    tree = {
        name for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.MailwatchError)
    }  # fmt: skip
    elsewhere = [
        f"{module}.{node.name}"
        for module, (text, _) in SOURCES.items()
        if module != "mailwatch.errors"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ClassDef)
        and any(isinstance(b, ast.Name) and b.id in tree for b in node.bases)
    ]
    assert elsewhere == []
    drawn = errors.__doc__ or ""
    assert sorted(n for n in tree if f" {n}" not in drawn) == []
