"""mailwatch: watches mail backlogs and says when high-priority mail is stuck."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mailwatch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"
