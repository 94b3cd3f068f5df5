"""The status page's pure parts: the SVG chart, drain text, the view model, sessions."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from mailwatch.core.backlog import DrainEstimate, drain_estimate
from mailwatch.web.charts import Trend, trend_svg
from mailwatch.web.pagemodel import class_info, drain_text, local
from mailwatch.web.sessions import Sessions, same_origin

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
numbers = st.floats(allow_nan=True, allow_infinity=True)
points = st.lists(st.tuples(numbers, numbers), max_size=30)


class TestChart:
    """The chart never raises, is well-formed XML, and escapes its labels."""

    @given(points, points, st.one_of(st.none(), numbers), numbers, st.text(), st.text())
    def test_never_raises_and_escapes(
        self,
        waiting: list[tuple[float, float]],
        stuck: list[tuple[float, float]],
        eta: float | None,
        window: float,
        title: str,
        label: str,
    ) -> None:
        """Any points, window, ETA and labels give one well-formed <svg> with the text intact."""
        printable = "".join(c for c in title + label if c.isprintable())
        svg = trend_svg(Trend(printable, window, waiting, stuck, eta, printable, "now", printable))
        root = ET.fromstring(svg)  # noqa: S314 - our own output
        assert root.tag.endswith("svg")
        assert root.findtext("{http://www.w3.org/2000/svg}title") == printable
        assert "<script" not in svg
        assert "style=" not in svg

    def test_eta_line_drawn_only_when_known(self) -> None:
        """A finite ETA draws the dashed line with its label; none, none."""
        trend = Trend("t", 86400, [(0, 4), (86000, 10)], [(86000, 3)], 3600, "", "now", "~15:00")
        assert 'class="eta"' in trend_svg(trend)
        assert "~15:00" in trend_svg(trend)
        for eta in (None, math.inf, 0.0):
            trend = Trend("t", 86400, [(0, 4)], [], eta)
            assert 'class="eta"' not in trend_svg(trend)


def _estimate(points: list[tuple[datetime, int]], halflife: float = 600.0) -> DrainEstimate:
    return drain_estimate(points, halflife)


class TestDrain:
    """The ETA says "not enough data yet" on a fresh service, never "never"."""

    def test_fresh_service(self) -> None:
        """Two minutes of history, under a 10-minute half-life: not enough."""
        history = [(NOW - timedelta(seconds=s), 5) for s in (120, 60, 0)]
        assert drain_text(_estimate(history), NOW, LONDON)[0] == "not enough data yet"
        assert drain_text(None, NOW, LONDON)[0] == "not enough data yet"

    def test_settles_after_a_halflife_not_ten_minutes(self) -> None:
        """With a 10 s half-life (the replay's), 15 s of scans are enough (was: 10 minutes)."""
        history = [(NOW - timedelta(seconds=s), 50 + s) for s in (15, 10, 5, 0)]
        eta, _, seconds = drain_text(_estimate(history, halflife=10.0), NOW, LONDON)
        assert seconds is not None
        assert math.isclose(seconds, 50, rel_tol=0.01)
        assert eta.startswith("about 50s")

    def test_draining_and_growing(self) -> None:
        """Falling by one a minute: clears in about 5m; rising: not clearing."""
        falling = [(NOW - timedelta(minutes=m), 5 + m) for m in range(30, -1, -1)]
        eta, drain, seconds = drain_text(_estimate(falling), NOW, LONDON)
        assert seconds is not None
        assert math.isclose(seconds, 300, rel_tol=0.05)
        assert eta.startswith("about 5m")
        assert "(clear ~14:05 GMT)" in eta
        assert drain == "60 an hour"
        rising = [(at, 40 - n) for at, n in falling]
        assert drain_text(_estimate(rising), NOW, LONDON)[0] == "not clearing at this pace"

    def test_counted_to_the_clear_time_not_from_the_scan(self) -> None:
        """Read a minute after the scan, the time left is a minute shorter (same clear time)."""
        falling = [(NOW - timedelta(minutes=m), 5 + m) for m in range(30, -1, -1)]
        later = NOW + timedelta(minutes=1)
        eta, _, seconds = drain_text(_estimate(falling), later, LONDON)
        assert seconds is not None
        assert math.isclose(seconds, 240, rel_tol=0.05)
        assert "(clear ~14:05 GMT)" in eta

    def test_nothing_waiting(self) -> None:
        """An empty backlog says so."""
        assert drain_text(_estimate([(NOW, 0)]), NOW, LONDON)[0] == "nothing waiting"


def test_names_and_local_times() -> None:
    """The name before the description's colon; local time with the zone, in summer too."""
    assert class_info("recall_emergency", "Emergency recall: licence").title == "Emergency recall"
    assert class_info("court_results", "").title == "Court results"
    assert local(NOW, LONDON, NOW) == "14:00 GMT"
    summer = datetime(2026, 7, 1, 13, 5, tzinfo=UTC)
    assert local(summer, LONDON, NOW) == "Wed 1 Jul 14:05 BST"


class TestSessions:
    """Signed, expiring cookies; CSRF tokens tied to their session; Origin checks."""

    def test_round_trip_expiry_and_forgery(self) -> None:
        """A cookie reads back until it expires; another key or an edit breaks it."""
        sessions = Sessions(b"k" * 32, lifetime=60)
        cookie = sessions.issue("duty", 1000)
        session = sessions.read(cookie, 1030)
        assert session is not None
        assert session.name == "duty"
        assert sessions.read(cookie, 1060) is None
        assert Sessions(b"x" * 32).read(cookie, 1030) is None
        assert sessions.read(cookie.replace("ZHV0eQ", "bGVhZA"), 1030) is None  # duty -> lead
        assert sessions.read("garbage", 1030) is None

    def test_csrf_belongs_to_one_session(self) -> None:
        """One session's form token does not fit another's."""
        sessions = Sessions(b"k" * 32)
        one = sessions.read(sessions.issue("duty", 0), 1)
        two = sessions.read(sessions.issue("duty", 0), 1)
        assert one is not None
        assert two is not None
        assert sessions.csrf_ok(one, sessions.csrf(one))
        assert not sessions.csrf_ok(two, sessions.csrf(one))
        assert not sessions.csrf_ok(one, "")

    def test_same_origin(self) -> None:
        """Only this host's origin passes; none, null and others fail."""
        assert same_origin("http://127.0.0.1:9745", "127.0.0.1:9745")
        assert not same_origin("http://evil.example", "127.0.0.1:9745")
        assert not same_origin(None, "127.0.0.1:9745")
        assert not same_origin("null", "127.0.0.1:9745")
        assert same_origin("null", "127.0.0.1:9745", "same-origin")  # no-referrer: Origin null
        assert not same_origin("http://127.0.0.1:9745", "127.0.0.1:9745", "cross-site")
        assert not same_origin(None, "127.0.0.1:9745", "same-site")
