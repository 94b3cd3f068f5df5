"""Pausing the garbage collector while a scan builds long-lived objects (counted, process-wide).

Automatic garbage collection is paused while a scan runs (:func:`collection_paused`, used by
:mod:`mailwatch.app.scanner` and the IMAP sources). A first scan of a large queue allocates some
twenty container objects per message that nearly all survive it (entries, headers, messages,
classifications, verdicts, the store's index): the collector, triggered every 700 allocations,
traversed them again and again, and twice per scan a full collection walked the whole heap:
0.1-0.18 s of a ~1 s first scan of 10,000 messages. When the last running scan ends, what it
left is moved straight to the oldest generation (``gc.freeze()`` then ``gc.unfreeze()``: two
list splices, nothing traversed) instead of being traversed once more as young objects (another
40-100 ms): scan results are long-lived by nature. Nothing is lost: the next full collection
examines those objects like any others, so cyclic garbage made during a scan is collected then.
Rescans allocate little either way.

The pause spans the whole probe, network waits included: overlapping scans share one
pause, so a slow server keeps the collector off for the others meanwhile.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_pauses = 0  # scans running (scan_all runs several at once)
_was_enabled = True


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Pause automatic garbage collection until the last overlapping scan ends (see above).

    Then promote every tracked object to the oldest generation, unless something else froze
    objects (``gc.get_freeze_count()``), which must stay frozen; a collector disabled by
    someone else stays disabled.
    """
    global _pauses, _was_enabled  # noqa: PLW0603 - one process-wide collector
    if _pauses == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            if _was_enabled:
                gc.enable()
