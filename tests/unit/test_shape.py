"""The qshape matrix: qshape's buckets and domains, and the SQL aggregation agrees with them."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwatch.core.model import Priority, Recipient
from mailwatch.core.shape import bucket_of, build_shape, headings, qshape_domain, render_text
from mailwatch.store import Store
from mailwatch.store.rows import INSERT_COLUMNS, recipients_json, ts
from mailwatch.store.shape import ShapeFilter, shape_cells

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def qshape_bucket(age_seconds: float, tick: int = 5, bnum: int = 10) -> int:
    """The ``bucket`` sub of qshape (Postfix 3.7 /usr/sbin/qshape), transcribed."""
    m = age_seconds / (60 * tick)
    if m < 1:
        return 1
    b = 2 + int(math.log(m) / math.log(2))
    return b if b < bnum else bnum


def test_headings_are_qshapes() -> None:
    """T 5 10 20 40 80 160 320 640 1280 1280+, as qshape prints them by default."""
    assert headings() == ["T", "5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+"]


@given(st.floats(min_value=-1e6, max_value=1e8, allow_nan=False))
def test_bucket_is_qshapes(age: float) -> None:
    """Every age falls in the bucket qshape would put it in."""
    assert bucket_of(age) == qshape_bucket(age)


@pytest.mark.parametrize("age", [0, 299.999, 300, 599, 600, 76799, 76800, 10**7])
def test_bucket_edges(age: float) -> None:
    """The edges (exactly 5, 10 … 1280 minutes) agree with qshape too."""
    assert bucket_of(age) == qshape_bucket(age)


@pytest.mark.parametrize(
    ("address", "domain"),
    [("OM@Justice.Example", "justice.example"), ("a@b@x.example", "x.example"),
     ("", "MAILER-DAEMON"), ("local", "local"), ("a@x..example", "x.example"),
     ("a@.x.example.", "x.example")],
)  # fmt: skip
def test_domain_is_qshapes(address: str, domain: str) -> None:
    """Lower case, after the last @, '..' collapsed, one leading/trailing dot stripped."""
    assert qshape_domain(address) == domain


def test_p1_rows_first_then_qshape_order() -> None:
    """P1 rows first whatever their size; then larger totals, then shorter names."""
    shape = build_shape([("big.example", 3, 1, 9), ("p1.example", 1, 2, 1),
                         ("a.example", 3, 10, 2), ("bb.example", 3, 1, 2)])  # fmt: skip
    assert [r.domain for r in shape.rows] == ["p1.example", "big.example", "a.example",
                                               "bb.example"]  # fmt: skip
    assert shape.total[:3] == [14, 11, 1]
    assert shape.total[10] == 2
    text = render_text(shape).splitlines()
    assert text[0].split() == ["PRI", *headings()]
    assert text[1].split()[:2] == ["TOTAL", "14"]


addresses = st.sampled_from(["om@justice.example", "PPCS@Justice.Example", "x@courts.example",
                             "y@a.courts.example", "", "z@gov.example"])  # fmt: skip
message = st.tuples(
    st.lists(addresses, min_size=1, max_size=4),
    st.integers(0, 200_000),
    st.sampled_from(["deferred", "active", "hold"]),
    st.sampled_from(list(Priority)),
    st.sampled_from(["recall", "general"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(message, max_size=12), st.booleans())
def test_sql_aggregation_agrees_with_the_pure_functions(
    rows: list[tuple[list[str], int, str, Priority, str]], by_message: bool
) -> None:
    """The SQL cells equal a count made in Python with qshape_domain and bucket_of."""
    expected: Counter[tuple[str, int, int]] = Counter()
    with Store(":memory:") as store:
        for i, (rcpts, age, queue, prio, cls) in enumerate(rows):
            arrival = NOW - timedelta(seconds=age)
            store._db.execute(
                f"INSERT INTO messages ({INSERT_COLUMNS}) VALUES ({', '.join('?' * 19)})",
                (f"k{i}", "mta1", f"Q{i}", queue, ts(arrival), 1, "", recipients_json(
                    [Recipient(a) for a in rcpts]), "[]", "", None, cls, int(prio), "default",
                 ts(NOW), None, "queued", ts(arrival), None),
            )  # fmt: skip
            if queue == "deferred" and cls == "recall":
                domains = [qshape_domain(a) for a in rcpts]
                for d in set(domains) if by_message else domains:
                    expected[(d, int(prio), bucket_of(age))] += 1
        wanted = ShapeFilter(queues=("deferred",), class_name="recall", messages=by_message)
        cells = shape_cells(store._db, NOW, wanted)
    assert {(d, p, b): n for d, p, b, n in cells} == dict(expected)
