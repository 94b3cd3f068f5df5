"""The configuration of classes: match rules, terms, negatives, and the operator's overlay.

A class defined in ``mailwatch.toml`` with ``priority`` and ``stuck_after`` replaces the shipped
class of the same name. A class given only ``extra_terms`` and/or ``extra_unless``
(:class:`ClassAdditions`) *extends* the shipped class instead, without copying it:
``extra_terms`` become one more rule (any of them matches), ``extra_unless`` more negative
terms (see :mod:`mailwatch.core.terms` for how terms match).
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    model_validator,
)

from mailwatch.config.fields import PriorityField, RegexField, SlaField
from mailwatch.core.classify import HeaderCondition, MatchRule, MessageClass
from mailwatch.core.durations import BusinessCalendar
from mailwatch.core.terms import Term, parse_term


def _term(value: object) -> Term:
    if isinstance(value, Term):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a term (a word or phrase in quotes)")
    if len(value) > 200:
        raise ValueError(f"{value[:40]!r}…: a term is at most 200 characters")
    return parse_term(value)


TermField = Annotated[Term, PlainValidator(_term)]
"""A word or phrase (``"emergency recall"``, ``"escalat*"``, ``"^recall:"``)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class HeaderRuleConfig(_Section):
    """``{ name = "Importance", equals = "high" }`` or ``{ name = "X-Case", regex = "…" }``."""

    name: str
    equals: str | None = None
    regex: RegexField | None = None

    @model_validator(mode="after")
    def _one_test(self) -> HeaderRuleConfig:
        if (self.equals is None) == (self.regex is None):
            raise ValueError("give exactly one of equals or regex")
        return self


class MatchConfig(_Section):
    """One match rule: every condition given must hold."""

    subject: RegexField | None = None
    subject_not: RegexField | None = None
    terms: list[TermField] = Field(default_factory=list, max_length=500)
    all_of: list[list[TermField]] = Field(default_factory=list, max_length=10)
    headers: list[HeaderRuleConfig] = Field(default_factory=list)
    senders: list[str] = Field(default_factory=list)
    recipients: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    queues: list[str] = Field(default_factory=list)
    priority: PriorityField | None = None

    @model_validator(mode="after")
    def _groups(self) -> MatchConfig:
        if any(not group for group in self.all_of):
            raise ValueError("all_of: every group needs at least one term")
        return self

    def to_rule(self) -> MatchRule:
        """The pure-core rule this configures."""
        return MatchRule(
            subject=self.subject,
            subject_not=self.subject_not,
            headers=tuple(
                HeaderCondition(h.name, equals=h.equals, pattern=h.regex) for h in self.headers
            ),
            senders=tuple(self.senders),
            recipients=tuple(self.recipients),
            sources=tuple(self.sources),
            queues=tuple(self.queues),
            priority=self.priority,
            terms=tuple(self.terms),
            all_of=tuple(tuple(group) for group in self.all_of),
        )


class ClassConfig(_Section):
    """A business class of mail."""

    priority: PriorityField
    stuck_after: SlaField
    description: str = ""
    match: list[MatchConfig] = Field(default_factory=list)
    unless: list[TermField] = Field(default_factory=list, max_length=500)

    def to_class(
        self, name: str, calendar: BusinessCalendar | None, extra: ClassAdditions | None = None
    ) -> MessageClass:
        """The pure-core class, with an operator's additions if any."""
        rules = [m.to_rule() for m in self.match]
        unless = list(self.unless)
        if extra is not None:
            if extra.extra_terms:
                rules.append(MatchRule(terms=tuple(extra.extra_terms)))
            unless += extra.extra_unless
        stuck_after = self.stuck_after.on(calendar) if calendar else self.stuck_after
        return MessageClass(
            name=name, priority=self.priority, stuck_after=stuck_after, rules=tuple(rules),
            description=self.description, unless=tuple(unless),
        )  # fmt: skip


class ClassAdditions(_Section):
    """Terms and negatives added to a shipped class, without copying (or replacing) it."""

    extra_terms: list[TermField] = Field(default_factory=list, max_length=500)
    """One more rule: any of these terms in the subject."""
    extra_unless: list[TermField] = Field(default_factory=list, max_length=500)
    """More negative terms: any of these in the subject and the message is not of the class."""


def _kind(value: object) -> str:
    if isinstance(value, BaseModel):
        return "additions" if isinstance(value, ClassAdditions) else "class"
    keys = set(value) if isinstance(value, dict) else set()
    return "additions" if keys and keys <= {"extra_terms", "extra_unless"} else "class"


ClassEntry = Annotated[
    Annotated[ClassConfig, Tag("class")] | Annotated[ClassAdditions, Tag("additions")],
    Discriminator(_kind),
]
"""A class in the file: a whole class, or only additions to the shipped class of that name."""


def merged(
    shipped: dict[str, ClassConfig], configured: dict[str, ClassConfig | ClassAdditions]
) -> tuple[dict[str, ClassConfig], dict[str, ClassAdditions]]:
    """The classes (shipped overlaid with the file's) and the additions to them.

    ``ValueError`` for additions to a class that is not shipped (or not included).
    """
    classes = dict(shipped)
    additions: dict[str, ClassAdditions] = {}
    for name, given in configured.items():
        if isinstance(given, ClassConfig):
            classes[name] = given
        elif name in shipped:
            additions[name] = given
        else:
            raise ValueError(
                f"classes.{name}: extra_terms and extra_unless extend a shipped class, and no "
                "shipped class has this name (a new class needs priority and stuck_after)"
            )
    return classes, additions


def shipped_classes() -> dict[str, ClassConfig]:
    """The default taxonomy shipped with mailwatch (``mailwatch/core/taxonomy.toml``)."""
    text = resources.files("mailwatch.core").joinpath("taxonomy.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)["classes"]
    return {name: ClassConfig.model_validate(value) for name, value in raw.items()}
