"""The duty manager's status page: Jinja2 templates (autoescaped), no JavaScript, its policy.

The page is laid out by the templates in ``mailwatch/web/templates`` from the values of
:mod:`mailwatch.web.pagemodel`; the handlers are in :mod:`mailwatch.web.pages`, the sessions
and CSRF tokens in :mod:`mailwatch.web.sessions`, the charts in :mod:`mailwatch.web.charts`.
The one stylesheet is inline and allowed by its hash; no script is allowed at all; forms may
post only to this server.
"""

from __future__ import annotations

import base64
import hashlib
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from mailwatch.web.pagemodel import Inputs, Tile, tile_state, tiles

__all__ = ["CONTENT_SECURITY_POLICY", "STYLE_HASH", "page", "render", "tile_state"]

REFRESH_SECONDS = 30
SILENCE_CHOICES = ("1h", "2h", "4h", "8h", "24h")
_STYLE = files("mailwatch.web").joinpath("templates/style.css").read_text(encoding="utf-8")
STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; frame-ancestors 'none';"
    " base-uri 'none'; form-action 'self'"
)
"""The page's policy: its own inline style (by hash), no script, forms to this server only,
never framed. Inline ``<svg>`` is markup and needs no source; the charts use presentation
attributes, never ``style``."""

ENV = Environment(
    loader=PackageLoader("mailwatch.web", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def page(template: str, **values: Any) -> str:
    """One template rendered with the page's common values (style, choices, no flash)."""
    common: dict[str, Any] = {
        "style": Markup(_STYLE),  # noqa: S704 - our own file, hashed in the policy
        "refresh": 0, "who": None, "csrf": None, "flash": None,
        "silence_choices": SILENCE_CHOICES,
    }  # fmt: skip
    return ENV.get_template(template).render(common | values)


def sources_view(summary: dict[str, Any], shown: Any = None) -> list[dict[str, Any]]:
    """The sources table: name, up, and the last good probe (``shown(iso)`` formats it)."""
    return [{"name": s["source"], "up": s["up"],
             "last": (shown(s["last_success"]) if shown else s["last_success"])
             if s["last_success"] else "never"} for s in summary["sources"]]  # fmt: skip


def overview(tiles_: list[Tile], summary: dict[str, Any], **values: Any) -> str:
    """The overview page: P1 tiles, the other classes' tiles, the sources."""
    p1 = [t for t in tiles_ if t.priority == "P1"]
    sources = values.pop("sources", None) or sources_view(summary)
    return page(
        "index.html", p1=p1, others=[t for t in tiles_ if t.priority != "P1"],
        p1_stuck=sum(t.stuck for t in p1), blind=summary["blind"], sources=sources,
        alerts_open=summary["alerts_open"],
        **({"refresh": REFRESH_SECONDS, "fleet": None} | values),
    )  # fmt: skip


def render(summary: dict[str, Any]) -> str:
    """The overview for a summary alone (no alerts, reasons or history: tests and fallbacks)."""
    from datetime import datetime

    now = datetime.fromisoformat(summary["generated_at"])
    zone = ZoneInfo("Europe/London")
    built = tiles(Inputs(summary, now, zone, "https://runbooks.invalid/"))
    return overview(built, summary, updated=summary["generated_at"])
