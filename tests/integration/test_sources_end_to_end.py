"""Every source kind in one configuration: ``mailwatch scan``, then ``mailwatch stuck``.

Real servers throughout: a private Postfix (its queue and its log), a private Exim, the
session's Dovecot (a watched mailbox and a canary mailbox) and a relay that bounces one
domain. Each source's stuck mail must come out of the command-line tools with its reason:
unread in a mailbox, frozen in Exim, bounced according to the mail log, a canary lost on a
broken path. Nothing is called in-process but the CLI itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from integration.conftest import Mailbox, RejectingSink
from mailwatch.cli import cli
from mailwatch.sandbox.dovecot import PrivateDovecot
from mailwatch.sandbox.exim import PrivateExim
from mailwatch.sandbox.postfix import PrivatePostfix, free_port, make_message

pytestmark = [pytest.mark.postfix, pytest.mark.imap, pytest.mark.exim]


@pytest.fixture(name="mta")
def fixture_mta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostfix]:
    """A Postfix whose relay is closed (mail defers) and whose ``gated.example`` hop is broken."""
    instance = PrivatePostfix.create(
        tmp_path_factory.mktemp("e2e-postfix"),
        transports={"gated.example": f"lmtp:inet:127.0.0.1:{free_port()}"},  # nobody listens
    )
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def _config(
    tmp_path: Path, mta: PrivatePostfix, exim: PrivateExim, duty: Mailbox, canary: Mailbox
) -> Path:
    dovecot = duty.dovecot
    path = tmp_path / "mailwatch.toml"
    path.write_text(f"""\
[store]
path = "{tmp_path / "db.sqlite"}"

[sources.mta1]
type = "postfix"
config_dir = "{mta.config_dir}"

[sources.mta1_log]
type = "maillog"
path = "{mta.log_path}"
outcomes_for = "mta1"

[sources.exim1]
type = "exim"
exim = "{exim.command}"
config = "{exim.config_path}"

[sources.duty_inbox]
type = "imap"
host = "127.0.0.1"
port = {dovecot.imap_port}
security = "starttls"
ca_file = "{dovecot.ca_file}"
user = "{duty.user}"
password = {{ env = "E2E_DUTY_PASSWORD" }}

[sources.mta1_to_canary]
type = "canary"
submission_host = "127.0.0.1"
submission_port = {mta.smtp_port}
submission_security = "none"
sender = "mailwatch@probation.example"
recipient = "{canary.user}@gated.example"
imap_host = "127.0.0.1"
imap_port = {dovecot.imap_port}
ca_file = "{dovecot.ca_file}"
imap_user = "{canary.user}"
imap_password = {{ env = "E2E_CANARY_PASSWORD" }}
timeout = "1s"
io_timeout = "10s"
""")
    return path


def _run(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["-c", str(config), *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


class TestEverySourceKind:
    """Four kinds of stuck mail, four sources, one scan command and one stuck command."""

    def test_scan_then_stuck_lists_each_source_with_its_reason(
        self,
        tmp_path: Path,
        mta: PrivatePostfix,
        exim: PrivateExim,
        dovecot_instance: PrivateDovecot,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Unread in INBOX, frozen, bounced (from the log), canary lost: all listed."""
        duty = Mailbox(dovecot_instance, *dovecot_instance.fresh_user())
        canary = Mailbox(dovecot_instance, *dovecot_instance.fresh_user())
        monkeypatch.setenv("E2E_DUTY_PASSWORD", duty.password)
        monkeypatch.setenv("E2E_CANARY_PASSWORD", canary.password)
        duty.deliver(
            "URGENT: emergency recall of J Smith", received=datetime.now(UTC) - timedelta(days=1)
        )
        frozen = exim.queue_message(make_message("MAPPA level 3 meeting minutes"))
        exim.freeze(frozen)
        mta.inject([make_message("Emergency recall X7", to="ppcs@reject.example")])
        mta.wait_for_queue(1)
        config = _config(tmp_path, mta, exim, duty, canary)

        first = _run(config, "scan", "--json")  # the recall is seen deferred; a canary leaves
        assert {s["source"]: s["ok"] for s in first} == dict.fromkeys(
            ["mta1", "mta1_log", "exim1", "duty_inbox", "mta1_to_canary"], True
        )
        controller = Controller(RejectingSink(), hostname="127.0.0.1", port=mta.relay_port)
        controller.start()
        try:
            mta.flush()  # the recall bounces; the canary stays deferred at the broken hop
            queued = mta.wait_for_queue(1, timeout=30)
            assert [e["recipients"][0]["address"] for e in queued] == [  # type: ignore[index]
                f"{canary.user}@gated.example"
            ]
        finally:
            controller.stop()
        time.sleep(1.1)  # past the canary's timeout
        second = _run(config, "scan", "--json")
        assert all(s["ok"] for s in second), second

        stuck = _run(config, "stuck", "--json")

        by_source: dict[str, list[dict[str, Any]]] = {}
        for item in stuck:
            by_source.setdefault(item["source"], []).append(item)
        (unread,) = by_source["duty_inbox"]
        assert (unread["class"], unread["queue"], unread["reason"]) == (
            "recall_emergency", "INBOX", "unread in INBOX"
        )  # fmt: skip
        (in_exim,) = by_source["exim1"]
        assert (in_exim["queue_id"], in_exim["queue"], in_exim["reason"]) == (
            frozen, "frozen", "frozen"
        )  # fmt: skip
        bounced = [i for i in by_source["mta1"] if i["outcome"] == "bounced"]
        assert [b["class"] for b in bounced] == ["recall_emergency"]
        assert bounced[0]["reason"].startswith("bounced: ")
        assert "***@reject.example" in bounced[0]["reason"]  # the address is masked
        lost = [i for i in by_source["mta1_to_canary"] if i["queue"] == "lost"]
        assert [(i["class"], i["priority"], i["reason"]) for i in lost] == [
            ("canary", "P1", "canary lost")
        ]
        assert set(by_source) == {"duty_inbox", "exim1", "mta1", "mta1_to_canary"}
