"""Test helper: whether a child process was reaped (shared by the unit and integration tests)."""

from __future__ import annotations

import os
from pathlib import Path


def pid_gone(pid: int) -> bool:
    """Whether ``pid`` was reaped already: not running and no zombie left behind."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not Path(f"/proc/{pid}").exists()
    return False
