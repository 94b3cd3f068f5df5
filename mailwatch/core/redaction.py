"""Masking of personal data in free text (pure): used by logs, alerts and renderers."""

from __future__ import annotations

import re

_ADDRESS = re.compile(  # only from the start of a run of local-part characters: linear
    r"(?<![A-Za-z0-9.!#$%&'*+/=?^_`{|}~-])[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]++"
    r"@([A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)*+)"
)


def mask_addresses(text: str) -> str:
    """Replace the local part of every address-like token with ``***``."""
    return _ADDRESS.sub(r"***@\1", text)
