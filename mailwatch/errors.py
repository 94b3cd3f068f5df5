"""mailwatch's errors. Each also inherits the builtin it resembles, so callers may catch either.

::

    MailwatchError
    ├── ConfigError(ValueError)          a configuration that cannot be used; lists key paths
    ├── InvalidDuration(ValueError)      text that is not a duration, or one out of range
    ├── SourceError                      a probe failed; the source is marked down
    │   ├── SourceTimeout(TimeoutError)  the probe did not finish in time
    │   ├── SourceUnavailable(ConnectionError)  the command or server could not be reached
    │   └── SourceCommandFailed          the command ran and exited non-zero
    ├── StoreError                       the store could not be read or written
    │   ├── StoreFull(OSError)           the disk (or the database's size limit) is full
    │   ├── StoreReadOnly(PermissionError)  the store or its file system is read-only
    │   ├── StoreCorrupt                 the file is damaged or not a database
    │   ├── StoreIOError(OSError)        the operating system failed a read or write
    │   └── StoreBusy(TimeoutError)      another process held a lock for too long
    ├── ParseError(ValueError)           a parser was given text it cannot read
    │   ├── ImapParseError               an IMAP response without the expected shape
    │   ├── QueueFileError               bytes that are not a Postfix queue file
    │   │   └── QueueFileGap             more of the queue file is needed (an offset)
    │   └── FrameError                   a helper process's bytes that are not a frame
    ├── UnknownMessage(LookupError)      no tracked message has that id
    ├── UnknownAlert(LookupError)        no alert has that id
    ├── HeadersReleased(LookupError)     a stored message's headers were dropped from memory
    ├── NotAcknowledgeable(ValueError)   only a firing alert can be acknowledged
    ├── NotifyError                      delivery to a receiver failed
    │   ├── ReceiverUnavailable(ConnectionError)  could not connect, or TLS failed: retry
    │   ├── ReceiverTimeout(TimeoutError)  no answer in time: retry
    │   ├── ReceiverRejected             answered "no" (``status``, ``permanent``)
    │   └── ReceiverMisconfigured        a secret is missing, plain SMTP to a remote host...
    ├── FleetError                       the central (fleet) PostgreSQL store failed
    │   ├── FleetUnavailable(ConnectionError)  unreachable, refused, timed out: queue and retry
    │   └── FleetSchemaError                 its schema is missing or newer than this mailwatch
    ├── ActionFailed                     a Postfix action (retry, hold...) failed
    └── ApiError                         the API answered with an error, or was unreachable

Third-party and OS exceptions are translated into these at the adapter that meets them.
"""

from __future__ import annotations


class MailwatchError(Exception):
    """Base class of every error mailwatch raises on purpose."""


class ConfigError(MailwatchError, ValueError):
    """The configuration is invalid; ``problems`` holds one ``key.path: reason`` per error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class InvalidDuration(MailwatchError, ValueError):
    """Text that is not a duration, or a duration longer than mailwatch accepts."""


class SourceError(MailwatchError):
    """A probe of ``source`` failed."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.source = source
        self.detail = detail


class SourceTimeout(SourceError, TimeoutError):
    """The probe did not finish within its timeout."""


class SourceUnavailable(SourceError, ConnectionError):
    """The source's command or server could not be reached at all."""


class SourceCommandFailed(SourceError):
    """The source's command ran and failed; ``returncode`` and ``stderr`` say how."""

    def __init__(self, source: str, detail: str, returncode: int, stderr: str) -> None:
        super().__init__(source, detail)
        self.returncode = returncode
        self.stderr = stderr


class StoreError(MailwatchError):
    """The store could not be opened, migrated, read or written.

    ``kind`` names the failure in metrics (``mailwatch_store_errors_total{kind}``); the
    subclasses below say which failure it was.
    """

    kind: str = "error"


class ParseError(MailwatchError, ValueError):
    """Text handed to a parser (a queue file, an IMAP response…) does not have its shape.

    Parsers raise this (or a subclass) or return a value: never any other exception,
    whatever the input (the property tests in ``tests/unit/test_fuzz_*.py`` hold them to it).
    """


class UnknownMessage(MailwatchError, LookupError):
    """No tracked message matches the given id."""


class HeadersReleased(MailwatchError, LookupError):
    """A queued message's headers were read after they were dropped from memory.

    The scanner drops them once the store holds them (``Headers.release``): read them from
    the store (``Store.get``) instead.
    """


class StoreFull(StoreError, OSError):
    """The disk holding the store is full (SQLite ``SQLITE_FULL``)."""

    kind = "full"


class StoreReadOnly(StoreError, PermissionError):
    """The store cannot be written: read-only file or file system (``SQLITE_READONLY``)."""

    kind = "read_only"


class StoreCorrupt(StoreError):
    """The store's file is damaged or not a database (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``)."""

    kind = "corrupt"


class StoreIOError(StoreError, OSError):
    """A read or write of the store failed in the operating system (``SQLITE_IOERR``...)."""

    kind = "io"


class StoreBusy(StoreError, TimeoutError):
    """Another process held the store locked past the busy timeout (``SQLITE_BUSY``)."""

    kind = "busy"


class ApiError(MailwatchError):
    """The API answered with an error, or could not be reached."""


class NotifyError(MailwatchError):
    """Delivery to ``receiver`` failed; ``detail`` says how (no secrets, no addresses)."""

    def __init__(self, receiver: str, detail: str) -> None:
        super().__init__(f"{receiver}: {detail}")
        self.receiver = receiver
        self.detail = detail


class ReceiverUnavailable(NotifyError, ConnectionError):
    """The receiver could not be reached (refused, reset, DNS, TLS verification)."""


class ReceiverTimeout(NotifyError, TimeoutError):
    """The receiver did not answer within its timeout."""


class ReceiverRejected(NotifyError):
    """The receiver answered and refused the notification with ``status``.

    ``permanent`` rejections (HTTP 4xx other than 408/429, SMTP 5xx) will not succeed by
    retrying the same request; the delivery loop retries them a few times in case the
    receiver's side is being fixed, then dead-letters them.
    """

    def __init__(self, receiver: str, detail: str, status: int, *, permanent: bool) -> None:
        super().__init__(receiver, detail)
        self.status = status
        self.permanent = permanent


class ReceiverMisconfigured(NotifyError):
    """The receiver cannot be used as configured (missing secret, plain SMTP off loopback)."""


class ActionFailed(MailwatchError):
    """The Postfix command failed; the message says how."""


class ImapParseError(ParseError):
    """An IMAP response did not have the expected shape."""


class QueueFileError(ParseError):
    """The bytes are not a Postfix queue file (or are cut off before the headers end)."""


class QueueFileGap(QueueFileError):
    """Reading a queue file needs the bytes from ``offset`` on, which were not handed in."""

    def __init__(self, offset: int, in_content: bool) -> None:
        super().__init__(f"queue file data needed from offset {offset}")
        self.offset = offset
        self.in_content = in_content
        """Whether the gap is inside the message content (the header block is longer)."""


class FrameError(ParseError):
    """Bytes from one of mailwatch's helper processes that are not a whole, readable frame."""


class UnknownAlert(MailwatchError, LookupError):
    """No alert has that id."""


class NotAcknowledgeable(MailwatchError, ValueError):
    """Only a firing alert can be acknowledged."""


class FleetError(MailwatchError):
    """The central PostgreSQL store (``[fleet]``) could not be read or written."""


class FleetUnavailable(FleetError, ConnectionError):
    """The fleet database is unreachable (refused, down, timed out): pushes queue locally."""


class FleetSchemaError(FleetError):
    """The fleet database has no schema yet (``mailwatch fleet migrate``) or a newer one."""
