"""A private Postfix instance in a directory of its own, listening on a loopback port.

Everything defers by design: ``relayhost`` points at a loopback port where nothing listens,
so injected mail waits in the deferred queue until a sink is opened on that port and the
queue is flushed. Optional ``transports`` route chosen domains elsewhere (an inline
``transport_maps``), e.g. a canary domain to Dovecot's LMTP port. Facts about running Postfix
this way (as root, without systemd) are in the project's notes: chroot off, ``maillog_file``
with a ``postlog`` service, config files backdated so Postfix does not wait for them to
"settle".
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import smtplib
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from mailwatch.sandbox.process import log_tail

_MASTER_CF = """\
{smtp_addr} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def make_message(
    subject: str,
    *,
    sender: str = "om@probation.example",
    to: str = "ppcs@justice.example",
    extra: dict[str, str] | None = None,
) -> EmailMessage:
    """A small synthetic message with the given subject."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    for name, value in (extra or {}).items():
        message[name] = value
    message.set_content("Synthetic test message.\n")
    return message


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _make_traversable(root: Path) -> None:
    """Let Postfix's unprivileged processes reach ``root``: add o+x up the tree where missing.

    Temporary directories (pytest's, ``mkdtemp``'s) are mode 0700; the ``postfix`` user must
    be able to traverse them to its data directory. Only the search bit is added, not read.
    """
    root.mkdir(parents=True, exist_ok=True)
    for directory in (root, *root.parents):
        mode = directory.stat().st_mode
        if not mode & 0o001:
            directory.chmod(mode | 0o001)


_MAP_WORD = re.compile(r"[A-Za-z0-9._:\[\]-]+")
"""What an inline map key or value may hold here (no space, comma or brace)."""


class PostfixCommandError(RuntimeError):
    """A Postfix administration command failed; carries the tail of its log."""


@dataclass
class PrivatePostfix:
    """A Postfix instance rooted at ``root`` (config in ``root/etc``, queue in ``root/spool``)."""

    root: Path
    smtp_port: int
    relay_port: int
    hostname: str = "mailwatch-sandbox.invalid"
    transports: Mapping[str, str] = field(default_factory=dict)
    """Domain → Postfix transport (``lmtp:inet:127.0.0.1:PORT``); other mail goes to the relay."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """More ``main.cf`` settings, e.g. ``{"enable_long_queue_ids": "yes"}`` (last wins)."""
    services: tuple[str, ...] = ()
    """More ``master.cf`` lines, e.g. a submission smtpd with ``-o syslog_name=…``."""

    @property
    def config_dir(self) -> Path:
        """The instance's ``-c`` directory (main.cf and master.cf)."""
        return self.root / "etc"

    @property
    def queue_dir(self) -> Path:
        """The instance's ``queue_directory``."""
        return self.root / "spool"

    @property
    def log_path(self) -> Path:
        """Where the instance logs (``maillog_file``)."""
        return self.root / "log" / "maillog"

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        smtp_port: int = 0,
        relay_port: int = 0,
        transports: Mapping[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
        services: tuple[str, ...] = (),
        hostname: str = "mailwatch-sandbox.invalid",
    ) -> PrivatePostfix:
        """Write a fresh configuration under ``root`` (ports 0 mean "pick a free one").

        ``transports`` maps recipient domains to Postfix transports, e.g.
        ``{"canary.example": "lmtp:inet:127.0.0.1:24"}``: mail to those domains is delivered
        there instead of deferring at the relay. ``extra`` adds (or overrides) ``main.cf``
        settings, e.g. ``{"enable_long_queue_ids": "yes"}``; ``services`` adds ``master.cf``
        lines; ``hostname`` is ``myhostname`` (two instances relaying to each other need two
        names, or Postfix sees a mail loop).
        """
        for domain, transport in (transports or {}).items():
            if not (_MAP_WORD.fullmatch(domain) and _MAP_WORD.fullmatch(transport)):
                raise ValueError(f"unusable transport {domain!r} -> {transport!r}")
        instance = cls(
            root=root.resolve(),
            smtp_port=smtp_port or free_port(),
            relay_port=relay_port or free_port(),
            transports=dict(transports or {}),
            extra=dict(extra or {}),
            services=tuple(services),
            hostname=hostname,
        )
        instance._write_config()
        return instance

    def _write_config(self) -> None:
        _make_traversable(self.root)
        for sub in ("etc", "spool", "data", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root / "data", user="postfix")
        main_cf = f"""\
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.root / "data"}
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = {self.hostname}
mydomain = invalid
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{self.relay_port}
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = {self.log_path}
maillog_file_prefixes = /var, /dev/stdout, {self.root}
biff = no
smtputf8_enable = no
minimal_backoff_time = 300s
maximal_backoff_time = 4000s
queue_run_delay = 300s
smtp_connect_timeout = 2s
"""
        if self.transports:  # Postfix >= 3.0 inline map: inline:{ key=value, ... }
            pairs = ", ".join(f"{key}={value}" for key, value in self.transports.items())
            main_cf += f"transport_maps = inline:{{ {pairs} }}\nlmtp_connect_timeout = 2s\n"
        main_cf += "".join(f"{key} = {value}\n" for key, value in self.extra.items())
        (self.config_dir / "main.cf").write_text(main_cf)
        (self.config_dir / "master.cf").write_text(
            _MASTER_CF.format(smtp_addr=f"127.0.0.1:{self.smtp_port}")
            + "".join(f"{line}\n" for line in self.services)
        )
        # Postfix waits for a main.cf younger than ~2 s to settle: backdate the files.
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.config_dir / name, (past, past))

    def _run(self, *args: str, timeout: float = 60) -> str:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise PostfixCommandError(
                f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}\n"
                f"log tail:\n{self.log_tail()}"
            )
        return proc.stdout

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the instance's log (Postfix reports errors only there)."""
        return log_tail(self.log_path, lines)

    def _master_pid(self) -> int | None:
        pid_file = self.queue_dir / "pid" / "master.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def is_running(self) -> bool:
        """Whether the instance's master process is alive."""
        return self._master_pid() is not None

    def start(self) -> None:
        """Start the instance and wait until its SMTP port answers."""
        if not self.is_running():
            self._run("postfix", "-c", str(self.config_dir), "start")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1),
            ):
                return
            time.sleep(0.05)
        raise PostfixCommandError(f"smtpd never listened on {self.smtp_port}\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the instance and wait for its master to exit (``postfix stop`` returns early)."""
        pid = self._master_pid()
        if pid is None:
            return
        self._run("postfix", "-c", str(self.config_dir), "stop")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self._master_pid() is not None:
            time.sleep(0.05)

    def inject(self, messages: list[EmailMessage]) -> None:
        """Submit ``messages`` over SMTP on one connection."""
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as smtp:
            for message in messages:
                smtp.send_message(message)

    def postqueue(self, *args: str) -> str:
        """Run ``postqueue -c ETC ARGS`` and return its output."""
        return self._run("postqueue", "-c", str(self.config_dir), *args)

    def postsuper(self, *args: str) -> str:
        """Run ``postsuper -c ETC ARGS`` and return its output."""
        return self._run("postsuper", "-c", str(self.config_dir), *args)

    def queue(self) -> list[dict[str, object]]:
        """The queue as ``postqueue -j`` lists it."""
        return [json.loads(line) for line in self.postqueue("-j").splitlines() if line.strip()]

    def wait_for_queue(
        self, count: int, *, settled: bool = True, timeout: float = 20
    ) -> list[dict[str, object]]:
        """Wait until ``count`` messages are queued (and, if ``settled``, all were tried once).

        Settled means every message is in the deferred or hold queue, not incoming or active;
        an empty queue is settled once every message's "removed" line is in the log (it
        reaches the file through ``postlogd`` a moment after the queue file goes).
        """
        deadline = time.monotonic() + timeout
        entries: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            entries = self.queue()
            done = not settled or all(e["queue_name"] in ("deferred", "hold") for e in entries)
            if len(entries) == count and done:
                if count == 0:
                    self.wait_for_log_settled(timeout=max(deadline - time.monotonic(), 1))
                return entries
            time.sleep(0.05)
        raise PostfixCommandError(f"queue never reached {count} settled messages ({len(entries)})")

    def wait_for_log(self, *needles: str, timeout: float = 20) -> str:
        """Wait until the log holds every one of ``needles`` and return it.

        Postfix logs through ``postlogd`` over a datagram socket, so a line a command caused
        (``postsuper -d``'s "removed", a delivery's "status=") reaches the file a moment after
        the command returns or the queue empties.
        """
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                text = self.log_path.read_text(errors="replace")
            if all(needle in text for needle in needles):
                return text
            time.sleep(0.05)
        missing = [needle for needle in needles if needle not in text]
        raise PostfixCommandError(f"never logged {missing!r}\n{self.log_tail()}")

    def wait_for_log_settled(self, timeout: float = 20) -> None:
        """Wait until every message the queue manager took has its "removed" line logged.

        ``postsuper -d ALL`` logs no ids, only "Deleted: N messages": messages taken before
        such a line count as gone.
        """
        deadline = time.monotonic() + timeout
        pending: set[str] = set()
        while time.monotonic() < deadline:
            taken: set[str] = set()
            removed: set[str] = set()
            with contextlib.suppress(FileNotFoundError):
                for line in self.log_path.read_text(errors="replace").splitlines():
                    _, _, rest = line.partition("]: ")
                    queue_id, _, event = rest.partition(": ")
                    if queue_id == "Deleted" and "/postsuper[" in line:
                        taken.clear()
                    elif event == "removed":
                        removed.add(queue_id)
                    elif event.startswith("from=") and "/qmgr[" in line:
                        taken.add(queue_id)
            pending = taken - removed
            if not pending:
                return
            time.sleep(0.05)
        raise PostfixCommandError(f"no 'removed' logged for {sorted(pending)}\n{self.log_tail()}")

    def flush(self) -> None:
        """Ask the queue manager to retry every deferred message now."""
        self.postqueue("-f")

    def delete_all(self) -> None:
        """Empty every queue of the instance."""
        self.postsuper("-d", "ALL")
