"""The replay's mail and clock, pure: which messages arrive where, and the time compression.

Time compression is configuration only: every SLA of the shipped taxonomy and every interval
is divided by ``scale`` in the configuration mailwatch is given (``scaled_taxonomy``); the
clocks are real. At the default scale of 60 one real hour is one minute of the replay.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from email.message import EmailMessage

HUB, RELAY, RECALLS, COURTS = "hub", "relay", "recalls_inbox", "courts_inbox"
"""mailwatch's source names: the two MTAs and the two functional mailboxes."""
CASES_DOMAIN = "cases.probation.example"
"""Delivered by the relay into Dovecot over LMTP (the functional mailboxes)."""
CANARY_DOMAIN = "canary.probation.example"

# (class, weight per 10,000 queued messages, subject template, recipient); {n} is a number.
# Synthetic: every name and reference is invented. Ordinary mail dominates; a few dozen P1.
HUB_MIX: tuple[tuple[str, float, str, str], ...] = (
    ("general", 7000, "Team update {n}: rota and leave", "everyone@probation.example"),
    ("court_report", 700, "Pre-sentence report request - case X{n:06d}",
     "courts@justice.example"),
    ("allocation", 600, "Case allocation - X{n:06d} to new practitioner",
     "alloc@probation.example"),
    ("breach", 450, "Breach of licence conditions - X{n:06d}", "enforce@justice.example"),
    ("release", 350, "Release notification - X{n:06d}", "om@probation.example"),
    ("court_result", 300, "Court results {n}", "results@justice.example"),
    ("mappa", 150, "MAPPA level 2 meeting minutes {n}", "police.ppu@police.example"),
    ("victim_liaison", 100, "Victim liaison contact - X{n:06d}", "vlu@probation.example"),
    ("recall_emergency", 8, "OFFICIAL-SENSITIVE: Emergency recall - case X{n:06d}",
     "ppcs.recalls@justice.example"),
    ("risk_escalation", 8, "OFFICIAL-SENSITIVE Risk escalation: RoSH increased to high X{n:06d}",
     "nps.duty@justice.example"),
    ("recall_notification", 5, "Recall notification - X{n:06d} returned to custody",
     "ppcs@justice.example"),
    ("safeguarding", 5, "MASH referral - child protection concern X{n:06d}",
     "mash@council.example"),
)  # fmt: skip
MAILBOX_MIX: dict[str, tuple[str, str, int]] = {
    # mailbox source -> (class, subject template, messages per 10,000 queued)
    RECALLS: ("recall_standard", "RE: Part A recall request - X{n:06d}", 10),
    COURTS: ("court_result", "Court results {n} - magistrates list", 150),
}
RELAY_SHARE = 0.15
"""Of the queued messages, the share submitted at the regional relay (its onward link is down)."""


@dataclass(frozen=True, slots=True)
class Planned:
    """One message the replay sends: where it enters, its intended class, and its parts."""

    entry: str
    """``hub``, ``relay`` (queued there) or a mailbox source (delivered into it by the relay)."""
    class_name: str
    subject: str
    recipient: str


def plan_messages(total: int, seed: int = 2014) -> list[Planned]:
    """``total`` queued messages (hub and relay) plus the mailboxes' mail, in arrival order.

    The mix is ``HUB_MIX`` (the same at the relay); every class gets at least one message, so
    even a small replay has its P1 mail. The order is shuffled with a fixed seed.
    """
    rng = random.Random(seed)
    weight = sum(w for _, w, _, _ in HUB_MIX)
    planned: list[Planned] = []
    number = 1
    for class_name, share, template, recipient in HUB_MIX:
        count = max(1, round(total * share / weight))
        for _ in range(count):
            entry = RELAY if rng.random() < RELAY_SHARE else HUB
            planned.append(Planned(entry, class_name, template.format(n=number), recipient))
            number += 1
    for source, (class_name, template, per) in MAILBOX_MIX.items():
        user = source.removesuffix("_inbox")
        for _ in range(max(2, round(total * per / 10_000))):
            planned.append(
                Planned(source, class_name, template.format(n=number), f"{user}@{CASES_DOMAIN}")
            )
            number += 1
    rng.shuffle(planned)
    return planned


def build_message(
    planned: Planned, index: int | None = None, sender: str = "om.north@probation.example"
) -> EmailMessage:
    """The RFC 5322 message for ``planned`` (a synthetic body); ``index`` names its Message-ID."""
    message = EmailMessage()
    if index is not None:
        message["Message-ID"] = f"<replay-{index}@replay.invalid>"
    message["From"] = sender
    message["To"] = planned.recipient
    message["Subject"] = planned.subject
    message.set_content("Synthetic replay message (mailwatch bench/replay.py).\n")
    return message


_SPAN = re.compile(r'^(stuck_after\s*=\s*)"([^"]+)"', re.MULTILINE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def span_seconds(text: str) -> float:
    """Seconds of a taxonomy span: ``45s``, ``10m``, ``2h10m``, ``1d``; a business day is 1d."""
    text = text.strip()
    days = re.fullmatch(r"(\d+)\s*business\s+days?", text)
    if days:
        return int(days.group(1)) * 86400.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"not a span: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def scaled(seconds: float, scale: float, floor: float = 1.0) -> int:
    """``seconds`` compressed by ``scale``, whole seconds, at least ``floor``."""
    return max(math.ceil(floor), round(seconds / scale))


def scaled_taxonomy(taxonomy: str, scale: float) -> tuple[str, dict[str, int]]:
    """The shipped taxonomy with every ``stuck_after`` divided by ``scale``; and the SLAs.

    The text is the same TOML a ``mailwatch.toml`` takes under ``[classes.*]`` (with
    ``include_default_classes = false``): only the spans change.
    """
    slas: dict[str, int] = {}
    current: list[str] = []

    def replace(match: re.Match[str]) -> str:
        seconds = scaled(span_seconds(match.group(2)), scale)
        slas[current[-1]] = seconds
        return f'{match.group(1)}"{seconds}s"'

    out = []
    for line in taxonomy.splitlines(keepends=True):
        header = re.match(r"^\[classes\.([A-Za-z0-9_]+)\]", line)
        if header:
            current.append(header.group(1))
        out.append(_SPAN.sub(replace, line))
    return "".join(out), slas
