r"""The IMAP mailbox source: messages nobody has acted on yet, in the folders it watches.

A message is *unactioned* while it lacks the actioned flag (``\Seen`` by default; or
``\Answered``, ``\Flagged``; with ``actioned="moved"`` every message still in the folder is
unactioned). Messages flagged ``\Deleted`` count as actioned: someone dealt with them and
they are waiting only for an expunge. Each probe reports the unactioned messages with
``queue`` = folder, ``queue_id`` = UID, ``arrival`` = INTERNALDATE and a wait reason such as
``"unread in INBOX"``; the SLA turns that into "stuck" once the message's class allows.

Cost grows with what changed, not with the mailbox:

* **Nothing changed** (the common poll): one ``STATUS`` per folder. UIDVALIDITY, UIDNEXT,
  MESSAGES and HIGHESTMODSEQ equal to what the last sync saw mean no message arrived, left or
  changed a flag (CONDSTORE, RFC 7162: every flag change raises HIGHESTMODSEQ), so nothing is
  fetched. A server without CONDSTORE cannot promise that: every poll then re-syncs.
* **Something changed** (CONDSTORE): ``EXAMINE`` (read-only), then two ``UID SEARCH``es
  with ``MODSEQ`` above the last sync's HIGHESTMODSEQ: every message that arrived or changed
  a flag since, and which of those are unactioned (``UNSEEN UNDELETED``…). New unactioned
  UIDs are fetched, changed ones no longer unactioned leave the set; both answers, and the
  Python work, are as long as what changed, not as the folder. An expunge leaves no
  mod-sequence: it is seen in the counts (the last MESSAGES plus the UIDs that arrived must
  equal this MESSAGES), and then the whole set is searched as below.
* **First sync, an expunge, or no CONDSTORE**: one ``UID SEARCH`` for the unactioned set
  (ESEARCH keeps the answer to a compact UID set). That one answer covers new mail, flag
  changes both ways and expunges, so no per-UID flag state is kept, and nothing is fetched
  for mail that was actioned before this source saw it. Headers are fetched only for
  unactioned UIDs not already cached, in batches. A flag refresh by ``FETCH (FLAGS)
  (CHANGEDSINCE …)`` was considered: its unbounded response would itself have to be
  batched, and expunges need a second query anyway; the searches answer the question.
* **A header FETCH came back incomplete** (a malformed response, a message expunged between
  SEARCH and FETCH): the folder is stored without its HIGHESTMODSEQ, so the next poll syncs
  again and asks only for what is still missing; an unread message is never silently dropped.
* **UIDVALIDITY changed**: every cached UID of the folder is void; the folder is synced as
  if new (keys carry the UIDVALIDITY, so no old key survives and nothing is duplicated).

One connection per probe: login costs a round trip or two (plus a TLS handshake), nothing
next to a poll interval of tens of seconds, and there is no idle connection to be dropped by
the server (RFC 3501 allows it after 30 minutes), reconnected, or leaked. All state that
makes polls cheap is kept here, not in the connection. A folder's state is replaced only
after its sync completes, so a failed probe leaves the previous state intact (or, after
a failure midway through a sync by mod-sequence, a state that has the next poll search the
whole folder again).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import structlog

from mailwatch.core.chunked import Chunked
from mailwatch.core.headers import keep_set
from mailwatch.core.model import Message, QueueObservation
from mailwatch.errors import SourceError, SourceTimeout
from mailwatch.gcpause import collection_paused
from mailwatch.parsing.imap import MAX_UIDS_PER_FETCH, MailboxState
from mailwatch.sources.imap_addresses import addresses, describe
from mailwatch.sources.imap_client import ImapClient, Security, make_ssl_context
from mailwatch.sources.imap_decoder import BatchDecoder
from mailwatch.sources.imap_decoder_process import DecoderProcess, prestart

__all__ = [  # addresses and describe re-exported (their home: imap_addresses)
    "DEFAULT_HEADER_FIELDS",
    "Actioned",
    "FolderState",
    "ImapSource",
    "addresses",
    "describe",
]

log = structlog.get_logger(__name__)

Actioned = Literal["seen", "answered", "flagged", "moved"]
DEFAULT_HEADER_FIELDS = (
    "SUBJECT", "FROM", "TO", "CC", "DATE", "MESSAGE-ID", "IMPORTANCE", "X-PRIORITY",
    "PRIORITY", "X-MSMAIL-PRIORITY", "SENSITIVITY", "REPLY-TO", "IN-REPLY-TO",
)  # fmt: skip
"""Headers fetched for every new message; add the names your header rules use."""
DECODE_PROCESS_FROM = 2000
"""New messages in one folder sync from which their headers are decoded by a second process
(:mod:`mailwatch.sources.imap_decoder_process`), so the IMAP session keeps a core to itself."""

_FIELD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # safe inside HEADER.FIELDS (...)
_ACTIONED: dict[str, tuple[str | None, str, str]] = {
    # actioned: (flag that marks it, UID SEARCH criteria for the unactioned, wait reason)
    "seen": ("\\Seen", "UNSEEN UNDELETED", "unread in"),
    "answered": ("\\Answered", "UNANSWERED UNDELETED", "unanswered in"),
    "flagged": ("\\Flagged", "UNFLAGGED UNDELETED", "unflagged in"),
    "moved": (None, "UNDELETED", "still in"),
}


@dataclass(slots=True)
class FolderState:
    """What the last completed sync of one folder saw."""

    mailbox: MailboxState
    messages: dict[int, Message] = field(default_factory=dict)
    """The unactioned messages by UID, as reported (built once per UID, then reused), with
    the UIDs in ascending order: :meth:`ImapSource.probe` reports the values as they are."""
    reported: Chunked[Message] | None = None
    """``messages`` in UID order, built at the first probe that reports them: an unchanged
    poll reuses it, and a poll after a few changes shares its unchanged chunks."""


class ImapSource:
    """Watches IMAP folders for messages nobody has acted on (read, answered, flagged, moved)."""

    def __init__(
        self,
        name: str,
        *,
        host: str,
        user: str,
        password: str | None = None,
        token: str | None = None,
        port: int | None = None,
        security: Security = "starttls",
        folders: Sequence[str] = ("INBOX",),
        actioned: Actioned = "seen",
        ca_file: Path | None = None,
        verify: bool = True,
        timeout: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        extra_headers: Sequence[str] = (),
        fetch_batch: int = 200,
        known: Iterable[Message] = (),
        decode_process_from: int | None = DECODE_PROCESS_FROM,
    ) -> None:
        if (password is None) == (token is None):
            raise ValueError("give exactly one of password or token")
        if actioned not in _ACTIONED:
            raise ValueError(f"actioned must be one of {', '.join(_ACTIONED)}, not {actioned!r}")
        if not folders:
            raise ValueError("watch at least one folder")
        if not 0 < fetch_batch <= MAX_UIDS_PER_FETCH:
            raise ValueError(
                f"fetch_batch must be 1..{MAX_UIDS_PER_FETCH} (UIDs per FETCH command)"
            )
        bad = [h for h in extra_headers if not _FIELD_NAME.fullmatch(h)]
        if bad:
            raise ValueError(f"not header field names: {', '.join(map(repr, bad))}")
        if security not in ("starttls", "tls", "plain"):
            raise ValueError(f"security must be starttls, tls or plain, not {security!r}")
        self._name = name
        self.host = host
        self.port = port or (993 if security == "tls" else 143)
        self.security: Security = security
        self.user = user
        self._password = password
        self._token = token
        self.folders = tuple(folders)
        self.actioned: Actioned = actioned
        self.ssl_context = None if security == "plain" else make_ssl_context(ca_file, verify=verify)
        self.timeout = timeout
        self._clock = clock
        fields = dict.fromkeys(f.upper() for f in (*DEFAULT_HEADER_FIELDS, *extra_headers))
        self._keep = keep_set(fields)  # the server sends only these: parse nothing else
        self.fetch_items = (
            f"(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({' '.join(fields)})])"
        )
        self.fetch_batch = fetch_batch
        self.decode_process_from = decode_process_from
        self._child: DecoderProcess | None = None  # during a probe that fetches that many
        self.state: dict[str, FolderState] = {}
        self._resume(known)

    def _resume(self, known: Iterable[Message]) -> None:
        """Start from messages a previous run reported (the store's), not from nothing.

        A restart then fetches only the headers of mail that arrived meanwhile: the first
        sync still EXAMINEs and SEARCHes each folder (the state has no HIGHESTMODSEQ), and a
        UIDVALIDITY other than the one in the keys voids them as usual. Messages whose key
        does not name one of the watched folders are ignored.
        """
        reason = _ACTIONED[self.actioned][2]
        by_folder: dict[tuple[str, int], dict[int, Message]] = {}
        for message in known:
            key_source, _, rest = message.key.partition("/")
            folder, _, tail = rest.rpartition("/")
            folder, _, validity = folder.rpartition("/")
            if (key_source != self._name or folder != message.queue or folder not in self.folders
                    or not validity.isdigit() or not tail.isdigit()):  # fmt: skip
                continue
            by_folder.setdefault((folder, int(validity)), {})[int(tail)] = message._replace(
                wait_reason=f"{reason} {folder}"  # as configured now, not as stored
            )
        for (folder, uidvalidity), messages in by_folder.items():
            current = self.state.get(folder)  # keys of two UIDVALIDITYs: the newer one counts
            if current is None or (current.mailbox.uidvalidity or 0) < uidvalidity:
                ordered = dict(sorted(messages.items()))
                self.state[folder] = FolderState(MailboxState(uidvalidity=uidvalidity), ordered)

    @property
    def name(self) -> str:
        """The configured source name."""
        return self._name

    def __repr__(self) -> str:  # never shows the password or token
        return f"ImapSource({self._name!r}, {self.user}@{self.host}:{self.port}, {self.security})"

    def _client(self) -> ImapClient:
        return ImapClient(
            self.name, self.host, self.port, security=self.security,
            ssl_context=self.ssl_context, timeout=self.timeout, fetch_batch=self.fetch_batch,
        )  # fmt: skip

    async def probe(self) -> QueueObservation:
        """Sync every folder (cheaply when unchanged) and return the unactioned messages."""
        observed_at = self._clock()
        fetched = malformed = 0
        try:
            async with asyncio.timeout(self.timeout), self._client() as client:
                with collection_paused():  # see mailwatch.app.scanner: a sync's objects all survive
                    fetched, malformed = await self._sync_all(client, observed_at)
                if self._child is not None:
                    self._child.end()  # it exits while LOGOUT goes out (reaped below)
        except SourceError:
            raise  # already typed (SourceTimeout is a TimeoutError too: keep its detail)
        except TimeoutError as exc:  # the whole probe's deadline (each call has its own too)
            raise SourceTimeout(self.name, f"probe took longer than {self.timeout:g}s") from exc
        finally:  # done, failed or cancelled: the decoding child ends with the probe
            child, self._child = self._child, None
            if child is not None:
                await child.close()
            if self.decode_process_from is not None:
                prestart()  # the next large sync (this source's or another's) finds one ready
        if malformed:
            log.warning("imap_fetch_malformed", source=self.name, count=malformed)
        return QueueObservation(
            source=self.name,
            observed_at=observed_at,
            messages=self._messages(),
            malformed=malformed,
            headers_read=fetched,
        )

    async def _sync_all(self, client: ImapClient, now: datetime) -> tuple[int, int]:
        """Connect, authenticate and sync every folder; return (headers fetched, malformed)."""
        fetched = malformed = 0
        await client.connect()
        if self._token is not None:
            await client.xoauth2(self.user, self._token)
        else:
            await client.login(self.user, self._password or "")
        for folder in self.folders:
            read, bad = await self._sync(client, folder, now)
            fetched, malformed = fetched + read, malformed + bad
        return fetched, malformed

    async def _sync(self, client: ImapClient, folder: str, now: datetime) -> tuple[int, int]:
        """Bring one folder's state up to date; return (headers fetched, malformed)."""
        old = self.state.get(folder)
        condstore = "CONDSTORE" in client.capabilities
        if old is not None and condstore and old.mailbox.highestmodseq is not None:
            status = await client.status(folder, modseq=True)
            if status == old.mailbox:
                return 0, 0  # nothing arrived, left or changed a flag
        mailbox = await client.examine(folder, condstore=condstore)
        known: dict[int, Message] = {}
        if old is not None and old.mailbox.uidvalidity == mailbox.uidvalidity:
            known = old.messages
        elif old is not None:  # every cached UID is void: sync the folder as if new
            log.info("imap_uidvalidity_changed", source=self.name, folder=folder)
        flag, criteria, reason = _ACTIONED[self.actioned]
        changes = None
        removed: list[Message] = []
        if old is not None and known is old.messages and condstore:
            changes = await self._changes(client, old.mailbox, mailbox, criteria)
        if changes is None:  # the whole unactioned set: first sync, or something expunged
            unactioned = await client.uid_search(criteria)
            messages = {uid: known[uid] for uid in unactioned if uid in known}
            wanted = [uid for uid in unactioned if uid not in known]
        else:  # the known messages are updated in place (a copy would cost the folder's size)
            changed, still = changes
            messages = known
            # until this sync completes, the state says "search everything next time": the
            # dict stays a true cache of decoded messages by UID, whatever was removed so far
            self.state[folder] = FolderState(replace(mailbox, highestmodseq=None), messages)
            for uid in changed:
                if uid not in still and (gone := messages.pop(uid, None)) is not None:
                    removed.append(gone)  # actioned (or deleted) since the last sync
            wanted = [uid for uid in still if uid not in messages]
        fetched: dict[int, Message] = {}
        answered: set[int] = set()
        done = {"\\Deleted"} if flag is None else {"\\Deleted", flag}
        child = self._decoding_child(len(wanted))
        decode = BatchDecoder(
            self.name, folder, mailbox.uidvalidity, reason, self._keep, done, fetched, answered,
            now, child,
        )  # fmt: skip
        try:
            malformed = (await client.fetch(wanted, self.fetch_items, decode))[1] if wanted else 0
            await decode.finish()  # what is still queued, or held by the child
        finally:
            decode.cancel()
        if len(answered) < len(wanted):  # malformed, or expunged meanwhile
            mailbox = replace(mailbox, highestmodseq=None)  # so the next poll retries them
        reported = _reported(old, messages, removed, fetched) if changes is not None else None
        self.state[folder] = FolderState(mailbox, _merged(messages, fetched), reported)
        return len(answered), malformed

    def _decoding_child(self, wanted: int) -> DecoderProcess | None:
        """The probe's decoding process, started now if ``wanted`` headers are worth it."""
        threshold = self.decode_process_from
        if self._child is None and threshold is not None and wanted >= threshold:
            self._child = DecoderProcess(self.name, self._keep)
            self._child.start()
        return self._child

    async def _changes(
        self, client: ImapClient, before: MailboxState, after: MailboxState, criteria: str
    ) -> tuple[list[int], set[int]] | None:
        """The UIDs changed since the last sync and which of them are unactioned now.

        Two ``UID SEARCH``es with ``MODSEQ`` (RFC 7162 §3.1.5): every message that arrived or
        changed a flag since the last sync's HIGHESTMODSEQ, and those of them that match
        ``criteria``; both answers are as long as what changed, not as the folder. An
        expunge leaves no mod-sequence behind, so the counts decide: the last sync's
        MESSAGES plus the changed UIDs that arrived since (from its UIDNEXT to this
        EXAMINE's) equal this EXAMINE's MESSAGES exactly when nothing it saw was expunged.
        ``None`` otherwise (or without the counters): the caller searches the whole set.
        """
        if (before.highestmodseq is None or before.uidnext is None or before.messages is None
                or after.uidnext is None or after.messages is None):  # fmt: skip
            return None
        since = f"MODSEQ {before.highestmodseq + 1}"
        changed = await client.uid_search(since)
        arrived = sum(1 for uid in changed if before.uidnext <= uid < after.uidnext)
        if before.messages + arrived != after.messages:
            return None  # something was expunged: only the whole set says which
        still = await client.uid_search(f"{since} {criteria}") if changed else []
        return changed, set(still)

    def _messages(self) -> Chunked[Message]:
        reported: list[Chunked[Message]] = []
        for folder in self.folders:
            state = self.state.get(folder)
            if state is None:
                continue
            if state.reported is None:  # messages are immutable: built once per sync
                state.reported = Chunked.of(state.messages.values())  # kept in UID order
            reported.append(state.reported)
        if len(reported) == 1:
            return reported[0]  # one folder: its sequence as it is, not copied
        return Chunked(chunk for folder in reported for chunk in folder.chunks)


def _uid(message: Message) -> int:
    return int(message.key.rpartition("/")[2])


def _reported(
    old: FolderState | None,
    messages: dict[int, Message],
    removed: list[Message],
    fetched: dict[int, Message],
) -> Chunked[Message] | None:
    """The folder's reported sequence after an incremental sync, from the last one.

    What was actioned is taken out of the chunks that held it and new mail (above every UID
    known: the usual case) appended, so most chunks are shared: a poll after 100 new messages
    touches ~100 messages, not every unread one. ``None``: build it whole (see
    :meth:`ImapSource._messages`).
    """
    if old is None or old.reported is None:
        return None
    if fetched and messages and min(fetched) < next(reversed(messages)):
        return None  # a fetched UID below a known one: not an append
    new = [fetched[uid] for uid in sorted(fetched)]
    return old.reported.without(removed, _uid).appended(new)


def _merged(messages: dict[int, Message], fetched: dict[int, Message]) -> dict[int, Message]:
    """``messages`` and ``fetched`` in one dict whose keys ascend (:attr:`FolderState.messages`).

    ``messages`` ascends already; when every fetched UID is above its last (new mail, the
    usual case) the fetched are appended, costing what was fetched, else everything is sorted.
    """
    if not fetched:
        return messages
    ordered = sorted(fetched.items())
    if messages and ordered[0][0] < next(reversed(messages)):
        return dict(sorted([*messages.items(), *ordered]))
    messages.update(ordered)
    return messages
