"""Reason categories: the table, on real reason wordings (source cited per row)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.core.reasons import ReasonCategory, categorize, enhanced_code

PF = "Postfix source"  # postfix/src/smtp/*.c and qmgr; wording as Postfix 3.x prints it

REAL: list[tuple[str, str, str]] = [
    # (reason, expected category, where the wording comes from)
    # --- Postfix delay reasons (postqueue -j delay_reason / mail log status=deferred (...))
    ("connect to mx.justice.example[192.0.2.10]:25: Connection refused", "connect",
     f"{PF} smtp_connect.c 'connect to %s[%s]:%d: %m'; tests/data/maillog"),
    ("connect to mx.justice.example[192.0.2.10]:25: Connection timed out", "connect",
     "oneuptime.com/blog/post/2026-03-20-postfix-troubleshoot-connection-timeouts"),
    ("connect to mx.justice.example[192.0.2.10]:25: No route to host", "connect",
     "oneuptime.com/blog/post/2026-03-20-postfix-troubleshoot-connection-timeouts"),
    ("Host or domain name not found. Name service error for name=justice.example type=MX: "
     "Host not found, try again", "dns",
     f"{PF} smtp_addr.c; cr0x.net/en/postfix-host-not-found-dns"),
    ("Host or domain name not found. Name service error for name=mx.justice.example type=AAAA:"
     " Host found but no data record of requested type", "dns", f"{PF} smtp_addr.c"),
    ("lost connection with mx.justice.example[192.0.2.10] while receiving the initial server "
     "greeting", "connect", f"{PF} smtp_proto.c 'lost connection with %s while %s'"),
    ("conversation with mx.justice.example[192.0.2.10] timed out while receiving the initial "
     "server greeting", "connect", f"{PF} smtp_proto.c 'conversation with %s timed out while %s'"),
    ("TLS is required, but was not offered by host mx.justice.example[192.0.2.10]", "tls",
     f"{PF} smtp_proto.c"),
    ("Cannot start TLS: handshake failure", "tls", f"{PF} smtp_proto.c"),
    ("Server certificate not verified", "tls", f"{PF} smtp_proto.c (secure/verify levels)"),
    ("SASL authentication failed; server relay.probation.example[192.0.2.20] said: 535 5.7.8 "
     "Error: authentication failed: authentication failure", "auth", f"{PF} smtp_sasl_glue.c"),
    ("SASL authentication failed; cannot authenticate to server relay.probation.example"
     "[192.0.2.20]: no mechanism available", "auth", f"{PF} smtp_sasl_glue.c"),
    ("delivery temporarily suspended: connect to mx.justice.example[192.0.2.10]:25: "
     "Connection refused", "connect", f"{PF} qmgr 'delivery temporarily suspended: %s'"),
    ("host mx.justice.example[192.0.2.10] said: 450 4.2.0 <om@justice.example>: Recipient "
     "address rejected: Greylisted, see http://postgrey.schweikert.ch/help/justice.example.html"
     " (in reply to RCPT TO command)", "greylisted", "postgrey reply as Postfix logs it"),
    # --- Exim (-Mvl message log / main log)
    ("R=dnslookup T=remote_smtp defer (-44) H=mx.justice.example [192.0.2.10]: SMTP error from "
     "remote mail server after RCPT TO:<om@justice.example>: 451 4.7.1 Greylisted", "greylisted",
     "Exim -Mvl defer line form (pastebin.com/6G7q8H39)"),
    ("R=lookuphost T=remote_smtp defer (-44) H=mx2.inmotionhosting.com [192.249.122.52]:25: "
     "SMTP error from remote mail server after RCPT TO:<docs@inmotionhosting.com>: "
     "451-216.194.173.80 is not yet authorized to deliver mail from\n451 <chris@gocleanse.net> "
     "to <docs@inmotionhosting.com>. Please try later.", "greylisted", "pastebin.com/6G7q8H39"),
    ("ppcs@justice.example R=dead_relay T=dead_smtp defer (111): Connection refused", "connect",
     "tests/data/exim/Mvl (captured from Exim 4.9x)"),
    ("all hosts for 'justice.example' have been failing for a long time (and retry time not "
     "reached)", "connect", "Exim spec ch. retry ('have been failing for a long time')"),
    ("retry time not reached for any host", "unknown",
     "support.cpanel.net 360052457313 'T=remote_smtp defer (-53): retry time not reached'"),
    # --- big providers
    ("host justice-example.mail.protection.outlook.com[192.0.2.30] said: 451 4.7.500 Server busy."
     " Please try again later from [198.51.100.7]. (S77714) (in reply to MAIL FROM command)",
     "throttled", "cloudmailin.com/smtp-troubleshooter/451-error; bentonow.com 451-4-7-500"),
    ("host aspmx.l.google.com[192.0.2.40] said: 421 4.7.0 Try again later, closing connection. "
     "(EHLO) - gsmtp (in reply to EHLO command)", "throttled", "Gmail SMTP errors (issue brief)"),
    ("host gmail-smtp-in.l.google.com[192.0.2.41] said: 452 4.2.2 The email account that you "
     "tried to reach is over quota. Please direct the recipient to "
     "https://support.google.com/mail/?p=OverQuotaTemp", "mailbox",
     "suped.com Gmail '452 4.2.2 ... over quota'"),
    ("host mx.justice.example[192.0.2.10] said: 550 5.7.1 Message rejected due to SPF policy "
     "(in reply to end of DATA command)", "policy", "issue brief ('550 5.7.1 ... SPF')"),
    ("SMTP error from remote mail server after end of data: 421-4.7.28 [198.51.100.7 15] Our "
     "system has detected an unusual rate of\\n421-4.7.28 unsolicited mail originating from your"
     " IP address. To protect our\\n421-4.7.28 users from spam, mail sent from your IP address "
     "has been temporarily\\n421-4.7.28 rate limited.", "throttled",
     "pastebin.com/6G7q8H39 (4.7.0 form; Gmail now uses 4.7.28)"),
    ("host gmail-smtp-in.l.google.com[74.125.195.27] said: 550-5.7.1 [31.14.138.158 1] Our "
     "system has detected an unusual rate of 550-5.7.1 unsolicited mail originating from your IP"
     " address. To protect our 550-5.7.1 users from spam, mail sent from your IP address has "
     "been blocked.", "policy", "pastebin.com/SWVXknth (permanent: blocked, not throttled)"),
    ("host mx-eu.mail.am0.yahoodns.net[192.0.2.50] said: 421 4.7.0 [TSS04] Messages from "
     "198.51.100.7 temporarily deferred due to unexpected volume or user complaints - "
     "4.16.55.1; see https://postmaster.yahooinc.com/error-codes (in reply to MAIL FROM command)",
     "throttled", "secuserve.zammad.com 397; smtpfieldmanual.com/provider/yahoo/421/4.7.0"),
    ("451 4.7.1 <om@justice.example>: Recipient address rejected: Intentional policy rejection,"
     " please try again later", "policy", "cloudmailin.com/smtp-troubleshooter/451-error"),
    ("451 4.4.2 Timeout - closing connection.", "connect",
     "cloudmailin.com/smtp-troubleshooter/451-error"),
    ("451 4.2.0 192.0.2.9 blocked AUP#CDRBL", "policy",
     "cloudmailin.com/smtp-troubleshooter/451-error (a blocklist, whatever its 4.2.0)"),
    ("550 5.7.606 Access denied, banned sending IP [198.51.100.7]", "policy",
     "Microsoft 365 NDR 5.7.606 wording"),
    # --- mailbox sources and queues
    ("unread in INBOX", "unread", "mailwatch/sources/imap.py wait reason"),
    ("unanswered in Referrals", "unread", "mailwatch/sources/imap.py wait reason"),
]  # fmt: skip


@pytest.mark.parametrize(("reason", "expected", "source"), REAL, ids=[r[2][:40] for r in REAL])
def test_real_reason_is_categorized(reason: str, expected: str, source: str) -> None:
    """Each real wording gets its category (the row names where the wording is from)."""
    assert categorize(reason) == ReasonCategory(expected), source


@pytest.mark.parametrize(
    ("queue", "reason", "expected"),
    [
        ("hold", None, "held"),
        ("hold", "connect to x[192.0.2.1]:25: Connection refused", "held"),
        ("frozen", "remote host address is the local host", "frozen"),
        ("deferred", None, "unknown"),
        ("deferred", "", "unknown"),
    ],
)
def test_queue_says_why(queue: str, reason: str | None, expected: str) -> None:
    """Hold and frozen queues say why whatever the text; no text is unknown."""
    assert categorize(reason, queue=queue) == ReasonCategory(expected)


@pytest.mark.parametrize(
    ("relayhost", "reason", "expected"),
    [
        ("[127.0.0.1]:2525", "connect to 127.0.0.1[127.0.0.1]:2525: Connection refused",
         "relay_down"),
        ("[smarthost.probation.example]:587",
         "connect to smarthost.probation.example[192.0.2.20]:587: Connection timed out",
         "relay_down"),
        ("smarthost.probation.example",
         "Host or domain name not found. Name service error for name=smarthost.probation.example"
         " type=A: Host not found", "relay_down"),
        ("[smarthost.probation.example]:587",
         "connect to mx.justice.example[192.0.2.10]:25: Connection refused", "connect"),
        ("[smarthost.probation.example]:587",
         "host smarthost.probation.example[192.0.2.20] said: 451 4.7.500 Server busy", "throttled"),
        ("[smarthost.probation.example]:587",
         "connect to smarthost.probation.example.evil[192.0.2.99]:25: Connection refused",
         "connect"),
    ],
)  # fmt: skip
def test_relayhost_unreachable_is_relay_down(relayhost: str, reason: str, expected: str) -> None:
    """A connect/DNS failure naming the configured relayhost is relay_down."""
    assert categorize(reason, relayhost=relayhost) == ReasonCategory(expected)


@pytest.mark.parametrize(
    ("text", "code"),
    [("said: 451 4.7.500 Server busy", "4.7.500"), ("421-4.7.28 [1.2.3.4]", "4.7.28"),
     ("dsn=5.1.1", "5.1.1"), ("from 192.0.2.1 port 25", None), ("version 4.16.55.1", None),
     ("Status: 4.4.1.", "4.4.1")],
)  # fmt: skip
def test_enhanced_code(text: str, code: str | None) -> None:
    """The first RFC 3463 code is found; IP addresses and versions are not codes."""
    assert enhanced_code(text) == code


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.none(), st.text(max_size=3000)),
    st.one_of(st.none(), st.sampled_from(["hold", "frozen", "deferred", "active", "INBOX"])),
    st.one_of(st.none(), st.text(max_size=40)),
)
def test_never_raises_and_always_a_member(
    reason: str | None, queue: str | None, relayhost: str | None
) -> None:
    """Any text, queue and relayhost: a member of the fixed set, never an error."""
    assert categorize(reason, queue=queue, relayhost=relayhost) in set(ReasonCategory)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["4.", "7.", "5", "0", ".", " ", "-", "[", "]", ":", "a"])))
def test_code_like_noise_never_raises(parts: list[str]) -> None:
    """Long runs of code-like noise are read without error."""
    assert categorize("".join(parts) * 50) in set(ReasonCategory)
