"""Drill (issue 11 item 1): a hostile subject in a real Postfix queue must not stall the scan.

The subject decodes (RFC 2047) to a protective marking followed by 64K spaces; with the old
backtracking marking regex one such message froze the whole service for about a minute
(the regex holds the GIL: no probe timeout fires). Queued next to an emergency recall (P1),
the scan must finish, classify both, and judge the P1 message stuck once past its SLA.
"""

from __future__ import annotations

import asyncio
import smtplib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.sources.postfix import PostfixSource
from mailwatch.store import Store

pytestmark = pytest.mark.postfix

SPACES = 65536


def hostile_message() -> bytes:
    """A message whose Subject decodes to ``OFFICIAL-SENSITIVE`` + 64K spaces + a subject.

    Q-encoded words (a space is one ``_``) folded over many short lines (adjacent encoded
    words join with no space between them): within SMTP's line limit and Postfix's
    ``header_size_limit`` (100 KiB), so the whole subject reaches the queue file.
    """
    decoded = "OFFICIAL-SENSITIVE" + " " * SPACES + "Breach of licence - X100009"
    chunks = [decoded[i : i + 60].replace(" ", "_") for i in range(0, len(decoded), 60)]
    words = "\r\n ".join(f"=?utf-8?q?{chunk}?=" for chunk in chunks)
    return (
        "From: om@probation.example\r\nTo: ppcs@justice.example\r\n"
        f"Subject: {words}\r\nMessage-ID: <hostile@probation.example>\r\n\r\nHostile.\r\n"
    ).encode()


async def test_hostile_subject_does_not_stall_the_scan(
    postfix: PrivatePostfix, tmp_store_path: Path
) -> None:
    """Both messages are classified; the P1 recall is stuck past its SLA; the scan is prompt."""
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30) as smtp:
        smtp.sendmail("om@probation.example", ["ppcs@justice.example"], hostile_message())
    postfix.inject([make_message("Emergency recall - X100001")])
    postfix.wait_for_queue(2)
    later = datetime.now(UTC) + timedelta(minutes=11)  # past the recall's 10-minute SLA
    settings = load(None)
    with Store(tmp_store_path) as store:
        scanner = Scanner(settings.classifier(), store)
        source = PostfixSource("mta1", config_dir=postfix.config_dir, clock=lambda: later)
        async with asyncio.timeout(30):  # the old code spent about a minute on one subject
            outcome = await scanner.scan(source)
    assert outcome.ok, outcome.error
    by_class = {v.classification.name: v for v in outcome.verdicts}
    assert set(by_class) == {"recall_emergency", "breach"}
    recall = by_class["recall_emergency"]
    assert str(recall.classification.priority) == "P1"
    assert recall.stuck
    hostile = by_class["breach"].message
    assert hostile.marking == "OFFICIAL-SENSITIVE"
    assert hostile.subject == "Breach of licence - X100009"
