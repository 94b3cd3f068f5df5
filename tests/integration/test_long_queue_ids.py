"""A real Postfix with ``enable_long_queue_ids = yes`` and multi-instance names (issue 15, item 5).

The Postfix source lists it and reads every message's headers (the queue files sit in hash
directories named by the ids' microseconds, not their first character), and the mail-log
source reads ``postfix-mw2/…`` lines with long ids and joins them to the queued messages.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.core.model import Status
from mailwatch.parsing.queueid import is_long
from mailwatch.sandbox.postfix import PrivatePostfix, free_port, make_message
from mailwatch.sources.maillog import MailLogSource
from mailwatch.sources.postfix import PostfixSource
from mailwatch.store import Store

pytestmark = pytest.mark.postfix

SUBJECTS = ("OFFICIAL-SENSITIVE: Emergency recall - X100001", "Court results for Monday")


@pytest.fixture(name="long_postfix")
def fixture_long_postfix(tmp_path: Path) -> Iterator[tuple[PrivatePostfix, int]]:
    """A private Postfix with long ids, named ``postfix-mw2``, plus a named submission smtpd."""
    submission = free_port()
    instance = PrivatePostfix.create(
        tmp_path / "pf",
        extra={"enable_long_queue_ids": "yes", "syslog_name": "postfix-mw2"},
        services=(
            f"127.0.0.1:{submission} inet n - n - - smtpd -o syslog_name=postfix-mw2/submission",
        ),
    )
    instance.start()
    try:
        yield instance, submission
    finally:
        instance.stop()


async def test_long_ids_listed_read_and_joined(
    long_postfix: tuple[PrivatePostfix, int], tmp_path: Path
) -> None:
    """Headers of every long-id message are read; log outcomes join to them."""
    postfix, submission = long_postfix
    postfix.inject([make_message(SUBJECTS[0])])
    with smtplib.SMTP("127.0.0.1", submission, timeout=30) as smtp:
        smtp.send_message(make_message(SUBJECTS[1], to="clerk@courts.example"))
    entries = postfix.wait_for_queue(2)
    assert all(is_long(str(e["queue_id"])) for e in entries)
    settings = load(None)
    source = PostfixSource("mta2", config_dir=postfix.config_dir)
    log = MailLogSource("mta2_log", postfix.log_path, outcomes_for="mta2")
    with Store(tmp_path / "mw.db") as store:
        scanner = Scanner(settings.classifier(), store)
        outcome = await scanner.scan(source)
        assert outcome.ok, outcome.error
        assert outcome.observation is not None
        assert outcome.observation.headers_read == 2
        seen = {v.message.subject: v.classification.name for v in outcome.verdicts}
        assert seen == {"Emergency recall - X100001": "recall_emergency",
                        "Court results for Monday": "court_result"}  # fmt: skip
        court = next(str(e["queue_id"]) for e in entries if "courts" in str(e["recipients"]))
        postfix.postsuper("-d", court)
        postfix.wait_for_log(f"{court}: removed")  # postlogd writes it a moment later
        assert (await scanner.scan(log)).ok
        assert store.get(court).status is Status.LEFT  # the postsuper "removed" line, joined
        assert log.unparsed_lines > 0  # smtpd/cleanup lines: read, not events
