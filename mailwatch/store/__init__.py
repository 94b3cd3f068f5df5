"""The SQLite store: what mailwatch has seen, and what became of it.

``db`` holds the connection, migrations, scans and messages; ``outcomes`` joins mail-log
outcomes to messages and keeps their totals; ``canaries`` keeps canary round trips and their
totals; ``retention`` deletes history past its window; ``rows`` defines the row shapes.

``Store`` is imported on first use (PEP 562): the read commands use
:class:`mailwatch.store.listing.StoreView` and need not import the writer (and structlog).
"""

from typing import TYPE_CHECKING, Any

from mailwatch.core.model import StoredMessage
from mailwatch.store.rows import ScanRecord

if TYPE_CHECKING:
    from mailwatch.store.db import Store

__all__ = ["ScanRecord", "Store", "StoredMessage"]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from mailwatch.store.db import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
