"""What classifying costs: 100,000 distinct subjects through the shipped taxonomy.

    .venv/bin/python bench/classify_speed.py [--messages 100000] [--runs 3] [--no-shapes]

Subjects are the tuning corpus's (tests/data/classification/corpus) with a distinct invented
case reference appended to each, so no cache sees the same subject twice. Prints the best of
``--runs`` wall-clock times and the cost per message, and the best CPU time of the process
(steadier than wall time on a busy machine). The corpus has 426 subjects, so their shapes (the
words that mean something to the classifier, see mailwatch/core/fastpath.py) repeat, as
templated mail's do; ``--no-shapes`` keeps no outcome per shape, so every message costs what a
subject of a new shape costs. Not a test (no timed assertions).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

from mailwatch.config.settings import Settings
from mailwatch.core.model import Message, Recipient
from mailwatch.parsing.eml import message_from_bytes

CORPUS = Path(__file__).resolve().parent.parent / "tests/data/classification/corpus"


def _messages(count: int) -> list[Message]:
    bases = [message_from_bytes(p.read_bytes()) for p in sorted(CORPUS.glob("*.eml"))]
    arrival = datetime(2026, 4, 1, tzinfo=UTC)
    return [
        bases[i % len(bases)]._replace(
            key=f"bench/{i}", subject=f"{bases[i % len(bases)].subject} Z{i:07d}",
            arrival=arrival, recipients=(Recipient("om@probation.example"),),
        )
        for i in range(count)
    ]  # fmt: skip


def main() -> None:
    """Run the benchmark and print the best time."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-shapes", action="store_true", help="keep no outcome per shape")
    args = parser.parse_args()
    messages = _messages(args.messages)
    best = best_cpu = float("inf")
    for _ in range(args.runs):
        classifier = Settings().classifier()  # fresh: no warm caches carried between runs
        if args.no_shapes:
            classifier._fast._keep = False  # a benchmark's knob, not an API
        start, start_cpu = time.perf_counter(), time.process_time()
        for message in messages:
            classifier.classify(message)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
        best = min(best, time.perf_counter() - start)
    per, per_cpu = 1e6 * best / args.messages, 1e6 * best_cpu / args.messages
    print(f"{args.messages} messages: best {best:.3f}s, {per:.1f} us each (cpu {per_cpu:.1f} us)")


if __name__ == "__main__":
    main()
