"""The header ``UID FETCH`` read straight off the wire, framed by literal length.

aioimaplib handles each response line in a recursive call that copies the rest of the buffer
every time, and decides where a FETCH response ends by counting parentheses (upstream #51):
~0.27 s of a 9,000-message header sync went there (bench/imap_sync.py). While header
FETCHes run, :class:`FetchReader` takes the protocol's ``data_received`` instead (an
instance attribute, as the adapter already does for ``welcome``) and reads the responses
itself, as RFC 3501 frames them: a text line, and after a line ending in ``{n}`` exactly ``n``
bytes of literal, whatever they contain. The common response shape is decoded in place
(:data:`~mailwatch.parsing.imap.FAST_FETCH_ITEMS`); any other response is handed, framed the
same way, to :func:`~mailwatch.parsing.imap.parse_fetch`. Either way, one malformed
response is counted and skipped and never swallows its neighbours. No FETCH is left to the
library any more, so its quadratic completeness test (once replaced here by a running
parenthesis count) is gone too.

A command completes like the library's: the tagged line's status word and text (``OK``,
``NO``, ``BAD``), and the adapter reports a refusal exactly as before. Other untagged
responses (``EXISTS``, ``EXPUNGE``, ``OK``, ``BYE``) and continuations are ignored, as the
library ignores them during a FETCH; a tagged line of no command sent here fails them all.
Bytes after the last tagged line go back to the library, which owns the protocol again as
soon as the fetch ends, however it ends (timeout, connection lost, cancellation).

Batches stay at most :data:`~mailwatch.parsing.imap.MAX_UIDS_PER_FETCH` UIDs (the setting's
limit) with :data:`FETCH_WINDOW` of them in flight. This reader has no recursion and does
linear work per byte, so it is not what bounds them; the cap remains because the same setting
also sizes the STORE/EXPUNGE batches that aioimaplib still parses.

This module also holds :class:`SaslCommand`, the adapter's AUTHENTICATE that answers an
error continuation.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import aioimaplib  # type: ignore[import-untyped]

from mailwatch.errors import ImapParseError
from mailwatch.parsing.imap import (
    FAST_FETCH_ITEMS,
    FetchRecord,
    fast_record,
    format_sequence_set,
    parse_fetch,
)

_WIRE_FETCH = re.compile(rb"\* " + FAST_FETCH_ITEMS + rb"\r\n")
_LITERAL = re.compile(rb"\{(\d+)\}$")  # what aioimaplib takes for a literal announcement
_FETCH = re.compile(rb"\* \d+ FETCH \(", re.IGNORECASE)
FETCH_WINDOW = 3
"""Header FETCH batches in flight at once (each at most ``fetch_batch`` UIDs)."""
_TAGGED = re.compile(rb"[A-Za-z0-9]+ (?:OK|NO|BAD)\b")


class SaslCommand(aioimaplib.Command):  # type: ignore[misc]
    """AUTHENTICATE that answers a server's continuation with an empty line.

    On a refused token, XOAUTH2 servers send a continuation carrying the error details and
    wait for an empty line (RFC 7628) before their tagged NO: the library never answers it.
    """

    def __init__(self, tag: str, *args: str, answer: Callable[[], None]) -> None:
        super().__init__("AUTHENTICATE", tag, *args)
        self._answer = answer

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        """Record ``line``; answer a continuation at once."""
        super().append_to_resp(line, result=result)
        if result == "Pending" and bytes(line).startswith(b"+"):
            self._answer()


class FetchReader:
    """Reads the responses of the FETCH commands sent through it, until each is tagged.

    :meth:`send` sends one command and returns the future of its tagged line (status word
    and text, e.g. ``("OK", "Fetch completed")``). Every FETCH response read meanwhile goes
    to :attr:`records` (or counts in :attr:`malformed`): Dovecot already answers the next
    of several pipelined FETCHes before it tags the previous one, so responses are not
    attributed to commands by position; the caller keeps the UIDs it asked for, as before.
    Call :meth:`release` when done, whatever the outcome: the library gets the protocol
    back, or, if commands are still outstanding (a timeout, a cut, an error), a sink that
    drops their answers, since the library knows nothing of them and the session is then
    abandoned.
    """

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.records: list[FetchRecord] = []
        self.malformed = 0
        self._outstanding: dict[bytes, asyncio.Future[tuple[str, str]]] = {}
        self._failed = False
        self._buffer = bytes(protocol.incomplete_line)  # empty between commands
        protocol.incomplete_line = b""
        protocol.data_received = self.feed  # looked up per call by every asyncio transport

    @staticmethod
    def usable(protocol: Any) -> bool:
        """Whether a reader may take ``protocol`` now: mailbox selected, nothing pending."""
        return (
            protocol.state == aioimaplib.SELECTED
            and protocol.pending_sync_command is None
            and not protocol.pending_async_commands
            and protocol.current_command is None
        )

    def send(self, *args: str, prefix: str = "UID") -> asyncio.Future[tuple[str, str]]:
        """Send ``[prefix] FETCH args`` (the very line the library would send)."""
        command = aioimaplib.Command("FETCH", self.protocol.new_tag(), *args, prefix=prefix)
        done: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._outstanding[command.tag.encode("ascii")] = done
        self.protocol.send(str(command))
        return done

    def release(self) -> None:
        """Give ``data_received`` back to the library, or to a sink (see the class)."""
        if self._outstanding or self._failed:
            self.protocol.data_received = _discard
            for done in self._outstanding.values():  # nobody will await these any more
                if not done.cancel() and not done.cancelled():
                    done.exception()  # retrieved: no "exception was never retrieved"
            return
        vars(self.protocol).pop("data_received", None)
        rest, self._buffer = self._buffer, b""
        if rest:  # what came after the last tagged line (an unsolicited EXISTS…)
            self.protocol.data_received(rest)

    def feed(self, data: bytes) -> None:
        """``data_received``: consume every whole response in the buffer."""
        if self._failed:
            return
        buffer = self._buffer + data if self._buffer else data
        try:
            position = self._consume(buffer)
        except ImapParseError as exc:  # a tagged line of no command sent here
            self._failed = True
            self._buffer = b""
            for done in self._outstanding.values():
                if not done.done():
                    done.set_exception(exc)
            return
        self._buffer = buffer[position:]

    def _consume(self, buffer: bytes) -> int:
        """Parse whole responses from the start of ``buffer``; return where the rest begins."""
        position, end = 0, len(buffer)
        records, fast, outstanding = self.records, _WIRE_FETCH.match, self._outstanding
        while position < end and outstanding:
            found = fast(buffer, position)
            if found is not None:  # the common shape: literal by length, then ")" CRLF
                literal_start = found.end()
                literal_end = literal_start + int(found.group(6))
                if literal_end + 3 > end:
                    return position  # incomplete: wait for more
                if buffer.startswith(b")\r\n", literal_end):
                    record = fast_record(found, buffer[literal_start:literal_end])
                    if record is not None:
                        records.append(record)
                        position = literal_end + 3
                        continue
            parts, after = _frame(buffer, position)
            if parts is None:
                return position  # incomplete: wait for more
            position = after
            first = bytes(parts[0])
            if first.startswith((b"*", b"+")):
                if _FETCH.match(first):
                    found_records, bad = parse_fetch(parts)
                    records.extend(found_records)
                    self.malformed += bad
                continue  # other untagged responses and continuations: ignored
            tag, _, rest = first.partition(b" ")
            done = outstanding.pop(tag, None)
            if done is not None:
                status, _, text = rest.partition(b" ")
                if not done.done():  # cancelled meanwhile: nobody waits for it
                    done.set_result(
                        (status.decode("ascii", "replace"), text.decode("utf-8", "replace"))
                    )
            elif _TAGGED.match(first):
                raise ImapParseError(f"unexpected tagged response {first[:60]!r}")
        return position


def _discard(_data: bytes) -> None:
    """``data_received`` of an abandoned session: answers nobody waits for are dropped."""


def _frame(buffer: bytes, position: int) -> tuple[list[bytes | bytearray] | None, int]:
    """One whole response from ``position``: its text lines and literals (as ``bytearray``).

    ``(None, position)`` if the buffer ends before the response does.
    """
    parts: list[bytes | bytearray] = []
    while True:
        eol = buffer.find(b"\r\n", position)
        if eol < 0:
            return None, position
        line = buffer[position:eol]
        parts.append(line)
        position = eol + 2
        literal = _LITERAL.search(line) if line.endswith(b"}") else None
        if literal is None:
            return parts, position
        size = int(literal.group(1))
        if position + size > len(buffer):
            return None, position
        parts.append(bytearray(buffer[position : position + size]))
        position += size


async def fetch_batches(
    protocol: Any,
    uid_sets: Iterable[Sequence[int]],
    items: str,
    wait: Callable[[asyncio.Future[tuple[str, str]]], Awaitable[tuple[str, str]]],
    each: Callable[[list[FetchRecord]], None] | None = None,
) -> tuple[list[FetchRecord], int, str | None]:
    """``UID FETCH items`` of each UID batch, with up to :data:`FETCH_WINDOW` in flight.

    While one batch is decoded the server prepares the next. ``wait`` awaits one command's
    tagged line (the caller's timeout and connection watch); batches are awaited in order.
    Returns the records of the UIDs asked for, the malformed count, and the text of the
    first refused batch (``None`` if all were OK): after a refusal nothing more is sent, and
    the batches already in flight are awaited before returning.

    With ``each``, the records read so far are also handed to it after every tagged line
    (each record once, before the function returns), so the caller decodes one batch while
    the server is still sending the next ones instead of after the last.
    """
    reader = FetchReader(protocol)
    sent: collections.deque[asyncio.Future[tuple[str, str]]] = collections.deque()
    wanted: set[int] = set()
    refused: str | None = None
    kept: list[FetchRecord] = []

    def take() -> None:
        fresh, reader.records = reader.records, []
        fresh = [r for r in fresh if r.uid in wanted]
        kept.extend(fresh)
        if each is not None and fresh:
            each(fresh)

    try:
        for uids in itertools.chain(uid_sets, [None]):
            if uids is not None and refused is None:
                sent.append(reader.send(format_sequence_set(uids), items))
                wanted.update(uids)
            while sent and (uids is None or len(sent) >= FETCH_WINDOW):
                status, text = await wait(sent.popleft())
                if status != "OK" and refused is None:
                    refused = text
                take()
    finally:
        reader.release()
    return kept, reader.malformed, refused
