"""The Exim spool as mailwatch reads it: ``-H`` envelopes, message logs read incrementally.

Also a spool directory built from the golden files of a real Exim 4.96.

The golden ``tests/data/exim/Mvh/*.txt`` are ``exim -Mvh`` output, which is the ``-H`` file
itself; ``Mvl/*.txt`` are message logs (see tests/data/exim/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwatch.parsing import exim
from mailwatch.sources.exim_spool import SpoolWatcher

DATA = Path(__file__).resolve().parents[1] / "data" / "exim"
ADDRESS = st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.example", fullmatch=True)


def golden_spools() -> dict[str, bytes]:
    """Id → the bytes of a real ``-H`` file."""
    return {path.stem: path.read_bytes() for path in sorted((DATA / "Mvh").glob("*.txt"))}


def golden_listing() -> dict[str, exim.EximEntry]:
    """Id → what the real ``exim -bpru`` said of it."""
    parsed = exim.parse_queue((DATA / "bpru.txt").read_bytes())
    return {e.queue_id: e for e in parsed if isinstance(e, exim.EximEntry)}


def test_golden_spool_files_say_what_the_listing_says() -> None:
    """Every real -H file gives the listing's frozen flag, sender and undelivered recipients."""
    listing = golden_listing()
    compared = 0
    for queue_id, data in golden_spools().items():
        spool = exim.parse_spool_header(data, queue_id)
        if queue_id not in listing or isinstance(spool, exim.Malformed):
            continue
        entry = listing[queue_id]
        assert (spool.frozen, spool.sender, spool.undelivered) == (
            entry.frozen,
            entry.sender,
            entry.recipients,
        ), queue_id
        compared += 1
    assert compared >= 10


def test_golden_delivered_tree_is_read() -> None:
    """The partly delivered message's tree (``NN duty@local.invalid``) is its delivered set."""
    rows = (line.split("\t") for line in (DATA / "manifest.tsv").read_text().splitlines())
    partial = {row[0]: row[1] for row in rows}["partial"]
    spool = exim.parse_spool_header(golden_spools()[partial], partial)
    assert isinstance(spool, exim.SpoolHeader)
    assert spool.delivered == ("duty@local.invalid",)
    assert spool.undelivered == ("courts@justice.example",)


def _tree_lines(addresses: list[str]) -> list[str]:
    """A balanced tree of ``addresses`` written as Exim's ``write_tree`` does (pre-order)."""
    if not addresses:
        return []
    middle = len(addresses) // 2
    left, right = addresses[:middle], addresses[middle + 1 :]
    flags = ("Y" if left else "N") + ("Y" if right else "N")
    return [f"{flags} {addresses[middle]}", *_tree_lines(left), *_tree_lines(right)]


@given(
    recipients=st.lists(ADDRESS, min_size=1, max_size=12, unique=True),
    data=st.data(),
    headers=st.lists(st.from_regex(r"X-[A-Z][a-z]{0,6}: [ -~]{0,30}", fullmatch=True), max_size=6),
    deleted=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_envelopes_round_trip(
    recipients: list[str], data: st.DataObject, headers: list[str], deleted: list[bool]
) -> None:
    """Any delivered subset, written as Exim's tree, comes back; header sizes add up."""
    done = data.draw(st.lists(st.sampled_from(recipients), unique=True))
    tree = _tree_lines(sorted(done)) or ["XX"]
    lines = [f"{h}\n" for h in headers]
    block = "".join(
        f"{len(line.encode()):03d}{'*' if gone else ' '} {line}"
        for line, gone in zip(lines, deleted, strict=False)
    )
    text = (
        "1xXdsY-00069C-1k-H\nroot 0 0\n<om@probation.example>\n1796634765 0\n-ident root\n"
        + "\n".join([*tree, str(len(recipients)), *recipients])
        + "\n\n"
        + block
    )
    spool = exim.parse_spool_header(text.encode(), "1xXdsY-00069C-1k")
    assert isinstance(spool, exim.SpoolHeader)
    assert sorted(spool.delivered) == sorted(done)
    assert spool.undelivered == tuple(r for r in recipients if r not in done)
    live = [line for line, gone in zip(lines, deleted, strict=False) if not gone]
    assert spool.header_size == sum(len(line.encode()) for line in live)


@settings(deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=2000))
def test_damaged_spool_files_never_raise(noise: bytes, at: int) -> None:
    """A real -H file cut or overwritten anywhere parses to a value or ``Malformed``."""
    for queue_id, data in list(golden_spools().items())[:3]:
        damaged = data[:at] + noise + data[at + len(noise) :]
        result = exim.parse_spool_header(damaged, queue_id)
        assert isinstance(result, exim.SpoolHeader | exim.Malformed)
        if isinstance(result, exim.SpoolHeader):
            assert set(result.undelivered) <= set(result.recipients)


def build_spool(root: Path, split: bool = False) -> dict[str, bytes]:
    """A spool directory from the golden -H files and message logs (ids → -H bytes)."""
    spools = golden_spools()
    for queue_id, data in spools.items():
        sub = f"/{queue_id[5]}" if split else ""
        for part in ("input", "msglog"):
            (root / f"{part}{sub}").mkdir(parents=True, exist_ok=True)
        (root / f"input{sub}/{queue_id}-H").write_bytes(data)
        (root / f"input{sub}/{queue_id}-D").write_bytes(f"{queue_id}-D\nbody\n".encode())
        log = DATA / "Mvl" / f"{queue_id}.txt"
        if log.is_file():
            (root / f"msglog{sub}/{queue_id}").write_bytes(log.read_bytes())
    return spools


@pytest.mark.parametrize("split", [False, True])
def test_watcher_over_a_golden_spool(tmp_path: Path, split: bool) -> None:
    """The watcher reports what the real listing does, with the message logs' reasons."""
    spools = build_spool(tmp_path, split)
    watcher = SpoolWatcher("mx1", str(tmp_path), {})
    messages = {m.queue_id: m for m in watcher.scan()}
    listing = golden_listing()
    good = {
        i for i, d in spools.items() if isinstance(exim.parse_spool_header(d, i), exim.SpoolHeader)
    }
    assert set(messages) == good
    assert watcher.malformed == len(spools) - len(good)
    for queue_id, message in messages.items():
        if queue_id in listing:
            assert tuple(r.address for r in message.recipients) == listing[queue_id].recipients
        log = DATA / "Mvl" / f"{queue_id}.txt"
        expected = exim.parse_message_log(log.read_bytes()) if log.is_file() else None
        for recipient in message.recipients:
            assert recipient.delay_reason == (
                expected.reasons.get(recipient.address) if expected else None
            )
    assert [m.queue_id for m in watcher.scan()] == list(messages)


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40, deadline=None
)
@given(cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=6))
def test_message_log_read_in_pieces_equals_read_whole(tmp_path: Path, cuts: list[int]) -> None:
    """A log appended between scans (cut anywhere, even mid-line) ends as if read whole."""
    root = tmp_path / f"spool-{len(list(tmp_path.iterdir()))}"
    spools = build_spool(root)
    logs = {
        i: (DATA / "Mvl" / f"{i}.txt").read_bytes()
        for i in spools
        if (DATA / "Mvl" / f"{i}.txt").is_file()
    }
    for queue_id in logs:
        (root / f"msglog/{queue_id}").write_bytes(b"")
    watcher = SpoolWatcher("mx1", str(root), {})
    watcher.scan()
    for cut in [*sorted(cuts), 10**6]:
        for queue_id, log in logs.items():
            (root / f"msglog/{queue_id}").write_bytes(log[:cut])
        messages = {m.queue_id: m for m in watcher.scan(all_logs=True)}
    for queue_id, log in logs.items():
        if queue_id not in messages:
            continue
        whole = exim.parse_message_log(log)
        message = messages[queue_id]
        for recipient in message.recipients:
            assert recipient.delay_reason == whole.reasons.get(recipient.address)
        if message.queue != "frozen":
            assert message.wait_reason == whole.last_error


def test_the_watcher_shares_what_messages_repeat(tmp_path: Path) -> None:
    """At incident scale most messages repeat a sender and recipients: one string each.

    The watcher keeps per message its directory (a string shared by the directory's files, not
    a path per file), and the envelope's sender and recipient addresses interned, so 40 copies
    of one message hold one sender, one set of addresses and one directory string.
    """
    spools = golden_spools()
    queue_id, data = next(
        (i, d) for i, d in spools.items()
        if isinstance(exim.parse_spool_header(d, i), exim.SpoolHeader)
        and exim.parse_spool_header(d, i).undelivered  # type: ignore[union-attr]
    )  # fmt: skip
    (tmp_path / "input").mkdir()
    (tmp_path / "msglog").mkdir()
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    for n in range(40):
        copy_id = queue_id[:-2] + alphabet[n // 62] + alphabet[n % 62]
        body = data.replace(queue_id.encode(), copy_id.encode())
        (tmp_path / f"input/{copy_id}-H").write_bytes(body)
        (tmp_path / f"input/{copy_id}-D").write_bytes(f"{copy_id}-D\nbody\n".encode())
    watcher = SpoolWatcher("mx1", str(tmp_path), {})
    assert len(watcher.scan()) == 40
    entries = list(watcher.files.values())
    assert len({id(e.directory) for e in entries}) == 1
    assert len({id(e.entry.sender) for e in entries}) == 1
    assert len({id(a) for e in entries for a in e.entry.recipients}) == len(
        entries[0].entry.recipients
    )
