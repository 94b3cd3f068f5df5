"""Suite-wide fixtures: a private, real Postfix instance and test logging."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwatch.logs import configure
from mailwatch.sandbox.postfix import PrivatePostfix


@pytest.fixture(autouse=True, scope="session")
def _logging() -> None:
    """Configure structlog without logger caching, so tests can capture logs (structlog #408)."""
    configure("debug", "json", cache=False)


@pytest.fixture(autouse=True, scope="session")
def _user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A cache directory of the session's own, not the user's ``~/.cache``.

    The CLI remembers there which configurations it validated (mailwatch/config/validated.py).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(name="postfix_instance", scope="session")
def fixture_postfix_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostfix]:
    """A real Postfix on loopback, for the whole session; everything it queues defers."""
    if shutil.which("postfix") is None:
        pytest.fail("Postfix is not installed: run scripts/bootstrap (the suite needs a real one)")
    instance = PrivatePostfix.create(tmp_path_factory.mktemp("postfix"))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(name="postfix")
def fixture_postfix(postfix_instance: PrivatePostfix) -> Iterator[PrivatePostfix]:
    """The session's Postfix, running and with empty queues before and after each test."""
    postfix_instance.start()
    postfix_instance.delete_all()
    yield postfix_instance
    if postfix_instance.is_running():
        postfix_instance.delete_all()


@pytest.fixture(name="tmp_store_path")
def fixture_tmp_store_path(tmp_path: Path) -> Path:
    """A path for a fresh SQLite store."""
    return tmp_path / "mailwatch.db"
