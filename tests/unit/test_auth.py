"""Bearer tokens: an exact, constant-time match; blank secrets and Unicode tricks never pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwatch.config.fields import SecretRef
from mailwatch.config.settings import ApiToken
from mailwatch.web.auth import Caller, bearer_token, build_table


def _token(name: str, scope: str, path: Path, secret: str) -> ApiToken:
    path.write_text(secret, encoding="utf-8")
    return ApiToken(name=name, scope=scope, secret=SecretRef(file=path))  # type: ignore[arg-type]


class TestHeader:
    """What counts as a bearer credential (RFC 7235 scheme, RFC 7230 whitespace)."""

    @pytest.mark.parametrize(
        ("header", "token"),
        [
            ("Bearer abc", "abc"),
            ("bearer abc", "abc"),
            ("BEARER abc", "abc"),
            (" \tBearer   abc \t", "abc"),
            ("Bearer\tabc", "abc"),
            ("Bearer \u00a0", "\u00a0"),
            ("Bearer abc\u3000", "abc\u3000"),
            ("Bearer", None),
            ("Bearer    ", None),
            ("Basic abc", None),
            ("Bearerabc", None),
            (None, None),
        ],
    )
    def test_parse(self, header: str | None, token: str | None) -> None:
        """Only ASCII space and tab are trimmed; the scheme is case-insensitive."""
        assert bearer_token(header) == token


class TestTable:
    """The token table built at start-up."""

    def test_empty_and_blank_secrets_refused(self, tmp_path: Path) -> None:
        """An empty or whitespace-only secret (file or variable) never authenticates anyone."""
        table = build_table([
            _token("empty", "write", tmp_path / "a", ""),
            _token("nbsp", "write", tmp_path / "b", "\u00a0\n"),
            _token("good", "read", tmp_path / "c", "s3cret\n"),
        ])  # fmt: skip
        assert table.names == ["good"]
        for header in ("Bearer \u00a0", "Bearer ", "Bearer \u2003", "Bearer \ufeff", "Bearer"):
            assert table.authenticate(header) is None

    def test_unset_variable_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A token whose variable is unset is left out, not an error at request time."""
        monkeypatch.delenv("MW_NOT_SET", raising=False)
        monkeypatch.setenv("MW_BLANK", "   ")
        table = build_table([
            ApiToken(name="unset", scope="write", secret=SecretRef(env="MW_NOT_SET")),
            ApiToken(name="blank", scope="write", secret=SecretRef(env="MW_BLANK")),
        ])  # fmt: skip
        assert table.names == []

    def test_exact_match_only(self, tmp_path: Path) -> None:
        """No Unicode stripping or folding: only the exact secret matches; the scheme may vary."""
        table = build_table([_token("ops", "write", tmp_path / "t", "s3cret")])
        assert table.authenticate("Bearer s3cret") == Caller("ops", "write")
        assert table.authenticate("bearer s3cret") == Caller("ops", "write")
        for header in ("Bearer s3cret\u00a0", "Bearer \u00a0s3cret", "Bearer S3CRET",
                       "Bearer s3cre", "Bearer s3crett", "Bearer s3cret\x00"):  # fmt: skip
            assert table.authenticate(header) is None

    def test_non_utf8_header_does_not_crash(self, tmp_path: Path) -> None:
        """A header with lone surrogates (undecodable bytes) simply does not match."""
        table = build_table([_token("ops", "write", tmp_path / "t", "s3cret")])
        assert table.authenticate("Bearer s3\udcffcret") is None
