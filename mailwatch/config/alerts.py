"""Configuration of alert receivers and alert rules (validated with the rest of the file).

Secrets (webhook HMAC keys, SMTP passwords) are never written in the file: give the name of an
environment variable (``*_env``) or a file (``*_file``) that holds them. They are read when
used and never logged.

Default rules for the shipped taxonomy (used when the file defines no ``[[alerts]]``), read from
the alert table ``alerts.toml`` beside this module, which also defines the Prometheus rules
(one definition of each alert; see ``docs/alerting.md``):

* ``p1_approaching_sla`` — a P1 message has used 80 % of its SLA (warn before it runs out);
* ``p1_stuck``           — any P1 message is stuck: page the duty managers, repeat every 30m,
  escalate to ``ops`` after an hour unacknowledged;
* ``p2_stuck``           — P2 mail stuck: ticket to ``ops``;
* ``undeliverable``      — a P1/P2 message bounced or expired: page the duty managers;
* ``destination_deferring`` — a destination (a partner, or among the most deferred) defers
  P1 mail (half or more of its mail over the deferral window): page the duty managers;
* ``canary_lost``        — a canary path lost a canary: page ``ops``;
* ``source_blind``       — a source failing, or without a successful scan, for 5 minutes past
  when one was due: page ``ops`` (mailwatch is blind).

Rules route to receivers by name; a default rule naming a receiver that is not configured
delivers nothing (``mailwatch config check`` says so), but its alerts still show in
``mailwatch alerts``.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mailwatch.alerting.lifecycle import Timing
from mailwatch.alerting.rules import AlertRule, Condition
from mailwatch.config.fields import PriorityField, SecretRef, SpanField, WindowField
from mailwatch.core.durations import Duration


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Seconds = Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]
"""A network timeout or period in seconds: positive, finite, at most an hour."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class AlertmanagerReceiverConfig(_Section):
    """Prometheus Alertmanager(s): every listed URL gets every alert (an HA cluster)."""

    type: Literal["alertmanager"]
    urls: list[HttpUrl] = Field(min_length=1)
    """Base URLs, e.g. ``http://127.0.0.1:9093``; alerts go to ``/api/v2/alerts``."""
    resend_every: Seconds = 60.0
    """Seconds between re-sends of active alerts (``endsAt`` = now + 4 x this)."""
    timeout: Seconds = 10.0
    ca_file: Path | None = None
    include_subjects: bool = False


class WebhookReceiverConfig(_Section):
    """A JSON POST (documented payload), optionally signed with HMAC-SHA256."""

    type: Literal["webhook"]
    url: HttpUrl
    hmac_secret: SecretRef | None = None
    timeout: Seconds = 10.0
    ca_file: Path | None = None
    include_subjects: bool = False


class EmailReceiverConfig(_Section):
    """Email through a relay that is *not* one of the watched mail systems."""

    type: Literal["email"]
    host: str
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    """``none`` only for a relay on loopback; TLS certificates are verified otherwise."""
    username: str | None = None
    password: SecretRef | None = None
    ca_file: Path | None = None
    sender: str
    to: list[str] = Field(min_length=1)
    timeout: Seconds = 30.0
    include_subjects: bool = False


ReceiverConfig = Annotated[
    AlertmanagerReceiverConfig | WebhookReceiverConfig | EmailReceiverConfig,
    Field(discriminator="type"),
]


def _duration(value: Duration | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value.seconds)


class AlertRuleConfig(_Section):
    """One ``[[alerts]]`` table."""

    name: str
    condition: Condition
    severity: Literal["page", "warning", "ticket", "info"] = "page"
    classes: list[str] = Field(default_factory=list)
    priorities: list[PriorityField] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    min_count: int = Field(default=1, ge=1)
    sla_fraction: float = Field(default=1.0, gt=0)
    blind_after: SpanField = Duration(seconds=300)
    deferral_share: float = Field(default=0.5, gt=0, le=1)
    receivers: list[str] = Field(default_factory=list)
    pending_for: WindowField = Field(default=Duration(0), alias="for")
    keep_firing_for: WindowField = Duration(0)
    repeat_every: SpanField | None = Duration(seconds=1800)
    escalate_after: WindowField | None = None
    escalate_to: list[str] = Field(default_factory=list)
    runbook_url: str = ""

    def to_rule(self) -> AlertRule:
        """The pure-core rule."""
        return AlertRule(
            name=self.name,
            condition=self.condition,
            severity=self.severity,
            classes=tuple(self.classes),
            priorities=tuple(self.priorities),
            sources=tuple(self.sources),
            min_count=self.min_count,
            sla_fraction=self.sla_fraction,
            blind_after=timedelta(seconds=self.blind_after.seconds),
            runbook_url=self.runbook_url,
            deferral_share=self.deferral_share,
            timing=Timing(
                receivers=tuple(self.receivers),
                pending_for=timedelta(seconds=self.pending_for.seconds),
                keep_firing_for=timedelta(seconds=self.keep_firing_for.seconds),
                repeat_every=_duration(self.repeat_every),
                escalate_after=_duration(self.escalate_after),
                escalate_to=tuple(self.escalate_to),
            ),
        )


ALERT_TABLE = "alerts.toml"
"""The alert table in ``mailwatch.config``: each alert once, for mailwatch's engine and for
Prometheus (``deploy/prometheus/generate_alert_rules.py`` renders the Prometheus side)."""
_NOT_RULE_KEYS = frozenset({"inhibits"})


def alert_table() -> dict[str, dict[str, Any]]:
    """The shipped alert table (``mailwatch/config/alerts.toml``), by alert name."""
    text = resources.files("mailwatch.config").joinpath(ALERT_TABLE).read_text(encoding="utf-8")
    alerts: dict[str, dict[str, Any]] = tomllib.loads(text)["alerts"]
    return alerts


def default_rules() -> list[AlertRuleConfig]:
    """Alert rules for the shipped taxonomy: the alert table's built-in rules, in its order."""
    rules = []
    for name, entry in alert_table().items():
        builtin = entry.get("builtin")
        if builtin is None:
            continue  # only Prometheus can evaluate it
        keys = {k: v for k, v in builtin.items() if k not in _NOT_RULE_KEYS}
        if keys.get("repeat_every") == "never":
            keys["repeat_every"] = None
        keys |= {"name": name, "severity": entry["severity"],
                 "priorities": entry.get("priorities", [])}  # fmt: skip
        rules.append(AlertRuleConfig.model_validate(keys))
    return rules
