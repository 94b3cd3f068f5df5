"""IMAP has one owner: mailwatch's own client. No library internals are touched anywhere.

Issue 12: the adapter used to own the framing, STARTTLS, SASL and FETCH reading *and* write
aioimaplib's private state (``data_received``, ``welcome``, ``state``, ``_client_task``)
behind a ``<2.1`` pin. The decision (docs/architecture.md, "IMAP") is a small client of
mailwatch's own; these checks keep it that way: no module imports aioimaplib, nothing
assigns another object's protocol hooks or state, and no module reads or writes a private
attribute (``obj._name``) of an object other than its own ``self``/``cls`` (the sandbox's
test servers, which call their own classes' helpers, apart).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mailwatch"

HOOKS = frozenset({
    "data_received", "connection_made", "connection_lost", "eof_received", "welcome", "state",
    "incomplete_line", "transport", "current_command", "pending_sync_command",
})  # fmt: skip
"""Attributes of a protocol object that only its owner may assign."""

PRIVATE_ALLOWED_IN = frozenset({"sandbox"})
"""Layers whose modules may use private helpers of their own classes (the test servers)."""

PUBLIC_UNDERSCORE = frozenset({
    "_replace", "_asdict", "_fields", "_make", "_field_defaults", "_exit",
})  # fmt: skip
"""Named-tuple API and ``os._exit`` (a forked child's way out): public despite the underscore."""


def violations(root: Path = PACKAGE) -> list[str]:
    """Every aioimaplib import, foreign hook assignment and foreign private attribute."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root.parent)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names.append(getattr(node, "module", None) or "")
                if any(n.split(".")[0] == "aioimaplib" for n in names):
                    found.append(f"{where}:{node.lineno}: imports aioimaplib")
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                if (isinstance(target, ast.Attribute) and target.attr in HOOKS
                        and not _own(target.value)):  # fmt: skip
                    found.append(
                        f"{where}:{target.lineno}: assigns .{target.attr} of another object"
                    )
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and where.parts[1] not in PRIVATE_ALLOWED_IN
                    and not node.attr.startswith("__") and node.attr not in PUBLIC_UNDERSCORE
                    and not _own(node.value)):  # fmt: skip
                found.append(
                    f"{where}:{node.lineno}: private attribute .{node.attr} of another object"
                )
    return found


def _own(value: ast.expr) -> bool:
    """Whether ``value`` is the object itself (``self``, ``cls``) or a module (``obj`` below)."""
    return isinstance(value, ast.Name) and value.id in {"self", "cls"}


def test_imap_has_one_owner_and_no_library_internals_are_touched() -> None:
    """No aioimaplib import, no foreign protocol hook assigned, no foreign private attribute."""
    assert violations() == []


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import aioimaplib\n", "imports aioimaplib"),
        ("from aioimaplib import IMAP4\n", "imports aioimaplib"),
        ("protocol.data_received = feed\n", "assigns .data_received"),
        ("imap.protocol.state = 'SELECTED'\n", "assigns .state"),
        ("p.welcome = guarded\n", "assigns .welcome"),
        ("await cancel(imap._client_task)\n", "private attribute ._client_task"),
        ("x = other._buffer\n", "private attribute ._buffer"),
    ],
)
def test_the_checker_sees_each_kind(tmp_path: Path, source: str, problem: str) -> None:
    """The checker reports each kind of violation in a fake package."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(source, encoding="utf-8")
    assert any(problem in v for v in violations(tmp_path / "pkg"))


def test_the_checker_allows_own_state_and_named_tuples(tmp_path: Path) -> None:
    """``self.state = ...``, ``self._x`` and ``record._replace(...)`` are fine."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "class A:\n    def f(self, r):\n"
        "        self.state = 1\n        self._x = r._replace(a=1)\n",
        encoding="utf-8",
    )
    assert violations(tmp_path / "pkg") == []
