"""Untrusted text on a terminal: control, C1 and bidi characters shown escaped, never raw."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from mailwatch.cli.render import stuck_table, table
from mailwatch.cli.terminal import visible

DANGEROUS = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_ESCAPE = re.compile(r"\\(\\|x([0-9a-f]{2})|u\{([0-9a-f]+)\})")


def unescape(text: str) -> str:
    """The inverse of :func:`visible` (a round trip proves distinct inputs stay distinct)."""

    def one(match: re.Match[str]) -> str:
        if match.group(1) == "\\":
            return "\\"
        return chr(int(match.group(2) or match.group(3), 16))

    return _ESCAPE.sub(one, text)


class TestVisible:
    """What each hostile sequence becomes."""

    def test_terminal_attacks_are_shown_not_obeyed(self) -> None:
        """Clear screen, OSC 8 link, window title, BEL, NUL, bare CR, C1, bidi override."""
        hostile = (
            "Emergency recall\r\x1b[2J\x1b]8;;http://evil.example\x07All fine\x1b]8;;\x07"
            "\x1b]0;title\x07\x00\x9b31m\u202eenif llA\u2066\u200f\u061c\ufeff\x7f"
        )
        shown = visible(hostile)
        assert not any(unicodedata.category(c) in DANGEROUS for c in shown)
        assert shown.startswith("Emergency recall\\x0d\\x1b[2J\\x1b]8;;http://evil.example\\x07")
        assert "\\x00" in shown
        assert "\\x9b" in shown
        assert "\\x7f" in shown
        assert "\\u{202e}" in shown
        assert "\\u{2066}" in shown
        assert "\\u{feff}" in shown

    def test_tab_and_newline_escaped_plain_text_untouched(self) -> None:
        """A cell is one line; ordinary text (accents, NBSP, emoji) is left alone."""
        assert visible("a\tb\nc") == "a\\x09b\\x0ac"
        plain = "Rappel d'urgence \u2013 Zoë\u00a0🙂"
        assert visible(plain) == plain

    def test_backslash_doubled(self) -> None:
        r"""A literal ``\\x1b`` in a subject cannot pass for an escaped ESC."""
        assert visible("\\x1b") == "\\\\x1b"
        assert visible("\\x1b") != visible("\x1b")

    @given(st.text(alphabet=st.characters(codec=None, exclude_categories=())))
    def test_output_is_safe_and_injective(self, text: str) -> None:
        """No control/format/separator character survives, and the input can be recovered."""
        shown = visible(text)
        assert not any(unicodedata.category(c) in DANGEROUS for c in shown)
        assert unescape(shown) == text


class TestTables:
    """Every table cell goes through :func:`visible`."""

    def test_table_cells_escaped(self) -> None:
        """A cell cannot reach the terminal raw, and widths count what is shown."""
        out = table(["A", "B"], [["x\x1b[2J", "y"]])
        assert "\x1b" not in out
        assert out.splitlines()[1] == "x\\x1b[2J  y"

    def test_stuck_subject_column_escaped(self) -> None:
        """``stuck --show-subject``: the subject column is escaped."""
        item = {
            "queue_id": "ABC", "class": "recall", "priority": "P1", "age": "5m",
            "queue": "deferred", "recipient_domains": ["justice.example"], "reason": None,
            "subject": "Emergency recall\rAll fine\u202e",
        }  # fmt: skip
        out = stuck_table([item], show_subject=True)
        assert "\r" not in out
        assert "\u202e" not in out
        assert "Emergency recall\\x0dAll fine\\u{202e}" in out
