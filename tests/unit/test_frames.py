"""Frames between mailwatch and its helper processes (mailwatch.sources.frames)."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwatch.errors import FrameError, ParseError
from mailwatch.sources.frames import MAX_FRAME, FrameBuffer, pack, read_frame, write_all

values = st.recursive(
    st.none() | st.integers() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner),
    max_leaves=20,
)


@given(st.lists(values, max_size=6), st.integers(min_value=1, max_value=64))
def test_frames_cut_anywhere_come_back_whole_and_in_order(sent: list[object], step: int) -> None:
    """Frames split at any byte are decoded whole, in the order sent."""
    data = b"".join(pack(value) for value in sent)
    buffer, got = FrameBuffer(), list[object]()
    for start in range(0, len(data), step):
        got.extend(buffer.feed(data[start : start + step]))
    assert got == sent
    assert len(buffer) == 0


def test_a_corrupt_length_is_an_error_not_an_allocation() -> None:
    """A length above MAX_FRAME is refused before anything is read."""
    with pytest.raises(FrameError, match="exceeds"):
        FrameBuffer().feed(struct.pack(">I", MAX_FRAME + 1) + b"x")


def test_bytes_marshal_cannot_read_are_a_frame_error() -> None:
    """Garbage inside a frame is a FrameError (a ParseError, a ValueError)."""
    with pytest.raises(FrameError) as caught:
        FrameBuffer().feed(struct.pack(">I", 3) + b"\xff\xff\xff")
    assert isinstance(caught.value, ParseError | ValueError)


def test_read_frame_through_a_pipe_and_its_end() -> None:
    """Blocking reads give frames in order; input ending mid-frame is an error."""
    read_fd, write_fd = os.pipe()
    try:
        write_all(write_fd, pack(("a", 1)) + pack([None, b"x"]) + pack("last")[:3])
        os.close(write_fd)
        buffer, pending = FrameBuffer(), list[object]()
        assert read_frame(read_fd, buffer, pending) == ("a", 1)
        assert read_frame(read_fd, buffer, pending) == [None, b"x"]
        with pytest.raises(FrameError, match="inside a frame"):
            read_frame(read_fd, buffer, pending)
    finally:
        os.close(read_fd)


def test_a_clean_end_is_none() -> None:
    """End of input between frames is None."""
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    try:
        assert read_frame(read_fd, FrameBuffer(), []) is None
    finally:
        os.close(read_fd)
