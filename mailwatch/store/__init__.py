"""The SQLite store: what mailwatch has seen, and what became of it.

``db`` holds the connection, migrations, scans and messages; ``outcomes`` joins mail-log
outcomes to messages and keeps their totals; ``canaries`` keeps canary round trips and their
totals; ``retention`` deletes history past its window; ``rows`` defines the row shapes.
"""

from mailwatch.core.model import StoredMessage
from mailwatch.store.db import Store
from mailwatch.store.rows import ScanRecord

__all__ = ["ScanRecord", "Store", "StoredMessage"]
