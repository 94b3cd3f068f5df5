"""A private Exim: Debian 12's packages unpacked (not installed), own config, spool and log.

Debian 12's ``exim4-daemon-light`` conflicts with Postfix, so the suite does not install it:
``scripts/bootstrap`` unpacks ``exim4-base``, ``exim4-config``, ``exim4-daemon-light`` and the
one library Postfix hosts lack (``libidn12``) into ``.venv/exim`` with ``dpkg-deb -x``, and
creates the ``Debian-exim`` user the binary is built to run as. No daemon runs: messages are
submitted with ``-odq -bs`` (queued only) and a forced queue run (``-qf``) tries them, so::

    exim -C ROOT/exim.conf -bpru
     0m   392 1xXdsY-00069J-1n <om@probation.example>
              ppcs@justice.example

Routing: ``local.invalid`` is delivered to a file (so a message can be partly delivered),
``loop.invalid`` routes to this host and freezes, everything else goes to a loopback port
where nothing listens and defers ("Connection refused"). Exim needs root here: it is run
with ``-C`` and writes a spool owned by ``Debian-exim``.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from mailwatch.parsing.exim import ID_PATTERN
from mailwatch.sandbox.postfix import free_port

EXIM_USER = "Debian-exim"
_QUEUED = re.compile(rf"^250 OK id=({ID_PATTERN})\s*$", re.M)
_LISTED = re.compile(rf"^ *-?\d+[mhd] +\S*? *({ID_PATTERN}) ", re.M)


def default_prefix() -> Path:
    """Where the unpacked packages are: ``$MAILWATCH_EXIM_PREFIX``, else ``.venv/exim``."""
    configured = os.environ.get("MAILWATCH_EXIM_PREFIX")
    return Path(configured) if configured else Path(sys.prefix) / "exim"


def unavailable_reason(prefix: Path) -> str | None:
    """Why a private Exim cannot run from ``prefix`` here, or ``None`` if it can."""
    if not (prefix / "usr/sbin/exim4").is_file():
        return f"no unpacked Exim at {prefix}/usr/sbin/exim4 (see tests/data/exim/README.md)"
    if os.geteuid() != 0:
        return "the private Exim must run as root (it is run with -C)"
    try:
        pwd.getpwnam(EXIM_USER)
    except KeyError:
        return f"user {EXIM_USER} does not exist (the Debian binary is built to run as it)"
    return None


class EximCommandError(RuntimeError):
    """An Exim command failed; carries its output."""


def _make_traversable(root: Path) -> None:
    """Let ``Debian-exim`` reach ``root`` (temporary directories are 0700): add o+x upwards."""
    root.mkdir(parents=True, exist_ok=True)
    for directory in (root, *root.parents):
        mode = directory.stat().st_mode
        if not mode & 0o001:
            directory.chmod(mode | 0o001)


@dataclass
class PrivateExim:
    """An Exim instance rooted at ``root``: ``exim.conf``, ``spool/``, ``log/``, ``mail/``."""

    root: Path
    prefix: Path
    dead_port: int

    @property
    def config_path(self) -> Path:
        """The ``-C`` configuration file."""
        return self.root / "exim.conf"

    @property
    def binary(self) -> Path:
        """The unpacked Exim binary."""
        return self.prefix / "usr/sbin/exim4"

    @property
    def command(self) -> Path:
        """A wrapper that runs the binary with the unpacked libraries (pass ``-C`` yourself)."""
        return self.root / "bin" / "exim"

    @property
    def spool_dir(self) -> Path:
        """The instance's ``spool_directory``."""
        return self.root / "spool"

    @classmethod
    def create(cls, root: Path, prefix: Path | None = None) -> PrivateExim:
        """Write a fresh configuration and wrapper under ``root``."""
        instance = cls(
            root=root.resolve(), prefix=prefix or default_prefix(), dead_port=free_port()
        )
        instance._write_config()
        return instance

    def _write_config(self) -> None:
        _make_traversable(self.root)
        for sub in ("spool", "log", "mail", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("spool", "log", "mail"):
            os.chown(
                self.root / sub, pwd.getpwnam(EXIM_USER).pw_uid, pwd.getpwnam(EXIM_USER).pw_gid
            )
        libs = self.prefix / "usr/lib/x86_64-linux-gnu"
        self.command.write_text(
            "#!/bin/sh\n"
            f"LD_LIBRARY_PATH={libs}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} "
            f'exec {self.binary} "$@"\n'
        )
        self.command.chmod(0o755)
        self.config_path.write_text(f"""\
exim_path = {self.binary}
spool_directory = {self.spool_dir}
log_file_path = {self.root}/log/%slog
primary_hostname = mailwatch-sandbox.invalid
qualify_domain = probation.example
domainlist local_domains = local.invalid
keep_environment = LD_LIBRARY_PATH
tls_advertise_hosts =
acl_smtp_rcpt = accept
acl_smtp_data = accept
trusted_users = root
delay_warning = 0s
host_lookup =
rfc1413_hosts =

begin routers
local_box:
  driver = accept
  domains = +local_domains
  transport = local_file
loop_to_self:
  driver = manualroute
  domains = loop.invalid
  route_list = * 127.0.0.1
  self = freeze
  transport = dead_smtp
dead_relay:
  driver = manualroute
  route_list = * 127.0.0.1
  self = send
  transport = dead_smtp

begin transports
local_file:
  driver = appendfile
  file = {self.root}/mail/mailbox
  user = {EXIM_USER}
  group = {EXIM_USER}
  mode = 0600
dead_smtp:
  driver = smtp
  port = {self.dead_port}
  allow_localhost
  connect_timeout = 2s

begin retry
*  *  F,7d,1m
""")

    def exim(self, *args: str, stdin: bytes = b"", timeout: float = 60) -> str:
        """Run ``exim -C CONF ARGS`` and return its output; raise if it exits non-zero."""
        proc = subprocess.run(
            [str(self.command), "-C", str(self.config_path), *args],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        out = proc.stdout.decode("utf-8", "replace")
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace")
            raise EximCommandError(f"exim {' '.join(args)} exited {proc.returncode}: {out}{err}")
        return out

    def queue_message(
        self,
        message: EmailMessage,
        *,
        sender: str | None = None,
        recipients: list[str] | None = None,
    ) -> str:
        """Submit ``message`` over SMTP on stdin (``-odq -bs``: queue only); return its id.

        The envelope defaults to the From and To headers.
        """
        mail_from = sender if sender is not None else str(message["From"])
        rcpts = recipients or [a.strip() for a in str(message["To"]).split(",")]
        body = message.as_bytes().replace(b"\r\n", b"\n").split(b"\n")
        stuffed = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in body)
        dialogue = b"".join(
            [
                b"HELO sandbox.invalid\r\n",
                f"MAIL FROM:<{mail_from}>\r\n".encode(),
                *(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts),
                b"DATA\r\n",
                stuffed.rstrip(b"\r\n") + b"\r\n.\r\nQUIT\r\n",
            ]
        )
        reply = self.exim("-odq", "-bs", stdin=dialogue)
        found = _QUEUED.search(reply.replace("\r", ""))
        if found is None:
            raise EximCommandError(f"message not queued: {reply}")
        return found[1]

    def freeze(self, queue_id: str) -> None:
        """Freeze a message (``-Mf``)."""
        self.exim("-Mf", queue_id)

    def thaw(self, queue_id: str) -> None:
        """Thaw a message (``-Mt``)."""
        self.exim("-Mt", queue_id)

    def remove(self, *queue_ids: str) -> None:
        """Remove messages from the queue (``-Mrm``)."""
        if queue_ids:
            self.exim("-Mrm", *queue_ids)

    def run_queue(self) -> None:
        """Try every message once now (``-qf``): deferrals, local deliveries, freezes."""
        self.exim("-qf", timeout=120)

    def listing(self) -> str:
        """The queue as ``exim -bpru`` lists it."""
        return self.exim("-bpru")

    def queue_ids(self) -> list[str]:
        """Ids of every queued message."""
        return _LISTED.findall(self.listing())

    def delete_all(self) -> None:
        """Empty the queue."""
        self.remove(*self.queue_ids())
