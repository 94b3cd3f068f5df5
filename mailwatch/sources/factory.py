"""Build the configured sources (the only place that maps configuration to adapters)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from mailwatch.config.settings import Settings
from mailwatch.config.sources import (
    CanarySourceConfig,
    EximSourceConfig,
    ImapSourceConfig,
    MailLogSourceConfig,
    PostfixSourceConfig,
)
from mailwatch.core.headers import NormalisedSubject
from mailwatch.core.model import REMEMBER_LOST
from mailwatch.errors import ConfigError
from mailwatch.sources import Source
from mailwatch.sources.canary import CanarySource, Destination, Submission
from mailwatch.sources.exim import EximSource, cached_from_message
from mailwatch.sources.imap import ImapSource
from mailwatch.sources.maillog import MailLogSource
from mailwatch.sources.postfix import CachedHeaders, PostfixSource
from mailwatch.store import Store


def build_sources(
    settings: Settings,
    store: Store,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Source]:
    """One adapter per configured source, resumed from what the store remembers.

    Postfix and Exim header caches are primed from the store, and IMAP sources start from
    the unactioned messages it holds (a restart does not re-read every queued message's
    headers); log sources resume from their stored cursor; canary sources resume with the
    canaries still in flight and the time of their path's latest round trip.
    """
    sources: list[Source] = []
    for name, config in settings.sources.items():
        if isinstance(config, PostfixSourceConfig):
            cache = {
                m.key: CachedHeaders(m.headers, NormalisedSubject(m.subject, m.marking))
                for m in store.queued(name)
            }
            sources.append(
                PostfixSource(
                    name,
                    config_dir=config.config_dir,
                    postqueue=config.postqueue,
                    postconf=config.postconf,
                    timeout=config.timeout.seconds,
                    clock=clock,
                    header_cache=cache,
                    keep_headers=settings.header_names(),
                )
            )
        elif isinstance(config, EximSourceConfig):
            sources.append(
                EximSource(
                    name,
                    exim=config.exim,
                    config=config.config,
                    timeout=config.timeout.seconds,
                    clock=clock,
                    header_cache={m.key: cached_from_message(m) for m in store.queued(name)},
                    concurrency=config.concurrency,
                    read_logs=config.read_logs,
                    log_refresh=config.log_refresh,
                )
            )
        elif isinstance(config, ImapSourceConfig):
            try:
                password = config.password.read() if config.password else None
                token = config.token.read() if config.token else None
            except LookupError as exc:
                raise ConfigError([f"sources.{name}: {exc}"]) from None
            sources.append(
                ImapSource(
                    name, host=config.host, user=config.user, password=password, token=token,
                    port=config.port, security=config.security, folders=config.folders,
                    actioned=config.actioned, ca_file=config.ca_file, verify=config.verify,
                    timeout=config.timeout.seconds, clock=clock,
                    extra_headers=settings.header_names(), fetch_batch=config.fetch_batch,
                    known=[m.as_message() for m in store.queued(name)],
                )
            )  # fmt: skip
        elif isinstance(config, CanarySourceConfig):
            sources.append(_canary(name, config, store, clock))
        elif isinstance(config, MailLogSourceConfig):
            sources.append(
                MailLogSource(
                    name,
                    config.path,
                    outcomes_for=config.outcomes_for,
                    cursor=store.log_cursor(name),
                    clock=clock,
                )
            )
    return sources


def _canary(
    name: str, config: CanarySourceConfig, store: Store, clock: Callable[[], datetime]
) -> CanarySource:
    try:
        submission_password = (
            config.submission_password.read() if config.submission_password else None
        )
        imap_password = config.imap_password.read() if config.imap_password else None
        imap_token = config.imap_token.read() if config.imap_token else None
    except LookupError as exc:
        raise ConfigError([f"sources.{name}: {exc}"]) from None
    return CanarySource(
        name,
        submission=Submission(
            host=config.submission_host, port=config.submission_port,
            security=config.submission_security, username=config.submission_username,
            password=submission_password, ca_file=config.ca_file, verify=config.verify,
        ),
        destination=Destination(
            host=config.imap_host, user=config.imap_user, password=imap_password,
            token=imap_token, port=config.imap_port, security=config.imap_security,
            folder=config.folder, ca_file=config.ca_file, verify=config.verify,
        ),
        sender=config.sender, recipient=config.recipient, timeout=config.timeout.seconds,
        io_timeout=config.io_timeout.seconds, keep=config.keep, clock=clock,
        in_flight=store.canaries_in_flight(name, lost_since=clock() - REMEMBER_LOST),
        healthy_since=store.canary_healthy_since(name),
    )  # fmt: skip
