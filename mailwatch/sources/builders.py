"""How each built-in source kind builds its adapter from its table and the store.

The adapters take plain values, not configuration; a builder translates one ``[sources.NAME]``
table, and resumes the adapter from what the store remembers: Postfix and Exim header caches
are primed (a restart does not re-read every queued message's headers), IMAP sources start
from the unactioned messages held, log sources from their stored cursor, and canary sources
with the canaries still in flight and the time of their path's latest round trip.
"""

from __future__ import annotations

from mailwatch.config.fields import SecretRef
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
from mailwatch.sources import BuildContext
from mailwatch.sources.canary import CanarySource, Destination, Submission
from mailwatch.sources.exim import EximSource, cached_from_message
from mailwatch.sources.imap import ImapSource
from mailwatch.sources.imap_decoder_process import prestart
from mailwatch.sources.maillog import MailLogSource
from mailwatch.sources.postfix import CachedHeaders, PostfixSource


def secret(name: str, ref: SecretRef | None) -> str | None:
    """The value of a secret reference, or a :class:`ConfigError` naming the source."""
    try:
        return ref.read() if ref is not None else None
    except LookupError as exc:
        raise ConfigError([f"sources.{name}: {exc}"]) from None


def build_postfix(name: str, config: PostfixSourceConfig, context: BuildContext) -> PostfixSource:
    """A Postfix source, its header cache primed from the store."""
    cache = {
        m.key: CachedHeaders(m.headers, NormalisedSubject(m.subject, m.marking))
        for m in context.store.queued(name)
    }
    return PostfixSource(
        name,
        config_dir=config.config_dir,
        postqueue=config.postqueue,
        postconf=config.postconf,
        timeout=config.timeout.seconds,
        clock=context.clock,
        header_cache=cache,
        keep_headers=context.settings.header_names(),
        full_listing_every=config.full_listing_every.seconds,
    )


def build_exim(name: str, config: EximSourceConfig, context: BuildContext) -> EximSource:
    """An Exim source, its spool cache primed from the store."""
    return EximSource(
        name,
        exim=config.exim,
        config=config.config,
        timeout=config.timeout.seconds,
        clock=context.clock,
        header_cache={m.key: cached_from_message(m) for m in context.store.queued(name)},
        concurrency=config.concurrency,
        read_logs=config.read_logs,
        log_refresh=config.log_refresh,
        spool_dir=config.spool_directory,
        full_listing_every=config.full_listing_every.seconds,
        keep_headers=context.settings.header_names(),
    )


def build_imap(name: str, config: ImapSourceConfig, context: BuildContext) -> ImapSource:
    """An IMAP source starting from the unactioned messages the store holds.

    A spare decoding process is started now, while nothing is urgent, for its first sync
    (:func:`~mailwatch.sources.imap_decoder_process.prestart`).
    """
    prestart()
    return ImapSource(
        name, host=config.host, user=config.user, password=secret(name, config.password),
        token=secret(name, config.token), port=config.port, security=config.security,
        folders=config.folders, actioned=config.actioned, ca_file=config.ca_file,
        verify=config.verify, timeout=config.timeout.seconds, clock=context.clock,
        extra_headers=context.settings.header_names(), fetch_batch=config.fetch_batch,
        known=[m.as_message() for m in context.store.queued(name)],
    )  # fmt: skip


def build_maillog(name: str, config: MailLogSourceConfig, context: BuildContext) -> MailLogSource:
    """A mail log source resuming from its stored cursor."""
    return MailLogSource(
        name,
        config.path,
        outcomes_for=config.outcomes_for,
        cursor=context.store.log_cursor(name),
        clock=context.clock,
    )


def build_canary(name: str, config: CanarySourceConfig, context: BuildContext) -> CanarySource:
    """A canary source resuming with its canaries in flight and its last healthy time."""
    store, clock = context.store, context.clock
    return CanarySource(
        name,
        submission=Submission(
            host=config.submission_host, port=config.submission_port,
            security=config.submission_security, username=config.submission_username,
            password=secret(name, config.submission_password), ca_file=config.ca_file,
            verify=config.verify,
        ),
        destination=Destination(
            host=config.imap_host, user=config.imap_user,
            password=secret(name, config.imap_password), token=secret(name, config.imap_token),
            port=config.imap_port, security=config.imap_security, folder=config.folder,
            ca_file=config.ca_file, verify=config.verify,
        ),
        sender=config.sender, recipient=config.recipient, timeout=config.timeout.seconds,
        io_timeout=config.io_timeout.seconds, keep=config.keep, clock=clock,
        in_flight=store.canaries_in_flight(name, lost_since=clock() - REMEMBER_LOST),
        healthy_since=store.canary_healthy_since(name),
    )  # fmt: skip
