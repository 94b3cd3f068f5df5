"""Connections to the fleet database, and the translation of driver errors at this edge.

``psycopg.OperationalError`` (refused, reset, timed out, server shutting down) becomes
:class:`~mailwatch.errors.FleetUnavailable`: the pusher queues and retries. Any other driver
error becomes :class:`~mailwatch.errors.FleetError`. The password is passed to libpq as a
parameter, never put in a URL or a message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from psycopg.conninfo import make_conninfo

from mailwatch.config.fleet import FleetConfig
from mailwatch.errors import FleetError, FleetUnavailable


@contextlib.contextmanager
def translated(doing: str) -> Iterator[None]:
    """Re-raise driver errors met while ``doing`` as mailwatch's fleet errors."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise FleetUnavailable(f"{doing}: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise FleetError(f"{doing}: {_first_line(exc)}") from exc
    except LookupError as exc:  # the password's secret reference cannot be read
        raise FleetError(f"{doing}: {exc}") from exc


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def connect(config: FleetConfig, *, autocommit: bool = True) -> psycopg.Connection:
    """A synchronous connection (the CLI's reads and ``fleet migrate``)."""
    with translated(f"cannot connect to the fleet database at {config.host}"):
        return psycopg.connect(conninfo(config), autocommit=autocommit)


def conninfo(config: FleetConfig) -> str:
    """The libpq connection string: the URL plus TLS, timeout and password parameters."""
    return make_conninfo(config.url, **config.connect_kwargs())


def q(text: str) -> bytes:
    """A query assembled from mailwatch's own constant fragments (never from input)."""
    return text.encode()
