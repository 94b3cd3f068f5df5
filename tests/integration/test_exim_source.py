"""EximSource against a real, private Exim 4.96, and against fakes where Exim cannot fail so.

The real Exim is Debian 12's packages unpacked (not installed: they conflict with Postfix)
into ``.venv/exim`` or ``$MAILWATCH_EXIM_PREFIX``; tests that need it skip, saying why, only
when it is not there. Faults a real Exim will not produce on demand (a hang, garbage, denied
access, a message removed between listing and reading) come from *fake* ``exim`` scripts, each
named ``fake_exim_*`` after what it injects; the golden replay serves tests/data/exim.
"""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailwatch.app.scanner import Scanner
from mailwatch.config.settings import load
from mailwatch.errors import SourceCommandFailed, SourceTimeout, SourceUnavailable
from mailwatch.parsing.exim import arrival_from_id
from mailwatch.sandbox.exim import PrivateExim
from mailwatch.sandbox.postfix import make_message
from mailwatch.sources.exim import CachedSpool, EximSource, cached_from_message
from mailwatch.store import Store

pytestmark = pytest.mark.exim

DATA = Path(__file__).resolve().parents[1] / "data" / "exim"
REFUSED = "H=127.0.0.1 [127.0.0.1] Connection refused"
GOLDEN_SERVER = f"""\
[ "$1" = "-C" ] && shift 2
echo "$*" >> "${{CALLS:-/dev/null}}"
case "$1" in
  -bpru) exec cat {DATA}/bpru.txt ;;
  -Mvh|-Mvl) f={DATA}/${{1#-}}/$2.txt
    [ -f "$f" ] && exec cat "$f"
    echo "Failed to open input file for $2-H: No such file or directory"; exit 1 ;;
  *) echo "fake exim: unexpected $*" >&2; exit 2 ;;
esac
"""


def fake_exim(directory: Path, name: str, body: str) -> str:
    """Write an executable ``fake_exim_*`` shell script and return its path."""
    script = directory / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def golden_with(option: str, case: str) -> str:
    """The golden server with its answer to ``option`` (``-Mvh``/``-Mvl``) replaced by ``case``."""
    other = "-Mvl" if option == "-Mvh" else "-Mvh"
    return GOLDEN_SERVER.replace("  -Mvh|-Mvl)", f"  {option}) {case} ;;\n  {other})")


def golden_ids() -> dict[str, str]:
    """Scenario label → id of the captured golden queue."""
    rows = (line.split("\t") for line in (DATA / "manifest.tsv").read_text().splitlines())
    return {row[0]: row[1] for row in rows}


def calls(path: Path) -> list[str]:
    """The argument lists a fake exim was called with (one per line)."""
    return path.read_text().splitlines() if path.exists() else []


def real_source(exim: PrivateExim, cache: dict[str, CachedSpool] | None = None) -> EximSource:
    """An EximSource pointed at the private Exim (wrapper command plus ``-C``)."""
    return EximSource("mx1", exim=str(exim.command), config=exim.config_path, header_cache=cache)


class TestRealExim:
    """A real Exim's queue, as EximSource reports it."""

    async def test_probe_reports_queue_frozen_and_reasons(self, exim: PrivateExim) -> None:
        """Messages carry exact arrival, decoded subject, queue, and the real defer reasons."""
        recall = exim.queue_message(make_message("OFFICIAL-SENSITIVE: Emergency recall X1"))
        partial = exim.queue_message(
            make_message("Court results", to="duty@local.invalid, courts@justice.example")
        )
        frozen = exim.queue_message(make_message("MAPPA level 3 minutes"))
        exim.run_queue()
        exim.freeze(frozen)
        observation = await real_source(exim).probe()
        by_id = {m.queue_id: m for m in observation.messages}
        assert set(by_id) == {recall, partial, frozen}
        assert (observation.headers_read, observation.malformed) == (3, 0)
        assert by_id[recall].key == f"mx1/{recall}"
        assert by_id[recall].arrival == arrival_from_id(recall)
        assert (by_id[recall].subject, by_id[recall].marking) == (
            "Emergency recall X1",
            "OFFICIAL-SENSITIVE",
        )
        assert by_id[recall].recipients[0].delay_reason == REFUSED
        assert [r.address for r in by_id[partial].recipients] == ["courts@justice.example"]
        assert (by_id[frozen].queue, by_id[frozen].wait_reason) == ("frozen", f"frozen: {REFUSED}")
        assert {by_id[recall].queue, by_id[partial].queue} == {"queue"}

    async def test_rescan_reads_only_what_changed(self, exim: PrivateExim) -> None:
        """A rescan reads no spool files; a new message costs one; a gone one leaves the cache."""
        first = exim.queue_message(make_message("Part A recall request"))
        second = exim.queue_message(make_message("Court results"))
        source = real_source(exim)
        assert (await source.probe()).headers_read == 2
        assert (await source.probe()).headers_read == 0
        third = exim.queue_message(make_message("Breach referral"))
        exim.remove(first)
        observation = await source.probe()
        assert observation.headers_read == 1
        assert {m.queue_id for m in observation.messages} == {second, third}
        assert set(source.header_cache) == {f"mx1/{second}", f"mx1/{third}"}

    async def test_reason_arrives_after_the_first_attempt(self, exim: PrivateExim) -> None:
        """A message seen before any attempt gets its reason later without re-reading headers."""
        queue_id = exim.queue_message(make_message("Risk escalation"))
        source = real_source(exim)
        before = await source.probe()
        assert before.messages[0].delay_reason is None
        exim.run_queue()
        after = await source.probe()
        assert after.headers_read == 0
        assert after.messages[0].queue_id == queue_id
        assert after.messages[0].delay_reason == REFUSED

    async def test_frozen_is_stuck_at_once_and_thaw_releases(
        self, exim: PrivateExim, tmp_store_path: Path
    ) -> None:
        """A frozen message is stuck whatever its age; thawed, it is judged by its SLA again."""
        queue_id = exim.queue_message(make_message("Weekly digest"))
        exim.freeze(queue_id)
        source = real_source(exim)
        with Store(tmp_store_path) as store:
            scanner = Scanner(load(None).classifier(), store)
            (verdict,) = (await scanner.scan(source)).verdicts
            assert (verdict.stuck, verdict.reason) == (True, "frozen")
            exim.thaw(queue_id)
            (verdict,) = (await scanner.scan(source)).verdicts
            assert (verdict.message.queue, verdict.stuck) == ("queue", False)

    async def test_message_removed_before_its_headers_are_read_is_skipped(
        self, exim: PrivateExim, tmp_path: Path
    ) -> None:
        """fake_exim_removes_before_mvh deletes one message just before -Mvh: it is skipped."""
        victim = exim.queue_message(make_message("Court results"))
        survivor = exim.queue_message(make_message("Part A recall request"))
        fake = fake_exim(
            tmp_path,
            "fake_exim_removes_before_mvh",
            f'[ "$3" = -Mvh ] && [ "$4" = {victim} ] && {exim.command} "$1" "$2" -Mrm "$4" >&2\n'
            f'exec {exim.command} "$@"',
        )
        source = EximSource("mx1", exim=fake, config=exim.config_path, full_listing_every=0)
        observation = await source.probe()
        assert [m.queue_id for m in observation.messages] == [survivor]
        assert observation.headers_read == 1
        assert f"mx1/{victim}" not in source.header_cache

    async def test_bad_config_is_a_failed_command(self, exim: PrivateExim, tmp_path: Path) -> None:
        """Exim refusing a missing -C file raises SourceCommandFailed with its exit status."""
        source = EximSource("mx1", exim=str(exim.command), config=tmp_path / "missing.conf")
        with pytest.raises(SourceCommandFailed) as raised:
            await source.probe()
        assert raised.value.returncode != 0
        assert "-bpru exited" in str(raised.value)

    async def test_restart_primed_from_store_reads_nothing(
        self, exim: PrivateExim, tmp_store_path: Path
    ) -> None:
        """A cache rebuilt from the store's queued messages needs no spool reads after restart."""
        exim.queue_message(make_message("Part A recall request"))
        exim.run_queue()
        with Store(tmp_store_path) as store:
            await Scanner(load(None).classifier(), store).scan(real_source(exim))
            cache = {m.key: cached_from_message(m) for m in store.queued("mx1")}
        observation = await real_source(exim, cache).probe()
        assert observation.headers_read == 0
        assert observation.messages[0].delay_reason == REFUSED
        assert observation.messages[0].subject == "Part A recall request"


class TestGoldenReplay:
    """fake_exim_golden replays the captured Exim output (runs without a real Exim)."""

    async def test_probe_over_golden_queue(self, tmp_path: Path) -> None:
        """The captured queue gives 12 messages and 1 malformed block, spool read once each."""
        log = tmp_path / "calls"
        fake = fake_exim(tmp_path, "fake_exim_golden", f"CALLS={log}\n{GOLDEN_SERVER}")
        captured_at = datetime.fromtimestamp(int((DATA / "captured-at.txt").read_text()), UTC)
        source = EximSource(
            "mx1",
            full_listing_every=0,
            exim=fake,
            config=Path("/etc/exim4/x.conf"),
            clock=lambda: captured_at,
        )
        observation = await source.probe()
        by_id = {m.queue_id: m for m in observation.messages}
        by_label = {label: by_id[i] for label, i in golden_ids().items() if i in by_id}
        assert len(observation.messages) == 12
        assert (observation.malformed, observation.headers_read) == (1, 12)
        frozen = {label for label, m in by_label.items() if m.queue == "frozen"}
        assert frozen == {"frozen_admin", "frozen_self"}
        reason = by_label["frozen_self"].wait_reason
        assert reason == "frozen: remote host address is the local host"
        assert by_label["team"].recipients[0].delay_reason == REFUSED
        assert by_label["smtp"].marking == "OFFICIAL-SENSITIVE"
        assert (captured_at - by_label["frozen_admin"].arrival).days == 4
        assert sum(c.startswith("-Mvh") for c in calls(log)) == 12
        log.unlink()
        again = await source.probe()
        assert (again.headers_read, again.messages) == (0, observation.messages)
        assert calls(log) == ["-bpru"]

    async def test_spool_reads_are_bounded(self, tmp_path: Path) -> None:
        """fake_exim_slow_mvh records overlapping -Mvh calls: never more than ``concurrency``."""
        log = tmp_path / "calls"
        slow = golden_with(
            "-Mvh", f'echo + >> "$CALLS"; sleep 0.2; echo - >> "$CALLS"; exec cat {DATA}/Mvh/$2.txt'
        )
        fake = fake_exim(tmp_path, "fake_exim_slow_mvh", f"CALLS={log}\n{slow}")
        await EximSource(
            "mx1", full_listing_every=0, exim=fake, concurrency=4, read_logs=False
        ).probe()
        running = peak = 0
        for line in calls(log):
            running += {"+": 1, "-": -1}.get(line, 0)
            peak = max(peak, running)
        assert peak == 4


class TestFaults:
    """Each failure is a typed error; bad output is counted, not fatal."""

    async def test_missing_command_is_unavailable(self, tmp_path: Path) -> None:
        """An exim that does not exist raises SourceUnavailable (a ConnectionError)."""
        source = EximSource("mx1", full_listing_every=0, exim=str(tmp_path / "no-such-exim"))
        with pytest.raises(SourceUnavailable) as raised:
            await source.probe()
        assert isinstance(raised.value, ConnectionError)

    async def test_hung_exim_times_out(self, tmp_path: Path) -> None:
        """fake_exim_hangs never answers: the probe times out and kills it."""
        fake = fake_exim(tmp_path, "fake_exim_hangs", "exec sleep 30")
        started = datetime.now(UTC)
        with pytest.raises(SourceTimeout):
            await EximSource("mx1", full_listing_every=0, exim=fake, timeout=0.3).probe()
        assert (datetime.now(UTC) - started).total_seconds() < 5

    @pytest.mark.parametrize(
        ("name", "body", "error"),
        [
            ("fake_exim_denied", 'echo "exim: permission denied" >&2; exit 1', SourceUnavailable),
            ("fake_exim_mvh_denied", golden_with("-Mvh", 'echo "Permission denied"; exit 1'),
             SourceUnavailable),
            ("fake_exim_mvl_denied", golden_with("-Mvl", 'echo "Permission denied"; exit 1'),
             SourceUnavailable),
            ("fake_exim_mvh_fails", golden_with("-Mvh", 'echo "Spool read error" >&2; exit 2'),
             SourceCommandFailed),
            ("fake_exim_hung_mvh", golden_with("-Mvh", "exec sleep 30"), SourceTimeout),
        ],
    )  # fmt: skip
    async def test_typed_errors(
        self, tmp_path: Path, name: str, body: str, error: type[Exception]
    ) -> None:
        """Denied access is SourceUnavailable; other exits SourceCommandFailed; hangs time out."""
        source = EximSource(
            "mx1", full_listing_every=0, exim=fake_exim(tmp_path, name, body), timeout=1
        )
        with pytest.raises(error):
            await source.probe()
        assert source.header_cache == {}

    async def test_garbage_is_counted_and_stderr_kept(self, tmp_path: Path) -> None:
        """fake_exim_garbage adds junk blocks and a stderr line: both reported, not fatal."""
        listing = tmp_path / "listing.txt"
        junk = "not exim output\n\n 0m   401 1xXdsY-000000-00 <a@b.example>\n"
        listing.write_text((DATA / "bpru.txt").read_text() + junk)
        body = GOLDEN_SERVER.replace(
            f"exec cat {DATA}/bpru.txt", f"cat {listing}; echo 'LOG: MAIN PANIC odd' >&2"
        )
        observation = await EximSource(
            "mx1", full_listing_every=0, exim=fake_exim(tmp_path, "fake_exim_garbage", body)
        ).probe()
        assert (len(observation.messages), observation.malformed) == (12, 3)
        assert observation.warnings == ("LOG: MAIN PANIC odd",)

    async def test_message_logs_disabled_stops_asking(self, tmp_path: Path) -> None:
        """fake_exim_no_msglogs: once Exim says message_logs is false, -Mvl is not run again."""
        log = tmp_path / "calls"
        no_logs = golden_with(
            "-Mvl",
            'echo "Failed to open msglog file for $2: No such file or directory"\n'
            '    echo "(No message logs are being created because the message_logs option is'
            ' false.)"; exit 1',
        )
        body = f"CALLS={log}\n{no_logs}"
        source = EximSource(
            "mx1",
            full_listing_every=0,
            exim=fake_exim(tmp_path, "fake_exim_no_msglogs", body),
            concurrency=1,
        )
        observation = await source.probe()
        assert all(m.delay_reason is None for m in observation.messages if m.queue != "frozen")
        assert sum(c.startswith("-Mvl") for c in calls(log)) == 1
        assert not source.read_logs
