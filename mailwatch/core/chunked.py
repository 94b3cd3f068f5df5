"""An immutable sequence kept in chunks, so that a copy with a few changes shares the rest (pure).

A source reports its whole backlog at every probe (the scanner tells what left by what is no
longer listed). When 100 messages arrive in a mailbox of 90,000 unread, rebuilding one tuple
of all of them (and freeing the previous one) touches every message object: milliseconds that
grow with the backlog, not with what changed. :class:`Chunked` holds the items as tuples of
at most :data:`CHUNK` items; :meth:`Chunked.appended` and :meth:`Chunked.without` build a new
sequence that shares every chunk they do not change with the old one.

It is a read-only :class:`~collections.abc.Sequence` equal to any sequence with the same
items in the same order (a tuple included), and hashes as the tuple of its items does.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, islice
from typing import Any, TypeVar, overload

T = TypeVar("T")

CHUNK = 2048
"""Items per chunk, at most: a changed chunk costs about this many item copies."""


class Chunked(Sequence[T]):
    """An immutable sequence stored as tuples of at most :data:`CHUNK` items (module docs)."""

    __slots__ = ("_chunks", "_len", "_starts")

    def __init__(self, chunks: Iterable[tuple[T, ...]] = ()) -> None:
        """A sequence of the items of ``chunks``, in order (empty chunks are dropped)."""
        self._chunks = tuple(chunk for chunk in chunks if chunk)
        starts, total = [], 0
        for chunk in self._chunks:
            starts.append(total)
            total += len(chunk)
        self._starts = starts
        self._len = total

    @classmethod
    def of(cls, items: Iterable[T], size: int = CHUNK) -> Chunked[T]:
        """``items`` in chunks of ``size``."""
        it = iter(items)
        return cls(iter(lambda: tuple(islice(it, size)), ()))

    @property
    def chunks(self) -> tuple[tuple[T, ...], ...]:
        """The chunks, in order (shared, never empty)."""
        return self._chunks

    def appended(self, items: Sequence[T], size: int = CHUNK) -> Chunked[T]:
        """These items followed by ``items``: only the last chunk is rebuilt."""
        if not items:
            return self
        head, tail = self._chunks[:-1], self._chunks[-1:]
        return Chunked((*head, *Chunked.of(chain(*tail, items), size).chunks))

    def without(self, removed: Iterable[T], key: Callable[[T], Any]) -> Chunked[T]:
        """These items but ``removed`` (the same objects), in a sequence ordered by ``key``.

        Only the chunks whose key range holds a removed item are rebuilt.
        """
        gone = {id(item): key(item) for item in removed}
        if not gone or not self._chunks:
            return self
        firsts = [key(chunk[0]) for chunk in self._chunks]
        touched = {max(bisect_right(firsts, k) - 1, 0) for k in gone.values()}
        return Chunked(
            tuple(item for item in chunk if id(item) not in gone) if n in touched else chunk
            for n, chunk in enumerate(self._chunks)
        )

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[T]:
        return chain.from_iterable(self._chunks)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[T, ...]: ...

    def __getitem__(self, index: int | slice) -> T | tuple[T, ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("Chunked index out of range")
        n = bisect_right(self._starts, index) - 1
        return self._chunks[n][index - self._starts[n]]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(other) == self._len and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Chunked({list(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Chunked, (self._chunks,))
