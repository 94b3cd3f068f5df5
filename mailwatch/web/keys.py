"""The application keys the HTTP handlers share (the service, the settings, the reader)."""

from __future__ import annotations

from aiohttp import web

from mailwatch.app.service import Service
from mailwatch.config.settings import Settings
from mailwatch.store.listing import MessageReader
from mailwatch.web.auth import Caller, TokenTable

SERVICE_KEY: web.AppKey[Service] = web.AppKey("service")
SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("settings")
TOKENS_KEY: web.AppKey[TokenTable] = web.AppKey("tokens", TokenTable)
READER_KEY: web.AppKey[MessageReader | None] = web.AppKey("reader")
"""A read-only reader of the store for worker threads; ``None`` for an in-memory store."""
CALLER_KEY: web.RequestKey[Caller] = web.RequestKey("caller", Caller)
