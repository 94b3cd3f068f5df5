"""The duty manager's page with ``[fleet]``: a Fleet section read from the real PostgreSQL.

A real Postfix, a real PostgreSQL, the running service: ``/`` lists the fleet's stuck counts
per class and every source, a silent agent's source as UNKNOWN (never "0 stuck"); with the
database stopped the page still answers 200 with its local tiles and says the fleet database
is unreachable.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from mailwatch.config.settings import Settings
from mailwatch.core.changes import ChangeSet, Heartbeat
from mailwatch.fleet.writer import open_pool, push
from mailwatch.sandbox.postgres import PrivatePostgres

from .test_api import call
from .test_fleet_service import fixture_base, fixture_settings, until

__all__ = ["fixture_base", "fixture_settings"]
pytestmark = [pytest.mark.postfix, pytest.mark.postgres]


def _page(base: str) -> tuple[int, str]:
    status, body = call(base, "GET", "/")
    return status, str(body)


async def _silent_agent(settings: Settings) -> None:
    """An agent ``edge9`` whose last heartbeat (pushed as agents push) is an hour old."""
    assert settings.fleet is not None
    pool = open_pool(settings.fleet)
    await pool.open()
    try:
        beat = Heartbeat("mta9", time.time() - 3600, ok=True, messages=4)
        await push(pool, "edge9", [ChangeSet("mta9", beat)])
    finally:
        await pool.close()


async def test_the_page_shows_the_fleet_and_survives_the_database_stopping(
    base: str, settings: Settings, postgres_instance: PrivatePostgres
) -> None:
    """Fleet stuck counts per class and an unknown source; database down: 200, said plainly."""
    await _silent_agent(settings)
    row = re.compile(r'data-class="recall_emergency" data-priority="P1">.*?<td>2 of 2</td>')

    def listed() -> bool:
        status, html = _page(base)
        return status == 200 and bool(row.search(html)) and 'data-state="ok"' in html

    await until(listed)
    status, html = await asyncio.to_thread(_page, base)
    fleet = html[html.index('id="fleet"') :]
    assert 'data-source="edge9/mta9" data-state="unknown"' in fleet
    unknown = fleet[fleet.index('data-source="edge9/mta9"') :].split("</tr>", 1)[0]
    assert "UNKNOWN" in unknown
    assert "not known" in unknown
    assert "1 source(s) UNKNOWN" in fleet
    assert 'data-source="edge1/mta1" data-state="ok"' in fleet
    assert "Emergency recall - A Person" not in html  # no subjects

    postgres_instance.stop()
    try:
        status, html = await asyncio.to_thread(_page, base)
        assert status == 200
        assert 'class="tile red" data-class="recall_emergency"' in html  # the local tile
        assert "fleet database unreachable since" in html
        assert 'id="fleet-classes"' not in html
    finally:
        postgres_instance.start()
    await until(listed)
