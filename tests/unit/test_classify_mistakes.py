"""The kinds of classification mistakes issue 14 lists, each from examples of our own.

These examples appear neither in the issue nor in the tuning corpus nor in the held-out set.
The last tests are the gate on the shipped corpus: P1 recall 100%, no false P1, 95% right.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailwatch.config.settings import Settings
from mailwatch.core.classify import Classifier
from mailwatch.core.headers import normalise_subject
from mailwatch.core.model import Headers, Message, Priority, Recipient

CORPUS = Path(__file__).resolve().parents[1] / "data" / "classification" / "corpus"


@functools.cache
def _shipped() -> Classifier:
    return Settings().classifier()


def _classify(subject: str) -> tuple[str, Priority]:
    normalised = normalise_subject(subject)
    message = Message(
        key="t/1/0", source="t", queue_id="1", queue="deferred",
        arrival=datetime(2026, 3, 2, 9, tzinfo=UTC), size=1, sender="om@probation.example",
        recipients=(Recipient("ppcs@justice.example"),), headers=Headers((("Subject", subject),)),
        subject=normalised.text, marking=normalised.marking,
    )  # fmt: skip
    result = _shipped().classify(message)
    return result.name, result.priority


P1_PHRASINGS = [  # the type said in other words
    ("Immediate recall of licence - Bogus, Q", "recall_emergency"),
    ("Recall - lifer - whereabouts not known - Bogus Q", "recall_emergency"),
    ("Emergency-recall paperwork - Bogus Q", "recall_emergency"),
    ("EmergencyRecall: Bogus Q", "recall_emergency"),
    ("Requested: recall of Bogus Q (licence breach)", "recall_standard"),
    ("Bogus Q is unlawfully at large", "recall_notification"),
    ("Licence now revoked: Bogus Q", "recall_notification"),
    ("Risk of serious harm now very high - Bogus Q", "risk_escalation"),
    ("Escalation: RoSH for Bogus Q", "risk_escalation"),
    ("RoSH: raised after new intelligence - Bogus Q", "risk_escalation"),
    ("Risk-escalation from CRC - Bogus Q", "risk_escalation"),
    ("Referral to MASH re Bogus Q household", "safeguarding"),
    ("Concerns raised about the children at Bogus Q's address", "safeguarding"),
    ("MAPPA lvl3 - Bogus Q", "mappa"),
]


@pytest.mark.parametrize(("subject", "expected"), P1_PHRASINGS)
def test_p1_said_in_other_words_is_caught(subject: str, expected: str) -> None:
    """Other wordings, hyphenated and run-together forms, key word after a colon: P1."""
    assert _classify(subject) == (expected, Priority.P1)


NOISY = [  # one-letter typos and transpositions, underscores, invisible characters, accents
    ("Emergecny recall - Bogus Q", "recall_emergency"),
    ("Emergency recal - Bogus Q", "recall_emergency"),
    ("emergency_recall_Bogus_Q", "recall_emergency"),
    ("Emergency\u200brecall - Bogus Q", "recall_emergency"),
    ("Emer\u00adgency recall - Bogus Q", "recall_emergency"),
    ("\u00c9mergency r\u00e9call - Bogus Q", "recall_emergency"),
    ("\uff25\uff4d\uff45\uff52\uff47\uff45\uff4e\uff43\uff59 recall - Bogus Q", "recall_emergency"),
    ("Safeguardign referral - Bogus Q", "safeguarding"),
    ("Child protectoin - Bogus Q", "safeguarding"),
    ("Risk esclation - Bogus Q", "risk_escalation"),
    ("risk_escalation_Bogus_Q", "risk_escalation"),
    ("Notice of return to cutsody - Bogus Q", "recall_notification"),
    ("Unlawfuly at large - Bogus Q", "recall_notification"),
]


@pytest.mark.parametrize(("subject", "expected"), NOISY)
def test_noisy_spelling_is_caught(subject: str, expected: str) -> None:
    """A typo or a separator does not hide a P1 message."""
    assert _classify(subject) == (expected, Priority.P1)


NOT_TYPOS = [  # short words match exactly; real words are not typos of key words
    "MASK fitting on Tuesday",  # not MASH
    "Beach clean-up volunteers",  # not breach
    "Breath test results from the depot",  # not breach
    "Part B of the form",  # not Part A
]


@pytest.mark.parametrize("subject", NOT_TYPOS)
def test_near_words_are_not_typos(subject: str) -> None:
    """Typo tolerance is bounded: one edit, words of six letters or more, not real words."""
    assert _classify(subject)[1] is not Priority.P1


FALSE_P1 = [  # other senses of the same words
    "Recall of desk fans model DF-20 (product safety)",
    "Product recall: toasters",
    "Vehicle recall - lease van brakes",
    "Laptop recall: swollen batteries",
    "Recall: Emergency recall - Bogus Q",
    "Message Recall Failure: Risk escalation - Bogus Q",
    "Message Recall Success: Safeguarding concern - Bogus Q",
    "Message Recall Report for message: Part A - Bogus Q",
    "Recall Failure: Licence revoked - Bogus Q",
    "Risk escalation - training for new starters",
    "RoSH e-learning course: risk of serious harm escalation",
    "Safeguarding newsletter - summer edition",
    "Child protection policy review 2026",
    "Consultation: safeguarding adults procedure",
    "Flood risk increased for the basement archive",
    "Fire risk raised by the landlord's survey",
]


@pytest.mark.parametrize("subject", FALSE_P1)
def test_other_senses_are_not_p1(subject: str) -> None:
    """Products, vehicles, IT kit, Outlook recall notices, training and policy mail, flood/fire."""
    assert _classify(subject)[1] is not Priority.P1


def test_outlook_prefix_is_exact() -> None:
    """A person writing RECALL: in capitals is not Outlook's recall notice."""
    assert _classify("RECALL: Part A - Bogus Q") == ("recall_standard", Priority.P1)


def test_shipped_corpus_gate() -> None:
    """On the shipped corpus: P1 recall 100%, no false P1, at least 95% right."""
    from mailwatch.cli.classify_tools import evaluate_directory

    result = evaluate_directory(_shipped(), CORPUS)
    assert result.total >= 400
    assert sum(1 for j in result.judged if j.expected == "general") >= result.total / 3
    assert result.p1_recall == 1.0, [m.name for m in result.misses]
    assert result.false_p1 == 0, [m.name for m in result.misses]
    assert result.accuracy >= 0.95
