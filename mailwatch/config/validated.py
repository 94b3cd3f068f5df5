"""Which configurations this mailwatch has validated whole: fingerprints in a per-user cache.

The read commands (``stuck``, ``check``) read only the keys they use
(:mod:`mailwatch.config.essentials`), but a broken configuration must still be reported by
them, whole, as before: an on-call engineer who runs ``stuck`` while the service refuses to
start must see why. So the light path is taken only for a configuration that passed the full
validation (:func:`mailwatch.config.settings.load`) before, byte for byte: the same file at
the same path, the same ``MAILWATCH_*`` settings variables, the same mailwatch code. Anything
else (a first run, an edited file, an upgrade) gets the full load, with every problem listed,
and a valid result is remembered.

The fingerprint is a SHA-256 of the configuration file's path and bytes, of the settings
variables of the environment (names and values; the CLI's own ``MAILWATCH_CONFIG``,
``MAILWATCH_SERVER``, ``MAILWATCH_TOKEN`` and ``MAILWATCH_CA_FILE`` are not settings), and of
the size and modification time of every file of the installed package. The cache is
``$XDG_CACHE_HOME/mailwatch/validated-configs`` (default ``~/.cache``), the last
:data:`KEEP` fingerprints, one per line; if it cannot be read or written, every command
validates whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

from mailwatch.config.essentials import TOP_LEVEL_KEYS

__all__ = ["KEEP", "cache_file", "fingerprint", "remember", "was_validated"]

KEEP = 16
"""Fingerprints kept (a few configurations per user: production, a test file...)."""
_PACKAGE = Path(__file__).resolve().parent.parent


def cache_file() -> Path | None:
    """``$XDG_CACHE_HOME/mailwatch/validated-configs`` (default ``~/.cache/...``).

    ``None`` when there is no home directory to default to.
    """
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no HOME and no passwd entry
            return None
    return Path(base) / "mailwatch" / "validated-configs"


def _code(digest: Any) -> None:
    """Size and modification time of every file of the package (an upgrade or an edit)."""
    for folder, dirs, files in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".toml")):
                stat = os.stat(os.path.join(folder, name))
                digest.update(f"{folder}/{name}:{stat.st_size}:{stat.st_mtime_ns}\0".encode())


def _is_setting(name: str) -> bool:
    upper = name.upper()
    return upper.startswith("MAILWATCH_") and (
        upper[len("MAILWATCH_") :].lower().split("__")[0] in TOP_LEVEL_KEYS
    )


def fingerprint(path: Path | None) -> str | None:
    """What the full validation of ``path`` depends on, hashed; ``None`` if unreadable."""
    digest = hashlib.sha256(b"mailwatch validated configuration v1\0")
    if path is not None:
        try:
            digest.update(f"{path.resolve()}\0".encode() + path.read_bytes() + b"\0")
        except OSError:
            return None
    for name in sorted(k for k in os.environ if _is_setting(k)):
        digest.update(f"{name}={os.environ[name]}\0".encode("utf-8", "surrogateescape"))
    try:
        _code(digest)
    except OSError:
        return None
    return digest.hexdigest()


def was_validated(print_: str | None) -> bool:
    """Whether the configuration with this fingerprint passed the full validation before."""
    target = cache_file()
    if print_ is None or target is None:
        return False
    try:
        return print_ in target.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return False


def remember(print_: str | None) -> None:
    """Record a fingerprint that passed the full validation (best effort, atomic)."""
    target = cache_file()
    if print_ is None or target is None:
        return
    try:
        known = target.read_text(encoding="ascii").split() if target.exists() else []
    except (OSError, UnicodeDecodeError):
        known = []
    if print_ in known:
        return
    import tempfile  # only when a configuration was validated whole

    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", encoding="ascii", dir=target.parent, delete=False, prefix=".validated-"
        ) as handle:
            handle.write("\n".join([*known[-(KEEP - 1) :], print_]) + "\n")
        os.replace(handle.name, target)
    except OSError:
        with contextlib.suppress(OSError, NameError):
            os.unlink(handle.name)
