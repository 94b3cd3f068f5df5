"""Unit tests for mailwatch.core.classify: the shipped taxonomy and the rule engine."""

from __future__ import annotations

import functools
import os
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.config import settings as config
from mailwatch.core.classify import (
    Classifier,
    HeaderCondition,
    MatchRule,
    MessageClass,
    address_matches,
)
from mailwatch.core.durations import Duration
from mailwatch.core.headers import normalise_subject
from mailwatch.core.model import Classification, Headers, Message, Priority, Recipient

ARRIVAL = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
HOUR = Duration(seconds=3600)


def _message(
    subject: str = "",
    *,
    headers: tuple[tuple[str, str], ...] = (),
    sender: str = "om@probation.example",
    recipients: tuple[str, ...] = ("ppcs@justice.example",),
    source: str = "pf1",
    queue: str = "deferred",
) -> Message:
    """A queued message whose Subject header is ``subject``, normalised as a source would."""
    normalised = normalise_subject(subject)
    return Message(
        key=f"{source}/ABC123/{int(ARRIVAL.timestamp())}",
        source=source,
        queue_id="ABC123",
        queue=queue,
        arrival=ARRIVAL,
        size=1024,
        sender=sender,
        recipients=tuple(Recipient(r) for r in recipients),
        headers=Headers((("Subject", subject), *headers)),
        subject=normalised.text,
        marking=normalised.marking,
    )


def _class(name: str, priority: Priority, *rules: MatchRule) -> MessageClass:
    """A class with a one-hour SLA and the given rules."""
    return MessageClass(name=name, priority=priority, stuck_after=HOUR, rules=rules)


def _subject(pattern: str) -> re.Pattern[str]:
    """A subject pattern compiled as configuration compiles it."""
    return re.compile(pattern, re.IGNORECASE)


GENERAL = _class("general", Priority.P4)


@pytest.fixture(name="clean_env")
def fixture_clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MAILWATCH_* variable from the caller's environment leaks into configuration."""
    for name in list(os.environ):
        if name.upper().startswith("MAILWATCH_"):
            monkeypatch.delenv(name)


@pytest.fixture(name="shipped")
def fixture_shipped(clean_env: None) -> Classifier:
    """The classifier built from the shipped taxonomy alone."""
    return config.load(None).classifier()


# (raw subject, expected class, expected priority)
SHIPPED_CORPUS: list[tuple[str, str, Priority]] = [
    # recall_emergency
    ("Emergency recall - Part A", "recall_emergency", Priority.P1),
    ("OFFICIAL-SENSITIVE: Emergency Recall - J SMITH - A1234BC", "recall_emergency", Priority.P1),
    ("RE: FW: emergency recall of J Smith", "recall_emergency", Priority.P1),
    ("Recall of J Smith - immediate", "recall_emergency", Priority.P1),
    ("Recall - EMERGENCY - A1234BC", "recall_emergency", Priority.P1),
    ("Indeterminate sentence prisoner - recall", "recall_emergency", Priority.P1),
    ("=?utf-8?q?Emergency_recall_=E2=80=93_Part_A?=", "recall_emergency", Priority.P1),
    # recall_standard
    ("Part A recall report - J Smith", "recall_standard", Priority.P1),
    ("[CJSM] OFFICIAL: Part A - A1234BC", "recall_standard", Priority.P1),
    ("Request for recall - J Smith", "recall_standard", Priority.P1),
    ("Requesting a recall - J Bloggs", "recall_standard", Priority.P1),
    ("Recall request: J Smith", "recall_standard", Priority.P1),
    ("Recall dossier - J Smith", "recall_standard", Priority.P1),
    ("Recall decision", "recall_standard", Priority.P1),
    ("Standard recall", "recall_standard", Priority.P1),
    # recall_notification
    ("Revocation of licence - J Smith", "recall_notification", Priority.P1),
    ("Licence revoked - J Smith", "recall_notification", Priority.P1),
    ("License revoked", "recall_notification", Priority.P1),
    ("Notice of Return to Custody - A1234BC", "recall_notification", Priority.P1),
    ("NRC - J Smith", "recall_notification", Priority.P1),
    # risk_escalation
    ("Risk escalation - J Smith", "risk_escalation", Priority.P1),
    ("Risk of serious harm escalation", "risk_escalation", Priority.P1),
    ("Escalation of risk - J Smith", "risk_escalation", Priority.P1),
    ("RoSH increased to high", "risk_escalation", Priority.P1),
    ("RoSH now high - CRC to NPS", "risk_escalation", Priority.P1),
    ("Risk level increased", "risk_escalation", Priority.P1),
    # safeguarding
    ("Child protection referral", "safeguarding", Priority.P1),
    ("MASH referral - J Smith", "safeguarding", Priority.P1),
    ("Safeguarding concern - child at address", "safeguarding", Priority.P1),
    ("Safeguarding alert", "safeguarding", Priority.P1),
    ("Section 47 enquiry", "safeguarding", Priority.P1),
    ("S47 strategy meeting", "safeguarding", Priority.P1),
    # mappa: level 3 is P1, others P2
    ("MAPPA level 3 meeting", "mappa", Priority.P1),
    ("MAPPA Level Three referral", "mappa", Priority.P1),
    ("Level 3 MAPPA - J Smith", "mappa", Priority.P1),
    ("MAPPA level III", "mappa", Priority.P1),
    ("MAPPA L3 meeting minutes", "mappa", Priority.P1),
    ("MAPPA category 1 level 3", "mappa", Priority.P1),
    ("MAPPA level 2 meeting minutes", "mappa", Priority.P2),
    ("MAPPA level 1 review", "mappa", Priority.P2),
    ("MAPPA referral - J Smith", "mappa", Priority.P2),
    ("MAPPA level 30 anniversary", "mappa", Priority.P2),
    # breach
    ("Breach of licence - J Smith", "breach", Priority.P2),
    ("Breach of community order", "breach", Priority.P2),
    ("OFFICIAL: Breach action - J Smith", "breach", Priority.P2),
    # allocation
    ("Case allocation - J Smith", "allocation", Priority.P2),
    ("Allocation request", "allocation", Priority.P2),
    ("Case transfer NPS to CRC", "allocation", Priority.P2),
    ("Transfer of supervision", "allocation", Priority.P2),
    # release
    ("Release notification - J Smith", "release", Priority.P2),
    ("Release date confirmed", "release", Priority.P2),
    ("Release from custody - J Smith", "release", Priority.P2),
    ("First appointment - J Smith", "release", Priority.P2),
    ("Released from HMP Leeds today", "release", Priority.P2),
    # court_result
    ("Court results - Leeds Magistrates", "court_result", Priority.P2),
    ("Court outcome", "court_result", Priority.P2),
    ("Results from court 12/01", "court_result", Priority.P2),
    ("Sentencing outcome", "court_result", Priority.P2),
    # court_report
    ("Pre-sentence report request", "court_report", Priority.P3),
    ("Pre sentence report", "court_report", Priority.P3),
    ("PSR request - J Smith", "court_report", Priority.P3),
    ("Court report due", "court_report", Priority.P3),
    ("Fast delivery report", "court_report", Priority.P3),
    # victim_liaison
    ("Victim liaison - J Smith", "victim_liaison", Priority.P3),
    ("Victim contact scheme", "victim_liaison", Priority.P3),
    ("VLO update", "victim_liaison", Priority.P3),
    # a person shouting is not Outlook's recall notice
    ("RECALL: Part A - J Smith", "recall_standard", Priority.P1),
    # general
    ("Team meeting", "general", Priority.P4),
    ("Annual leave", "general", Priority.P4),
    ("", "general", Priority.P4),
]

# Lookalikes: subjects that must not be classed P1 (nor, mostly, at all).
LOOKALIKES: list[tuple[str, str, Priority]] = [
    # Outlook's message-recall feature prefixes "Recall: " to the original subject
    ("Recall: Emergency recall - Part A", "general", Priority.P4),
    ("Recall: Part A - J Smith", "general", Priority.P4),
    ("RE: Recall: Part A - J Smith", "general", Priority.P4),
    ("Recall:Part A", "general", Priority.P4),
    ("Recall: Revocation of licence", "general", Priority.P4),
    ("Recall: Risk escalation - J Smith", "general", Priority.P4),
    ("Recall: Child protection referral", "general", Priority.P4),
    ("Recall: MAPPA level 3 meeting", "general", Priority.P4),
    ("Recall: Breach of licence", "general", Priority.P4),
    ("Recall: Team meeting", "general", Priority.P4),
    # ordinary office mail that shares a word with a P1 class
    ("Risk awareness training", "general", Priority.P4),
    ("Risk assessment due", "general", Priority.P4),
    ("Safeguarding training dates", "general", Priority.P4),
    ("Safeguarding adults board minutes", "general", Priority.P4),
    ("Recall training", "general", Priority.P4),
    ("Restricted access to the building", "general", Priority.P4),
    ("Officially launched", "general", Priority.P4),
    ("Protection order", "general", Priority.P4),
    ("Parole board hearing", "general", Priority.P4),
    # lookalikes of P2 classes
    ("Data breach notification", "general", Priority.P4),
    ("Security breach", "general", Priority.P4),
    ("Breach of data protection", "general", Priority.P4),
    ("Breach of confidentiality", "general", Priority.P4),
    ("Press release", "general", Priority.P4),
    ("Press release notification", "general", Priority.P4),
]


class TestShippedTaxonomy:
    """The shipped taxonomy classifies realistic probation subjects."""

    def test_corpus_is_large_enough(self) -> None:
        """The corpus keeps at least 60 distinct subjects."""
        subjects = [s for s, _, _ in SHIPPED_CORPUS + LOOKALIKES]
        assert len(set(subjects)) == len(subjects) >= 60

    def test_corpus_covers_every_class(self, shipped: Classifier) -> None:
        """Every shipped class is exercised by the corpus (canary: by header, in test_canary)."""
        names = {c.name for c in shipped.all_classes} - {"canary"}
        assert names == {n for _, n, _ in SHIPPED_CORPUS}

    @pytest.mark.parametrize(("subject", "name", "priority"), SHIPPED_CORPUS)
    def test_corpus(self, shipped: Classifier, subject: str, name: str, priority: Priority) -> None:
        """Each subject gets the expected class and priority."""
        result = shipped.classify(_message(subject))
        assert (result.name, result.priority) == (name, priority)

    @pytest.mark.parametrize(("subject", "name", "priority"), LOOKALIKES)
    def test_lookalikes(
        self, shipped: Classifier, subject: str, name: str, priority: Priority
    ) -> None:
        """Subjects that merely resemble urgent mail are not classed as urgent."""
        result = shipped.classify(_message(subject))
        assert (result.name, result.priority) == (name, priority)

    def test_emergency_recall_beats_standard_recall(self, shipped: Classifier) -> None:
        """A subject both recall classes match goes to the emergency one (listed first)."""
        message = _message("Emergency recall - Part A")
        standard = shipped.get("recall_standard")
        assert standard is not None
        assert any(rule.match(message) for rule in standard.rules)
        assert shipped.classify(message) == Classification(
            name="recall_emergency",
            priority=Priority.P1,
            rule="recall_emergency rule 1",
            matched_on="term 'emergency recall'",
        )

    @pytest.mark.parametrize(
        ("subject", "priority", "rule"),
        [
            ("MAPPA level 3 meeting", Priority.P1, "mappa rule 1"),
            ("MAPPA level 2 meeting", Priority.P2, "mappa rule 2"),
        ],
    )
    def test_mappa_level_three_rule_raises_priority(
        self, shipped: Classifier, subject: str, priority: Priority, rule: str
    ) -> None:
        """MAPPA level 3 matches the P1 rule of the P2 class; other MAPPA the plain rule."""
        result = shipped.classify(_message(subject))
        assert (result.name, result.priority, result.rule) == ("mappa", priority, rule)

    def test_mappa_class_itself_is_p2(self, shipped: Classifier) -> None:
        """The MAPPA class stays P2 (only the level-3 rule raises the priority)."""
        mappa = shipped.get("mappa")
        assert mappa is not None
        assert mappa.priority is Priority.P2

    def test_marking_does_not_hide_class(self, shipped: Classifier) -> None:
        """The marking is stripped before matching and kept on the message."""
        message = _message("RE: [OFFICIAL-SENSITIVE] MASH referral - J Smith")
        assert message.marking == "OFFICIAL-SENSITIVE"
        assert shipped.classify(message).name == "safeguarding"

    def test_default_class(self, shipped: Classifier) -> None:
        """Nothing matching: the default class, rule ``default``, nothing matched on."""
        assert shipped.classify(_message("Team lunch on Friday")) == Classification(
            name="general", priority=Priority.P4, rule="default", matched_on=None
        )

    def test_all_classes_most_urgent_first_default_last(self, shipped: Classifier) -> None:
        """``all_classes`` lists P1 first, the default class last."""
        priorities = [c.priority for c in shipped.all_classes]
        assert priorities == sorted(priorities)
        assert shipped.all_classes[-1].name == "general"
        assert [c.name for c in shipped.all_classes[:2]] == ["canary", "recall_emergency"]


class TestAddressMatches:
    """Sender and recipient globs: ``user@host`` globs, or bare domain globs."""

    @pytest.mark.parametrize(
        ("glob", "address", "expected"),
        [
            ("ppcs@justice.example", "ppcs@justice.example", True),
            ("PPCS@Justice.Example", "ppcs@JUSTICE.example", True),
            ("ppcs*@justice.example", "ppcs2@justice.example", True),
            ("*@justice.example", "anyone@justice.example", True),
            ("*@justice.example", "anyone@sub.justice.example", False),
            ("ppcs@justice.example", "other@justice.example", False),
            ("justice.example", "ppcs@justice.example", True),
            ("justice.example", "ppcs@sub.justice.example", False),
            ("*.cjsm.net", "om@probation.cjsm.net", True),
            ("*.cjsm.net", "om@cjsm.net", False),
            ("*.CJSM.NET", "om@Probation.Cjsm.Net", True),
            ("cjsm.net", "cjsm.net@evil.example", False),
            ("*", "", True),
        ],
    )
    def test_address_matches(self, glob: str, address: str, expected: bool) -> None:
        """Globs with ``@`` match whole addresses; others match the domain only."""
        assert address_matches(glob, address) is expected


class TestHeaderCondition:
    """A header condition compares one header by equality or regex."""

    @pytest.mark.parametrize(
        ("condition", "headers", "expected"),
        [
            (HeaderCondition("Importance", equals="high"), (("Importance", "high"),), "high"),
            (HeaderCondition("importance", equals="HIGH"), (("Importance", " High "),), " High "),
            (HeaderCondition("Importance", equals="high"), (("Importance", "higher"),), None),
            (HeaderCondition("Importance", equals="high"), (), None),
            (
                HeaderCondition("X-Case", pattern=re.compile(r"^A\d{4}[A-Z]{2}$")),
                (("X-Case", "A1234BC"),),
                "A1234BC",
            ),
            (
                HeaderCondition("X-Case", pattern=re.compile(r"^A\d{4}[A-Z]{2}$")),
                (("X-Case", "B1234BC"),),
                None,
            ),
            (
                HeaderCondition("X-Priority", pattern=re.compile(r"1")),
                (("X-Priority", "1 (Highest)"),),
                "1 (Highest)",
            ),
            (
                HeaderCondition("X-Priority", equals="1", pattern=re.compile(r"1")),
                (("X-Priority", "1 (Highest)"),),
                None,
            ),
            (
                HeaderCondition("Importance", equals="high"),
                (("Importance", "low"), ("Importance", "high")),
                None,
            ),
        ],
    )
    def test_match(
        self,
        condition: HeaderCondition,
        headers: tuple[tuple[str, str], ...],
        expected: str | None,
    ) -> None:
        """The header value is returned when the condition holds, else ``None``."""
        assert condition.match(_message("x", headers=headers)) == expected


class TestMatchRule:
    """A rule matches when all its conditions hold, and explains what matched."""

    @pytest.mark.parametrize(
        ("rule", "message", "evidence"),
        [
            (MatchRule(), _message("anything"), "always"),
            (
                MatchRule(subject=_subject(r"part\s*a")),
                _message("RE: Part A x"),
                "subject 'Part A'",
            ),
            (MatchRule(subject=_subject(r"part\s*a")), _message("Part B"), None),
            (
                MatchRule(headers=(HeaderCondition("Importance", equals="high"),)),
                _message("x", headers=(("Importance", "High"),)),
                "header Importance 'High'",
            ),
            (
                MatchRule(senders=("*@probation.example",)),
                _message("x", sender="om@probation.example"),
                "sender",
            ),
            (
                MatchRule(senders=("*@probation.example",)),
                _message("x", sender="a@b.example"),
                None,
            ),
            (MatchRule(senders=("probation.example",)), _message("x", sender=""), None),
            (
                MatchRule(recipients=("justice.example",)),
                _message("x", recipients=("a@other.example", "ppcs@justice.example")),
                "recipient",
            ),
            (
                MatchRule(recipients=("ppcs@*",)),
                _message("x", recipients=("a@other.example", "b@justice.example")),
                None,
            ),
            (MatchRule(recipients=("*",)), _message("x", recipients=()), None),
            (MatchRule(sources=("pf1", "pf2")), _message("x", source="pf2"), "source pf2"),
            (MatchRule(sources=("pf1",)), _message("x", source="pf2"), None),
            (MatchRule(queues=("hold",)), _message("x", queue="hold"), "queue hold"),
            (MatchRule(queues=("hold",)), _message("x", queue="deferred"), None),
            (
                MatchRule(
                    subject=_subject("recall"),
                    headers=(HeaderCondition("X-Case", pattern=re.compile("A1")),),
                    senders=("probation.example",),
                    recipients=("*@justice.example",),
                    sources=("pf1",),
                    queues=("deferred",),
                ),
                _message("Recall request", headers=(("X-Case", "A1234BC"),)),
                "subject 'Recall', header X-Case 'A1234BC', sender, recipient, "
                "source pf1, queue deferred",
            ),
            (
                MatchRule(subject=_subject("recall"), queues=("hold",)),
                _message("Recall request", queue="deferred"),
                None,
            ),
            (
                MatchRule(subject=_subject("recall"), senders=("nobody@x",)),
                _message("Recall request"),
                None,
            ),
        ],
    )
    def test_match(self, rule: MatchRule, message: Message, evidence: str | None) -> None:
        """Every set condition must hold; the evidence names each one in order."""
        assert rule.match(message) == evidence

    def test_subject_rule_ignores_marking_and_prefixes(self) -> None:
        """Subject rules see the normalised subject, so anchors work after RE:/markings."""
        rule = MatchRule(subject=_subject("^part a"))
        assert rule.match(_message("RE: FW: OFFICIAL-SENSITIVE: Part A")) == "subject 'Part A'"


class TestClassifier:
    """Classes are tried in priority order, then configuration order; first match wins."""

    def test_higher_priority_class_defined_later_wins(self) -> None:
        """A P1 class defined after a P2 class that also matches still wins."""
        classifier = Classifier.from_classes(
            [
                _class("breach", Priority.P2, MatchRule(subject=_subject("breach"))),
                _class("urgent_breach", Priority.P1, MatchRule(subject=_subject("urgent"))),
                GENERAL,
            ]
        )
        result = classifier.classify(_message("Urgent breach"))
        assert (result.name, result.priority) == ("urgent_breach", Priority.P1)

    def test_same_priority_keeps_configuration_order(self) -> None:
        """Within one priority the class configured first wins."""
        classifier = Classifier.from_classes(
            [
                _class("second", Priority.P3, MatchRule(subject=_subject("x"))),
                _class("first", Priority.P2, MatchRule(subject=_subject("z"))),
                _class("third", Priority.P3, MatchRule(subject=_subject("x"))),
                GENERAL,
            ]
        )
        assert classifier.classify(_message("x")).name == "second"
        assert [c.name for c in classifier.all_classes] == ["first", "second", "third", "general"]

    def test_any_rule_of_a_class_matches_and_is_named(self) -> None:
        """A class matches when any rule does; ``rule`` names the one (1-based)."""
        classifier = Classifier.from_classes(
            [
                _class(
                    "recall",
                    Priority.P1,
                    MatchRule(subject=_subject("part a")),
                    MatchRule(headers=(HeaderCondition("X-Recall", equals="yes"),)),
                ),
                GENERAL,
            ]
        )
        result = classifier.classify(_message("Hello", headers=(("X-Recall", "YES"),)))
        assert result == Classification(
            name="recall",
            priority=Priority.P1,
            rule="recall rule 2",
            matched_on="header X-Recall 'YES'",
        )

    @pytest.mark.parametrize(
        ("queue", "expected"),
        [("hold", Priority.P1), ("deferred", Priority.P3)],
    )
    def test_rule_priority_overrides_class_priority(self, queue: str, expected: Priority) -> None:
        """A rule's own priority replaces the class's for the messages it matches."""
        classifier = Classifier.from_classes(
            [
                _class(
                    "court",
                    Priority.P3,
                    MatchRule(subject=_subject("court"), queues=("hold",), priority=Priority.P1),
                    MatchRule(subject=_subject("court")),
                ),
                GENERAL,
            ]
        )
        result = classifier.classify(_message("Court report", queue=queue))
        assert (result.name, result.priority) == ("court", expected)

    def test_rule_priority_does_not_reorder_classes(self) -> None:
        """Classes are ordered by class priority: a P2 class wins over a P3 class's P1 rule."""
        classifier = Classifier.from_classes(
            [
                _class("low", Priority.P3, MatchRule(subject=_subject("x"), priority=Priority.P1)),
                _class("mid", Priority.P2, MatchRule(subject=_subject("x"))),
                GENERAL,
            ]
        )
        assert classifier.classify(_message("x")).name == "mid"

    @pytest.mark.parametrize(
        ("message", "expected"),
        [
            (_message("x", sender="om@probation.example"), "from_probation"),
            (_message("x", sender="om@probation.cjsm.net"), "from_cjsm"),
            (_message("x", sender="om@elsewhere.example"), "general"),
            (_message("x", recipients=("a@x.example", "vlo@victims.example")), "to_victims"),
        ],
    )
    def test_sender_and_recipient_classes(self, message: Message, expected: str) -> None:
        """Sender globs (address and domain) and recipient globs select classes."""
        classifier = Classifier.from_classes(
            [
                _class("to_victims", Priority.P2, MatchRule(recipients=("*@victims.example",))),
                _class("from_probation", Priority.P3, MatchRule(senders=("*@probation.example",))),
                _class("from_cjsm", Priority.P3, MatchRule(senders=("*.cjsm.net",))),
                GENERAL,
            ]
        )
        assert classifier.classify(message).name == expected

    @pytest.mark.parametrize(
        ("source", "queue", "expected"),
        [
            ("pf1", "hold", "held_on_pf1"),
            ("pf2", "hold", "general"),
            ("pf1", "deferred", "general"),
        ],
    )
    def test_source_and_queue_restrictions(self, source: str, queue: str, expected: str) -> None:
        """Rules restricted to sources and queues match only there."""
        classifier = Classifier.from_classes(
            [
                _class("held_on_pf1", Priority.P2, MatchRule(sources=("pf1",), queues=("hold",))),
                GENERAL,
            ]
        )
        assert classifier.classify(_message("x", source=source, queue=queue)).name == expected

    def test_class_without_rules_never_matches(self) -> None:
        """A class with no rules is never chosen (it is not a catch-all)."""
        classifier = Classifier.from_classes([_class("empty", Priority.P1), GENERAL])
        assert classifier.classify(_message("anything")).name == "general"

    def test_default_class_rules_are_not_consulted(self) -> None:
        """The default class catches what nothing else matched; its rules are not tried first."""
        default = _class("catchall", Priority.P2, MatchRule(subject=_subject("x")))
        classifier = Classifier.from_classes(
            [default, _class("x_class", Priority.P3, MatchRule(subject=_subject("x")))],
            default_name="catchall",
        )
        assert classifier.classify(_message("x")).name == "x_class"
        assert classifier.classify(_message("y")) == Classification(
            name="catchall", priority=Priority.P2, rule="default"
        )

    def test_missing_default_class_is_an_error(self) -> None:
        """Building without the named default class raises ``ValueError``."""
        with pytest.raises(ValueError, match="no default class named 'general'"):
            Classifier.from_classes([_class("only", Priority.P1)])

    @pytest.mark.parametrize(("name", "found"), [("general", True), ("a", True), ("b", False)])
    def test_get(self, name: str, found: bool) -> None:
        """``get`` finds configured classes, the default included."""
        classifier = Classifier.from_classes([_class("a", Priority.P1), GENERAL])
        result = classifier.get(name)
        assert (result is not None and result.name == name) is found


def _tricky_classifier() -> Classifier:
    """Rules that stress the keyword prefilter: optional parts, look-arounds, case, headers."""

    def rule(pattern: str, flags: int = re.IGNORECASE, **kw: Any) -> MatchRule:
        return MatchRule(subject=re.compile(pattern, flags), **kw)

    return Classifier.from_classes(
        [
            _class("head", Priority.P1, MatchRule(headers=(HeaderCondition("X-Case", "a1"),))),
            _class("kelvin", Priority.P1, rule(r"\bkelvin\b|\u212a\d")),
            _class("long_s", Priority.P1, rule(r"\bstop\b", subject_not=_subject("^Recall:"))),
            _class("dotted", Priority.P2, rule(r"istanbul|\u0130zmir")),
            _class("optional", Priority.P2, rule(r"(?:urgent\s+)?review"), rule(r"colou?r")),
            _class("case", Priority.P2, rule(r"(?-i:NRC)|(?i:mixed)", 0)),
            _class("backref", Priority.P3, rule(r"(ab)\1"), rule(r"(?<!data )breach")),
            _class("sender", Priority.P3, rule(r"memo", senders=("*.example",))),
            _class("anything", Priority.P4, rule(r"^.{30,}$")),
            GENERAL,
        ]
    )


TRICKY = _tricky_classifier()
EQUIVALENCE_WORDS = [
    "recall", "Recall:", "RECALL", "emergency", "part", "a", "Part A", "MAPPA", "level", "3",
    "iii", "breach", "data", "rosh", "increased", "risk", "escalation", "safeguarding", "s47",
    "section", "47", "NRC", "licence", "revoked", "court", "results", "PSR", "victim", "VLO",
    "release", "press", "first", "appointment", "transfer", "NPS", "kelvin", "\u212a9", "\u017ftop",
    "stop", "\u0130zmir", "istanbul", "\u0131stanbul", "review", "urgent", "color", "colour",
    "abab",
    "memo", "mixed", "MiXeD", "-", ":", " ", "RE:", "[CJSM]", "OFFICIAL-SENSITIVE:", "\u00e9",
]  # fmt: skip


@functools.cache
def _shipped_classifier() -> Classifier:
    """The shipped taxonomy's classifier (for hypothesis tests: no function-scoped fixture)."""
    return config.load(None).classifier()


class TestPrefilterEquivalence:
    """The keyword prefilter never changes a classification (class, priority, rule, evidence)."""

    @pytest.mark.parametrize("subject", [s for s, _, _ in SHIPPED_CORPUS + LOOKALIKES])
    def test_shipped_corpus(self, shipped: Classifier, subject: str) -> None:
        """Every corpus subject, as written, upper-cased and lower-cased."""
        for variant in (subject, subject.upper(), subject.lower(), f"RE: {subject} (2)"):
            message = _message(variant)
            assert shipped.classify(message) == shipped.classify(message, prefilter=False)

    @settings(max_examples=500, deadline=None, database=None)
    @given(
        words=st.lists(st.sampled_from(EQUIVALENCE_WORDS), max_size=8),
        separator=st.sampled_from([" ", "", " - "]),
        case=st.integers(min_value=0, max_value=3),
    )
    def test_generated_subjects_shipped(self, words: list[str], separator: str, case: int) -> None:
        """Subjects made of the taxonomy's words (and lookalikes) classify the same."""
        shipped = _shipped_classifier()
        subject = separator.join(words)
        subject = (subject, subject.upper(), subject.lower(), subject.title())[case]
        message = _message(subject)
        assert shipped.classify(message) == shipped.classify(message, prefilter=False)

    @settings(max_examples=500, deadline=None, database=None)
    @given(
        words=st.lists(st.sampled_from(EQUIVALENCE_WORDS), max_size=8),
        text=st.text(max_size=12),
        header=st.sampled_from([(), (("X-Case", "a1"),), (("x-case", "B2"),)]),
        sender=st.sampled_from(["om@probation.example", "x@other.org"]),
    )
    def test_generated_subjects_tricky(
        self, words: list[str], text: str, header: tuple[tuple[str, str], ...], sender: str
    ) -> None:
        """Random text, lookalike letters, header and sender rules: the same results."""
        classifier = TRICKY
        message = _message(" ".join([*words, text]), headers=header, sender=sender)
        assert classifier.classify(message) == classifier.classify(message, prefilter=False)
