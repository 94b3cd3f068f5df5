"""Generate the tuning corpus (tests/data/classification/corpus): run once, files committed.

    python tests/data/classification/generate_corpus.py tests/data/classification/corpus

Subjects are drawn from phrasings of probation mail (recalls, risk escalation, safeguarding,
MAPPA, breach, allocation, release, court, victim liaison) and from lookalikes (product, vehicle
and IT recalls, Outlook recall notices, training and policy mail about the same topics, other
kinds of risk) and ordinary office mail. A seeded random picks names (all invented), case
references (``Z`` + digits: not a real CRN format), protective markings, reply prefixes and
noise (separators, case, one-letter typos, zero-width spaces), so the corpus is reproducible.
"""

from __future__ import annotations

import hashlib
import random
import sys
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

SURNAMES = [
    "Fakeman",
    "Testwell",
    "Samplesby",
    "Placeholt",
    "Mockridge",
    "Dummett",
    "Exampleton",
    "Madeupson",
    "Nobodie",
    "Fictionby",
    "Pretendo",
    "Inventor",
    "Notreal",
    "Synthetic",
]
INITIALS = "ABCDEFGHJKLMNPRSTW"
TOWNS = ["Fakeville", "Northshire", "Sampleford", "Testbury", "Mockton", "Exampleham"]
PRISONS = ["HMP Fakeville", "HMP Sampleford", "HMP Mockton", "HMYOI Testbury"]
MARKINGS = [
    "",
    "",
    "",
    "OFFICIAL-SENSITIVE: ",
    "OFFICIAL SENSITIVE - ",
    "[OFFICIAL-SENSITIVE] ",
    "OFFICIAL: ",
    "RESTRICTED - ",
    "OFFICIAL-SENSITIVE PERSONAL: ",
    "CJSM: ",
]
PREFIXES = ["", "", "", "", "RE: ", "FW: ", "Fwd: ", "RE: RE: "]

OM = "om.{n}@probation.example.cjsm.net"
PPCS = "ppcs-recall@justice.example.cjsm.net"
ADDR = {
    "om": OM,
    "ppcs": PPCS,
    "police": "control@police{n}.example.pnn",
    "crc": "hub@crc.example.cjsm.net",
    "nps": "duty@nps.example.cjsm.net",
    "mash": "mash@council{n}.example.gcsx",
    "mappa": "mappa.coord@justice.example.cjsm.net",
    "court": "listings@hmcts.example.cjsm.net",
    "prison": "omu@hmp{n}.example.cjsm.net",
    "vlo": "vlu@probation.example.cjsm.net",
    "it": "servicedesk@justice.example",
    "hr": "people@justice.example",
    "ld": "learning@justice.example",
    "fac": "facilities@probation.example",
    "all": "all-staff@probation.example",
    "team": "team{n}@probation.example",
    "outlook": "postmaster@justice.example",
    "vendor": "notices@supplier{n}.example.com",
}

# class, priority (blank: the class's), sender, recipient, templates
P1_AND_CASEWORK: list[tuple[str, str, str, str, list[str]]] = [
    (
        "recall_emergency",
        "",
        "om",
        "ppcs",
        [
            "Emergency recall - {who}",
            "EMERGENCY RECALL: {who} - {crn}",
            "Emergency recall request {who}",
            "Immediate recall - {who} - whereabouts unknown",
            "Urgent emergency recall - {who}",
            "Recall - EMERGENCY - {who}",
            "Recall (emergency) {who} {crn}",
            "emergency-recall {who}",
            "Emergency_Recall_{surname}",
            "EmergencyRecall - {who}",
            "Indeterminate sentence recall - {who}",
            "IPP licence recall - {who} - emergency",
            "Emergency recall out of hours - {who}",
            "Lifer recall - {who} - immediate",
            "Emergency recall of licence - {who}",
            "Request for emergency recall - {who}",
            "Immediate recall request - {who} - arrested",
            "Emergency recall (IPP) - {who}",
            "Recall - immediate - {who} - {crn}",
            "Emergency licence recall - {who}",
            "Emergency revocation of licence - {who}",
        ],
    ),
    (
        "recall_standard",
        "",
        "om",
        "ppcs",
        [
            "Part A - {who} - {crn}",
            "Part A recall report - {who}",
            "Standard recall - {who}",
            "Standard recall request {who}",
            "Request for recall - {who}",
            "Recall request - {who}",
            "Recall report {who}",
            "Recall dossier - {who} - {crn}",
            "Recall decision - {who}",
            "Requesting recall of {who}",
            "Part-A report: {who}",
            "PartA {who}",
            "Fixed term recall - {who}",
            "Recall request (standard) - {who}",
            "Part A for PPCS - {who}",
            "Request to recall {who}",
            "Standard recall: Part A attached - {who}",
            "Recall pack - {who} - {crn}",
        ],
    ),
    (
        "recall_notification",
        "",
        "ppcs",
        "police",
        [
            "Notice of Return to Custody - {who}",
            "NRC - {who} - {crn}",
            "Licence revoked - {who}",
            "Revocation of licence - {who}",
            "Revocation - {who} - {crn}",
            "Licence revocation {who}",
            "{who} - unlawfully at large",
            "Unlawfully at large - recall - {who}",
            "UAL - {who} - licence revoked",
            "Recall notification - {who}",
            "Revocation order {who}",
            "Notice of return-to-custody {who}",
            "Recalled - unlawfully-at-large - {who}",
            "PPCS revocation dossier - {who}",
            "Licence revoked: {who} now UAL",
            "Recall notification: {who} returned to custody",
            "Notification of recall - {who}",
        ],
    ),
    (
        "risk_escalation",
        "",
        "crc",
        "nps",
        [
            "Risk escalation - {who}",
            "RISK ESCALATION: {who} - {crn}",
            "Risk escalation referral {who}",
            "Escalation: {who} - RoSH now high",
            "RoSH increased to high - {who}",
            "RoSH: HIGH - {who}",
            "RoSH raised - {who}",
            "Risk of serious harm escalation - {who}",
            "Risk of serious harm increased - {who}",
            "Risk of serious harm now very high - {who}",
            "Escalation of risk - {who}",
            "Escalating risk - {who} - CRC to NPS",
            "risk-escalation {who}",
            "Risk_escalation_{surname}",
            "Risk level increased - {who}",
            "RoSH escalation - {who}",
            "Escalation: risk of serious harm - {who}",
            "Increase in RoSH - {who}",
            "Risk escalation (RoSH) - {who} - urgent",
            "Risk: escalation - {who}",
            "RoSH review: now very high - {who}",
            "Risk of harm escalated - {who}",
        ],
    ),
    (
        "safeguarding",
        "",
        "om",
        "mash",
        [
            "Safeguarding referral - {who}",
            "Safeguarding concern - {who}",
            "SAFEGUARDING ALERT {who}",
            "Child protection - {who}",
            "Child protection referral - {who}",
            "Child protection concern {who}",
            "MASH referral - {who}",
            "Referral to MASH - {who}",
            "Referral to the MASH - {who} - children in home",
            "Section 47 - {who}",
            "S47 enquiry - {who}",
            "Safeguarding: concern for children - {who}",
            "Concern for child safety - {who}",
            "Child-protection conference - {who}",
            "Safeguarding - adult at risk - {who}",
            "Safeguarding concern re {who}",
            "MASH - safeguarding referral - {who}",
            "Concerns about a child - {who}",
            "Child protection plan review - {who}",
        ],
    ),
    (
        "mappa",
        "P1",
        "mappa",
        "om",
        [
            "MAPPA level 3 - {who}",
            "MAPPA Level 3 referral {who}",
            "MAPPA level three meeting - {who}",
            "MAPPA L3 minutes - {who}",
            "Level 3 MAPPA - {who}",
            "MAPPA lvl 3 - {who}",
            "MAPPA level III - {who}",
        ],
    ),
    (
        "mappa",
        "",
        "mappa",
        "om",
        [
            "MAPPA level 2 - {who}",
            "MAPPA minutes - {who}",
            "MAPPA referral - {who}",
            "MAPPA level 1 review - {who}",
            "MAPPA meeting {date} - {who}",
            "MAPPA category 2 - {who}",
            "Mappa lvl 2 minutes - {who}",
        ],
    ),
    (
        "breach",
        "",
        "crc",
        "nps",
        [
            "Breach - {who}",
            "Breach of licence - {who}",
            "Breach of community order - {who}",
            "Breach referral - {who} - {crn}",
            "Breach report {who}",
            "Breach action - {who}",
            "Breach of supervision - {who}",
            "Suspended sentence order breach - {who}",
            "Breach pack for court - {who}",
        ],
    ),
    (
        "allocation",
        "",
        "court",
        "nps",
        [
            "Case allocation - {who}",
            "Allocation - {who} - {crn}",
            "New allocation {who}",
            "Case transfer - {who}",
            "Transfer of case - {who} to {town}",
            "Transfer request - {who} - NPS",
            "Case transfer out - {who}",
            "Allocation of case {crn}",
            "Re-allocation - {who}",
            "Transfer of supervision - {who}",
        ],
    ),
    (
        "release",
        "",
        "prison",
        "om",
        [
            "Release notification - {who}",
            "Release date - {who} - {prison}",
            "Release plan - {who}",
            "Released from custody - {who}",
            "Released today - {who}",
            "First appointment - {who}",
            "First contact on release - {who}",
            "Release from custody {date} - {who}",
            "Released on {date} - {who}",
            "Release on licence - {who}",
        ],
    ),
    (
        "court_result",
        "",
        "court",
        "nps",
        [
            "Court results - {town} Magistrates - {date}",
            "Court result - {who}",
            "Court outcome - {who}",
            "Results from court - {date}",
            "Sentencing outcome - {who}",
            "Result of court hearing - {who}",
            "Court outcomes {date}",
            "Crown Court results - {date}",
        ],
    ),
    (
        "court_report",
        "",
        "nps",
        "court",
        [
            "Pre-sentence report - {who}",
            "PSR - {who}",
            "PSR request {who} - {crn}",
            "Presentence report - {who}",
            "Fast delivery report - {who}",
            "Court report - {who}",
            "Pre sentence report due {date} - {who}",
        ],
    ),
    (
        "victim_liaison",
        "",
        "vlo",
        "om",
        [
            "Victim liaison - {who}",
            "VLO - {who}",
            "Victim contact - {who}",
            "VLO request {who}",
            "Victim liaison update - {who}",
            "Victim contact scheme - {who}",
        ],
    ),
]

LOOKALIKES: list[tuple[str, str, list[str]]] = [
    (
        "outlook",
        "all",
        [
            "Recall: {p1}",
            "Message Recall Failure: {p1}",
            "Message Recall Success: {p1}",
            "Message Recall Report for message: {p1}",
            "Recall Failure: {p1}",
            "Recall Success: {p1}",
            "Recall Report for message: {p1}",
            "Message recall failure: {p1}",
        ],
    ),
    (
        "vendor",
        "all",
        [
            "Product recall: {product}",
            "Product safety recall - {product}",
            "Urgent product recall - {product}",
            "Recall notice - {product}",
            "Voluntary recall of {product}",
            "Safety recall notice: {product}",
            "Immediate recall - {product}",
            "Emergency product recall - {product}",
        ],
    ),
    (
        "fac",
        "all",
        [
            "Vehicle recall - pool car {reg}",
            "Vehicle recall notice: fleet vans",
            "Manufacturer recall - lease car {reg}",
            "Pool car recall: airbag fault",
            "Vehicle safety recall - please book in {reg}",
            "Fire risk assessment - {town} office",
            "Fire risk - blocked exits",
            "Flood risk warning - {town}",
            "Flood risk: basement archive",
            "Fire risk assessment review - escalation of actions",
            "Legionella risk assessment",
            "Risk of ice in the car park",
            "Fire safety: risk escalation procedure",
            "Lone working risk assessment",
            "Car park allocation",
            "Desk allocation for the new office",
            "Security breach - car park barrier",
            "Emergency lighting test",
            "Emergency evacuation drill",
        ],
    ),
    (
        "it",
        "all",
        [
            "Laptop recall - battery swelling",
            "IT equipment recall: docking stations",
            "Laptop battery recall - action required",
            "Phone recall - model {model}",
            "Monitor recall notice",
            "Urgent: laptop recall",
            "Recall of faulty chargers",
            "Data breach - phishing incident",
            "Release notes - case management system {ver}",
            "Scheduled release {ver} tonight",
            "Password expiry reminder",
            "Planned outage {date}",
            "Immediate action: update your password",
            "Security breach notification - phishing",
        ],
    ),
    (
        "ld",
        "all",
        [
            "Safeguarding training - book now",
            "Safeguarding course dates",
            "Child protection training - {date}",
            "Child protection e-learning: refresher course",
            "Risk escalation training - new dates",
            "RoSH training for new PQiPs",
            "Safeguarding newsletter - {month}",
            "Child protection newsletter",
            "Risk escalation workshop",
            "Course: RoSH assessment and risk escalation",
            "Training: MASH referrals - how to",
            "Webinar: safeguarding children",
            "MAPPA awareness training",
            "Risk of serious harm - training course",
            "Breach training - enforcement masterclass",
            "Victim awareness course",
            "Court skills training - PSR writing",
            "Recall process training",
            "Emergency recall - training session for new staff",
            "Learning bulletin: risk escalation",
            "Safeguarding - mandatory training reminder",
            "Emergency first aid course",
        ],
    ),
    (
        "hr",
        "all",
        [
            "Risk escalation policy review",
            "Consultation: safeguarding policy",
            "Child protection policy - review",
            "Policy update: recall procedures",
            "Safeguarding policy consultation closes {date}",
            "RoSH policy - consultation",
            "Consultation on MAPPA guidance",
            "Staff survey results",
            "Pay award",
            "Annual leave reminder",
            "Press release - new chief officer",
            "Staff newsletter - {month}",
            "Policy review: risk escalation and case transfer",
            "Consultation: breach and enforcement policy",
            "Allocation of parking permits",
            "Risk register review",
            "Victim awareness week - posters",
            "Newsletter: safeguarding week",
            "Organisational risk: budget pressures",
        ],
    ),
    (
        "team",
        "team",
        [
            "Team meeting {date}",
            "Rota for next week",
            "Lunch on Friday?",
            "Cake in the kitchen",
            "Minutes: team meeting {date}",
            "Supervision notes template",
            "Out of office {date}",
            "Desk booking",
            "Leaving do for {surname}",
            "Stationery order",
            "Car share {town}",
            "Can you cover duty on {date}?",
            "Quick question",
            "Thanks!",
            "Holiday cover",
            "Interview panel {date}",
            "Recall of yesterday's minutes (wrong version)",
            "Room booking",
            "Total Recall quiz night",
            "Birthday card for {surname}",
            "Court car park closed {date}",
        ],
    ),
]

P1_SUBJECTS = [
    "Emergency recall - {who}",
    "Risk escalation - {who}",
    "Safeguarding concern - {who}",
    "Part A - {who}",
    "Licence revoked - {who}",
    "MAPPA level 3 - {who}",
    "Child protection referral - {who}",
    "Referral to MASH - {who}",
    "RoSH increased - {who}",
]
PRODUCTS = [
    "kettle model KT-{model}",
    "office chairs batch {model}",
    "hand sanitiser lot {model}",
    "desk fans FN-{model}",
    "first aid kits",
    "coffee machines CM-{model}",
    "baby car seats {model}",
]
TYPO_WORDS = [
    "emergency",
    "recall",
    "escalation",
    "safeguarding",
    "revocation",
    "protection",
    "unlawfully",
    "referral",
    "standard",
    "serious",
]


def _typo(rng: random.Random, text: str) -> str:
    """One edit (swap, drop or double a letter) in one key word of ``text``, if it has one."""
    words = [w for w in TYPO_WORDS if w in text.lower()]
    if not words:
        return text
    word = rng.choice(words)
    start = text.lower().index(word)
    original = text[start : start + len(word)]
    i = rng.randrange(1, len(original) - 2)
    kind = rng.choice(["swap", "drop", "double"])
    if kind == "swap":
        changed = original[:i] + original[i + 1] + original[i] + original[i + 2 :]
    elif kind == "drop":
        changed = original[:i] + original[i + 1 :]
    else:
        changed = original[: i + 1] + original[i] + original[i + 1 :]
    return text[:start] + changed + text[start + len(original) :]


def _noise(rng: random.Random, text: str) -> str:
    roll = rng.random()
    if roll < 0.08:
        return text.upper()
    if roll < 0.14:
        return text.lower()
    if roll < 0.20:
        return text.replace(" ", "_", 2)
    if roll < 0.24:
        return text.replace(" ", "\u200b", 1)
    if roll < 0.30:
        return text.replace(" - ", " \u2013 ")
    if roll < 0.40:
        return _typo(rng, text)
    return text


def _fill(rng: random.Random, template: str) -> str:
    surname = rng.choice(SURNAMES)
    who = rng.choice(
        [
            f"{surname}, {rng.choice(INITIALS)}",
            f"{rng.choice(INITIALS)}. {surname}",
            f"{surname.upper()} {rng.choice(INITIALS)}",
            f"{surname} {rng.choice(INITIALS)}",
        ]
    )
    values = {
        "who": who,
        "surname": surname,
        "crn": f"Z{rng.randrange(100000, 999999)}",
        "town": rng.choice(TOWNS),
        "prison": rng.choice(PRISONS),
        "date": f"{rng.randrange(1, 28):02d}/{rng.randrange(1, 13):02d}",
        "month": rng.choice(["March", "April", "May", "June"]),
        "model": str(rng.randrange(100, 999)),
        "reg": f"FK{rng.randrange(10, 99)} XYZ",
        "ver": f"4.{rng.randrange(1, 9)}",
    }
    values["p1"] = rng.choice(P1_SUBJECTS).format(**values)
    values["product"] = rng.choice(PRODUCTS).format(**values)
    return template.format(**values)


def _rows(rng: random.Random) -> list[tuple[str, str, str, str, str, dict[str, str]]]:
    rows = []
    for label, priority, sender, to, templates in P1_AND_CASEWORK:
        for template in templates:
            for _ in range(
                2
                if label
                in {
                    "recall_emergency",
                    "risk_escalation",
                    "safeguarding",
                    "recall_standard",
                    "recall_notification",
                }
                else 1
            ):
                subject = _fill(rng, template)
                if "{who}" in template:
                    subject = rng.choice(PREFIXES) + rng.choice(MARKINGS) + _noise(rng, subject)
                headers = {"Importance": "High"} if rng.random() < 0.3 else {}
                rows.append((subject, sender, to, label, priority, headers))
    for sender, to, templates in LOOKALIKES:
        for template in templates:
            for _ in range(2 if sender in {"outlook", "ld", "hr", "vendor"} else 1):
                subject = _fill(rng, template)
                subject = (
                    rng.choice(PREFIXES[:6]) + _noise(rng, subject)
                    if sender != "outlook"
                    else subject
                )
                headers = {"Importance": "High"} if rng.random() < 0.15 else {}
                rows.append((subject, sender, to, "general", "", headers))
    rng.shuffle(rows)
    return rows


def _address(rng: random.Random, role: str) -> str:
    return ADDR[role].format(n=rng.randrange(1, 9))


def main(directory: Path) -> None:
    """Write the corpus into ``directory``."""
    rng = random.Random(14)
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["# file\tclass\tpriority (blank: the class's own)"]
    for n, (subject, sender, to, label, priority, headers) in enumerate(_rows(rng), start=1):
        msg = EmailMessage(policy=SMTP)
        msg["From"] = _address(rng, sender)
        msg["To"] = _address(rng, to)
        msg["Subject"] = subject
        msg["Date"] = f"Tue, {1 + n % 27:02d} Apr 2026 {8 + n % 9:02d}:{n % 60:02d}:00 +0100"
        msg["Message-ID"] = (
            f"<{hashlib.sha256(f'c{n}{subject}'.encode()).hexdigest()[:12]}@mail.example>"
        )
        for key, value in headers.items():
            msg[key] = value
        msg.set_content("(body not used by the classifier)\n")
        name = f"c{n:04d}.eml"
        (directory / name).write_bytes(bytes(msg))
        lines.append(f"{name}\t{label}\t{priority}")
    (directory / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{n} messages")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
