"""The long fuzzing run: every parser's property test on many generated inputs.

Runs the targets of ``tests/unit/test_fuzz_parsers.py`` (each a parser and the only errors it
may raise) with ``--examples`` inputs each (default 100,000), one after another, and prints
one line per target: inputs, seconds, and ``ok`` or the first failing input (hypothesis
shrinks it). Every failure found becomes a case in ``tests/unit/test_parser_regressions.py``.

    nice -n 10 .venv/bin/python bench/fuzz.py                 # all targets, 100,000 each
    nice -n 10 .venv/bin/python bench/fuzz.py -n 20000 headers imap_fetch

The same run through pytest: ``MAILWATCH_FUZZ_EXAMPLES=100000 pytest -m fuzz``.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))

import test_fuzz_parsers as fuzz  # the targets live with the tests


def main() -> int:
    """Run the chosen targets; exit status 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"default: all ({', '.join(fuzz.TARGETS)})")
    parser.add_argument("-n", "--examples", type=int, default=100_000, help="inputs per target")
    args = parser.parse_args()
    failed = 0
    for name in args.targets or list(fuzz.TARGETS):
        started = time.perf_counter()
        try:
            fuzz.run_target(name, args.examples)
        except Exception:  # noqa: BLE001 - report and go on with the next target
            failed += 1
            outcome = "FAILED\n" + traceback.format_exc(limit=3)
        else:
            outcome = "ok"
        seconds = time.perf_counter() - started
        print(f"{name:16} {args.examples:>9,} inputs {seconds:8.1f} s  {outcome}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
