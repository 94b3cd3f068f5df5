"""The duty managers' status page: server-rendered HTML, no JavaScript, refreshes itself.

P1 classes come first, each a green / amber / red tile (red first) with the count stuck, the
oldest age against its SLA, the time to clear and why (the share of each reason category of
its stuck mail, :mod:`mailwatch.core.reasons`); then the other classes; then each source's
last good probe. A banner says when any source is blind. Readable on a phone. No subjects, ever: the
page is built from :func:`mailwatch.web.api.status_summary`, which carries none.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any

from mailwatch.core.durations import format_seconds

REFRESH_SECONDS = 30
AMBER_FRACTION = 0.5
"""A class turns amber when its oldest message has used half its SLA, red when stuck."""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#111}
header{background:#1d2a3a;color:#fff;padding:.8rem 1rem}
h1{font-size:1.2rem;margin:0} h2{font-size:1rem;margin:1rem 1rem .4rem}
.banner{background:#b00020;color:#fff;padding:.8rem 1rem;font-weight:bold}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(15rem,1fr));gap:.6rem;
padding:0 1rem}
.tile{border-radius:.5rem;padding:.8rem;color:#fff}
.green{background:#1e7b34}.amber{background:#b26a00}.red{background:#b00020}
.tile .n{font-size:2.2rem;font-weight:bold}.tile .name{font-weight:bold}
.tile dl{margin:.3rem 0 0;display:grid;grid-template-columns:auto 1fr;gap:0 .5rem;font-size:.9rem}
table{margin:0 1rem 1rem;border-collapse:collapse;font-size:.9rem}
td,th{padding:.25rem .6rem;border-bottom:1px solid #ccc;text-align:left}
footer{margin:1rem;font-size:.8rem;color:#555}
"""

STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; frame-ancestors 'none';"
    " base-uri 'none'; form-action 'none'"
)
"""The page's policy: nothing but its own inline style (by hash); never framed."""


def tile_state(item: dict[str, Any]) -> str:
    """``red`` when anything is stuck, ``amber`` past half the SLA, else ``green``."""
    if item["stuck"]:
        return "red"
    sla = item.get("sla_seconds") or 0
    if sla and item["oldest_age_seconds"] >= AMBER_FRACTION * sla:
        return "amber"
    return "green"


def category_shares(item: dict[str, Any]) -> str:
    """``throttled 75%, connect 25%``: the share of each reason category of the stuck mail."""
    counts: dict[str, int] = item.get("reason_categories") or {}
    total = sum(counts.values())
    if not total:
        return "-"
    return ", ".join(f"{escape(name)} {round(100 * n / total)}%" for name, n in counts.items())


def _tile(item: dict[str, Any]) -> str:
    state = tile_state(item)
    sla = format_seconds(item["sla_seconds"]) if item.get("sla_seconds") else "-"
    eta_seconds = item["eta_seconds"]
    eta = (
        "never" if eta_seconds is None else "-" if not eta_seconds else format_seconds(eta_seconds)
    )
    oldest = format_seconds(item["oldest_age_seconds"]) if item["total"] else "-"
    return (
        f'<section class="tile {state}" data-class="{escape(item["class"])}" '
        f'data-stuck="{item["stuck"]}" data-state="{state}">'
        f'<div class="name">{escape(item["class"])} <small>{escape(item["priority"])}</small></div>'
        f'<div class="n">{item["stuck"]}</div><div>stuck of {item["total"]} waiting</div>'
        f"<dl><dt>oldest</dt><dd>{oldest} (SLA {sla})</dd><dt>clears in</dt><dd>{eta}</dd>"
        f'<dt>why</dt><dd class="why">{category_shares(item)}</dd></dl>'
        "</section>"
    )


def _source_row(source: dict[str, Any]) -> str:
    name = escape(source["source"])
    state = "up" if source["up"] else "DOWN"
    last = escape(source["last_success"] or "never")
    return f'<tr data-source="{name}"><td>{name}</td><td>{state}</td><td>{last}</td></tr>'


def render(summary: dict[str, Any]) -> str:
    """The whole page for one summary."""
    order = {"red": 0, "amber": 1, "green": 2}
    classes = sorted(summary["classes"], key=lambda c: order[tile_state(c)])  # stable: red first
    p1 = [c for c in classes if c["priority"] == "P1"]
    others = [c for c in classes if c["priority"] != "P1"]
    banner = ""
    if summary["blind"]:
        names = ", ".join(escape(s) for s in summary["blind"])
        banner = f'<div class="banner" role="alert">mailwatch is blind: cannot probe {names}</div>'
    rows = "".join(_source_row(s) for s in summary["sources"])
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        f"<title>mailwatch: {sum(c['stuck'] for c in p1)} P1 stuck</title><style>{_STYLE}</style>"
        f"</head><body><header><h1>mailwatch: priority mail</h1></header>{banner}"
        f'<h2>P1</h2><div class="tiles" id="p1">{"".join(_tile(c) for c in p1)}</div>'
        f'<h2>Other classes</h2><div class="tiles" id="others">'
        f"{''.join(_tile(c) for c in others)}</div>"
        "<h2>Sources</h2><table><tr><th>source</th><th>state</th><th>last good probe</th></tr>"
        f"{rows}</table><footer>Updated {escape(summary['generated_at'])}; refreshes every "
        f"{REFRESH_SECONDS}s. {summary['alerts_open']} alert(s) open.</footer></body></html>"
    )
