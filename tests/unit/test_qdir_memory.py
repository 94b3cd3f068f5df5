"""Memory at scale (issue 13): the queue-directory watcher's packed file stamps.

One ``bytes`` of 36 per file instead of a tuple of five ints (what the watcher keeps per
queued message is measured in ``test_envelope.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mailwatch.sources.postfix_state import pack_stamp, stamp_of, unpack_stamp

U64 = st.integers(min_value=0, max_value=2**64 - 1)
I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
U32 = st.integers(min_value=0, max_value=2**32 - 1)


@given(U64, I64, I64, I64, U32)
def test_stamp_round_trip(ino: int, mtime_ns: int, ctime_ns: int, size: int, mode: int) -> None:
    """Pack then unpack gives the values back; equal values, equal stamps; 36 bytes."""
    stamp = pack_stamp(ino, mtime_ns, ctime_ns, size, mode)
    assert unpack_stamp(stamp) == (ino, mtime_ns, ctime_ns, size, mode)
    assert stamp == pack_stamp(ino, mtime_ns, ctime_ns, size, mode)
    assert len(stamp) == 36
    if mode:
        assert stamp != pack_stamp(ino, mtime_ns, ctime_ns, size, mode - 1)


def test_stamp_of_a_file(tmp_path: Path) -> None:
    """A real file's stamp holds its lstat fields."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    st = os.lstat(path)
    assert unpack_stamp(stamp_of(st)) == (
        st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_mode,
    )  # fmt: skip
