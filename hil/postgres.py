"""A private PostgreSQL cluster on a free loopback port, for tests, benchmarks and the demo (never a system service).

Debian's `postgresql` packages (which `make setup` installs) put `initdb`, `pg_ctl` and `postgres` in
/usr/lib/postgresql/<major>/bin, off everyone's PATH. PostgreSQL refuses to run as root, so when this runs
as root the cluster belongs to the `postgres` system user that Debian's package creates (or `nobody`
where that user is missing); its data directory is a fresh directory under /tmp owned by that user,
because a pytest tmp_path (mode 0700, owned by root) is not reachable for it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import psycopg

from hil.broker import free_port
from kernel.errors import GatewayError

#: the system users a cluster started by root runs as, in order of preference
SERVICE_USERS = ("postgres", "nobody")
#: the database superuser initdb creates; trust authentication, loopback only
SUPERUSER = "gateway"
#: unsafe but fast settings for throwaway clusters in tests: a crashed test cluster is thrown away anyway
THROWAWAY = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def find_postgres_bindir() -> Path:
    """The directory holding initdb and pg_ctl (the newest major version), or GatewayError saying how to
    install them."""
    on_path = shutil.which("initdb")
    if on_path is not None and shutil.which("pg_ctl") is not None:
        return Path(os.path.realpath(on_path)).parent
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    candidates.sort(key=_major_of, reverse=True)
    for initdb in candidates:
        bindir = Path(initdb).parent
        if os.access(initdb, os.X_OK) and os.access(bindir / "pg_ctl", os.X_OK):
            return bindir
    raise GatewayError("PostgreSQL not found: install Debian's 'postgresql' package (make setup does)")


def _major_of(initdb: str) -> int:
    found = re.search(r"/postgresql/(\d+)/", initdb)
    return int(found.group(1)) if found else 0


def service_user() -> pwd.struct_passwd | None:
    """The account the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in SERVICE_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise GatewayError(f"running as root and none of the users {SERVICE_USERS} exists to run PostgreSQL")


class PostgresCluster:
    """initdb, start, stop and remove a cluster listening on 127.0.0.1 only, with trust authentication."""

    def __init__(self, settings: Mapping[str, str] | None = None, base_dir: Path | None = None) -> None:
        self.bindir = find_postgres_bindir()
        self.user = service_user()
        self.settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": "", **(settings or {})}
        self.workdir = Path(tempfile.mkdtemp(prefix="gateway-pg-", dir=base_dir))
        if self.user is not None:
            os.chown(self.workdir, self.user.pw_uid, self.user.pw_gid)
        self.datadir = self.workdir / "data"
        self.logfile = self.workdir / "postgres.log"
        self.port = 0
        self._initialised = False

    @property
    def dsn(self) -> str:
        """The connection string of the `postgres` database (create others with `create_database`)."""
        return self.dsn_of("postgres")

    def dsn_of(self, database: str) -> str:
        """The connection string of one database of this cluster."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Create the cluster on first use, start it, and wait until it accepts connections."""
        if not self._initialised:
            self._run("initdb", "-D", str(self.datadir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                      "--locale=C.UTF-8", "--no-sync", "--no-instructions")  # fmt: skip
            self._initialised = True
        for attempt in range(3):
            # another process may take the free port between free_port() and the server's bind
            self.port = free_port()
            options = " ".join(
                f"-c {key}={value!r}" for key, value in {**self.settings, "port": self.port}.items()
            )
            try:
                self._run("pg_ctl", "start", "-w", "-t", str(int(timeout_s)), "-D", str(self.datadir),
                          "-l", str(self.logfile), "-o", options)  # fmt: skip
                break
            except GatewayError:
                if attempt == 2 or "could not bind" not in self.log_tail():
                    raise
        self._wait_accepting(timeout_s)

    def _wait_accepting(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise GatewayError(f"PostgreSQL did not accept connections: {exc}") from None
            time.sleep(0.05)

    def create_database(self, name: str) -> str:
        """Create an empty database and return its connection string."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_of(name)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the server (fast shutdown: open sessions are rolled back); kill it if that hangs."""
        if not (self.datadir / "postmaster.pid").exists():
            return
        try:
            self._run(
                "pg_ctl", "stop", "-w", "-m", "fast", "-t", str(int(timeout_s)), "-D", str(self.datadir)
            )
        except GatewayError:
            self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.datadir))

    def remove(self) -> None:
        """Stop and delete the cluster's files."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, size: int = 4000) -> str:
        """The end of the server's log, for error messages."""
        try:
            return self.logfile.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def _run(self, program: str, *args: str) -> None:
        user = self.user
        result = subprocess.run(
            [str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.workdir,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise GatewayError(
                f"{program} {' '.join(args[:2])} failed ({result.returncode}): "
                f"{result.stderr.strip()}\n{self.log_tail()}"
            )

    def __enter__(self) -> PostgresCluster:
        try:
            self.start()
        except BaseException:
            self.remove()  # no half-started cluster or data directory left behind
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()
