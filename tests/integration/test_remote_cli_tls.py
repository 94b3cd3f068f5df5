"""The remote CLI against a running mailwatch over real TLS, with a private CA made for the test.

Verified TLS by default (a private CA is refused without ``--ca-file``), ``--ca-file`` and
``$MAILWATCH_CA_FILE``, and ``hold``/``release``/``flush`` through ``--server``, audited with the
token's name as the actor and ``--by`` as on behalf of.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailwatch.cli import cli
from mailwatch.config.settings import Settings, load
from mailwatch.sandbox.dovecot import make_certificates
from mailwatch.sandbox.postfix import PrivatePostfix, make_message
from mailwatch.store import Store
from mailwatch.web.runner import run_service

from .service_config import service_toml

pytestmark = pytest.mark.postfix
WRITE, READ = "remote-write-secret", "remote-read-secret"


@pytest.fixture(name="settings")
def fixture_settings(
    tmp_path: Path, postfix: PrivatePostfix, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """HTTPS with a certificate from a test CA; a read and a write token."""
    monkeypatch.setenv("MW_REMOTE_WRITE", WRITE)
    monkeypatch.setenv("MW_REMOTE_READ", READ)
    monkeypatch.delenv("MAILWATCH_CA_FILE", raising=False)
    _, cert, key = make_certificates(tmp_path / "pki")
    config = tmp_path / "mailwatch.toml"
    config.write_text(service_toml(
        postfix,
        [("on-call", "write", "MW_REMOTE_WRITE"), ("dashboard", "read", "MW_REMOTE_READ")],
        store=tmp_path / "mw.db",
        http=f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n',
    ))  # fmt: skip
    return load(config)


@pytest.fixture(name="server")
async def fixture_server(settings: Settings, postfix: PrivatePostfix) -> AsyncIterator[str]:
    """The running service's HTTPS URL, once it has scanned one queued recall."""
    postfix.inject([make_message("Emergency recall - A Person")])
    postfix.wait_for_queue(1)
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(settings, echo=lambda _: None, stop=stop))
    for _ in range(100):
        await asyncio.sleep(0.1)
        with Store(settings.store.path) as store:
            if store.queued():
                break
    yield f"https://localhost:{settings.http.port}"
    stop.set()
    await asyncio.wait_for(task, timeout=15)


def mailwatch(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process (no -c: remote commands need no local configuration)."""
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


class TestRemoteTls:
    """Verified by default; trusted with --ca-file; actions over the API."""

    async def test_private_ca_needs_ca_file(self, server: str, tmp_path: Path) -> None:
        """Without --ca-file: one-line verification error; with it (or the env var): answers."""
        env = {"MAILWATCH_TOKEN": READ}
        code, _, err = await asyncio.to_thread(
            mailwatch, "stuck", "--json", "--server", server, env=env
        )
        assert code == 1
        assert "CERTIFICATE_VERIFY_FAILED" in err
        assert len(err.strip().splitlines()) == 1
        ca = str(tmp_path / "pki" / "ca.pem")
        code, out, err = await asyncio.to_thread(
            mailwatch, "stuck", "--json", "--server", server, "--ca-file", ca, env=env
        )
        assert code == 0, err
        assert [i["class"] for i in json.loads(out)] == ["recall_emergency"]
        code, out, err = await asyncio.to_thread(
            mailwatch, "alerts", "--json", "--server", server, env={**env, "MAILWATCH_CA_FILE": ca}
        )
        assert code == 0, err
        code, _, err = await asyncio.to_thread(
            mailwatch, "stuck", "--server", server, "--ca-file", str(tmp_path / "nope.pem"),
            env=env,
        )  # fmt: skip
        assert code == 2
        assert "--ca-file" in err

    async def test_hold_release_flush_over_the_api(
        self, server: str, tmp_path: Path, postfix: PrivatePostfix, settings: Settings
    ) -> None:
        """hold/release/flush --server act on the real queue and are audited as the token."""
        ca = str(tmp_path / "pki" / "ca.pem")
        (tmp_path / "token").write_text(WRITE + "\n")
        remote = ["--server", server, "--ca-file", ca, "--token-file", str(tmp_path / "token")]
        queue_id = str(postfix.queue()[0]["queue_id"])
        code, out, err = await asyncio.to_thread(
            mailwatch, "hold", queue_id, "--yes", "--by", "Duty Manager A", *remote
        )
        assert code == 0, err
        assert "placed on hold" in out
        assert postfix.queue()[0]["queue_name"] == "hold"
        code, _, err = await asyncio.to_thread(mailwatch, "release", queue_id, "--yes", *remote)
        assert code == 0, err
        assert postfix.queue()[0]["queue_name"] != "hold"
        code, _, err = await asyncio.to_thread(mailwatch, "flush", "--yes", *remote)
        assert code == 0, err
        with Store(settings.store.path) as store:
            trail = [(r.actor, r.on_behalf_of, r.action) for r in store.audit_trail(3)]
        assert trail == [
            ("on-call", None, "flush"),
            ("on-call", None, "release"),
            ("on-call", "Duty Manager A", "hold"),
        ]
        code, _, err = await asyncio.to_thread(
            mailwatch, "retry", queue_id, "--yes", "--server", server, "--ca-file", ca,
            env={"MAILWATCH_TOKEN": READ},
        )  # fmt: skip
        assert code == 1
        assert "read-only" in err
