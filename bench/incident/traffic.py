"""The replay's traffic: mail submitted over SMTP on a schedule, mailboxes worked through.

``inject`` sends planned messages to the hub or the relay from a few threads, each message at
its slot of an even schedule (or as soon as the MTAs accept it, if they are slower), and
records when each was accepted. ``work_through`` reads a functional mailbox as the staff
would once the case system is back: it marks messages seen, oldest first, at a bounded rate,
and records when each was read (by subject: every planned subject is unique).
"""

from __future__ import annotations

import imaplib
import smtplib
import threading
import time
from collections.abc import Callable, Sequence

from incident.scenario import HUB, Planned, build_message


def inject(
    planned: Sequence[Planned], ports: dict[str, int], seconds: float, threads: int = 4,
    *, tagged: bool = True,
) -> dict[int, float]:  # fmt: skip
    """Send every message within about ``seconds``; the accept time of each (by index).

    ``tagged``: each gets the Message-ID of its index (how the MTAs' logs are read back).
    """
    accepted: dict[int, float] = {}
    start = time.time()
    step = seconds / max(1, len(planned))
    lock = threading.Lock()
    cursor = iter(range(len(planned)))

    def worker() -> None:
        links: dict[int, smtplib.SMTP] = {}
        try:
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                delay = start + index * step - time.time()
                if delay > 0:
                    time.sleep(delay)
                item = planned[index]
                port = ports[HUB] if item.entry == HUB else ports["relay"]
                if port not in links:
                    links[port] = smtplib.SMTP("127.0.0.1", port, timeout=60)
                links[port].send_message(build_message(item, index if tagged else None))
                accepted[index] = time.time()
        finally:
            for link in links.values():
                link.quit()

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for each in workers:
        each.start()
    for each in workers:
        each.join()
    return accepted


def work_through(
    port: int, user: str, password: str, rate: float, stop: Callable[[], bool]
) -> dict[str, float]:
    """Mark every message of INBOX seen, oldest first, ``rate`` a second; subject -> when."""
    read: dict[str, float] = {}
    client = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    try:
        client.login(user, password)
        client.select("INBOX")
        _, data = client.uid("SEARCH", "UNSEEN")
        uids = data[0].split() if data and data[0] else []
        batch = max(1, round(rate))
        for offset in range(0, len(uids), batch):
            if stop():
                break
            began = time.time()
            chunk = b",".join(uids[offset : offset + batch]).decode()
            _, fetched = client.uid("FETCH", chunk, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            client.uid("STORE", chunk, "+FLAGS", r"(\Seen)")
            now = time.time()
            for part in fetched:
                if isinstance(part, tuple):
                    subject = part[1].decode(errors="replace").partition(":")[2].strip()
                    read[" ".join(subject.split())] = now
            time.sleep(max(0.0, 1.0 - (time.time() - began)))
    finally:
        client.logout()
    return read
