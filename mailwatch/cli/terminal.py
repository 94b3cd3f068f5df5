r"""Untrusted text made safe for a terminal: control, bidi and invisible characters escaped.

A subject is chosen by whoever sent the mail. Written raw, it can clear the screen, retitle
the window, plant an OSC 8 link, ring the bell, or use a bare carriage return or a bidi
override to make "Emergency recall" read "All fine". :func:`visible` turns every such character
into a visible escape (``\x1b``, ``\x85``, ``\u{202e}``) and doubles backslashes, so distinct
inputs stay distinct on screen. JSON output does not need this (JSON escapes control
characters itself) and does not use it.
"""

from __future__ import annotations

import unicodedata

_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Control (C0, DEL, C1), format (bidi controls, zero-width characters, soft hyphen...),
lone surrogates, and the line and paragraph separators."""


def _escape(char: str) -> str:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{{{code:x}}}"


def visible(text: str) -> str:
    r"""``text`` with every control or invisible format character escaped (``\`` doubled).

    Tabs and newlines are escaped too: a table cell or a labelled field is one line.
    """
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # the common case, no work
    return "".join(_escape(char) for char in text)
