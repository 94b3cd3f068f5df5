"""A private PostgreSQL cluster on a loopback port, for the fleet tests and benchmarks.

Debian's ``postgresql`` package (15) provides ``initdb`` and ``pg_ctl``; the server refuses to
run as root, so when the tests run as root the cluster is created and run as the ``postgres``
user in a temporary directory it owns. Authentication is ``trust`` on loopback and ``fsync`` is
off: a test cluster, never a production one. ``initdb`` plus start takes about 0.6 s.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mailwatch.sandbox.postfix import free_port
from mailwatch.sandbox.process import log_tail


class PostgresError(RuntimeError):
    """The private PostgreSQL did not start, stop or answer."""


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` directory (Debian layout), if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _version(path: str) -> int:
    try:
        return int(Path(path).parts[-3])
    except ValueError:
        return 0


@dataclass
class PrivatePostgres:
    """A cluster under ``root`` (data in ``root/data``, socket in ``root``, log ``root/log``)."""

    root: Path
    port: int = 0
    user: str = "mw"
    database: str = "mailwatch"

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.root = self.root.resolve()
        self._bin = bin_dir() or Path("/usr/lib/postgresql/15/bin")

    @property
    def url(self) -> str:
        """A libpq URL for the test database (trust authentication: no password)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.root / "log"

    def _as_owner(self, *argv: str, timeout: float = 60) -> str:
        """Run ``argv`` as the postgres user when we are root (the server refuses root)."""
        command = [str(a) for a in argv]
        if os.geteuid() == 0:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise PostgresError(
                f"{argv[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout}\n"
                f"{log_tail(self.log_path)}"
            )
        return done.stdout

    def create(self) -> PrivatePostgres:
        """``initdb`` a fresh cluster and create the database (starts the server)."""
        binaries = self._bin
        if not (binaries / "initdb").exists():
            raise PostgresError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            _make_traversable(self.root)
        self._as_owner(
            str(binaries / "initdb"), "-D", str(self.root / "data"), "-A", "trust",
            "-U", self.user, "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        self.start()
        self._as_owner(
            str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
            "-U", self.user, self.database,
        )  # fmt: skip
        return self

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off"
        )
        self._as_owner(
            str(self._bin / "pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.log_path),
            "-w", "-t", "60", "-o", options, "start",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are disconnected)."""
        self._as_owner(
            str(self._bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"
        )

    def is_running(self) -> bool:
        """Whether the server is up."""
        try:
            self._as_owner(str(self._bin / "pg_ctl"), "-D", str(self.root / "data"), "status")
        except PostgresError:
            return False
        return True

    def destroy(self) -> None:
        """Stop the server if it runs and delete the cluster."""
        if self.is_running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _make_traversable(root: Path) -> None:
    """Let the postgres user reach ``root`` (pytest's temporary directories are 0700)."""
    for parent in [root, *root.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
