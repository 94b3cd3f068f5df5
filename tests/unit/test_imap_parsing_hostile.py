"""The IMAP header path given the hostile subject of issue 11 item 1 (marking + 64K spaces).

A FETCH response carrying it is parsed, its header block decoded and described, as the IMAP
source does for each new message. A backtracking regex holds the GIL (no in-process timer
can stop it), so the path runs in a fresh interpreter under a generous limit.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from mailwatch.core.headers import TRACE_HEADERS, keep_set, parse_header_blocks
from mailwatch.parsing.imap import parse_fetch
from mailwatch.sources.imap import describe


def hostile_fetch(marking: str, spaces: int = 65536) -> list[bytes | bytearray]:
    """A ``UID FETCH`` answer for one message whose subject decodes to marking + spaces."""
    encoded = base64.b64encode(marking.encode() + b" " * spaces + b"Breach").decode()
    header = (
        f"From: om@probation.example\r\nTo: ppcs@justice.example\r\n"
        f"Subject: =?utf-8?b?{encoded}?=\r\n\r\n"
    ).encode()
    return [
        b'* 1 FETCH (UID 7 FLAGS () INTERNALDATE "02-Nov-2026 09:30:00 +0100" '
        b"RFC822.SIZE 900 BODY[HEADER.FIELDS (SUBJECT FROM TO)] {%d}" % len(header),
        bytearray(header),
        b")",
        b"A1 OK Fetch completed",
    ]


def describe_fetch(lines: list[bytes | bytearray]) -> tuple[str, str | None]:
    """The source's path: parse the FETCH, its header blocks, and describe the message."""
    records, malformed = parse_fetch(lines)
    assert malformed == 0
    (block,) = parse_header_blocks([r.header or b"" for r in records], TRACE_HEADERS, keep_set())
    _sender, _recipients, subject = describe(block)
    return subject.text, subject.marking


@pytest.mark.parametrize("marking", ["official sensitive", "OFFICIAL-SENSITIVE", "[OFFICIAL"])
def test_hostile_subject_is_described_promptly(marking: str) -> None:
    """Hostile subject is described promptly."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_imap_parsing_hostile import describe_fetch, hostile_fetch\n"
        f"text, marking = describe_fetch(hostile_fetch({marking!r}))\n"
        "assert text.endswith('Breach'), text[:40]\n"
    )
    try:
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("describing one message took over 30 s")


def test_hostile_subject_keeps_its_marking() -> None:
    """Hostile subject keeps its marking."""
    assert describe_fetch(hostile_fetch("OFFICIAL-SENSITIVE")) == ("Breach", "OFFICIAL-SENSITIVE")
    assert describe_fetch(hostile_fetch("[OFFICIAL]")) == ("Breach", "OFFICIAL")
