"""Small trend charts as inline SVG text, drawn on the server (pure: values in, text out).

A chart shows two series over a window (waiting and stuck messages, one point per history
step) and, when a clear-ETA is known, a dashed line from the latest waiting count down to zero
at the projected time, in a margin to the right of "now". No script and no ``style``
attribute (the page's Content-Security-Policy allows neither): colours are presentation
attributes. Every label is escaped here; the result is safe to insert into HTML as markup.
:func:`trend_svg` never raises: empty, non-finite or out-of-window points are dropped or
clamped. With fewer than two points the chart says "not enough data yet".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 320, 120
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 30, 8, 8, 18
FUTURE_FRACTION = 0.25
"""The share of the plot's width to the right of "now" where the ETA line is drawn."""
WAITING_COLOUR = "#1d4f91"
STUCK_COLOUR = "#b00020"
ETA_COLOUR = "#3d3d3d"


@dataclass(frozen=True, slots=True)
class Trend:
    """What one chart shows; times are seconds since the window's start."""

    title: str
    window_seconds: float
    waiting: Sequence[tuple[float, float]]
    stuck: Sequence[tuple[float, float]]
    eta_seconds: float | None = None
    """Seconds from the window's end until the backlog is clear; ``None``: no ETA line."""
    start_label: str = ""
    end_label: str = ""
    eta_label: str = ""


def _finite(points: Sequence[tuple[float, float]], window: float) -> list[tuple[float, float]]:
    kept = []
    for x, y in points:
        if math.isfinite(x) and math.isfinite(y):
            kept.append((min(max(x, 0.0), window), max(y, 0.0)))
    return sorted(kept)


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _polyline(
    points: list[tuple[float, float]], sx: float, sy: float, top: float, colour: str, name: str
) -> str:
    if not points:
        return ""
    coords = " ".join(f"{_fmt(PAD_LEFT + x * sx)},{_fmt(PAD_TOP + (top - y) * sy)}"
                      for x, y in points)  # fmt: skip
    return (f'<polyline class="{name}" points="{coords}" fill="none" stroke="{colour}"'
            ' stroke-width="2"/>')  # fmt: skip


def trend_svg(trend: Trend) -> str:
    """The chart as an ``<svg>`` element (escaped labels; ``role="img"`` with a title)."""
    window = trend.window_seconds if math.isfinite(trend.window_seconds) else 0.0
    window = max(window, 1.0)
    waiting, stuck = _finite(trend.waiting, window), _finite(trend.stuck, window)
    top = max([1.0, *(y for _, y in waiting), *(y for _, y in stuck)])
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    now_x = plot_w / (1 + FUTURE_FRACTION)
    sx, sy = now_x / window, plot_h / top
    title = escape(trend.title)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-label="{title}" class="chart"><title>{title}</title>',
        f'<rect x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}" fill="#ffffff"'
        ' stroke="#767676"/>',
        f'<line x1="{_fmt(PAD_LEFT + now_x)}" y1="{PAD_TOP}" x2="{_fmt(PAD_LEFT + now_x)}"'
        f' y2="{PAD_TOP + plot_h}" stroke="#767676" stroke-dasharray="2 2"/>',
        f'<text x="{PAD_LEFT - 3}" y="{PAD_TOP + 9}" text-anchor="end" font-size="10"'
        f' fill="#222">{int(top)}</text>',
        f'<text x="{PAD_LEFT - 3}" y="{PAD_TOP + plot_h}" text-anchor="end" font-size="10"'
        ' fill="#222">0</text>',
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 4}" font-size="10" fill="#222">'
        f"{escape(trend.start_label)}</text>",
        f'<text x="{_fmt(PAD_LEFT + now_x)}" y="{HEIGHT - 4}" text-anchor="middle" font-size="10"'
        f' fill="#222">{escape(trend.end_label)}</text>',
        _polyline(waiting, sx, sy, top, WAITING_COLOUR, "waiting"),
        _polyline(stuck, sx, sy, top, STUCK_COLOUR, "stuck"),
        _eta_line(trend, waiting, sx, sy, top, now_x, plot_w),
        ""
        if len(waiting) >= 2
        else (
            f'<text x="{_fmt(PAD_LEFT + now_x / 2)}" y="{PAD_TOP + plot_h / 2:.1f}"'
            ' text-anchor="middle" font-size="11" fill="#222">not enough data yet</text>'
        ),
        "</svg>",
    ]
    return "".join(parts)


def _eta_line(
    trend: Trend,
    waiting: list[tuple[float, float]],
    sx: float,
    sy: float,
    top: float,
    now_x: float,
    plot_w: float,
) -> str:
    eta = trend.eta_seconds
    if eta is None or not math.isfinite(eta) or eta <= 0 or not waiting:
        return ""
    last = waiting[-1][1]
    if last <= 0:
        return ""
    end_x = now_x + eta * sx
    end_y = 0.0
    if end_x > plot_w:  # beyond the margin: stop at the edge, part of the way down
        end_y = last * (1 - (plot_w - now_x) / (end_x - now_x))
        end_x = plot_w
    x1, y1 = PAD_LEFT + now_x, PAD_TOP + (top - last) * sy
    x2, y2 = PAD_LEFT + end_x, PAD_TOP + (top - end_y) * sy
    label = escape(trend.eta_label)
    return (
        f'<line class="eta" x1="{_fmt(x1)}" y1="{_fmt(y1)}" x2="{_fmt(x2)}" y2="{_fmt(y2)}"'
        f' stroke="{ETA_COLOUR}" stroke-width="2" stroke-dasharray="5 3"/>'
        f'<text x="{_fmt(PAD_LEFT + plot_w - 2)}" y="{PAD_TOP + 10}" text-anchor="end"'
        f' font-size="10" fill="#222">{label}</text>'
    )
