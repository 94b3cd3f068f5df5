"""Unit tests for mailwatch.core.prefilter: keywords a subject must contain for a pattern to match.

The property that matters is soundness: whenever a pattern finds a match in a subject, the
folded subject contains one of the pattern's keywords (otherwise the classifier would skip a
rule that matches). It is checked on the shipped taxonomy's patterns and on patterns built to
trip a keyword extractor (optional parts, alternation, look-arounds, back references, inline
flags, verbose mode, non-ASCII and case-folding lookalikes), with subjects generated *from the
patterns themselves* so that matches really happen.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwatch.config import classes as config
from mailwatch.core.prefilter import _FOLD, fold, required_keywords

SHIPPED_RE2 = {  # what the classifier runs (RE2); the re twins below generate subjects
    m.subject.pattern: m.subject
    for c in config.shipped_classes().values()
    for m in c.match
    if m.subject is not None
}
SHIPPED = {source: re.compile(source, re.IGNORECASE) for source in SHIPPED_RE2}
TRICKY = [
    r"\bemergency\s+recall\b|\brecall\b.*\b(emergency|immediate)\b",
    r"(?:part)?\s*a",
    r"colou?r",
    r"ab{0}c",
    r"(?:abc){2,}",
    r"(?:xyz)*q",
    r"x|",
    r"(a|b)cd",
    r"(ab)\1z",
    r"(?<!data )breach",
    r"(?=recall)rec",
    r"(?-i:Recall:)",
    r"(?x) part \s* a  # comment",
    r"st\u00f6p|\u017ftop",
    r"\bK\b|kelvin",
    r"\u0130stanbul|istanbul",
    r"i\u0307",
    r"(?>atomic)group",
    r"pos++essive",
    r"(a)?(?(1)bc|de)",
    r"[.]dot\.",
    r"\d{3}-only",
    r"^anchored$",
    r"(?i:MiXeD)case",
    r"[^x]+",
    r"\w+@\w+",
    r"",
]
FLAGS = [re.IGNORECASE, 0, re.IGNORECASE | re.ASCII]
PATTERNS = list(SHIPPED.values()) + [re.compile(p, f) for p in TRICKY for f in FLAGS]
FILLER = st.text(
    alphabet=st.sampled_from([*"aAkKsSiI .:-", "\u212a", "\u017f", "\u0130", "\u0131", "\u00e9"]),
    max_size=8,
)


LETTERS = list("recalpartmappaKkSsIi \u212a\u017f\u0130")


class TestFold:
    """``fold`` maps exactly what ``re.IGNORECASE`` equates with ASCII letters."""

    def test_table_is_what_re_ignorecase_does(self) -> None:
        """The non-ASCII characters an ASCII character matches case-insensitively: no more."""
        ascii_class = re.compile(r"[\x00-\x7f]", re.IGNORECASE)
        found = {
            code: next(a for a in map(chr, range(97, 123)) if re.fullmatch(a, chr(code), re.I))
            for code in range(128, sys.maxunicode + 1)
            if ascii_class.fullmatch(chr(code))
        }
        assert found == {c: letter for c, letter in _FOLD.items() if c >= 128}

    def test_one_for_one(self) -> None:
        """Folding never changes the length (keyword runs stay contiguous)."""
        text = "R\u0130SK \u212aelvin \u017ftop caf\u00e9 \u00df \u1e9e"
        assert fold(text) == "risk kelvin stop caf\u00e9 \u00df \u1e9e"
        assert len(fold(text)) == len(text)

    def test_ascii_is_lowered(self) -> None:
        """ASCII text is simply lower-cased."""
        assert fold("MAPPA Level 3") == "mappa level 3"


class TestRequiredKeywords:
    """What the extractor finds, and where it must give up."""

    @pytest.mark.parametrize(
        ("pattern", "keywords"),
        [
            (r"\bmappa\b", {"mappa"}),
            (r"\bPSR\b|\bcourt\s+report\b", {"psr", "report"}),
            (r"colou?r", {"colo"}),
            (r"(?:abc){2,}", {"abc"}),
            (r"escalat\w*|escalation", {"escalat"}),  # a keyword containing another is dropped
            (r"(?<!data )\bbreach\b", {"breach"}),
            (r"st\u00f6p", {"st"}),
            (r"(ab)\1", {"ab"}),
            (r"\u00e9t\u00e9", {"t"}),
        ],
    )
    def test_keywords(self, pattern: str, keywords: set[str]) -> None:
        """Literal runs, mandatory repeats, alternations (union) and minimal sets."""
        assert required_keywords(re.compile(pattern, re.IGNORECASE)) == frozenset(keywords)

    @pytest.mark.parametrize(
        "pattern", [r"\w+", r"(?:ab)?", r"x|", r"[ab]c?", "", r"a?b?", r"\u00e9|t"]
    )
    def test_no_keywords(self, pattern: str) -> None:
        """Nothing every match must contain: ``None`` (the rule always runs)."""
        assert required_keywords(re.compile(pattern)) is None

    @pytest.mark.parametrize(
        "pattern", [p for p in PATTERNS if required_keywords(p) is not None], ids=repr
    )
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def test_every_match_contains_a_keyword(
        self, pattern: re.Pattern[str], data: st.DataObject
    ) -> None:
        """Subjects the pattern matches (generated from it) contain one of its keywords."""
        keywords = required_keywords(pattern)
        assert keywords is not None
        subject = data.draw(FILLER) + data.draw(st.from_regex(pattern)) + data.draw(FILLER)
        twin = SHIPPED_RE2.get(pattern.pattern) if pattern.flags & re.IGNORECASE else None
        if pattern.search(subject) or (twin is not None and twin.search(subject)):
            assert any(k in fold(subject) for k in keywords), (subject, keywords)

    @settings(max_examples=300, deadline=None, database=None)
    @given(subject=st.text(alphabet=st.sampled_from(LETTERS), max_size=20))
    def test_random_subjects(self, subject: str) -> None:
        """Random subjects from the letters the keywords use: a match means a keyword."""
        patterns: list[Any] = [*PATTERNS, *SHIPPED_RE2.values()]
        for pattern in patterns:
            keywords = required_keywords(pattern)
            if keywords is not None and pattern.search(subject):
                assert any(k in fold(subject) for k in keywords), (pattern, subject, keywords)
