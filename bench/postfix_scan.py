"""Benchmark: mailwatch's Postfix scan against the standard tools, on a large deferred queue.

Builds a private Postfix instance (:class:`mailwatch.sandbox.postfix.PrivatePostfix`) whose
relay host is a closed loopback port, fills its deferred queue with N varied probation-style
messages, and then times, on that same queue and in the same run:

* baseline A: ``postqueue -c ETC -j > /dev/null``;
* baseline B: one batched header read, ``postcat -c ETC -h`` over every deferred queue file;
* mailwatch's first scan (fresh store, fresh source: lists, reads all headers, classifies,
  stores);
* mailwatch's rescan of the unchanged queue (must read no headers and write no message rows);
* mailwatch's rescan after K new messages arrive (must read exactly K headers).

Targets: ``first_scan / (A + B) <= 2.0`` and ``rescan / A <= 1.5``; the exit status is 1 when a
target fails, 2 when the benchmark itself could not run or an invariant did not hold. Run as
root (Postfix is started privately): ``.venv/bin/python bench/postfix_scan.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.charset
import email.header
import email.policy
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from mailwatch.app.scanner import Scanner, ScanOutcome
from mailwatch.config.settings import load
from mailwatch.sandbox.postfix import PostfixCommandError, PrivatePostfix, free_port
from mailwatch.sources.postfix import PostfixSource
from mailwatch.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
import footprint  # bench/footprint.py, next to this script
import scale_rows  # qshape, the exporter, the API, run RSS over 10 scans

FIRST_SCAN_TARGET = 2.0  # first_scan / (postqueue -j + batched postcat -h)
RESCAN_TARGET = 1.5  # rescan / postqueue -j
SOURCE_NAME = "bench"
SETTLE_PAUSE = 1.0  # s: let Postfix's delivery agents and logger go idle before timing
INJECT_BATCH = 250  # messages per SMTP connection (progress granularity, smtpd process reuse)
# Keep the queue still while we measure: no deferred-queue runs or retries for an hour.
QUIET_QUEUE = {
    "queue_run_delay": "3600s",
    "minimal_backoff_time": "3600s",
    "maximal_backoff_time": "7200s",
}


class BenchError(RuntimeError):
    """The benchmark could not run, or an invariant it checks did not hold."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`BenchError` unless ``condition`` (unlike ``assert``, survives ``-O``)."""
    if not condition:
        raise BenchError(message)


# --------------------------------------------------------------------------------------------
# Message generation: varied, realistic subjects so that classification does real work.
# --------------------------------------------------------------------------------------------

FORENAMES = (
    "John", "Sarah", "Mohammed", "Emma", "David", "Aisha", "Michael", "Chloe", "Daniel", "Priya",
    "James", "Olivia", "Kwame", "Hannah", "Thomas", "Fatima", "Liam", "Grace", "Ryan", "Megan",
    "Zoë", "Siân", "Seán", "Łukasz", "Renée", "François", "Jürgen", "Zoltán", "Bożena", "Ciarán",
)  # fmt: skip
SURNAMES = (
    "Smith", "Jones", "Khan", "Williams", "Taylor", "Brown", "Patel", "Evans", "Wilson", "Ahmed",
    "Thomas", "Roberts", "Walker", "Wright", "Robinson", "Hughes", "Okafor", "Nowak", "Kowalski",
    "Müller", "O\u2019Brien", "Ní Bhriain", "Gómez", "Brontë", "Østergaard",
)  # fmt: skip
COURTS = (
    "Westminster MC", "Highbury Corner MC", "Snaresbrook CC", "Manchester Crown Court",
    "Leeds MC", "Cardiff Crown Court", "Birmingham MC", "Bristol Crown Court", "Luton CC",
)  # fmt: skip
PRISONS = (
    "Pentonville", "Wandsworth", "Belmarsh", "Strangeways", "Durham", "Winchester", "Leeds",
    "Bristol", "Cardiff", "Styal", "Holloway",
)  # fmt: skip
TEAMS = ("Camden", "Islington", "Hackney", "Salford", "Leeds North", "Cardiff", "Luton")

# (weight, template). Placeholders: name, crn, pnc, date, court, prison, team, level, sep.
SUBJECTS: tuple[tuple[int, str], ...] = (
    # P1 emergency recall
    (5, "Emergency recall {sep} {name} {sep} CRN {crn}"),
    (2, "URGENT: recall of {name} ({crn}) {sep} immediate action required"),
    (1, "Indeterminate sentence recall {sep} {name} {sep} PNC {pnc}"),
    # P1 standard recall (Part A)
    (5, "Part A recall report {sep} {name} {sep} {crn}"),
    (3, "Request for recall {sep} {name} DOB {date}"),
    (1, "Recall dossier {crn} for PPCS {sep} {name}"),
    (1, "Standard recall {sep} {name} released from HMP {prison}"),
    # P1 recall notification
    (2, "Notice of Return to Custody {sep} {name} {sep} {pnc}"),
    (1, "Licence revoked: {name} ({pnc})"),
    # Outlook's message-recall feature: a lookalike that must not be a recall
    (2, "Recall: Part A recall report {sep} {name}"),
    (1, "Recall: team meeting moved to Thursday"),
    # P1 risk escalation and safeguarding
    (4, "Risk escalation {sep} {name} {sep} CRC to NPS {sep} {crn}"),
    (2, "RoSH increased to high {sep} {name} {crn}"),
    (2, "Child protection referral {sep} {name} {sep} {team}"),
    (1, "MASH referral {crn} {sep} safeguarding concern"),
    # MAPPA (level 3 is P1)
    (2, "MAPPA level 3 meeting minutes {sep} {name}"),
    (3, "MAPPA referral {sep} {name} ({crn})"),
    (1, "MAPPA meeting agenda for {date}"),
    # P2
    (4, "Breach of licence conditions {sep} {name} {sep} {crn}"),
    (3, "Case allocation: {name} sentenced at {court}"),
    (2, "Transfer of case {crn} from CRC to NPS"),
    (3, "Release notification {sep} {name} {sep} HMP {prison} {sep} {date}"),
    (1, "First appointment booked for {name}"),
    (6, "Court results {court} {date}"),
    (2, "Sentencing outcome {sep} {name} {sep} {court}"),
    # P3
    (3, "PSR request {sep} {name} {sep} {court}"),
    (1, "Pre-sentence report due {date} {sep} {name}"),
    (2, "Victim liaison update {sep} {name}"),
    # P4 general chatter, including lookalikes
    (6, "Team meeting Thursday {sep} agenda attached"),
    (3, "Training: managing risk and safeguarding awareness ({date})"),
    (3, "Annual leave cover {sep} {team} office"),
    (2, "Data breach awareness week"),
    (2, "Timesheets due Friday"),
    (2, "Printer on 3rd floor out of toner"),
    (2, "Staff survey results {sep} {team}"),
    (2, "Office move on {date}: what to pack"),
    (1, "Press release from custody reform programme"),
    (2, "Lunch?"),
    (2, "Supervision notes for {name} ({crn}) {sep} please review before {date}"),
)
MARKINGS: tuple[tuple[int, str], ...] = (
    (40, ""),
    (20, "OFFICIAL-SENSITIVE: "),
    (6, "OFFICIAL-SENSITIVE PERSONAL - "),
    (6, "[OFFICIAL-SENSITIVE] "),
    (3, "Official Sensitive - "),
    (12, "OFFICIAL: "),
    (4, "[OFFICIAL] "),
    (3, "(RESTRICTED) "),
    (3, "PROTECT - "),
    (3, "NOT PROTECTIVELY MARKED: "),
)
PREFIXES: tuple[tuple[int, str], ...] = (
    (70, ""),
    (12, "RE: "),
    (8, "FW: "),
    (3, "Re: Fwd: "),
    (2, "RE[2]: "),
    (5, "[CJSM] "),
)
SENDER_DOMAINS = ("probation.cjsm.net", "nps.cjsm.net", "crc-london.cjsm.net", "justice.gov.uk")
RECIPIENT_DOMAINS = (
    "ppcs.cjsm.net", "nps-london.probation.cjsm.net", "met.police.cjsm.net", "hmcts.cjsm.net",
    "mash.camden.gov.uk", "mappa.cjsm.net", "vlu.probation.cjsm.net",
)  # fmt: skip
BODY_LINES = (
    "Please find attached the documents for the above case.",
    "Could you confirm receipt and let me know if anything further is needed?",
    "The offender manager is available on the duty line until 17:00.",
    "This e-mail and any attachments are intended only for the addressee.",
    "Contact with the person on probation was made by telephone this morning.",
    "Licence conditions 3 and 7 have not been complied with since the last review.",
    "I have copied in the senior probation officer for information.",
    "Kind regards,",
)
ATTACHMENT_SHARE = 0.08  # messages that carry a document
ATTACHMENT_BYTES = (16 * 1024, 160 * 1024)
QP_UTF8 = email.charset.Charset("utf-8")
QP_UTF8.header_encoding = email.charset.QP
MESSAGE_PARSER = BytesParser(EmailMessage, policy=email.policy.compat32)


def _weighted(rng: random.Random, table: Sequence[tuple[int, str]]) -> str:
    return rng.choices([t for _, t in table], weights=[w for w, _ in table])[0]


def _subject_text(rng: random.Random) -> str:
    fills = {
        "name": f"{rng.choice(FORENAMES)} {rng.choice(SURNAMES)}",
        "crn": f"{rng.choice('ABCDEFGHJKLMNPRSTVWX')}{rng.randint(100000, 999999)}",
        "pnc": f"{rng.randint(1990, 2025)}/{rng.randint(1000000, 9999999)}{rng.choice('ABCDEFGH')}",
        "date": f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2024, 2026)}",
        "court": rng.choice(COURTS),
        "prison": rng.choice(PRISONS),
        "team": rng.choice(TEAMS),
        "sep": rng.choice(("-", "-", "-", "\u2013", "|", "/")),
    }
    core = _weighted(rng, SUBJECTS).format(**fills)
    return _weighted(rng, PREFIXES) + _weighted(rng, MARKINGS) + core


def _fold_ascii(name: str, value: str) -> str:
    """Fold an ASCII header at spaces so that lines stay under 78 characters."""
    words = value.split(" ")
    lines: list[str] = []
    current = f"{name}:"
    for word in words:
        if len(current) + 1 + len(word) > 76 and current != f"{name}:":
            lines.append(current)
            current = f" {word}"
        else:
            current = f"{current} {word}"
    lines.append(current)
    return "\r\n".join(lines)


def _subject_header(rng: random.Random, text: str) -> str:
    """The Subject line as sent: plain, folded, or RFC 2047 encoded words (B or Q, any charset)."""
    ascii_only = text.isascii()
    if ascii_only and rng.random() >= 0.06:
        return _fold_ascii("Subject", text)
    charset: str | email.charset.Charset = "utf-8"  # B encoding
    roll = rng.random()
    if roll < 0.35:
        charset = QP_UTF8
    elif roll < 0.55:
        try:
            text.encode("iso-8859-1")
            charset = "iso-8859-1"  # Q encoding
        except UnicodeEncodeError:
            pass
    encoded = email.header.Header(text, charset, header_name="Subject").encode(linesep="\r\n")
    return f"Subject: {encoded}"


def make_message(rng: random.Random, index: int, sent: datetime) -> EmailMessage:
    """One probation-style message, built as raw bytes so the wire form is exactly as chosen."""
    sender = f"om{rng.randint(1, 400)}@{rng.choice(SENDER_DOMAINS)}"
    recipients = [
        f"{rng.choice(('recalls', 'duty', 'spo', 'admin', 'team'))}{rng.randint(1, 50)}"
        f"@{rng.choice(RECIPIENT_DOMAINS)}"
        for _ in range(rng.choices((1, 2, 3), weights=(80, 15, 5))[0])
    ]
    headers = [
        f"From: Offender Manager <{sender}>",
        f"To: {', '.join(recipients)}",
        _subject_header(rng, _subject_text(rng)),
        f"Date: {format_datetime(sent)}",
        f"Message-ID: <{rng.getrandbits(64):016x}.{index}@{sender.partition('@')[2]}>",
        "MIME-Version: 1.0",
    ]
    if rng.random() < 0.15:
        headers.append("Importance: High")
    if rng.random() < 0.1:
        headers.append("X-Priority: 1 (Highest)")
    if rng.random() < 0.3:
        headers.append(f"X-Case-Reference: {rng.randint(100000, 999999)}")
    text = "\r\n".join(rng.choice(BODY_LINES) for _ in range(rng.randint(3, 40)))
    plain = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit"
    if rng.random() < ATTACHMENT_SHARE:  # a Part A / court document: base64 after the headers
        boundary = f"=_mw{rng.getrandbits(48):012x}"
        blob = base64.encodebytes(rng.randbytes(rng.randint(*ATTACHMENT_BYTES)))
        headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        body = (
            f"--{boundary}\r\n{plain}\r\n\r\n{text}\r\n--{boundary}\r\n"
            f'Content-Type: application/pdf; name="case-{index}.pdf"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
            + blob.decode("ascii").replace("\n", "\r\n")
            + f"--{boundary}--"
        )
    else:
        headers.append(plain)
        body = text
    raw = "\r\n".join(headers) + "\r\n\r\n" + body + "\r\n"
    message = MESSAGE_PARSER.parsebytes(raw.encode("utf-8"))
    if not isinstance(message, EmailMessage):  # the parser builds the class it was given
        raise BenchError(f"parser built a {type(message).__name__}")
    return message


def make_messages(rng: random.Random, count: int, start: int = 0) -> list[EmailMessage]:
    """``count`` messages, sent over the last few hours (Date headers only; arrival is now)."""
    now = datetime.now(UTC)
    return [
        make_message(rng, start + i, now - timedelta(seconds=rng.randint(0, 6 * 3600)))
        for i in range(count)
    ]


# --------------------------------------------------------------------------------------------
# The queue: build, settle, trim.
# --------------------------------------------------------------------------------------------


def wait_settled(instance: PrivatePostfix, expected: int | None, timeout: float) -> int:
    """Wait until every message (``expected`` of them, if given) sits in the deferred queue.

    Unlike ``PrivatePostfix.wait_for_queue`` this accepts an unknown count (a reused queue)
    and polls gently: one ``postqueue -j`` of a large queue costs a few hundred ms.
    """
    deadline = time.monotonic() + timeout
    while True:
        listing = instance.queue()
        queues = Counter(str(entry["queue_name"]) for entry in listing)
        settled = set(queues) <= {"deferred"} and (expected is None or len(listing) == expected)
        if settled:
            return len(listing)
        if time.monotonic() > deadline:
            raise BenchError(
                f"queue did not settle in {timeout:.0f}s: {dict(queues)} (want {expected} "
                f"deferred)\n{instance.log_tail()}"
            )
        time.sleep(0.5)


def inject_parallel(
    instance: PrivatePostfix, messages: list[EmailMessage], connections: int, quiet: bool = False
) -> float:
    """Submit ``messages`` over ``connections`` parallel SMTP clients; returns msg/s."""
    batches = [messages[i : i + INJECT_BATCH] for i in range(0, len(messages), INJECT_BATCH)]
    done = 0
    lock = threading.Lock()
    t0 = time.perf_counter()

    def send(batch: list[EmailMessage]) -> None:
        nonlocal done
        instance.inject(batch)
        with lock:
            done += len(batch)
            if not quiet and (done % 2000 < len(batch) or done == len(messages)):
                rate = done / (time.perf_counter() - t0)
                print(f"  injected {done}/{len(messages)} ({rate:.0f} msg/s)", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, connections)) as pool:
        for future in [pool.submit(send, batch) for batch in batches]:
            future.result()
    return len(messages) / max(time.perf_counter() - t0, 1e-9)


def delete_messages(instance: PrivatePostfix, queue_ids: Sequence[str]) -> None:
    """``postsuper -d -`` with the ids on stdin (one process for any number of ids)."""
    if not queue_ids:
        return
    subprocess.run(
        ["postsuper", "-c", str(instance.config_dir), "-d", "-"],
        input="\n".join(queue_ids) + "\n",
        text=True,
        capture_output=True,
        check=True,
        timeout=300,
    )


def quieten(instance: PrivatePostfix) -> None:
    """Stop Postfix from retrying deferred mail while we measure (config backdated, see notes)."""
    settings = [f"{name}={value}" for name, value in QUIET_QUEUE.items()]
    subprocess.run(
        ["postconf", "-c", str(instance.config_dir), "-e", *settings],
        check=True,
        capture_output=True,
        timeout=60,
    )
    past = time.time() - 60
    os.utime(instance.config_dir / "main.cf", (past, past))


def prepare_queue(
    instance: PrivatePostfix, rng: random.Random, count: int, connections: int
) -> tuple[int, float | None]:
    """Bring the (possibly reused) queue to exactly ``count`` deferred messages.

    Returns how many messages were injected and at what rate (``None`` if none were).
    """
    settle_timeout = 120 + count / 50
    present = wait_settled(instance, None, settle_timeout)
    if present > count:
        print(f"  queue holds {present} messages; deleting {present - count}", flush=True)
        delete_messages(instance, [str(e["queue_id"]) for e in instance.queue()[count:]])
        present = wait_settled(instance, count, settle_timeout)
    missing = count - present
    rate = None
    if missing > 0:
        print(f"  generating {missing} messages", flush=True)
        messages = make_messages(rng, missing, start=present)
        rate = inject_parallel(instance, messages, connections)
        print("  waiting for every message to reach the deferred queue", flush=True)
        wait_settled(instance, count, settle_timeout)
    return max(missing, 0), rate


def deferred_files(instance: PrivatePostfix) -> list[str]:
    """Paths of every deferred queue file (``deferred/<hash>/<queue id>``)."""
    return sorted(str(p) for p in instance.queue_dir.glob("deferred/*/*") if p.is_file())


def argv_chunks(prefix: list[str], args: list[str]) -> list[list[str]]:
    """Split ``prefix + args`` into as few command lines as fit within the kernel's limit."""
    budget = os.sysconf("SC_ARG_MAX") // 2 - sum(len(k) + len(v) + 2 for k, v in os.environ.items())
    chunks: list[list[str]] = []
    current: list[str] = []
    used = sum(len(a) + 9 for a in prefix)
    for arg in args:
        cost = len(arg) + 9  # the string, its NUL and its argv pointer
        if current and used + cost > budget:
            chunks.append(prefix + current)
            current, used = [], sum(len(a) + 9 for a in prefix)
        current.append(arg)
        used += cost
    if current:
        chunks.append(prefix + current)
    return chunks


# --------------------------------------------------------------------------------------------
# Measurements.
# --------------------------------------------------------------------------------------------


class CountingStore(Store):
    """A :class:`Store` that remembers how many message rows its last scan wrote."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path)
        self.last_writes = -1

    def record_scan(self, *args: Any, **kwargs: Any) -> int:
        """Record the scan (unchanged behaviour) and keep its message-row write count."""
        self.last_writes = super().record_scan(*args, **kwargs)
        return self.last_writes


async def time_command(argvs: list[list[str]]) -> float:
    """Wall time of running each command line in turn, stdout to /dev/null."""
    t0 = time.perf_counter()
    for argv in argvs:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await proc.communicate()
        check(proc.returncode == 0, f"{argv[0]} exited {proc.returncode}: {stderr[:500]!r}")
    return time.perf_counter() - t0


@dataclass
class Scan:
    """A scanner with its own store and source (a first scan of it starts from nothing)."""

    instance: PrivatePostfix
    store_path: Path
    store: CountingStore = field(init=False)
    source: PostfixSource = field(init=False)
    scanner: Scanner = field(init=False)

    last_cpu: float = field(init=False, default=0.0)
    """CPU seconds of this process (every thread; not postqueue's) in the last scan."""

    def __post_init__(self) -> None:
        settings = load(None)
        self.store = CountingStore(self.store_path)
        # As mailwatch.sources.factory.build_sources configures it: keep (and decode) only
        # the headers mailwatch uses and the configured class rules name.
        self.source = PostfixSource(
            SOURCE_NAME, config_dir=self.instance.config_dir, keep_headers=settings.header_names()
        )
        self.scanner = Scanner(settings.classifier(), self.store)

    async def run(self, seen: int, read: int, writes: int) -> tuple[float, ScanOutcome]:
        """Time one scan and check what it did: messages seen, headers read, rows written."""
        t0, cpu0 = time.perf_counter(), time.process_time()
        outcome = await self.scanner.scan(self.source)
        elapsed, self.last_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        check(outcome.ok, f"scan failed: {outcome.error_kind}: {outcome.error}")
        observation = outcome.observation
        if observation is None:
            raise BenchError("successful scan without an observation")
        got = (len(observation.messages), observation.headers_read, self.store.last_writes)
        check(
            got == (seen, read, writes),
            f"scan saw/read/wrote {got}, expected {(seen, read, writes)}",
        )
        return elapsed, outcome

    def close(self) -> None:
        """Close the store."""
        self.store.close()


async def check_postcat(argvs: list[list[str]], files: int) -> None:
    """Untimed: the batched ``postcat -h`` really prints one header block per queue file."""
    subjects = 0
    for argv in argvs:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await proc.communicate()
        subjects += sum(1 for line in out.splitlines() if line.startswith(b"Subject:"))
    check(subjects == files, f"postcat -h printed {subjects} Subject lines for {files} files")


@dataclass
class Results:
    """Every sample, by measurement name."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)
    markings: dict[str, int] = field(default_factory=dict)
    footprint: dict[str, float] = field(default_factory=dict)
    """``mailwatch scan`` in a process of its own: seconds, its own peak RSS, store size."""
    run: dict[str, float] = field(default_factory=dict)
    """``mailwatch run`` after 3 scans: VmRSS and VmHWM (MiB)."""
    memory: dict[str, Any] = field(default_factory=dict)
    """tracemalloc: Python heap held after one scan, top allocation sites."""
    reads: dict[str, dict[str, float]] = field(default_factory=dict)
    """``stuck``, ``stuck --json``, ``check``... with every queued message stuck."""
    incident: dict[str, dict[str, Any]] = field(default_factory=dict)
    """qshape, the exporter's scrape, the API's pages, ``run`` RSS over 10 scans."""

    def add(self, name: str, seconds: float) -> None:
        """Record one sample."""
        self.samples.setdefault(name, []).append(seconds)

    def median(self, name: str) -> float:
        """Median of a measurement's samples."""
        return statistics.median(self.samples[name])


async def first_scans(
    instance: PrivatePostfix,
    workdir: Path,
    messages: int,
    runs: int,
    results: Results,
    baselines_argvs: list[list[list[str]]],
) -> Scan:
    """A, B and a first scan (brand-new store and source), ``runs`` times; the last scan."""
    postqueue_argv, postcat_argvs = baselines_argvs
    scan: Scan | None = None
    for run in range(1, runs + 1):
        if scan is not None:  # first: its store's checkpoint thread must not overlap A or B
            scan.close()
        results.add("postqueue_j", await time_command(postqueue_argv))
        results.add("batched_postcat", await time_command(postcat_argvs))
        scan = Scan(instance, workdir / f"first-scan-{run}.sqlite")  # brand-new store and source
        seconds, outcome = await scan.run(seen=messages, read=messages, writes=messages)
        results.add("first_scan", seconds)
        results.add("first_scan_cpu", scan.last_cpu)
        a_b = results.samples["postqueue_j"][-1] + results.samples["batched_postcat"][-1]
        results.add("first_scan_ratio", seconds / a_b)  # this run's own A and B
        results.add("loadavg_1min", os.getloadavg()[0])
        print(
            f"  run {run}/{runs}: postqueue -j {results.samples['postqueue_j'][-1]:.3f}s, "
            f"postcat -h {results.samples['batched_postcat'][-1]:.3f}s, "
            f"first scan {seconds:.3f}s (CPU {scan.last_cpu:.3f}s), /(A+B) {seconds / a_b:.2f}, "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        results.classes = dict(Counter(v.classification.name for v in outcome.verdicts))
        results.markings = dict(Counter(v.message.marking or "(none)" for v in outcome.verdicts))
    if scan is None:
        raise BenchError("no runs")
    return scan


async def measure(
    instance: PrivatePostfix,
    workdir: Path,
    messages: int,
    runs: int,
    added: int,
    rng: random.Random,
    connections: int,
    first_only: bool = False,
    imap: str | None = None,
) -> Results:
    """Run every measurement ``runs`` times on the queue of ``messages`` deferred messages.

    ``first_only``: A, B and the first scan only (``--first-scan-only``). ``imap``: the
    directory of the kept IMAP mailboxes (``--imap``), measured after the Postfix rows.
    """
    results = Results()
    etc = str(instance.config_dir)
    files = deferred_files(instance)
    check(len(files) == messages, f"{len(files)} deferred queue files, expected {messages}")
    postqueue_argv = [["postqueue", "-c", etc, "-j"]]
    postcat_argvs = argv_chunks(["postcat", "-c", etc, "-h"], files)
    print(f"  postcat -h over {len(files)} files in {len(postcat_argvs)} process(es)")

    await check_postcat(postcat_argvs, len(files))

    scan = await first_scans(instance, workdir, messages, runs, results,
                             [postqueue_argv, postcat_argvs])  # fmt: skip
    if first_only:
        scan.close()
        return results
    await asyncio.to_thread(baselines, instance, results, runs)

    try:
        # The second scan stamps every queue file (the first listing did not) and keeps what
        # the listing read: timed on its own, not one of the steady rescans after it.
        seconds, _outcome = await scan.run(seen=messages, read=0, writes=0)
        results.add("second_scan", seconds)
        results.add("second_scan_cpu", scan.last_cpu)
        print(f"  second scan (stamps every queue file): {seconds:.3f}s")
        for _ in range(runs):  # unchanged queue: no header reads, no message rows written
            seconds, _outcome = await scan.run(seen=messages, read=0, writes=0)
            results.add("rescan", seconds)
            results.add("rescan_cpu", scan.last_cpu)
        print(f"  rescans: {', '.join(f'{s:.3f}s' for s in results.samples['rescan'])}")

        total = messages
        for round_ in range(runs if added > 0 else 0):
            new = make_messages(rng, added, start=10_000_000 + round_ * added)
            await asyncio.to_thread(inject_parallel, instance, new, connections, True)
            total += added
            await asyncio.to_thread(wait_settled, instance, total, 120 + added / 20)
            await asyncio.sleep(SETTLE_PAUSE)
            with_new, _outcome = await scan.run(seen=total, read=added, writes=added)
            with_new_cpu = scan.last_cpu
            same_queue, _outcome = await scan.run(seen=total, read=0, writes=0)
            results.add("rescan_added", with_new)
            results.add("rescan_added_cpu", with_new_cpu)
            results.add("added_cost", with_new - same_queue)
            results.add("added_cost_cpu", with_new_cpu - scan.last_cpu)
        if added > 0:
            print(
                f"  rescans after +{added}: "
                f"{', '.join(f'{s:.3f}s' for s in results.samples['rescan_added'])}"
            )
        await changed_rescans(instance, scan, results, runs)
    finally:
        scan.close()
    await asyncio.to_thread(footprints, instance, workdir, results, runs)
    if imap is not None:
        print(f"  IMAP (bench/imap_sync.py, mailboxes in {imap})", flush=True)
        results.incident["imap"] = await asyncio.to_thread(
            scale_rows.imap_sync, messages, imap, runs
        )
        print(f"  IMAP: {results.incident['imap']}", flush=True)
    return results


def hold(instance: PrivatePostfix, queue_ids: Sequence[str], flag: str) -> None:
    """``postsuper -h -`` (hold) or ``-H -`` (release) with the ids on stdin."""
    subprocess.run(
        ["postsuper", "-c", str(instance.config_dir), flag, "-"],
        input="\n".join(queue_ids) + "\n", text=True, capture_output=True, check=True,
        timeout=300,
    )  # fmt: skip


async def changed_rescans(
    instance: PrivatePostfix, scan: Scan, results: Results, runs: int
) -> None:
    """Rescans with 1% of the messages changed: held (moved to hold), then released."""
    ids = [Path(f).name for f in deferred_files(instance)]
    total = len(ids)
    changed = ids[:: max(1, 100)][: max(1, total // 100)]
    for _ in range(runs):
        await asyncio.to_thread(hold, instance, changed, "-h")
        seconds, _outcome = await scan.run(seen=total, read=0, writes=len(changed))
        results.add("rescan_1pct", seconds)
        results.add("rescan_1pct_cpu", scan.last_cpu)
        await asyncio.to_thread(hold, instance, changed, "-H")
        seconds, _outcome = await scan.run(seen=total, read=0, writes=len(changed))
        results.add("rescan_1pct", seconds)
        results.add("rescan_1pct_cpu", scan.last_cpu)
    shown = ", ".join(f"{s:.3f}s" for s in results.samples["rescan_1pct"])
    print(f"  rescans, 1% changed: {shown}")


def footprints(instance: PrivatePostfix, workdir: Path, results: Results, runs: int) -> None:
    """Each in a process of its own: scan, run after 3 scans, tracemalloc, read commands."""
    results.footprint = footprint.own_scan(workdir, instance.config_dir)
    print(f"  mailwatch scan in its own process: {results.footprint['seconds']:.2f}s,"
          f" own peak RSS {results.footprint['peak_rss_mib']:.0f} MiB", flush=True)  # fmt: skip
    results.reads = footprint.read_commands(workdir, runs)
    print(f"  read commands: {results.reads}", flush=True)
    results.run = footprint.run_rss(workdir, instance.config_dir, free_port())
    print(f"  mailwatch run after {results.run['scans']} scans: {results.run}", flush=True)
    results.memory = footprint.tracemalloc_top(workdir, instance.config_dir)
    print(f"  tracemalloc: {results.memory['traced_after_scan_mib']:.0f} MiB held", flush=True)
    api = scale_rows.api_messages(workdir, workdir / "footprint.sqlite", runs)
    results.incident["api"] = api
    print(f"  GET /api/v1/messages?stuck=true: {api}", flush=True)
    results.incident["run10"] = scale_rows.run_rss_series(workdir, instance.config_dir, 10)
    print(f"  mailwatch run over 10 scans: {results.incident['run10']}", flush=True)


def baselines(instance: PrivatePostfix, results: Results, runs: int) -> None:
    """Postfix's own tools and the exporter, on the same queue as A and B, in this run."""
    results.incident["qshape"] = scale_rows.qshape(instance.config_dir, runs)
    print(f"  qshape deferred: {results.incident['qshape']}", flush=True)
    results.incident["exporter"] = scale_rows.exporter_scrape(
        instance.queue_dir, instance.log_path, runs
    )
    print(f"  prometheus-postfix-exporter scrape: {results.incident['exporter']}", flush=True)


# --------------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One ratio with its limit."""

    name: str
    value: float
    limit: float

    @property
    def passed(self) -> bool:
        """Whether the ratio is within its limit."""
        return self.value <= self.limit


ROWS = (
    ("postqueue_j", "A  postqueue -c ETC -j > /dev/null"),
    ("batched_postcat", "B  postcat -c ETC -h <all deferred files>"),
    ("first_scan", "mailwatch first scan (fresh store+source)"),
    ("second_scan", "mailwatch second scan (stamps every file)"),
    ("rescan", "mailwatch rescan, unchanged queue"),
    ("rescan_1pct", "mailwatch rescan, 1% held or released"),
    ("rescan_added", "mailwatch rescan after +K new messages"),
    ("added_cost", "  of which the K new (minus same-queue rescan)"),
)


def report(args: argparse.Namespace, results: Results, environment: dict[str, Any]) -> bool:
    """Print the table and the targets; write ``--json``; returns whether every target passed."""
    med = results.median
    targets = issue_targets(results)
    print()
    print(
        f"mailwatch Postfix scan benchmark: N={args.messages} deferred messages, "
        f"runs={args.runs}, K={args.added}"
    )
    print(
        f"Postfix {environment['postfix']}, Python {environment['python']}, "
        f"{environment['cpus']} CPUs, load average at start {environment['loadavg_at_start']}, "
        f"at end {[round(x, 2) for x in os.getloadavg()]}"
    )
    print(f"{environment['cpu_model']}, {environment['memory_gib']} GiB, Linux"
          f" {environment['kernel']}; mailwatch bytecode: {environment['bytecode']}")  # fmt: skip
    print()
    baseline = med("postqueue_j") + med("batched_postcat")
    print(f"{'measurement':<46} {'median s':>9} {'min s':>8} {'max s':>8} {'cpu s':>7}"
          f" {'/(A+B)':>7}")  # fmt: skip
    print("-" * 90)
    for key, label in ROWS:
        samples = results.samples.get(key)
        if not samples:
            continue
        shown = label.replace("+K", f"+{args.added}")
        cpu = f"{med(key + '_cpu'):7.3f}" if key + "_cpu" in results.samples else f"{'-':>7}"
        print(f"{shown:<46} {med(key):>9.3f} {min(samples):>8.3f} {max(samples):>8.3f} {cpu}"
              f" {med(key) / baseline:>7.2f}")  # fmt: skip
    for name, read in results.reads.items():
        label = f"`mailwatch {name}`, {int(read['stuck'])} stuck"
        print(f"{label:<46} {read['seconds']:>9.3f} {'':>8} {'':>8} {read['cpu_seconds']:>7.3f}"
              f" {read['seconds'] / baseline:>7.2f}")  # fmt: skip
    print("(cpu s: median CPU time of the mailwatch process itself, children such as")
    print(" postqueue excluded; for the commands, of the whole process with imports;")
    print(" steadier than wall time when the machine is busy)")
    print()
    per_message_ms = med("first_scan") / args.messages * 1000
    print(f"first scan per message: {per_message_ms:.3f} ms")
    ratios = ", ".join(f"{r:.2f}" for r in results.samples["first_scan_ratio"])
    print(f"first scan / (A+B) of each run (its own A and B): {ratios}; median"
          f" {med('first_scan_ratio'):.2f}")  # fmt: skip
    if results.samples.get("added_cost"):
        expected = args.added * med("first_scan") / args.messages
        print(
            f"+{args.added} new messages cost {med('added_cost') * 1000:.1f} ms on a rescan "
            f"(at first-scan cost per message: {expected * 1000:.1f} ms); "
            f"headers_read == {args.added} every time"
        )
    if results.footprint:
        fp, queued = results.footprint, args.messages + args.added * args.runs
        print(
            f"`mailwatch scan` in its own process (first scan of {queued} messages): "
            f"{fp['seconds']:.2f} s, its own peak RSS {fp['peak_rss_mib']:.0f} MiB, "
            f"store {fp['store_mib']:.1f} MiB"
        )
    if results.run:
        print(f"`mailwatch run` after {results.run['scans']} scans: VmRSS"
              f" {results.run['VmRSS']:.0f} MiB, VmHWM {results.run['VmHWM']:.0f} MiB")  # fmt: skip
    if results.memory:
        memory = results.memory
        held, peak = memory["traced_after_scan_mib"], memory["traced_peak_mib"]
        print(f"tracemalloc, one scan: {held:.1f} MiB of Python heap held after it,"
              f" {peak:.1f} MiB at peak; top sites:")  # fmt: skip
        for row in memory["top"]:
            print(f"  {row['mib']:7.1f} MiB {row['blocks']:>9} blocks  {row['where']}")
    incident_table(results)
    print(f"classes (last first scan): {dict(sorted(results.classes.items()))}")
    print(f"markings (last first scan): {dict(sorted(results.markings.items()))}")
    print()
    for target in targets:
        verdict = "PASS" if target.passed else "FAIL"
        print(f"{target.name:<46} = {target.value:7.2f}   target <= {target.limit:g}   {verdict}")
    if args.json:
        document = {
            "messages": args.messages,
            "runs": args.runs,
            "added": args.added,
            "environment": environment,
            "samples_seconds": results.samples,
            "medians_seconds": {k: med(k) for k in results.samples},
            "classes": results.classes,
            "markings": results.markings,
            "footprint": results.footprint,
            "run": results.run,
            "memory": results.memory,
            "reads": results.reads,
            "incident": results.incident,
            "targets": [
                {"name": t.name, "value": t.value, "limit": t.limit, "passed": t.passed}
                for t in targets
            ],
            "passed": all(t.passed for t in targets),
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nresults written to {args.json}")
    return all(t.passed for t in targets)


def _incident_rows(results: Results) -> list[tuple[str, float, float | None]]:
    """(label, wall seconds, CPU seconds or None) of every mailwatch row of issue 13's table."""
    med = results.median
    rows: list[tuple[str, float, float | None]] = []
    for key, label in (("first_scan", "first scan"), ("second_scan", "second scan (stamps)"),
                       ("rescan", "rescan, unchanged"),
                       ("rescan_1pct", "rescan, 1% changed"),
                       ("rescan_added", "rescan after +K new")):  # fmt: skip
        if results.samples.get(key):
            cpu = med(key + "_cpu") if results.samples.get(key + "_cpu") else None
            rows.append((label, med(key), cpu))
    for name, read in results.reads.items():
        rows.append((f"`{name}`, {int(read['stuck'])} stuck", read["seconds"],
                     read["cpu_seconds"]))  # fmt: skip
    api = results.incident.get("api", {})
    if api:
        rows.append((f"API ?stuck=true first page, {api['stuck']} stuck",
                     api["first_page_seconds"], None))  # fmt: skip
        if api.get("cursor_page_1000_seconds") is not None:
            rows.append(("API cursor page of 1000", api["cursor_page_1000_seconds"], None))
        rows.append((f"API offset={api['offset']} page of 1000", api["offset_page_1000_seconds"],
                     None))  # fmt: skip
    return rows


def incident_table(results: Results) -> None:
    """Issue 13's table: every mailwatch row as a ratio against every baseline of this run."""
    med = results.median
    bases = {"/A": med("postqueue_j"), "/(A+B)": med("postqueue_j") + med("batched_postcat")}
    for key, name in (("qshape", "/qshape"), ("exporter", "/exporter")):
        measured = results.incident.get(key, {})
        if "seconds" in measured:
            bases[name] = measured["seconds"]
    print()
    print("issue 13 table: A = postqueue -j, B = batched postcat -h, qshape = `qshape deferred`,")
    print("exporter = one prometheus-postfix-exporter scrape of /metrics (all in this run)")
    for key in ("qshape", "exporter"):
        measured = results.incident.get(key, {})
        if "skipped" in measured:
            print(f"  {key}: skipped: {measured['skipped']}")
        elif measured:
            cpu = f", CPU {measured['cpu_seconds']:.3f} s" if "cpu_seconds" in measured else ""
            print(f"  {key}: {measured['seconds']:.3f} s{cpu}")
    header = "".join(f"{name:>10}" for name in bases)
    print(f"{'mailwatch':<44} {'wall s':>8} {'cpu s':>7}{header}")
    for label, seconds, cpu_s in _incident_rows(results):
        shown = f"{cpu_s:7.3f}" if cpu_s is not None else f"{'-':>7}"
        ratios = "".join(f"{seconds / base:>10.2f}" for base in bases.values())
        print(f"{label:<44} {seconds:>8.3f} {shown}{ratios}")
    run10 = results.incident.get("run10")
    if run10:
        print(f"`mailwatch run` VmRSS after each of {run10['scans']} scans (MiB): "
              f"{run10['rss_mib']}; VmHWM {run10['VmHWM']:.0f} MiB")  # fmt: skip
    imap = results.incident.get("imap")
    if imap and "skipped" not in imap:
        print(f"IMAP first sync of {imap['unread']} unread: {imap['first_sync_seconds']:.3f} s "
              f"(CPU {imap['first_sync_cpu_seconds'] or 0:.3f} s), stdlib imaplib same items "
              f"{imap['stdlib_seconds']:.3f} s: {imap['ratio']:.2f}x")  # fmt: skip
        floor = imap.get("cpu_floor_seconds")
        if floor:
            print(f"  its CPU floor (mailwatch, decoding process and Dovecot CPU over the CPUs): "
                  f"{floor:.3f} s, {floor / imap['stdlib_seconds']:.2f}x stdlib: the lowest "
                  "ratio this much CPU allows")  # fmt: skip
    elif imap:
        print(f"IMAP: skipped: {imap['skipped']}")
    else:
        print("IMAP first sync / stdlib imaplib: bench/imap_sync.py, or this with --imap DIR")
    print()


def issue_targets(results: Results) -> list[Target]:
    """The rows of issue 13's table, each as a ratio (or MiB, or seconds) with its limit."""
    med = results.median
    first = med("first_scan")
    targets = [
        Target("first_scan / (postqueue_j + batched_postcat)",
               first / (med("postqueue_j") + med("batched_postcat")), FIRST_SCAN_TARGET),
    ]  # fmt: skip
    if results.samples.get("second_scan"):
        targets.append(Target("second scan (unchanged) / first_scan",
                              med("second_scan") / first, 0.2))  # fmt: skip
    if results.samples.get("rescan"):
        targets.append(Target("rescan (unchanged) / first_scan", med("rescan") / first, 0.2))
        targets.append(
            Target("rescan / postqueue_j", med("rescan") / med("postqueue_j"), RESCAN_TARGET)
        )
    if results.samples.get("rescan_1pct"):
        targets.append(Target("rescan (1% changed) / first_scan", med("rescan_1pct") / first, 0.25))
    if results.footprint:
        targets.append(Target("own peak RSS of `mailwatch scan`, MiB",
                              results.footprint["peak_rss_mib"], 300))  # fmt: skip
    if results.run:
        rss = results.run["VmRSS"]
        targets.append(Target("`mailwatch run` VmRSS after 3 scans, MiB", rss, 300))
    if results.incident.get("run10"):
        rss = results.incident["run10"]["VmRSS"]
        targets.append(Target("`mailwatch run` VmRSS after 10 scans, MiB", rss, 300))
    for target in results.incident.get("imap", {}).get("targets", ()):
        targets.append(Target(f"IMAP {target['name']}", target["value"], target["limit"]))
    for name, read in results.reads.items():
        if name != "stuck --priority P1":
            targets.append(Target(f"`mailwatch {name}` seconds", read["seconds"], 0.5))
            targets.append(Target(f"`mailwatch {name}` CPU seconds", read["cpu_seconds"], 0.5))
    return targets


def environment_facts() -> dict[str, Any]:
    """What the numbers depend on."""
    version = subprocess.run(
        ["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "postfix": version or "unknown",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "bytecode": os.environ.get("PYTHONPYCACHEPREFIX", "default __pycache__")
        if not os.environ.get("PYTHONDONTWRITEBYTECODE")
        else "none (compiled at every start)",
    } | scale_rows.machine()


# --------------------------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------------------------


def _names(arg: bytes, root: bytes) -> bool:
    """Whether a command-line argument names ``root`` or a path under it (not ``root-mem``)."""
    at = arg.find(root)
    while at >= 0:
        end = at + len(root)
        if end == len(arg) or arg[end : end + 1] == b"/":
            return True
        at = arg.find(root, at + 1)
    return False


def users_of(root: Path) -> list[int]:
    """Other processes whose command line names ``root`` (another benchmark using it)."""
    mine, pid = set(), os.getpid()
    while pid > 1:  # this process and its ancestors (a shell may name root too)
        mine.add(pid)
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in mine:
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(_names(arg, str(root).encode()) for arg in argv):
            found.append(int(proc.name))
    return found


def wait_idle(root: Path, timeout: float) -> None:
    """Wait while another run uses the kept instance in ``root``.

    Two runs on one kept queue would rewrite each other's ``main.cf``, stop each other's
    Postfix and time each other's load: the second waits (for every process naming ``root``
    to end), then gives up. A Postfix left running by another run is reused (and reloaded
    with this run's configuration), and left running.
    """
    deadline = time.monotonic() + timeout
    told = False
    while users := users_of(root):
        if time.monotonic() > deadline:
            raise BenchError(f"{root} is in use by another run (processes {users})")
        if not told:
            print(f"{root} is in use by another run (processes {users}); waiting", flush=True)
            told = True
        time.sleep(5)


def bytecode(keep: str | None) -> None:
    """Let the commands timed in child processes start from cached bytecode, as installed.

    A packaged or pip-installed mailwatch has its ``.pyc`` files; with
    ``PYTHONDONTWRITEBYTECODE`` set (as on this project's machines) an editable install
    compiles every module at every start (~0.06 s of a read command). The cache goes to
    ``PYTHONPYCACHEPREFIX`` (under ``--keep``), never into the source tree.
    """
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        base = Path(keep) if keep else Path(tempfile.gettempdir())
        os.environ.setdefault("PYTHONPYCACHEPREFIX", str(base / "pycache"))


@contextmanager
def instance_root(keep: str | None) -> Iterator[Path]:
    """``--keep DIR`` (created if missing, never removed) or a temporary directory."""
    if keep is not None:
        yield Path(keep)
        return
    with tempfile.TemporaryDirectory(prefix="mailwatch-bench-") as tmp:
        yield Path(tmp)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Benchmark mailwatch's Postfix scan against postqueue -j and postcat -h."
    )
    parser.add_argument("--messages", type=int, default=10_000, help="queue size N (10000)")
    parser.add_argument("--runs", type=int, default=5, help="samples per measurement (5)")
    parser.add_argument(
        "--added", type=int, default=100, help="K new messages for the incremental rescan (100)"
    )
    parser.add_argument(
        "--connections", type=int, default=4, help="parallel SMTP clients for injection (4)"
    )
    parser.add_argument("--seed", type=int, default=20140611, help="message generator seed")
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="build the Postfix instance in DIR and keep it, reusing its queue next time",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--wait", type=float, default=3600, metavar="SECONDS",
        help="while another run uses the --keep instance, wait this long for it (3600)",
    )  # fmt: skip
    parser.add_argument(
        "--first-scan-only", action="store_true",
        help="measure A, B and the first scan only (no rescans, footprints or read commands)",
    )  # fmt: skip
    parser.add_argument(
        "--imap", metavar="DIR",
        help="also run bench/imap_sync.py on the mailboxes kept in DIR (N messages, N/10), "
        "so that one command prints every row of issue 13's table",
    )  # fmt: skip
    parser.add_argument(
        "--build-only", action="store_true",
        help="with --keep: only build (or top up) the kept queue, measure nothing",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.messages < 1 or args.runs < 1 or args.added < 0 or args.connections < 1:
        parser.error("--messages, --runs and --connections must be >= 1, --added >= 0")
    return args


def run(args: argparse.Namespace) -> int:
    """Build the queue, measure, report; the exit status."""
    for tool in ("postfix", "postqueue", "postcat", "postsuper", "postconf"):
        check(shutil.which(tool) is not None, f"{tool} not found (is Postfix installed?)")
    check(os.geteuid() == 0, "run as root: the private Postfix instance needs it")
    rng = random.Random(args.seed)
    bytecode(args.keep)
    environment = environment_facts()
    with (
        instance_root(args.keep) as root,
        tempfile.TemporaryDirectory(prefix="mailwatch-bench-store-") as store_dir,
    ):
        wait_idle(root, args.wait)
        instance = PrivatePostfix.create(root)
        quieten(instance)
        started = False
        try:
            t0 = time.perf_counter()
            if instance.is_running():  # left running by another run: use it, leave it running
                print(f"reloading the running Postfix in {root}", flush=True)
                subprocess.run(["postfix", "-c", str(instance.config_dir), "reload"],
                               check=True, capture_output=True, timeout=60)  # fmt: skip
            else:
                print(f"starting Postfix in {root}", flush=True)
                started = True
            instance.start()  # (waits for the SMTP port either way)
            injected, rate = prepare_queue(instance, rng, args.messages, args.connections)
            built = time.perf_counter() - t0
            environment["queue_build_seconds"] = round(built, 1)
            environment["injected"] = injected
            if rate is not None:
                environment["inject_rate_msg_per_s"] = round(rate, 1)
            print(
                f"queue ready: {args.messages} deferred messages ({injected} injected"
                + (f" at {rate:.0f} msg/s" if rate else "")
                + f", {built:.1f}s)",
                flush=True,
            )
            if args.build_only:
                return 0
            print("measuring", flush=True)
            results = asyncio.run(
                measure(
                    instance,
                    Path(store_dir),
                    args.messages,
                    args.runs,
                    args.added,
                    rng,
                    args.connections,
                    args.first_scan_only,
                    args.imap,
                )
            )
            if args.keep is not None and args.added > 0:  # leave exactly N for the next run
                prepare_queue(instance, rng, args.messages, args.connections)
        finally:
            if started:
                instance.stop()
    return 0 if report(args, results, environment) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 all targets met, 1 a target failed, 2 the benchmark could not run."""
    args = parse_args(argv)
    try:
        return run(args)
    except (BenchError, PostfixCommandError, subprocess.CalledProcessError) as exc:
        print(f"benchmark error: {exc}", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
