"""The headers kept per queued message, in compact form (pure).

A queued message keeps only the headers a rule or the summary needs (see
:func:`mailwatch.core.headers.keep_set`), for as long as it is queued: at 100,000 messages
the ``(name, value)`` tuple per header (about 160 bytes of object overhead each) was the
largest part of the heap held between scans. :class:`Headers` packs them in one string
(``name NUL value NUL name NUL value``) and unpacks on reading: :attr:`Headers.items` and
:meth:`Headers.get` are read when a message is first classified and stored, not per scan.

After that nothing reads them from memory (``mailwatch show``, the API and the status page
read the store), so the scanner drops them once the store holds them
(:meth:`Headers.release`: 33 MiB at 100,000 queued messages). A released value still
compares and hashes as before; reading it raises :class:`~mailwatch.errors.HeadersReleased`.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailwatch.errors import HeadersReleased

_SEP = "\x00"


def _find_ascii(packed: str, lowered: str, wanted: str) -> str | None:
    """The value after the first name ``wanted`` in ASCII ``packed`` (``lowered``: lower-cased)."""
    if _SEP in wanted:
        return None
    after = len(wanted) + 1  # the name and its separator
    if lowered.startswith(wanted + _SEP):
        start = after
    else:
        needle, start = _SEP + wanted + _SEP, -1
        at = lowered.find(needle)
        while at >= 0:
            if lowered.count(_SEP, 0, at + 1) % 2 == 0:  # an even part: a name, not a value
                start = at + 1 + after
                break
            at = lowered.find(needle, at + 1)
        if start < 0:
            return None
    end = packed.find(_SEP, start)
    return packed[start:] if end < 0 else packed[start:end]


class Headers:
    """The message headers mailwatch keeps: decoded, unfolded, in order, names as sent.

    Immutable (but see :meth:`release`); equal when their items are. Built from
    ``(name, value)`` pairs, as before.
    """

    __slots__ = ("_packed",)
    _packed: str | tuple[tuple[str, str], ...] | int
    """The items packed (one form per items: equal items, equal packed values); once
    released, the hash of the packed value."""

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
        _set_packed(headers, packed)  # (the slot itself: a third of object.__setattr__'s cost)
        return headers

    @property
    def released(self) -> bool:
        """Whether :meth:`release` dropped the items (reading them then raises)."""
        return isinstance(self._packed, int)

    def release(self) -> None:
        """Drop the items from memory for good: only once something else holds them (the store).

        Reading them afterwards raises :class:`~mailwatch.errors.HeadersReleased`; equality
        and the hash stay as they were (a released value is equal to another when the hashes
        of their items are). Empty headers hold nothing and stay readable.
        """
        packed = self._packed
        if packed and not isinstance(packed, int):
            object.__setattr__(self, "_packed", hash(packed))

    def _held(self) -> str | tuple[tuple[str, str], ...]:
        packed = self._packed
        if isinstance(packed, int):
            raise HeadersReleased("these headers were released: the store holds them")
        return packed

    @property
    def items(self) -> tuple[tuple[str, str], ...]:
        """The ``(name, value)`` pairs, in order."""
        packed = self._held()
        if isinstance(packed, tuple):
            return packed
        if not packed:
            return ()
        parts = iter(packed.split(_SEP))
        return tuple(zip(parts, parts, strict=False))

    @property
    def parts(self) -> list[str]:
        """The names and values in one flat list: ``[name, value, name, value, …]``."""
        packed = self._held()
        if isinstance(packed, tuple):
            return [part for pair in packed for part in pair]
        return packed.split(_SEP) if packed else []

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        packed = self._held()
        if not packed:
            return None
        wanted = name.lower()
        if isinstance(packed, str):
            lowered = packed.lower()
            if packed.isascii():  # lower-cased letter by letter: the same offsets, no split
                return _find_ascii(packed, lowered, wanted)
            if wanted not in lowered:  # (a name lower-cases alike between the NULs)
                return None
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
        if self is other:
            return True
        if hash(self) != hash(other):
            return False
        return self.released or other.released or self.items == other.items

    def __hash__(self) -> int:
        packed = self._packed
        return packed if isinstance(packed, int) else hash(packed)

    def __repr__(self) -> str:
        if self.released:
            return "Headers(<released>)"
        return f"Headers(items={self.items!r})"

    def __reduce__(self) -> tuple[type[Headers], tuple[tuple[tuple[str, str], ...]]]:
        return (Headers, (self.items,))


_set_packed = Headers.__dict__["_packed"].__set__  # the slot's own setter (see from_packed)
