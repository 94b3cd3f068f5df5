"""FETCH responses of the common shape read off the wire in C (``_fetch_scan.c``).

:func:`scan_fast_records` is the Python face of the optional C extension
``mailwatch.parsing._fetch_scan``: it reads a run of whole responses of the shape
:data:`~mailwatch.parsing.imap.FAST_FETCH_ITEMS` matches, each record exactly what
:func:`~mailwatch.parsing.imap.fast_record` builds, using only the flag sets and date minutes
that the Python path has already remembered, and stops at the first response it does not take;
the caller (:class:`~mailwatch.sources.imap_wire.ImapWire`) reads that one in Python.
"""

from __future__ import annotations

from collections.abc import Callable

from mailwatch.parsing.imap import REMEMBERED_FLAGS, FetchRecord
from mailwatch.parsing.imap_values import REMEMBERED_DATES

_c_scan: Callable[..., int] | None
try:  # built with the package, like _plain_headers (a build without a compiler lacks it)
    from mailwatch.parsing._fetch_scan import scan as _c_scan
except ImportError:  # pragma: no cover - tests/unit/test_fetch_scan.py requires it
    _c_scan = None

C_SCAN = _c_scan is not None
"""Whether :func:`scan_fast_records` can read responses in C."""


def scan_fast_records(buffer: bytes, position: int, records: list[FetchRecord]) -> int:
    """Append the records of the whole common-shape responses from ``position``, read in C.

    Returns where it stopped: the end, or the first response it does not take (incomplete,
    another shape, or flags or a date minute not remembered yet), which the caller reads in
    Python. Without the C extension, or for a buffer not of type ``bytes``, it takes none and
    returns ``position``.
    """
    if _c_scan is None or type(buffer) is not bytes:
        return position
    minutes, seconds = REMEMBERED_DATES
    return _c_scan(buffer, position, records, FetchRecord, REMEMBERED_FLAGS, minutes, seconds)
