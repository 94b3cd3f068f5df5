"""The sandbox Postfix waits for ``postlogd`` to write a message's "removed" line.

Postfix logs through ``postlogd`` over a datagram socket, so the line reaches the file a
moment after the queue file goes; a test that read the log as soon as the queue emptied
sometimes missed it (CI saw a ``postsuper -d`` outcome not yet joined).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mailwatch.sandbox.postfix import PostfixCommandError, PrivatePostfix

TAKEN = "Dec 07 18:45:39 host postfix/qmgr[26078]: 674AC4C4C0F: from=<om@x.example>, size=506"
SENT = "Dec 07 18:45:39 host postfix/smtp[26116]: 674AC4C4C0F: to=<a@b.example>, status=sent"
REMOVED = "Dec 07 18:45:40 host postfix/qmgr[26078]: 674AC4C4C0F: removed"
DELETED_ALL = "Dec 07 18:45:41 host postfix/postsuper[26161]: Deleted: 1 message"


def _instance(tmp_path: Path, *lines: str) -> PrivatePostfix:
    postfix = PrivatePostfix(root=tmp_path, smtp_port=1, relay_port=2)
    postfix.log_path.parent.mkdir(parents=True)
    postfix.log_path.write_text("".join(f"{line}\n" for line in lines))
    return postfix


def test_a_message_without_its_removed_line_is_waited_for(tmp_path: Path) -> None:
    """Taken and sent but not yet "removed": not settled; the missing id is named."""
    postfix = _instance(tmp_path, TAKEN, SENT)
    with pytest.raises(PostfixCommandError, match="674AC4C4C0F"):
        postfix.wait_for_log_settled(timeout=0.2)


def test_the_line_arriving_later_settles_it(tmp_path: Path) -> None:
    """The "removed" line written while waiting ends the wait."""
    postfix = _instance(tmp_path, TAKEN, SENT)
    timer = threading.Timer(0.2, lambda: postfix.log_path.write_text(f"{TAKEN}\n{REMOVED}\n"))
    timer.start()
    try:
        postfix.wait_for_log_settled(timeout=5)
    finally:
        timer.join()


def test_delete_all_counts_earlier_messages_as_gone(tmp_path: Path) -> None:
    """``postsuper -d ALL`` names no ids: what was taken before its line is gone."""
    postfix = _instance(tmp_path, TAKEN, DELETED_ALL)
    postfix.wait_for_log_settled(timeout=0.2)
    later = _instance(tmp_path / "later", DELETED_ALL, TAKEN)
    with pytest.raises(PostfixCommandError):
        later.wait_for_log_settled(timeout=0.2)


def test_wait_for_log_names_what_never_came(tmp_path: Path) -> None:
    """``wait_for_log`` returns the log once every needle is in it, else names the missing."""
    postfix = _instance(tmp_path, TAKEN, REMOVED)
    assert REMOVED in postfix.wait_for_log("674AC4C4C0F: removed", timeout=0.2)
    with pytest.raises(PostfixCommandError, match="'XYZ: removed'"):
        postfix.wait_for_log("674AC4C4C0F: removed", "XYZ: removed", timeout=0.2)
