"""The term matcher (mailwatch.core.terms), unless negatives, operator additions, --evaluate."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from mailwatch.cli import cli
from mailwatch.config.settings import Settings, load
from mailwatch.core.classify import MAX_CLASSIFIED_CHARS, Classifier
from mailwatch.core.headers import normalise_subject
from mailwatch.core.model import Headers, Message, Recipient
from mailwatch.core.terms import TermSet, Vocabulary, one_edit, parse_term, resolve, tokenise
from mailwatch.errors import ConfigError

HELDOUT = Path(__file__).resolve().parents[1] / "data" / "classification" / "heldout"


def _message(subject: str) -> Message:
    normalised = normalise_subject(subject)
    return Message(
        key="t/1/0", source="t", queue_id="1", queue="deferred",
        arrival=datetime(2026, 3, 2, 9, tzinfo=UTC), size=1, sender="om@probation.example",
        recipients=(Recipient("ppcs@justice.example"),), headers=Headers((("Subject", subject),)),
        subject=normalised.text, marking=normalised.marking,
    )  # fmt: skip


def _osa(a: str, b: str) -> int:
    """Reference optimal-string-alignment distance (edits incl. adjacent swaps)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


@given(st.text("abcde", max_size=8), st.text("abcde", max_size=8))
def test_one_edit_is_distance_one(a: str, b: str) -> None:
    """one_edit agrees with the reference distance."""
    assert one_edit(a, b) == (_osa(a, b) <= 1)


@given(st.text(max_size=200))
def test_tokenise_never_fails(text: str) -> None:
    """Any text tokenises, to lower-case runs of letters or of digits."""
    for word in tokenise(text).words:
        assert word
        assert word.isdigit() or all(not c.isdigit() for c in word)


def test_separators_and_invisibles_fold() -> None:
    """Hyphens, underscores, zero-width and soft hyphens, accents and case all fold away."""
    forms = ["Emergency recall", "EMERGENCY-RECALL", "emergency_recall", "Emergency\u200brecall",
             "\u00c9mergency  \u2013 recall", "emer\u00adgency recall"]  # fmt: skip
    assert {tokenise(f).words for f in forms} == {("emergency", "recall")}


def test_fuzzy_only_for_long_words() -> None:
    """One edit for 6+ letter words; short words, digits and real words match exactly."""
    terms = [parse_term(t) for t in ("recall", "mash", "part a", "level 3", "breach")]
    vocabulary = Vocabulary(terms)
    assert "recall" in vocabulary.resolve("rceall")  # swap
    assert "recall" in vocabulary.resolve("recal")  # deletion
    assert "recall" in vocabulary.resolve("recalls")  # insertion
    assert "recall" not in vocabulary.resolve("recoil")  # two edits
    assert not vocabulary.resolve("mask")
    assert "parta" in vocabulary.resolve("parta")  # run together
    assert "level3" not in vocabulary.resolve("level")  # digits: never fuzzy
    assert not vocabulary.resolve("beach")
    assert not Vocabulary(terms, fuzzy=False).resolve("rceall")


def test_terms_run_together_prefix_and_anchor() -> None:
    """A phrase also matches run together; word* is a prefix; ^Prefix: is exact."""
    terms = TermSet([parse_term("escalat*"), parse_term("part a"), parse_term("^Recall:")])
    vocabulary = Vocabulary(terms.terms)

    def found(text: str) -> str | None:
        hit = terms.find(resolve(vocabulary, tokenise(text)))
        return None if hit is None else hit[0].text

    assert found("risk escalating") == "escalat*"
    assert found("PartA for Bogus") == "part a"
    assert found("Recall: anything") == "^Recall:"
    assert found("RECALL: anything") is None


def test_unless_reason_is_explained() -> None:
    """The classifier explains which class an unless term set aside, and why."""
    classifier = Settings().classifier()
    result, notes = classifier.explain(_message("Emergency recall: training for duty staff"))
    assert result.name == "general"
    assert "not recall_emergency: 'training' (unless)" in notes


def test_long_subject_is_capped() -> None:
    """Terms after the first MAX_CLASSIFIED_CHARS characters are not read."""
    classifier = Settings().classifier()
    late = _message("x " * MAX_CLASSIFIED_CHARS + "emergency recall")
    assert classifier.classify(late).name == "general"


def _classifier(path: Path, text: str) -> Classifier:
    path.write_text(text)
    return load(path).classifier()


def test_operator_additions_extend_without_copying(tmp_path: Path) -> None:
    """extra_terms add a rule and extra_unless a negative; the shipped class stays in place."""
    classifier = _classifier(tmp_path / "m.toml", (
        '[classes.safeguarding]\nextra_terms = ["strategy meeting"]\n'
        'extra_unless = ["book club"]\n'
    ))  # fmt: skip
    shipped = Settings().classifier()
    assert classifier.classify(_message("Strategy meeting - Bogus Q")).name == "safeguarding"
    assert shipped.classify(_message("Strategy meeting - Bogus Q")).name == "general"
    assert classifier.classify(_message("Safeguarding concern - Bogus Q")).name == "safeguarding"
    assert classifier.classify(_message("Safeguarding: book club")).name == "general"
    mine, theirs = classifier.get("safeguarding"), shipped.get("safeguarding")
    assert mine is not None
    assert theirs is not None
    assert (mine.priority, mine.stuck_after) == (theirs.priority, theirs.stuck_after)
    assert len(mine.rules) == len(theirs.rules) + 1


def test_additions_to_unknown_class_are_refused(tmp_path: Path) -> None:
    """extra_terms only extend a shipped class; a new class needs priority and stuck_after."""
    path = tmp_path / "m.toml"
    path.write_text('[classes.nonesuch]\nextra_terms = ["x"]\n')
    with pytest.raises(ConfigError, match=r"classes\.nonesuch"):
        load(path)


def test_operator_terms_in_a_rule(tmp_path: Path) -> None:
    """A class of the operator's own with terms, all_of and unless."""
    classifier = _classifier(tmp_path / "m.toml", (
        '[classes.hdc]\npriority = "P2"\nstuck_after = "2h"\nunless = ["training"]\n'
        '[[classes.hdc.match]]\nall_of = [["curfew"], ["breach*", "violation"]]\n'
    ))  # fmt: skip
    assert classifier.classify(_message("Curfew violation - Bogus Q")).name == "hdc"
    assert classifier.classify(_message("Curfew breach training")).name != "hdc"


def test_evaluate_command(tmp_path: Path) -> None:
    """`classify --evaluate` prints P1 recall, false P1, per class, confusion and misses."""
    (tmp_path / "none.toml").write_text("")
    result = CliRunner().invoke(
        cli, ["-c", str(tmp_path / "none.toml"), "classify", "--evaluate", str(HELDOUT)]
    )
    assert result.exit_code == 0, result.output
    assert "P1 recall" in result.output
    assert "false P1" in result.output
    assert "PRECISION" in result.output
    assert "confusion" in result.output


def test_evaluate_refuses_unknown_labels(tmp_path: Path) -> None:
    """A label naming no class is a usage error, not a silent miss."""
    (tmp_path / "labels.tsv").write_text("a.eml\tnonesuch\n")
    (tmp_path / "a.eml").write_bytes(b"Subject: x\n\n")
    (tmp_path / "c.toml").write_text("")
    result = CliRunner().invoke(
        cli, ["-c", str(tmp_path / "c.toml"), "classify", "--evaluate", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "unknown class 'nonesuch'" in result.output
