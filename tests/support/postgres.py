"""Fresh PostgreSQL databases for a test session, on the server scripts/postgres.sh runs.

``PostgresServer`` runs a server of a test's own, which it may stop or restart at will.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from tests.support.processes import free_port

DEFAULT_SERVER = "postgresql+psycopg://flotilla@127.0.0.1:54329"


def server_url() -> str:
    """The PostgreSQL server the tests use (``FLOTILLA_TEST_PG_URL`` overrides)."""
    return os.environ.get("FLOTILLA_TEST_PG_URL", DEFAULT_SERVER)


def _admin_dsn(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def _admin(server: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
    url = server or server_url()
    try:
        return psycopg.connect(_admin_dsn(url), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {url}: start it with 'scripts/postgres.sh up' "
            "('make test' does this)"
        ) from exc


def recreate_database(name: str, server: str | None = None) -> str:
    """Drop and create database ``name`` on ``server`` (default: the tests' server); return its URL."""
    with _admin(server) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(server or server_url()).set(database=name).render_as_string(hide_password=False)


def drop_database(name: str, server: str | None = None) -> None:
    """Remove a test database (its connections are closed first)."""
    with _admin(server) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Run one SQL statement against a test database and return its rows."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        cursor = connection.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []


class PostgresServer:
    """A PostgreSQL server of one test's own (Debian's binaries), on a free loopback port.

    Its data lives in a fresh directory under /var/tmp; root runs it as the ``postgres`` user,
    since PostgreSQL refuses to run as root.
    """

    ROLE = "flotilla"

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
        if not found:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql: run 'make postgres-up'")
        self.bin = Path(found[-1])
        self.port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="flotilla-pg-", dir="/var/tmp"))
        self.log_path = self.data.parent / f"{self.data.name}.log"

    @property
    def url(self) -> str:
        """The server's SQLAlchemy URL, without a database name."""
        return f"postgresql+psycopg://{self.ROLE}@127.0.0.1:{self.port}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} {args[1]} failed: {result.stderr.strip()}\n{self.log_tail()}")

    def _pg_ctl(self, action: str, *args: str) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c max_connections=200"
        where = ["-D", str(self.data), "-l", str(self.log_path)]
        self._run("pg_ctl", action, *where, "-w", "-t", "60", "-o", options, *args)

    def start(self) -> PostgresServer:
        """Create the cluster on first use, then start and wait until it accepts connections."""
        if not (self.data / "PG_VERSION").exists():
            if os.geteuid() == 0:
                shutil.chown(self.data, "postgres", "postgres")
                self.log_path.touch()
                shutil.chown(self.log_path, "postgres", "postgres")
            cluster = ["-U", self.ROLE, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]
            self._run("initdb", "-D", str(self.data), *cluster)
        self._pg_ctl("start")
        return self

    def stop(self) -> None:
        """A fast shutdown: sessions are ended, the server stops."""
        self._pg_ctl("stop", "-m", "fast")

    def restart(self) -> None:
        """What a database failover or upgrade does: every connection ends, the server comes back."""
        self._pg_ctl("restart", "-m", "fast")

    def remove(self) -> None:
        """Stop if running and delete the data."""
        with contextlib.suppress(RuntimeError):  # not running
            self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
