"""Configuration: one TOML file, validated once at start into typed, frozen objects.

Any key can be overridden by an environment variable ``MAILWATCH_<SECTION>__<KEY>`` (nested
keys joined by ``__``), e.g. ``MAILWATCH_STORE__PATH=/var/lib/mailwatch/db.sqlite``. Errors
name the key path and say why (``classes.recall_emergency.stuck_after: "10 minuts" is not a
duration``). Classes default to the shipped taxonomy (``taxonomy.toml``); a class defined in
the file replaces the shipped class of the same name, or extends it with ``extra_terms`` and
``extra_unless`` (:mod:`mailwatch.config.classes`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from mailwatch.config import sources as _builtin_kinds  # noqa: F401 - registers them
from mailwatch.config.alerts import (
    AlertRuleConfig,
    EmailReceiverConfig,
    ReceiverConfig,
    default_rules,
)
from mailwatch.config.calendar import CalendarConfig
from mailwatch.config.classes import (
    ClassAdditions,
    ClassConfig,
    ClassEntry,
    merged,
    shipped_classes,
)
from mailwatch.config.essentials import read_file
from mailwatch.config.fields import (
    DurationField,
    SecretRef,
    WindowField,
)
from mailwatch.config.fleet import FleetConfig
from mailwatch.config.kinds import SourceConfig, source_types
from mailwatch.config.metrics import MetricsConfig
from mailwatch.config.status import StatusPageConfig
from mailwatch.core.classify import Classifier
from mailwatch.core.durations import Duration
from mailwatch.errors import ConfigError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class StoreConfig(_Section):
    """Where mailwatch keeps what it has seen, and for how long (see mailwatch.store.retention)."""

    path: Path = Path("mailwatch.db")
    retention: DurationField = Duration(seconds=30 * 86400)
    """History (scans, class counts, deliveries, messages that left, canaries) kept this long."""
    audit_retention: DurationField = Duration(seconds=400 * 86400)
    """Audit records (acks, silences, personal-data views, actions) kept this long."""

    @model_validator(mode="after")
    def _positive_windows(self) -> StoreConfig:
        for key in ("retention", "audit_retention"):
            window: Duration = getattr(self, key)
            if window.business_days or window.seconds < 86400:
                raise ValueError(f"{key}: keep at least one day (a clock duration such as 30d)")
        return self


class ApiToken(_Section):
    """A bearer token for the API: its name is what the audit trail records as "who"."""

    name: str
    scope: Literal["read", "write"] = "read"
    secret: SecretRef
    subjects: bool = False
    """May see subjects on the status page's class pages (each view is audited)."""


class HttpConfig(_Section):
    """The HTTP server (metrics, health, API, status page): loopback by default."""

    listen: str = "127.0.0.1:9745"
    """``HOST:PORT`` (``[::1]:9745`` for IPv6)."""
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    client_ca_file: Path | None = None
    """When set, clients (Prometheus) must present a certificate signed by this CA."""
    tokens: list[ApiToken] = Field(default_factory=list)
    """API bearer tokens (read: look; write: ack, silence, hold/release/retry/flush)."""
    open_paths: list[str] = Field(default_factory=lambda: ["/metrics", "/healthz", "/readyz", "/"])
    """Paths served without a token (the status page shows no personal data)."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not HOST:PORT")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("client_ca_file needs tls_cert_file and tls_key_file")
        return self

    @property
    def host(self) -> str:
        """The address to bind (IPv6 brackets removed)."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port to bind."""
        return int(self.listen.rpartition(":")[2])


class LogConfig(_Section):
    """Logging: JSON lines, or a readable console format (``auto`` picks by TTY)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    """The whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix="MAILWATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        arbitrary_types_allowed=True,
    )

    store: StoreConfig = StoreConfig()
    log: LogConfig = LogConfig()
    http: HttpConfig = HttpConfig()
    default_class: str = "general"
    include_default_classes: bool = True
    classes: dict[str, ClassEntry] = Field(default_factory=dict)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    undeliverable_for: WindowField = Duration(seconds=86400)
    """How long a bounced or expired P1/P2 message stays listed as stuck."""
    calendar: CalendarConfig = CalendarConfig()
    """Where and on which days business-day SLAs are counted."""
    status: StatusPageConfig = StatusPageConfig()
    """The duty manager's status page (runbook links, refresh)."""
    metrics: MetricsConfig = MetricsConfig()
    receivers: dict[str, ReceiverConfig] = Field(default_factory=dict)
    alerts: list[AlertRuleConfig] | None = None
    """Alert rules; when absent, the defaults for the shipped taxonomy apply."""
    fleet: FleetConfig | None = None
    """The central PostgreSQL store this agent pushes into (``mailwatch.fleet``); optional."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment variables override the file's values (given as init arguments)."""
        return (env_settings, init_settings)

    @field_validator("classes", "sources", "receivers")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a valid name (lower-case letters, digits, _)")
        return value

    @model_validator(mode="after")
    def _references_exist(self) -> Settings:
        if self.default_class not in self.all_classes():
            raise ValueError(f"default_class {self.default_class!r} is not a configured class")
        for name, source in self.sources.items():
            for problem in source.check(name, self.sources):
                raise ValueError(problem)
        for index, rule in enumerate(self.alerts or ()):
            for receiver in (*rule.receivers, *rule.escalate_to):
                if receiver not in self.receivers:
                    raise ValueError(f"alerts.{index}: no receiver named {receiver!r}")
        names = [rule.name for rule in self.alerts or ()]
        if len(names) != len(set(names)):
            raise ValueError("alerts: rule names must be unique")
        if self.store.retention.seconds < self.undeliverable_for.seconds:
            raise ValueError(
                "store.retention: shorter than undeliverable_for, so bounced mail would be "
                "deleted while it is still listed as stuck"
            )
        return self

    def alert_rules(self) -> list[AlertRuleConfig]:
        """The configured alert rules, or the defaults for the shipped taxonomy."""
        return list(self.alerts) if self.alerts is not None else default_rules()

    def warnings(self) -> list[str]:
        """Things that are valid but probably not what the operator wants."""
        found = []
        for rule in self.alert_rules():
            missing = [r for r in (*rule.receivers, *rule.escalate_to) if r not in self.receivers]
            if missing:
                found.append(f"alert rule {rule.name}: no receiver {', '.join(missing)} is "
                             "configured, so its alerts are not delivered")  # fmt: skip
        local = any(c.local_mta for c in self.sources.values())
        watched_hosts = {host for c in self.sources.values() for host in c.remote_hosts()}
        for name, receiver in self.receivers.items():
            if not isinstance(receiver, EmailReceiverConfig):
                continue
            if receiver.host in watched_hosts:
                found.append(
                    f"receivers.{name}: the alert relay {receiver.host} is also a watched"
                    " source; alerts about it would go through the system that failed"
                )
            elif local and receiver.host in ("localhost", "127.0.0.1", "::1"):
                found.append(
                    f"receivers.{name}: the alert relay {receiver.host} looks like the watched"
                    " local MTA; alerts about it would queue behind the problem"
                )
        return found

    def all_classes(self) -> dict[str, ClassConfig]:
        """Shipped classes (unless disabled) overlaid with the file's, in taxonomy order."""
        return self._merged()[0]

    def _merged(self) -> tuple[dict[str, ClassConfig], dict[str, ClassAdditions]]:
        return merged(shipped_classes() if self.include_default_classes else {}, self.classes)

    def header_names(self) -> list[str]:
        """Every header a class rule looks at (sources that fetch few headers must fetch these)."""
        return sorted({h.name for c in self.all_classes().values() for m in c.match
                       for h in m.headers})  # fmt: skip

    def classifier(self) -> Classifier:
        """The pure-core classifier this configuration describes."""
        chosen, additions = self._merged()
        business = any(c.stuck_after.business_days for c in chosen.values())
        calendar = self.calendar.calendar() if business else None
        classes = [c.to_class(n, calendar, additions.get(n)) for n, c in chosen.items()]
        return Classifier.from_classes(classes, self.default_class)


_RECEIVER_TAGS = ("alertmanager", "webhook", "email")


def _describe(error: Any) -> str:
    parts = list(error["loc"])
    tags = {
        "sources": (*source_types(), *_RECEIVER_TAGS),
        "receivers": _RECEIVER_TAGS,
        "classes": ("class", "additions"),
    }
    if len(parts) > 2 and parts[2] in tags.get(str(parts[0]), ()):
        del parts[2]  # the tagged union's type tag: not a key the operator wrote
    loc = ".".join(str(part) for part in parts)
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    return f"{loc or '(top level)'}: {message}"


_PATH_KEYS = ("path", "config_dir", "config", "tls_cert_file", "tls_key_file", "client_ca_file",
              "ca_file", "file")  # fmt: skip


def _resolve_paths(data: Any, base: Path) -> None:
    """Make every relative path in the file relative to the file, not the working directory.

    Walks the whole document: store, http, sources, receivers and secret references
    (``{ file = "..." }``) alike.
    """
    if isinstance(data, dict):
        for key, value in data.items():
            if key in _PATH_KEYS and isinstance(value, str):
                data[key] = str(base / value)
            else:
                _resolve_paths(value, base)
    elif isinstance(data, list):
        for item in data:
            _resolve_paths(item, base)


def load(path: Path | None) -> Settings:
    """Read and validate ``path`` (``None``: defaults and environment only).

    Raises :class:`ConfigError` listing every problem with its key path.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_file(path)
        _resolve_paths(data, path.parent)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()]) from None
    except SettingsError as exc:  # an environment variable that is not valid JSON
        field = re.search(r'field "([^"]+)"', str(exc))
        name = f"MAILWATCH_{field.group(1).upper()}" if field else "a MAILWATCH_ variable"
        raise ConfigError([f"{name}: not valid JSON ({exc.__cause__ or exc})"]) from None
