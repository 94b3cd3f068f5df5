"""``[fleet]``: the URL carries no password, TLS is verified off loopback, the agent is named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mailwatch.config.fleet import FleetConfig
from mailwatch.config.settings import Settings


def test_a_password_in_the_url_is_refused() -> None:
    """Secrets are given by reference, never written in the configuration."""
    with pytest.raises(ValidationError, match="no password in url"):
        FleetConfig(url="postgresql://mw:hunter2@db.example/mailwatch")


def test_only_postgresql_urls() -> None:
    """Another scheme is a mistake, said at load time."""
    with pytest.raises(ValidationError, match="postgresql://"):
        FleetConfig(url="mysql://mw@db.example/mailwatch")


def test_tls_is_verified_unless_on_loopback() -> None:
    """verify-full by default for a remote server; prefer on loopback; an explicit mode wins."""
    assert FleetConfig(url="postgresql://mw@db.example/m").effective_sslmode() == "verify-full"
    assert FleetConfig(url="postgresql://mw@127.0.0.1:5/m").effective_sslmode() == "prefer"
    explicit = FleetConfig(url="postgresql://mw@db.example/m", sslmode="require")
    assert explicit.effective_sslmode() == "require"


def test_the_password_is_read_from_its_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The password comes from the environment at connect time and is not in the repr."""
    monkeypatch.setenv("FLEET_PW", "s3cret-value")
    config = FleetConfig.model_validate(
        {"url": "postgresql://mw@db.example/m", "password": {"env": "FLEET_PW"}}
    )
    assert config.connect_kwargs()["password"] == "s3cret-value"
    assert "s3cret-value" not in repr(config)


def test_fleet_is_optional_and_agent_defaults_to_the_host() -> None:
    """Without [fleet] nothing is pushed; with it, the agent has a name."""
    assert Settings().fleet is None
    settings = Settings.model_validate({"fleet": {"url": "postgresql://mw@db.example/m"}})
    assert settings.fleet is not None
    assert settings.fleet.agent
