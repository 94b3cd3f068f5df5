"""/metrics over TLS with client-certificate authentication (certificates made for the test)."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailwatch.config.settings import Settings, load
from mailwatch.sandbox.dovecot import make_certificates
from mailwatch.sandbox.postfix import PrivatePostfix, free_port
from mailwatch.web.runner import run_service

pytestmark = pytest.mark.postfix


def _client_certificate(directory: Path) -> tuple[Path, Path]:
    """A client certificate signed by the sandbox CA in ``directory`` (clientAuth usage)."""
    key, csr, cert = directory / "client.key", directory / "client.csr", directory / "client.pem"
    ext = directory / "client.ext"
    ext.write_text("extendedKeyUsage=clientAuth\n")
    for args in (
        ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(csr), "-subj", "/CN=prometheus"],
        ["x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.pem"), "-CAkey",
         str(directory / "ca.key"), "-CAcreateserial", "-out", str(cert), "-days", "2",
         "-extfile", str(ext)],
    ):  # fmt: skip
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(name="tls_settings")
def fixture_tls_settings(tmp_path: Path, postfix: PrivatePostfix) -> Settings:
    """A service serving HTTPS and requiring client certificates signed by the test CA."""
    ca, cert, key = make_certificates(tmp_path / "pki")
    config = tmp_path / "mailwatch.toml"
    config.write_text(
        f'[store]\npath = "mw.db"\n[http]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\nclient_ca_file = "{ca}"\n'
        f'[sources.mta1]\ntype = "postfix"\nconfig_dir = "{postfix.config_dir}"\n'
    )
    return load(config)


@pytest.fixture(name="https")
async def fixture_https(tls_settings: Settings) -> AsyncIterator[str]:
    """The running service's HTTPS base URL."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(tls_settings, echo=lambda _: None, stop=stop))
    await asyncio.sleep(0.5)
    yield f"https://localhost:{tls_settings.http.port}"
    stop.set()
    await asyncio.wait_for(task, timeout=15)


def _fetch(url: str, context: ssl.SSLContext) -> int:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310
        return int(response.status)


class TestTls:
    """Verified TLS; a scraper without a client certificate is refused."""

    async def test_client_certificate_required(self, https: str, tmp_path: Path) -> None:
        """With the CA and a client certificate: 200; without the certificate: refused."""
        pki = tmp_path / "pki"
        cert, key = _client_certificate(pki)
        trusted = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        trusted.load_cert_chain(str(cert), str(key))
        assert await asyncio.to_thread(_fetch, f"{https}/metrics", trusted) == 200
        anonymous = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            await asyncio.to_thread(_fetch, f"{https}/metrics", anonymous)
        untrusting = ssl.create_default_context()  # the system CAs: our test CA is unknown
        untrusting.load_cert_chain(str(cert), str(key))
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            await asyncio.to_thread(_fetch, f"{https}/metrics", untrusting)
