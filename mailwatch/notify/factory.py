"""Build the configured receivers (``[receivers.NAME]`` tables) by name.

Construction reads only the CA files (to build verifying TLS contexts): an unreadable
``ca_file`` is a configuration error reported at start, naming the key. Secrets are read
later, at each send.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from mailwatch.config.alerts import (
    AlertmanagerReceiverConfig,
    EmailReceiverConfig,
    ReceiverConfig,
    WebhookReceiverConfig,
)
from mailwatch.errors import ConfigError
from mailwatch.notify import Receiver
from mailwatch.notify.alertmanager import AlertmanagerReceiver
from mailwatch.notify.email import EmailReceiver
from mailwatch.notify.webhook import WebhookReceiver


def build_receiver(name: str, config: ReceiverConfig, clock: Callable[[], datetime]) -> Receiver:
    """The receiver for one ``[receivers.NAME]`` table."""
    if isinstance(config, AlertmanagerReceiverConfig):
        return AlertmanagerReceiver(name, config, clock)
    if isinstance(config, WebhookReceiverConfig):
        return WebhookReceiver(name, config, clock)
    if isinstance(config, EmailReceiverConfig):
        return EmailReceiver(name, config, clock)
    raise ConfigError([f"receivers.{name}: unknown receiver type"])  # pragma: no cover


def build_receivers(
    configs: Mapping[str, ReceiverConfig],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Receiver]:
    """Every configured receiver, by name; raises :class:`ConfigError` for unusable CA files."""
    receivers: dict[str, Receiver] = {}
    problems = []
    for name, config in configs.items():
        try:
            receivers[name] = build_receiver(name, config, clock)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            problems.append(f"receivers.{name}.ca_file: cannot load ({reason})")
    if problems:
        raise ConfigError(problems)
    return receivers
