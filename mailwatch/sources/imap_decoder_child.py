"""The decoding process of an IMAP first sync: header blocks in, plain values out.

:func:`serve` is what the child forked by
:class:`~mailwatch.sources.imap_decoder_process.DecoderProcess` runs; it talks
:mod:`mailwatch.sources.frames` on two pipes. It first says :data:`READY`; then each request
is the ``keep`` set (a tuple of lower-cased names) and one FETCH batch's raw header blocks,
and each answer, in order, is either ``None`` (the batch is not the plain common shape: the
parent decodes it with the general parser) or one tuple per block: the packed ``Headers``
text, the sender, the recipients' addresses, the normalised subject and its marking (what
:func:`~mailwatch.sources.imap_addresses.describe_packed` says in the parent). It returns at
the end of its input (the parent closed it, or is gone).

It runs either forked (:func:`~mailwatch.sources.forking.fork_helper`) or as a spare
(:mod:`mailwatch.sources.helper_spare`: a new interpreter that calls :func:`main` with the
two descriptors as arguments).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from typing import cast

from mailwatch.parsing.imap_headers import packed_blocks
from mailwatch.sources.frames import FrameBuffer, pack, read_frame, write_all
from mailwatch.sources.imap_addresses import describe_packed

READY = "mailwatch-imap-decoder 1"
"""The first frame the child sends: it runs and reads requests."""

Decoded = tuple[str, str, tuple[str, ...], str, str | None]
"""One block as the child answers it: packed headers, sender, addresses, subject, marking."""


def decode_batch(keep: frozenset[str], raws: Sequence[bytes]) -> list[Decoded] | None:
    """The child's answer to one batch (``None``: not plain, decode it in the parent)."""
    packed = packed_blocks(raws, keep)
    if packed is None:
        return None
    return [
        (text, sender, tuple(r.address for r in recipients), subject.text, subject.marking)
        for text, (sender, recipients, subject) in zip(packed, describe_packed(packed), strict=True)
    ]


def serve(read_fd: int, write_fd: int) -> None:
    """Answer requests from ``read_fd`` on ``write_fd`` until the input ends."""
    write_all(write_fd, pack(READY))
    buffer, pending = FrameBuffer(), cast(list[object], [])
    keeps: dict[tuple[str, ...], frozenset[str]] = {}
    while (request := read_frame(read_fd, buffer, pending)) is not None:
        names, raws = cast(tuple[tuple[str, ...], list[bytes]], request)  # from our parent
        keep = keeps.get(names)
        if keep is None:
            keep = keeps[names] = frozenset(names)
        write_all(write_fd, pack(decode_batch(keep, raws)))


def main(argv: Sequence[str]) -> None:  # pragma: no cover - a process of its own (tested so)
    """:func:`serve` on the descriptors ``argv[1]`` and ``argv[2]`` (a spare's entry point).

    Without garbage collection (strings, tuples and dicts of strings make no cycles), and
    leaving by ``os._exit`` (status 1 if anything failed: the parent sees its pipe end).
    """
    code = 1
    try:
        gc.disable()
        serve(int(argv[1]), int(argv[2]))
        code = 0
    finally:
        os._exit(code)
