r"""Benchmark: mailwatch's IMAP sync against stdlib ``imaplib``, on a large private mailbox.

Builds a private Dovecot (:class:`mailwatch.sandbox.dovecot.PrivateDovecot`) with two users: a
large INBOX of N messages (``--messages``, 10,000) and a small one of S (``--small``, 1,000).
Both are filled by writing varied probation-style messages straight into ``Maildir/new``;
then a "person" (stdlib imaplib) marks a share of them ``\Seen`` (actioned). On the same
Dovecot, in the same run, it times (plain IMAP on loopback, one connection per measurement,
connect to logout):

* baseline: stdlib ``imaplib`` fetching the items mailwatch fetches (``UID FLAGS
  INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (...)]``, mailwatch's default header
  fields) for every message of the large INBOX, in batches of several sizes; the fastest
  batch size is the baseline;
* mailwatch's first header sync: ``await ImapSource(...).probe()`` on a brand-new source;
* mailwatch's poll with nothing changed (the same source probed again), at both sizes;
* mailwatch's poll after K new messages (``--added``, 100) were delivered, at both sizes,
  next to stdlib imaplib sending the same commands (STATUS, EXAMINE, two UID SEARCHes by
  MODSEQ, UID FETCH of the K new) after K other new messages: what any client pays Dovecot
  for new mail.

Targets: ``first_sync / stdlib <= 1.5`` (issue 13); the unchanged poll ``< 50 ms`` at N and
``poll(N) / poll(S) <= 1.5`` (it must not grow with the mailbox); the poll after +K at most
1.5 x stdlib sending the same commands, and mailwatch's CPU for it at N at most 2 x that at
S (its own work for K new messages does not grow with the mailbox). The exit status is 1
when a target fails, 2 when the benchmark itself could not run or an invariant did not
hold. Run as root
(Dovecot is started privately): ``.venv/bin/python bench/imap_sync.py --help``.

``--keep DIR`` builds the Dovecot and both mailboxes in DIR once and reuses them on later
runs with the same sizes, share read and seed (messages the +K rounds added are expunged
first), e.g. ``--messages 100000 --small 10000 --keep /var/tmp/mwbench-imap-100k``. Unless
``--no-rss``, one first sync also runs in a fresh Python process of its own, which reports
its own peak RSS (VmHWM: ``exec`` gives it an address space of its own) and CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.charset
import email.header
import imaplib
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from mailwatch.core.model import Observation
from mailwatch.errors import SourceError
from mailwatch.parsing.imap import MAX_UIDS_PER_FETCH, format_sequence_set, parse_search
from mailwatch.sandbox.dovecot import DovecotCommandError, PrivateDovecot
from mailwatch.sources import helper_spare
from mailwatch.sources.imap import DECODE_PROCESS_FROM, DEFAULT_HEADER_FIELDS, ImapSource
from mailwatch.sources.imap_addresses import clear_caches
from mailwatch.sources.imap_decoder_process import prestart

FIRST_SYNC_TARGET = 1.5  # issue 13: first_sync / fastest stdlib fetch of every message's headers
POLL_LIMIT_MS = 50.0  # unchanged poll at N messages, milliseconds
POLL_SIZE_TARGET = 1.5  # unchanged poll at N / unchanged poll at S
ADDED_VS_STDLIB_TARGET = 1.5  # poll after +K / stdlib sending the same commands, at N
ADDED_CPU_SIZE_TARGET = 2.0  # mailwatch CPU of a poll after +K: at N / at S (N = 10 S)
SPARE_READY = 10.0  # seconds a spare decoding process may take to start (it takes ~0.1)
FOLDER = "INBOX"
LARGE_USER, SMALL_USER = "bench", "benchsmall"
STDLIB_FIELDS = " ".join(DEFAULT_HEADER_FIELDS)
# The same items mailwatch asks for (issue 13: "stdlib imaplib, same fields"): until December
# 2026 the baseline fetched 8 of the 13 header fields and none of UID, FLAGS, INTERNALDATE and
# RFC822.SIZE, which flattered the baseline.
STDLIB_ITEMS = f"(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({STDLIB_FIELDS})])"
STDLIB_BATCHES = (100, 500, 1000, 2500, 0)  # 0: every message in one FETCH
SEEN_BATCH = 500  # UIDs per STORE when marking messages read


class BenchError(RuntimeError):
    """The benchmark could not run, or an invariant it checks did not hold."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`BenchError` unless ``condition`` (unlike ``assert``, survives ``-O``).

    ``message`` is built by the caller before the call, whether or not it is used: inside a
    timed region, test the condition inline and build the message only on failure (a
    ``str()`` of each FETCH answer once made the stdlib baseline ~30% slow).
    """
    if not condition:
        raise BenchError(message)


# --------------------------------------------------------------------------------------------
# Message generation: varied probation-style subjects and headers.
# --------------------------------------------------------------------------------------------

NAMES = (
    "John Smith", "Sarah Khan", "Mohammed Ahmed", "Emma Jones", "Priya Patel", "Kwame Okafor",
    "Zoë Brontë", "Siân Hughes", "Łukasz Nowak", "François Müller", "Ciarán O\u2019Brien",
    "Renée Gómez", "Jürgen Østergaard", "Fatima Walker", "Liam Roberts",
)  # fmt: skip
COURTS = ("Westminster MC", "Snaresbrook CC", "Leeds MC", "Cardiff Crown Court", "Luton CC")
PRISONS = ("Pentonville", "Wandsworth", "Belmarsh", "Durham", "Styal", "Bristol")

# (weight, template). Placeholders: name, crn, pnc, date, court, prison, sep.
SUBJECTS: tuple[tuple[int, str], ...] = (
    (5, "Emergency recall {sep} {name} {sep} CRN {crn}"),
    (2, "URGENT: recall of {name} ({crn}) {sep} immediate action required"),
    (5, "Part A recall report {sep} {name} {sep} {crn}"),
    (3, "Request for recall {sep} {name} DOB {date}"),
    (2, "Notice of Return to Custody {sep} {name} {sep} {pnc}"),
    (1, "Licence revoked: {name} ({pnc})"),
    (2, "Recall: Part A recall report {sep} {name}"),  # Outlook's message recall: a lookalike
    (1, "Recall: team meeting moved to Thursday"),
    (4, "Risk escalation {sep} {name} {sep} CRC to NPS {sep} {crn}"),
    (2, "RoSH increased to high {sep} {name} {crn}"),
    (2, "Child protection referral {sep} {name}"),
    (2, "MAPPA level 3 meeting minutes {sep} {name}"),
    (3, "MAPPA referral {sep} {name} ({crn})"),
    (4, "Breach of licence conditions {sep} {name} {sep} {crn}"),
    (3, "Case allocation: {name} sentenced at {court}"),
    (3, "Release notification {sep} {name} {sep} HMP {prison} {sep} {date}"),
    (6, "Court results {court} {date}"),
    (3, "PSR request {sep} {name} {sep} {court}"),
    (2, "Victim liaison update {sep} {name}"),
    (6, "Team meeting Thursday {sep} agenda attached"),
    (3, "Training: managing risk and safeguarding awareness ({date})"),
    (2, "Timesheets due Friday"),
    (2, "Lunch?"),
    (2, "Supervision notes for {name} ({crn}) {sep} please review before {date}"),
)
MARKINGS: tuple[tuple[int, str], ...] = (
    (45, ""),
    (20, "OFFICIAL-SENSITIVE: "),
    (6, "[OFFICIAL-SENSITIVE] "),
    (12, "OFFICIAL: "),
    (4, "[OFFICIAL] "),
    (3, "(RESTRICTED) "),
)
PREFIXES: tuple[tuple[int, str], ...] = ((72, ""), (12, "RE: "), (8, "FW: "), (8, "[CJSM] "))
SENDER_DOMAINS = ("probation.cjsm.net", "nps.cjsm.net", "justice.gov.uk")
RECIPIENT_DOMAINS = ("ppcs.cjsm.net", "met.police.cjsm.net", "hmcts.cjsm.net", "mappa.cjsm.net")
BODY_LINES = (
    "Please find attached the documents for the above case.",
    "Could you confirm receipt and let me know if anything further is needed?",
    "Licence conditions 3 and 7 have not been complied with since the last review.",
    "I have copied in the senior probation officer for information.",
    "Kind regards,",
)
QP_UTF8 = email.charset.Charset("utf-8")
QP_UTF8.header_encoding = email.charset.QP


def _weighted(rng: random.Random, table: Sequence[tuple[int, str]]) -> str:
    return rng.choices([t for _, t in table], weights=[w for w, _ in table])[0]


def _subject_header(rng: random.Random) -> str:
    """A Subject line: plain, or RFC 2047 encoded words (UTF-8 B or Q) when not ASCII or 5%."""
    fills = {
        "name": rng.choice(NAMES),
        "crn": f"{rng.choice('ABCDEFGHJKLMNPRSTVWX')}{rng.randint(100000, 999999)}",
        "pnc": f"{rng.randint(1990, 2025)}/{rng.randint(1000000, 9999999)}{rng.choice('ABCDEF')}",
        "date": f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/2026",
        "court": rng.choice(COURTS),
        "prison": rng.choice(PRISONS),
        "sep": rng.choice(("-", "-", "\u2013", "|")),
    }
    text = (
        _weighted(rng, PREFIXES)
        + _weighted(rng, MARKINGS)
        + _weighted(rng, SUBJECTS).format(**fills)
    )
    if text.isascii() and rng.random() >= 0.05:
        return f"Subject: {text}"
    charset: str | email.charset.Charset = QP_UTF8 if rng.random() < 0.4 else "utf-8"
    encoded = email.header.Header(text, charset, header_name="Subject").encode(linesep="\r\n")
    return f"Subject: {encoded}"


def make_message(rng: random.Random, index: int, sent: datetime) -> bytes:
    """One probation-style message as raw bytes (CRLF line ends)."""
    sender = f"om{rng.randint(1, 400)}@{rng.choice(SENDER_DOMAINS)}"
    recipients = [
        f"{rng.choice(('recalls', 'duty', 'spo', 'admin'))}{rng.randint(1, 50)}"
        f"@{rng.choice(RECIPIENT_DOMAINS)}"
        for _ in range(rng.choices((1, 2, 3), weights=(80, 15, 5))[0])
    ]
    headers = [
        f"Return-Path: <{sender}>",
        f"Received: from mail.{sender.partition('@')[2]} by mx.probation.example; "
        f"{format_datetime(sent)}",
        f"From: Offender Manager <{sender}>",
        f"To: {', '.join(recipients)}",
        _subject_header(rng),
        f"Date: {format_datetime(sent)}",
        f"Message-ID: <{rng.getrandbits(64):016x}.{index}@{sender.partition('@')[2]}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    if rng.random() < 0.2:
        headers.append(f"Cc: Senior Probation Officer <spo{rng.randint(1, 20)}@nps.cjsm.net>")
    if rng.random() < 0.15:
        headers.append("Importance: High")
    if rng.random() < 0.1:
        headers.append("X-Priority: 1 (Highest)")
    if rng.random() < 0.3:
        headers.append(f"X-Case-Reference: {rng.randint(100000, 999999)}")
    body = "\r\n".join(rng.choice(BODY_LINES) for _ in range(rng.randint(3, 40)))
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode("utf-8")


def deliver(dovecot: PrivateDovecot, user: str, rng: random.Random, count: int, start: int) -> None:
    """Write ``count`` messages into the user's ``Maildir/new`` (arrivals over the last hours)."""
    now = datetime.now(UTC)
    for index in range(start, start + count):
        arrived = now - timedelta(seconds=rng.randint(60, 6 * 3600))
        raw = make_message(rng, index, arrived - timedelta(seconds=rng.randint(1, 300)))
        dovecot.deliver(user, raw, FOLDER, received=arrived)


# --------------------------------------------------------------------------------------------
# The "person" and the baseline: stdlib imaplib.
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def person(dovecot: PrivateDovecot, user: str, password: str) -> Iterator[imaplib.IMAP4]:
    """A stdlib IMAP session logged in as ``user`` (plain IMAP on loopback)."""
    client = imaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=120)
    try:
        client.login(user, password)
        yield client
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def mark_seen(
    dovecot: PrivateDovecot, user: str, password: str, rng: random.Random, share: float
) -> tuple[int, int]:
    r"""Mark a random ``share`` of the INBOX ``\Seen``; return (messages, unseen) as searched."""
    with person(dovecot, user, password) as client:
        typ, data = client.select(FOLDER)
        check(typ == "OK", f"SELECT {FOLDER} as {user}: {data!r}")
        typ, data = client.uid("SEARCH", "ALL")
        uids = [int(word) for word in (data[0] or b"").split()]
        chosen = sorted(rng.sample(uids, round(len(uids) * share)))
        for offset in range(0, len(chosen), SEEN_BATCH):
            batch = format_sequence_set(chosen[offset : offset + SEEN_BATCH])
            typ, data = client.uid("STORE", batch, "+FLAGS.SILENT", "(\\Seen)")
            check(typ == "OK", f"UID STORE \\Seen: {data!r}")
        typ, data = client.uid("SEARCH", "UNSEEN UNDELETED")
        unseen = len((data[0] or b"").split())
    check(unseen == len(uids) - len(chosen), f"{unseen} unseen after marking {len(chosen)}")
    return len(uids), unseen


def stdlib_fetch(dovecot: PrivateDovecot, user: str, password: str, batch: int) -> float:
    """Seconds for one stdlib session to fetch every message's header fields (0: one FETCH).

    Connect, LOGIN, EXAMINE, the FETCHes by sequence number, LOGOUT: what a probe does too.
    Checks that one header block came back per message.
    """
    t0 = time.perf_counter()
    blocks = exists = 0
    with person(dovecot, user, password) as client:
        typ, selected = client.select(FOLDER, readonly=True)
        check(typ == "OK", f"EXAMINE {FOLDER}: {selected!r}")
        exists = int(selected[0] or b"0")
        step = batch or exists
        for low in range(1, exists + 1, step):
            high = min(low + step - 1, exists)
            typ, fetched = client.fetch(f"{low}:{high}", STDLIB_ITEMS)
            if typ != "OK":  # (not check(): its message would be built, str(fetched), every time)
                raise BenchError(f"FETCH {low}:{high}: {str(fetched)[:200]}")
            blocks += sum(1 for item in fetched if isinstance(item, tuple))
    elapsed = time.perf_counter() - t0
    check(blocks == exists, f"stdlib imaplib got {blocks} header blocks for {exists} messages")
    return elapsed


def uidnext(dovecot: PrivateDovecot, user: str, password: str) -> int:
    """The INBOX's UIDNEXT: every message delivered from now on gets a UID at least this."""
    with person(dovecot, user, password) as client:
        typ, data = client.status(FOLDER, "(UIDNEXT)")
    check(typ == "OK" and b"UIDNEXT " in (data[0] or b""), f"STATUS UIDNEXT: {data!r}")
    return int((data[0] or b"").split(b"UIDNEXT ")[1].split(b")")[0])


def settle(dovecot: PrivateDovecot, user: str, password: str, read_from: int | None) -> None:
    r"""A person opens the INBOX read-write (Dovecot moves ``new/`` to ``cur/``).

    With ``read_from``, they also mark every message from that UID on ``\Seen``.
    """
    with person(dovecot, user, password) as client:
        typ, data = client.select(FOLDER)
        check(typ == "OK", f"SELECT {FOLDER}: {data!r}")
        if read_from is not None:
            typ, data = client.uid("STORE", f"{read_from}:*", "+FLAGS.SILENT", "(\\Seen)")
            check(typ == "OK", f"UID STORE \\Seen: {data!r}")


def stdlib_added_poll(
    dovecot: PrivateDovecot, user: str, password: str, modseq: int, added: int, items: str
) -> float:
    """Seconds for stdlib imaplib to do what a poll after ``added`` new messages does.

    Connect, LOGIN, STATUS, EXAMINE, ``UID SEARCH MODSEQ m`` (what changed since the last
    sync's HIGHESTMODSEQ ``modseq``), ``UID SEARCH MODSEQ m UNSEEN UNDELETED`` (which of
    those are unread), ``UID FETCH`` of those with mailwatch's own FETCH items, LOGOUT: the
    same commands as mailwatch's poll, on ``added`` messages Dovecot has not indexed yet.
    """
    t0 = time.perf_counter()
    blocks = 0
    since = f"MODSEQ {modseq + 1}"
    with person(dovecot, user, password) as client:
        typ, data = client.status(FOLDER, "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)")
        check(typ == "OK", f"STATUS: {data!r}")
        typ, data = client.select(FOLDER, readonly=True)
        check(typ == "OK", f"EXAMINE {FOLDER}: {data!r}")
        typ, changed = client.uid("SEARCH", since)
        check(typ == "OK", f"UID SEARCH {since}: {changed!r}")
        typ, found = client.uid("SEARCH", f"{since} UNSEEN UNDELETED")
        check(typ == "OK", f"UID SEARCH {since} UNSEEN UNDELETED: {found!r}")
        new = parse_search([b"* SEARCH " + (found[0] or b""), b"OK"])
        check(len(new) == added, f"stdlib UID SEARCH found {len(new)} new, expected {added}")
        typ, fetched = client.uid("FETCH", format_sequence_set(new), items)
        if typ != "OK":  # (not check(): see stdlib_fetch)
            raise BenchError(f"UID FETCH: {str(fetched)[:200]}")
        blocks = sum(1 for item in fetched if isinstance(item, tuple))
    elapsed = time.perf_counter() - t0
    check(blocks == added, f"stdlib UID FETCH got {blocks} header blocks for {added} messages")
    return elapsed


def highestmodseq(dovecot: PrivateDovecot, user: str, password: str) -> int:
    """The INBOX's HIGHESTMODSEQ (what the last sync saw, when called right after one)."""
    with person(dovecot, user, password) as client:
        typ, data = client.status(FOLDER, "(HIGHESTMODSEQ)")
    check(typ == "OK" and b"HIGHESTMODSEQ " in (data[0] or b""), f"STATUS: {data!r}")
    return int((data[0] or b"").split(b"HIGHESTMODSEQ ")[1].split(b")")[0])


# --------------------------------------------------------------------------------------------
# Measurements.
# --------------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """One user's INBOX and what is known about it."""

    dovecot: PrivateDovecot
    user: str
    password: str
    messages: int = 0
    unseen: int = 0
    decode_process_from: int | None = DECODE_PROCESS_FROM

    def source(self, fetch_batch: int) -> ImapSource:
        """A brand-new ImapSource on this INBOX (plain IMAP on loopback: nothing cached)."""
        return ImapSource(
            "bench", host="127.0.0.1", port=self.dovecot.imap_port, security="plain",
            user=self.user, password=self.password, folders=(FOLDER,), timeout=120.0,
            fetch_batch=fetch_batch, decode_process_from=self.decode_process_from,
        )  # fmt: skip


@dataclass
class Probe:
    """One timed probe."""

    seconds: float
    cpu: float
    observation: Observation
    child_cpu: float = 0.0
    """CPU time of the child processes the probe reaped (its decoding process)."""


def spare_ready() -> float:
    """Have the spare decoding process ready, as ``mailwatch run`` has one from start-up.

    mailwatch starts it when an IMAP source is built (and again after each sync that used
    one); it imports the decoders in the background (~60-90 ms of CPU). Waiting here keeps
    that start-up out of every timed measurement. Returns the CPU it used so far, which
    the first sync's reaped-children CPU will include (subtracted there).
    """
    prestart()
    check(helper_spare.wait_ready(SPARE_READY), f"no spare decoder ready in {SPARE_READY:g}s")
    pid = helper_spare.pid()
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(value) for value in stat[11:13]) / _TICK


def children_cpu() -> float:
    """User and system CPU time of this process's reaped children so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


_TICK = os.sysconf("SC_CLK_TCK")
SERVER_SETTLE = 0.05
"""Seconds given to Dovecot's master to reap a session's process before its CPU is read."""


def server_cpu(dovecot: PrivateDovecot) -> float:
    """CPU seconds the Dovecot instance used so far (``/proc``, in clock ticks).

    Its master, every live process under it, and every session process it reaped.
    """
    try:
        master = int((dovecot.base_dir / "master.pid").read_text().strip())
    except (OSError, ValueError) as exc:
        raise BenchError(f"Dovecot master pid: {exc}") from exc
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    ticks, todo = 0, [master]
    while todo:  # the master and its descendants: utime, stime, cutime, cstime
        pid = todo.pop()
        if pid in stats:
            ticks += sum(int(value) for value in stats[pid][11:15])
            todo.extend(children.get(pid, ()))
    return ticks / _TICK


async def probe(source: ImapSource, mailbox: Mailbox, read: int, what: str) -> Probe:
    """Time one probe; check it saw every unseen message and read exactly ``read`` headers."""
    t0, cpu0, child0 = time.perf_counter(), time.process_time(), children_cpu()
    try:
        observation = await source.probe()
    except SourceError as exc:
        raise BenchError(f"{what}: probe failed: {exc}") from exc
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    child_cpu = children_cpu() - child0
    got = (len(observation.messages), observation.headers_read, observation.malformed)
    check(
        got == (mailbox.unseen, read, 0),
        f"{what}: saw/read/malformed {got}, expected {(mailbox.unseen, read, 0)}",
    )
    return Probe(elapsed, cpu, observation, child_cpu)


async def unchanged_poll(source: ImapSource, mailbox: Mailbox, what: str) -> Probe:
    """A probe of an unchanged INBOX: it must answer from STATUS alone (state kept as is)."""
    before = source.state.get(FOLDER)
    result = await probe(source, mailbox, 0, what)
    check(
        before is not None and source.state.get(FOLDER) is before,
        f"{what}: the folder was synced again (STATUS differed from the last sync)",
    )
    return result


@dataclass
class Results:
    """Every sample, by measurement name."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    stdlib_batches: list[int] = field(default_factory=list)
    """The stdlib batch sizes measured (0: one FETCH of everything)."""
    stdlib_batch: int = 0
    """The stdlib batch size with the lowest median (0: one FETCH of everything)."""

    def add(self, name: str, seconds: float) -> None:
        """Record one sample."""
        self.samples.setdefault(name, []).append(seconds)

    def median(self, name: str) -> float:
        """Median of a measurement's samples."""
        return statistics.median(self.samples[name])


def _batch_key(batch: int) -> str:
    return f"stdlib_{batch or 'all'}"


async def add_round(
    results: Results,
    suffix: str,
    box: Mailbox,
    source: ImapSource,
    added: int,
    rng: random.Random,
    start: int,
) -> None:
    """One +K round on ``box``: stdlib on K fresh messages, then mailwatch on K others.

    Both start from the same state: a mailbox whose ``new/`` holds only the K messages just
    delivered (a person's read-write SELECT moved everything else to ``cur/``), which Dovecot
    has not indexed yet. The stdlib's K are then marked read, so mailwatch never fetches them.
    """
    dovecot, user, password = box.dovecot, box.user, box.password
    settle(dovecot, user, password, None)
    await probe(source, box, 0, "settling poll")  # untimed: absorbs whatever SELECT changed
    since = uidnext(dovecot, user, password)
    modseq = highestmodseq(dovecot, user, password)
    deliver(dovecot, user, rng, added, start=start)
    seconds = stdlib_added_poll(dovecot, user, password, modseq, added, source.fetch_items)
    results.add(f"stdlib_added{suffix}", seconds)
    settle(dovecot, user, password, since)  # the stdlib's K are read; new/ is empty again
    box.messages += added
    await probe(source, box, 0, "settling poll")

    deliver(dovecot, user, rng, added, start=start + added)
    box.messages += added
    box.unseen += added
    with_new = await probe(source, box, added, f"poll after +{added}")
    same = await unchanged_poll(source, box, f"unchanged poll after +{added}")
    results.add(f"poll_added{suffix}", with_new.seconds)
    results.add(f"poll_added{suffix}_cpu", with_new.cpu)
    results.add(f"added_cost{suffix}", with_new.seconds - same.seconds)
    results.add(f"added_cost{suffix}_cpu", with_new.cpu - same.cpu)


async def measure(
    large: Mailbox, small: Mailbox, args: argparse.Namespace, rng: random.Random
) -> Results:
    """Run every measurement ``args.runs`` times; the large mailbox grows by K each +K round."""
    results = Results()
    runs, added, fetch_batch = args.runs, args.added, args.fetch_batch
    batch_sizes = [*sorted({b for b in STDLIB_BATCHES if 0 < b < large.messages}), 0]
    results.stdlib_batches = batch_sizes

    # Untimed warm-up: Dovecot moves new/ to cur/ and caches the header fields it was asked
    # for, so that every timed fetch, stdlib or mailwatch, finds the same warm server.
    for box in (large, small):
        stdlib_fetch(box.dovecot, box.user, box.password, 0)
        await probe(box.source(fetch_batch), box, box.unseen, f"warm-up {box.user}")

    large_source = small_source = None
    for run in range(1, runs + 1):
        spare_cpu = spare_ready()
        for batch in batch_sizes:
            served = server_cpu(large.dovecot)
            seconds = stdlib_fetch(large.dovecot, large.user, large.password, batch)
            results.add(_batch_key(batch), seconds)
            await asyncio.sleep(SERVER_SETTLE)  # (untimed) the session's process is reaped
            results.add(f"{_batch_key(batch)}_server_cpu", server_cpu(large.dovecot) - served)
        clear_caches()  # as in a new process: no address parsed yet
        large_source = large.source(fetch_batch)  # brand-new: nothing cached
        served = server_cpu(large.dovecot)
        first = await probe(large_source, large, large.unseen, "first sync")
        await asyncio.sleep(SERVER_SETTLE)
        results.add("first_sync_server_cpu", server_cpu(large.dovecot) - served)
        results.add("first_sync", first.seconds)
        results.add("first_sync_cpu", first.cpu)
        results.add("first_sync_child_cpu", first.child_cpu - spare_cpu)
        spare_ready()  # the sync started the next spare: not while anything is timed
        clear_caches()
        small_source = small.source(fetch_batch)
        first_small = await probe(small_source, small, small.unseen, "first sync (small)")
        results.add("first_sync_small", first_small.seconds)
        results.add("first_sync_small_cpu", first_small.cpu)
        stdlib = ", ".join(
            f"{b or 'all'} {results.samples[_batch_key(b)][-1]:.3f}s" for b in batch_sizes
        )
        print(
            f"  run {run}/{runs}: stdlib imaplib by batch [{stdlib}], "
            f"mailwatch first sync {first.seconds:.3f}s (small: {first_small.seconds:.3f}s)",
            flush=True,
        )
    if large_source is None or small_source is None:
        raise BenchError("no runs")
    medians = {b: results.median(_batch_key(b)) for b in batch_sizes}
    results.stdlib_batch = min(medians, key=lambda b: medians[b])
    results.samples["stdlib"] = results.samples[_batch_key(results.stdlib_batch)]
    results.samples["stdlib_server_cpu"] = results.samples[
        f"{_batch_key(results.stdlib_batch)}_server_cpu"
    ]

    spare_ready()
    for _ in range(runs):  # interleaved, so that a busy moment hits both sizes alike
        polled = await unchanged_poll(large_source, large, "unchanged poll")
        results.add("poll", polled.seconds)
        results.add("poll_cpu", polled.cpu)
        polled = await unchanged_poll(small_source, small, "unchanged poll (small)")
        results.add("poll_small", polled.seconds)
        results.add("poll_small_cpu", polled.cpu)
    print(
        f"  unchanged polls: {', '.join(f'{s * 1000:.1f}' for s in results.samples['poll'])} ms"
        f" (small: {', '.join(f'{s * 1000:.1f}' for s in results.samples['poll_small'])} ms)",
        flush=True,
    )

    sources = {"": (large, large_source), "_small": (small, small_source)}
    for round_ in range(runs if added > 0 else 0):
        for suffix, (box, source) in sources.items():
            await add_round(results, suffix, box, source, added, rng, start=(round_ + 1) * 10**6)
    if added > 0:
        print(
            f"  polls after +{added}: "
            f"{', '.join(f'{s * 1000:.1f}' for s in results.samples['poll_added'])} ms "
            f"(small: {', '.join(f'{s * 1000:.1f}' for s in results.samples['poll_added_small'])}"
            f" ms; stdlib: "
            f"{', '.join(f'{s * 1000:.1f}' for s in results.samples['stdlib_added'])} ms)",
            flush=True,
        )
    return results


# --------------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One measured value with its limit (``value <= limit``, or ``<`` when ``strict``)."""

    name: str
    value: float
    limit: float
    strict: bool = False
    unit: str = ""

    @property
    def passed(self) -> bool:
        """Whether the value is within its limit."""
        return self.value < self.limit if self.strict else self.value <= self.limit

    def line(self) -> str:
        """The target as printed."""
        verdict = "PASS" if self.passed else "FAIL"
        sign = "<" if self.strict else "<="
        value, limit = f"{self.value:.2f}{self.unit}", f"{self.limit:.1f}{self.unit}"
        return f"{self.name:<52} = {value:>8}   target {sign} {limit:<6}  {verdict}"


def targets_of(args: argparse.Namespace, results: Results) -> list[Target]:
    """The issue's targets, from the medians."""
    med = results.median
    n, s = args.messages, args.small
    targets = [
        Target("first_sync / stdlib_imaplib", med("first_sync") / med("stdlib"), FIRST_SYNC_TARGET),
        Target(f"unchanged poll at N={n}", med("poll") * 1000, POLL_LIMIT_MS, True, " ms"),
        Target(f"unchanged poll N={n} / S={s}", med("poll") / med("poll_small"), POLL_SIZE_TARGET),
    ]
    if results.samples.get("added_cost"):
        k = args.added
        targets += [
            Target(
                f"poll after +{k} / stdlib same commands, N={n}",
                med("poll_added") / med("stdlib_added"),
                ADDED_VS_STDLIB_TARGET,
            ),
            Target(
                f"cpu of poll after +{k}, N={n} / S={s}",
                med("poll_added_cpu") / med("poll_added_small_cpu"),
                ADDED_CPU_SIZE_TARGET,
            ),
        ]
    return targets


def cpu_floor(results: Results) -> float:
    """Seconds a first sync of N needs at least: every process's CPU spread over every CPU."""
    med = results.median
    used = med("first_sync_cpu") + med("first_sync_child_cpu") + med("first_sync_server_cpu")
    return used / (os.cpu_count() or 1)


def report(
    args: argparse.Namespace,
    results: Results,
    environment: dict[str, Any],
    sizes: dict[str, int],
) -> bool:
    """Print the table and the targets; write ``--json``; returns whether every target passed."""
    med = results.median
    fetched = sizes["unseen"]
    targets = targets_of(args, results)
    chosen = results.stdlib_batch or "all"
    rows: list[tuple[str, str]] = [
        (
            _batch_key(b),
            f"{'*' if b == results.stdlib_batch else ' '} stdlib imaplib, "
            + (f"batches of {b}" if b else "one FETCH of all"),
        )
        for b in results.stdlib_batches
    ]
    small_unread, k = sizes["small_unseen"], args.added
    rows += [
        ("first_sync", f"mailwatch first sync, N={args.messages} ({fetched} unread)"),
        ("first_sync_small", f"mailwatch first sync, S={args.small} ({small_unread} unread)"),
        ("poll", f"mailwatch poll, unchanged, N={args.messages}"),
        ("poll_small", f"mailwatch poll, unchanged, S={args.small}"),
        ("stdlib_added", f"stdlib imaplib, same commands after +{k} new, N"),
        ("poll_added", f"mailwatch poll after +{k} new, N={args.messages}"),
        ("added_cost", f"  of which the {k} new (minus unchanged poll)"),
        ("stdlib_added_small", f"stdlib imaplib, same commands after +{k} new, S"),
        ("poll_added_small", f"mailwatch poll after +{k} new, S={args.small}"),
        ("added_cost_small", f"  of which the {k} new (minus unchanged poll)"),
    ]  # fmt: skip
    print()
    print(
        f"mailwatch IMAP sync benchmark: N={args.messages} messages ({fetched} unread), "
        f"S={args.small}, runs={args.runs}, K={args.added}, mailwatch fetch_batch="
        f"{args.fetch_batch}"
    )
    print(
        f"{environment['dovecot']}, Python {environment['python']}, {environment['cpus']} CPUs, "
        f"load average at start {environment['loadavg_at_start']}, "
        f"at end {[round(x, 2) for x in os.getloadavg()]}"
    )
    print()
    print(f"{'measurement':<52} {'median s':>9} {'min s':>8} {'max s':>8} {'cpu s':>7}")
    print("-" * 88)
    for key, label in rows:
        samples = results.samples.get(key)
        if not samples:
            continue
        cpu = f"{med(key + '_cpu'):7.3f}" if key + "_cpu" in results.samples else f"{'-':>7}"
        print(f"{label:<52} {med(key):>9.4f} {min(samples):>8.4f} {max(samples):>8.4f} {cpu}")
    print(f"(* the fastest stdlib batch size, {chosen}, is the baseline; cpu s: median CPU time")
    print(" of the mailwatch process, Dovecot's excluded)")
    print(
        f"decoding process (decode_process_from={large_box_threshold(args)}): median CPU "
        f"{med('first_sync_child_cpu'):.3f}s during a first sync of N, besides the cpu s above"
    )
    floor = cpu_floor(results)
    print(
        f"Dovecot's CPU (its clock ticks: 10 ms steps): median {med('first_sync_server_cpu'):.3f}s "
        f"during a first sync of N, {med('stdlib_server_cpu'):.3f}s during the stdlib baseline"
    )
    print(
        f"CPU floor of a first sync of N on this machine: (mailwatch + decoding process + "
        f"Dovecot CPU) / {os.cpu_count()} CPUs = {floor:.3f}s; first sync / floor = "
        f"{med('first_sync') / floor:.2f}; floor / stdlib = {floor / med('stdlib'):.2f} (the "
        "lowest ratio this much CPU allows)"
    )
    print()
    per_message_ms = med("first_sync") / fetched * 1000
    print(
        f"first sync per message: {per_message_ms:.4f} ms (stdlib imaplib: "
        f"{med('stdlib') / args.messages * 1000:.4f} ms)"
    )
    if results.samples.get("added_cost"):
        print(
            f"+{args.added} new messages cost {med('added_cost') * 1000:.1f} ms on a poll "
            f"(at first-sync cost per message: {args.added * per_message_ms:.1f} ms); "
            f"headers_read == {args.added} every time"
        )
        print(
            f"poll after +{args.added}: mailwatch / stdlib same commands = "
            f"{med('poll_added') / med('stdlib_added'):.2f} at N={args.messages}, "
            f"{med('poll_added_small') / med('stdlib_added_small'):.2f} at S={args.small}; "
            f"mailwatch at N / at S = {med('poll_added') / med('poll_added_small'):.2f}"
        )
    peak = environment.get("first_sync_own_peak")
    if peak:
        print(
            f"first sync in a fresh process: {peak['seconds']:.3f}s, "
            f"cpu {peak['cpu_seconds']:.3f}s, own peak RSS {peak['peak_rss_mib']:.0f} MiB "
            f"(RSS {peak['rss_before_mib']:.0f} MiB before, {peak['rss_after_mib']:.0f} MiB "
            "after, observation held); its decoding process: cpu "
            f"{peak['decoding_process_cpu_seconds']:.3f}s, peak RSS "
            f"{peak['decoding_process_peak_rss_mib']:.0f} MiB (shared pages counted)"
        )
    print()
    for target in targets:
        print(target.line())
    passed = all(t.passed for t in targets)
    if args.json:
        document = {
            "messages": args.messages,
            "unread": fetched,
            "small": args.small,
            "small_unread": sizes["small_unseen"],
            "runs": args.runs,
            "added": args.added,
            "fetch_batch": args.fetch_batch,
            "stdlib_batch": results.stdlib_batch or "all",
            "environment": environment,
            "samples_seconds": results.samples,
            "medians_seconds": {k: med(k) for k in results.samples},
            "cpu_floor_seconds": cpu_floor(results),
            "targets": [
                {"name": t.name, "value": t.value, "limit": t.limit, "passed": t.passed}
                for t in targets
            ],
            "passed": passed,
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nresults written to {args.json}")
    return passed


def environment_facts() -> dict[str, Any]:
    """What the numbers depend on."""
    version = subprocess.run(
        ["dovecot", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "dovecot": f"Dovecot {version}" if version else "Dovecot (version unknown)",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------------------------


def large_box_threshold(args: argparse.Namespace) -> int | None:
    """The ImapSource's ``decode_process_from`` as given (0: never)."""
    return args.decode_process_from or None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Benchmark mailwatch's IMAP sync against stdlib imaplib on a private Dovecot."
    )
    parser.add_argument("--messages", type=int, default=10_000, help="large INBOX size N (10000)")
    parser.add_argument("--small", type=int, default=1_000, help="small INBOX size S (1000)")
    parser.add_argument("--runs", type=int, default=5, help="samples per measurement (5)")
    parser.add_argument(
        "--added", type=int, default=100, help="K new messages for the incremental poll (100)"
    )
    parser.add_argument(
        "--seen", type=float, default=0.1, help="share of messages marked \\Seen (0.1)"
    )
    parser.add_argument(
        "--fetch-batch",
        type=int,
        default=200,
        help=f"mailwatch's fetch_batch (ImapSource default 200; 1..{MAX_UIDS_PER_FETCH})",
    )
    parser.add_argument(
        "--decode-process-from",
        type=int,
        default=DECODE_PROCESS_FROM,
        help="new messages from which a first sync decodes in a second process "
        f"(ImapSource default {DECODE_PROCESS_FROM}; 0: never, all in-process)",
    )
    parser.add_argument("--seed", type=int, default=20140611, help="message generator seed")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="build the Dovecot and its mailboxes in DIR and keep them; a later run with the "
        "same --messages/--small/--seen/--seed reuses them (e.g. /var/tmp/mwbench-imap-100k)",
    )
    parser.add_argument(
        "--rss",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run one first sync in a fresh process and report its own peak RSS (on)",
    )
    args = parser.parse_args(argv)
    if args.messages < 2 or args.small < 1 or args.small >= args.messages:
        parser.error("need 1 <= --small < --messages")
    if args.runs < 1 or args.added < 0 or not 0 <= args.seen < 1:
        parser.error("--runs must be >= 1, --added >= 0, 0 <= --seen < 1")
    if not 0 < args.fetch_batch <= MAX_UIDS_PER_FETCH:
        parser.error(f"--fetch-batch must be 1..{MAX_UIDS_PER_FETCH}")
    return args


def _trim(box: Mailbox, base_uidnext: int) -> None:
    """Expunge what earlier runs added to a kept mailbox (UIDs from ``base_uidnext`` on)."""
    with person(box.dovecot, box.user, box.password) as client:
        typ, data = client.select(FOLDER)
        check(typ == "OK", f"SELECT {FOLDER}: {data!r}")
        typ, data = client.uid("SEARCH", f"UID {base_uidnext}:*")
        added = [int(word) for word in (data[0] or b"").split() if int(word) >= base_uidnext]
        for offset in range(0, len(added), SEEN_BATCH):
            batch = format_sequence_set(added[offset : offset + SEEN_BATCH])
            typ, data = client.uid("STORE", batch, "+FLAGS.SILENT", "(\\Deleted)")
            check(typ == "OK", f"UID STORE \\Deleted: {data!r}")
        if added:
            client.expunge()


def _count(box: Mailbox) -> None:
    """Set ``box.messages`` and ``box.unseen`` from the server."""
    with person(box.dovecot, box.user, box.password) as client:
        typ, data = client.select(FOLDER, readonly=True)
        check(typ == "OK", f"EXAMINE {FOLDER}: {data!r}")
        box.messages = int(data[0] or b"0")
        typ, data = client.uid("SEARCH", "UNSEEN UNDELETED")
        box.unseen = len((data[0] or b"").split())


def _build_key(args: argparse.Namespace) -> dict[str, Any]:
    return {"messages": args.messages, "small": args.small, "seen": args.seen, "seed": args.seed}


def prepare(
    args: argparse.Namespace, root: Path, rng: random.Random
) -> tuple[PrivateDovecot, Mailbox, Mailbox, float | None]:
    """The Dovecot and both mailboxes under ``root``: built, or reused from ``--keep``.

    A kept directory holds ``bench-mailboxes.json`` (what was built, with each INBOX's
    UIDNEXT after the build): a later run with the same sizes, share and seed reuses it
    (new ports, same mail), after expunging what earlier runs added. Returns the build time
    (``None`` when reused).
    """
    meta_path = root / "bench-mailboxes.json"
    meta: dict[str, Any] | None = None
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        check(
            meta.get("build") == _build_key(args),
            f"{root} holds mailboxes built with {meta.get('build')}, not {_build_key(args)}",
        )
    elif root.exists() and any(root.iterdir()):
        raise BenchError(f"{root} is not empty and holds no bench-mailboxes.json")
    password = f"{rng.getrandbits(64):016x}"
    if meta is not None:
        password = meta["password"]
    users = None if meta is not None else {LARGE_USER: password, SMALL_USER: password}
    root.mkdir(parents=True, exist_ok=True)
    dovecot = PrivateDovecot.create(root, users=users)  # new ports and certificates
    threshold = args.decode_process_from or None
    large = Mailbox(dovecot, LARGE_USER, password, decode_process_from=threshold)
    small = Mailbox(dovecot, SMALL_USER, password, decode_process_from=threshold)
    print(f"starting Dovecot in {root}", flush=True)
    dovecot.start()
    try:
        built = _fill(args, meta, meta_path, large, small, rng)
    except BaseException:
        dovecot.stop()
        raise
    return dovecot, large, small, built


def _fill(
    args: argparse.Namespace,
    meta: dict[str, Any] | None,
    meta_path: Path,
    large: Mailbox,
    small: Mailbox,
    rng: random.Random,
) -> float | None:
    """Fill both mailboxes (the build time), or trim kept ones back to their build (None)."""
    dovecot, password = large.dovecot, large.password
    if meta is not None:
        for box in (large, small):
            _trim(box, int(meta["uidnext"][box.user]))
            _count(box)
            check(
                [box.messages, box.unseen] == meta["counts"][box.user],
                f"{box.user}: {box.messages}/{box.unseen} after trimming, "
                f"built {meta['counts'][box.user]}",
            )
        return None
    t0 = time.perf_counter()
    for box, count in ((large, args.messages), (small, args.small)):
        deliver(dovecot, box.user, rng, count, start=0)
        box.messages, box.unseen = mark_seen(dovecot, box.user, password, rng, args.seen)
        check(box.messages == count, f"{box.user}: {box.messages} messages, not {count}")
    built = time.perf_counter() - t0
    document = {
        "build": _build_key(args),
        "password": password,
        "uidnext": {b.user: uidnext(dovecot, b.user, password) for b in (large, small)},
        "counts": {b.user: [b.messages, b.unseen] for b in (large, small)},
    }
    meta_path.write_text(json.dumps(document, indent=2) + "\n")
    return built


CHILD_FLAG = "--first-sync-child"


def own_peak(box: Mailbox) -> dict[str, float]:
    """One first sync of ``box`` in a fresh Python process: its own peak RSS (VmHWM).

    ``exec`` gives the child a new address space, so its VmHWM is its own, not this large
    benchmark process's (``ru_maxrss`` of a forked child would not be).
    """
    env = {**os.environ, "MWBENCH_PASSWORD": box.password}
    command = [
        sys.executable, __file__, CHILD_FLAG, str(box.dovecot.imap_port), box.user,
        str(box.decode_process_from or 0),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    check(done.returncode == 0, f"first sync child failed: {done.stderr[-2000:]}")
    facts: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    check(facts["messages"] == box.unseen, f"child saw {facts['messages']}, not {box.unseen}")
    return facts


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field_name} in /proc/self/status")


async def _probe_into(source: ImapSource, out: list[Observation]) -> None:
    """Probe, keeping the result here: a coroutine handed to ``asyncio.run`` returns nothing.

    On Python 3.11, ``asyncio.run``'s clean-up reprs the main task's result, twice
    (CPython issue 112559): at 90,000 messages that costs seconds and hundreds of MiB.
    """
    out.append(await source.probe())


def first_sync_child(port: int, user: str, threshold: int) -> int:
    """The child of :func:`own_peak`: one probe; prints RSS before, peak, times as JSON.

    (Its own peak RSS is this process's; a decoding process it forks has its own.)
    """
    prestart()  # as mailwatch's builder of IMAP sources does, at once (not waited for)
    source = ImapSource(
        "bench", host="127.0.0.1", port=port, security="plain", user=user,
        password=os.environ["MWBENCH_PASSWORD"], folders=(FOLDER,), timeout=300.0,
        decode_process_from=threshold or None,
    )  # fmt: skip
    before = _status_kib("VmRSS")
    t0, cpu0, child0 = time.perf_counter(), time.process_time(), children_cpu()
    observations: list[Observation] = []
    asyncio.run(_probe_into(source, observations))
    observation = observations[0]
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    facts = {
        "messages": len(observation.messages),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "decoding_process_cpu_seconds": round(children_cpu() - child0, 3),
        "decoding_process_peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
        "rss_before_mib": round(before / 1024, 1),
        "peak_rss_mib": round(_status_kib("VmHWM") / 1024, 1),
        "rss_after_mib": round(_status_kib("VmRSS") / 1024, 1),
    }
    print(json.dumps(facts))
    return 0


def run(args: argparse.Namespace) -> int:
    """Build (or reuse) the mailboxes, measure, report; the exit status."""
    for tool in ("dovecot", "doveadm", "openssl"):
        check(shutil.which(tool) is not None, f"{tool} not found (is Dovecot installed?)")
    check(os.geteuid() == 0, "run as root: the private Dovecot instance needs it")
    rng = random.Random(args.seed)
    environment = environment_facts()
    with contextlib.ExitStack() as stack:
        if args.keep:
            root = Path(args.keep).resolve()
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mwbench-imap-")))
        dovecot, large, small, built = prepare(args, root, rng)
        stack.callback(dovecot.stop)
        environment["mailbox_build_seconds"] = None if built is None else round(built, 1)
        print(
            f"mailboxes {'ready' if built is None else 'built'}: {large.messages} messages "
            f"({large.unseen} unread) and {small.messages} ({small.unseen} unread)"
            + ("" if built is None else f" in {built:.1f}s"),
            flush=True,
        )
        sizes = {"unseen": large.unseen, "small_unseen": small.unseen}
        if args.rss:
            environment["first_sync_own_peak"] = own_peak(large)
            print(f"first sync in a process of its own: {environment['first_sync_own_peak']}")
        print("measuring", flush=True)
        results = asyncio.run(measure(large, small, args, rng))
    return 0 if report(args, results, environment, sizes) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 all targets met, 1 a target failed, 2 the benchmark could not run."""
    given = sys.argv[1:] if argv is None else list(argv)
    if given[:1] == [CHILD_FLAG]:
        return first_sync_child(int(given[1]), given[2], int(given[3]))
    args = parse_args(argv)
    try:
        return run(args)
    except (BenchError, DovecotCommandError, imaplib.IMAP4.error, OSError) as exc:
        print(f"benchmark error: {exc}", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
