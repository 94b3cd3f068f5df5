r"""Operator patterns compiled by RE2, a linear-time engine (pure).

RE2 has no lookarounds or back references, so a configuration using them is refused by
``config check``; \s, \d and \w are rewritten to keep their Unicode meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import re2


class TextPattern(Protocol):
    """A compiled pattern as the classifier uses it: RE2's (:func:`compile_pattern`) or re's."""

    @property
    def pattern(self) -> str:
        """The source (the keyword prefilter reads it)."""

    @property
    def flags(self) -> int:
        """``re`` flags the source is read with."""

    def search(self, string: str, /) -> Any:
        """A match (``group(0)`` is the matched text) or ``None``."""


# Python's str patterns give \s, \d and \w their Unicode meaning; RE2's are ASCII. Rewritten
# so that, e.g., a no-break space from an encoded word still counts as a space (\b stays ASCII).
_UNICODE_CLASSES = {
    "s": r"\t-\r\x{1c}-\x{1f}\x{85}\p{Z}",  # what str.isspace() accepts
    "d": r"\p{Nd}",
    "w": r"\p{L}\p{N}_",
}


def _unicode_classes(source: str) -> str:
    r"""``source`` with \s, \d, \w (and \S, \D, \W outside classes) in Unicode terms."""
    out: list[str] = []
    in_class = False
    index = 0
    while index < len(source):
        char = source[index]
        if char == "\\" and index + 1 < len(source):
            escaped = source[index + 1]
            lower = escaped.lower()
            if lower in _UNICODE_CLASSES and (escaped == lower or not in_class):
                members = _UNICODE_CLASSES[lower]
                if in_class:
                    out.append(members)
                elif lower == "d":
                    out.append(r"\p{Nd}" if escaped == "d" else r"\P{Nd}")
                else:
                    out.append(f"[{members}]" if escaped == lower else f"[^{members}]")
            else:
                out.append(source[index : index + 2])
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            index += 1
            for prefix in ("^]", "]"):  # a leading ] is a literal ]
                if source.startswith(prefix, index):
                    out.append(prefix)
                    index += len(prefix)
                    break
            continue
        if char == "]" and in_class:
            in_class = False
        out.append(char)
        index += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class SafePattern:
    """An operator's pattern compiled by RE2: matched in time linear in the text.

    Case-insensitive, like the patterns have always been (``(?-i:…)`` turns that off).
    """

    pattern: str
    flags: int = re.IGNORECASE  # what the keyword prefilter reads the source with
    _compiled: Any = field(default=None, repr=False, compare=False)

    def search(self, string: str, /) -> Any:
        """The first match in ``string`` (``group(0)`` is the matched text), or ``None``."""
        try:
            return self._compiled.search(string)
        except UnicodeEncodeError:  # RE2 reads UTF-8: a lone surrogate (a raw-unicode-escape
            # encoded word can make one) is matched as the "?" it is encoded as
            return self._compiled.search(string.encode("utf-8", "replace").decode("utf-8"))


def compile_pattern(source: str) -> SafePattern:
    """Compile an operator's pattern with RE2; ``ValueError`` says why RE2 cannot take it."""
    options = re2.Options()
    options.log_errors = False  # the error is raised (and reported by config check), not logged
    try:
        compiled = re2.compile(f"(?i){_unicode_classes(source)}", options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "not supported"
        detail = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise ValueError(
            f"{source!r} cannot be used: {detail} (patterns run on RE2, a linear-time engine:"
            " no lookarounds (?=…) (?<!…), back references \\1, possessive or atomic groups)"
        ) from None
    return SafePattern(source, re.IGNORECASE, compiled)
