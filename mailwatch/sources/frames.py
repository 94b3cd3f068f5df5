"""Length-prefixed ``marshal`` frames: how mailwatch talks to its own helper processes.

A helper process (e.g. the Postfix header reader, :mod:`.header_reader`) is mailwatch's own
code run by the same interpreter, so its frames carry plain values (``str``, ``bytes``,
``int``, ``None``, tuples and lists of them) in :mod:`marshal` form: the cheapest
serialisation Python has, and safe here because both ends are this package (never a peer
across a trust boundary: ``marshal`` must not read untrusted bytes).

A frame is a 4-byte big-endian length and that many bytes of ``marshal`` data. A length
above :data:`MAX_FRAME` or bytes ``marshal`` cannot read raise :class:`FrameError`: the other
side is broken, and the caller stops using it.
"""

from __future__ import annotations

import marshal
import os
import struct
from typing import Any

from mailwatch.errors import FrameError

MAX_FRAME = 64 << 20
"""The largest frame either side accepts (64 MiB): a corrupt length cannot allocate more."""

_LENGTH = struct.Struct(">I")


def pack(value: Any) -> bytes:
    """``value`` as one frame (length prefix and ``marshal`` data)."""
    data = marshal.dumps(value)
    if len(data) > MAX_FRAME:
        raise FrameError(f"frame of {len(data)} bytes exceeds {MAX_FRAME}")
    return _LENGTH.pack(len(data)) + data


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the (blocking) descriptor ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FrameBuffer:
    """Bytes as they arrive from a pipe, handed back as whole frames' values."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray()

    def __len__(self) -> int:
        """Bytes held that are not yet a whole frame."""
        return len(self._data)

    def feed(self, data: bytes) -> list[object]:
        """Add ``data``; the values of every frame it completed, in order."""
        buffer = self._data
        buffer += data
        values: list[object] = []
        start = 0
        while len(buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > MAX_FRAME:
                raise FrameError(f"frame length {length} exceeds {MAX_FRAME}")
            end = start + _LENGTH.size + length
            if end > len(buffer):
                break
            try:
                frame = buffer[start + _LENGTH.size : end]
                values.append(marshal.loads(frame))  # noqa: S302 - our own child (docstring)
            except (ValueError, EOFError, TypeError) as exc:
                raise FrameError(f"unreadable frame: {exc}") from exc
            start = end
        del buffer[:start]
        return values


def read_frame(fd: int, buffer: FrameBuffer, pending: list[object]) -> object | None:
    """The next frame's value from blocking ``fd`` (``None`` at a clean end of input).

    ``pending`` holds values already decoded from earlier reads (a read may complete more
    than one frame). Input that ends inside a frame raises :class:`FrameError`.
    """
    while not pending:
        data = os.read(fd, 1 << 16)
        if not data:
            if len(buffer):
                raise FrameError(f"input ended inside a frame ({len(buffer)} bytes)")
            return None
        pending.extend(buffer.feed(data))
    return pending.pop(0)
