"""Test helper: a fake queue source that returns the listing it is given (shared by unit tests)."""

from __future__ import annotations

from datetime import UTC, datetime

from mailwatch.core.model import Message, QueueObservation

LISTED_AT = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
"""When a listing is observed, unless the test says otherwise."""


class FakeQueueSource:
    """A fake queue source: returns the listing it is given (objects reused, as Postfix's are)."""

    name = "mta1"

    def __init__(self, messages: list[Message], observed_at: datetime = LISTED_AT) -> None:
        self.messages = messages
        self.observed_at = observed_at

    async def probe(self) -> QueueObservation:
        """The current listing."""
        return QueueObservation(self.name, self.observed_at, tuple(self.messages))
