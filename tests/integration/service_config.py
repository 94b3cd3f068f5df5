"""The configuration the API, remote-CLI and fleet tests run ``mailwatch run`` with.

One private Postfix as ``mta1`` (probed every second), emergency recalls stuck at once, a
listener on a free loopback port, and the bearer tokens asked for (their secrets in the
environment variables named). Each test adds what is its own (TLS, ``[fleet]``) as ``http`` or
``extra`` TOML.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mailwatch.sandbox.postfix import PrivatePostfix, free_port

Token = tuple[str, str, str]
"""(name, scope, environment variable holding the secret)."""


def service_toml(
    postfix: PrivatePostfix,
    tokens: Sequence[Token],
    *,
    store: str | Path = "mw.db",
    http: str = "",
    extra: str = "",
) -> str:
    """The TOML text (see the module docstring)."""
    token_tables = "".join(
        f'[[http.tokens]]\nname = "{name}"\nscope = "{scope}"\nsecret = {{ env = "{env}" }}\n'
        for name, scope, env in tokens
    )
    return f"""
[store]
path = "{store}"
[http]
listen = "127.0.0.1:{free_port()}"
{http}{token_tables}[sources.mta1]
type = "postfix"
config_dir = "{postfix.config_dir}"
interval = "1s"
[classes.recall_emergency]
priority = "P1"
stuck_after = "0s"
[[classes.recall_emergency.match]]
subject = 'emergency recall'
{extra}"""
