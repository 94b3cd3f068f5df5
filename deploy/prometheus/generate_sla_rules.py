#!/usr/bin/env python3
r"""Render mailwatch's per-class SLA recording rules from the taxonomy (stdlib only).

mailwatch does not export its classes' "stuck after" SLAs as metrics, and PromQL cannot read a
TOML file, so the SLAs are rendered into Prometheus recording rules by this script and the result
is committed as ``deploy/prometheus/mailwatch-sla.rules.yml``. ``mailwatch/core/taxonomy.toml``
is the source of truth; ``tests/deploy/test_promtool.py`` fails when the committed file is not
exactly what this script renders, so the two cannot drift.

Every class gets two constant series (one recording rule each, labels added by the rule):

``mailwatch:class_sla_seconds{class, priority, sla}``
    The SLA in seconds. ``sla`` keeps the text as written (``10m``, ``1 business day``). A
    business-day SLA has no fixed length in seconds; the value is the *longest* clock span it can
    cover (1 business day: Friday to Monday, 3 days), so "older than the SLA" never fires before
    mailwatch itself calls the message stuck. ``mailwatch_stuck_messages`` stays the precise
    signal.
``mailwatch:class_info{class, priority, sla}``
    Always 1: joins a class's priority onto series that carry only ``class`` (the outcome
    counters), e.g. ``... * on (class) group_left (priority) mailwatch:class_info``.

Usage (from the repository root; ``P=deploy/prometheus``)::

    python3 $P/generate_sla_rules.py --output $P/mailwatch-sla.rules.yml   # after a change
    python3 $P/generate_sla_rules.py --check $P/mailwatch-sla.rules.yml    # exit 1 if stale
    python3 $P/generate_sla_rules.py --json                                # the table, as JSON
    # a site whose mailwatch.toml overrides or adds classes renders its own file:
    python3 $P/generate_sla_rules.py --config /etc/mailwatch/mailwatch.toml \
        --output /etc/prometheus/mailwatch-sla.rules.yml

``--config`` applies the file's ``include_default_classes`` and ``[classes.*]`` the way mailwatch
does (a class defined there replaces the shipped class of the same name); ``MAILWATCH_…``
environment overrides are not read.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TAXONOMY = REPO / "mailwatch" / "core" / "taxonomy.toml"
DAY = 86400

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PRIORITY = re.compile(r"^P[1-4]$")
# The duration grammar of mailwatch/core/durations.py (parse_duration), restated without importing
# mailwatch; tests/deploy checks both agree on every shipped class.
_BUSINESS = re.compile(r"^\s*(\d+)\s*(?:bd|business[ _-]?days?)\s*$", re.IGNORECASE)
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}
_UNIT_WORDS = {
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d",
    "w": "w", "week": "w", "weeks": "w",
}  # fmt: skip


class TaxonomyError(ValueError):
    """A class, priority or duration this script cannot render (names the key)."""


@dataclass(frozen=True, slots=True)
class ClassSla:
    """One class as rendered: name, priority, the SLA as written and its length in seconds."""

    name: str
    priority: str
    sla: str
    seconds: float


def business_days_max_seconds(days: int) -> int:
    """The longest clock span ``days`` business days can cover, in seconds.

    mailwatch counts business days from the arrival time, skipping Saturdays and Sundays; a
    message arriving at a weekend starts the clock on Monday 00:00. The longest spans start on a
    Friday (the first step crosses a weekend) or at Saturday 00:00 (two weekend days first).
    """
    if days <= 0:
        return 0
    from_friday = 3 + 7 * ((days - 1) // 5) + (days - 1) % 5
    from_saturday = 2 + 7 * (days // 5) + days % 5
    return max(from_friday, from_saturday) * DAY


def sla_seconds(value: object, key: str) -> tuple[str, float]:
    """The SLA as text and its length in seconds (longest span for business days)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TaxonomyError(f"{key}: {value!r} is not a duration")
    if not isinstance(value, str):
        return f"{value:g}s", float(value)
    business = _BUSINESS.match(value)
    if business:
        return value.strip(), float(business_days_max_seconds(int(business.group(1))))
    cleaned = value.strip().lower()
    total, pos = 0.0, 0
    while pos < len(cleaned):
        part = _PART.match(cleaned, pos)
        if not part or part.group(2) not in _UNIT_WORDS:
            break
        total += float(part.group(1)) * _UNIT_SECONDS[_UNIT_WORDS[part.group(2)]]
        pos = part.end()
    if not cleaned or pos < len(cleaned):
        raise TaxonomyError(f"{key}: {value!r} is not a duration (e.g. 45s, 10m, 2h10m, 1bd)")
    return value.strip(), total


def _classes_table(document: Mapping[str, object], origin: str) -> dict[str, object]:
    classes = document.get("classes", {})
    if not isinstance(classes, dict):
        raise TaxonomyError(f"{origin}: classes is not a table")
    return {str(name): body for name, body in classes.items()}


def load_classes(taxonomy: Path, config: Path | None = None) -> list[ClassSla]:
    """The classes in force, in taxonomy order (``config`` overlaid as mailwatch does)."""
    merged = _classes_table(tomllib.loads(taxonomy.read_text(encoding="utf-8")), str(taxonomy))
    if config is not None:
        site = tomllib.loads(config.read_text(encoding="utf-8"))
        if not site.get("include_default_classes", True):
            merged = {}
        merged.update(_classes_table(site, str(config)))
    result = []
    for name, body in merged.items():
        if not _NAME.match(name):
            raise TaxonomyError(f"classes.{name}: not a valid class name")
        if not isinstance(body, dict):
            raise TaxonomyError(f"classes.{name}: not a table")
        priority = str(body.get("priority", "")).strip().upper()
        if not _PRIORITY.match(priority):
            raise TaxonomyError(f"classes.{name}.priority: {body.get('priority')!r} is not P1-P4")
        if "stuck_after" not in body:
            raise TaxonomyError(f"classes.{name}.stuck_after: required key is missing")
        text, seconds = sla_seconds(body["stuck_after"], f"classes.{name}.stuck_after")
        result.append(ClassSla(name, priority, text, seconds))
    if not result:
        raise TaxonomyError("no classes to render")
    return result


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _rule(record: str, expr: str, cls: ClassSla) -> list[str]:
    # json.dumps gives double-quoted scalars, which YAML reads as the same strings.
    return [
        f"      - record: {record}",
        f"        expr: {expr}",
        "        labels:",
        f"          class: {json.dumps(cls.name)}",
        f"          priority: {json.dumps(cls.priority)}",
        f"          sla: {json.dumps(cls.sla)}",
    ]


def render(classes: Sequence[ClassSla], sources: Sequence[str]) -> str:
    """The recording-rules file for ``classes`` (``sources`` are named in its header)."""
    if any(not math.isfinite(c.seconds) or c.seconds < 0 for c in classes):
        raise TaxonomyError("an SLA is negative or not finite")
    lines = [
        f"# GENERATED by deploy/prometheus/generate_sla_rules.py from {' + '.join(sources)}.",
        "# Do not edit: change the taxonomy, then run",
        "#   python3 deploy/prometheus/generate_sla_rules.py"
        " --output deploy/prometheus/mailwatch-sla.rules.yml",
        "#",
        "# mailwatch:class_sla_seconds{class, priority, sla}: the class's stuck-after SLA in",
        "#   seconds. A business-day SLA is rendered as the longest clock span it can cover",
        "#   (1 business day: Friday to Monday = 259200), so comparisons with it never fire before",
        "#   mailwatch itself calls a message stuck; the sla label keeps the text as written.",
        "# mailwatch:class_info{class, priority, sla}: always 1, to join priority onto series that",
        "#   carry only class (mailwatch_delivered_total, _delivery_delay_seconds).",
        "groups:",
        "  - name: mailwatch-sla",
        "    rules:",
    ]
    for cls in classes:
        lines += _rule("mailwatch:class_sla_seconds", f"vector({_number(cls.seconds)})", cls)
    for cls in classes:
        lines += _rule("mailwatch:class_info", "vector(1)", cls)
    return "\n".join(lines) + "\n"


def _display(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.name


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: render to stdout, to ``--output``, or compare with ``--check``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--taxonomy", type=Path, default=DEFAULT_TAXONOMY)
    parser.add_argument("--config", type=Path, help="a site's mailwatch.toml to overlay")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--output", type=Path, help="write the rules file here")
    mode.add_argument("--check", type=Path, help="exit 1 if this file is not up to date")
    mode.add_argument("--json", action="store_true", help="print the classes as JSON")
    args = parser.parse_args(argv)
    try:
        classes = load_classes(args.taxonomy, args.config)
        sources = [_display(args.taxonomy), *([_display(args.config)] if args.config else [])]
        text = render(classes, sources)
    except (OSError, tomllib.TOMLDecodeError, TaxonomyError) as exc:
        print(f"generate_sla_rules: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([asdict(c) for c in classes], indent=2))
    elif args.output:
        args.output.write_text(text, encoding="utf-8")
    elif args.check:
        current = args.check.read_text(encoding="utf-8") if args.check.exists() else ""
        if current != text:
            print(f"generate_sla_rules: {args.check} is out of date: rerun with --output",
                  file=sys.stderr)  # fmt: skip
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
