"""mailwatch.core.chunked: a sequence in shared chunks behaves as the tuple of its items."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwatch.core.chunked import Chunked

items = st.lists(st.integers(min_value=0, max_value=10_000), unique=True).map(sorted)
sizes = st.integers(min_value=1, max_value=7)


@given(items, sizes)
def test_it_is_the_tuple_of_its_items(values: list[int], size: int) -> None:
    """Length, iteration, indexing (negative too), slices, equality and hash: a tuple's."""
    seq = Chunked.of(values, size)
    expected = tuple(values)
    assert len(seq) == len(expected)
    assert tuple(seq) == expected
    assert seq == expected
    assert expected == seq
    assert hash(seq) == hash(expected)
    assert [seq[i] for i in range(-len(values), len(values))] == [
        expected[i] for i in range(-len(values), len(values))
    ]
    assert seq[1:-1] == expected[1:-1]
    assert all(len(chunk) <= size for chunk in seq.chunks)
    assert pickle.loads(pickle.dumps(seq)) == expected  # noqa: S301 - our own bytes


def test_out_of_range_is_an_index_error() -> None:
    """As a tuple's."""
    with pytest.raises(IndexError):
        Chunked.of([1, 2, 3], 2)[3]
    with pytest.raises(IndexError):
        Chunked.of([], 2)[0]


@given(items, st.data(), sizes, st.lists(st.integers(min_value=10_001, max_value=20_000),
                                         unique=True).map(sorted))  # fmt: skip
def test_without_and_appended_equal_a_rebuild(
    values: list[int], data: st.DataObject, size: int, added: list[int]
) -> None:
    """Taking items out and appending gives what building the result whole gives."""
    boxed = [[v] for v in values]  # distinct objects: removal is by identity
    seq = Chunked.of(boxed, size)
    removed = data.draw(st.lists(st.sampled_from(boxed), unique_by=id) if boxed else st.just([]))
    gone = {id(item) for item in removed}
    new = [[v] for v in added]
    changed = seq.without(removed, lambda item: item[0]).appended(new, size)
    assert list(changed) == [item for item in boxed if id(item) not in gone] + new


def test_unchanged_chunks_are_shared() -> None:
    """Only the chunk holding a removed item and the last one are rebuilt."""
    boxed = [[v] for v in range(100)]
    seq = Chunked.of(boxed, 10)
    changed = seq.without([boxed[42]], lambda item: item[0]).appended([[100]], 10)
    shared = [a is b for a, b in zip(seq.chunks, changed.chunks, strict=False)]
    assert shared == [True, True, True, True, False, True, True, True, True, False]
    assert seq.appended([]) is seq
    assert seq.without([], lambda item: item[0]) is seq
