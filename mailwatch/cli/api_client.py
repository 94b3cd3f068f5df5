"""A small HTTP client for the mailwatch API, used by the CLI's ``--server`` option.

The bearer token comes from ``$MAILWATCH_TOKEN`` or ``--token-file``. TLS is always verified
(certificate and host name): against the system CAs, or against ``--ca-file`` /
``$MAILWATCH_CA_FILE`` for a private CA. Redirects are not followed (they would carry the token
elsewhere). Errors become :class:`ApiError` with the server's message.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailwatch.errors import ApiError


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: following one would send the bearer token to another URL."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # the 3xx then surfaces as an HTTPError


@dataclass(frozen=True, slots=True)
class ApiClient:
    """Calls ``/api/v1/...`` on ``base_url`` with a bearer token."""

    base_url: str
    token: str | None = None
    ca_file: Path | None = None
    timeout: float = 15.0

    def _context(self) -> ssl.SSLContext | None:
        if not self.base_url.startswith("https:"):
            return None
        try:
            return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ApiError(f"--ca-file: cannot load {self.ca_file}: {exc}") from None

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON body."""
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v})
        url = f"{self.base_url.rstrip('/')}{path}" + (f"?{query}" if query else "")
        if not url.startswith(("http://", "https://")):
            raise ApiError(f"--server must be an http(s) URL, not {self.base_url!r}")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        # The scheme was checked above: only http(s) URLs are opened (S310).
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self._context()), _NoRedirects()
        )
        try:
            with opener.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", exc.reason)
            except (ValueError, AttributeError):
                detail = exc.reason
            raise ApiError(f"{method} {path}: {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(f"cannot reach {self.base_url}: {exc}") from None
