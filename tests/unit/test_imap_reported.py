"""An IMAP poll after a few changes reports a sequence that shares the unchanged messages.

Issue 13: the CPU of a poll after 100 new messages must grow with what changed, not with the
unread set. Rebuilding one tuple of every unread message (and freeing the last) touched all
of them: ~3-5 ms at 90,000 unread, which made the poll's CPU at N twice that at N/10. The
folder's reported sequence is now updated chunk by chunk (:mod:`mailwatch.core.chunked`);
``tests/integration/test_imap_poll_cost.py`` checks against a real Dovecot that what is
reported equals a full sync's.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mailwatch.core.chunked import CHUNK, Chunked
from mailwatch.core.model import Message, Recipient
from mailwatch.parsing.imap import MailboxState
from mailwatch.sources.imap import FolderState, _merged, _reported

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _message(uid: int) -> Message:
    return Message(
        f"duty/INBOX/7/{uid}", "duty", str(uid), "INBOX", NOW, 1000, "om@probation.example",
        (Recipient("duty@ppcs.example"),), subject=f"Case {uid}",
    )  # fmt: skip


def _folder(uids: range) -> tuple[FolderState, dict[int, Message]]:
    messages = {uid: _message(uid) for uid in uids}
    return FolderState(MailboxState(7), messages, Chunked.of(messages.values())), messages


def test_new_mail_and_actioned_mail_share_the_other_chunks() -> None:
    """100 new, one actioned: the same messages as a rebuild; all other chunks shared."""
    old, messages = _folder(range(1, 5 * CHUNK + 1))
    assert old.reported is not None
    removed = [messages.pop(3 * CHUNK + 5)]
    fetched = {uid: _message(uid) for uid in range(5 * CHUNK + 1, 5 * CHUNK + 101)}
    reported = _reported(old, messages, removed, fetched)
    merged = _merged(messages, fetched)
    assert reported is not None
    assert tuple(reported) == tuple(merged.values())
    shared = [a is b for a, b in zip(old.reported.chunks, reported.chunks, strict=False)]
    assert shared == [True, True, True, False, False]


def test_mail_below_a_known_uid_is_built_whole() -> None:
    """A fetched UID below a known one (after a resync) is not an append: build it whole."""
    old, messages = _folder(range(10, 20))
    del messages[12]
    assert _reported(old, messages, [], {12: _message(12)}) is None


def test_nothing_reported_yet_is_built_whole() -> None:
    """No sequence from the last sync (it failed before reporting): built whole."""
    _old, messages = _folder(range(1, 10))
    assert _reported(FolderState(MailboxState(7), messages), messages, [], {}) is None
    assert _reported(None, messages, [], {}) is None
