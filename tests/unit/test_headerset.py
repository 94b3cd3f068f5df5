"""Headers in compact form (core/headerset.py): same values, a fraction of the memory."""

from __future__ import annotations

import pickle
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from mailwatch.core.headers import parse_header_block
from mailwatch.core.model import Headers

PAIRS = st.lists(st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=40)), max_size=8)


@given(PAIRS)
def test_headers_keep_their_items(pairs: list[tuple[str, str]]) -> None:
    """Any items (NUL included) come back as given; ``get`` finds the first of a name."""
    headers = Headers(tuple(pairs))
    assert headers.items == tuple(pairs)
    assert headers == Headers(tuple(pairs))
    assert hash(headers) == hash(Headers(tuple(pairs)))
    assert pickle.loads(pickle.dumps(headers)) == headers  # noqa: S301 (our own bytes)
    for name, _ in pairs:
        expected = next(v for n, v in pairs if n.lower() == name.lower())
        assert headers.get(name) == expected
    assert Headers().items == ()


# ASCII names and values from a few letters: names repeat in other cases and values equal
# names, the cases the ASCII look-up (offsets in the lower-cased packed text) must get right.
ASCII_PAIRS = st.lists(
    st.tuples(st.text("aAbB-", min_size=1, max_size=3), st.text("aAbB-", max_size=3)), max_size=6
)


@given(ASCII_PAIRS, st.text("aAbB-\x00", max_size=3))
def test_get_in_ascii_headers(pairs: list[tuple[str, str]], other: str) -> None:
    """``get`` gives the value of the first header of the name in any case, or ``None``."""
    headers = Headers(tuple(pairs))
    for name in [*(n for n, _ in pairs), other]:
        expected = next((v for n, v in pairs if n.lower() == name.lower()), None)
        assert headers.get(name) == expected


def _block(i: int) -> bytes:
    return (
        f"From: Probation Officer {i} <officer{i}@justice.example>\r\n"
        f"To: Approved Premises {i} <ap{i}@partner.example>\r\n"
        f"Subject: Recall of case CRN X{i:06d} - urgent action\r\n"
        f"Date: Tue, 04 Mar 2026 12:{i % 60:02d}:00 +0000\r\n"
        f"Message-ID: <{i}.abcdef@justice.example>\r\n"
        f"X-Case-Reference: X{i:06d}\r\n\r\n"
    ).encode()


def test_kept_headers_are_compact() -> None:
    """2,000 parsed header blocks of 6 headers hold under 400 bytes each (was ~1,000)."""
    raws = [_block(i) for i in range(2000)]
    warm = [parse_header_block(raw) for raw in raws]  # caches and interpreter tables grown
    del warm
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [parse_header_block(raw) for raw in raws]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # A one-off resize of an interpreter table (the interned strings' dict, grown by whatever
    # earlier tests interned: one block of megabytes) is not memory the headers hold.
    held = sum(
        d.size_diff
        for d in after.compare_to(before, "lineno")
        if not (d.count_diff <= 2 and d.size_diff > 1 << 20)
    )
    assert len(kept) == 2000
    assert held / len(kept) < 400, held / len(kept)
