# The one-pass header-block scanner in C (_plain_headers.c): see mailwatch.parsing.imap_headers.
from collections.abc import Sequence

def plain_blocks(
    raws: Sequence[bytes], names: tuple[bytes, ...], /
) -> tuple[list[str], list[int]] | None: ...
