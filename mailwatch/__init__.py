"""mailwatch: watches mail backlogs and says when high-priority mail is stuck."""

from typing import Any


def __getattr__(name: str) -> Any:
    """``__version__``, read from the installed metadata on first use.

    ``importlib.metadata`` costs ~20 ms, which every command would pay at start-up.
    """
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("mailwatch")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        found = "0+unknown"
    globals()["__version__"] = found
    return found
