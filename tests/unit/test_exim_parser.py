"""Unit tests for mailwatch.parsing.exim over golden output captured from a real Exim 4.96.

The golden files and how they were captured are in tests/data/exim (README.md, capture.sh);
``manifest.tsv`` names each captured message by scenario, so tests never hard-code ids.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from mailwatch.core.headers import TRACE_HEADERS, parse_header_block
from mailwatch.parsing import exim

DATA = Path(__file__).resolve().parents[1] / "data" / "exim"
BACKDATED = {"recall": 1500, "partial": 5 * 3600, "frozen_admin": 4 * 86400}
"""Seconds capture.sh moved these messages' arrival back (in their -H files)."""
A, OM, PPCS = "a@b.example", "om@probation.example", ("ppcs@justice.example",)
SMTP_RCPTS = ("ppcs@justice.example", "victims@justice.example", "police@justice.example")
Q, Q97 = "1xXdsY-00069C-1k", "1rBNQS-00000000Ghq-3y0B"  # ids: up to 4.96, from 4.97
ENVELOPE = "1xXdsY-00069C-1k-H\nroot 0 0\n"  # a -H file's name and owner lines
LINE = " 0m   401 1xXdsY-00069C-1k <a@b.example>"  # a message line of -bp output


@cache
def ids() -> dict[str, str]:
    """Scenario label → message id, from the capture's manifest."""
    rows = (line.split("\t") for line in (DATA / "manifest.tsv").read_text().splitlines())
    return {row[0]: row[1] for row in rows}


def golden(name: str) -> bytes:
    """The bytes of one golden file."""
    return (DATA / name).read_bytes()


def listed(text: bytes) -> list[exim.EximEntry]:
    """The entries (not the Malformed values) of a listing."""
    return [e for e in exim.parse_queue(text) if isinstance(e, exim.EximEntry)]


def entries(name: str) -> dict[str, exim.EximEntry]:
    """Entries of a golden listing by scenario label."""
    by_id = {e.queue_id: e for e in listed(golden(name))}
    return {label: by_id[queue_id] for label, queue_id in ids().items() if queue_id in by_id}


def header_line(line: str) -> exim.EximEntry:
    """Parse one hand-written message line with one recipient."""
    [result] = exim.parse_queue(f"{line}\n          ppcs@justice.example\n\n")
    assert isinstance(result, exim.EximEntry)
    return result


def spool(label: str) -> exim.SpoolHeader:
    """The parsed golden ``-Mvh`` output of a scenario whose -H file is intact."""
    result = exim.parse_spool_header(golden(f"Mvh/{ids()[label]}.txt"), ids()[label])
    assert isinstance(result, exim.SpoolHeader), label
    return result


class TestGoldenListing:
    """``exim -bpru`` output of the captured queue parses into the expected entries."""

    @pytest.mark.parametrize(
        ("label", "expected"),
        [
            ("recall", (1500, 413, OM, PPCS, False)),
            ("partial", (18000, 380, OM, ("courts@justice.example",), False)),
            ("frozen_admin", (345600, 375, "admin@probation.example", ("it@justice.example",),
                              True)),
            ("frozen_self", (0, 365, OM, ("host@loop.invalid",), True)),
            ("bounce", (0, 401, "", ("om@justice.example",), False)),
            ("team", (0, 392, OM, ("team@local.invalid",), False)),
            ("size_k", (0, round(2.4 * 1024), OM, PPCS, False)),
            ("size_kk", (0, 15 * 1024, OM, PPCS, False)),
            ("size_m", (0, round(1.2 * 1024**2), OM, PPCS, False)),
            ("bcc", (0, 350, OM, ("ppcs@justice.example", "audit@justice.example"), False)),
            ("missing_d", (0, 0, OM, PPCS, False)),
            ("smtp", (0, 544, "duty.officer@probation.example", SMTP_RCPTS, False)),
        ],
    )  # fmt: skip
    def test_entry(self, label: str, expected: tuple[object, ...]) -> None:
        """Each captured message: (age, size, sender, undelivered recipients, frozen)."""
        e = entries("bpru.txt")[label]
        assert (e.age_seconds, e.size, e.sender, e.recipients, e.frozen) == expected

    def test_spool_format_error_block_is_malformed(self) -> None:
        """The message whose -H file was truncated is one Malformed value, the rest still count."""
        results = exim.parse_queue(golden("bpru.txt"))
        problems = [r for r in results if isinstance(r, exim.Malformed)]
        assert len(results) == len(ids())
        assert [p.reason for p in problems] == ["spool format error: size=40"]
        assert ids()["corrupt_h"] not in {e.queue_id for e in entries("bpru.txt").values()}

    @pytest.mark.parametrize(
        ("listing", "label", "expected"),
        [
            ("bpru.txt", "partial", (("courts@justice.example",), 0, 0)),
            ("bpr.txt", "partial", (("courts@justice.example",), 1, 0)),
            ("bpra.txt", "partial", (("courts@justice.example",), 1, 0)),
            ("bpru.txt", "team", (("team@local.invalid",), 0, 0)),
            ("bpr.txt", "team", (("team@local.invalid",), 0, 0)),
            ("bpra.txt", "team", (("team@local.invalid",), 0, 1)),
        ],
    )
    def test_delivered_are_counted(
        self, listing: str, label: str, expected: tuple[object, ...]
    ) -> None:
        """``D`` (-bpr) and ``+D`` (-bpra) lines are counted, not listed; -bpru shows neither."""
        e = entries(listing)[label]
        assert (e.recipients, e.delivered, e.delivered_generated) == expected

    def test_new_format_ids_parse_alike(self) -> None:
        """The 23-character ids of Exim 4.97+ (derived listing) parse like the 16-character ones."""
        old, new = listed(golden("bpru.txt")), listed(golden("derived-bpru-new-ids.txt"))
        assert {len(e.queue_id) for e in new} == {23}
        assert [(e.queue_id[:6], e.age_seconds, e.size, e.recipients) for e in new] == [
            (e.queue_id[:6], e.age_seconds, e.size, e.recipients) for e in old
        ]

    def test_ages_agree_with_exact_arrivals(self) -> None:
        """Listed (rounded) ages match the -H arrival at capture time within Exim's rounding."""
        captured_at = datetime.fromtimestamp(int(golden("captured-at.txt")), UTC)
        for label, entry in entries("bpru.txt").items():
            header = spool(label)
            days, hours = entry.age_seconds >= 3 * 86400, entry.age_seconds > 5400
            tolerance = 12 * 3600 if days else 1800 if hours else 60  # %2dd, %2dh round; m floors
            exact = (captured_at - header.arrival).total_seconds()
            assert abs(exact - entry.age_seconds) <= tolerance + 5, label


class TestMessageLine:
    """Hand-written message lines in every documented shape (Exim's queue_list format)."""

    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            (" 0m   401 1xXdsY-00069C-1k <a@b.example>", (Q, 0, 401, A, False)),
            ("25m  2.9K 1xXdsY-00069C-1k <a@b.example>", (Q, 1500, round(2.9 * 1024), A, False)),
            ("90m   15K 1xXdsY-00069C-1k <a@b.example>", (Q, 5400, 15 * 1024, A, False)),
            (" 2h  1.2M 1xXdsY-00069C-1k <a@b.example>", (Q, 7200, round(1.2 * 1024**2), A, False)),
            ("72h   12M 1xXdsY-00069C-1k <a@b.example>", (Q, 72 * 3600, 12 * 1024**2, A, False)),
            (" 3d     1 1xXdsY-00069C-1k <a@b.example>", (Q, 3 * 86400, 1, A, False)),
            ("123d  999 1xXdsY-00069C-1k <a@b.example>", (Q, 123 * 86400, 999, A, False)),
            (" 0m       1xXdsY-00069C-1k <a@b.example>", (Q, 0, 0, A, False)),
            ("-1m   401 1xXdsY-00069C-1k <a@b.example>", (Q, -60, 401, A, False)),
            (" 0m   401 1xXdsY-00069C-1k <>", (Q, 0, 401, "", False)),
            (" 0m   401 1xXdsY-00069C-1k <a@b.example> (jo)", (Q, 0, 401, A, False)),
            (" 0m   401 1xXdsY-00069C-1k <a@b.example> (jo) *** frozen ***", (Q, 0, 401, A, True)),
            (" 0m   401 1xXdsY-00069C-1k <> *** frozen ***", (Q, 0, 401, "", True)),
            (' 0m   401 1xXdsY-00069C-1k <"x>y"@b.example>', (Q, 0, 401, '"x>y"@b.example', False)),
            (" 0m   401 1rBNQS-00000000Ghq-3y0B <a@b.example>", (Q97, 0, 401, A, False)),
        ],
    )  # fmt: skip
    def test_shapes(self, line: str, expected: tuple[object, ...]) -> None:
        """Ids old and 4.97+, ages m/h/d (<0: clock went back), sizes B/K/M/blank, ``(login)``."""
        e = header_line(line)
        assert (e.queue_id, e.age_seconds, e.size, e.sender, e.frozen) == expected

    def test_message_without_recipients_has_no_blank_line(self) -> None:
        """Exim prints no blank line after a message without recipients; the next one parses."""
        text = f"{LINE}\n 1m   402 1xXdsY-00069d-1u <c@d.example>\n          e@f.example\n\n"
        assert [e.recipients for e in listed(text.encode())] == [(), ("e@f.example",)]

    def test_lines_stream_as_bytes(self) -> None:
        """``iter_queue`` accepts raw byte lines with CRLF endings, as a pipe delivers them."""
        lines = [f"{LINE}\r\n".encode(), b"          c@d.example\r\n", b"\r\n"]
        assert list(exim.iter_queue(lines)) == [exim.EximEntry(Q, 0, 401, A, ("c@d.example",))]


class TestMalformedListing:
    """Garbage and truncated listings give Malformed values, never exceptions or addresses."""

    @pytest.mark.parametrize(
        ("text", "good", "reasons"),
        [
            ((DATA / "bpru-empty.txt").read_text(), 0, []),  # the empty queue
            ("          a@b.example\n\n", 0, ["text outside a message block"]),
            ("garbage\n", 0, ["text outside a message block"]),
            (" 0m   401 1xXdsY-00069C-1k <a@b.example>\n          c@d.example\n", 0,
             ["listing ends inside a message block (truncated)"]),
            (" 0m   401 1xXdsY-00069C-1k <a@b.example>\ngarbage x@y.example\n\n", 0,
             ["unrecognised line in a message block"]),
            (" 0m   401 1xXdsY-00069C <a@b.example>\n          c@d.example\n\n", 0,
             ["text outside a message block", "text outside a message block"]),
            ("      1xXdsY-00069C-1k\n          c@d.example\n\n", 0,
             ["message line without age or sender"]),
            ("      1xXdsY-00069C-1k\n    *** spool read error: Permission denied ***\n\n", 0,
             ["spool read error: Permission denied"]),
            (" 0m   401 1xXdsY-00069C-1k <a@b.example>\n    *** spool read error: Bad file"
             " descriptor *** *** frozen ***\n          c@d.example\n\n", 0,
             ["spool read error: Bad file descriptor"]),
            ("\xff\xfe\x00binary\n\n 0m   401 1xXdsY-00069C-1k <a@b.example>\n"
             "          c@d.example\n\n", 1, ["text outside a message block"]),
        ],
    )  # fmt: skip
    def test_bad_blocks(self, text: str, good: int, reasons: list[str]) -> None:
        """Each bad shape is reported with a reason; good blocks around it still parse."""
        results = exim.parse_queue(text)
        assert sum(isinstance(r, exim.EximEntry) for r in results) == good
        assert [r.reason for r in results if isinstance(r, exim.Malformed)] == reasons

    def test_every_truncation_of_the_golden_listing(self) -> None:
        """Cut anywhere, the listing yields only true entries, plus Malformed without addresses."""
        full = golden("bpru.txt")
        complete = set(entries("bpru.txt").values())
        for cut in range(len(full)):
            for result in exim.parse_queue(full[:cut]):
                if isinstance(result, exim.Malformed):
                    assert "@" not in result.reason
                else:
                    assert result in complete


class TestSpoolHeader:
    """``exim -Mvh`` output: exact arrival, frozen flag, and the live header block."""

    @pytest.mark.parametrize(
        ("label", "frozen", "subject"),
        [
            ("recall", False, "OFFICIAL-SENSITIVE: Emergency recall request - Part A"),
            ("partial", False, "Court results for today"),
            ("frozen_admin", True, "Weekly digest"),
            ("frozen_self", True, "Part A recall"),
            ("bounce", False, "Mail delivery failed: returning message to sender"),
            ("team", False, "[OFFICIAL] Risk of serious harm update"),
            ("size_m", False, "Scanned documents"),
            ("bcc", False, "Breach notification"),
            ("missing_d", False, "data file removed later"),
            ("smtp", False, "RE: [OFFICIAL-SENSITIVE] Emergency recall \u2013 Part A"),
        ],
    )
    def test_arrival_flag_and_subject(self, label: str, frozen: bool, subject: str) -> None:
        """Arrival is the -H time (the id's second, minus any backdating); headers decode."""
        header = spool(label)
        assert header.complete
        assert header.queue_id == ids()[label]
        expected = exim.arrival_from_id(ids()[label])
        assert expected is not None
        assert header.arrival == expected - timedelta(seconds=BACKDATED.get(label, 0))
        assert header.frozen is frozen
        assert parse_header_block(header.header_block).get("Subject") == subject

    def test_deleted_headers_are_dropped(self) -> None:
        """The Bcc header Exim marked deleted (``*``) is not in the block; the others are."""
        header = spool("bcc")
        names = [name for name, _ in parse_header_block(header.header_block).items]
        assert names == ["Received", "From", "To", "Subject", "Message-Id", "Date"]

    def test_byte_counts_cover_folded_and_utf8_headers(self) -> None:
        """Folded headers and raw UTF-8 (counted in bytes) come out whole."""
        header = spool("smtp")
        headers = parse_header_block(header.header_block, skip=TRACE_HEADERS)
        assert headers.get("To") == "ppcs@justice.example, victims@justice.example"
        assert headers.get("X-Note") == "caf\u00e9"
        assert headers.get("Received") is None
        assert header.recipients == SMTP_RCPTS

    def test_delivered_address_tree_is_skipped(self) -> None:
        """The tree of delivered addresses (``NN duty@…``) is not taken for recipients."""
        header = spool("partial")
        assert header.recipients == ("duty@local.invalid", "courts@justice.example")

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("", "spool header file cut off before its headers"),
            (f"{ENVELOPE}<a@b.example>\n1 0\nXX\n0\n\n", None),
            ((DATA / "derived-Mvh-new-id.txt").read_text(), None),  # a 23-character id
            ("notanid\nroot 0 0\n<a@b.example>\n1 0\nXX\n0\n\n",
             "first line is not a spool header file name (ID-H)"),
            (f"{ENVELOPE}a@b.example\n1 0\nXX\n0\n\n", "sender line is not in <>"),
            (f"{ENVELOPE}<a@b.example>\nyesterday\nXX\n0\n\n",
             "arrival line is not '<epoch> <warnings>'"),
            (f"{ENVELOPE}<a@b.example>\n1 0\nYY a@b.example\n1\nc@d.example\n\n",
             "no delivered-address tree and recipient count"),
            (f"{ENVELOPE}<a@b.example>\n1 0\nXX\n2\nc@d.example\n\n",
             "recipient count 2 but 1 recipient lines"),
        ],
    )  # fmt: skip
    def test_bad_envelopes(self, text: str, reason: str | None) -> None:
        """A damaged envelope part is Malformed (without addresses); minimal and 4.97 ones parse."""
        result = exim.parse_spool_header(text)
        got = result.reason if isinstance(result, exim.Malformed) else None
        assert (got, "@" in (got or "")) == (reason, False)

    @pytest.mark.parametrize(
        ("label", "asked_for", "reason"),
        [
            ("corrupt_h", "corrupt_h", "spool header file cut off before its headers"),
            ("recall", "smtp", "spool header file belongs to another message"),
        ],
    )
    def test_golden_refusals(self, label: str, asked_for: str, reason: str) -> None:
        """The -H file capture.sh cut to 40 bytes, and another message's output, are refused."""
        result = exim.parse_spool_header(golden(f"Mvh/{ids()[label]}.txt"), ids()[asked_for])
        assert result == exim.Malformed(1, reason)

    @pytest.mark.parametrize(
        ("damage", "kept"),
        [
            (b"999  Subject: way too long\n", ["From"]),
            (b"12x\n", ["From"]),
            (b"010  Subject: cut off without newline", ["From"]),
        ],
    )
    def test_damage_keeps_earlier_headers(self, damage: bytes, kept: list[str]) -> None:
        """Headers before a bad byte count survive; ``complete`` says the rest was lost."""
        text = f"{ENVELOPE}<>\n1 0\nXX\n0\n\n027F From: om@probation.example\n".encode()
        result = exim.parse_spool_header(text + damage)
        assert isinstance(result, exim.SpoolHeader)
        assert not result.complete
        assert [n for n, _ in parse_header_block(result.header_block).items] == kept

    def test_every_truncation_never_raises(self) -> None:
        """Cut anywhere, -Mvh output parses to a value: Malformed early, partial headers later."""
        full = golden(f"Mvh/{ids()['smtp']}.txt")
        for cut in range(len(full)):
            result = exim.parse_spool_header(full[:cut])
            if isinstance(result, exim.Malformed):
                assert "@" not in result.reason
            else:
                assert all(line in full[:cut] for line in result.header_block.splitlines())


class TestArrivalFromId:
    """The arrival second encoded in an Exim id."""

    @pytest.mark.parametrize(
        ("queue_id", "expected"),
        [
            ("1xXdoq-0003nH-00", datetime.fromtimestamp(1795954548, UTC)),
            ("1xXdoq-000000003nH-0000", datetime.fromtimestamp(1795954548, UTC)),
            ("000000-000000-00", datetime.fromtimestamp(0, UTC)),
            ("1xXdoq", None),
            ("1xXdoq-0003nH-0", None),
            ("1xXd*q-0003nH-00", None),
        ],
    )
    def test_decodes(self, queue_id: str, expected: datetime | None) -> None:
        """Valid ids decode to their second; anything else is None."""
        assert exim.arrival_from_id(queue_id) == expected


class TestMessageLog:
    """``exim -Mvl`` output: the last defer reason per address."""

    REFUSED = "H=127.0.0.1 [127.0.0.1] Connection refused"

    @pytest.mark.parametrize(
        ("label", "reasons", "frozen_note"),
        [
            ("recall", {"ppcs@justice.example": REFUSED}, None),
            ("partial", {"courts@justice.example": REFUSED}, None),
            ("frozen_self", {"host@loop.invalid": "remote host address is the local host"},
             "Frozen"),
            ("team", {"ppcs-team@justice.example": REFUSED, "team@local.invalid": REFUSED}, None),
            ("smtp", {"ppcs@justice.example": REFUSED, "victims@justice.example": REFUSED,
                      "police@justice.example": REFUSED}, None),
        ],
    )  # fmt: skip
    def test_golden(self, label: str, reasons: dict[str, str], frozen_note: str | None) -> None:
        """Captured message logs give each recipient's reason, filed under parents too."""
        parsed = exim.parse_message_log(golden(f"Mvl/{ids()[label]}.txt"))
        assert parsed.reasons == reasons
        assert parsed.last_error == list(reasons.values())[-1]
        assert parsed.frozen_note == frozen_note

    @pytest.mark.parametrize(
        ("text", "reasons", "last_error"),
        [
            ("", {}, None),
            ("2026-11-29 12:16:58 a@b.example R=r T=t defer (111): Connection refused\n"
             "2026-11-29 12:19:07 a@b.example R=r T=t defer (-54): retry time not reached\n",
             {"a@b.example": "Connection refused"}, "Connection refused"),
            ("2026-11-29 12:19:07 a@b.example R=r T=t defer (-54): retry time not reached\n",
             {"a@b.example": "retry time not reached"}, "retry time not reached"),
            ("2026-11-29 12:16:58.123 +0000 [4242] a@b.example R=r T=smtp defer (-44) "
             "H=mx.b.example [192.0.2.1]: 451 4.7.1 Greylisted\n",
             {"a@b.example": "H=mx.b.example [192.0.2.1]: 451 4.7.1 Greylisted"},
             "H=mx.b.example [192.0.2.1]: 451 4.7.1 Greylisted"),
            ("2026-11-29 12:16:58 H=mx [192.0.2.1] Connection timed out\n"
             "2026-11-29 12:16:58 a@b.example R=r T=t defer (110): Connection timed out\n",
             {"a@b.example": "H=mx [192.0.2.1] Connection timed out"},
             "H=mx [192.0.2.1] Connection timed out"),
            ("2026-11-29 12:19:07 1xXdsY-00069C-1k == a@b.example R=r T=t defer (-1)\n",
             {"a@b.example": "defer (-1)"}, "defer (-1)"),
            ("== a@b.example R=r T=t defer (-1)\n", {"a@b.example": "defer (-1)"}, "defer (-1)"),
            ("*** Frozen (delivery error message)\nnot a log line\n", {}, None),
        ],
    )  # fmt: skip
    def test_shapes(self, text: str, reasons: dict[str, str], last_error: str | None) -> None:
        """Later reasons win but a retry note never replaces a real one; host lines add the host."""
        parsed = exim.parse_message_log(text)
        assert (parsed.reasons, parsed.last_error) == (reasons, last_error)
