"""A private Dovecot instance in a directory of its own, serving IMAP, IMAPS and LMTP on loopback.

Facts about running Dovecot this way (as root, without systemd) are in the project's notes:
the master keeps the stderr it inherits open forever, so it is started with every standard
stream pointed away from the caller's pipes (a test runner would otherwise hang); failed logins
are slow unless ``auth_failure_delay = 0`` and the anvil auth penalty is off; the mail user's
home must exist and belong to it before anything is delivered.

Mail is stored in Maildir under ``root/home/USER`` and owned by a dedicated system user
(``mailwatch-mail``, created on first use). :meth:`PrivateDovecot.deliver` writes message files
straight into a folder's ``new/`` (~1,800 msg/s, versus ~50/s for ``doveadm save``) and can set
the file's mtime, which Dovecot reports as the message's INTERNALDATE: tests get fixed arrival
times. Mail also arrives over LMTP on ``lmtp_port``, the way a Postfix relay would deliver it.
Users live in a passwd-file that Dovecot re-reads when it changes, but only about once a second
(a user appended just after a login was refused): :meth:`PrivateDovecot.fresh_user` therefore
hands out *spare* users written before the start, so each test gets an empty mailbox at once.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from pathlib import Path

from mailwatch.sandbox.postfix import _make_traversable, free_port
from mailwatch.sandbox.process import log_tail

MAIL_USER = "mailwatch-mail"
_SOCKET_PATH_BUDGET = 60  # unix sockets live under base_dir; sun_path holds only 108 bytes

_CONF = """\
# Written by mailwatch.sandbox.dovecot: a private test instance, loopback only.
base_dir = {base_dir}
state_dir = {root}/state
log_path = {root}/log/dovecot.log
instance_name = mailwatch-{port}
protocols = imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/tls/server.pem
ssl_key = <{root}/tls/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2
auth_failure_delay = 0
auth_verbose = yes
mail_location = maildir:~/Maildir
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_privileged_group =
lmtp_save_to_detail_mailbox = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {root}/etc/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


class DovecotCommandError(RuntimeError):
    """A Dovecot administration command failed; carries the tail of its log."""


def ensure_mail_user(name: str = MAIL_USER) -> pwd.struct_passwd:
    """The dedicated system user that owns the sandbox's mail (created if missing)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        return pwd.getpwnam(name)


def _openssl(*args: str) -> None:
    proc = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise DovecotCommandError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate it signed, valid for localhost and 127.0.0.1.

    Returns ``(ca_cert, server_cert, server_key)``. EC keys keep generation fast (~50 ms).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "7",
             "-subj", "/CN=mailwatch sandbox CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    _openssl("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    extensions = directory / "server.ext"
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    )
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "7",
             "-extfile", str(extensions))  # fmt: skip
    key.chmod(0o600)
    return ca_cert, cert, key


@dataclass
class PrivateDovecot:
    """A Dovecot instance rooted at ``root`` (config in ``root/etc``, mail in ``root/home``)."""

    root: Path
    imap_port: int
    imaps_port: int
    lmtp_port: int
    base_dir: Path
    _folder_paths: dict[tuple[str, str], Path] = field(default_factory=dict, repr=False)
    _spares: list[tuple[str, str]] = field(default_factory=list, repr=False)
    _sequence: count[int] = field(default_factory=count, repr=False)

    @property
    def config_path(self) -> Path:
        """The instance's ``dovecot.conf`` (pass it as ``-c`` to every Dovecot command)."""
        return self.root / "etc" / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        """Where the instance logs."""
        return self.root / "log" / "dovecot.log"

    @property
    def ca_file(self) -> Path:
        """The CA certificate that signed the server's: trust it to verify TLS."""
        return self.root / "tls" / "ca.pem"

    @property
    def passwd_file(self) -> Path:
        """The passwd-file of users (``user:{PLAIN}password``), re-read by Dovecot on change."""
        return self.root / "etc" / "passwd"

    @classmethod
    def create(
        cls, root: Path, users: dict[str, str] | None = None, *, spare_users: int = 0
    ) -> PrivateDovecot:
        """Write a fresh configuration, certificates and users under ``root``.

        ``spare_users`` extra users with random names are created for :meth:`fresh_user`.
        """
        root = root.resolve()
        base_dir = root / "run"
        if len(str(base_dir)) > _SOCKET_PATH_BUDGET:  # socket paths would not fit
            base_dir = Path(tempfile.mkdtemp(prefix="mw-dovecot-"))
        instance = cls(
            root=root,
            imap_port=free_port(),
            imaps_port=free_port(),
            lmtp_port=free_port(),
            base_dir=base_dir,
        )
        instance._write_config()
        for user, password in (users or {}).items():
            instance.add_user(user, password)
        for _ in range(spare_users):
            spare = (f"u{uuid.uuid4().hex[:12]}", uuid.uuid4().hex)
            instance.add_user(*spare)
            instance._spares.append(spare)
        return instance

    def _write_config(self) -> None:
        account = ensure_mail_user()
        _make_traversable(self.root)
        _make_traversable(self.base_dir)
        for sub in ("etc", "state", "log", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        (self.root / "home").chmod(0o755)
        make_certificates(self.root / "tls")
        self.passwd_file.touch()
        self.config_path.write_text(
            _CONF.format(
                root=self.root,
                base_dir=self.base_dir,
                uid=account.pw_uid,
                gid=account.pw_gid,
                port=self.imap_port,
                imap_port=self.imap_port,
                imaps_port=self.imaps_port,
                lmtp_port=self.lmtp_port,
            )
        )

    def add_user(self, user: str, password: str) -> Path:
        """Add a user with an empty Maildir (its home); return the Maildir path."""
        if ":" in user or ":" in password or "\n" in user + password:
            raise ValueError("user names and passwords may not contain ':' or newlines")
        account = ensure_mail_user()
        home = self.root / "home" / user
        maildir = home / "Maildir"
        for directory in (home, maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
            directory.mkdir(exist_ok=True)
            os.chown(directory, account.pw_uid, account.pw_gid)
            directory.chmod(0o700)
        with self.passwd_file.open("a") as handle:
            handle.write(f"{user}:{{PLAIN}}{password}\n")
        return maildir

    def fresh_user(self) -> tuple[str, str]:
        """``(user, password)`` of a user nobody has used: an empty mailbox, usable at once.

        Spares run out? A new user is added, then given the second Dovecot may take to see it.
        """
        if self._spares:
            return self._spares.pop()
        spare = (f"u{uuid.uuid4().hex[:12]}", uuid.uuid4().hex)
        self.add_user(*spare)
        time.sleep(1.1)
        return spare

    def doveadm(self, *args: str, timeout: float = 30) -> str:
        """Run ``doveadm -c CONF ARGS`` and return its output."""
        proc = subprocess.run(
            ["doveadm", "-c", str(self.config_path), *args],
            capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if proc.returncode != 0:
            raise DovecotCommandError(
                f"doveadm {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}\n"
                f"log tail:\n{self.log_tail()}"
            )
        return proc.stdout

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the instance's log."""
        return log_tail(self.log_path, lines)

    def _master_pid(self) -> int | None:
        try:
            pid = int((self.base_dir / "master.pid").read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def is_running(self) -> bool:
        """Whether the instance's master process is alive."""
        return self._master_pid() is not None

    def start(self) -> None:
        """Start the instance (detached from our stdio) and wait until IMAP answers."""
        if not self.is_running():
            with self.log_path.open("ab") as log:
                proc = subprocess.run(
                    ["dovecot", "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=30, check=False,
                )  # fmt: skip
            if proc.returncode != 0:
                raise DovecotCommandError(f"dovecot exited {proc.returncode}\n{self.log_tail()}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.imap_port), timeout=1) as sock,
            ):
                sock.settimeout(2)
                if sock.recv(64).startswith(b"* OK"):
                    return
            time.sleep(0.05)
        raise DovecotCommandError(f"IMAP never answered on {self.imap_port}\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the instance and wait for its master to exit."""
        pid = self._master_pid()
        if pid is None:
            return
        self.doveadm("stop")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self._master_pid() is not None:
            time.sleep(0.05)
        if self.base_dir.parent != self.root:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def folder_path(self, user: str, folder: str) -> Path:
        """The Maildir directory of ``folder`` (created through doveadm if it is missing)."""
        if folder.upper() == "INBOX":
            return self.root / "home" / user / "Maildir"
        cached = self._folder_paths.get((user, folder))
        if cached is None:
            listed = self.doveadm("mailbox", "list", "-u", user).splitlines()
            if folder not in listed:
                self.doveadm("mailbox", "create", "-u", user, folder)
            cached = Path(self.doveadm("mailbox", "path", "-u", user, folder).strip())
            self._folder_paths[(user, folder)] = cached
        return cached

    def deliver(
        self, user: str, raw: bytes, folder: str = "INBOX", *, received: datetime | None = None
    ) -> None:
        """Put one message into ``folder``; ``received`` becomes its INTERNALDATE.

        The file is written straight into the folder's Maildir ``new/`` (Dovecot takes the
        file's mtime as INTERNALDATE), for any folder name: doveadm maps the name to its
        directory once. ~1,800 msg/s, against ~50/s for ``doveadm save``.
        """
        account = ensure_mail_user()
        maildir = self.folder_path(user, folder)
        name = f"{time.time_ns()}.M{next(self._sequence)}P{os.getpid()}.mailwatch,S={len(raw)}"
        staged = maildir / "tmp" / name
        staged.write_bytes(raw)
        os.chown(staged, account.pw_uid, account.pw_gid)
        if received is not None:
            stamp = received.timestamp()
            os.utime(staged, (stamp, stamp))
        staged.rename(maildir / "new" / name)
