"""Checks of a valid configuration against this host, for ``config check`` and ``run``.

Validation (``config.load``) says whether a file can be used at all; these say whether it is
safe here and now: every secret it refers to (an empty secret is an error, whatever it is
for: an empty API token would let anyone in), and whether the HTTP server is exposed on all
interfaces without TLS or tokens. Nothing here reads or reports a secret's value.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel

from mailwatch.config.fields import SecretRef
from mailwatch.config.settings import Settings

_ALL_INTERFACES = ("0.0.0.0", "::", "", "*")  # noqa: S104 - the addresses being warned about


def secrets(value: object, path: str = "") -> Iterator[tuple[str, SecretRef]]:
    """Every secret reference in a configuration, with its key path."""
    if isinstance(value, SecretRef):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secrets(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from secrets(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from secrets(item, f"{path}.{index}")


def checks(settings: Settings) -> tuple[list[str], list[str]]:
    """Problems found on this host now (errors, warnings): secrets, exposed listener.

    Not part of validation: ``config check`` and ``run`` report them; read-only commands
    run by people without access to the service's secrets do not need them.
    """
    errors: list[str] = []
    warnings: list[str] = []
    for path, ref in secrets(settings):
        found = ref.problem()
        if found is not None:
            level, message = found
            (errors if level == "error" else warnings).append(f"{path}: {message}")
    http = settings.http
    if http.host in _ALL_INTERFACES:
        absent = {"TLS": http.tls_cert_file is None, "API tokens": not http.tokens}
        missing = [what for what, lacking in absent.items() if lacking]
        if missing:
            warnings.append(
                f"http.listen: {http.listen} serves every network interface without "
                f"{' or '.join(missing)}; listen on 127.0.0.1 or configure them"
            )
    return errors, warnings
