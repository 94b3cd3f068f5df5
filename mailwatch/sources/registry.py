"""The source kind registry: one entry per source ``type``, registered with one call.

A :class:`SourceKind` joins the two halves of a kind: its configuration model (a
:class:`~mailwatch.config.kinds.SourceConfigBase` subclass, which declares the kind's queues,
whether it holds a backlog, whether it is a local MTA) and the adapter side, how to build the
source and how its errors map to the ``kind`` label of ``mailwatch_probe_errors``.
:func:`register` registers both halves, so ``type = "<tag>"`` tables validate and build.

Everything that differs by source type is read from here or from the config model: the
``[sources]`` union (:mod:`mailwatch.config.kinds`), building the sources
(:func:`mailwatch.sources.factory.build_sources`), the service's queues and backlog, the
local-MTA warning and the error kinds. Nothing else switches on the type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from mailwatch.config.kinds import SourceConfigBase, register_config, type_tag, unregister_config
from mailwatch.config.sources import (
    CanarySourceConfig,
    EximSourceConfig,
    ImapSourceConfig,
    MailLogSourceConfig,
    PostfixSourceConfig,
)
from mailwatch.errors import ConfigError
from mailwatch.sources import BuildContext, Source
from mailwatch.sources.builders import (
    build_canary,
    build_exim,
    build_imap,
    build_maillog,
    build_postfix,
)

C = TypeVar("C", bound=SourceConfigBase)

SOURCE_ERROR_KINDS: Mapping[str, str] = MappingProxyType({
    "SourceTimeout": "timeout",
    "SourceUnavailable": "unavailable",
    "SourceCommandFailed": "command_failed",
})  # fmt: skip
"""The ``kind`` label of each :class:`~mailwatch.errors.SourceError` a probe raises (by class
name); any other error is ``error``."""
OTHER_ERROR = "error"


@dataclass(frozen=True)
class SourceKind(Generic[C]):
    """One source type: its configuration model, how to build it, how its errors count."""

    config: type[C]
    build: Callable[[str, C, BuildContext], Source]
    """``build(name, table, context)``: the adapter for one ``[sources.NAME]`` table."""
    error_kinds: Mapping[str, str] = field(default_factory=lambda: SOURCE_ERROR_KINDS)
    """Error class name → ``kind`` label, for the errors this kind's probes raise."""

    @property
    def type(self) -> str:
        """The ``type`` tag of its tables."""
        return type_tag(self.config)

    def error_labels(self) -> tuple[str, ...]:
        """Every ``kind`` label this kind's probe errors can have."""
        return tuple(sorted({OTHER_ERROR, *self.error_kinds.values()}))

    def error_kind(self, error: str | None) -> str:
        """The ``kind`` label of a probe that failed with the error class named ``error``."""
        return self.error_kinds.get(error or "", OTHER_ERROR)


_KINDS: dict[str, SourceKind[Any]] = {}


def register(kind: SourceKind[Any]) -> None:
    """Register ``kind``: its tables validate (config half) and build (adapter half)."""
    known = _KINDS.get(kind.type)
    if known is not None and known != kind:
        raise ValueError(f"source type {kind.type!r} is already registered")
    register_config(kind.config)
    _KINDS[kind.type] = kind


def unregister(tag: str) -> None:
    """Forget the source type ``tag`` (for tests that register a kind of their own)."""
    _KINDS.pop(tag, None)
    unregister_config(tag)


def kinds() -> tuple[SourceKind[Any], ...]:
    """Every registered kind, in registration order."""
    return tuple(_KINDS.values())


def kind_of(config: SourceConfigBase) -> SourceKind[Any]:
    """The kind a validated table belongs to."""
    try:
        return _KINDS[config.type]
    except KeyError:
        raise ConfigError([f"source type {config.type!r} has no adapter registered"]) from None


register(SourceKind(PostfixSourceConfig, build_postfix))
register(SourceKind(MailLogSourceConfig, build_maillog))
register(SourceKind(EximSourceConfig, build_exim))
register(SourceKind(ImapSourceConfig, build_imap))
register(SourceKind(CanarySourceConfig, build_canary))
