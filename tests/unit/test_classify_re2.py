"""Operator patterns run on RE2: linear in time, same meaning, refused when RE2 cannot run them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailwatch.config import settings as config
from mailwatch.core.classify import (
    MAX_CLASSIFIED_CHARS,
    Classifier,
    MatchRule,
    MessageClass,
    compile_pattern,
)
from mailwatch.core.durations import Duration
from mailwatch.core.model import Headers, Message, Priority, Recipient
from mailwatch.errors import ConfigError

HOUR = Duration(seconds=3600)


def _message(subject: str, **headers: str) -> Message:
    return Message(
        key="pf1/ABC/1", source="pf1", queue_id="ABC", queue="deferred",
        arrival=datetime(2026, 1, 5, tzinfo=UTC), size=1, sender="a@b.example",
        recipients=(Recipient("c@d.example"),),
        headers=Headers((("Subject", subject), *headers.items())), subject=subject,
    )  # fmt: skip


def _classifier(pattern: str) -> Classifier:
    rule = MatchRule(subject=compile_pattern(pattern))
    return Classifier.from_classes(
        [MessageClass("x", Priority.P1, HOUR, (rule,)), MessageClass("general", Priority.P4, HOUR)]
    )


def _config(tmp_path: Path, pattern: str) -> Path:
    path = tmp_path / "mailwatch.toml"
    path.write_text(
        textwrap.dedent(f"""\
        [classes.x]
        priority = "P2"
        stuck_after = "1h"
        [[classes.x.match]]
        subject = '{pattern}'
        """)
    )
    return path


def test_nested_quantifier_on_a_hostile_subject(tmp_path: Path) -> None:
    """``(a+)+$`` on 30 a's and a '!' backtracked for minutes under ``re``; RE2 is linear.

    Run through the configuration, in a fresh interpreter (a backtracking regex holds the
    GIL, so only a process can be timed out); the limit is generous.
    """
    path = _config(tmp_path, "(a+)+$")
    code = (
        "from pathlib import Path\nfrom mailwatch.config import settings as config\n"
        "from mailwatch.core.model import Message, Headers\nfrom datetime import datetime, UTC\n"
        f"c = config.load(Path({str(path)!r})).classifier()\n"
        "s = 'a' * 30 + '!'\n"
        "m = Message(key='k', source='s', queue_id='q', queue='deferred',"
        " arrival=datetime(2026, 1, 1, tzinfo=UTC), size=1, sender='', recipients=(),"
        " headers=Headers((('Subject', s),)), subject=s)\n"
        "assert c.classify(m, prefilter=False).name == 'general'\n"
    )
    try:
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("classification of a 31-character subject ran for over 30 s")


@pytest.mark.parametrize(
    ("pattern", "what"),
    [("(?<!data )breach", "(?<!"), ("(ab)\\1", "\\1"), ("a(?=b)", "(?="), ("(?>a)", "(?>")],
)
def test_config_check_refuses_what_re2_cannot_run(tmp_path: Path, pattern: str, what: str) -> None:
    """Config check refuses what re2 cannot run."""
    with pytest.raises(ConfigError) as raised:
        config.load(_config(tmp_path, pattern))
    (problem,) = raised.value.problems
    assert problem.startswith("classes.x.match.0.subject: ")
    assert "RE2" in problem
    assert "lookarounds" in problem


def test_header_regex_is_checked_too(tmp_path: Path) -> None:
    """Header regex is checked too."""
    path = tmp_path / "mailwatch.toml"
    path.write_text(
        '[classes.x]\npriority = "P2"\nstuck_after = "1h"\n[[classes.x.match]]\n'
        'headers = [{ name = "X-Case", regex = "(?<=a)b" }]\n'
    )
    with pytest.raises(ConfigError, match=r"classes\.x\.match\.0\.headers\.0\.regex: .*RE2"):
        config.load(path)


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        (r"emergency\s+recall", "Emergency\u00a0recall", True),  # no-break space: \s in Python
        (r"emergency\s+recall", "EMERGENCY\u2003RECALL", True),
        (r"level\s*\d", "level \u0663", True),  # Arabic-Indic three: \d in Python
        (r"\w+ report", "café report", True),
        (r"[\s]x", "\u00a0x", True),
        (r"\S+@", "\u00a0@", False),
        (r"\bNRC\b", "nrc issued", True),  # case-insensitive, as always
        (r"(?-i:NRC)", "nrc issued", False),
        (r"kelvin\b", "\u212aelvin", True),  # Kelvin sign folds to k, as in Python
        (r"\bkelvin", "\u212aelvin", False),  # but \b stays ASCII on RE2 (documented)
        (r"colou?r", "COLOR", True),
    ],
)
def test_same_meaning_as_python(pattern: str, subject: str, matches: bool) -> None:
    r"""RE2's \\s, \\d, \\w are ASCII: rewritten to Python's Unicode meaning."""
    assert (compile_pattern(pattern).search(subject) is not None) is matches
    assert (_classifier(pattern).classify(_message(subject)).name == "x") is matches


def test_lone_surrogate_in_a_subject() -> None:
    """Found by fuzzing: RE2 reads UTF-8 and a lone surrogate cannot be encoded."""
    result = _classifier("breach").classify(_message("\ud800 breach"))
    assert result.name == "x"
    assert result.matched_on == "subject 'breach'"


def test_classifier_reads_a_bounded_prefix() -> None:
    """The CPU budget: text past MAX_CLASSIFIED_CHARS is not looked at."""
    classifier = _classifier("breach")
    late = "x" * MAX_CLASSIFIED_CHARS + " breach"
    early = "breach " + "x" * (10 * MAX_CLASSIFIED_CHARS)
    assert classifier.classify(_message(late)).name == "general"
    assert classifier.classify(_message(early)).name == "x"


def test_shipped_taxonomy_compiles_on_re2() -> None:
    """Every shipped class loads (no lookarounds left) and the breach exclusions hold."""
    shipped = config.load(None).classifier()
    for subject, expected in [
        ("Breach of licence - J Smith", "breach"),
        ("Data breach notification", "general"),
        ("Security breach", "general"),
        ("Breach of confidentiality", "general"),
        ("Release date for J Smith", "release"),
        ("Press release notification", "general"),
    ]:
        assert shipped.classify(_message(subject)).name == expected, subject
