"""The qshape matrix: recipient domain by age bucket (pure).

Postfix's ``qshape`` prints, per recipient domain, how many recipients wait in each age
bucket: ``T`` (the total), then buckets whose upper bounds double from ``tick`` minutes (5, 10,
20, … 1280) and a last open one (``1280+``). mailwatch builds the same matrix from its store,
with the same semantics so that both agree on the same queue:

* it counts **recipients** still to be delivered (one message to three people at
  ``justice.example`` counts three), like qshape; ``messages=True`` counts messages instead;
* a recipient's domain is normalised exactly as qshape does (:func:`qshape_domain`);
* a message of age *a* minutes is in bucket 1 when ``a < tick``, else in
  ``2 + floor(log2(a / tick))``, capped at the last bucket (:func:`bucket_bounds` gives the
  same thresholds as seconds, for SQL).

mailwatch adds what qshape cannot know: each row's most urgent priority, P1 rows first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mailwatch.core.model import Priority

TICK_MINUTES = 5
BUCKETS = 10
"""qshape's defaults (``-t 5 -b 10``)."""


def bucket_bounds(tick_minutes: int = TICK_MINUTES, buckets: int = BUCKETS) -> list[float]:
    """Upper bounds in seconds of buckets 1 … ``buckets - 1`` (the last one is open)."""
    return [tick_minutes * 60.0 * 2**i for i in range(buckets - 1)]


def headings(tick_minutes: int = TICK_MINUTES, buckets: int = BUCKETS) -> list[str]:
    """Column headings as qshape prints them: ``T 5 10 20 … 1280 1280+``."""
    tops = [str(int(b // 60)) for b in bucket_bounds(tick_minutes, buckets)]
    return ["T", *tops, f"{tops[-1]}+"]


def bucket_of(age_seconds: float, tick_minutes: int = TICK_MINUTES, buckets: int = BUCKETS) -> int:
    """The bucket (1-based) of a message ``age_seconds`` old."""
    for index, top in enumerate(bucket_bounds(tick_minutes, buckets), start=1):
        if age_seconds < top:
            return index
    return buckets


def qshape_domain(address: str) -> str:
    """A recipient's domain as qshape shows it (lower case; empty sender → ``MAILER-DAEMON``).

    qshape: ``lc``, drop everything up to the last ``@``, replace ``..`` by ``.`` (one pass),
    strip one leading and one trailing dot.
    """
    text = address.lower()
    if text == "":
        return "MAILER-DAEMON"
    text = text.rsplit("@", 1)[-1].replace("..", ".")
    if len(text) > 1 and text.startswith("."):
        text = text[1:]
    if len(text) > 1 and text.endswith("."):
        text = text[:-1]
    return text


@dataclass(slots=True)
class ShapeRow:
    """One domain's counts: ``counts[0]`` is the total, ``counts[i]`` bucket ``i``."""

    domain: str
    priority: Priority
    """The most urgent priority of any message counted in this row."""
    counts: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        """All recipients (or messages) in this row."""
        return self.counts[0]


@dataclass(frozen=True, slots=True)
class Shape:
    """The whole matrix: headings, the TOTAL row, then one row per domain."""

    headings: list[str]
    total: list[int]
    rows: list[ShapeRow]
    counting: str
    """``recipients`` (as qshape) or ``messages``."""

    def as_json(self) -> dict[str, object]:
        """The ``--json`` / ``GET /api/v1/shape`` form."""
        return {
            "headings": self.headings,
            "counting": self.counting,
            "total": self.total,
            "rows": [
                {"domain": r.domain, "priority": str(r.priority), "counts": r.counts}
                for r in self.rows
            ],
        }


def build_shape(
    cells: Iterable[tuple[str, int, int, int]],
    *,
    buckets: int = BUCKETS,
    tick_minutes: int = TICK_MINUTES,
    counting: str = "recipients",
) -> Shape:
    """The matrix from ``(domain, priority, bucket, count)`` cells (the store's aggregation).

    Rows: most urgent priority first (P1 rows first), then qshape's order (largest total
    first, then shorter domain), then the domain name so the order is stable.
    """
    rows: dict[str, ShapeRow] = {}
    total = [0] * (buckets + 1)
    for domain, priority, bucket, count in cells:
        row = rows.get(domain)
        if row is None:
            row = rows[domain] = ShapeRow(domain, Priority(priority), [0] * (buckets + 1))
        row.priority = min(row.priority, Priority(priority))
        row.counts[0] += count
        row.counts[bucket] += count
        total[0] += count
        total[bucket] += count
    ordered = sorted(rows.values(), key=lambda r: (r.priority, -r.total, len(r.domain), r.domain))
    return Shape(headings(tick_minutes, buckets), total, ordered, counting)


def render_text(shape: Shape, width: int = 80) -> str:
    """The matrix as qshape lays it out: right-aligned columns, ``TOTAL`` first, a PRI column."""
    widths = [max(3, len(h) + 1, len(str(t)) + 1) for h, t in zip(shape.headings, shape.total,
                                                                  strict=True)]  # fmt: skip
    names = ["TOTAL", *(r.domain for r in shape.rows)]
    domain_width = max(len(n) for n in names)
    domain_width = max(domain_width, width - sum(widths) - 4)

    def line(name: str, pri: str, values: Iterable[object]) -> str:
        cells = "".join(str(v).rjust(w) for v, w in zip(values, widths, strict=True))
        return f"{name.rjust(domain_width)} {pri:>3}{cells}"

    lines = [line("", "PRI", shape.headings), line("TOTAL", "", shape.total)]
    lines += [line(r.domain, str(r.priority), r.counts) for r in shape.rows]
    return "\n".join(lines)
