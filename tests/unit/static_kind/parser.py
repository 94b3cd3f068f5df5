"""The "static" kind's configuration and parser: a fixed listing of waiting messages."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from mailwatch.config.kinds import SourceConfigBase
from mailwatch.core.model import Message

QUEUE = "shelf"


class StaticSourceConfig(SourceConfigBase):
    """``[sources.NAME] type = "static"``: messages listed in the configuration itself."""

    type: Literal["static"]
    listing: str
    """One message per line: ``queue-id|arrival (ISO 8601)|subject``."""

    def queues(self, name: str) -> tuple[str, ...]:
        """The one queue it reports."""
        return (QUEUE,)


def parse_listing(source: str, text: str) -> tuple[list[Message], int]:
    """The messages of ``text``, and how many lines could not be read."""
    messages, malformed = [], 0
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        try:
            queue_id, arrival, subject = line.split("|", 2)
            when = datetime.fromisoformat(arrival)
        except ValueError:
            malformed += 1
            continue
        messages.append(Message(
            key=f"{source}/{queue_id}", source=source, queue_id=queue_id, queue=QUEUE,
            arrival=when, size=0, sender="", recipients=(), subject=subject,
        ))  # fmt: skip
    return messages, malformed
