"""The configuration half of the source kind registry: one config model per source ``type``.

A source kind is described in two halves, one per layer (see docs/architecture.md, "Adding a
source"). This half is its configuration model, a subclass of :class:`SourceConfigBase`: the
keys of its ``[sources.NAME]`` table and the facts about the kind that the configuration and
the service need without knowing the adapter (its queues, whether it holds a backlog, whether
it is a local MTA, the hosts it talks to). The other half, how to build the adapter and how
its errors map to metric kinds, is :class:`mailwatch.sources.registry.SourceKind`, whose one
``register`` call registers both halves.

The ``[sources]`` union is derived from what is registered here, when a configuration is
validated: :func:`validate_source_config` picks the model by ``type``, and an unknown ``type``
is reported with every registered one. The built-in models (:mod:`mailwatch.config.sources`)
are registered when that module is imported (the settings import it), so a configuration loads
without the adapters.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, TypeAdapter

from mailwatch.config.fields import IntervalField, TimeoutField
from mailwatch.core.durations import Duration


class SourceConfigBase(BaseModel):
    """What every ``[sources.NAME]`` table has, and the facts a kind declares about itself.

    A subclass narrows ``type`` to ``Literal["its-tag"]`` (the tag the registry keys it by)
    and may override the defaults of ``interval`` and ``timeout``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    type: str
    interval: IntervalField = Duration(seconds=60)
    timeout: TimeoutField = Duration(seconds=60)

    local_mta: ClassVar[bool] = False
    """The kind watches a mail system on this host (an alert relay on loopback is suspect)."""
    holds_backlog: ClassVar[bool] = True
    """Its messages are a backlog judged against the SLAs (a mail log only reports outcomes)."""
    reports_canaries: ClassVar[bool] = False
    """Its observations carry canary round trips (metrics are kept per canary path)."""

    def queues(self, name: str) -> tuple[str, ...]:
        """The queues of source ``name`` whose metrics start at zero before the first scan."""
        return ()

    def probe_timeout(self) -> float:
        """Seconds one probe may take (the supervisor's deadline is set above it)."""
        return self.timeout.seconds

    def remote_hosts(self) -> tuple[str, ...]:
        """The servers the source talks to (an alert relay among them is suspect)."""
        return ()

    def check(self, name: str, sources: Mapping[str, SourceConfigBase]) -> list[str]:
        """Problems with this source's references to the other configured ``sources``."""
        return []


_MODELS: dict[str, type[SourceConfigBase]] = {}


def type_tag(model: type[SourceConfigBase]) -> str:
    """The ``type`` tag of ``model`` (its ``Literal``)."""
    tags = get_args(model.model_fields["type"].annotation)
    if len(tags) != 1 or not isinstance(tags[0], str):
        raise TypeError(f"{model.__name__}.type must be a Literal of one string")
    return tags[0]


def register_config(model: type[SourceConfigBase]) -> None:
    """Make ``type = "<tag>"`` tables validate with ``model`` (again with the same model: no-op)."""
    tag = type_tag(model)
    known = _MODELS.get(tag)
    if known is not None and known is not model:
        raise ValueError(f"source type {tag!r} is already registered ({known.__name__})")
    _MODELS[tag] = model


def unregister_config(tag: str) -> None:
    """Forget the source type ``tag`` (tests that register a kind of their own clean up)."""
    _MODELS.pop(tag, None)


def source_types() -> tuple[str, ...]:
    """The registered ``type`` tags, in registration order."""
    return tuple(_MODELS)


def source_config_models() -> tuple[type[SourceConfigBase], ...]:
    """The registered config models, in registration order."""
    return tuple(_MODELS.values())


@functools.cache
def _adapter(models: tuple[type[SourceConfigBase], ...]) -> TypeAdapter[SourceConfigBase]:
    union = Union[models]  # type: ignore[valid-type]  # noqa: UP007 - built at run time
    return TypeAdapter(Annotated[union, Field(discriminator="type")])


def validate_source_config(value: Any) -> SourceConfigBase:
    """One ``[sources.NAME]`` table validated with the model its ``type`` names."""
    if isinstance(value, SourceConfigBase):
        return value
    return _adapter(source_config_models()).validate_python(value)


if TYPE_CHECKING:
    SourceConfig = SourceConfigBase
else:
    SourceConfig = Annotated[SourceConfigBase, PlainValidator(validate_source_config)]
    """A source table: the discriminated union of every registered config model."""
