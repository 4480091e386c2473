"""`migrate` waits for a database that is still starting (a fresh PostgreSQL pod), and names it
when it never answers."""

from __future__ import annotations

import os
import subprocess
import time

from sqlalchemy import make_url

from tests.support.forwarder import Forwarder
from tests.support.postgres import recreate_database
from tests.support.processes import BIN, free_port

BASE = {"USERS_URL": "http://127.0.0.1:1", "CATALOG_URL": "http://127.0.0.1:1", "FLOTILLA_ENV": "development"}


def test_migrate_waits_until_the_database_answers() -> None:
    url = make_url(recreate_database(f"late_{os.getpid()}"))
    port = free_port()
    late_url = url.set(port=port).render_as_string(hide_password=False)
    migrate = subprocess.Popen(
        [str(BIN / "flotilla-catalog"), "migrate"],
        env={**os.environ, **BASE, "DATABASE_URL": late_url, "DATABASE_WAIT_SECONDS": "60"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    forwarder = Forwarder(port, (url.host or "127.0.0.1", url.port or 5432))
    try:
        time.sleep(2)
        assert migrate.poll() is None  # still waiting: nothing listens on the port yet
        forwarder.start()
        out, err = migrate.communicate(timeout=60)
    finally:
        forwarder.stop()
    assert migrate.returncode == 0, err
    assert "database at the newest revision" in out


def test_migrate_names_a_database_that_never_answers() -> None:
    url = f"postgresql+psycopg://flotilla@127.0.0.1:{free_port()}/nowhere"
    result = subprocess.run(
        [str(BIN / "flotilla-catalog"), "migrate"],
        env={**os.environ, **BASE, "DATABASE_URL": url, "DATABASE_WAIT_SECONDS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "error: the database did not answer within 1s" in result.stderr
    assert "Traceback" not in result.stderr
