"""``classify --evaluate DIR``: measure the configured classifier on labelled ``.eml`` files.

The directory holds ``.eml`` files and a ``labels.tsv`` beside them (file, expected class,
optionally expected priority; see :func:`mailwatch.core.evaluation.parse_labels`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailwatch.cli.render import table
from mailwatch.cli.terminal import visible
from mailwatch.core.classify import Classifier
from mailwatch.core.evaluation import Evaluation, Judged, evaluate, parse_labels
from mailwatch.parsing.eml import message_from_bytes


def evaluate_directory(classifier: Classifier, directory: Path) -> Evaluation:
    """Classify every labelled file in ``directory``; ``ValueError`` for a bad label file."""
    labels_file = directory / "labels.tsv"
    try:
        labels = parse_labels(labels_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {labels_file}: {exc.strerror}") from None
    known = {c.name: c.priority for c in classifier.all_classes}
    judged: list[Judged] = []
    for label in labels:
        if label.expected not in known:
            raise ValueError(f"{labels_file}: {label.file}: unknown class {label.expected!r}")
        try:
            raw = (directory / label.file).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {directory / label.file}: {exc.strerror}") from None
        message = message_from_bytes(raw, source="evaluate", queue="deferred")
        expected_priority = label.priority or known[label.expected]
        got = classifier.classify(message)
        judged.append(Judged(label.file, message, label.expected, expected_priority, got))
    return evaluate(judged, [c.name for c in classifier.all_classes])


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def evaluation_lines(result: Evaluation, *, show_subject: bool = True) -> list[str]:
    """The report ``--evaluate`` prints: figures, per class, confusion matrix, misses."""
    lines = [
        f"messages {result.total}   right {result.right} ({_percent(result.accuracy)})",
        f"P1 recall {result.p1_caught}/{result.p1_total} ({_percent(result.p1_recall)})   "
        f"false P1 {result.false_p1}/{result.not_p1_total} ({_percent(result.false_p1_rate)})",
        "",
        table(
            ["CLASS", "EXPECTED", "GOT", "PRECISION", "RECALL"],
            [
                [
                    c.name,
                    str(c.support),
                    str(c.predicted),
                    _percent(c.precision),
                    _percent(c.recall),
                ]
                for c in result.classes
            ],
        ),
        "",
        "confusion (rows: expected; columns: got, numbered as the rows)",
    ]
    names = [c.name for c in result.classes]
    rows = [
        [f"{i} {name}", *[str(result.confusion.get((name, other), 0) or ".") for other in names]]
        for i, name in enumerate(names, start=1)
    ]
    lines.append(table(["", *[str(i) for i in range(1, len(names) + 1)]], rows))
    misses = result.misses
    lines += ["", f"misses ({len(misses)})" if misses else "no misses"]
    for j in misses:
        why = f"{j.got.rule}" + (f" on {j.got.matched_on}" if j.got.matched_on else "")
        line = (
            f"  {j.name}: expected {j.expected}/{j.expected_priority}, got "
            f"{j.got.name}/{j.got.priority} by {why}"
        )
        if show_subject:
            line += f"  subject {j.message.subject!r}"
        lines.append(visible(line))
    return lines


def evaluation_json(result: Evaluation) -> dict[str, Any]:
    """The figures as JSON (misses without subjects)."""
    return {
        "messages": result.total,
        "right": result.right,
        "accuracy": result.accuracy,
        "p1_recall": result.p1_recall,
        "p1": {"total": result.p1_total, "caught": result.p1_caught},
        "false_p1": {
            "count": result.false_p1,
            "of": result.not_p1_total,
            "rate": result.false_p1_rate,
        },
        "classes": [
            {
                "name": c.name,
                "expected": c.support,
                "got": c.predicted,
                "precision": c.precision,
                "recall": c.recall,
            }
            for c in result.classes
        ],
        "confusion": [
            {"expected": e, "got": g, "count": n} for (e, g), n in sorted(result.confusion.items())
        ],
        "misses": [
            {
                "file": j.name,
                "expected": j.expected,
                "expected_priority": str(j.expected_priority),
                "got": j.got.name,
                "priority": str(j.got.priority),
                "rule": j.got.rule,
                "matched_on": j.got.matched_on,
            }
            for j in result.misses
        ],
    }
