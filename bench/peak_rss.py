"""Run a command and report ITS OWN peak resident set size (a small launcher for benchmarks).

``python bench/peak_rss.py OUT.json -- CMD ARG...`` runs CMD as a child of this small process,
waits for it with ``os.wait4`` and writes ``{"returncode", "seconds", "cpu_seconds",
"peak_rss_mib"}`` to OUT.json (CPU: user + system, its children included); CMD's stdout
and stderr pass through.

Why a launcher: ``ru_maxrss`` of a child counts the memory it inherited at ``fork`` (Linux keeps
the larger high-water mark across ``exec``), so a child forked straight from a large benchmark
process reports the benchmark's own peak. Forked from this launcher, the floor is this
launcher's ~10 MiB; the figure also covers CMD's own children (``postqueue``, ``postcat``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    """Entry point; exit status is the command's."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: peak_rss.py OUT.json -- CMD [ARG...]", file=sys.stderr)
        return 2
    out, command = argv[0], argv[2:]
    t0 = time.perf_counter()
    child = subprocess.Popen(command)  # the benchmark's own fixed command lines
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    child.returncode = code
    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"returncode": code, "seconds": seconds,
                   "cpu_seconds": usage.ru_utime + usage.ru_stime,
                   "peak_rss_mib": usage.ru_maxrss / 1024}, handle)  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
