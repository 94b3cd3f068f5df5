# The C reader of common-shape FETCH responses (_fetch_scan.c): see mailwatch.parsing.imap_scan.
from datetime import datetime, timedelta

def scan(
    buffer: bytes,
    position: int,
    records: list[object],
    record_type: type[tuple[object, ...]],
    flag_sets: dict[bytes | None, frozenset[str]],
    minutes: dict[bytes, datetime],
    seconds: tuple[timedelta, ...],
    /,
) -> int: ...
