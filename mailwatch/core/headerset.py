"""The headers kept per queued message, in compact form (pure).

A queued message keeps only the headers a rule or the summary needs (see
:func:`mailwatch.core.headers.keep_set`), for as long as it is queued: at 100,000 messages
the ``(name, value)`` tuple per header (about 160 bytes of object overhead each) was the
largest part of the heap held between scans. :class:`Headers` packs them in one string
(``name NUL value NUL name NUL value``) and unpacks on reading: :attr:`Headers.items` and
:meth:`Headers.get` are read when a message is first classified and stored, not per scan.
"""

from __future__ import annotations

from collections.abc import Iterable

_SEP = "\x00"


class Headers:
    """The message headers mailwatch keeps: decoded, unfolded, in order, names as sent.

    Immutable; equal when their items are. Built from ``(name, value)`` pairs, as before.
    """

    __slots__ = ("_packed",)
    _packed: str | tuple[tuple[str, str], ...]

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        pairs = tuple(items)
        if not pairs:
            packed: str | tuple[tuple[str, str], ...] = ""
        elif any(_SEP in name or _SEP in value for name, value in pairs):
            packed = pairs  # a NUL in a decoded value: kept as pairs (rare)
        else:
            packed = _SEP.join([part for pair in pairs for part in pair])
        object.__setattr__(self, "_packed", packed)

    @classmethod
    def from_packed_parts(cls, parts: list[str]) -> Headers:
        """``Headers(zip(parts[0::2], parts[1::2]))`` from the flat list ``parts``, faster."""
        packed = _SEP.join(parts)
        if parts and packed.count(_SEP) != len(parts) - 1:
            return cls(zip(parts[0::2], parts[1::2], strict=True))  # a NUL in a value (rare)
        headers = object.__new__(cls)
        object.__setattr__(headers, "_packed", packed)
        return headers

    @classmethod
    def from_packed(cls, packed: str) -> Headers:
        """``Headers`` whose packed text (``name NUL value NUL …``) is ``packed``, as is.

        ``packed`` must hold an even number of parts (an odd NUL count), or be empty;
        the caller vouches that no name or value holds a NUL.
        """
        headers = object.__new__(cls)
        object.__setattr__(headers, "_packed", packed)
        return headers

    @property
    def items(self) -> tuple[tuple[str, str], ...]:
        """The ``(name, value)`` pairs, in order."""
        packed = self._packed
        if isinstance(packed, tuple):
            return packed
        if not packed:
            return ()
        parts = iter(packed.split(_SEP))
        return tuple(zip(parts, parts, strict=False))

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        packed = self._packed
        if not packed:
            return None
        wanted = name.lower()
        if isinstance(packed, str):
            if packed.isascii() and wanted not in packed.lower():
                return None  # (ASCII lower-cases letter by letter: no name here is it)
            parts = packed.split(_SEP)
        else:
            parts = [p for i in packed for p in i]
        size = len(wanted)
        for i in range(0, len(parts), 2):
            key = parts[i]
            if len(key) != size and key.isascii():
                continue  # lower() keeps an ASCII name's length: not this one
            if key.lower() == wanted:
                return parts[i + 1]
        return None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Headers is immutable (cannot set {name})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self.items == other.items

    def __hash__(self) -> int:
        return hash(self.items)

    def __repr__(self) -> str:
        return f"Headers(items={self.items!r})"

    def __reduce__(self) -> tuple[type[Headers], tuple[tuple[tuple[str, str], ...]]]:
        return (Headers, (self.items,))
