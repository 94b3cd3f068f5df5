"""``classify --evaluate DIR`` and ``classify --near-misses``.

``--evaluate`` measures the configured classifier on labelled ``.eml`` files: the directory
holds them and a ``labels.tsv`` beside them (file, expected class, optionally expected
priority; see :func:`mailwatch.core.evaluation.parse_labels`). ``--near-misses`` reports recent
default-class messages in the store that hold P1 vocabulary (:mod:`mailwatch.core.nearmiss`).
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

from mailwatch.app import queries
from mailwatch.cli.api_client import ApiClient
from mailwatch.cli.common import Context, utc_now
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


def near_miss_report(
    ctx: Context, client: ApiClient | None, since: float, show_subject: bool
) -> dict[str, Any]:
    """The near-miss report, from the local store or the API (subjects audited either way)."""
    if client is not None:
        params = {"since": f"{since}s", "show_subjects": "true" if show_subject else "false"}
        report: dict[str, Any] = client.request(
            "GET", "/api/v1/classification/near-misses", params=params
        )
        return report
    now = utc_now()
    with ctx.store(write=show_subject) as store:  # writes the audit record of a subject view
        report = queries.near_misses(
            store, ctx.settings.classifier(), now, window_seconds=since,
            show_subjects=show_subject,
        )  # fmt: skip
        if show_subject:
            store.audit(now, getpass.getuser(), "view", "near-miss subjects", "cli")
    return report


def near_miss_lines(report: dict[str, Any]) -> list[str]:
    """The near-miss report as text: one row per term, subjects under it if asked for."""
    lines = [f"general messages read: {report['read']} (first seen since {report['since']})"]
    if not report["terms"]:
        return [*lines, "no near misses: no general message holds P1 vocabulary"]
    rows = [[t["term"], str(t["count"]), str(t["set_aside"]), ", ".join(t["classes"])]
            for t in report["terms"]]  # fmt: skip
    lines.append(table(["TERM", "MESSAGES", "SET ASIDE (UNLESS)", "P1 CLASSES"], rows))
    for term in report["terms"]:
        for subject in term.get("subjects", []):
            lines.append(visible(f"  {term['term']}: {subject}"))
    return lines
