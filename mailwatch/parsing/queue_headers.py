"""Header blocks of many Postfix queue files, decoded together: raw blocks in, headers out.

:func:`mailwatch.parsing.queuefile.header_block` gives each file's header lines joined with
line feeds and no blank line after them. :func:`parse_queue_header_blocks` decodes a batch of
those as one text (:func:`mailwatch.core.headers.parse_header_blocks`: one decode, one check
and one search for the whole batch instead of one each per file) and gives exactly what
``parse_header_block`` gives for each block alone. A batch holding an irregular block (a
carriage return, an empty line or a line break inside a record) is parsed block by block.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailwatch.core.headers import parse_header_block, parse_header_blocks
from mailwatch.core.model import Headers


def _regular(raw: bytes) -> bool:
    """True when ``raw`` and a blank line after it parse like ``raw``: its only blank line."""
    return b"\r" not in raw and b"\n\n" not in raw and not raw.endswith(b"\n")


def parse_queue_header_blocks(
    raws: Sequence[bytes], skip: frozenset[str] = frozenset(), keep: frozenset[str] | None = None
) -> list[Headers]:
    """``[parse_header_block(raw, skip, keep) for raw in raws]``, in one pass when it can."""
    if keep is None or len(raws) < 2 or not all(map(_regular, raws)):
        return [parse_header_block(raw, skip, keep) for raw in raws]
    return parse_header_blocks([raw + b"\n\n" for raw in raws], skip, keep)
