"""FETCH batches of header records into :class:`~mailwatch.core.model.Message` values.

:class:`BatchDecoder` is what :class:`~mailwatch.sources.imap.ImapSource` hands
:meth:`~mailwatch.sources.imap_client.ImapClient.fetch` for one folder: each batch of
records is decoded as it arrives, in this process (:func:`packed_blocks`, else the general
:func:`parse_header_blocks`), or, for a large first sync, by the decoding child
(:class:`~mailwatch.sources.imap_decoder_process.DecoderProcess`), which answers the same
plain values the in-process path computes; the ``Message`` values are built here either way,
identical (the tests compare the two).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from datetime import datetime

from mailwatch.core.headers import TRACE_HEADERS, parse_header_blocks
from mailwatch.core.model import Headers, Message
from mailwatch.parsing.imap import FetchRecord
from mailwatch.parsing.imap_headers import packed_blocks
from mailwatch.sources.imap_addresses import (
    Described,
    describe,
    describe_packed,
    recipients_named,
)
from mailwatch.sources.imap_decoder_child import Decoded
from mailwatch.sources.imap_decoder_process import Answer, DecoderProcess

_new_message = tuple.__new__
"""``Message``'s own ``__new__`` is a Python function: the tuple's is a third cheaper. The
tests compare what it builds with :meth:`BatchDecoder._build`'s ``Message(...)``."""
CHUNK = 200
"""Records decoded as one batch, at most (a busy client is handed many FETCH batches at once)."""


def _in_process(raws: list[bytes], keep: frozenset[str]) -> Iterable[tuple[Headers, Described]]:
    packed = packed_blocks(raws, keep)
    if packed is None:  # not the plain common shape: the general parser
        blocks = parse_header_blocks(raws, TRACE_HEADERS, keep)
        return zip(blocks, map(describe, blocks), strict=True)
    return zip(map(Headers.from_packed, packed), describe_packed(packed), strict=True)


class BatchDecoder:
    """What decodes each batch of header records into ``into`` (while more arrive).

    ``keep`` is the set of header names asked for. Every record's UID goes into ``answered``,
    those of messages actioned since the SEARCH (a flag of ``done``) too: they are not
    decoded. Without ``child`` each batch is decoded when it is handed over. With ``child``,
    batches wait in a queue worked through between the event loop's other callbacks: one
    goes to the child whenever it can take one, else one is decoded here, so the two share
    the work and the loop still reads the server and the child's answers in between; the
    caller awaits :meth:`finish` before reading ``into``.
    """

    def __init__(
        self,
        name: str,
        folder: str,
        uidvalidity: int | None,
        reason: str,
        keep: frozenset[str],
        done: set[str],
        into: dict[int, Message],
        answered: set[int],
        now: datetime,
        child: DecoderProcess | None = None,
    ) -> None:
        self.name, self.folder, self.now, self.done = name, folder, now, done
        self.keep = keep - TRACE_HEADERS  # as parse_header_blocks reads them
        self.into, self.answered, self.child = into, answered, child
        self.prefix, self.wait_reason = f"{name}/{folder}/{uidvalidity}/", f"{reason} {folder}"
        self._queue: collections.deque[list[FetchRecord]] = collections.deque()
        self._step: asyncio.Handle | None = None
        self._emptied: asyncio.Future[None] | None = None
        self._cancelled = False

    def __call__(self, records: list[FetchRecord]) -> None:
        """Decode (or queue) the records of one or more FETCH batches."""
        self.answered.update(r.uid for r in records if r.uid is not None)
        done = self.done
        live = [  # not those actioned between the SEARCH and the FETCH
            r for r in records if r.uid is not None and done.isdisjoint(r.flags or ())
        ]
        if self.child is None:
            if live:
                self._here(live)
            return
        for start in range(0, len(live), CHUNK):  # what arrived meanwhile comes in one list
            self._queue.append(live[start : start + CHUNK])
        if self._queue and self._step is None:
            self._step = asyncio.get_running_loop().call_soon(self._work)

    def _work(self) -> None:
        """Hand batches to the child while it takes them; decode one here; come back later."""
        self._step = None
        queue, child = self._queue, self.child
        while queue:
            live = queue.popleft()
            if child is None or not child.submit(
                [r.header or b"" for r in live], self._answer(live)
            ):
                self._here(live)
                break
        if queue:
            self._step = asyncio.get_running_loop().call_soon(self._work)
        elif self._emptied is not None and not self._emptied.done():
            self._emptied.set_result(None)

    async def finish(self) -> None:
        """Wait until every record handed over is decoded (here or by the child)."""
        if self._queue:
            self._emptied = asyncio.get_running_loop().create_future()
            await self._emptied
        if self.child is not None:
            self.child.reclaim()  # nothing left to hand over: share the child's last batches
            await self.child.drain()

    def cancel(self) -> None:
        """Stop decoding: what is queued or held by the child is dropped.

        (The sync failed or was cancelled: it keeps nothing it decoded.)
        """
        self._cancelled = True
        if self._step is not None:
            self._step.cancel()
        self._queue.clear()

    def _answer(self, live: list[FetchRecord]) -> Answer:
        def answer(decoded: list[Decoded] | None) -> None:
            if self._cancelled:
                return
            if decoded is not None:
                try:
                    self._built(live, decoded)  # (strict: an answer per block, or ValueError)
                except (TypeError, ValueError):  # not what the child sends: it is broken
                    if self.child is not None:
                        self.child.fail("an answer of the wrong shape")
                else:
                    return
            self._here(live)  # not plain, or the child is gone

        return answer

    def _here(self, live: list[FetchRecord]) -> None:
        self._build(live, _in_process([r.header or b"" for r in live], self.keep))

    def _build(
        self, live: list[FetchRecord], described: Iterable[tuple[Headers, Described]]
    ) -> None:
        into, now, name, folder = self.into, self.now, self.name, self.folder
        prefix, wait_reason = self.prefix, self.wait_reason
        for record, (headers, (sender, recipients, subject)) in zip(live, described, strict=True):
            uid = record.uid or 0  # not None: filtered by __call__ (actioned ones too)
            arrival, size = record.internaldate or now, record.size or 0
            queue_id = str(uid)
            into[uid] = Message(  # positional: a third cheaper than wait_reason=…
                prefix + queue_id, name, queue_id, folder, arrival, size, sender,
                recipients, headers, subject.text, subject.marking, False, wait_reason,
            )  # fmt: skip

    def _built(self, live: list[FetchRecord], decoded: list[Decoded]) -> None:
        """:meth:`_build` from the child's plain values (no intermediate tuples)."""
        into, now, name, folder = self.into, self.now, self.name, self.folder
        prefix, wait_reason = self.prefix, self.wait_reason
        from_packed, recipients_of = Headers.from_packed, recipients_named
        for record, (packed, sender, addresses, subject, marking) in zip(
            live, decoded, strict=True
        ):
            uid = record.uid or 0
            arrival, size = record.internaldate or now, record.size or 0
            queue_id = str(uid)
            into[uid] = _new_message(Message, (  # every field: as Message(...) builds it
                prefix + queue_id, name, queue_id, folder, arrival, size, sender,
                recipients_of(addresses), from_packed(packed), subject, marking, False,
                wait_reason,
            ))  # fmt: skip
