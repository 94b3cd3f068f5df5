"""``mailwatch shape`` against Postfix's own ``qshape`` on the same real queue (issue 15, item 2).

A private Postfix defers everything (its relayhost does not listen). The test spreads the
messages over qshape's age buckets by back-dating each queue file's arrival record (the ``T``
record ``"seconds microseconds"``, rewritten in place with the same number of digits, so the
file stays valid; ``postqueue -j`` and ``qshape`` both read it), scans, and compares
``qshape deferred`` with ``mailwatch shape deferred``: same headings, same domains, same
recipient counts per bucket (both count recipients, as qshape documents).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailwatch.cli import cli
from mailwatch.sandbox.postfix import PrivatePostfix, make_message

pytestmark = pytest.mark.postfix

AGES_MINUTES = [2.5, 7.5, 30, 190, 2900]
"""One message per age, mid-bucket (5, 10, 40, 320, 1280+): the runs of the two tools are a
second or two apart, never enough to cross a bucket edge."""
RECIPIENTS = [
    "ppcs@justice.example, Courts@Justice.Example",
    "duty@courts.example",
    "a@justice.example, b@gov.example, c@gov.example",
    "ppcs@justice.example",
    "x@courts.example, y@gov.example",
]


def _varint(data: bytes | bytearray, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def backdate(path: Path, seconds: int) -> None:
    """Move the queue file's arrival (its ``T`` record, the second record) ``seconds`` back."""
    data = bytearray(path.read_bytes())
    assert data[0:1] == b"C"
    size, at = _varint(data, 1)
    at += size
    assert data[at : at + 1] == b"T"
    size, start = _varint(data, at + 1)
    sec = data[start : start + size].decode().partition(" ")[0]
    new = str(int(sec) - seconds)
    assert len(new) == len(sec)  # same length: the file keeps its layout
    data[start : start + len(sec)] = new.encode()
    path.write_bytes(bytes(data))


def parse_qshape(text: str) -> tuple[list[str], dict[str, list[int]]]:
    """The qshape table: headings, and counts by domain (``TOTAL`` included)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    return lines[0], {cells[0]: [int(c) for c in cells[1:]] for cells in lines[1:]}


@pytest.fixture(name="config_file")
def fixture_config_file(tmp_path: Path, postfix: PrivatePostfix) -> Path:
    """Watch the test Postfix; recalls are P1."""
    path = tmp_path / "mailwatch.toml"
    path.write_text(
        f"""
[store]
path = "mailwatch.db"

[sources.mta1]
type = "postfix"
config_dir = "{postfix.config_dir}"
"""
    )
    return path


def run(config: Path, *args: str) -> str:
    """The CLI's stdout (exit 0 required)."""
    result = CliRunner().invoke(cli, ["-c", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("qshape") is None, reason="qshape (postfix) not installed")
def test_shape_matches_qshape_on_the_same_queue(postfix: PrivatePostfix, config_file: Path) -> None:
    """Same headings, same domains, same recipient counts per age bucket, TOTAL included."""
    subjects = [f"Emergency recall {i}" if i % 2 else f"Court results {i}" for i in range(5)]
    postfix.inject([make_message(s, to=to) for s, to in zip(subjects, RECIPIENTS, strict=True)])
    entries = postfix.wait_for_queue(len(RECIPIENTS))
    by_subject_order = sorted(entries, key=lambda e: str(e["queue_id"]))
    files = {p.name: p for p in (postfix.queue_dir / "deferred").rglob("*") if p.is_file()}
    for entry, minutes in zip(by_subject_order, AGES_MINUTES, strict=True):
        backdate(files[str(entry["queue_id"])], int(minutes * 60))
    run(config_file, "scan")

    env = {**os.environ, "MAIL_CONFIG": str(postfix.config_dir)}
    qshape = subprocess.run(
        ["qshape", "-c", str(postfix.config_dir), "deferred"],
        capture_output=True, text=True, check=True, env=env, timeout=60,
    )  # fmt: skip
    heads, theirs = parse_qshape(qshape.stdout)
    ours = json.loads(run(config_file, "shape", "deferred", "--json"))

    assert ours["headings"] == heads
    assert ours["counting"] == "recipients"
    assert ours["total"] == theirs.pop("TOTAL")
    assert {r["domain"]: r["counts"] for r in ours["rows"]} == theirs
    assert theirs["justice.example"][0] == 4  # recipients, not messages (Courts@ counted)
    spread = [i for i, n in enumerate(ours["total"][1:], 1) if n]
    assert len(spread) == len(AGES_MINUTES)  # the back-dating really spread them

    text = run(config_file, "shape", "deferred")
    assert text.splitlines()[0].split() == ["PRI", *heads]
    messages = json.loads(run(config_file, "shape", "deferred", "--messages", "--json"))
    assert {r["domain"]: r["counts"][0] for r in messages["rows"]}["justice.example"] == 3
    first = [r["priority"] for r in ours["rows"]]
    assert first == sorted(first)  # P1 rows first
    p1 = json.loads(run(config_file, "shape", "deferred", "--priority", "P1", "--json"))
    assert p1["rows"]
    assert {r["priority"] for r in p1["rows"]} == {"P1"}
    assert p1["total"][0] < ours["total"][0]
